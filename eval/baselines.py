"""Classical baselines for the leaderboard: Wiener and Richardson-Lucy deconvolution.

Both get the same pre- and post-processing as the network, for a fair comparison:

1. the blurred CAM02 image (float in [0, 1]) is down-scaled 1:7
   (`pipelines.preprocessing.preprocess.downscale`) and its vignetted background divided out
   (`remove_vignetting`, mode "divide": background 0, fully dark text at -c);
2. the contrast is mapped back to the sharp scale, u = 1 + x / c, so that the background is 1 and
   black text 0 (`to_unit`). c = g (W - T) / (g W + o) is the full text contrast of the step,
   from the measured gain g and offset o of `pipelines.reading.physics` and the scene's white W and black
   T: the blurred image is g * blur(sharp) + o, so a linear map is the right inverse;
3. deconvolution at 1:7 with the step's PSF (`step_psf`): the disc model with the radius measured
   from the step's line calibration shots ("lsf"), or the PSF measured from its dot shot ("shot",
   `psf_from_shot`), or, where there are no shots, the disc model `disc_kernel(radius / 7)` of the
   physics table; the image is padded by reflection first so the circular FFT does not wrap;
4. `upscale` back to full size, clip to [0, 1], `pipelines.common.output.to_uint8` (white left
   strip).

Parameters (Wiener's `balance`, Richardson-Lucy's `num_iter`, and "lsf" or "shot") are tuned per
step on TRAINING data by mean official OCR score (`--tune`) and stored in
`eval/baseline_params.json` with the command that produced it:

    python -m eval.baselines --tune --data DIR --steps 0-19 --samples 2 [--workers 1]

Tuned for OCR, both ring all over a photograph (the sanity check, docs/sanity.md): the balances
that read text best (1e-4 to 3e-2) amplify the noise where the disc's spectrum is near zero, and the
text contrast map divides a photo by a "background" fitted to its own border. `wiener-reg`
(`RegularisedWiener`) is the same Wiener deconvolution regularised for general images: the plain
1:7 image (no contrast map) divided by the camera's illumination measured on the text images of the
step in the same folder (`flat_field`: a photo's own border is scene, not background),
the step's LSF-measured disc, balance PHOTO_BALANCE (a plateau from 3 to 30 on the sanity photos),
one global scale to [0, 1]. No single balance serves both: at PHOTO_BALANCE text stays blurred.

TensorFlow is never imported here.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from pipelines.common.atomic import write_text_atomic
from pipelines.common.errors import DataError
from pipelines.common.output import to_uint8
from pipelines.preprocessing.deconv import _padded, disc_psf, wiener  # noqa: F401  (shared with the physics channel)
from pipelines.preprocessing.flatfield import flat_field
from pipelines.preprocessing.preprocess import downscale, remove_vignetting, upscale
from pipelines.reading import physics as P
from pipelines.reading.hdc import find_calibration
from pipelines.reading.images import load_image
from pipelines.reading.lsf import MAX_RADIUS_DEVIATION, lsf_radius  # noqa: F401 (re-exported)
from pipelines.reading.psf import disc_kernel

FACTOR = 7
PARAMS_FILE = Path(__file__).with_name("baseline_params.json")
BASELINES = ("wiener", "rl")
PARAM_NAME = {"wiener": "balance", "rl": "num_iter"}
# Defaults where the table has no entry (no tuning run yet, or a step it did not cover).
DEFAULTS = {"wiener": {"balance": 0.01, "psf": "lsf"}, "rl": {"num_iter": 40, "psf": "lsf"}}
# The tuning grids (per step, both PSF sources).
GRID = {"wiener": (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03), "rl": (20, 40, 80, 160, 320)}
# PSFs tuned over (ties go to the first). The physics table's disc ("disc") is only the fallback:
# on simulated data it is the simulator's own kernel, an oracle real data does not have (its radii
# are known to ~10 %, and a 10 % radius error costs Wiener most of its score at step 8).
PSF_SOURCES = ("lsf", "shot")
RING_WIDTH = 0.5  # px at 1:7, the radial profile of a measured PSF
EVAL_SEEDS = (9001,)  # the simulated evaluation sets: never tune on them
PHOTO_BALANCE = 10.0  # wiener-reg's balance: the middle of the 3-30 plateau (docs/sanity.md)
WHITE_PERCENTILE = 99.5  # wiener-reg's output is scaled so that this percentile is white


# --------------------------------------------------------------------------------------------
# contrast mapping
# --------------------------------------------------------------------------------------------

step_contrast = P.text_contrast  # full text contrast after vignetting division


def to_unit(blurred, step: int, factor=FACTOR) -> np.ndarray:
    """Full-size blurred image (float [0, 1]) -> 1:`factor` image on the sharp scale: background 1,
    black text 0 (blurred text in between)."""
    small = downscale(np.asarray(blurred, dtype=np.float32), factor)
    x, _ = remove_vignetting(small, "divide")
    return (1.0 + x / np.float32(step_contrast(step))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the PSF
# --------------------------------------------------------------------------------------------

def psf_from_shot(shot, radius: float, factor=FACTOR, radial: bool = True) -> np.ndarray:
    """The PSF at 1:`factor` from a PSF calibration shot (a small bright dot on the dark display,
    seen through the blur; float image in [0, 1]).

    Down-scale like the text images, find the dot's centre with a matched filter (a disc of the
    expected `radius`, full-size px) in the central half of the image, subtract the dark background
    (a quadratic fitted robustly to a ring of 1.5-3 radii around the dot), crop a square of
    half-size ~1.5 radii around it, keep only
    values inside 1.3 radii + 2 px (the rest is noise); `radial`: replace it by its mean profile over
    rings (width RING_WIDTH px) around the dot's centre of mass; clip negatives, normalise to sum 1.
    Odd size, centred on the dot, so deconvolving with it does not shift the image.
    """
    small = downscale(np.asarray(shot, dtype=np.float32), factor)
    r = float(radius) / float(factor)
    half = int(math.ceil(1.5 * r + 3))
    # 1. the dot's centre: matched filter on the globally flattened shot, central half of the image
    flat, _ = remove_vignetting(small, "subtract")
    matched = fftconvolve(flat, disc_kernel(max(r, 0.5)), mode="same")
    h, w = small.shape
    inner = matched[h // 4:h - h // 4, w // 4:w - w // 4]
    cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    cy, cx = cy + h // 4, cx + w // 4
    # 2. the dark background under the dot: a quadratic fitted (robustly) to a ring around it;
    #    a fit to the image border extrapolates badly to the centre
    outer = int(math.ceil(3 * r + 12))
    padded = np.pad(small.astype(np.float64), outer, mode="reflect")
    win = padded[cy:cy + 2 * outer + 1, cx:cx + 2 * outer + 1]
    wy, wx = np.mgrid[-outer:outer + 1, -outer:outer + 1].astype(np.float64)
    ring = np.hypot(wy, wx) >= 1.5 * r + 5
    u, v = wx / outer, wy / outer
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], -1)
    coef = np.linalg.lstsq(design[ring], win[ring], rcond=None)[0]
    resid = np.abs(design[ring] @ coef - win[ring])
    keep = resid <= np.quantile(resid, 0.9)
    coef = np.linalg.lstsq(design[ring][keep], win[ring][keep], rcond=None)[0]
    sub = win - design @ coef
    crop = sub[outer - half:outer + half + 1, outer - half:outer + half + 1]
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    support = np.hypot(yy, xx) <= 1.3 * r + 2
    crop = np.where(support, crop, 0.0)
    if radial:
        # sub-pixel centre of mass of the dot, then the mean profile over rings around it, drawn
        # back around the crop's centre pixel: the disc is isotropic within ~6 % (README 5.2) and
        # ring averages beat the noise that swamps single pixels at the large steps
        pos = np.clip(crop, 0, None)
        if pos.sum() > 0:
            oy, ox = (pos * yy).sum() / pos.sum(), (pos * xx).sum() / pos.sum()
        else:
            oy = ox = 0.0
        rho = np.hypot(yy - oy, xx - ox)
        bins = np.floor(rho / RING_WIDTH).astype(int)
        n = int(bins.max()) + 1
        sums = np.bincount(bins.ravel(), crop.ravel(), n)
        counts = np.bincount(bins.ravel(), minlength=n)
        profile = sums / np.maximum(counts, 1)
        centres = (np.arange(n) + 0.5) * RING_WIDTH
        crop = np.interp(np.hypot(yy, xx), centres, profile)
        crop = np.where(support, crop, 0.0)
    crop = np.clip(crop, 0, None)
    if crop.sum() <= 0:
        raise DataError(None, "PSF shot has no bright dot above the background")
    return crop / crop.sum()


@lru_cache(maxsize=64)
def _shot_psf(path: str, step: int, factor: float) -> np.ndarray | None:
    try:
        shot = load_image(path, expect_shape=None)
        return psf_from_shot(shot, P.step_physics(step)["radius"], factor)
    except DataError:
        return None


def measured_radius(data_root, step: int) -> float | None:
    """The blur radius (full-size px) measured from the LSF_X / LSF_Y shots of the step below
    `data_root` (`pipelines.reading.psf.measure_radius_from_lsf`), None if there are none."""
    shots = find_calibration(data_root, step)
    paths = tuple((k, str(Path(shots[k]).resolve())) for k in ("LSF_X", "LSF_Y") if k in shots)
    return lsf_radius(paths, int(step)) if paths else None


def step_psf(data_root, step: int, source: str = "lsf", factor=FACTOR) -> tuple[np.ndarray, str]:
    """(PSF at 1:factor, the source actually used) for one step.

    "lsf": the disc model with the radius measured from the step's line shots below `data_root`;
    "shot": the PSF measured from the step's PSF (dot) shot (`psf_from_shot`);
    "disc": the disc model with the radius of the physics table.
    "lsf" and "shot" fall back to "disc" when the shot is missing or unusable.
    """
    if source not in PSF_SOURCES + ("disc",):
        raise ValueError(f"PSF source must be one of {PSF_SOURCES + ('disc',)}, got {source!r}")
    if source == "lsf" and data_root is not None:
        r = measured_radius(data_root, step)
        if r is not None:
            return disc_kernel(r / float(factor)), "lsf"
    if source == "shot" and data_root is not None:
        path = find_calibration(data_root, step).get("PSF")
        if path is not None:
            psf = _shot_psf(str(Path(path).resolve()), int(step), float(factor))
            if psf is not None:
                return psf.copy(), "shot"
    return disc_psf(step, factor), "disc"


# --------------------------------------------------------------------------------------------
# deconvolution
# --------------------------------------------------------------------------------------------

def richardson_lucy(u, psf, num_iter: int) -> np.ndarray:
    """skimage Richardson-Lucy deconvolution of a non-negative 2-D image (values below 1e-3 are
    raised to it), reflection-padded; no clipping."""
    from skimage.restoration import richardson_lucy as sk_rl

    n = int(num_iter)
    if n < 1:
        raise ValueError(f"Richardson-Lucy needs num_iter >= 1, got {num_iter!r}")
    p, pad = _padded(np.clip(np.asarray(u, dtype=np.float32), 1e-3, None), psf)
    d = sk_rl(p, np.asarray(psf, dtype=np.float32), num_iter=n, clip=False)
    return d[pad:-pad, pad:-pad].astype(np.float32)


def deconvolve_small(u, psf, method: str, value) -> np.ndarray:
    """Deconvolve a 1:7 unit-contrast image with `method` ("wiener" or "rl") and its parameter."""
    if method == "wiener":
        return wiener(u, psf, float(value))
    if method == "rl":
        return richardson_lucy(u, psf, int(value))
    raise ValueError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")


def to_submission(small, full_shape) -> np.ndarray:
    """A deconvolved 1:7 unit-contrast image -> full-size uint8 submission image."""
    return to_uint8(np.clip(upscale(small, full_shape), 0.0, 1.0))


def deblur(blurred, step: int, method: str, value, psf, factor=FACTOR) -> np.ndarray:
    """Full-size blurred float image -> full-size deblurred uint8 submission image."""
    return to_submission(deconvolve_small(to_unit(blurred, step, factor), psf, method, value), np.shape(blurred))


def regularised_wiener(blurred, psf, balance: float = PHOTO_BALANCE, factor=FACTOR, flat=None) -> np.ndarray:
    """Full-size blurred float image -> full-size uint8: Wiener deconvolution of the plain 1:`factor`
    image (no contrast map; divided by `flat`, the camera's illumination at 1:`factor`, if given)
    with `balance`, scaled by one global factor so the WHITE_PERCENTILE-th percentile is white."""
    a = np.asarray(blurred, dtype=np.float32)
    small = downscale(a, factor)
    if flat is not None and np.shape(flat) == small.shape:
        small = small / np.maximum(flat, 1e-3)
    d = upscale(wiener(small, psf, float(balance)), a.shape)
    white = float(np.percentile(d, WHITE_PERCENTILE))
    return to_uint8(np.clip(d / max(white, 1e-6), 0.0, 1.0))


class RegularisedWiener:
    """The `wiener-reg` leaderboard method: `regularised_wiener` with the step's PSF from
    `data_root`'s line shots (the disc of the physics table where there are none) and the
    illumination of the text images of the step in the image's folder (none if it has none)."""

    def __init__(self, data_root=None, balance: float = PHOTO_BALANCE):
        self.data_root, self.balance = data_root, float(balance)
        self._flats: dict = {}

    def __call__(self, sample) -> np.ndarray:
        psf, _ = step_psf(self.data_root, sample.step, "lsf")
        key = (str(Path(sample.blurred).parent), sample.step)
        if key not in self._flats:
            self._flats[key] = flat_field(Path(sample.blurred).parent, sample.step, FACTOR)
        return regularised_wiener(load_image(sample.blurred, expect_shape=None), psf, self.balance,
                                  flat=self._flats[key])


# --------------------------------------------------------------------------------------------
# the parameter table
# --------------------------------------------------------------------------------------------

def load_params(path=PARAMS_FILE) -> dict:
    """The tuned table {method: {step (str): {param: value, "psf": source, ...}}}; {} if absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, f"cannot read the baseline parameter table ({e})") from None
    return table


def params_for(method: str, step: int, table: dict | None = None) -> dict:
    """{param name: value, "psf": source} for a method at a step (tuned, else the default)."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")
    table = load_params() if table is None else table
    entry = table.get(method, {}).get(str(int(step)))
    out = dict(DEFAULTS[method])
    if entry:
        out.update({k: entry[k] for k in (PARAM_NAME[method], "psf") if k in entry})
    return out


