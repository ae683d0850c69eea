"""Simulated CAM02 images beside the real HDC2021 thumbnails, at the same steps and scale.

    python -m pipelines.simulation.calibration_figure [--fixtures ../shared/hdc2021/fixtures]
        [--out docs/calibration.png]

Prints, per thumbnail, the 1st/50th/99th percentiles (8-bit) of the real and the simulated image.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..common.atomic import atomic_path
from .scene import random_text, render_text
from .simulate import blurred_camera, rng_for

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "hdc2021" / "fixtures"
THUMB_RE = re.compile(r"cam02_(?:focusStep_|step)(\d+)_(timesR|sample)")


def thumbnail(img: np.ndarray, factor: int = 10) -> np.ndarray:
    """8-bit, 10x box-down-scaled, like the real thumbnails."""
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    small = img[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return np.clip(small * 255, 0, 255)


def build(fixtures: Path, out: Path, seed: int = 2021) -> list[dict]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thumbs = sorted((fixtures / "thumbnails").glob("*.png"),
                    key=lambda p: (int(THUMB_RE.search(p.name).group(1)), p.name))
    if not thumbs:
        raise FileNotFoundError(f"no thumbnails in {fixtures / 'thumbnails'}")
    rows = []
    fig, axes = plt.subplots(len(thumbs), 2, figsize=(8, 2.1 * len(thumbs)))
    for i, path in enumerate(thumbs):
        m = THUMB_RE.search(path.name)
        step, font = int(m.group(1)), "Times" if m.group(2) == "timesR" else "Verdana"
        real = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        rng = rng_for(seed, step, 0, i)
        sim = thumbnail(blurred_camera(render_text(random_text(rng), font), step, rng))
        rows.append({"thumbnail": path.name, "step": step,
                     "real_p1_p50_p99": np.percentile(real, [1, 50, 99]).round(1).tolist(),
                     "sim_p1_p50_p99": np.percentile(sim, [1, 50, 99]).round(1).tolist()})
        for ax, img, title in ((axes[i, 0], real, f"real CAM02, step {step}"),
                               (axes[i, 1], sim, f"simulated CAM02, step {step} ({font})")):
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.simulation.calibration_figure", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", type=Path, default=Path("docs/calibration.png"))
    args = ap.parse_args(argv)
    rows = build(args.fixtures, args.out)
    print(f"{'thumbnail':52s} {'real p1/p50/p99':>20s} {'sim p1/p50/p99':>20s}")
    for r in rows:
        print(f"{r['thumbnail']:52s} {'/'.join(f'{v:.0f}' for v in r['real_p1_p50_p99']):>20s} "
              f"{'/'.join(f'{v:.0f}' for v in r['sim_p1_p50_p99']):>20s}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
