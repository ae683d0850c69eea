"""Text layout of sharp (CAM01) images: measure the ink extents of the three lines, and compare the
simulator's layout with the real HDC2021 images.

    python -m pipelines.simulation.layout [--samples 200] [--seed 0]  # fidelity table (markdown)
    python -m pipelines.simulation.layout --image SHARP.tif            # extents of one real image

Extents are in camera pixels: x from the first to the last ink column of a line, y from the top of
its tallest glyph to its lowest descender (as in ../shared/hdc2021/README.md, 5.1).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..reading import physics as P

# Ink extents measured on real full-size CAM01 images (issue 12; shared README 5.1):
# (x0, x1, y0, y1) per line.
REAL_EXTENTS = {
    "Times": {
        "step 3, sample 0001 (fixture)": [(207, 1985, 345, 575), (642, 1731, 624, 853), (422, 1912, 902, 1132)],
        "step 14, sample 0100": [(436, 1911, 347, 577), (388, 1953, 626, 808), (405, 1953, 905, 1136)],
    },
    "Verdana": {
        "step 15, sample 0100": [(371, 1995, 381, 569), (314, 2069, 677, 864), (381, 1954, 970, 1208)],
    },
}
MIN_INK_PER_LINE = 3   # columns/rows with fewer ink pixels are noise
MIN_LINE_GAP = 20      # rows without ink that separate two lines


def ink_mask(image, threshold: float | None = None) -> np.ndarray:
    """Dark pixels of a sharp image (1 = white): below the midpoint of its 1st and 99th percentiles."""
    a = np.asarray(image, dtype=np.float32)
    if threshold is None:
        lo, hi = np.percentile(a, (1, 99))
        threshold = (lo + hi) / 2
    return a < threshold


def ink_extents(image, n_lines: int = 3, threshold: float | None = None) -> list[tuple[int, int, int, int]]:
    """(x0, x1, y0, y1) ink extents of each text line of a sharp image, top to bottom.

    Lines are runs of rows holding ink, split at gaps of at least MIN_LINE_GAP rows; the
    `n_lines` runs with the most ink are kept. ValueError if fewer are found."""
    ink = ink_mask(image, threshold)
    rows = np.flatnonzero(ink.sum(axis=1) >= MIN_INK_PER_LINE)
    if rows.size == 0:
        raise ValueError("no ink found")
    breaks = np.flatnonzero(np.diff(rows) >= MIN_LINE_GAP)
    runs = np.split(rows, breaks + 1)
    runs = sorted(sorted(runs, key=lambda r: -ink[r].sum())[:n_lines], key=lambda r: r[0])
    if len(runs) < n_lines:
        raise ValueError(f"found {len(runs)} text lines, expected {n_lines}")
    out = []
    for r in runs:
        cols = np.flatnonzero(ink[r[0]:r[-1] + 1].sum(axis=0) >= MIN_INK_PER_LINE)
        out.append((int(cols[0]), int(cols[-1]), int(r[0]), int(r[-1])))
    return out


def simulated_extents(font_name: str, samples: int, seed: int = 0, with_text: bool = False):
    """(samples, 3, 4) ink extents of noise-free simulated CAM01 scenes (random text, as the
    simulator); with `with_text` also the (samples, 3) texts."""
    from .scene import random_text, render_text, sample_camera

    rng = np.random.default_rng([seed, 12])
    out, texts = [], []
    for _ in range(samples):
        text = random_text(rng)
        out.append(ink_extents(sample_camera(render_text(text, font_name)), threshold=0.5))
        texts.append(text)
    return (np.array(out, dtype=float), texts) if with_text else np.array(out, dtype=float)


def fidelity_rows(samples: int = 200, seed: int = 0) -> list[dict]:
    """Per font and line: simulated centre/width/top/bottom (mean, min-max) beside the real figures."""
    rows = []
    for font_name, real in REAL_EXTENTS.items():
        sim = simulated_extents(font_name, samples, seed)
        real_arr = np.array(list(real.values()), dtype=float)  # (images, 3, 4)
        for line in range(3):
            s, r = sim[:, line], real_arr[:, line]
            stats = {}
            for name, sv, rv in (("centre", (s[:, 0] + s[:, 1]) / 2, (r[:, 0] + r[:, 1]) / 2),
                                 ("width", s[:, 1] - s[:, 0], r[:, 1] - r[:, 0]),
                                 ("top", s[:, 2], r[:, 2]), ("bottom", s[:, 3], r[:, 3])):
                stats[name] = {"sim_mean": float(sv.mean()), "sim_min": float(sv.min()),
                               "sim_max": float(sv.max()), "real": [float(v) for v in rv]}
            rows.append({"font": font_name, "line": line + 1, **stats})
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(d):
        real = "/".join(f"{v:.0f}" for v in d["real"])
        return f"{d['sim_mean']:.0f} ({d['sim_min']:.0f}-{d['sim_max']:.0f}) | {real}"
    head = ("| font | line | centre x sim mean (min-max) | real | width sim | real | top y sim | real "
            "| bottom y sim | real |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['font']} | {r['line']} | " + " | ".join(cell(r[k]) for k in
                                                                ("centre", "width", "top", "bottom")) + " |")
    return "\n".join(lines)


def _load_any(path) -> np.ndarray:
    """A sharp image as float (1 = white): 16-bit TIFF through the reader, else any Pillow format."""
    from ..common.errors import DataError
    from ..reading.hdc import load_tiff
    if str(path).lower().endswith((".tif", ".tiff")):
        return load_tiff(path, expect_shape=None)
    from PIL import Image
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255
    except OSError as e:
        raise DataError(path, f"cannot read the image ({e})") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.simulation.layout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200, help="simulated scenes per font")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", help="print the ink extents of one sharp image instead")
    args = ap.parse_args(argv)
    if args.image:
        from ..common.errors import DataError
        try:
            img = _load_any(args.image)
            ext = ink_extents(img)
        except (DataError, ValueError) as e:
            print(f"error: {args.image}: {e}", file=sys.stderr)
            return 2
        for i, (x0, x1, y0, y1) in enumerate(ext, 1):
            print(f"line {i}: x {x0}-{x1} (centre {(x0 + x1) / 2:.0f}, width {x1 - x0}), y {y0}-{y1}")
        return 0
    if args.samples < 1:
        ap.error("--samples must be at least 1")
    print(markdown(fidelity_rows(args.samples, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
