"""Ship a trained run as a packaged model: the .keras file plus a JSON model card beside it.

    python -m deblur.ship --run-dir RUN (--out PATH.keras | --replace-default) [--which best|last]
        [--command "the commands that produced RUN"]
    python -m deblur.ship --run-dir RUN --out deblur/models/NAME.keras --route-steps 17-19 [--flips 2]

--flips 2 makes inference average the model's output on the image and on its left-right mirror
(the card's "inference": {"flips": 2}; `deblur.infer.Deblurrer`).

--route-steps ships a specialist: the default model's card then hands those steps to it
(`"specialists"`, read by `deblur.infer.Deblurrer.from_file`).

--replace-default writes the packaged default model deblur/models/default.keras (and its card);
without it that file is never touched. The routes of the card being replaced are kept (checked
against the new model first); --drop-routes drops them. The run is checked (model, config, history) before
anything is written.

The card records what a reader needs to trust and reproduce the file: model configuration, the
preprocessing it expects (inference rebuilds exactly that pipeline from the card), the training
data (simulator seed and samples, which never overlap the evaluation seed), steps, epochs, wall
time, machine, final and best losses (overall and per step; best: the epoch the run's --monitor
chose best.keras by), and the commands.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from pipelines.common.atomic import atomic_path, write_text_atomic
from pipelines.common.errors import DataError

from .history_plot import read_history
from .infer import DEFAULT_MODEL, card_path, read_card

def _losses(row: dict) -> dict:
    return {"epoch": int(row["epoch"]) + 1, "loss": row.get("loss"), "val_loss": row.get("val_loss"),
            "val_loss_per_step": {k.removeprefix("val_loss_step"): v for k, v in row.items()
                                  if k.startswith("val_loss_step")}}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_card(run_dir, model_file: Path, command: str | None = None) -> dict:
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    rows = read_history(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}: history.csv has no finished epoch")
    from .train import best_row

    monitor = config["args"].get("monitor") or "val_loss"  # what chose best.keras
    best = best_row(rows, monitor) or min(rows, key=lambda r: r.get("val_loss", float("inf")))
    synthetic = bool(config["data"].get("synthetic"))
    manifest_cfg = config["data"].get("manifest_config") or {}
    sim_file = Path(manifest_cfg.get("data", "")) / "simulation.json"
    sim = json.loads(sim_file.read_text()) if sim_file.is_file() and not synthetic else {}
    started = (run_dir / "config.json").stat().st_mtime
    ended = (run_dir / "history.csv").stat().st_mtime
    return {
        "model_file": model_file.name,
        "sha256": _sha256(model_file),
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": config["model"],
        "preprocess": config["data"].get("preprocess") if synthetic else manifest_cfg.get("preprocess"),
        "steps": config["steps"],
        "training": {k: config["args"].get(k) for k in ("batch_size", "lr", "seed", "steps_per_epoch",
                                                      "patience", "mixed_precision", "step_weighting", "init",
                                                      "nontext_fraction", "contrast_weight", "monitor")},
        "data": {"synthetic_stream": True, "seed": config["args"]["seed"],
                 "samples_seen": len(rows) * int(config["args"]["steps_per_epoch"] or 50) * config["args"]["batch_size"],
                 "note": "pipelines.simulation.synth stream (1:7 forward model of the simulator), seed as above; "
                         "evaluation sets use the full simulator with seed 9001"} if synthetic else {"simulator_seed": sim.get("seed"), "samples_per_font_per_step": sim.get("samples_per_font"),
                 "layout": sim.get("layout"), "registration": manifest_cfg.get("registration"),
                 "tiles": config["data"].get("tiles"), "tile_size": [config["data"].get("input_size"),
                                                                     config["data"].get("target_size")],
                 "note": "simulated with pipelines.simulate; evaluation sets use seed 9001, never used here"},
        "epochs_run": len(rows),
        "best": {**_losses(best), **({monitor: best[monitor]} if monitor != "val_loss" and monitor in best else {})},
        "final": _losses(rows[-1]),
        "wall_time_s": round(ended - started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    **config.get("versions", {})},
        "command": command,
    }


def ship(run_dir, which: str = "best", out=None, command: str | None = None,
         replace_default: bool = False, flips: int = 1, keep_routes: bool = True) -> Path:
    """Copy RUN/{which}.keras to `out` (checked by reloading it) and write the card beside it.
    The packaged default model is written only with `replace_default` (then `out` may be None).
    `flips` > 1: the card makes inference average that many mirrored views (deblur.infer.FLIP_VIEWS).
    `keep_routes`: the "specialists" of the card being replaced go into the new card, checked
    against the new model before anything is written (ModelLoadError naming the card if they no
    longer fit); False drops them."""
    from .infer import Deblurrer, load_specialists

    if out is None and not replace_default:
        raise ValueError("give --out PATH.keras, or --replace-default to replace the packaged default model")
    out = Path(out) if out is not None else DEFAULT_MODEL
    if os.path.realpath(out) == os.path.realpath(DEFAULT_MODEL) and not replace_default:
        raise ValueError(f"{out} is the packaged default model: add --replace-default to replace it")
    if os.path.lexists(out) and not out.is_file():
        raise ValueError(f"{out}: --out is not a file")
    from .model import load_model, rebuild, save_model, spec_of  # Keras: only once the options are fine

    run_dir = Path(run_dir)
    src = run_dir / f"{which}.keras"
    model = load_model(src)  # refuses a file that does not reload as a model
    pre = build_card(run_dir, src, command)["preprocess"]  # config and history readable: before any write
    routes = (read_card(out).get("specialists") if out.is_file() else None) if keep_routes else None
    if flips != 1 or routes:  # inference as the card will set it up takes these flips (a pyramid model)
        try:
            general = Deblurrer(model, pre, flips=flips)
        except ValueError as e:
            raise ValueError(f"{src}: {e}") from None
    if routes:  # the specialists still fit the new model (same scale, their steps)
        load_specialists(out, {"specialists": routes}, general, batch_size=1, method="auto")
    if spec_of(model).arch == "pyramid":  # re-saved through this version's layers, free input size
        save_model(rebuild(model, input_size=None), out)
    else:
        with atomic_path(out, suffix=".keras") as tmp:
            shutil.copyfile(src, tmp)
    card = build_card(run_dir, out, command)
    card["source"] = f"{which}.keras"
    if flips != 1:
        card["inference"] = {"flips": flips}
    if routes:
        card["specialists"] = routes
    write_text_atomic(card_path(out), json.dumps(card, indent=2, sort_keys=True, default=str))
    return out


def route(specialist: Path, steps, into: Path = DEFAULT_MODEL) -> Path:
    """Make `into`'s card hand `steps` to `specialist` (a shipped model beside it): its
    "specialists" list gets {"model_file", "steps"}, replacing entries of the same file and taking
    these steps from others; then checked by loading `into` as inference will. Returns the card."""
    from .infer import Deblurrer

    specialist, into = Path(specialist), Path(into)
    if specialist.parent.resolve() != into.parent.resolve():
        raise ValueError(f"{specialist} must sit beside {into} (the card names it by file name)")
    if not into.is_file():
        raise ValueError(f"{into}: no such model")
    steps = sorted({int(s) for s in steps})
    card = read_card(into)
    kept = []
    for entry in card.get("specialists") or []:
        if entry.get("model_file") == specialist.name:
            continue
        rest = [s for s in entry.get("steps", []) if s not in steps]
        if rest:
            kept.append({**entry, "steps": rest})
    card["specialists"] = kept + [{"model_file": specialist.name, "steps": steps}]
    old = card_path(into).read_text() if card_path(into).is_file() else None
    write_text_atomic(card_path(into), json.dumps(card, indent=2, sort_keys=True, default=str))
    try:
        Deblurrer.from_file(into)
    except (ValueError, DataError):  # put the working card back before reporting
        if old is not None:
            write_text_atomic(card_path(into), old)
        raise
    return card_path(into)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--which", choices=("best", "last"), default="best")
    ap.add_argument("--out", default=None, help="where to write the model (its .json card beside it)")
    ap.add_argument("--replace-default", action="store_true",
                    help=f"write the packaged default model {DEFAULT_MODEL.name} (and its card) instead")
    ap.add_argument("--command", default=None, help="the commands that produced the run, for the card")
    ap.add_argument("--route-steps", default=None, metavar="STEPS",
                    help="also make the default model's card hand these steps (e.g. 17-19) to the shipped "
                         "model, a specialist (--out beside the default model)")
    ap.add_argument("--flips", type=int, choices=(1, 2, 4), default=1,
                    help="views the card makes inference average: 2 = + mirrored left-right, 4 = + upside "
                         "down (default 1)")
    ap.add_argument("--drop-routes", action="store_true",
                    help="do not carry the replaced card's \"specialists\" (its step routes) into the new card")
    args = ap.parse_args(argv)
    route_steps = None
    if args.route_steps is not None:
        if args.out is None or args.replace_default:
            ap.error("--route-steps ships a specialist: give --out PATH beside the default model, not --replace-default")
        from pipelines.reading.physics import parse_steps

        try:  # before anything is written
            route_steps = parse_steps(args.route_steps)
        except ValueError as e:
            ap.error(f"--route-steps: {e}")
    if args.out is not None and args.replace_default and \
            os.path.realpath(args.out) != os.path.realpath(DEFAULT_MODEL):
        ap.error("give either --out PATH or --replace-default, not both")
    try:
        out = ship(args.run_dir, args.which, args.out, args.command, replace_default=args.replace_default,
                   flips=args.flips, keep_routes=not args.drop_routes)
    except (ValueError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if route_steps is not None:
        try:
            routed = route(out, route_steps)
        except (ValueError, DataError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{routed}: steps {args.route_steps} now go to {out.name}")
    card = read_card(out)
    for entry in card.get("specialists") or []:
        print(f"{card_path(out).name}: steps {entry['steps']} go to {entry['model_file']}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {card_path(out)}: "
          f"{card['epochs_run']} epochs, best val_loss {card['best']['val_loss']:.4f} at epoch {card['best']['epoch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
