"""Accuracy and speed of the blur-step estimator (`deblur.estimate`) on simulated data.

    python -m bench.estimate_bench --data DIR [--confusion docs/estimate_confusion.png]
        [--no-calibration] [--workers 2] [--non-text] [--thumbnails ../shared/hdc2021/fixtures/thumbnails]

Estimates every text image below DIR (true step from the file name), prints per step: images,
exact %, within +-1 %, mean |error| in steps, mean confidence; the confusion matrix as a PNG;
the time per image (read + estimate) in one process, and the wall time per image with --workers
processes (the "2 cores" figure). --non-text adds the confidence of frames that are not text:
blank, saturated and black frames and a natural photo (a simulated sanity photo) at a few steps.
--thumbnails DIR: the REAL CAM02 1:10 thumbnails (8-bit PNG, step in the file name): each thumbnail's
own spectrum at 1:10 (no 1:2 crop, so steps 0-1 are out of its reach) and contrast.
Use a seed the estimator table was not fitted on (the shipped table: seed 4243), e.g.
    python -m pipelines.simulate --out data/heldout7777 --steps 0-19 --samples 5 --seed 7777 --layout eval --workers 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pipelines.reading import physics as P


def _one(job) -> tuple[int, float, float, float]:
    """Worker: (estimated step, radius, confidence, seconds for read + estimate) of one file."""
    from deblur.estimate import estimate_file

    path, calibration = job
    t0 = time.perf_counter()
    e = estimate_file(path, calibration=calibration)
    return e.step, e.radius_px, e.confidence, time.perf_counter() - t0


def run(samples, calibration: bool, workers: int) -> tuple[np.ndarray, float]:
    """(rows of step, radius, confidence, seconds per sample; wall seconds)."""
    jobs = [(str(s.blurred), calibration) for s in samples]
    t0 = time.perf_counter()
    if workers <= 1:
        rows = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, initializer=_one_thread) as ex:
            rows = list(ex.map(_one, jobs, chunksize=4))
    return np.array(rows, dtype=np.float64), time.perf_counter() - t0


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"


def accuracy_table(true: np.ndarray, est: np.ndarray, conf: np.ndarray) -> str:
    lines = ["| step | images | exact % | within +-1 % | mean abs error (steps) | mean confidence |",
             "|---|---|---|---|---|---|"]
    for s in range(P.N_STEPS):
        m = true == s
        if not m.any():
            continue
        err = np.abs(est[m] - s)
        lines.append(f"| {s} | {m.sum()} | {100 * np.mean(err == 0):.0f} | {100 * np.mean(err <= 1):.0f} | "
                     f"{err.mean():.2f} | {conf[m].mean():.2f} |")
    err = np.abs(est - true)
    lines.append(f"| all | {len(true)} | {100 * np.mean(err == 0):.1f} | {100 * np.mean(err <= 1):.1f} | "
                 f"{err.mean():.2f} | {conf.mean():.2f} |")
    return "\n".join(lines)


def confusion_png(true: np.ndarray, est: np.ndarray, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.common.atomic import atomic_path

    n = P.N_STEPS
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (true.astype(int), est.astype(int)), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm, cmap="Blues")
    for i, j in zip(*np.nonzero(cm)):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n)), ax.set_yticks(range(n))
    ax.set_xlabel("estimated step"), ax.set_ylabel("true step"), ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def non_text_frames(steps=(2, 8, 15)) -> dict[str, np.ndarray]:
    """Full-size float frames that are not text: blank (the step-5 background), saturated, black,
    and a natural photo (skimage's camera) shown on the display and seen through each of `steps`."""
    from skimage import data, transform

    from pipelines.simulation.scene import DISPLAY_SHAPE
    from pipelines.simulation.simulate import blurred_camera, rng_for

    frames = {"blank": blurred_camera(np.ones(DISPLAY_SHAPE, np.float32), 5, rng_for(1, 5, 0, 0)),
              "saturated": np.ones(P.IMAGE_SHAPE, np.float32),
              "black": np.zeros(P.IMAGE_SHAPE, np.float32)}
    photo = transform.resize(data.camera().astype(np.float32) / 255, DISPLAY_SHAPE, anti_aliasing=True)
    for s in steps:
        frames[f"photo step {s}"] = blurred_camera(photo.astype(np.float32), s, rng_for(1, s, 1, 0))
    return frames


def thumbnail_rows(folder) -> list[tuple[str, int, object]]:
    """(name, true step, Estimate) for every 1:10 thumbnail PNG in `folder`."""
    import re

    from PIL import Image

    from deblur.estimate import decide, default_table, features

    rows = []
    for path in sorted(Path(folder).glob("*.png")):
        m = re.search(r"[Ss]tep_?(\d+)", path.name)
        if not m:
            continue
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"), dtype=np.float32) / 255
        rows.append((path.name, int(m.group(1)), decide(features(a, scale=10.0), default_table())))
    return sorted(rows, key=lambda r: (r[1], r[0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.estimate_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="simulated data (either layout)")
    ap.add_argument("--confusion", type=Path, default=None, help="write the confusion matrix PNG here")
    ap.add_argument("--no-calibration", action="store_true", help="ignore the LSF shots in the folders")
    ap.add_argument("--workers", type=int, default=2, help="processes for the wall-time figure (2)")
    ap.add_argument("--non-text", action="store_true", help="also estimate frames that are not text")
    ap.add_argument("--thumbnails", type=Path, default=None, help="also estimate the real 1:10 thumbnails here")
    args = ap.parse_args(argv)

    from deblur.estimate import default_table, estimate
    from pipelines.common.errors import DataError
    from pipelines.reading.hdc import find_samples

    try:
        samples = find_samples(args.data)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not samples:
        print(f"error: {args.data}: no text samples", file=sys.stderr)
        return 2
    calibration = not args.no_calibration
    rows, wall1 = run(samples, calibration, 1)
    true = np.array([s.step for s in samples])
    est, conf = rows[:, 0].astype(int), rows[:, 2]
    fitted = default_table().get("fitted_on", {})
    print(f"{len(samples)} images of {args.data}; table fitted on seed {fitted.get('seed')}; "
          f"LSF calibration {'used' if calibration else 'ignored'}\n")
    print(accuracy_table(true, est, conf))
    wrong = est != true
    if wrong.any():
        print(f"\nmean confidence: right {conf[~wrong].mean():.3f}, wrong {conf[wrong].mean():.3f}")
    for font in ("Times", "Verdana"):
        m = np.array([s.font == font for s in samples])
        print(f"{font}: exact {100 * np.mean(est[m] == true[m]):.1f} %, "
              f"within +-1 {100 * np.mean(np.abs(est[m] - true[m]) <= 1):.1f} %")
    if args.confusion:
        title = (f"deblur.estimate on {len(samples)} simulated images ({args.data.name}); "
                 f"exact {100 * np.mean(~wrong):.1f} %, within +-1 {100 * np.mean(np.abs(est - true) <= 1):.1f} %")
        confusion_png(true, est, args.confusion, title)
        print(f"wrote {args.confusion}")

    t = rows[:, 3]
    print(f"\n| timing ({len(samples)} full-size images) | s per image |\n|---|---|")
    print(f"| read + estimate, 1 process: median / mean / max | {np.median(t):.3f} / {t.mean():.3f} / {t.max():.3f} |")
    if args.workers > 1:
        _, wall = run(samples, calibration, args.workers)
        print(f"| wall time per image, {args.workers} processes | {wall / len(samples):.3f} |")
    print(f"| wall time per image, 1 process (incl. LSF fits once per folder) | {wall1 / len(samples):.3f} |")

    if args.non_text:
        print("\n| frame | step | radius px | confidence | warning |\n|---|---|---|---|---|")
        for name, frame in non_text_frames().items():
            e = estimate(frame)
            print(f"| {name} | {e.step} | {e.radius_px:.0f} | {e.confidence:.3f} | {e.warning or ''} |")
    if args.thumbnails:
        print("\n| real thumbnail (1:10) | true step | table radius px | estimated step | radius px | confidence |"
              "\n|---|---|---|---|---|---|")
        for name, step, e in thumbnail_rows(args.thumbnails):
            print(f"| {name} | {step} | {P.RADIUS_PX[step]} | {e.step} | {e.radius_px:.0f} | {e.confidence:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