class Baseline:
    """A leaderboard method: sample -> uint8 full-size image, with per-step tuned parameters and
    PSFs from `data_root`'s calibration shots (cached per step)."""

    def __init__(self, method: str, data_root=None, table: dict | None = None):
        if method not in BASELINES:
            raise ValueError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")
        self.method = method
        self.data_root = data_root
        self.table = load_params() if table is None else table

    def __call__(self, sample) -> np.ndarray:
        p = params_for(self.method, sample.step, self.table)
        psf, _ = step_psf(self.data_root, sample.step, p["psf"])
        blurred = load_image(sample.blurred, expect_shape=None)
        return deblur(blurred, sample.step, self.method, p[PARAM_NAME[self.method]], psf)


# --------------------------------------------------------------------------------------------
# tuning
# --------------------------------------------------------------------------------------------

def _data_seed(root) -> int | None:
    meta = Path(root) / "simulation.json"
    try:
        return int(json.loads(meta.read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tune(data, steps, samples: int = 2, methods=BASELINES, workers: int | None = 1,
         progress: bool = True) -> dict:
    """Grid search per step and method over GRID x PSF_SOURCES on the first `samples` samples per
    font; best = highest mean official score, then lowest mean CER, then the first candidate
    (PSF_SOURCES order, then the grid's)."""
    from eval.ocr import official_score, score_many
    from eval.samples import select_samples

    chosen = select_samples(data, steps, samples)
    table: dict = {m: {} for m in methods}
    for step in sorted({s.step for s in chosen}):
        step_samples = [s for s in chosen if s.step == step]
        blurred = [load_image(s.blurred, expect_shape=None) for s in step_samples]
        units = [to_unit(b, step) for b in blurred]
        shape = blurred[0].shape
        del blurred
        candidates, pairs = [], []
        psfs = {}
        for source in PSF_SOURCES:
            psf, used = step_psf(data, step, source)
            psfs.setdefault(used, psf)  # without shots every source falls back to "disc": once
        for source, psf in psfs.items():
            for m in methods:
                for v in GRID[m]:
                    for s, u in zip(step_samples, units):
                        pairs.append((to_submission(deconvolve_small(u, psf, m, v), shape), "\n".join(s.text)))
                    candidates.append((m, v, source))
        results = score_many(pairs, workers=workers, progress=progress)
        n = len(step_samples)
        best: dict = {}
        for i, (m, v, source) in enumerate(candidates):
            rs = results[i * n:(i + 1) * n]
            score = float(np.mean([official_score(r) for r in rs]))
            cer = float(np.mean([r.cer for r in rs]))
            if m not in best or (score, -cer) > (best[m]["score"], -best[m]["cer"]):
                best[m] = {PARAM_NAME[m]: v, "psf": source, "score": round(score, 2), "cer": round(cer, 4)}
        for m in methods:
            table[m][str(step)] = best[m]
        if progress:
            print(f"step {step}: " + "; ".join(f"{m} {best[m]}" for m in methods), flush=True)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.baselines", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune", action="store_true", help="tune the per-step parameters (the only action)")
    ap.add_argument("--data", type=Path, required=True, help="TRAINING data (either HDC layout), never the scored set")
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--samples", type=int, default=2, help="first N samples per font per step")
    ap.add_argument("--methods", default=",".join(BASELINES))
    ap.add_argument("--workers", type=int, default=1, help="OCR processes")
    ap.add_argument("--out", type=Path, default=PARAMS_FILE, help="the parameter table to write")
    args = ap.parse_args(argv)
    if not args.tune:
        ap.error("nothing to do: pass --tune")
    try:
        steps = P.parse_steps(args.steps)
    except ValueError as e:
        ap.error(str(e))
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in BASELINES]
    if bad or not methods:
        ap.error(f"unknown baseline(s) {bad}; known: {', '.join(BASELINES)}")
    if args.samples < 1:
        ap.error("--samples must be at least 1")
    if _data_seed(args.data) in EVAL_SEEDS:
        print(f"error: {args.data} is a simulated evaluation set (seed {_data_seed(args.data)}); "
              "tune on training data", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    try:
        table = tune(args.data, steps, args.samples, methods, args.workers)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    old = load_params(args.out) if args.out.is_file() else {}
    for m in methods:  # keep other methods' and steps' entries of an earlier run
        old.setdefault(m, {}).update(table[m])
    cmd = "python -m eval.baselines " + " ".join(argv if argv is not None else sys.argv[1:])
    old.setdefault("_about", {})
    old["_about"].update({
        "command": cmd.strip(), "factor": FACTOR, "grid": {m: list(GRID[m]) for m in BASELINES},
        "psf_sources": list(PSF_SOURCES), "data_seed": _data_seed(args.data),
        "criterion": "mean official OCR score, then mean CER",
        "seconds": round(time.perf_counter() - t0, 1)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(old, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
