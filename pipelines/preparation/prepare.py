"""Preprocess HDC2021 image pairs (real or simulated, either layout) into a sharded training set.

    python -m pipelines.prepare --data DIR --out DIR --steps 0-9 [--downscale 7] [--workers N]
        [--val-fraction 0.1] [--seed S] [--registration step|pair|table|none] [--registration-pairs 5]
        [--skip-bad] [--overwrite] [--preview [N]]

Per pair: down-scale, vignetting removal and median channels of the blurred image; binarised sharp
target registered into the blurred camera's frame; overlapping tiles (geometry from the model's
input and output sizes). Shards go to OUT/shards (see pipelines/preparation/shards.py), one per
(step, split, chunk of images); the split is by sample, never by tile. Shards are written
atomically, each with its record (shards/NAME.json: images, skipped pairs, registration), so a
re-run skips finished ones and its manifest still covers every pair (a shard without its record is
made again). A changed configuration, or a changed list of input files (OUT/prepare_inputs.json:
names, sizes and modification times), refuses to mix with old shards unless --overwrite is given
(which starts over). The options and the data are checked before anything is written; Ctrl-C leaves
only complete shards and says how many.

Registration (CAM01 -> CAM02 geometry, pipelines.preprocessing.registration):
  step   (default) estimated on --registration-pairs pairs of each step (spread over the step's
         samples, both fonts), the per-parameter median applied to every pair of the step: the
         geometry is a property of the step's camera set-up, not of the image. As accurate as
         per-pair estimates on simulated data (more robust at high steps) at 1/40 of the cost on
         a real step of 200 pairs. The estimates are kept in OUT/step_registration.json (a resumed
         run reuses them) and in the manifest.
  pair   estimated on every pair (about 0.2 s per pair on one core).
  table  the physics table (pipelines.reading.physics); exact for simulated data only.
  none   no registration (identity).

--preview [N] writes OUT/preview.png: every stage of N pairs spread over the steps
(pipelines.preparation.preview), before the shards are built.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..common.atomic import write_text_atomic
from ..common.errors import DataError
from ..common.interrupt import ignore_sigint, sigint_ignored
from ..common.threads import ONE_THREAD_ENV
from ..preprocessing.deconv import MULTI_BALANCES, PHYSICS_CHANNELS
from ..preprocessing.preprocess import PreprocessConfig
from ..reading import physics as P
from ..reading.hdc import find_samples
from .shards import SHARD_DIR, file_sha256, shard_name, write_manifest, write_shard
from .stages import (DEFAULT_REGISTRATION, DEFAULT_REGISTRATION_PAIRS, REGISTRATION_MODES,
                     estimate_step_geometry, make_config, pair_stages)

CONFIG_FILE = "prepare_config.json"
INPUTS_FILE = "prepare_inputs.json"
STEP_REGISTRATION_FILE = "step_registration.json"
PREVIEW_FILE = "preview.png"


def split_by_sample(samples, val_fraction: float, seed: int) -> dict[str, str]:
    """Sample key -> 'train' | 'val', drawn per step so every step has validation data."""
    split = {}
    groups: dict[int, list] = {}
    for s in samples:
        groups.setdefault(s.step, []).append(s)
    for step, group in sorted(groups.items()):
        rng = np.random.default_rng([seed, step])
        order = rng.permutation(len(group))
        n_val = int(round(val_fraction * len(group)))
        if val_fraction > 0 and len(group) > 1:
            n_val = max(n_val, 1)
        for rank, i in enumerate(order):
            split[group[i].key] = "val" if rank < n_val else "train"
    return split


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------

def _estimate_step_job(job) -> dict:
    samples, cfg, skip_bad = job
    return estimate_step_geometry(samples, cfg, skip_bad)


# --------------------------------------------------------------------------------------------
# one pair
# --------------------------------------------------------------------------------------------

def tiles_of(stages: dict) -> tuple[np.ndarray, np.ndarray]:
    """(input tiles float32, target windows uint8 0-255) of `pair_stages` output."""
    grid = stages["grid"]
    windows = grid.extract_windows(stages["registered"])
    return grid.extract(stages["channels"]), np.rint(np.clip(windows, 0, 1) * 255).astype(np.uint8)


def prepare_pair(sample, cfg: dict, geometry=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input tiles, target windows 0-255, registration info) of one image pair."""
    stages = pair_stages(sample, cfg, geometry)
    x, y = tiles_of(stages)
    return x, y, stages["info"]


