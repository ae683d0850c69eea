"""A picture of every preparation stage for a few image pairs, to check a prepared set by eye.

    python -m pipelines.preparation.preview --data DIR --out FILE.png [--steps 0-9] [--samples 3]
        [--registration step|pair|table|none] [--registration-pairs 5] [--downscale 7]

(`python -m pipelines.prepare ... --preview [N]` writes the same figure to OUT/preview.png, with the
configuration and step geometry of that run.) One row per pair, pairs spread over the steps; the
columns are the stages exactly as `pipelines.preparation.stages.pair_stages` computes them (the same
functions, no copies): the down-scaled blurred input, its background (vignetting) fit, the
vignetting-corrected image, its median channels, the binarised target in the sharp camera's frame,
the target registered into the blurred frame, a registration check (target edges on the blurred
input: cyan unregistered, red registered; the red outline sits on the blurred glyphs when the
registration is right) and the tile grid (the model's output windows, alternating colours, one
input tile dashed). matplotlib (Agg, no pyplot, imported only here) renders it; the PNG is written
atomically.
"""
from __future__ import annotations

from ..common.threads import one_blas_thread

if __name__ == "__main__":  # before numpy loads (pipelines/common/threads.py says why)
    one_blas_thread()

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from ..common.atomic import atomic_path  # noqa: E402
from ..common.errors import DataError  # noqa: E402
from ..reading import physics as P  # noqa: E402
from ..reading.hdc import find_samples  # noqa: E402
from .stages import (DEFAULT_REGISTRATION, DEFAULT_REGISTRATION_PAIRS, REGISTRATION_MODES,  # noqa: E402
                     estimate_step_geometry, make_config, pair_stages)

DEFAULT_SAMPLES = 3
PANEL_INCHES = (2.3, 1.65)
DPI = 80


def choose_samples(samples, n: int) -> list:
    """`n` samples spread over the steps: if n < number of steps, steps evenly spread (first and
    last included), else every step, then a second sample per step, and so on; fonts alternate
    within a step. Sorted by (step, font, sample)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of preview samples must be at least 1, got {n}")
    groups: dict[int, list] = {}
    for s in sorted(samples, key=lambda s: (s.step, s.font, s.sample_id, str(s.blurred))):
        groups.setdefault(s.step, []).append(s)
    fonts = sorted({s.font for s in samples})
    start: dict[int, int] = {}  # the font a step starts with: alternates over the chosen steps
    picked, rank = [], 0
    while len(picked) < n:
        avail = [st for st in sorted(groups) if len(groups[st]) > rank]
        if not avail:
            break
        k = n - len(picked)
        if k < len(avail):
            avail = [avail[i] for i in dict.fromkeys(np.round(np.linspace(0, len(avail) - 1, k)).astype(int))]
        for st in avail:
            first = start.setdefault(st, len(start) % len(fonts))
            order = fonts[first:] + fonts[:first]  # Times 1, Verdana 1, Times 2, ... or the reverse
            by_font = [[s for s in groups[st] if s.font == f] for f in order]
            picked.append([s for row in _zip_longest(by_font) for s in row][rank])
        rank += 1
    return sorted(picked, key=lambda s: (s.step, s.font, s.sample_id, str(s.blurred)))


def _zip_longest(lists):
    for i in range(max((len(x) for x in lists), default=0)):
        yield [x[i] for x in lists if i < len(x)]


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------

def _range(a, lo=1, hi=99):
    v0, v1 = np.percentile(a, [lo, hi])
    return (float(v0), float(v1)) if v1 > v0 else (float(v0) - 1e-3, float(v1) + 1e-3)


def _edges(target):
    ink = np.asarray(target) < 0.5
    return ink & ~ndimage.binary_erosion(ink)


def _overlay(image, registered, unregistered):
    """RGB: the image in grey, edges of the unregistered target cyan, of the registered one red."""
    lo, hi = _range(image)
    g = np.clip((image - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    rgb[_edges(unregistered)] = (0.0, 0.9, 0.9)
    rgb[_edges(registered)] = (1.0, 0.1, 0.1)
    return rgb


def _geometry_text(params, factor):
    sx, sy, dx, dy = params
    return f"s {sx:.3f}/{sy:.3f} d {dx * factor:+.1f}/{dy * factor:+.1f} (full px)"


def _panels(st, cfg):
    """(title, image, imshow options, extra drawing) per column for one pair's stages."""
    factor = float(cfg["preprocess"]["factor"])
    widths = cfg["preprocess"]["median_widths"]
    grey = {"cmap": "gray"}
    b_lo, b_hi = _range(st["blurred"])
    c_lo, c_hi = _range(st["corrected"])
    bg = st["background"]
    h, w = st["blurred"].shape
    panels = [(f"input 1:{factor:g} ({w}x{h})", st["blurred"], {**grey, "vmin": b_lo, "vmax": b_hi}, None),
              (f"background fit {bg.min():.2f}-{bg.max():.2f}", bg, grey, None),
              ("vignetting removed", st["corrected"], {**grey, "vmin": c_lo, "vmax": c_hi}, None)]
    for i, width in enumerate(widths, start=1):
        panels.append((f"median {width}x{width}", st["channels"][..., i], {**grey, "vmin": c_lo, "vmax": c_hi}, None))
    panels += [("target (sharp frame)", st["target"], {**grey, "vmin": 0, "vmax": 1}, None),
               ("target, registered", st["registered"], {**grey, "vmin": 0, "vmax": 1}, None),
               (f"{cfg['registration']} reg.: {_geometry_text(st['params'], factor)}",
                _overlay(st["blurred"], st["registered"], st["target"]), {}, None),
               (f"tiles {st['grid'].grid_shape[0]}x{st['grid'].grid_shape[1]}, "
                f"{st['grid'].in_size}->{st['grid'].out_size}", st["corrected"],
                {**grey, "vmin": c_lo, "vmax": c_hi}, _draw_grid)]
    return panels


