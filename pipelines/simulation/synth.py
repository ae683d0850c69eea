"""Unlimited synthetic training pairs: the simulator's physics evaluated directly at the network's
1:7 working scale, nothing written to disk.

    python -m pipelines.simulation.synth --compare --steps 0-19 --samples 4 --seed 5  # vs the simulator
    python -m pipelines.simulation.synth --preview out/synth.png --steps 0,5,10,15,19  # some pairs
    python -m pipelines.simulation.synth --speed 40                                # pairs/s on one core

`synth_pair(seed, index)` gives what training consumes, deterministic per (seed, index): the input
channels exactly as `preprocess_blurred` makes them from a full-size CAM02 image, and the binarised
target registered into the CAM02 frame (as prepare with `--registration table`).

How the full-size physics (pipelines.simulate) maps to 1:7:
- scene: the display raster sampled by nearest neighbour in the camera's geometry, then block-mean
  down-scaled. Both steps are separable per axis for a scale + shift geometry, so the 1:7 scene is
  exactly Ry @ raster @ Rx.T with two small area-overlap matrices (`area_sampling_matrix`).
- blur: the full-size disc D followed by the 7 x 7 block mean equals, for a scene constant on the
  blocks, a 1:7 convolution with K[m] = (T * D)(7 m) / 49, T the 13-tap triangle (box * box) per
  axis (`small_kernel`); the staircase is not block-constant, the residual is in the compare table.
- gain/offset, vignetting: pointwise (vignetting evaluated at the block centres: smooth).
- noise: independent per full-size pixel, so the block mean has sigma / 7 of the local level.
- flat field: the step's white background under the mean vignetting of four shots (`flat_small`), what
  inference measures on a folder's text images; the vignetting removal takes it where a scene's
  own border is not paper (a photo), as inference does.
- sharp camera: the same scene in CAM01's geometry; its 1.2 px optical blur (0.17 px at 1:7) is
  left out; binarised by `binarise_target` and warped by `warp_to_blurred_frame` like prepare does.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage, signal

from ..preprocessing.preprocess import (PreprocessConfig, _crop_offset, binarise_target, downscale, downscaled_shape,
                                        preprocess_small)
from ..preprocessing.registration import warp_to_blurred_frame
from ..reading import physics as P
from ..reading.psf import disc_kernel
from .nontext import nontext_scene
from .scene import DISPLAY_SHAPE, random_text, render_text, vignetting

FONTS = ("Times", "Verdana")
STREAMS = {"train": 0, "val": 1, "compare": 2}  # disjoint random streams: validation never trains


@dataclass
class SynthPair:
    x: np.ndarray          # (H, W, C) float32 network input (preprocess_small of the 1:7 image)
    y: np.ndarray          # (H, W) float32 target in [0, 1], CAM02 frame (1 = white)
    step: int
    font: str              # "" for a non-text scene
    text: tuple            # () for a non-text scene
    blurred: np.ndarray = field(repr=False, default=None)  # (H, W) the 1:7 CAM02 image before preprocessing
    kind: str = "text"     # "text" or the non-text scene's kind (pipelines.simulation.nontext.KINDS)


# --------------------------------------------------------------------------------------------
# the operators at 1:7 (cached per geometry / step)
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def area_sampling_matrix(n_full: int, factor: int, scale: float, shift: float, n_display: int) -> np.ndarray:
    """(n_small, n_display) matrix: row i = the fraction of the full-size pixels of down-scaled
    pixel i (block mean, `downscale`'s centred crop) that see display pixel j under the camera map
    x_cam = c + scale (x_cam01 - c) + shift (physics' convention), by nearest neighbour."""
    n_small = int(np.floor(n_full / factor + 1e-9))
    off = int(_crop_offset(n_full, n_small, factor))
    c = (n_full - 1) / 2
    x = np.arange(off, off + n_small * factor)
    x1 = c + (x - c - shift) / scale
    j = np.clip(np.floor((x1 + 0.5) / P.DISPLAY_SCALE).astype(int), 0, n_display - 1)
    m = np.zeros((n_small, n_display), np.float32)
    np.add.at(m, ((x - off) // factor, j), 1.0 / factor)
    return m


def scene_small(raster: np.ndarray, geometry: dict | None, factor: int = 7) -> np.ndarray:
    """downscale(sample_camera(raster, geometry), factor), computed at the small scale (exact)."""
    g = geometry or {"scale_x": 1.0, "scale_y": 1.0, "shift_x": 0.0, "shift_y": 0.0}
    h, w = P.IMAGE_SHAPE
    ry = area_sampling_matrix(h, factor, g["scale_y"], g["shift_y"], raster.shape[0])
    rx = area_sampling_matrix(w, factor, g["scale_x"], g["shift_x"], raster.shape[1])
    return ry @ raster.astype(np.float32) @ rx.T


@lru_cache(maxsize=64)
def small_kernel(radius: float, factor: int = 7) -> np.ndarray:
    """The full-size disc of `radius` as a kernel at 1:`factor` (sum 1): (T * D)(factor m) / factor^2
    with T the triangle box * box of the block mean."""
    d = disc_kernel(radius).astype(np.float64)
    tri = np.convolve(np.ones(factor), np.ones(factor))  # 2 factor - 1 taps, peak factor
    td = ndimage.convolve1d(ndimage.convolve1d(np.pad(d, factor), tri, axis=0, mode="constant"),
                            tri, axis=1, mode="constant")
    c = td.shape[0] // 2
    half = c // factor
    idx = c + factor * np.arange(-half, half + 1)
    k = td[np.ix_(idx, idx)]
    return (k / k.sum()).astype(np.float32)


@lru_cache(maxsize=8)
def _block_centres(factor: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = P.IMAGE_SHAPE
    hs, ws = downscaled_shape((h, w), factor)
    oy, ox = int(_crop_offset(h, hs, factor)), int(_crop_offset(w, ws, factor))
    return oy + factor * np.arange(hs) + (factor - 1) / 2, ox + factor * np.arange(ws) + (factor - 1) / 2


def vignetting_small(jitter: float, factor: int = 7) -> np.ndarray:
    rows, cols = _block_centres(factor)
    return vignetting(P.IMAGE_SHAPE, jitter, rows=rows, cols=cols)


# --------------------------------------------------------------------------------------------
# the two cameras at 1:7
# --------------------------------------------------------------------------------------------

def blurred_small(raster: np.ndarray, step: int, rng: np.random.Generator, factor: int = 7,
                  noise: bool = True) -> np.ndarray:
    """CAM02 at 1:factor, as downscale(simulate.blurred_camera(...)) (float32)."""
    ph = P.step_physics(step)
    s = scene_small(raster, ph, factor)
    radiance = P.TEXT_DN / 255 + (P.BACKGROUND_DN - P.TEXT_DN) / 255 * s
    k = small_kernel(ph["radius"], factor)
    half = k.shape[0] // 2
    blurred = signal.fftconvolve(np.pad(radiance, half, mode="edge"), k, mode="valid")
    img = (ph["gain"] * blurred + ph["offset"]) * vignetting_small(rng.uniform(-0.01, 0.01), factor)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    if noise:  # the block mean of factor^2 independent pixels
        img = img + n * P.noise_sigma(img) / factor
    return img.astype(np.float32)


def flat_small(step: int, rng: np.random.Generator, factor: int = 7, images: int = 4) -> np.ndarray:
    """The blurred camera's illumination at 1:factor as a folder's text images measure it
    (`pipelines.preprocessing.flatfield`): the white background of `step` with the vignetting of
    `images` shots averaged (each its own jitter, as in `blurred_small`)."""
    ph = P.step_physics(step)
    jitter = float(np.mean(rng.uniform(-0.01, 0.01, size=images)))
    return ((ph["gain"] * P.BACKGROUND_DN / 255 + ph["offset"]) * vignetting_small(jitter, factor)).astype(np.float32)


def sharp_small(raster: np.ndarray, rng: np.random.Generator, factor: int = 7, noise: bool = True) -> np.ndarray:
    """CAM01 at 1:factor, as downscale(simulate.sharp_camera(...)) (float32; optics blur left out)."""
    s = scene_small(raster, None, factor)
    text, bg = P.TEXT_DN / 255, P.BACKGROUND_DN / 255
    img = (text + (bg - text) * s) * vignetting_small(rng.uniform(-0.01, 0.01), factor)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    if noise:
        lo, hi = P.SHARP_NOISE_DN
        img = img + n * (lo + (hi - lo) * s) / 255 / factor
    return img.astype(np.float32)


def grey_target_small(raster: np.ndarray, step: int, factor: int = 7) -> np.ndarray:
    """Target of a non-text scene: its sharp grey image in the CAM02 frame (noise-free, no
    vignetting), on the text targets' scale: display white 1, display black TEXT_DN / BACKGROUND_DN
    (~0.12, where binarised text strokes sit too)."""
    black = P.TEXT_DN / P.BACKGROUND_DN
    return (black + (1 - black) * scene_small(raster, P.step_physics(step), factor)).astype(np.float32)


def target_small(sharp: np.ndarray, step: int, config: PreprocessConfig, shape) -> np.ndarray:
    """Binarised target registered into the CAM02 frame (prepare's stages, table geometry)."""
    f = float(config.factor)
    t = binarise_target(sharp, config.white_fraction, near_black_radius=config.near_black_radius,
                        black_level=config.black_level)
    ph = P.step_physics(step)
    params = (ph["scale_x"], ph["scale_y"], ph["shift_x"] / f, ph["shift_y"] / f)
    return warp_to_blurred_frame(t, params, output_shape=shape, cval=1.0)


# --------------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------------

def check_request(steps, samples: int | None = None) -> list[int]:
    """Validated step list (ValueError with a one-line message otherwise)."""
    steps = [P.check_step(int(s)) if not isinstance(s, bool) and float(s) == int(s) else P.check_step(s)
             for s in steps]
    if not steps:
        raise ValueError("no blur steps given")
    if samples is not None and int(samples) < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    return steps


def pair_rng(seed: int, index: int, stream: str = "train") -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[stream], int(index)]))


def is_nontext(seed: int, index: int, stream: str, fraction: float) -> bool:
    """Whether pair `index` is a non-text scene; its own random stream, so the text pairs of a
    stream stay the same whatever the fraction."""
    if fraction <= 0:
        return False
    u = np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[stream], int(index), 7])).random()
    return bool(u < fraction)


