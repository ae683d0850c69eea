"""Is an image HDC2021-like? A fixed blur step means a disc of a known radius in HDC camera pixels,
so an image of another size, or with text of another scale, deblurred at a fixed step comes out as
blobs; `auto` (`deblur.estimate`) measures the blur in the image itself and copes. `domain_warning`
says so in one line (`python -m deblur` prints it per image when STEP is a number).

Two cheap checks (~10 ms on a full-size image; no TensorFlow):
  * the size: each side within LO..HI of the camera's 2360 x 1460;
  * the text scale: the spacing of text lines, the strongest peak of the autocorrelation of the
    row profile of ink (1:7, vignetting divided out). HDC's three lines are ~285 px apart; blur
    merges neighbouring lines, so a peak at twice the spacing (lines 1 and 3) also counts as HDC-like.
    No clear peak (one line, or heavy blur) is no evidence either way: no warning.
"""
from __future__ import annotations

import numpy as np

from pipelines.reading.physics import IMAGE_SHAPE

SIZE_RANGE = (0.75, 1.33)        # each side may differ from the camera's by this factor
HDC_LINE_PITCH = 285             # full-size px between HDC text lines (Times ~279, Verdana ~295)
PITCH_RANGE = (0.67, 1.5)        # of HDC_LINE_PITCH (or twice it) that still counts as HDC-like
MIN_PROMINENCE = 0.25            # of the normalised autocorrelation: a clear line spacing
FACTOR = 7


def line_pitch(image) -> float | None:
    """The spacing of text lines in full-size px (float image in [0, 1]), None if there is no
    clear one."""
    from scipy.signal import find_peaks

    from pipelines.preprocessing.preprocess import downscale, remove_vignetting

    a = np.asarray(image, dtype=np.float32)
    if min(a.shape) < 8 * FACTOR:
        return None
    x, _ = remove_vignetting(downscale(a, FACTOR), "divide")
    ink = np.clip(-x, 0, None)
    h, w = ink.shape
    profile = ink[:, w // 6: w - w // 6].mean(axis=1)
    profile = profile - profile.mean()
    ac = np.correlate(profile, profile, "full")[h - 1:]
    if not ac[0] > 0:
        return None
    peaks, props = find_peaks(ac[: int(0.6 * h)] / ac[0], prominence=MIN_PROMINENCE)
    if not len(peaks):
        return None
    return float(peaks[int(np.argmax(props["prominences"]))] * FACTOR)


def domain_warning(image) -> str | None:
    """One line saying why a fixed step may not suit this image (float (h, w) in [0, 1]), or None."""
    h, w = np.shape(image)[:2]
    lo, hi = SIZE_RANGE
    if not (lo <= h / IMAGE_SHAPE[0] <= hi and lo <= w / IMAGE_SHAPE[1] <= hi):
        return (f"{w} x {h} px is far from the HDC2021 camera's {IMAGE_SHAPE[1]} x {IMAGE_SHAPE[0]}: a fixed "
                "STEP assumes its pixel scale; try STEP auto (measures the blur in the image)")
    pitch = line_pitch(image)
    if pitch is not None:
        a, b = (HDC_LINE_PITCH * f for f in PITCH_RANGE)
        if not (a <= pitch <= b or 2 * a <= pitch <= 2 * b):
            return (f"text lines ~{pitch:.0f} px apart, far from HDC2021's ~{HDC_LINE_PITCH} px: a fixed STEP "
                    "assumes its text scale; try STEP auto (measures the blur in the image)")
    return None
