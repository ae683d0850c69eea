"""Preprocess HDC2021 image pairs (real or simulated, either layout) into a sharded training set.

    python -m pipelines.prepare --data DIR --out DIR --steps 0-9 [--downscale 7] [--workers N]
        [--val-fraction 0.1] [--seed S] [--registration pair|table|none] [--skip-bad] [--overwrite]

Per pair: down-scale, vignetting removal and median channels of the blurred image; binarised sharp
target registered into the blurred camera's frame; overlapping tiles (geometry from the model's
input and output sizes). Shards go to OUT/shards (see pipelines/shards.py), one per (step, split,
chunk of images); the split is by sample, never by tile. Shards are written atomically, so a
re-run skips finished ones; a changed configuration refuses to mix with old shards unless
--overwrite is given.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import physics as P
from .errors import DataError
from .hdc import find_samples, load_pair
from .preprocess import PreprocessConfig, preprocess_blurred, preprocess_sharp, downscale
from .registration import estimate_alignment, warp_to_blurred_frame
from .shards import FORMAT_VERSION, SHARD_DIR, file_sha256, read_shard, shard_name, write_manifest, write_shard
from .tiling import TileGrid

CONFIG_FILE = "prepare_config.json"


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


def prepare_pair(sample, cfg: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input tiles, target windows 0-255, registration info) of one image pair."""
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    sharp, blurred = load_pair(sample)
    x = preprocess_blurred(blurred, pre)
    target = preprocess_sharp(sharp, pre)
    ph = P.step_physics(sample.step)
    table = (ph["scale_x"], ph["scale_y"], ph["shift_x"] / pre.factor, ph["shift_y"] / pre.factor)
    if cfg["registration"] == "pair":
        est = estimate_alignment(downscale(sharp, pre.factor), downscale(blurred, pre.factor),
                                 ph["radius"] / pre.factor, init=table)
        params, info = est.params, est.to_dict()
    elif cfg["registration"] == "table":
        params, info = table, {"table": True}
    else:
        params, info = (1.0, 1.0, 0.0, 0.0), {}
    target = warp_to_blurred_frame(target, params, output_shape=x.shape[:2], cval=1.0)
    grid = TileGrid.for_image(x.shape[:2], cfg["in_size"], cfg["out_size"])
    windows = grid.extract_windows(target)
    return grid.extract(x), np.rint(np.clip(windows, 0, 1) * 255).astype(np.uint8), info


def _build_shard(job) -> dict:
    path, samples, step, split, cfg, skip_bad = job
    xs, ys, images, skipped, registrations = [], [], [], [], []
    for i, sample in enumerate(samples):
        try:
            x, y, info = prepare_pair(sample, cfg)
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
    return {**entry, "step": step, "split": split, "images": len(xs), "skipped": skipped,
            "registration": registrations}


def prepare(data, out, steps, *, factor=7, workers=None, val_fraction=0.1, seed=0, in_size=110,
            out_size=52, registration="pair", images_per_shard=16, skip_bad=False, overwrite=False,
            progress=True) -> dict:
    out = Path(out)
    cfg = {"format": FORMAT_VERSION, "data": str(Path(data).resolve()), "steps": list(steps),
           "preprocess": PreprocessConfig(factor=factor).to_dict(), "val_fraction": val_fraction,
           "seed": seed, "in_size": in_size, "out_size": out_size, "registration": registration,
           "images_per_shard": images_per_shard}
    cfg_path = out / CONFIG_FILE
    if cfg_path.is_file() and json.loads(cfg_path.read_text()) != json.loads(json.dumps(cfg)):
        if not overwrite:
            raise DataError(cfg_path, "existing shards were made with another configuration; "
                                      "use --overwrite to replace them or choose another --out")
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))

    samples = find_samples(data, steps=set(steps))
    if not samples:
        raise DataError(data, f"no text samples for steps {steps}")
    split = split_by_sample(samples, val_fraction, seed)
    jobs, done = [], []
    for step in steps:
        for part in ("train", "val"):
            group = [s for s in samples if s.step == step and split[s.key] == part]
            for k in range(0, len(group), images_per_shard):
                path = out / SHARD_DIR / shard_name(step, part, k // images_per_shard)
                chunk = group[k:k + images_per_shard]
                if path.is_file():  # finished in an earlier run (writes are atomic)
                    arrays = read_shard(path)
                    done.append({"file": path.name, "count": len(arrays["x"]), "sha256": file_sha256(path),
                                 "step": step, "split": part, "images": len(chunk), "skipped": [],
                                 "resumed": True})
                else:
                    jobs.append((path, chunk, step, part, cfg, skip_bad))
    t0 = time.perf_counter()
    results = []
    bar = tqdm(total=sum(len(j[1]) for j in jobs), desc="prepare", unit="pair", disable=not progress)
    if (workers or 1) == 1:
        for job in jobs:
            results.append(_build_shard(job))
            bar.update(len(job[1]))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for job, res in zip(jobs, pool.map(_build_shard, jobs)):
                results.append(res)
                bar.update(len(job[1]))
    bar.close()
    seconds = time.perf_counter() - t0
    shards = sorted([r for r in results + done if r["file"]], key=lambda r: r["file"])
    skipped = [s for r in results for s in r["skipped"]]
    manifest = {"config": cfg, "shards": [{k: v for k, v in r.items() if k not in ("skipped", "registration")}
                                          for r in shards],
                "splits": {k: v for k, v in sorted(split.items())}, "skipped": skipped,
                "registration": [g for r in results for g in r.get("registration", [])],
                "counts": {part: sum(r["count"] for r in shards if r["split"] == part) for part in ("train", "val")},
                "seconds": round(seconds, 2), "pairs_processed": sum(len(j[1]) for j in jobs)}
    write_manifest(out, manifest)
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", default="0-9")
    ap.add_argument("--downscale", type=float, default=7)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-size", type=int, default=110, help="model input tile size")
    ap.add_argument("--out-size", type=int, default=52, help="model output window size")
    ap.add_argument("--registration", choices=("pair", "table", "none"), default="pair")
    ap.add_argument("--images-per-shard", type=int, default=16)
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable pairs, list them in the manifest")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        steps = P.parse_steps(args.steps)
    except ValueError as e:
        ap.error(str(e))
    try:
        m = prepare(args.data, args.out, steps, factor=args.downscale, workers=args.workers,
                    val_fraction=args.val_fraction, seed=args.seed, in_size=args.in_size,
                    out_size=args.out_size, registration=args.registration,
                    images_per_shard=args.images_per_shard, skip_bad=args.skip_bad, overwrite=args.overwrite)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rate = m["pairs_processed"] / m["seconds"] if m["seconds"] else float("nan")
    print(f"{len(m['shards'])} shards, {m['counts']['train']} train / {m['counts']['val']} val tiles, "
          f"{len(m['skipped'])} skipped; {m['pairs_processed']} pairs in {m['seconds']:.1f} s ({rate:.1f} pairs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
