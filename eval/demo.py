"""The main job on the embedded default: simulate a small HDC2021 evaluation set and score it.

    python -m eval.demo [--out out/demo] [--steps 0-19] [--samples 2] [--seed 9001]

Scores the `sharp` (CAM01, the ceiling) and `identity` (raw blurred CAM02) methods with the
official OCR scorer per blur step; prints the table and writes CSV, JSON and a PNG plot to --out.
The trained-model and classical-baseline methods join this table as their issues land.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from pipelines.atomic import atomic_path, write_text_atomic
from pipelines.hdc import find_samples, load_tiff
from pipelines.physics import parse_steps
from pipelines.simulate import simulate

from .ocr import official_score, score_many

PASS = 70


def leaderboard(samples, methods=("sharp", "identity"), workers=None) -> list[dict]:
    """Mean official score per (method, step); failures count as 0."""
    rows = []
    for method in methods:
        pairs = [(load_tiff(s.sharp if method == "sharp" else s.blurred), "\n".join(s.text)) for s in samples]
        results = score_many(pairs, workers=workers)
        for step in sorted({s.step for s in samples}):
            idx = [i for i, s in enumerate(samples) if s.step == step]
            scores = [official_score(results[i]) for i in idx]
            rows.append({"method": method, "step": step, "n": len(idx), "score": float(np.mean(scores)),
                         "failures": sum(results[i].score is None for i in idx),
                         "cer": float(np.mean([results[i].cer for i in idx]))})
    return rows


def highest_step_passed(rows, method) -> int:
    """Challenge rule: every step from 0 up to it passed (-1 if step 0 fails)."""
    best = -1
    for r in sorted((r for r in rows if r["method"] == method), key=lambda r: r["step"]):
        if r["step"] != best + 1 or r["score"] < PASS:
            break
        best = r["step"]
    return best


def plot(rows, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["step"], r["score"]) for r in rows if r["method"] == method]
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.axhline(PASS, color="gray", ls="--", lw=1, label="pass (70)")
    ax.set(xlabel="blur step", ylabel="mean official OCR score", ylim=(-2, 102), xticks=range(20))
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--samples", type=int, default=2, help="samples per font per step")
    ap.add_argument("--seed", type=int, default=9001, help="never used for training data")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        steps = parse_steps(args.steps)
    except ValueError as e:
        ap.error(str(e))
    data = args.out / "data"
    summary = simulate(data, steps, args.samples, args.seed, layout="eval", workers=args.workers)
    print(f"simulated {summary['pairs']} pairs in {summary['seconds']:.1f} s")
    rows = leaderboard(find_samples(data), workers=args.workers)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"\n{'step':>4} " + " ".join(f"{m:>10}" for m in methods))
    for step in steps:
        print(f"{step:>4} " + " ".join(f"{next(r['score'] for r in rows if r['method'] == m and r['step'] == step):>10.1f}"
                                        for m in methods))
    print("highest step passed: " + ", ".join(f"{m} {highest_step_passed(rows, m)}" for m in methods))
    with atomic_path(args.out / "leaderboard.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_text_atomic(args.out / "leaderboard.json", json.dumps(
        {"rows": rows, "highest_step_passed": {m: highest_step_passed(rows, m) for m in methods}}, indent=2))
    plot(rows, args.out / "leaderboard.png")
    print(f"wrote {args.out / 'leaderboard.csv'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