def _draw_grid(ax, grid):
    from matplotlib.patches import Rectangle

    colours = ("#ff3030", "#30a0ff", "#ffd000", "#30d030")
    n = grid.out_size
    for t, (r, c) in enumerate(grid.positions):
        i, j = divmod(t, grid.grid_shape[1])
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), n, n, fill=False, lw=0.8,
                               ec=colours[(i % 2) * 2 + j % 2]))
    rows, cols = grid.grid_shape
    r, c = grid.positions[(rows // 2) * cols + cols // 2]  # a central tile's input extent, dashed
    m = grid.margin
    ax.add_patch(Rectangle((c - m - 0.5, r - m - 0.5), grid.in_size, grid.in_size, fill=False, lw=0.8,
                           ls="--", ec="white"))


def render(rows, path, cfg) -> Path:
    """Draw `rows` = [(label, pair_stages dict), ...] into the PNG `path` (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("nothing to draw: no pairs")
    ncols = len(_panels(rows[0][1], cfg))
    fig = Figure(figsize=(PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * len(rows) + 0.35))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, st) in enumerate(rows):
        for c, (title, image, opts, extra) in enumerate(_panels(st, cfg)):
            ax = axes[r, c]
            ax.imshow(image, interpolation="nearest", **opts)
            if extra is not None:
                extra(ax, st["grid"])
                ax.set_xlim(-0.5, image.shape[1] - 0.5)
                ax.set_ylim(image.shape[0] - 0.5, -0.5)
            ax.set_title(title, fontsize=7, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"pipelines.prepare stages ({cfg['data']})", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.995, bottom=0.01, top=1 - 0.35 / fig.get_figheight(),
                        wspace=0.04, hspace=0.22)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def write_preview(path, samples, cfg: dict, geometry=None) -> Path:
    """Compute every stage of each sample (`pipelines.preparation.stages.pair_stages` with
    configuration `cfg`, `geometry` = step -> geometry for registration "step") and draw them into
    the PNG `path`."""
    samples = list(samples)
    if not samples:
        raise DataError(path, "no samples to preview")
    geometry = geometry or {}
    rows = []
    for s in samples:
        st = pair_stages(s, cfg, geometry.get(s.step))
        rows.append((f"step {s.step} {s.font} {s.sample_id}", st))
    return render(rows, path, cfg)


def preview(data, out, steps=None, samples: int = DEFAULT_SAMPLES, *, factor=7, registration="step",
            registration_pairs=5, in_size=110, out_size=52) -> Path:
    """Choose `samples` pairs of `data` spread over `steps` (default: all steps found), and write
    their preview to `out` with a default prepare configuration."""
    found = find_samples(data, steps=set(steps) if steps is not None else None)
    if not found:
        which = f"steps {list(steps)}" if steps is not None else "any step"
        raise DataError(data, f"no text samples for {which}: nothing to preview")
    chosen = choose_samples(found, samples)
    cfg = make_config(data, sorted({s.step for s in found}), factor=factor, in_size=in_size,
                      out_size=out_size, registration=registration, registration_pairs=registration_pairs)
    geometry = {}
    if registration == "step":
        for step in sorted({s.step for s in chosen}):
            geometry[step] = estimate_step_geometry([s for s in found if s.step == step], cfg)
    return write_preview(out, chosen, cfg, geometry)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.preparation.preview", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="PNG file to write")
    ap.add_argument("--steps", default=None, help="e.g. 0-9 (default: every step found)")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--downscale", type=float, default=7)
    ap.add_argument("--registration", choices=REGISTRATION_MODES, default=DEFAULT_REGISTRATION)
    ap.add_argument("--registration-pairs", type=int, default=DEFAULT_REGISTRATION_PAIRS)
    args = ap.parse_args(argv)
    steps = None
    if args.steps is not None:
        try:
            steps = P.parse_steps(args.steps)
        except ValueError as e:
            ap.error(str(e))
    if args.samples < 1:
        ap.error("--samples needs at least 1")
    try:
        path = preview(args.data, args.out, steps, args.samples, factor=args.downscale,
                       registration=args.registration, registration_pairs=args.registration_pairs)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
