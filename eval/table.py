"""The README's leaderboard table, made from a leaderboard.csv that `python -m eval.score` wrote.

    python -m eval.table out/score_eval20/leaderboard.csv [--methods model,wiener,identity]
        [--readme README.md]

Prints the mean official OCR score of each method per step (one row per method, in the order
given) with the highest step passed; where the leaderboard has the sanity check (eval.sanity), each
method also gets a row of its per-step median/min rank correlation on the photos (x: the step fails
the check) and the highest step passed under the challenge's full rule (OCR and sanity). With --readme the table replaces the lines between
`<!-- leaderboard:begin -->` and `<!-- leaderboard:end -->` in that file, so a new model's figures go
onto the front page with one command.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from pipelines.common.atomic import write_text_atomic

from .sanity import highest_step_passed_with_sanity
from .score import PASS, format_highest, highest_step_passed

BEGIN, END = "<!-- leaderboard:begin -->", "<!-- leaderboard:end -->"
README_METHODS = ("model", "wiener", "identity")


def read_rows(path) -> list[dict]:
    """The rows of a leaderboard.csv (step int, score float)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"method", "step", "score"} <= set(rows[0]):
        raise ValueError(f"{path}: not a leaderboard.csv of eval.score (needs method, step, score columns)")
    out = []
    for r in rows:
        row = {**r, "step": int(r["step"]), "score": float(r["score"]) if r["score"] not in ("", None) else None}
        for k in ("sanity_median", "sanity_min"):
            row[k] = float(r[k]) if r.get(k) not in ("", None) else None
        row["sanity_passed"] = {"True": True, "False": False}.get(r.get("sanity_passed"))
        out.append(row)
    return out


def table(rows, methods=README_METHODS) -> str:
    """Markdown: step columns, one row per method (missing methods are left out)."""
    present = [m for m in methods if any(r["method"] == m for r in rows)]
    if not present:
        raise ValueError(f"none of the methods {', '.join(methods)} is in the leaderboard")
    steps = sorted({r["step"] for r in rows if r["method"] in present})
    by = {(r["method"], r["step"]): r["score"] for r in rows}
    lines = ["| step | " + " | ".join(map(str, steps)) + " | highest step passed |",
             "|---" * (len(steps) + 2) + "|"]
    sanity = {(r["method"], r["step"]): r for r in rows if r.get("sanity_median") is not None}
    for m in present:
        cells = [f"{by[(m, s)]:.1f}" if by.get((m, s)) is not None else "-" for s in steps]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {format_highest(highest_step_passed(rows, m))} |")
    for m in present:
        if not any((m, s) in sanity for s in steps):
            continue
        cells = []
        for s in steps:
            r = sanity.get((m, s))
            cells.append("-" if r is None else
                         f"{r['sanity_median']:.2f}/{r['sanity_min']:.2f}" + ("" if r["sanity_passed"] else " x"))
        full = format_highest(highest_step_passed_with_sanity(rows, m, PASS))
        lines.append(f"| {m}: sanity | " + " | ".join(cells) + f" | {full} (OCR and sanity) |")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """`text` with the lines between the BEGIN and END markers replaced by `block`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"expected one {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, help="leaderboard.csv written by python -m eval.score")
    ap.add_argument("--methods", default=",".join(README_METHODS), help="rows, in order (default: %(default)s)")
    ap.add_argument("--readme", type=Path, default=None, help="replace the table between the markers in this file")
    args = ap.parse_args(argv)
    try:
        block = table(read_rows(args.csv), [m.strip() for m in args.methods.split(",") if m.strip()])
        if args.readme is not None:
            write_text_atomic(args.readme, replace_block(args.readme.read_text(encoding="utf-8"), block))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(block)
    if args.readme is not None:
        print(f"wrote the table into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
