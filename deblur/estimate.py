"""Estimate the blur step of a blurred CAM02 image from the image alone.

    python -m deblur.estimate PATH... [--table FILE] [--no-calibration]
        one line per image (PATH: image files or folders of them): <file> <step> <radius_px> <confidence>
    python -m deblur.estimate --fit DATA_DIR [--out FILE]
        refit the per-step table (estimate_table.json) on simulated TRAINING data, e.g.
        python -m pipelines.simulate --out data/fit4243 --steps 0-19 --samples 4 --seed 4243 --workers 1
        python -m deblur.estimate --fit data/fit4243

Two cues give a posterior over the 20 steps:

1. The spectrum. The out-of-focus blur is a disc whose transfer function 2 J1(k r) / (k r) has
   rings of zeros (k r = 3.83, 7.02, 10.17, ...); text has a smooth, broadband spectrum. The radially
   averaged log power spectrum (of the vignetting-corrected 1:4 image, and of a 1:2 central crop
   where the small discs of steps 0-3 show; the down-scaling's own box blur divided out) is
   therefore a smooth baseline plus log |H_r(k)|^2: for every radius
   r of a log grid (and a few noise floors that fill the dips), a smooth baseline (cubic in log k)
   is fitted by least squares together with the fixed template; the residual res(r) says how well
   r explains the dips; the two spectra's log(res / min res) are added. It locates the radius to
   a few per cent from step 1 to step 19 (step 0's 3 px comes out ~4 px: the display's pixel
   staircase puts similar dips into the text's own spectrum).
2. The contrast. The darkest text after dividing out the background (minus the 0.5th percentile)
   falls with the step: the measured gain/offset of `pipelines.reading.physics` and the blur
   spreading the strokes. It separates steps 0-3 sharply and rules out far-off spectral minima at
   large steps; a model-mismatch spread (CONTRAST_MISMATCH) keeps it from outvoting a clear spectrum
   on real images, whose heavier glyphs keep more contrast than the simulation's.

    log posterior(s) = -n_eff / 2 * S_s - (log c - mu_s)^2 / (2 sd_s^2) - log sd_s

with S_s the best summed log residual ratio over the radii nearest step s (log mid-points of the table's radii,
or of radii measured from LSF calibration shots in the image's folder, which replace the table's),
and mu_s, sd_s, n_eff from estimate_table.json (fitted on simulated training data by `--fit`).
The confidence is the posterior of the chosen step times the image's text-likeness (text is dark
marks on a flat background: a blank, saturated or natural-photo frame scores near 0 and gets a
warning). TensorFlow is never imported here.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import special

from pipelines.common.atomic import write_text_atomic
from pipelines.common.errors import DataError
from pipelines.preprocessing.preprocess import downscale, remove_vignetting
from pipelines.reading import physics as P
from pipelines.reading.hdc import is_calibration
from pipelines.reading.images import image_files, load_image

FACTOR = 4                       # work at 1:4: 365 x 590 for a full-size image
FINE_FACTOR = 2                  # ... and at 1:2 on a central crop, where the small discs show
FINE_CROP = (768, 1536)          # full-size px (rows, columns) around the centre: the text block
RADII = np.exp(np.linspace(math.log(1.5), math.log(300.0), 200))  # candidate radii, full-size px
NOISE_FLOORS = (1e-4, 1e-3, 1e-2, 1e-1)  # fill the template's zeros (noise, soft edge, anisotropy)
BINS_PER_PX = 0.44               # radial bins per pixel of the shorter side (160 at 1:4)
FIRST_BIN = 3                    # the lowest frequencies are the layout, not the blur
BASELINE_DEGREE = 3              # the text's smooth spectrum: cubic in log k
TABLE_FILE = Path(__file__).with_name("estimate_table.json")
LOW_CONFIDENCE = 0.5             # below this a warning is printed
MIN_SIDE = 64                    # full-size px per side: smaller has no spectrum to speak of
N_EFF_GRID = (2, 4, 8, 16, 32, 64)
SD_FLOOR = 0.02                  # the contrast's per-step spread is never taken tighter than this
# Simulation vs reality: the real glyphs are heavier (README, calibration), the real 1:10 thumbnails
# keep 0.1-0.25 more log contrast than simulated images at steps 4-5; this spread is added to every
# step's so that the contrast cannot outvote a clear spectrum there (steps 0-3 differ by 0.1-0.3).
CONTRAST_MISMATCH = 0.15


@dataclass
class Estimate:
    step: int
    radius_px: float             # the best-fitting disc radius near the step, full-size px
    confidence: float            # posterior of the step x text-likeness, in [0, 1]
    posterior: np.ndarray = field(repr=False)  # (20,) over the steps
    textness: float = 1.0
    warning: str | None = None

    def line(self, name) -> str:
        return f"{name} {self.step} {self.radius_px:.1f} {self.confidence:.3f}"


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------

def corrected_small(image, factor=FACTOR) -> np.ndarray:
    """Full-size float image in [0, 1] -> 1:`factor`, background divided out (0 = background)."""
    x, _ = remove_vignetting(downscale(np.asarray(image, dtype=np.float32), factor), "divide")
    return x


def radial_log_power(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres in cycles/px, mean log power per bin, pixels per bin) of a Hann-windowed image.
    Averaging the log keeps the disc's zeros (isotropic) while the text's anisotropy averages out."""
    h, w = x.shape
    n_bins = max(16, int(round(BINS_PER_PX * min(h, w))))
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2((x - x.mean()) * win)) ** 2
    k = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    b = np.minimum((k * (2 * n_bins)).astype(np.int64), n_bins).ravel()  # bins up to Nyquist
    count = np.bincount(b, minlength=n_bins + 1)[:n_bins]
    # undo the area-mean down-scaling's own blur (a 1-px box at this scale) before averaging
    box = (np.sinc(np.fft.fftfreq(h))[:, None] * np.sinc(np.fft.rfftfreq(w))[None, :]) ** 2
    total = np.bincount(b, (np.log(power + 1e-30) - np.log(box)).ravel(), minlength=n_bins + 1)[:n_bins]
    centres = (np.arange(n_bins) + 0.5) / (2 * n_bins)
    return centres, total / np.maximum(count, 1), count


