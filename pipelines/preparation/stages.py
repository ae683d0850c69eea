"""One image pair through prepare's stages, and the registration a step's pairs share.

Used by `pipelines.prepare` (which builds the shards from them) and `pipelines.preparation.preview`
(which draws them); kept apart from both so that each imports this one way (prepare -> preview ->
stages).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import DataError
from ..preprocessing.preprocess import PreprocessConfig, binarise_target, downscale, input_channels, remove_vignetting
from ..preprocessing.registration import as_params, estimate_alignment, residual_misalignment, warp_to_blurred_frame
from ..preprocessing.tiling import TileGrid
from ..reading import physics as P
from ..reading.hdc import load_pair
from .shards import FORMAT_VERSION


REGISTRATION_MODES = ("step", "pair", "table", "none")
DEFAULT_REGISTRATION = "step"
DEFAULT_REGISTRATION_PAIRS = 5


def make_config(data, steps, *, factor=7, val_fraction=0.1, seed=0, in_size=110, out_size=52,
                registration=DEFAULT_REGISTRATION, registration_pairs=DEFAULT_REGISTRATION_PAIRS,
                images_per_shard=16, physics="none", physics_balances=()) -> dict:
    """The configuration a prepared set is made with (stored in OUT/prepare_config.json and the
    manifest; a re-run with another one is refused). `physics`: the optional physics input channel
    (PreprocessConfig.physics; "wiener-multi" with `physics_balances`, empty: the default ones)."""
    if registration not in REGISTRATION_MODES:
        raise ValueError(f"registration must be one of {REGISTRATION_MODES}, got {registration!r}")
    pre = PreprocessConfig(factor=factor, physics=physics, physics_balances=tuple(physics_balances or ()))
    cfg = {"format": FORMAT_VERSION, "data": str(Path(data).resolve()), "steps": list(steps),
           "preprocess": pre.to_dict(), "val_fraction": val_fraction,
           "seed": seed, "in_size": in_size, "out_size": out_size, "registration": registration,
           "images_per_shard": images_per_shard}
    if registration == "step":  # only here, so configurations of the other modes stay as before
        if int(registration_pairs) < 1:
            raise ValueError(f"registration_pairs must be at least 1, got {registration_pairs!r}")
        cfg["registration_pairs"] = int(registration_pairs)
    return cfg



# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------

def table_geometry(step: int, factor: float) -> tuple[float, float, float, float]:
    """The physics table's geometry of a step in 1:factor pixels (sx, sy, dx / f, dy / f)."""
    ph = P.step_physics(step)
    return (ph["scale_x"], ph["scale_y"], ph["shift_x"] / factor, ph["shift_y"] / factor)


def estimate_pair_geometry(sharp_small, blurred_small, step: int, factor: float):
    """`estimate_alignment` of one down-scaled pair, started from the physics table."""
    radius = P.step_physics(step)["radius"] / factor
    return estimate_alignment(sharp_small, blurred_small, radius, init=table_geometry(step, factor))


def _spread(items: list, n: int) -> list:
    """`n` items evenly spread over the list first (both ends included), then the rest in order."""
    if not items:
        return []
    first = list(dict.fromkeys(np.round(np.linspace(0, len(items) - 1, min(n, len(items)))).astype(int)))
    return [items[i] for i in first] + [x for i, x in enumerate(items) if i not in set(first)]