def synth_pair(seed: int, index: int, steps=tuple(range(P.N_STEPS)), weights=None, *, step: int | None = None,
               font: str | None = None, stream: str = "train", config: PreprocessConfig | None = None,
               noise: bool = True, nontext: float = 0.0, kind: str | None = None) -> SynthPair:
    """Pair number `index` of the stream (`seed`, `stream`): random step (from `steps`, with optional
    sampling `weights`) and font unless given, random text; deterministic per (seed, stream, index).

    A fraction `nontext` of the pairs are procedural non-text scenes (pipelines.simulation.nontext)
    with their sharp grey image as the target; `kind` forces one: "text", "nontext" or a kind
    name."""
    config = config or PreprocessConfig()
    if float(config.factor) != int(config.factor):
        raise ValueError(f"the synthetic stream needs an integer down-scale factor, got {config.factor}")
    f = int(config.factor)
    rng = pair_rng(seed, index, stream)
    if step is None:
        steps = check_request(steps)
        p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        step = int(rng.choice(steps, p=p))
    else:
        rng.random()  # keep the stream aligned whether or not the step is given
        step = P.check_step(step)
    drawn_font = FONTS[int(rng.integers(len(FONTS)))]  # drawn always: the stream stays aligned
    font = font or drawn_font
    if font not in FONTS:
        raise ValueError(f"unknown font {font!r}; known: {FONTS}")
    if kind is None:
        kind = "nontext" if is_nontext(seed, index, stream, nontext) else "text"
    if kind != "text":
        raster, kind = nontext_scene(rng, None if kind == "nontext" else kind)
        blurred = blurred_small(raster, step, rng, f, noise)
        y = grey_target_small(raster, step, f)
        font, text = "", ()
    else:
        text = random_text(rng)
        raster = render_text(text, font)
        sharp = sharp_small(raster, rng, f, noise)
        blurred = blurred_small(raster, step, rng, f, noise)
        y = target_small(sharp, step, config, blurred.shape)
    # the camera's flat field, as inference measures it on the folder's text images: used where the
    # image's own border fit is not paper (a photo); its own random stream keeps the pairs aligned
    flat = flat_small(step, np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[stream], int(index), 11])), f)
    x = preprocess_small(blurred, config, step=step, flat=flat)
    return SynthPair(x, y, step, font, text, blurred, kind)


