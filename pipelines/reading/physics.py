"""Calibrated HDC2021 physics: every number the simulator uses, in one visible table.

Sources: ../shared/hdc2021/README.md section 5 (measured on the real data). Values between the
measured steps are interpolated linearly; steps 16-19 of gain/offset/geometry are extrapolated
from the trend of steps 11-15 and are marked as such.
"""
from __future__ import annotations

import numpy as np

N_STEPS = 20
IMAGE_SHAPE = (1460, 2360)  # rows, columns (height, width) of every HDC2021 TIFF

# Blur disc radius in full-size pixels, per step (README 5.2, each value ~ +-10 %).
# Step 4 uses 30 instead of ~28: the raw-image OCR score falls off a cliff between radius 28 and 31
# (simulated identity, 40 images: 86.5 at 28, 69.9 at 30, 49.4 at 31), and real raw images fail
# at step 4, so 30 is the value inside the measured range that reproduces reality.
RADIUS_PX = (3, 6, 11, 18, 30, 36, 42, 50, 61, 68, 76, 84, 91, 97, 101, 117, 140, 160, 185, 205)
EDGE_FRACTION = 0.17  # 10-90 % edge width of the disc, as a fraction of the radius

# step: (gain, offset as a fraction of full scale). '*' = extrapolated beyond the measurements.
GAIN_OFFSET_ANCHORS = {
    0: (0.98, 0.05), 3: (0.69, 0.30), 5: (0.60, 0.40), 11: (0.60, 0.40), 14: (0.54, 0.47),
    15: (0.48, 0.55), 19: (0.42, 0.60),  # * step 19
}
# step: (scale x, scale y, shift x px, shift y px) of CAM02 relative to CAM01. Convention used
# everywhere (simulator, registration): a scene point at CAM01 pixel (x1, y1) appears in CAM02 at
#   x2 = cx + sx * (x1 - cx) + dx,   y2 = cy + sy * (y1 - cy) + dy,
# with (cx, cy) = ((W - 1) / 2, (H - 1) / 2) the image centre. At a down-scale factor f the scales
# stay and the shifts divide by f.
GEOMETRY_ANCHORS = {
    0: (1.007, 1.013, 0, -2), 3: (0.984, 0.985, 0, -7), 5: (0.970, 0.963, 0, -12),
    6: (0.96, 0.96, 0, -13), 10: (0.96, 0.96, 0, -13), 14: (0.911, 0.917, -18, -34),
    15: (0.90, 0.91, -16, -38), 19: (0.88, 0.89, -16, -46),  # * step 19
}

# The scene (CAM01), README 5.1. Intensities on the 8-bit scale.
DISPLAY_SCALE = 8.5          # camera pixels per e-ink display pixel
LINE_WIDTH_PX = 2 * DISPLAY_SCALE  # calibration line shots (LSF_X/LSF_Y): lines 2 display px wide
FONT_SIZE_DISPLAY = 30       # font size in display pixels ("size_30" in the file names), both fonts:
                             # gives the real Times' 230 px from tallest top to lowest descender
# Layout measured on real CAM01 images (issue 12; ../shared/hdc2021/README.md 5.1): every line is
# centred on the image centre (a text renderer's centring: spaces count in the width), both fonts
# at the same point size; each line's top is the top of the font's tallest glyph.
TEXT_CENTRE_X_PX = 1180      # horizontal centre of every line, camera pixels
LINE_TOPS_PX = {             # top of the tallest glyph of each line (Times pitch ~279, Verdana ~295)
    "Times": (346, 625, 904),    # real: 345/624/902 (step 3), 347/626/905 (step 14)
    "Verdana": (381, 677, 970),  # real: step 15, ~35 px lower than Times
}
TEXT_DN = 28.0               # dark text
BACKGROUND_DN = 226.0        # brightest background (bottom centre)
VIGNETTE_DEPTH = (0.05, 0.15)  # corners this much darker; top right darkest
SHARP_NOISE_DN = (3.0, 5.0)  # noise in text and on background (display texture included)
SHARP_OPTICS_SIGMA_PX = 1.2  # residual optical blur of the focused camera

# CAM02 noise: sigma = a * (255 - L) + b DN on the 8-bit scale (README 5.2).
NOISE_SLOPE, NOISE_FLOOR = 0.16, 0.6


def noise_sigma(image) -> np.ndarray:
    """CAM02 noise standard deviation per pixel (image in [0, 1], same units)."""
    level = np.clip(image, 0, 1) * 255
    return ((NOISE_SLOPE * (255 - level) + NOISE_FLOOR) / 255).astype(np.float32)


def text_contrast(step: int) -> float:
    """Full text contrast of a step after vignetting division, c = g (W - T) / (g W + o): a
    background of 0 and fully dark text at -c in the corrected image."""
    ph = step_physics(step)
    white, black = BACKGROUND_DN / 255, TEXT_DN / 255
    return ph["gain"] * (white - black) / (ph["gain"] * white + ph["offset"])


def _interp(anchors: dict, step: int) -> tuple[float, ...]:
    keys = sorted(anchors)
    cols = np.array([anchors[k] for k in keys], dtype=float)
    return tuple(float(np.interp(step, keys, cols[:, j])) for j in range(cols.shape[1]))


def check_step(step: int) -> int:
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or not 0 <= step < N_STEPS:
        raise ValueError(f"blur step must be an integer in 0-{N_STEPS - 1}, got {step!r}")
    return int(step)


def step_physics(step: int) -> dict:
    """All simulation parameters of one blur step."""
    step = check_step(step)
    gain, offset = _interp(GAIN_OFFSET_ANCHORS, step)
    sx, sy, dx, dy = _interp(GEOMETRY_ANCHORS, step)
    return {"step": step, "radius": float(RADIUS_PX[step]), "edge": EDGE_FRACTION * RADIUS_PX[step],
            "gain": gain, "offset": offset, "scale_x": sx, "scale_y": sy, "shift_x": dx, "shift_y": dy}


def physics_table() -> list[dict]:
    return [step_physics(s) for s in range(N_STEPS)]


def parse_steps(text: str) -> list[int]:
    """'0-9', '3', '0,2,5-9' -> sorted unique steps; clear errors for anything else."""
    steps: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty item in step list {text!r}")
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"cannot read step list {text!r}: {part!r} is not N or N-M") from None
        if a > b:
            raise ValueError(f"step range {part!r} runs backwards")
        for s in (a, b):
            if not 0 <= s < N_STEPS:
                raise ValueError(f"step {s} in {text!r} is outside 0-{N_STEPS - 1}")
        steps.update(range(a, b + 1))
    return sorted(steps)
