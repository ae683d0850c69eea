"""The submission image: every method's result (model, baselines, identity) leaves through here,
so the OCR scorer sees all of them prepared the same way.

The official scorer divides by the minimum of the left 50 columns (README section 4): a dark or
zero pixel there wrecks the image. The text block starts at x ~200, so those columns are background
in every HDC image; we set them to white.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path

BRIGHT_LEFT_COLUMNS = 50


def to_uint8(image, bright_left: int = BRIGHT_LEFT_COLUMNS) -> np.ndarray:
    """Float image (1 = white; values outside [0, 1] are clipped) -> 8-bit grayscale with the left
    `bright_left` columns white."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    out = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    out[:, :bright_left] = 255
    return out


def write_png(path, image_uint8: np.ndarray) -> Path:
    """Write an 8-bit grayscale PNG atomically (temporary name, then rename)."""
    from PIL import Image

    a = np.asarray(image_uint8)
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"write_png needs a 2-D uint8 array, got {a.dtype} {a.shape}")
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(a, mode="L").save(tmp, format="PNG")
    return path