def full_path_pair(seed: int, index: int, step: int, font: str, stream: str = "compare",
                   config: PreprocessConfig | None = None, noise: bool = True) -> SynthPair:
    """The same scene through the full-size simulator and prepare's stages (for `--compare`)."""
    from ..preprocessing.preprocess import preprocess_blurred
    from .simulate import blurred_camera, sharp_camera

    config = config or PreprocessConfig()
    rng = pair_rng(seed, index, stream)
    rng.random()
    rng.integers(len(FONTS))
    text = random_text(rng)
    raster = render_text(text, font)
    sharp = sharp_camera(raster, rng, noise)
    blurred = blurred_camera(raster, step, rng, noise)
    small = downscale(blurred, config.factor)
    x = preprocess_blurred(blurred, config, step=step)
    y = target_small(downscale(sharp, config.factor), step, config, small.shape)
    return SynthPair(x, y, step, font, text, small)


# --------------------------------------------------------------------------------------------
# compare: fast path vs full simulator
# --------------------------------------------------------------------------------------------

def compare(steps, samples: int = 4, seed: int = 5, progress: bool = True) -> list[dict]:
    """Per step: the fast and the full path on the same scenes (both fonts alternating).

    mad_rel: mean |fast - full| of the noise-free corrected image (input channel 0), relative to the
    step's text contrast (goal <= 1 %); noise_ratio: std of (noisy - noise-free) 1:7 CAM02 image, fast
    over full (goal 0.9-1.1; measured before the background fit, whose own scatter would dominate); target_agree: fraction of target pixels on the same side of 0.5 (>= 99 %);
    fast/full pairs/s: the physics part (scene -> 1:7 image and target) and the whole input."""
    steps = check_request(steps, samples)
    rows = []
    for step in steps:
        mads, fast_noise, full_noise, agree = [], [], [], []
        t_phys = t_fast = t_full = 0.0
        synth_pair(seed, 10**6, step=step)  # warm the per-step caches (kernel, sampling matrices)
        for i in range(samples):
            font = FONTS[i % 2]
            t0 = time.perf_counter()
            full = full_path_pair(seed, i, step, font, noise=False)
            full_n = full_path_pair(seed, i, step, font, noise=True)
            t_full += (time.perf_counter() - t0) / 2
            fast = synth_pair(seed, i, step=step, font=font, stream="compare", noise=False)
            t0 = time.perf_counter()
            fast_n = synth_pair(seed, i, step=step, font=font, stream="compare", noise=True)
            t_fast += time.perf_counter() - t0
            t0 = time.perf_counter()
            rng = pair_rng(seed, i, "compare")
            raster = render_text(fast.text, font)
            target_small(sharp_small(raster, rng), step, PreprocessConfig(), blurred_small(raster, step, rng).shape)
            t_phys += time.perf_counter() - t0
            assert fast.text == full.text
            c = P.text_contrast(step)
            mads.append(float(np.mean(np.abs(fast.x[..., 0] - full.x[..., 0]))) / c)
            fast_noise.append(float(np.std(fast_n.blurred - fast.blurred)))
            full_noise.append(float(np.std(full_n.blurred - full.blurred)))
            agree.append(float(np.mean((fast.y < 0.5) == (full.y < 0.5))))
        row = {"step": step, "mad_rel": float(np.mean(mads)),
               "noise_ratio": float(np.mean(fast_noise) / np.mean(full_noise)),
               "target_agree": float(np.mean(agree)), "physics_pairs_s": samples / t_phys,
               "fast_pairs_s": samples / t_fast, "full_pairs_s": samples / t_full}
        rows.append(row)
        if progress:
            print(format_row(row), flush=True)
    return rows


