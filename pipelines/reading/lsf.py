"""The blur radius measured from a step's line shots (LSF_X / LSF_Y), shared by the classical
baselines (`eval.baselines`) and the step estimator (`deblur.estimate`)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..common.errors import DataError
from . import physics as P
from .images import load_image
from .psf import measure_radius_from_lsf

# A fit further than this from the physics table's radius is taken as a failed measurement.
MAX_RADIUS_DEVIATION = 0.35


@lru_cache(maxsize=64)
def lsf_radius(paths: tuple, step: int) -> float | None:
    """Mean blur radius (full-size px) measured from the step's line shots ((kind, path) pairs,
    kind "LSF_X" or "LSF_Y"), or None when there are none or the fit is implausible (beyond
    MAX_RADIUS_DEVIATION of the table)."""
    radii = []
    for kind, path in paths:
        try:
            img = load_image(path, expect_shape=None)
            radii.append(measure_radius_from_lsf(img, 0 if kind == "LSF_X" else 1, P.LINE_WIDTH_PX))
        except (DataError, ValueError, RuntimeError):
            continue
    table = P.step_physics(step)["radius"]
    good = [r for r in radii if abs(r / table - 1) <= MAX_RADIUS_DEVIATION]
    return float(np.mean(good)) if good else None