def check_options(factor, val_fraction, in_size, out_size, images_per_shard) -> None:
    """ValueError naming the option, for a value prepare cannot use (before anything is written)."""
    if not (math.isfinite(float(factor)) and float(factor) >= 1):
        raise ValueError(f"--downscale must be a factor >= 1, got {factor}")
    if not 0 <= float(val_fraction) < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if int(images_per_shard) < 1:
        raise ValueError(f"--images-per-shard must be at least 1, got {images_per_shard}")
    if not 1 <= int(out_size) <= int(in_size) or (int(in_size) - int(out_size)) % 2:
        raise ValueError(f"--in-size {in_size} and --out-size {out_size}: need 1 <= out-size <= in-size, "
                         "differing by an even number")


def input_listing(data, samples) -> list[list]:
    """[path relative to the data folder, size, mtime_ns] of every file the samples are read from,
    sorted: what a resumed run must find unchanged."""
    rows = set()
    for s in samples:
        for p in (s.blurred, s.sharp, s.text_path):
            st = p.stat()
            rows.add((os.path.relpath(p, data), st.st_size, st.st_mtime_ns))
    return [list(r) for r in sorted(rows)]


def _listing_changes(old, new) -> str:
    old = {r[0]: r[1:] for r in old} if isinstance(old, list) else {}
    new = {r[0]: r[1:] for r in new}
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    first = (added or removed or changed or ["?"])[0]
    return f"{len(added)} added, {len(removed)} removed, {len(changed)} changed, e.g. {first}"


def _read_json(path: Path):
    """The JSON in `path`, None if there is no file, "unreadable" if it cannot be read."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unreadable"


def _shard_record(path: Path) -> dict | None:
    """The record of a finished shard (written after it), None if the shard must be made again."""
    record = _read_json(path.with_suffix(".json"))
    if not isinstance(record, dict) or not path.is_file() or record.get("sha256") != file_sha256(path):
        return None
    return record


def _build_shard(job) -> dict:
    path, samples, step, split, cfg, skip_bad, geometry = job
    xs, ys, images, skipped, registrations = [], [], [], [], []
    for i, sample in enumerate(samples):
        try:
            x, y, info = prepare_pair(sample, cfg, geometry)
        except DataError as e:
            if not skip_bad:
                raise
            skipped.append({"file": str(e.path), "problem": e.problem})
            continue
        xs.append(x)
        ys.append(y)
        images.append(np.full(len(x), i))
        registrations.append({"blurred": str(sample.blurred), **info})
    if not xs:
        return {"file": None, "skipped": skipped}
    x = np.concatenate(xs)
    entry = write_shard(path, x, np.concatenate(ys), np.full(len(x), step), np.concatenate(images))
    record = {**entry, "step": step, "split": split, "images": len(xs), "skipped": skipped,
              "registration": registrations}
    write_text_atomic(Path(path).with_suffix(".json"), json.dumps(record))  # after the shard: see _shard_record
    return record


# --------------------------------------------------------------------------------------------
# worker processes
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def env_defaults(values: dict):
    """Set environment variables that are not set yet; restore them afterwards."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def worker_pool(workers: int):
    """A pool of `workers` processes with one BLAS thread each; None for one worker (the work then
    runs in this process). Where the environment already asks for one thread (the command line
    sets it before numpy loads) the workers are forked: cheap, and they inherit a single-threaded
    numpy. Otherwise they are spawned fresh, with ONE_THREAD_ENV in their environment, and load
    numpy anew (about 1 s of imports per worker)."""
    if workers <= 1:
        yield None
        return
    single = all(os.environ.get(k) == v for k, v in ONE_THREAD_ENV.items())
    method = "fork" if single and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with env_defaults(ONE_THREAD_ENV), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                           initializer=ignore_sigint) as pool:
        yield pool


def run_jobs(pool, fn, jobs: list, done=None) -> list:
    """[fn(job) for job in jobs], in the pool if there is one; `done(job)` after each; the first
    error cancels the jobs not yet started and is raised."""
    if pool is None:
        results = []
        for job in jobs:
            results.append(fn(job))
            if done:
                done(job)
        return results
    with sigint_ignored():  # the workers start here (pipelines/common/interrupt.py)
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
    results = [None] * len(jobs)
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if done:
                done(jobs[i])
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return results


# --------------------------------------------------------------------------------------------
# the whole set
# --------------------------------------------------------------------------------------------

def _step_geometries(out: Path, steps, samples, cfg, pool, skip_bad) -> dict[int, dict]:
    """Step -> geometry record, for `steps` and any other step estimated before: from
    OUT/step_registration.json where a previous run estimated it (same configuration: the guard in
    `prepare`), else estimated now (one job per step)."""
    path = out / STEP_REGISTRATION_FILE
    cached = {}
    if path.is_file():
        try:
            cached = {int(k): v for k, v in json.loads(path.read_text()).items()}
        except (json.JSONDecodeError, ValueError, AttributeError):
            cached = {}
    todo = [s for s in steps if s not in cached]
    jobs = [([x for x in samples if x.step == s], cfg, skip_bad) for s in todo]
    for rec in run_jobs(pool, _estimate_step_job, jobs):
        cached[rec["step"]] = rec
    if todo:
        write_text_atomic(path, json.dumps({str(k): v for k, v in sorted(cached.items())}, indent=2))
    return cached


