"""A faithful HDC2021 simulator: same layout, file names, 16-bit TIFFs, text files and physics.

    python -m pipelines.simulate --out DIR --steps 0-19 --samples N --seed S [--layout train|eval]

Each image gets its own random stream derived from (seed, step, font, sample), so the output is
identical whatever the number of workers. All physical numbers live in pipelines/reading/physics.py.

Beside the text, every step gets the calibration shots (PSF, LSF_X, LSF_Y) and the HDC2021 "sanity
check" material, through the same display, optics, geometry, noise and vignetting: a QR-like target
(`focusStep_{N}_QRcode.tif`) and the photographs of `pipelines.simulation.scene.SANITY_PHOTOS`
(`focusStep_{N}_Image_<name>.tif`), in both cameras; in the training layout in both font folders,
like the calibration shots. The photos are for evaluation only (eval.sanity), never for training.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage, signal
from tqdm import tqdm

from ..common.atomic import atomic_path, write_text_atomic
from ..reading import physics as P
from ..reading.psf import disc_kernel
from .scene import SANITY_PHOTOS, random_text, render_photo, render_target, render_text, sample_camera, vignetting

FONT_TAGS = {"Times": "timesR", "Verdana": "verdanaRef"}
TARGETS = ("PSF", "LSF_X", "LSF_Y")


def rng_for(seed: int, step: int, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, step, kind, index]))


def sharp_camera(raster: np.ndarray, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """CAM01: the staircase scene, optics, vignetting and noise; float32 in [0, 1]. (`noise=False`
    still draws the same random numbers, so both versions of a scene share their vignetting.)"""
    s = sample_camera(raster)
    s = ndimage.gaussian_filter(s, P.SHARP_OPTICS_SIGMA_PX, mode="nearest")
    text, bg = P.TEXT_DN / 255, P.BACKGROUND_DN / 255
    img = (text + (bg - text) * s) * vignetting(jitter=rng.uniform(-0.01, 0.01))
    lo, hi = P.SHARP_NOISE_DN
    n = rng.standard_normal(img.shape, dtype=np.float32)
    if noise:
        img += n * ((lo + (hi - lo) * s) / 255)
    return img


def blurred_camera(raster: np.ndarray, step: int, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """CAM02: the same scene in its own geometry, through the step's disc, gain/offset, vignetting,
    brightness-dependent noise; float32 in [0, 1]."""
    ph = P.step_physics(step)
    s = sample_camera(raster, ph)
    text, bg = P.TEXT_DN / 255, P.BACKGROUND_DN / 255
    radiance = text + (bg - text) * s
    k = disc_kernel(ph["radius"]).astype(np.float32)
    half = k.shape[0] // 2
    blurred = signal.fftconvolve(np.pad(radiance, half, mode="edge"), k, mode="valid")
    img = (ph["gain"] * blurred + ph["offset"]) * vignetting(jitter=rng.uniform(-0.01, 0.01))
    n = rng.standard_normal(img.shape, dtype=np.float32)
    if noise:
        img += n * P.noise_sigma(img)
    return img.astype(np.float32)


def to_uint16(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 65535), 0, 65535).astype(np.uint16)


def write_tiff(path: Path, img: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, to_uint16(img), photometric="minisblack")


def layout_folders(root: Path, layout: str, step: int, font: str | None) -> tuple[Path, Path]:
    """(sharp folder, blurred folder) of one step (and font, in the training layout)."""
    if layout == "train":
        base = root / f"step{step}" / (font or "Times")
        return base / "CAM01", base / "CAM02"
    lo = 5 * (step // 5)
    base = root / f"steps_{lo}_to_{lo + 4}"
    return base / "CAM01_focused", base / "CAM02_blurred"


def simulate_sample(seed: int, step: int, font: str, sample: int, stream: int = 0):
    """One text sample as the simulator makes it: (its 3 lines of text, CAM01 sharp, CAM02 blurred),
    the images float32 in [0, 1] (`to_uint16` gives what the TIFFs hold). Its random numbers come
    from (seed, step, stream + the font's index, sample): stream 0 is the data sets' (`simulate`);
    other streams give other scenes through the same path (e.g. deblur.ocr_val's fixed images)."""
    rng = rng_for(seed, step, stream + list(FONT_TAGS).index(font), sample)
    text = random_text(rng)
    raster = render_text(text, font)
    sharp = sharp_camera(raster, rng)
    return text, sharp, blurred_camera(raster, step, rng)


def _write_sample(job) -> str:
    root, layout, seed, step, font, sample = job
    text, sharp, blurred = simulate_sample(seed, step, font, sample)
    sharp_dir, blurred_dir = layout_folders(Path(root), layout, step, font)
    stem = f"focusStep_{step}_{FONT_TAGS[font]}_size_30_sample_{sample:04d}"
    write_tiff(sharp_dir / f"{stem}.tif", sharp)
    write_tiff(blurred_dir / f"{stem}.tif", blurred)
    for folder in (sharp_dir, blurred_dir):
        write_text_atomic(folder / f"{stem}.txt", "\n".join(text))
    return stem


def _write_target(job) -> str:
    """One calibration shot, the QR target or (kind "Image_<name>") a sanity photo, both cameras."""
    root, layout, seed, step, kind = job
    if kind.startswith("Image_"):
        name = kind[len("Image_"):]
        rng = rng_for(seed, step, 200 + SANITY_PHOTOS.index(name), 0)
        raster = render_photo(name)
    else:
        rng = rng_for(seed, step, 100 + (TARGETS + ("QRcode",)).index(kind), 0)
        raster = render_target(kind, rng)
    for font in (("Times", "Verdana") if layout == "train" else (None,)):
        sharp_dir, blurred_dir = layout_folders(Path(root), layout, step, font)
        write_tiff(sharp_dir / f"focusStep_{step}_{kind}.tif", sharp_camera(raster, rng))
        write_tiff(blurred_dir / f"focusStep_{step}_{kind}.tif", blurred_camera(raster, step, rng))
    return kind


def parse_photos(text: str) -> tuple[str, ...]:
    """'camera,moon' -> ('camera', 'moon'); 'none' -> (); ValueError for a photo not in SANITY_PHOTOS."""
    if str(text).strip().lower() == "none":
        return ()
    photos = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    bad = [p for p in photos if p not in SANITY_PHOTOS]
    if bad:
        raise ValueError(f"unknown sanity photo(s) {', '.join(map(repr, bad))}; known: {', '.join(SANITY_PHOTOS)}")
    return photos


def simulate(out, steps, samples: int, seed: int = 0, layout: str = "train",
             workers: int | None = None, progress: bool = True, photos=SANITY_PHOTOS) -> dict:
    """Write a simulated HDC2021 data set; returns a summary (counts, seconds).
    `photos`: the sanity photos to write at every step (a subset of SANITY_PHOTOS; () for none)."""
    if layout not in ("train", "eval"):
        raise ValueError(f"layout must be 'train' or 'eval', got {layout!r}")
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    photos = parse_photos(photos if isinstance(photos, str) else (",".join(photos) or "none"))
    out = Path(out)
    jobs = [(_write_sample, (str(out), layout, seed, s, f, i)) for s in steps for f in FONT_TAGS
            for i in range(1, samples + 1)]
    kinds = TARGETS + ("QRcode",) + tuple(f"Image_{p}" for p in photos)
    jobs += [(_write_target, (str(out), layout, seed, s, k)) for s in steps for k in kinds]
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="simulate", unit="job", disable=not progress)
    if workers == 1:
        for fn, job in jobs:
            fn(job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_call, jobs, chunksize=2):
                bar.update()
    bar.close()
    seconds = time.perf_counter() - t0
    summary = {"layout": layout, "steps": list(steps), "samples_per_font": samples, "seed": seed,
               "pairs": len(steps) * len(FONT_TAGS) * samples, "calibration_jobs": len(steps) * len(kinds),
               "sanity_photos": list(photos),
               "seconds": round(seconds, 2), "physics": P.physics_table()}
    write_text_atomic(out / "simulation.json", json.dumps(summary, indent=2))
    return summary


def _call(item):
    fn, job = item
    return fn(job)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.simulate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output root folder")
    ap.add_argument("--steps", default="0-19", help="blur steps, e.g. 0-19, 3, 0,2,5-9")
    ap.add_argument("--samples", type=int, default=5, help="samples per font per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("train", "eval"), default="train")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--photos", default=",".join(SANITY_PHOTOS),
                    help="sanity photos per step, comma-separated ('none' for none; default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        steps = P.parse_steps(args.steps)
        photos = parse_photos(args.photos)
    except ValueError as e:
        ap.error(str(e))
    s = simulate(args.out, steps, args.samples, args.seed, args.layout, args.workers, photos=photos)
    print(f"wrote {s['pairs']} image pairs ({len(steps)} steps x 2 fonts x {args.samples}) and "
          f"{s['calibration_jobs']} calibration/target/sanity shots in the {args.layout} layout to {args.out} "
          f"in {s['seconds']:.1f} s ({s['pairs'] / s['seconds']:.1f} pairs/s)")
    return 0

