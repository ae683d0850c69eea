"""The out-of-focus point-spread function and measuring it from calibration shots."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage, optimize

from . import registration


def disc_kernel(radius: float, edge: float | None = None) -> np.ndarray:
    """`registration.disc_kernel`, cached (a copy is returned, so callers may modify it)."""
    return _disc_kernel(float(radius), None if edge is None else float(edge)).copy()


@lru_cache(maxsize=64)  # the simulator asks for the same 20 discs thousands of times
def _disc_kernel(radius: float, edge: float | None) -> np.ndarray:
    return registration.disc_kernel(radius, edge)


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
