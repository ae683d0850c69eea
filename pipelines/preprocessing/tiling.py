"""Overlapping tiling of an image for a valid-padding network, and its exact inverse.

The network maps an `in_size` x `in_size` input tile to the `out_size` x `out_size` centre of it
(e.g. 110 -> 52: every unpadded convolution eats its border), so

    margin = (in_size - out_size) // 2

Output windows of `out_size` are laid out so that they cover every pixel of the image: per axis
n = ceil(N / out_size) windows with evenly spaced starts round(linspace(0, N - out_size, n))
(first window at the top/left edge, last one at the bottom/right edge, neighbours overlap by up to
out_size - 1 pixels). Each input tile is its window plus `margin` on every side, taken from the
image padded by `margin` (numpy pad mode `pad_mode`, "reflect" by default). An image smaller than
`out_size` on an axis is first padded (same mode) to `out_size` there; `stitch` crops it back.

The geometry is derived from the model's sizes, never hard-coded: build it with
`TileGrid.for_image((H, W), in_size=model_in, out_size=model_out)`.

For a fully convolutional valid-padding model every output pixel depends only on input pixels of
its own tile, and the padding is applied once to the whole image, so overlapping windows predict
the same values and the stitched result equals running the model on the whole padded image; the
"smooth" blend (and `min_overlap`) only matter for models with per-tile global operations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLEND_MODES = ("smooth", "mean")
PAD_MODES = ("reflect", "symmetric", "edge", "constant")


def _starts(n: int, out: int, overlap: int = 0) -> tuple[int, ...]:
    """Evenly spaced window starts covering [0, max(n, out)) with windows of `out` that overlap
    their neighbours by at least `overlap` pixels (where there is more than one window)."""
    n = max(n, out)
    k = max(1, int(math.ceil((n - overlap) / (out - overlap))))
    return tuple(int(v) for v in np.round(np.linspace(0, n - out, k)).astype(int)) if k > 1 else (0,)


def _pad(a: np.ndarray, before: tuple[int, int], after: tuple[int, int], mode: str) -> np.ndarray:
    widths = [(before[0], after[0]), (before[1], after[1])] + [(0, 0)] * (a.ndim - 2)
    if mode == "constant":
        return np.pad(a, widths, mode="constant", constant_values=0)
    if mode == "reflect" and min(a.shape[:2]) < 2:  # numpy cannot reflect a single row/column
        mode = "edge"
    return np.pad(a, widths, mode=mode)


def _weights(out: int) -> np.ndarray:
    """1-D blending weight: a raised half-sine, largest in the middle of the window and > 0
    everywhere (sin(pi/(2 out)) at the ends), so every covered pixel has a positive weight sum."""
    return np.sin(np.pi * (np.arange(out) + 0.5) / out)


@dataclass(frozen=True)
class TileGrid:
    """Tile layout for one image shape and one model geometry (see the module docstring)."""
    image_shape: tuple[int, int]
    in_size: int
    out_size: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]
    pad_mode: str = "reflect"

    @classmethod
    def for_image(cls, image_shape, in_size: int = 110, out_size: int = 52,
                  pad_mode: str = "reflect", min_overlap: int = 0) -> "TileGrid":
        """Grid for an (H, W[, C]) image and a model mapping in_size -> out_size (centre crop).
        `min_overlap` > 0 asks for at least that many overlapping pixels between neighbouring
        windows (more tiles: n = ceil((N - overlap) / (out_size - overlap)) per axis)."""
        if len(image_shape) < 2:
            raise ValueError(f"image shape must be (H, W) or (H, W, C), got {image_shape!r}")
        h, w = int(image_shape[0]), int(image_shape[1])
        if h < 1 or w < 1:
            raise ValueError(f"image shape must have positive sizes, got {image_shape!r}")
        in_size, out_size = int(in_size), int(out_size)
        if out_size < 1 or in_size < out_size:
            raise ValueError(f"need 1 <= out_size <= in_size, got in_size={in_size}, out_size={out_size}")
        if (in_size - out_size) % 2:
            raise ValueError(f"in_size - out_size must be even (the output is the centre of the input "
                             f"tile), got in_size={in_size}, out_size={out_size}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if not 0 <= int(min_overlap) < out_size:
            raise ValueError(f"min_overlap must be in [0, out_size), got {min_overlap!r}")
        ov = int(min_overlap)
        return cls((h, w), in_size, out_size, _starts(h, out_size, ov), _starts(w, out_size, ov), pad_mode)

    # ---------------------------------------------------------------- geometry
    @property
    def margin(self) -> int:
        """Pixels the model crops on each side: (in_size - out_size) // 2."""
        return (self.in_size - self.out_size) // 2

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return (len(self.row_starts), len(self.col_starts))

    @property
    def n_tiles(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Top-left (row, col) corner of every output window in image coordinates, in tile order
        (row-major). The input tile of window (r, c) starts at (r - margin, c - margin)."""
        return [(r, c) for r in self.row_starts for c in self.col_starts]

    @property
    def _canvas(self) -> tuple[int, int]:
        return (max(self.image_shape[0], self.out_size), max(self.image_shape[1], self.out_size))

    def _check(self, a, name):
        a = np.asarray(a)
        if a.ndim not in (2, 3) or tuple(a.shape[:2]) != tuple(self.image_shape):
            raise ValueError(f"{name} must have shape {tuple(self.image_shape)} or "
                             f"{tuple(self.image_shape)} + (C,), got {a.shape}")
        return a

    def _padded(self, a, extra: int):
        h, w = self.image_shape
        ch, cw = self._canvas
        return _pad(a, (extra, extra), (extra + ch - h, extra + cw - w), self.pad_mode)

    # ---------------------------------------------------------------- forward
    def extract(self, image) -> np.ndarray:
        """(H, W) or (H, W, C) image -> (n_tiles, in_size, in_size, C) float32 input tiles
        (C = 1 for a 2-D image)."""
        a = self._check(image, "image").astype(np.float32, copy=False)
        if a.ndim == 2:
            a = a[..., None]
        p = self._padded(a, self.margin)
        n = self.in_size
        return np.stack([p[r:r + n, c:c + n] for r, c in self.positions]).astype(np.float32, copy=False)

    def extract_windows(self, target) -> np.ndarray:
        """(H, W[, C]) target -> (n_tiles, out_size, out_size[, C]) windows: exactly the pixels the
        model predicts for each tile of `extract` (the training targets)."""
        a = self._check(target, "target")
        p = self._padded(a, 0)
        n = self.out_size
        return np.stack([p[r:r + n, c:c + n] for r, c in self.positions])

    # ---------------------------------------------------------------- inverse
    def stitch(self, outputs, blend: str = "smooth") -> np.ndarray:
        """(n_tiles, out_size, out_size[, C]) model outputs -> (H, W[, C]) float32 image.

        Overlapping windows are averaged with weights normalised by their sum: "smooth" uses a
        separable half-sine window (highest in the tile centre, > 0 at its edges, so seams do not
        show); "mean" a plain average. Identical overlapping values are reproduced exactly."""
        if blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
        o = np.asarray(outputs)
        n = self.out_size
        if o.ndim not in (3, 4) or o.shape[0] != self.n_tiles or o.shape[1:3] != (n, n):
            raise ValueError(f"outputs must have shape ({self.n_tiles}, {n}, {n}[, C]) for this grid, "
                             f"got {o.shape}")
        squeeze = o.ndim == 3
        o = o[..., None] if squeeze else o
        ch, cw = self._canvas
        acc = np.zeros((ch, cw, o.shape[3]), dtype=np.float64)
        wsum = np.zeros((ch, cw, 1), dtype=np.float64)
        w1 = _weights(n) if blend == "smooth" else np.ones(n)
        w2 = np.outer(w1, w1)[..., None]
        for t, (r, c) in enumerate(self.positions):
            acc[r:r + n, c:c + n] += w2 * o[t]
            wsum[r:r + n, c:c + n] += w2
        h, w = self.image_shape
        out = (acc / wsum)[:h, :w]
        return (out[..., 0] if squeeze else out).astype(np.float32)
