"""Image preprocessing shared by `pipelines.prepare` (training set), inference and evaluation.

Every function here is small and pure (no I/O, no global state, deterministic) and works on
float images in [0, 1] at any scale (full size 1460 x 2360, or down-scaled). TensorFlow is never
imported: data preparation must not pay for it.

Pipeline (see `preprocess_blurred` / `preprocess_sharp`):
    blurred CAM02 image -> downscale -> remove_vignetting -> median_channels -> (H, W, C) input
    sharp CAM01 image   -> downscale -> binarise_target                     -> (H, W) target

Down-scaling geometry (used by `downscale`, `upscale` and, through them, the registration):
at factor f an axis of n input pixels gives m = floor(n / f) output pixels. Output pixel i is the
mean of the input interval [o + i*f, o + (i + 1)*f) with the crop offset o = (n - m*f) // 2 for an
integer f (a centred crop: 1460 x 2360 at f = 7 drops 2 rows top and bottom and 1 column at the
right) and o = (n - m*f) / 2 for a fractional f. Either way the image centre maps onto the image
centre (within half an input pixel), so the camera geometry of `pipelines.reading.physics` keeps its
scales and only divides its shifts by f.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

from .deconv import MULTI_BALANCES, PHYSICS_CHANNELS, physics_channels

# Text-free border frame as fractions of (top, bottom, left, right). In full-size HDC2021 images
# the text block spans x ~200-2070 of 2360 and y ~350-1210 of 1460 (left 8.5 %, right 12 %, top
# 24 %, bottom 17 % free). The blurred camera spreads the text by the blur radius and shrinks the
# scene towards the centre; up to step ~15 (r = 117 px) these margins stay text-free, and the
# robust refit absorbs the faint blur tails that reach into them at the highest steps.
DEFAULT_BORDER = (0.12, 0.10, 0.06, 0.08)
# Polynomial terms of the vignetting model: x, y normalised to [-1, 1], d = sqrt(x^2 + y^2).
DEFAULT_TERMS = ("1", "x", "x2", "y", "y2", "d")
KNOWN_TERMS = ("1", "x", "x2", "y", "y2", "d", "d2", "xy")
VIGNETTING_MODES = ("divide", "subtract", "none")
# The fitted background stays within this fraction of the border's median level. Vignetting makes
# the corners 5-15 % darker (about -9 % / +8 % around the median), so text images never reach it;
# a photo's border is no white page, and a free fit would divide its large-scale brightness out
# (sky bright, coat dark: gone from the input) or dip towards 0 and stretch it without bound.
BACKGROUND_RANGE = 0.2
FLAT_TOLERANCE = 0.05   # an image's own background fit within this (median relative deviation) of the
                        # camera's flat field is taken as its background (text: <= 0.004; photos: >= 0.15)
_MIN_BACKGROUND = 1e-3  # guards "divide" against a (nonsensical) zero or negative background


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _as_float_image(image, name: str = "image", ndims=(2,)) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a float image in [0, 1], got dtype {a.dtype} "
                         "(normalise uint16 data by 65535 first)")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _check_factor(factor) -> float:
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise ValueError(f"down-scale factor must be a number >= 1, got {factor!r}") from None
    if not math.isfinite(f) or f < 1:
        raise ValueError(f"down-scale factor must be a number >= 1, got {factor!r}")
    return f


def _is_integer(f: float) -> bool:
    return abs(f - round(f)) < 1e-9


def downscaled_shape(shape, factor=7) -> tuple[int, int]:
    """(H, W) -> (floor(H / factor), floor(W / factor)); e.g. (1460, 2360) at 7 -> (208, 337)."""
    f = _check_factor(factor)
    return tuple(int(math.floor(n / f + 1e-9)) for n in shape[:2])


def _crop_offset(n_in: int, n_out: int, f: float) -> float:
    extra = n_in - n_out * f
    return float(int(round(extra)) // 2) if _is_integer(f) else extra / 2.0


def _area_matrix(n_in: int, n_out: int, f: float) -> sparse.csr_matrix:
    """Sparse (n_out, n_in) matrix whose row i averages the input interval [o + i f, o + (i+1) f)."""
    off = _crop_offset(n_in, n_out, f)
    rows, cols, vals = [], [], []
    for i in range(n_out):
        a, b = off + i * f, off + (i + 1) * f
        for j in range(int(math.floor(a)), int(math.ceil(b))):
            w = min(b, j + 1) - max(a, j)
            if w > 1e-12 and 0 <= j < n_in:
                rows.append(i), cols.append(j), vals.append(w / f)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in), dtype=np.float32)


def _interp_matrix(n_out: int, n_in: int, f: float, off: float) -> sparse.csr_matrix:
    """Sparse (n_out, n_in) linear-interpolation matrix: full pixel y samples the small image at
    u = (y + 0.5 - off) / f - 0.5, clamped to the edge pixels."""
    u = (np.arange(n_out) + 0.5 - off) / f - 0.5
    u = np.clip(u, 0, n_in - 1)
    j0 = np.minimum(np.floor(u).astype(np.int64), n_in - 1)
    j1 = np.minimum(j0 + 1, n_in - 1)
    t = (u - j0).astype(np.float32)
    rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
    m = sparse.csr_matrix((np.concatenate([1 - t, t]), (rows, np.concatenate([j0, j1]))),
                          shape=(n_out, n_in), dtype=np.float32)
    m.sum_duplicates()
    return m


# --------------------------------------------------------------------------------------------
# 1. scaling
# --------------------------------------------------------------------------------------------

def downscale(image, factor=7) -> np.ndarray:
    """Anti-aliased (area-mean) down-scaling of an (H, W) or (H, W, C) image by `factor` >= 1.

    The output has floor(H / factor) x floor(W / factor) pixels; each is the exact mean of the
    f x f input area it covers (module docstring: centred crop of the few left-over pixels).
    An integer factor uses a block mean (~3 ms for 1460 x 2360 at 7 -> 208 x 337); a fractional
    factor uses exact area weights (sparse matrices). Returns float32.
    """
    a = _as_float_image(image, ndims=(2, 3))
    f = _check_factor(factor)
    h, w = downscaled_shape(a.shape, f)
    if h < 1 or w < 1:
        raise ValueError(f"image of shape {a.shape} is smaller than the down-scale factor {factor}")
    if _is_integer(f):
        k = int(round(f))
        if k == 1:
            return a.copy()
        oy, ox = int(_crop_offset(a.shape[0], h, k)), int(_crop_offset(a.shape[1], w, k))
        c = a[oy:oy + h * k, ox:ox + w * k]
        rest = c.shape[2:]
        # two one-axis sums (faster than one reshape-mean over both block axes)
        s = c.reshape(h, k, w * k, *rest).sum(axis=1, dtype=np.float32)
        s = s.reshape(h, w, k, *rest).sum(axis=2, dtype=np.float32)
        return (s / np.float32(k * k)).astype(np.float32, copy=False)
    ay = _area_matrix(a.shape[0], h, f)
    ax = _area_matrix(a.shape[1], w, f)
    if a.ndim == 2:
        return np.ascontiguousarray((ax @ (ay @ a).T).T, dtype=np.float32)
    return np.stack([(ax @ (ay @ a[..., c]).T).T for c in range(a.shape[2])], axis=-1).astype(np.float32)


def _infer_factor(small, full) -> tuple[float, float] | None:
    """The integer factor k with floor(full / k) == small on both axes, if there is one."""
    for k in sorted({max(1, full[0] // max(small[0], 1)), max(1, round(full[0] / max(small[0], 1)))}):
        if all(n // k == m for n, m in zip(full, small)):
            return float(k)
    return None


def upscale(image, shape, factor=None) -> np.ndarray:
    """Bilinear (order 1) up-scaling of an (h, w) or (h, w, C) image to `shape` = (H, W).

    The exact inverse geometry of `downscale`: if `factor` is None and (h, w) ==
    floor((H, W) / k) for an integer k, the pixel grid of `downscale(., k)` is used (so a
    down-scale/up-scale round trip keeps features in place); otherwise the image is stretched to
    fill (H, W) (factor H / h and W / w per axis, edges aligned). Edges are clamped. Returns float32.
    """
    a = _as_float_image(image, ndims=(2, 3))
    if len(shape) < 2 or any(int(n) < 1 for n in shape[:2]):
        raise ValueError(f"upscale shape must be (H, W) with positive sizes, got {shape!r}")
    full = (int(shape[0]), int(shape[1]))
    small = a.shape[:2]
    if factor is None:
        factor = _infer_factor(small, full)
    if factor is not None:
        f = _check_factor(factor)
        if downscaled_shape(full, f) != small:
            raise ValueError(f"an image of shape {small} is not shape {full} down-scaled by {factor}")
        fy = fx = f
        offy, offx = _crop_offset(full[0], small[0], f), _crop_offset(full[1], small[1], f)
    else:
        fy, fx = full[0] / small[0], full[1] / small[1]
        offy = offx = 0.0
    ry = _interp_matrix(full[0], small[0], fy, offy)
    rx = _interp_matrix(full[1], small[1], fx, offx)
    if a.ndim == 2:
        return np.ascontiguousarray((rx @ (ry @ a).T).T, dtype=np.float32)
    return np.stack([(rx @ (ry @ a[..., c]).T).T for c in range(a.shape[2])], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# 2. vignetting
# --------------------------------------------------------------------------------------------

def _check_border(border) -> tuple[float, float, float, float]:
    b = (border,) * 4 if np.isscalar(border) else tuple(border)
    if len(b) != 4 or not all(0 < float(v) < 0.5 for v in b):
        raise ValueError("border must be a fraction in (0, 0.5) or four of them "
                         f"(top, bottom, left, right), got {border!r}")
    return tuple(float(v) for v in b)


def _check_terms(terms) -> tuple[str, ...]:
    t = tuple(terms)
    bad = [x for x in t if x not in KNOWN_TERMS]
    if bad or not t or len(set(t)) != len(t):
        raise ValueError(f"vignetting terms must be distinct names from {KNOWN_TERMS}, got {terms!r}")
    return t


def _design(terms, x, y) -> np.ndarray:
    d2 = x * x + y * y
    cols = {"1": lambda: np.ones_like(x), "x": lambda: x, "x2": lambda: x * x, "y": lambda: y,
            "y2": lambda: y * y, "d": lambda: np.sqrt(d2), "d2": lambda: d2, "xy": lambda: x * y}
    return np.stack([cols[t]() for t in terms], axis=-1)


def _norm_coords(n: int) -> np.ndarray:
    """Pixel index -> [-1, 1] (centre (n - 1) / 2 at 0)."""
    c = (n - 1) / 2.0
    return (np.arange(n, dtype=np.float64) - c) / max(c, 0.5)


def border_mask(shape, border=DEFAULT_BORDER) -> np.ndarray:
    """Boolean (H, W) mask of the text-free frame: `border` = fraction or (top, bottom, left, right)."""
    top, bottom, left, right = _check_border(border)
    h, w = int(shape[0]), int(shape[1])
    m = np.zeros((h, w), dtype=bool)
    m[:max(1, int(round(top * h)))] = True
    m[h - max(1, int(round(bottom * h))):] = True
    m[:, :max(1, int(round(left * w)))] = True
    m[:, w - max(1, int(round(right * w))):] = True
    return m


def estimate_background(image, terms=DEFAULT_TERMS, border=DEFAULT_BORDER, n_samples=430,
                        discard=0.10, seed=0) -> np.ndarray:
    """Robust polynomial model of the (vignetted) white background of a 2-D image.

    Fits f = c0 + c1 x + c2 x^2 + c3 y + c4 y^2 + c5 d (the default `terms`; "d2" and "xy" may be
    added), with x, y the pixel coordinates normalised to [-1, 1] and d the distance from the
    centre, to `n_samples` pixels drawn (deterministically, `seed`) from the text-free border frame
    (`border`: fraction of each side, or (top, bottom, left, right) fractions: scale-free, works at
    any resolution). Least squares, then one refit after discarding the `discard` fraction of the
    samples with the largest absolute residual. Returns the float32 background of the image's shape.
    """
    a = _as_float_image(image)
    t = _check_terms(terms)
    if not 0 <= float(discard) < 1:
        raise ValueError(f"discard must be a fraction in [0, 1), got {discard!r}")
    h, w = a.shape
    idx = np.flatnonzero(border_mask(a.shape, border))
    n = int(n_samples)
    if n < len(t):
        raise ValueError(f"n_samples={n_samples} is fewer than the {len(t)} model terms")
    rng = np.random.default_rng(seed)
    if idx.size > n:
        idx = rng.choice(idx, size=n, replace=False)
    if idx.size < len(t):
        raise ValueError(f"image of shape {a.shape} has too few border pixels for the background fit")
    ys, xs = np.divmod(idx, w)
    xn, yn = _norm_coords(w), _norm_coords(h)
    design = _design(t, xn[xs], yn[ys])
    values = a.ravel()[idx].astype(np.float64)
    coef = np.linalg.lstsq(design, values, rcond=None)[0]
    keep = int(round(idx.size * (1 - float(discard))))
    if discard > 0 and keep >= len(t):
        order = np.argsort(np.abs(design @ coef - values), kind="stable")[:keep]
        coef = np.linalg.lstsq(design[order], values[order], rcond=None)[0]
    # BACKGROUND_RANGE: never binds on text images, keeps a photo's large-scale brightness
    level = float(np.median(values))
    lo, hi = level * (1 - BACKGROUND_RANGE), level * (1 + BACKGROUND_RANGE)
    # evaluate on the full grid: separable terms by broadcasting, d computed once
    X, Y = xn[None, :], yn[:, None]
    bg = np.zeros((h, w), dtype=np.float64)
    for name, c in zip(t, coef):
        if name == "1":
            bg += c
        elif name == "x":
            bg += c * X
        elif name == "x2":
            bg += c * X * X
        elif name == "y":
            bg += c * Y
        elif name == "y2":
            bg += c * Y * Y
        elif name == "xy":
            bg += c * X * Y
        elif name == "d2":
            bg += c * (X * X + Y * Y)
        elif name == "d":
            bg += c * np.sqrt(X * X + Y * Y)
    return np.clip(bg, lo, hi).astype(np.float32)


def choose_background(own, flat, tolerance: float = FLAT_TOLERANCE):
    """(background, which): an image's own fitted background, or the camera's flat field (`flat`,
    same shape; `pipelines.preprocessing.flatfield`) where the own fit is not white paper: its median
    relative deviation from the flat field exceeds `tolerance` (a photo's border is scene). `which`
    is "own" or "flat"."""
    if flat is None:
        return own, "own"
    flat = np.asarray(flat, dtype=np.float32)
    if flat.shape != own.shape:
        raise ValueError(f"the flat field's shape {flat.shape} differs from the image's {own.shape} "
                         f"(measure it at the same down-scaling factor)")
    flat = np.maximum(flat, _MIN_BACKGROUND)
    if float(np.median(np.abs(own / flat - 1))) > tolerance:
        return flat, "flat"
    return own, "own"


def remove_vignetting(image, mode="divide", flat=None, **fit) -> tuple[np.ndarray, np.ndarray]:
    """Remove the vignetted background of a 2-D image; returns (corrected, background).

    mode "divide" (the default): corrected = image / background - 1, so the background becomes 0
    and dark text negative (about -0.9 on a sharp image, -g(W - T)/(gW + o) on a blurred one).
    The result is independent of the exposure and of any multiplicative vignetting; the step's
    additive offset still sets the contrast, which the step-conditioned network is told.
    mode "subtract": corrected = image - background (background 0, text about -(W - T) in
    intensity units). mode "none": corrected = image, background = ones. `fit` goes to
    `estimate_background` (terms, border, n_samples, discard, seed). `flat`: the camera's
    illumination measured on text images (`pipelines.preprocessing.flatfield`), used instead of the
    own fit where that is not white paper (`choose_background`). Both outputs float32.
    """
    if mode not in VIGNETTING_MODES:
        raise ValueError(f"vignetting mode must be one of {VIGNETTING_MODES}, got {mode!r}")
    a = _as_float_image(image)
    if mode == "none":
        return a.copy(), np.ones_like(a)
    bg, _ = choose_background(estimate_background(a, **fit), flat)
    if mode == "subtract":
        return (a - bg).astype(np.float32), bg
    return (a / np.maximum(bg, _MIN_BACKGROUND) - 1.0).astype(np.float32), bg


# --------------------------------------------------------------------------------------------
# 3. median channels
# --------------------------------------------------------------------------------------------

def _median_filter(a: np.ndarray, width: int) -> np.ndarray:
    """Exactly scipy.ndimage.median_filter(a, size=width, mode='reflect'), ~4x faster at small
    sizes: partition of sliding windows, in row chunks to bound memory."""
    if width == 1:
        return a.copy()
    h = width // 2
    lo = h
    hi = width - 1 - h
    p = np.pad(a, ((lo, hi), (lo, hi)), mode="symmetric")  # == ndimage mode 'reflect'
    k = width * width
    out = np.empty_like(a)
    rows = max(1, 4_000_000 // max(1, a.shape[1] * k))
    for r0 in range(0, a.shape[0], rows):
        r1 = min(a.shape[0], r0 + rows)
        win = np.lib.stride_tricks.sliding_window_view(p[r0:r1 + width - 1], (width, width))
        win = win.reshape(r1 - r0, a.shape[1], k)
        out[r0:r1] = np.partition(win, k // 2, axis=-1)[..., k // 2]
    return out


def median_channels(image, widths=(3, 5, 7, 9)) -> np.ndarray:
    """(H, W) image -> (H, W, 1 + len(widths)) float32: channel 0 is the image itself, channel i
    its square median filter of width widths[i-1] (identical to scipy.ndimage.median_filter with
    mode='reflect'; ~40 ms for all four default widths at 208 x 337)."""
    a = _as_float_image(image)
    ws = _check_widths(widths)
    out = np.empty(a.shape + (1 + len(ws),), dtype=np.float32)
    out[..., 0] = a
    for i, w in enumerate(ws, start=1):
        out[..., i] = _median_filter(a, w)
    return out


def _check_widths(widths) -> tuple[int, ...]:
    ws = tuple(widths)
    if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in ws):
        raise ValueError(f"median widths must be positive integers, got {widths!r}")
    return tuple(int(w) for w in ws)


# --------------------------------------------------------------------------------------------
# 4. target binarisation
# --------------------------------------------------------------------------------------------

def _disc_footprint(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 1e-9


def binarise_target(sharp, white_fraction=0.75, near_black_radius=2.0, black_level=0.5) -> np.ndarray:
    """Sharp (CAM01) image -> training target in [0, 1] (0 = black text, 1 = white), float32.

    1. Divide by np.quantile(sharp, 1 - white_fraction) and clip to [0, 1]: the brightest
       `white_fraction` of the pixels (about 75 %) become exactly 1.0, text keeps its darkness
       (~0.15 of white).
    2. Pixels darker than `black_level` (after step 1) are "truly black". Non-white values are kept
       only within `near_black_radius` pixels (a disc, in the image's own pixel units) of a truly
       black pixel; everything else (vignetted grey corners, display texture) is set to 1.
    """
    a = _as_float_image(sharp, name="sharp")
    wf = float(white_fraction)
    if not 0 < wf < 1:
        raise ValueError(f"white_fraction must be in (0, 1), got {white_fraction!r}")
    if float(near_black_radius) < 0:
        raise ValueError(f"near_black_radius must be >= 0, got {near_black_radius!r}")
    q = float(np.quantile(a, 1 - wf))
    if q <= 0:
        raise ValueError(f"cannot binarise: the {1 - wf:.0%} quantile of the image is {q:g} (a black image?)")
    t = np.clip(a / np.float32(q), 0, 1).astype(np.float32)
    black = t < float(black_level)
    if near_black_radius > 0 and black.any():
        near = ndimage.binary_dilation(black, structure=_disc_footprint(float(near_black_radius)))
    else:
        near = black
    t[~near] = 1.0
    return t


# --------------------------------------------------------------------------------------------
# 5. composition + config
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreprocessConfig:
    """Every knob of the preprocessing, stored in the prepared set's manifest and in the model card
    so inference rebuilds exactly the pipeline the network was trained on."""
    factor: float = 7
    median_widths: tuple = (3, 5, 7, 9)
    vignetting: str = "divide"
    white_fraction: float = 0.75
    n_samples: int = 430
    discard: float = 0.10
    border: tuple = DEFAULT_BORDER
    terms: tuple = DEFAULT_TERMS
    seed: int = 0
    black_level: float = 0.5
    near_black_radius: float = 2.0
    # "wiener": one more input channel, the step's Wiener deconvolution at physics_balance;
    # "wiener-multi": one channel per balance of physics_balances (empty: deconv.MULTI_BALANCES)
    # (pipelines.preprocessing.deconv)
    physics: str = "none"
    physics_balance: float = 0.003
    physics_balances: tuple = ()

    def __post_init__(self):
        _check_factor(self.factor)
        object.__setattr__(self, "median_widths", _check_widths(self.median_widths))
        if self.vignetting not in VIGNETTING_MODES:
            raise ValueError(f"vignetting must be one of {VIGNETTING_MODES}, got {self.vignetting!r}")
        if not 0 < float(self.white_fraction) < 1:
            raise ValueError(f"white_fraction must be in (0, 1), got {self.white_fraction!r}")
        if not 0 <= float(self.discard) < 1:
            raise ValueError(f"discard must be in [0, 1), got {self.discard!r}")
        if int(self.n_samples) < 1:
            raise ValueError(f"n_samples must be positive, got {self.n_samples!r}")
        object.__setattr__(self, "border", _check_border(self.border))
        object.__setattr__(self, "terms", _check_terms(self.terms))
        if self.physics not in PHYSICS_CHANNELS:
            raise ValueError(f"physics channel must be one of {PHYSICS_CHANNELS}, got {self.physics!r}")
        if not float(self.physics_balance) > 0:
            raise ValueError(f"physics_balance must be > 0, got {self.physics_balance!r}")
        balances = self.physics_balances
        balances = (balances,) if np.isscalar(balances) else tuple(balances)
        if self.physics == "wiener-multi":
            if self.physics_balance != PreprocessConfig.physics_balance:
                raise ValueError("physics_balance is the \"wiener\" channel's; \"wiener-multi\" takes "
                                 "physics_balances")
            try:
                balances = tuple(float(b) for b in (balances or MULTI_BALANCES))
            except (TypeError, ValueError):
                raise ValueError(f"physics_balances must be numbers, got {self.physics_balances!r}") from None
            if not all(math.isfinite(b) and b > 0 for b in balances) or len(set(balances)) != len(balances):
                raise ValueError(f"physics_balances must be distinct numbers > 0, got {self.physics_balances!r}")
        elif balances:
            raise ValueError(f"physics_balances is for physics \"wiener-multi\", not {self.physics!r}")
        object.__setattr__(self, "physics_balances", balances)

    @property
    def channels(self) -> int:
        """Number of input channels produced by `preprocess_blurred`."""
        return 1 + len(self.median_widths) + len(self.balances)

    @property
    def balances(self) -> tuple:
        """The Wiener balance of each physics channel, in channel order (() without one)."""
        if self.physics == "wiener-multi":
            return self.physics_balances
        return (float(self.physics_balance),) if self.physics == "wiener" else ()

    @property
    def needs_step(self) -> bool:
        """Whether the input depends on the blur step (the physics channel's PSF and contrast)."""
        return self.physics != "none"

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists). Only the keys of the physics mode in use are written
        (none without a channel; physics_balance for "wiener"; physics_balances, resolved, for
        "wiener-multi"), so the records of sets and models made before an option existed stay
        identical, and a record names the balances it was made with."""
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
        if self.physics == "none":
            del d["physics"], d["physics_balance"], d["physics_balances"]
        elif self.physics == "wiener":
            del d["physics_balances"]
        else:
            del d["physics_balance"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """Inverse of `to_dict`; missing keys take the defaults, unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown preprocessing settings {unknown}; known: {sorted(names)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _resolve_config(config, overrides: dict) -> PreprocessConfig:
    if config is None:
        config = PreprocessConfig()
    elif not isinstance(config, PreprocessConfig):
        if isinstance(config, dict):
            config = PreprocessConfig.from_dict(config)
        else:  # positional factor: preprocess_blurred(image, 7)
            overrides = {"factor": config, **overrides}
            config = PreprocessConfig()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **overrides) if overrides else config


def preprocess_blurred(image, config=None, *, step=None, factor=None, widths=None,
                       vignetting=None, flat=None) -> np.ndarray:
    """Blurred full-size (or any-size) image -> (H, W, config.channels) float32 network input:
    downscale(factor) -> remove_vignetting(vignetting) -> input_channels (median channels, and the
    physics channel of blur `step` when the config has one).

    `config` is a PreprocessConfig (or its dict, or a bare factor); keyword arguments override it.
    `flat`: the camera's illumination at the down-scaled size (`remove_vignetting`), if known.
    """
    c = _resolve_config(config, {"factor": factor, "median_widths": widths, "vignetting": vignetting})
    return preprocess_small(downscale(image, c.factor), c, step=step, flat=flat)


def preprocess_small(small, config=None, *, step=None, flat=None) -> np.ndarray:
    """The stages of `preprocess_blurred` after down-scaling: an already down-scaled blurred image
    -> remove_vignetting (with the camera's `flat` field, if known) -> input_channels (what the
    synthetic stream feeds the network)."""
    c = _resolve_config(config, {})
    corrected, _ = remove_vignetting(small, c.vignetting, flat=flat, terms=c.terms, border=c.border,
                                     n_samples=c.n_samples, discard=c.discard, seed=c.seed)
    return input_channels(corrected, c, step)


def input_channels(corrected, config: PreprocessConfig, step=None) -> np.ndarray:
    """A vignetting-corrected 1:f image -> the network input: median_channels, then, with a
    physics mode ("wiener", "wiener-multi"), the step's Wiener channel at each of config.balances
    (`pipelines.preprocessing.deconv.physics_channels`)."""
    channels = median_channels(corrected, config.median_widths)
    if not config.needs_step:
        return channels
    if step is None:
        raise ValueError(f"the {config.physics!r} input channel needs the blur step (0-19)")
    phys = physics_channels(corrected, int(step), config.factor, config.balances)
    return np.concatenate([channels, phys], axis=-1)


def preprocess_sharp(sharp, config=None, *, factor=None, white_fraction=None) -> np.ndarray:
    """Sharp full-size image -> (H, W) float32 target: downscale(factor) -> binarise_target.
    (Registration into the blurred frame,
    `pipelines.preprocessing.registration.warp_to_blurred_frame`, is applied by the caller, before
    or after this.)"""
    c = _resolve_config(config, {"factor": factor, "white_fraction": white_fraction})
    return binarise_target(downscale(sharp, c.factor), c.white_fraction,
                           near_black_radius=c.near_black_radius, black_level=c.black_level)