def estimate_step_geometry(samples, cfg: dict, skip_bad: bool = False) -> dict:
    """Median geometry of one step from cfg["registration_pairs"] of its pairs (`samples`: the
    step's samples; pairs spread over them). An unreadable pair raises DataError, or with
    `skip_bad` is replaced by the next one. Returns {step, scale_x, scale_y, shift_x, shift_y
    (1:factor px), pairs, estimates, spread_full_px (largest misalignment of a single estimate from
    the median over the image, full-size px), skipped, source ("median" or "table" when no pair
    could be read)}."""
    steps = {s.step for s in samples}
    if len(steps) != 1:
        raise ValueError(f"estimate_step_geometry needs the samples of one step, got steps {sorted(steps)}")
    step = steps.pop()
    f = float(cfg["preprocess"]["factor"])
    n = int(cfg.get("registration_pairs", DEFAULT_REGISTRATION_PAIRS))
    estimates, used, skipped, shape = [], [], [], None
    for sample in _spread(list(samples), n):
        if len(estimates) >= n:
            break
        try:
            sharp, blurred = load_pair(sample)
        except DataError as e:
            if not skip_bad:
                raise
            skipped.append({"file": str(e.path), "problem": e.problem})
            continue
        s_small, b_small = downscale(sharp, f), downscale(blurred, f)
        shape = b_small.shape
        estimates.append(estimate_pair_geometry(s_small, b_small, step, f).params)
        used.append(str(sample.blurred))
    if estimates:
        params, source = tuple(float(v) for v in np.median(np.array(estimates), axis=0)), "median"
        spread = max(residual_misalignment(params, e, shape) for e in estimates) * f
    else:
        params, source, spread = table_geometry(step, f), "table", float("nan")
    return {"step": step, "scale_x": params[0], "scale_y": params[1], "shift_x": params[2],
            "shift_y": params[3], "source": source, "pairs": used,
            "estimates": [list(e) for e in estimates], "spread_full_px": round(float(spread), 3),
            "skipped": skipped}


# --------------------------------------------------------------------------------------------
# one pair
# --------------------------------------------------------------------------------------------

def pair_stages(sample, cfg: dict, geometry=None, images=None) -> dict:
    """Every stage of one pair, as prepare computes it (the preview draws these):

    blurred (1:f), background (its vignetting fit), corrected (vignetting removed), channels
    (H, W, 1 + median widths: the network input), sharp (1:f), target (binarised, CAM01 frame),
    params (geometry used, 1:f px), info (for the manifest), registered (target in the CAM02
    frame), grid (TileGrid of the input).

    The same stage functions and order as `preprocess_blurred` / `preprocess_sharp` (tested equal);
    the down-scaled images are computed once and shared with the registration. `geometry` is the
    step's geometry (a dict or 4-tuple, 1:f px) for cfg["registration"] == "step"; `images` =
    (sharp, blurred) full-size images already loaded (default: load the sample's TIFFs).
    """
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    sharp, blurred = load_pair(sample) if images is None else images
    small = downscale(blurred, pre.factor)
    corrected, background = remove_vignetting(small, pre.vignetting, terms=pre.terms, border=pre.border,
                                              n_samples=pre.n_samples, discard=pre.discard, seed=pre.seed)
    channels = input_channels(corrected, pre, sample.step)
    sharp_small = downscale(sharp, pre.factor)
    target = binarise_target(sharp_small, pre.white_fraction, near_black_radius=pre.near_black_radius,
                             black_level=pre.black_level)
    mode = cfg["registration"]
    if mode == "pair":
        est = estimate_pair_geometry(sharp_small, small, sample.step, pre.factor)
        params, info = est.params, est.to_dict()
    elif mode == "step":
        if geometry is None:
            raise ValueError("registration 'step' needs the step's geometry (estimate_step_geometry)")
        params, info = as_params(geometry), {"step_median": True}
    elif mode == "table":
        params, info = table_geometry(sample.step, pre.factor), {"table": True}
    elif mode == "none":
        params, info = (1.0, 1.0, 0.0, 0.0), {}
    else:
        raise ValueError(f"registration must be one of {REGISTRATION_MODES}, got {mode!r}")
    registered = warp_to_blurred_frame(target, params, output_shape=channels.shape[:2], cval=1.0)
    grid = TileGrid.for_image(channels.shape[:2], cfg["in_size"], cfg["out_size"])
    return {"blurred": small, "background": background, "corrected": corrected, "channels": channels,
            "sharp": sharp_small, "target": target, "params": tuple(params), "info": info,
            "registered": registered, "grid": grid}
