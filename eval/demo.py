"""The main job on the embedded default: simulate a small HDC2021 evaluation set and score it.

    python -m eval.demo [--out out/demo] [--steps 0-19] [--samples 2] [--seed 9001] [--workers N]
        [--methods sharp,identity,wiener,rl[,model]] [--model PATH]

Simulates the evaluation layout (seed 9001: never used for training or tuning) under --out/data,
then runs the leaderboard (`eval.score`) on it: `sharp` (CAM01, the ceiling), `identity` (raw
blurred CAM02), the classical baselines `wiener` and `rl`, and `model` when a model file is there
(--model, or the shipped deblur/models/default.keras). The simulated set holds the sanity-check
photos too, so the leaderboard shows the sanity column (docs/sanity.md) and "highest step passed"
with and without it. Prints the tables and writes leaderboard.csv/.json/.png, montage.png and the
output images to --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common.errors import DataError
from pipelines.reading.physics import parse_steps
from pipelines.simulation.simulate import simulate

from .score import (DEFAULT_METHODS, PASS, aggregate, default_methods,  # noqa: F401 (re-exported)
                    evaluate, format_sanity, format_table, highest_step_passed, parse_methods, plot)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--samples", type=int, default=2, help="samples per font per step")
    ap.add_argument("--seed", type=int, default=9001, help="never used for training data")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--methods", default=None,
                    help="comma-separated (default: sharp,identity,wiener,rl, plus model when its file exists)")
    ap.add_argument("--model", type=Path, default=None, help="a .keras model (default: the shipped one)")
    args = ap.parse_args(argv)
    try:
        steps = parse_steps(args.steps)
        methods = parse_methods(args.methods) if args.methods else default_methods(args.model)
    except ValueError as e:
        ap.error(str(e))
    if args.samples < 1:
        ap.error("--samples must be at least 1")
    data = args.out / "data"
    summary = simulate(data, steps, args.samples, args.seed, layout="eval", workers=args.workers)
    print(f"simulated {summary['pairs']} pairs in {summary['seconds']:.1f} s")
    try:
        result = evaluate(data, methods, steps, args.out, workers=args.workers, model=args.model)
    except (DataError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print()
    print(format_table(result["rows"]))
    print()
    print(format_sanity(result["rows"], True, PASS))
    print(f"\nwrote {args.out}/leaderboard.csv, leaderboard.json, leaderboard.png, montage.png and images/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