def disc_log_transfer(k: np.ndarray, radius: float, floor: float) -> np.ndarray:
    """log(|H|^2 + floor) of the simulator's soft-edged disc (radius px at this scale; k cycles/px):
    the hard disc's Airy pattern times the Gaussian edge's transfer."""
    x = 2 * np.pi * k * radius
    airy = np.where(x > 1e-6, 2 * special.j1(x) / np.maximum(x, 1e-6), 1.0)
    sigma = P.EDGE_FRACTION * radius / 2.563  # 10-90 % width of a Gaussian step = 2.563 sigma
    return np.log(airy ** 2 * np.exp(-(2 * np.pi * k * sigma) ** 2) + floor)


@lru_cache(maxsize=8)
def _projected_templates(n_bins: int, counts: tuple, factor: float):
    """The weighted baseline's orthonormal basis Q and every template with the baseline projected
    out, (bins, radii x floors): the least squares of all candidates become one matrix product."""
    centres = (np.arange(n_bins) + 0.5) / (2 * n_bins)
    sel = slice(FIRST_BIN, n_bins)
    k, wt = centres[sel], np.sqrt(np.asarray(counts, dtype=np.float64)[sel])
    lk = np.log(k)
    q, _ = np.linalg.qr(np.stack([lk ** j for j in range(BASELINE_DEGREE + 1)], 1) * wt[:, None])
    t = np.stack([disc_log_transfer(k, r / factor, f) for r in RADII for f in NOISE_FLOORS], 1) * wt[:, None]
    return q, t - q @ (q.T @ t), wt


def spectral_residuals(x: np.ndarray, factor=FACTOR) -> tuple[np.ndarray, float]:
    """(residual per candidate radius of RADII, residual of the baseline alone)."""
    centres, logp, count = radial_log_power(x)
    q, tp, wt = _projected_templates(len(centres), tuple(int(c) for c in count), float(factor))
    y = logp[FIRST_BIN:] * wt
    yp = y - q @ (q.T @ y)
    res = ((yp[:, None] - tp) ** 2).sum(0).reshape(len(RADII), len(NOISE_FLOORS)).min(1)
    return res, float((yp ** 2).sum())


