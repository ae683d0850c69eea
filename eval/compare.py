"""Paired comparison of two scored runs of `python -m eval.score` on the same images.

    python -m eval.compare out/old out/new [--method model]

Pairs each text image of A with the same image of B (same step and blurred file), and prints per
step the mean official score of A and B and their difference, then over all paired images the
mean paired difference (B - A) with its standard error. On the same images, the paired standard
error is far smaller than the spread of either mean, so it says whether a change beats the noise.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from pipelines.common.errors import DataError


def official_by_image(path, method: str) -> dict[tuple[int, str], int]:
    """{(step, blurred file name): official score} of `method` in a per_image.csv (or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "per_image.csv"
    if not path.is_file():
        raise DataError(path, "no per_image.csv here (a folder or file written by python -m eval.score)")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"method", "step", "official", "blurred"} <= set(rows[0]):
        raise DataError(path, "not a per_image.csv of eval.score (needs method, step, official, blurred)")
    scores = {(int(r["step"]), Path(r["blurred"]).name): int(r["official"]) for r in rows if r["method"] == method}
    if not scores:
        raise DataError(path, f"no images of method {method!r}")
    return scores


def paired(a: dict, b: dict) -> dict:
    """Per step and overall: means of A and B on their common images, and B - A with its standard error."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        raise ValueError(f"the two runs share {len(keys)} scored image(s); a paired comparison needs at least 2")
    steps = {}
    for step in sorted({k[0] for k in keys}):
        ks = [k for k in keys if k[0] == step]
        steps[step] = {"n": len(ks), "a": sum(a[k] for k in ks) / len(ks), "b": sum(b[k] for k in ks) / len(ks)}
    d = [b[k] - a[k] for k in keys]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    return {"steps": steps, "n": len(keys), "a": sum(a[k] for k in keys) / len(keys),
            "b": sum(b[k] for k in keys) / len(keys), "diff": mean, "se": se,
            "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="the reference run: eval.score's --out folder or its per_image.csv")
    p.add_argument("b", help="the run compared with it")
    p.add_argument("--method", default="model", help="the method compared in both (default model)")
    args = p.parse_args(argv)
    try:
        r = paired(official_by_image(args.a, args.method), official_by_image(args.b, args.method))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("| step | images | A | B | B - A |\n|---|---|---|---|---|")
    for step, s in r["steps"].items():
        print(f"| {step} | {s['n']} | {s['a']:.1f} | {s['b']:.1f} | {s['b'] - s['a']:+.1f} |")
    print(f"\n{r['n']} paired images: A {r['a']:.2f}, B {r['b']:.2f}, "
          f"paired difference {r['diff']:+.2f}, standard error {r['se']:.2f}")
    if r["only_a"] or r["only_b"]:
        print(f"not paired (scored in one run only): {r['only_a']} of A, {r['only_b']} of B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