HEADER = ("| step | mean abs diff / contrast | noise std ratio | target agreement | physics pairs/s "
          "| fast input pairs/s | full simulator + prepare pairs/s |\n|---|---|---|---|---|---|---|")


def format_row(r: dict) -> str:
    return (f"| {r['step']} | {100 * r['mad_rel']:.2f} % | {r['noise_ratio']:.3f} | {100 * r['target_agree']:.2f} % "
            f"| {r['physics_pairs_s']:.0f} | {r['fast_pairs_s']:.1f} | {r['full_pairs_s']:.2f} |")


def speed(n: int = 40, steps=tuple(range(P.N_STEPS)), seed: int = 0) -> dict:
    """Pairs/s in this process (one core) with warm caches: the physics part (scene -> 1:7 CAM02
    image and registered target) and the whole training input (+ vignetting fit, median channels)."""
    config = PreprocessConfig()
    for step in steps:
        synth_pair(seed, 10**6, step=step)
    t_phys = t_pre = 0.0
    for i in range(n):
        rng = pair_rng(seed, i)
        step = steps[i % len(steps)]
        t0 = time.perf_counter()
        raster = render_text(random_text(rng), FONTS[i % 2])
        sharp = sharp_small(raster, rng)
        blurred = blurred_small(raster, step, rng)
        target_small(sharp, step, config, blurred.shape)
        t1 = time.perf_counter()
        preprocess_small(blurred, config, step=step)
        t_pre += time.perf_counter() - t1
        t_phys += t1 - t0
    return {"pairs": n, "physics_pairs_s": n / t_phys, "input_pairs_s": n / (t_phys + t_pre),
            "physics_ms": 1000 * t_phys / n, "median_and_vignetting_ms": 1000 * t_pre / n}