def text_signal(x: np.ndarray) -> tuple[float, float, float]:
    """(dark, bright, noise): minus the 0.5th and the 99.5th percentile of the corrected image and
    its pixel noise (robust, from neighbour differences). Text is one-sided: dark marks only."""
    lo, hi = np.percentile(x, (0.5, 99.5))
    d = np.diff(x, axis=1).ravel()
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)
    return float(-lo), float(hi), noise


def textness(dark: float, bright: float, noise: float) -> tuple[float, str | None]:
    """Text-likeness in [0, 1] and, when low, why. Text is dark marks on a flat background: the
    darkest pixels stand well above the noise (simulated text: >= 15 noise sigmas at step 19, a
    blank frame ~4), and nothing is much brighter than the background (the 99.5th percentile of
    text images is noise, < 8 sigmas; a natural photo's is brighter than its darkest parts are dark)."""
    noise = max(noise, 1e-6)
    signal = float(np.clip((dark / noise - 6.0) / 4.0, 0.0, 1.0))
    if signal < LOW_CONFIDENCE:
        return signal, "no dark marks above the noise (a blank, saturated or empty frame?)"
    one_sided = 1.0 - max(bright - 8.0 * noise, 0.0) / dark
    score = min(signal, float(np.clip((one_sided - 0.3) / 0.4, 0.0, 1.0)))
    if score < LOW_CONFIDENCE:
        return score, "content brighter than the background as well as darker: not text on a white display?"
    return score, None


def blank_reason(image) -> str | None:
    """Why a full-size image (float, [0, 1]) holds nothing to deblur, None if it has dark marks:
    the text-likeness's signal test alone (a natural photo is not blank)."""
    x = corrected_small(image)
    if float(x.std()) <= 1e-7:
        return "flat frame: every pixel the same"
    dark, _, noise = text_signal(x)
    return textness(dark, 0.0, noise)[1]  # no bright side: only the dark-marks test can fail


