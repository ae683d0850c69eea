"""The out-of-focus point-spread function and measuring it from calibration shots."""
from __future__ import annotations

from functools import lru_cache

import math

import numpy as np
from scipy import ndimage, optimize, special

from .physics import EDGE_FRACTION

_EDGE_10_90_PER_SIGMA = 2.0 * 1.2815515655446004  # 10-90 % width of a Gaussian-blurred step / sigma


def disc_kernel(radius: float, edge: float | None = None) -> np.ndarray:
    """Soft-edged pillbox (out-of-focus disc) kernel, normalised to sum 1; 2-D float64, odd size,
    centred.

    The profile is a flat disc of `radius` pixels whose edge is a Gaussian-blurred step with a
    10-90 % width of `edge` pixels (default 0.17 * radius, `physics.EDGE_FRACTION`; 0 = hard disc).
    Each pixel is the area average of the profile (5 x 5 sub-samples), so small radii (down-scaled
    step 0: r = 3/7 px) stay accurate. Half-size = ceil(radius + 3 sigma + 1). Cached: a copy is
    returned, so callers may modify it.
    """
    r = float(radius)
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"disc radius must be a finite number >= 0, got {radius!r}")
    e = EDGE_FRACTION * r if edge is None else float(edge)
    if not math.isfinite(e) or e < 0:
        raise ValueError(f"disc edge width must be a finite number >= 0, got {edge!r}")
    return _disc_kernel(r, e).copy()


@lru_cache(maxsize=64)  # the simulator asks for the same 20 discs thousands of times
def _disc_kernel(r: float, e: float) -> np.ndarray:
    sigma = e / _EDGE_10_90_PER_SIGMA
    half = int(math.ceil(r + 3 * sigma + 1))
    sub = 5
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    g = (np.arange(-half, half + 1)[:, None] + offs[None, :]).ravel()  # sub-sampled axis
    rho = np.hypot(g[:, None], g[None, :])
    if sigma > 0:
        prof = 0.5 * special.erfc((rho - r) / (sigma * math.sqrt(2.0)))
    else:
        prof = (rho <= r).astype(np.float64)
    n = 2 * half + 1
    k = prof.reshape(n, sub, n, sub).mean(axis=(1, 3))
    if k.sum() <= 0:  # radius 0 with a hard edge and no sub-sample inside: a delta
        k = np.zeros((n, n))
        k[half, half] = 1.0
    return k / k.sum()


def _disc_lsf(x: np.ndarray, radius: float, width: float) -> np.ndarray:
    """Line-spread function of a hard disc (a semicircle profile) seen through a line of `width` px,
    normalised to a peak of 1."""
    radius = max(radius, 0.25)
    fine = np.arange(-radius - width - 1, radius + width + 1.25, 0.25)
    chord = 2 * np.sqrt(np.clip(radius ** 2 - fine ** 2, 0, None))
    box = np.ones(max(int(round(width / 0.25)), 1))
    prof = np.convolve(chord, box / box.sum(), mode="same")
    return np.interp(x, fine, prof / max(prof.max(), 1e-12), left=0, right=0)


def measure_radius_from_lsf(blurred: np.ndarray, axis: int, line_width: float) -> float:
    """Blur radius (px) from a blurred bright-line shot, by fitting a disc's line-spread profile
    on a smooth (quadratic) illumination: profile = illumination * (1 + a * LSF_r(y - c)).

    axis=0: the line is horizontal (LSF_X) and its profile runs down the rows; axis=1: vertical.
    Averaging along the line beats the noise that makes a dot PSF useless at the large steps.
    """
    img = np.asarray(blurred, dtype=np.float64)
    if axis == 1:
        img = img.T
    h, w = img.shape
    prof = img[:, w // 4: 3 * w // 4].mean(axis=1)
    y = np.linspace(-1, 1, h)
    trend = np.polyval(np.polyfit(y, prof, 2), y)
    excess = ndimage.uniform_filter1d(prof / trend - 1, 9)
    c0 = float(np.argmax(excess))
    above = np.where(excess > 0.5 * excess.max())[0]
    r0 = max((above.max() - above.min()) / np.sqrt(3), 1.0)  # FWHM of a semicircle is sqrt(3) r
    far = np.abs(np.arange(h) - c0) > 3 * r0 + line_width
    base = np.polyfit(y[far], prof[far], 2) if far.sum() > h // 4 else np.polyfit(y, prof, 2)
    pix = np.arange(h, dtype=np.float64)

    def residual(p):
        a, c, r, wd, b2, b1, b0 = p
        return prof - np.polyval([b2, b1, b0], y) * (1 + a * _disc_lsf(pix - c, r, wd))

    # the line's width on this camera is free too (the cameras' scales differ by up to 12 %)
    lower = [0, 0, 0.25, 0.7 * line_width, -np.inf, -np.inf, -np.inf]
    upper = [np.inf, h - 1, h / 4, 1.3 * line_width, np.inf, np.inf, np.inf]  # wider bumps are illumination
    fits = []
    for guess in np.minimum((r0, 0.7 * r0, 1.4 * r0), h / 4 - 1):  # a few starts: the fit has shallow side minima
        start = np.clip([max(excess.max(), 1e-3), c0, guess, line_width, *base], lower, upper)
        fits.append(optimize.least_squares(residual, start, bounds=(lower, upper), x_scale="jac"))
    return float(min(fits, key=lambda f: f.cost).x[2])