def preview(path, steps, seed: int = 0) -> None:
    """PNG: per step the 1:7 CAM02 image, input channel 0, and the target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..common.atomic import atomic_path

    steps = check_request(steps)
    fig, axes = plt.subplots(len(steps), 3, figsize=(10, 2.1 * len(steps)), squeeze=False)
    for row, step in zip(axes, steps):
        p = synth_pair(seed, step, step=step)
        for ax, img, title in zip(row, (p.blurred, p.x[..., 0], p.y),
                                  (f"step {step} {p.font}: CAM02 1:7", "input channel 0", "target")):
            ax.imshow(img, cmap="gray")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.simulation.synth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", action="store_true", help="fast path vs full simulator, one row per step")
    ap.add_argument("--preview", help="write a PNG of synthetic pairs to this path")
    ap.add_argument("--speed", type=int, metavar="N", help="time N pairs in one process (warm caches)")
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--samples", type=int, default=4, help="scenes per step (--compare)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        steps = P.parse_steps(args.steps)
        check_request(steps, args.samples)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not (args.compare or args.preview or args.speed):
        ap.error("nothing to do: give --compare, --preview PATH and/or --speed N")
    if args.speed:
        s = speed(args.speed, steps, args.seed)
        print(f"one process, {s['pairs']} pairs over steps {args.steps}: physics {s['physics_ms']:.1f} ms/pair "
              f"({s['physics_pairs_s']:.0f} pairs/s); + vignetting fit and median channels "
              f"{s['median_and_vignetting_ms']:.1f} ms/pair; whole input {s['input_pairs_s']:.1f} pairs/s")
    if args.preview:
        preview(args.preview, steps, args.seed)
        print(f"wrote {args.preview}")
    if args.compare:
        print(HEADER)
        compare(steps, args.samples, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