def central_crop(image: np.ndarray, shape=FINE_CROP) -> np.ndarray:
    h, w = image.shape
    ch, cw = min(shape[0], h), min(shape[1], w)
    return image[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


@dataclass
class Features:
    spectral: np.ndarray         # per RADII: sum over the spectra of log(residual / best residual)
    log_contrast: float
    textness: float
    why: str | None


def features(image, scale: float = 1.0) -> Features:
    """The cues of one image (float, [0, 1]). `scale`: full-size px per pixel of `image`: 1 for a
    CAM02 image (spectra at 1:4 and of a 1:2 central crop), 10 for a 1:10 thumbnail (its own
    spectrum only)."""
    image = np.asarray(image, dtype=np.float32)
    factor = FACTOR if scale == 1 else 1
    x = corrected_small(image, factor)
    dark, bright, noise = text_signal(x)
    tness, why = textness(dark, bright, noise)
    if float(x.std()) <= 1e-7:  # a flat frame: no spectrum to speak of
        return Features(np.zeros(len(RADII)), math.log(max(dark, 1e-4)), 0.0, "flat frame (blank or saturated)")
    spectra = [(x, factor * scale)]
    if scale == 1 and min(image.shape) >= 64 * FINE_FACTOR:
        # no vignetting correction needed: the background is smooth, i.e. below the fitted bins
        fine = downscale(central_crop(image), FINE_FACTOR)
        spectra.append((fine - fine.mean(), FINE_FACTOR))
    spectral = np.zeros(len(RADII))
    for img, f in spectra:
        res, _ = spectral_residuals(img, f)
        spectral += np.log(np.maximum(res, 1e-12) / max(float(res.min()), 1e-12))
    return Features(spectral, math.log(max(dark, 1e-4)), tness, why)


# --------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------

def step_of_radius(radius_px: np.ndarray | float, radii=P.RADIUS_PX) -> np.ndarray:
    """The step whose radius is nearest on a log scale (`radii`: one per step, increasing)."""
    lr = np.log(np.asarray(radii, dtype=np.float64))
    return np.searchsorted((lr[1:] + lr[:-1]) / 2, np.log(radius_px))


def load_table(path=TABLE_FILE) -> dict:
    path = Path(path)
    try:
        table = json.loads(path.read_text())
        mu, sd = np.asarray(table["log_contrast_mean"], float), np.asarray(table["log_contrast_sd"], float)
        float(table["n_eff"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(path, f"not a usable estimator table ({type(e).__name__}: {e})") from None
    if mu.shape != (P.N_STEPS,) or sd.shape != (P.N_STEPS,):
        raise DataError(path, f"the table must have {P.N_STEPS} steps")
    return table


def step_log_likelihoods(f: Features, table: dict, radii=P.RADIUS_PX) -> tuple[np.ndarray, np.ndarray]:
    """(spectral, contrast) log-likelihood of each step."""
    owner = step_of_radius(RADII, radii)
    best = np.full(P.N_STEPS, np.inf)
    np.minimum.at(best, owner, f.spectral)
    spectral = -0.5 * float(table["n_eff"]) * best
    mu = np.asarray(table["log_contrast_mean"], float)
    sd = np.hypot(np.maximum(np.asarray(table["log_contrast_sd"], float), SD_FLOOR), CONTRAST_MISMATCH)
    contrast = -0.5 * ((f.log_contrast - mu) / sd) ** 2 - np.log(sd)
    return spectral, contrast


def decide(f: Features, table: dict, radii=P.RADIUS_PX) -> Estimate:
    spectral, contrast = step_log_likelihoods(f, table, radii)
    logp = spectral + contrast
    post = np.exp(logp - logp.max())
    post /= post.sum()
    step = int(np.argmax(post))
    mine = step_of_radius(RADII, radii) == step
    radius = float(RADII[mine][np.argmin(f.spectral[mine])]) if mine.any() else float(radii[step])
    conf = float(post[step] * f.textness)
    warning = None
    if conf < LOW_CONFIDENCE:
        warning = f"low confidence {conf:.2f}: " + (f.why or "the spectrum and the contrast disagree or fit several steps")
    return Estimate(step, radius, conf, post, f.textness, warning)


def estimate(image, table: dict | None = None, radii=None) -> Estimate:
    """The blur step of a full-size blurred CAM02 image (float in [0, 1]). `radii`: one radius per
    step (full-size px; default the physics table), e.g. with measured radii filled in.
    DataError (a ValueError) naming the size for an image under MIN_SIDE px per side."""
    shape = np.shape(image)
    if len(shape) == 2 and min(shape) < MIN_SIDE:
        raise DataError(None, f"image of {shape[1]} x {shape[0]} px (w x h) is too small to estimate the blur "
                              f"step: at least {MIN_SIDE} px per side")
    return decide(features(image), table or default_table(), radii or P.RADIUS_PX)


@lru_cache(maxsize=1)
def default_table() -> dict:
    return load_table(TABLE_FILE)


# --------------------------------------------------------------------------------------------
# calibration shots
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def folder_radii(folder: str) -> tuple[float, ...]:
    """The per-step radii for images in `folder`: the physics table, with the radius measured from
    the LSF_X / LSF_Y shots there (`pipelines.reading.lsf`, plausibility-checked) where present."""
    from pipelines.reading.lsf import lsf_radius

    radii = list(map(float, P.RADIUS_PX))
    shots: dict[int, list] = {}
    for path in image_files(folder):
        if not re.fullmatch(r"focusStep_\d+_LSF_[XY]", path.stem):
            continue
        _, step, kind = path.stem.split("_", 2)  # focusStep_N_LSF_X
        if int(step) < P.N_STEPS:
            shots.setdefault(int(step), []).append((kind, str(path.resolve())))
    for step, paths in shots.items():
        r = lsf_radius(tuple(paths), step)
        if r is not None:
            radii[step] = r
    # measured radii must keep the order the step assignment relies on
    return tuple(radii) if all(a < b for a, b in zip(radii, radii[1:])) else tuple(map(float, P.RADIUS_PX))


def estimate_file(path, table: dict | None = None, calibration: bool = True) -> Estimate:
    """Estimate one TIFF (DataError naming the file if it cannot be read); with `calibration`, LSF
    shots beside it refine the per-step radii."""
    path = Path(path)
    image = load_image(path, expect_shape=None)
    radii = folder_radii(str(path.parent.resolve())) if calibration else None
    try:
        return estimate(image, table, radii)
    except DataError as e:
        if e.path is None:
            raise DataError(path, e.problem) from None
        raise


# --------------------------------------------------------------------------------------------
# fitting the table on simulated training data
# --------------------------------------------------------------------------------------------

def fit_table(data, progress: bool = True) -> dict:
    """Per-step mean / sd of the log contrast and the spectral weight n_eff (the value of N_EFF_GRID
    with the best log-likelihood of the true steps) from every text image below `data`."""
    from tqdm import tqdm

    from pipelines.reading.hdc import find_samples

    samples = find_samples(data)
    feats, steps = [], []
    for s in tqdm(samples, desc="features", unit="img", disable=not progress):
        feats.append(features(load_image(s.blurred, expect_shape=None)))
        steps.append(s.step)
    steps = np.array(steps)
    missing = sorted(set(range(P.N_STEPS)) - set(steps.tolist()))
    if missing:
        raise DataError(data, f"fitting needs every step 0-{P.N_STEPS - 1}; none of {missing}")
    lc = np.array([f.log_contrast for f in feats])
    table = {"log_contrast_mean": [round(float(lc[steps == s].mean()), 5) for s in range(P.N_STEPS)],
             "log_contrast_sd": [round(float(lc[steps == s].std(ddof=1)) if (steps == s).sum() > 1 else 0.1, 5)
                                 for s in range(P.N_STEPS)]}
    scores = {}
    for n_eff in N_EFF_GRID:
        t = {**table, "n_eff": n_eff}
        logl = []
        for f, s in zip(feats, steps):
            post = decide(f, t).posterior
            logl.append(math.log(max(float(post[s]), 1e-12)))
        scores[n_eff] = float(np.mean(logl))
    # the in-sample likelihood keeps growing with n_eff once every image is right: take the
    # smallest n_eff within 0.01 nats of the best, so confidences are not pushed to 1 for nothing
    best = max(scores.values())
    table["n_eff"] = min(n for n, v in scores.items() if v >= best - 0.01)
    table["n_eff_mean_log_likelihood"] = {str(k): round(v, 4) for k, v in scores.items()}
    seed = None
    try:
        seed = json.loads((Path(data) / "simulation.json").read_text()).get("seed")
    except (OSError, ValueError):
        pass
    table["fitted_on"] = {"data": str(data), "seed": seed, "images": int(len(steps)),
                          "command": f"python -m deblur.estimate --fit {data}"}
    return table


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def expand_paths(paths) -> list[Path]:
    """Files as given; folders -> their images (TIFF, PNG, JPEG) but the calibration shots, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [q for q in image_files(p) if not is_calibration(q)]
        else:
            out.append(p)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deblur.estimate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", metavar="PATH", help="blurred images (.tif, .png, .jpg) or folders of them")
    ap.add_argument("--table", type=Path, default=TABLE_FILE, help="estimator table (default: the shipped one)")
    ap.add_argument("--no-calibration", action="store_true", help="ignore LSF shots beside the images")
    ap.add_argument("--fit", type=Path, metavar="DATA_DIR", help="refit the table on simulated training data")
    ap.add_argument("--out", type=Path, default=TABLE_FILE, help="where --fit writes the table")
    args = ap.parse_args(argv)
    if args.fit is not None:
        try:
            table = fit_table(args.fit)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        write_text_atomic(args.out, json.dumps(table, indent=1) + "\n")
        print(f"wrote {args.out}: n_eff {table['n_eff']}, {table['fitted_on']['images']} images")
        return 0
    if not args.paths:
        ap.error("give image files or folders (or --fit DATA_DIR)")
    try:
        table = load_table(args.table)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = expand_paths(args.paths)
    if not files:
        print(f"error: no images (.tif, .png, .jpg) in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    failed = 0
    for path in files:
        try:
            est = estimate_file(path, table, calibration=not args.no_calibration)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        except Exception as e:  # one bad image must not stop the list
            print(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(est.line(path), flush=True)
        if est.warning:
            print(f"warning: {path}: {est.warning}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