def prepare(data, out, steps, *, factor=7, workers=None, val_fraction=0.1, seed=0, in_size=110,
            out_size=52, registration=DEFAULT_REGISTRATION, registration_pairs=DEFAULT_REGISTRATION_PAIRS,
            images_per_shard=16, skip_bad=False, overwrite=False, progress=True, preview=0,
            physics="none", physics_balances=()) -> dict:
    """Prepare a sharded training set (module docstring); returns the manifest.

    `workers` processes (default: all cores) build the shards; `preview` > 0 also writes
    OUT/preview.png for that many pairs (not timed). Manifest "seconds" covers the step
    registration and the shards; "seconds_registration" the step registration alone.
    """
    out = Path(out)
    check_options(factor, val_fraction, in_size, out_size, images_per_shard)
    if os.path.lexists(out) and not out.is_dir():
        raise DataError(out, "--out is a file, not a folder")
    cfg = make_config(data, steps, factor=factor, val_fraction=val_fraction, seed=seed, in_size=in_size,
                      out_size=out_size, registration=registration, registration_pairs=registration_pairs,
                      images_per_shard=images_per_shard, physics=physics, physics_balances=physics_balances)
    # the data first: a bad data folder leaves nothing behind that could block the corrected re-run
    unusable = [] if skip_bad else None  # pairs without a sharp partner or a readable text
    samples = find_samples(data, steps=set(steps), skipped=unusable)
    if not samples:
        raise DataError(data, f"no text samples for steps {steps}")
    listing = input_listing(data, samples)
    cfg_path, inputs_path = out / CONFIG_FILE, out / INPUTS_FILE
    old_cfg, old_inputs = _read_json(cfg_path), _read_json(inputs_path)
    has_shards = any((out / SHARD_DIR).glob("step*.npz"))  # not the hidden temporary files
    if old_cfg is not None and old_cfg != json.loads(json.dumps(cfg)):
        changed, where = "existing shards were made with another configuration", cfg_path
    elif old_inputs is not None and old_inputs != listing:
        changed, where = (f"the input files changed since the shards here were made "
                          f"({_listing_changes(old_inputs, listing)})"), inputs_path
    else:
        changed = where = None
    if changed and has_shards and not overwrite:
        raise DataError(where, f"{changed}; use --overwrite to start over or choose another --out")
    if changed:
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
    if changed or old_inputs is None:  # a step geometry of other (or unknown) inputs
        (out / STEP_REGISTRATION_FILE).unlink(missing_ok=True)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg_path, json.dumps(cfg, indent=2, sort_keys=True))
    write_text_atomic(inputs_path, json.dumps(listing))

    split = split_by_sample(samples, val_fraction, seed)
    jobs, done = [], []
    for step in steps:
        for part in ("train", "val"):
            group = [s for s in samples if s.step == step and split[s.key] == part]
            for k in range(0, len(group), images_per_shard):
                path = out / SHARD_DIR / shard_name(step, part, k // images_per_shard)
                chunk = group[k:k + images_per_shard]
                record = _shard_record(path)
                if record is not None:  # finished in an earlier run
                    done.append({**record, "resumed": True})
                else:
                    jobs.append([path, chunk, step, part, cfg, skip_bad, None])
    shown = []
    if preview:
        from .preview import choose_samples
        shown = choose_samples(samples, int(preview))
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(jobs) or 1))

    t0 = time.perf_counter()
    geometry: dict[int, dict] = {}
    with worker_pool(workers) as pool:
        if registration == "step":
            need = sorted({j[2] for j in jobs} | {s.step for s in shown})
            geometry = _step_geometries(out, need, samples, cfg, pool, skip_bad)
            for job in jobs:
                job[6] = geometry[job[2]]
        t_reg = time.perf_counter() - t0
        t_preview = 0.0
        if shown:
            from .preview import write_preview
            tp = time.perf_counter()
            write_preview(out / PREVIEW_FILE, shown, cfg, geometry)
            t_preview = time.perf_counter() - tp
        bar = tqdm(total=sum(len(j[1]) for j in jobs), desc="prepare", unit="pair", disable=not progress)
        results = run_jobs(pool, _build_shard, [tuple(j) for j in jobs], done=lambda j: bar.update(len(j[1])))
        bar.close()
    seconds = time.perf_counter() - t0 - t_preview
    shards = sorted([r for r in results + done if r["file"]], key=lambda r: r["file"])
    skipped = (unusable or []) + [s for r in results + done for s in r["skipped"]]
    manifest = {"config": cfg, "shards": [{k: v for k, v in r.items() if k not in ("skipped", "registration")}
                                          for r in shards],
                "splits": {k: v for k, v in sorted(split.items())}, "skipped": skipped,
                "registration": [g for r in shards for g in r.get("registration", [])],
                "counts": {part: sum(r["count"] for r in shards if r["split"] == part) for part in ("train", "val")},
                "seconds": round(seconds, 2), "seconds_registration": round(t_reg, 2),
                "pairs_processed": sum(len(j[1]) for j in jobs), "workers": workers}
    if registration == "step":
        manifest["step_registration"] = {str(k): v for k, v in sorted(geometry.items()) if k in steps}
    if shown:
        manifest["preview"] = PREVIEW_FILE
    write_manifest(out, manifest)
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", default="0-9")
    ap.add_argument("--downscale", type=float, default=7)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-size", type=int, default=110, help="model input tile size")
    ap.add_argument("--out-size", type=int, default=52, help="model output window size")
    ap.add_argument("--registration", choices=REGISTRATION_MODES, default=DEFAULT_REGISTRATION)
    ap.add_argument("--registration-pairs", type=int, default=DEFAULT_REGISTRATION_PAIRS,
                    help="pairs per step whose median geometry --registration step applies")
    ap.add_argument("--images-per-shard", type=int, default=16)
    ap.add_argument("--physics", choices=PHYSICS_CHANNELS, default="none",
                    help="add the physics input channel(s): the step's Wiener deconvolution "
                         "(pipelines.preprocessing.deconv; wiener: one channel, balance 0.003; "
                         "wiener-multi: one per --physics-balances)")
    ap.add_argument("--physics-balances", default=None,
                    help=f"--physics wiener-multi: comma-separated Wiener balances, one channel each "
                         f"(default {','.join(f'{b:g}' for b in MULTI_BALANCES)})")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable pairs, list them in the manifest")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--preview", type=int, nargs="?", const=3, default=0, metavar="N",
                    help=f"also write OUT/{PREVIEW_FILE}: every stage of N pairs (default 3) spread over the steps")
    args = ap.parse_args(argv)
    try:
        steps = P.parse_steps(args.steps)
    except ValueError as e:
        ap.error(str(e))
    if args.preview < 0:
        ap.error("--preview N needs N >= 1")
    balances = ()
    if args.physics_balances is not None:
        if args.physics != "wiener-multi":
            ap.error("--physics-balances is for --physics wiener-multi")
        try:
            balances = tuple(float(b) for b in args.physics_balances.split(","))
            PreprocessConfig(physics="wiener-multi", physics_balances=balances)
        except ValueError as e:
            ap.error(f"--physics-balances {args.physics_balances}: {e}")
    if args.registration_pairs < 1:
        ap.error("--registration-pairs needs at least 1")
    if args.workers is not None and args.workers < 1:
        ap.error("--workers needs at least 1")
    try:
        check_options(args.downscale, args.val_fraction, args.in_size, args.out_size, args.images_per_shard)
    except ValueError as e:
        ap.error(str(e))
    try:
        m = prepare(args.data, args.out, steps, factor=args.downscale, workers=args.workers,
                    val_fraction=args.val_fraction, seed=args.seed, in_size=args.in_size,
                    out_size=args.out_size, registration=args.registration,
                    registration_pairs=args.registration_pairs, images_per_shard=args.images_per_shard,
                    skip_bad=args.skip_bad, overwrite=args.overwrite, preview=args.preview,
                    physics=args.physics, physics_balances=balances)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # workers finish their shard (atomic writes), the rest is cancelled
        n = len(list((args.out / SHARD_DIR).glob("step*.npz"))) if args.out.is_dir() else 0
        print(f"\ninterrupted: {n} complete shards in {args.out / SHARD_DIR}, no partial file, no manifest; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    for s in m["skipped"]:
        print(f"skipped: {s['file']}: {s['problem']}", file=sys.stderr)
    head = (f"{len(m['shards'])} shards, {m['counts']['train']} train / {m['counts']['val']} val tiles, "
            f"{len(m['skipped'])} skipped; ")
    if not m["pairs_processed"]:
        print(head + "every shard was already there (nothing to do)")
    else:
        rate = m["pairs_processed"] / m["seconds"] if m["seconds"] else float("nan")
        print(head + f"{m['pairs_processed']} pairs in {m['seconds']:.1f} s ({rate:.1f} pairs/s, "
              f"{m['workers']} workers, registration '{args.registration}'"
              + (f": {m['seconds_registration']:.1f} s of it for the step geometry"
                 if args.registration == "step" else "") + ")")
    if m.get("preview"):
        print(f"preview: {args.out / m['preview']}")
    return 0

