"""Registration of the sharp camera (CAM01) to the blurred camera (CAM02), and the blur kernel.

The two cameras are not pixel-aligned (README 5.3): CAM02 sees the scene slightly smaller
(scale ~0.88-1.013) and shifted (up to ~46 full-size px, growing with the step). The convention is
the one of `pipelines.reading.physics` (comment above GEOMETRY_ANCHORS): a scene point at CAM01
pixel (x1, y1) appears in CAM02 at

    x2 = cx + sx * (x1 - cx) + dx,    y2 = cy + sy * (y1 - cy) + dy,   (cx, cy) = ((W-1)/2, (H-1)/2)

Every function takes geometry "in the units of the images passed": at a down-scale factor f
(`pipelines.preprocessing.preprocess.downscale`) the scales stay and the shifts are the full-size
shifts / f. `AlignmentResult.rescaled` converts between resolutions.

TensorFlow is never imported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from ..reading.psf import disc_kernel  # noqa: F401  (re-exported: the blur model's kernel)
from .preprocess import downscale, remove_vignetting

_VIGNETTING_SAMPLES = 20000


# --------------------------------------------------------------------------------------------
# blur kernel
# --------------------------------------------------------------------------------------------

def disc_blur(image, radius: float, edge: float | None = None) -> np.ndarray:
    """Convolve a 2-D image with `disc_kernel(radius, edge)` (FFT, edges padded by reflection, so
    the border is not darkened). Returns float32 of the same shape."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"disc_blur needs a 2-D image, got shape {a.shape}")
    k = disc_kernel(radius, edge).astype(np.float32)
    h = k.shape[0] // 2
    if h == 0:
        return a.copy()
    p = np.pad(a, h, mode="symmetric" if h <= min(a.shape) else "edge")
    return fftconvolve(p, k, mode="valid").astype(np.float32)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignmentResult:
    """Estimated CAM01 -> CAM02 geometry (physics convention, units of the images it was estimated
    on) and `residual` = 1 - normalised cross-correlation of the blurred, warped sharp image with
    the blurred image at the optimum (0 = perfect match)."""
    scale_x: float
    scale_y: float
    shift_x: float
    shift_y: float
    residual: float = float("nan")

    @property
    def params(self) -> tuple[float, float, float, float]:
        """(scale_x, scale_y, shift_x, shift_y)."""
        return (self.scale_x, self.scale_y, self.shift_x, self.shift_y)

    def rescaled(self, ratio: float) -> "AlignmentResult":
        """The same geometry for images `ratio` times larger (shifts * ratio, scales unchanged):
        estimated at 1:4, used at 1:7 -> ratio = 4 / 7; used at full size -> ratio = 4."""
        return AlignmentResult(self.scale_x, self.scale_y, self.shift_x * ratio,
                               self.shift_y * ratio, self.residual)

    def to_dict(self) -> dict:
        return {"scale_x": self.scale_x, "scale_y": self.scale_y, "shift_x": self.shift_x,
                "shift_y": self.shift_y, "residual": self.residual}


def as_params(params) -> tuple[float, float, float, float]:
    """(sx, sy, dx, dy) from an AlignmentResult, a dict with scale_x/scale_y/shift_x/shift_y keys
    (e.g. `physics.step_physics(step)`, whose shifts are full-size px) or a 4-sequence."""
    if isinstance(params, AlignmentResult):
        p = params.params
    elif isinstance(params, dict):
        try:
            p = (params["scale_x"], params["scale_y"], params["shift_x"], params["shift_y"])
        except KeyError as e:
            raise ValueError(f"geometry dict lacks {e.args[0]!r}") from None
    else:
        p = tuple(params)
        if len(p) != 4:
            raise ValueError(f"geometry must be (scale_x, scale_y, shift_x, shift_y), got {params!r}")
    p = tuple(float(v) for v in p)
    if not all(math.isfinite(v) for v in p) or p[0] <= 0 or p[1] <= 0:
        raise ValueError(f"geometry needs positive finite scales and finite shifts, got {p}")
    return p


def _affine(in_shape, out_shape, p):
    """Matrix/offset for ndimage.affine_transform: output (y2, x2) -> input (y1, x1)."""
    sx, sy, dx, dy = p
    cy1, cx1 = (in_shape[0] - 1) / 2.0, (in_shape[1] - 1) / 2.0
    cy2, cx2 = (out_shape[0] - 1) / 2.0, (out_shape[1] - 1) / 2.0
    matrix = np.array([1.0 / sy, 1.0 / sx])
    offset = np.array([cy1 - (cy2 + dy) / sy, cx1 - (cx2 + dx) / sx])
    return matrix, offset


def _warp(a, p, out_shape, order=1, cval=None):
    matrix, offset = _affine(a.shape, out_shape, p)
    mode, fill = ("nearest", 0.0) if cval is None else ("constant", float(cval))
    return ndimage.affine_transform(a, matrix, offset=offset, output_shape=tuple(out_shape),
                                    order=order, mode=mode, cval=fill, prefilter=order > 1)


def warp_to_blurred_frame(sharp, params, output_shape=None, order=1, cval=None) -> np.ndarray:
    """Resample a CAM01-frame image (H, W) or (H, W, C) into the CAM02 frame.

    `params` = (scale_x, scale_y, shift_x, shift_y) (or an AlignmentResult / geometry dict) in the
    units of `sharp` (shifts already divided by the down-scale factor). The output has
    `output_shape` (default: the input's (H, W)); its centre is ((W_out-1)/2, (H_out-1)/2), the
    input's centre ((W-1)/2, (H-1)/2). `order` is the spline order (1 = bilinear). Outside the
    source image: the nearest border pixel is repeated (cval=None: background stays background),
    or the constant `cval` (e.g. 1.0 = white for a binarised target). Returns float32.
    """
    a = np.asarray(sharp)
    if a.ndim not in (2, 3):
        raise ValueError(f"warp_to_blurred_frame needs an (H, W) or (H, W, C) image, got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    p = as_params(params)
    out = tuple(int(n) for n in (output_shape or a.shape[:2])[:2])
    if a.ndim == 2:
        return _warp(a, p, out, order, cval).astype(np.float32, copy=False)
    return np.stack([_warp(a[..., c], p, out, order, cval) for c in range(a.shape[2])],
                    axis=-1).astype(np.float32, copy=False)


def residual_misalignment(params_true, params_est, shape) -> float:
    """Largest displacement (pixels, in the units of the params) between where two geometries put
    the same CAM01 point, over an image of `shape` (H, W). The difference is affine, so its maximum
    is reached at a corner."""
    t, e = as_params(params_true), as_params(params_est)
    h, w = int(shape[0]), int(shape[1])
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ddx = [(t[0] - e[0]) * (x - cx) + (t[2] - e[2]) for x in (0.0, w - 1.0)]
    ddy = [(t[1] - e[1]) * (y - cy) + (t[3] - e[3]) for y in (0.0, h - 1.0)]
    return float(max(math.hypot(a, b) for a in ddx for b in ddy))


# --------------------------------------------------------------------------------------------
# estimation
# --------------------------------------------------------------------------------------------

def _interior(shape, frac=0.03) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, dtype=bool)
    my, mx = max(2, int(math.ceil(frac * h))), max(2, int(math.ceil(frac * w)))
    m[my:h - my, mx:w - mx] = True
    return m


def _ncc(a, b, mask) -> float:
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    d = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / d if d > 0 else 0.0


def _coarse_search(T, B, scales, max_shift):
    """Best isotropic scale on the grid and its integer+parabolic shift via FFT correlation."""
    mask = _interior(B.shape)
    Bz = np.where(mask, B - B[mask].mean(), 0.0)
    H, W = B.shape
    ph, pw = H + int(max_shift[0]) + 1, W + int(max_shift[1]) + 1  # zero-pad: no wrap-around
    FB = np.fft.rfft2(Bz, s=(ph, pw))
    nb = math.sqrt(float((Bz * Bz).sum()))
    best = (-np.inf, 1.0, 0.0, 0.0)
    for s in scales:
        Tw = _warp(T, (s, s, 0.0, 0.0), B.shape)
        Tz = np.where(mask, Tw - Tw[mask].mean(), 0.0)
        nt = math.sqrt(float((Tz * Tz).sum()))
        if nt == 0 or nb == 0:
            continue
        # c[k] = sum_x B(x) T(x - k): the shift that moves T onto B
        c = np.fft.irfft2(FB * np.conj(np.fft.rfft2(Tz, s=(ph, pw))), s=(ph, pw)) / (nb * nt)
        my, mx = int(max_shift[0]), int(max_shift[1])
        c = np.roll(c, (my, mx), axis=(0, 1))[:2 * my + 1, :2 * mx + 1]  # shifts -m..m
        iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
        if c[iy, ix] > best[0]:
            sub = []
            for arr, i in ((c[:, ix], iy), (c[iy, :], ix)):
                if 0 < i < len(arr) - 1:
                    den = arr[i - 1] - 2 * arr[i] + arr[i + 1]
                    sub.append(i + (0.5 * (arr[i - 1] - arr[i + 1]) / den if den < 0 else 0.0))
                else:
                    sub.append(float(i))
            best = (float(c[iy, ix]), float(s), sub[1] - mx, sub[0] - my)
    return best[1], best[1], best[2], best[3]


def _nuisance(shape, mask) -> np.ndarray:
    """Linear nuisance columns: a quadratic background (1, x, y, x^2, xy, y^2) over the interior,
    so a residual vignetting / background error cannot pull the scale or shift."""
    H, W = shape
    y, x = np.nonzero(mask)
    x = (x - (W - 1) / 2.0) / max((W - 1) / 2.0, 1.0)
    y = (y - (H - 1) / 2.0) / max((H - 1) / 2.0, 1.0)
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _gauss_newton(T, B, p, iters=30, max_step=(0.02, 2.0), gain_terms=3):
    """Refine (sx, sy, dx, dy) minimising ||B - (g(x, y) W_p(T) + c(x, y))||^2 over the interior.

    g (gain) and c (background) are free quadratic polynomials (linear parameters, re-solved at
    every step), so smooth vignetting / exposure / offset differences between the two cameras
    cannot pull the scale or the shift. Returns (params, ncc of g W_p(T) with B - c)."""
    mask = _interior(B.shape)
    gy, gx = np.gradient(T.astype(np.float32))
    H, W = B.shape
    cx2, cy2 = (W - 1) / 2.0, (H - 1) / 2.0
    yy, xx = np.nonzero(mask)
    X2, Y2 = xx.astype(np.float64), yy.astype(np.float64)
    b_obs = B[mask].astype(np.float64)
    N = _nuisance(B.shape, mask)
    q = int(gain_terms)
    p = np.array(p, dtype=np.float64)

    def fit(pp):
        tw = _warp(T, tuple(pp), B.shape)[mask].astype(np.float64)
        L = np.column_stack([tw[:, None] * N[:, :q], N])
        lin = np.linalg.lstsq(L, b_obs, rcond=None)[0]
        res = b_obs - L @ lin
        return tw, L, lin, float(res @ res)

    tw, L, lin, cost = fit(p)
    for _ in range(iters):
        sx, sy, dx, dy = p
        gain = N[:, :q] @ lin[:q]
        Gx = gain * _warp(gx, tuple(p), B.shape)[mask].astype(np.float64)
        Gy = gain * _warp(gy, tuple(p), B.shape)[mask].astype(np.float64)
        u = (X2 - cx2 - dx) / sx  # x1 - cx1
        v = (Y2 - cy2 - dy) / sy
        J = np.column_stack([Gx * (-u / sx), Gy * (-v / sy), Gx * (-1.0 / sx), Gy * (-1.0 / sy), L])
        r = b_obs - L @ lin
        JTJ = J.T @ J
        d = np.sqrt(np.maximum(np.diag(JTJ), 1e-30))
        try:
            delta = np.linalg.solve(JTJ / np.outer(d, d) + 1e-9 * np.eye(len(d)), (J.T @ r) / d) / d
        except np.linalg.LinAlgError:
            break
        # limit the geometric step (scales, shifts) for robustness far from the optimum
        lim = np.array([max_step[0], max_step[0], max_step[1], max_step[1]])
        f = min(1.0, float(np.min(lim / np.maximum(np.abs(delta[:4]), 1e-30))))
        accepted = False
        for _ in range(6):
            pn = p + f * delta[:4]
            if pn[0] > 0 and pn[1] > 0:
                twn, Ln, linn, cn = fit(pn)
                if cn <= cost:
                    accepted = True
                    break
            f *= 0.5
        if not accepted:
            break
        p, tw, L, lin, cost = pn, twn, Ln, linn, cn
        if np.all(np.abs(f * delta[:2]) < 2e-6) and np.all(np.abs(f * delta[2:4]) < 2e-4):
            break
    x = tw * (N[:, :q] @ lin[:q])
    y = b_obs - N @ lin[q:]
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return tuple(float(v) for v in p), (float(x @ y) / den if den > 0 else 0.0)


def estimate_alignment(sharp, blurred, radius, init=None, *, scale_range=(0.85, 1.05),
                       max_shift=0.05, coarse_width=170) -> AlignmentResult:
    """Estimate the CAM01 -> CAM02 geometry of one image pair (same shape, same scale).

    `sharp` and `blurred` are the raw 2-D float images (vignetting and all, any scale: work at
    1:7 or 1:4); `radius` is the blur-disc radius in their pixel units (full-size radius / factor).
    `init` (optional geometry, e.g. the physics table's, shifts in the images' units) narrows the
    coarse scale search to +-0.02 around it.

    Method. The sharp image is disc-blurred with radius / scale (the blur acts in the CAM02 frame).
    (1) Coarse level, about `coarse_width` px wide, both images vignetting-flattened ("divide"):
    isotropic scales on a 0.01 grid over `scale_range` x FFT cross-correlation for the shift within
    `max_shift` (fraction of the image size). (2) Gauss-Newton refinement of (sx, sy, dx, dy) on
    the raw images, first on the coarse level, then at the given resolution, with the blurred image
    modelled as g(x, y) * warped template + c(x, y): a linear gain field and a quadratic
    background absorb gain, offset and the vignetting difference between the cameras. (A
    background fitted beforehand on the text-free border would bias the scale: at high steps the
    blur reaches the border.) Returns an AlignmentResult in the units of the input
    (`.rescaled(ratio)` converts); `residual` = 1 - NCC at the optimum.

    Accuracy on synthetic pairs (physics-table geometry, gain/offset, noise and camera-specific
    vignetting; worst of 3 pages): max misalignment over the image <= 0.25 full-size px up to step 9
    and <= 0.9 px up to step 14 at both 1:4 and 1:7 (scales within 0.1 %); ~2 px at step 15, and
    several px beyond (r >= 160 full-size px: the blurred text is a smooth blob): there, prefer the
    median of the estimates over a step's images, or the physics table (geometry is a property of
    the step, not of the image). About 0.15 s per pair at 1:7 (208 x 337), 0.35 s at 1:4.
    """
    s_raw = np.asarray(sharp)
    b_raw = np.asarray(blurred)
    if s_raw.ndim != 2 or b_raw.ndim != 2 or s_raw.shape != b_raw.shape:
        raise ValueError(f"estimate_alignment needs two 2-D images of the same shape, got "
                         f"{s_raw.shape} and {b_raw.shape}")
    if not (np.issubdtype(s_raw.dtype, np.floating) and np.issubdtype(b_raw.dtype, np.floating)):
        raise ValueError("estimate_alignment needs float images in [0, 1] "
                         f"(got {s_raw.dtype} and {b_raw.dtype}; normalise uint16 by 65535)")
    r = float(radius)
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"blur radius must be a finite number >= 0, got {radius!r}")
    S = s_raw.astype(np.float32)
    B = b_raw.astype(np.float32)
    H, W = B.shape
    k = max(1, int(round(max(H, W) / float(coarse_width))))
    Sc, Bc = (downscale(S, k), downscale(B, k)) if k > 1 else (S, B)

    def template(img, rad, scale, sigma=0.0):
        t = disc_blur(img, rad / max(scale, 1e-3))
        return ndimage.gaussian_filter(t, sigma) if sigma > 0 else t

    # (1) coarse search on vignetting-flattened images
    if init is not None:
        p0 = as_params(init)
        scales = np.arange(-2, 3) * 0.01 + 0.5 * (p0[0] + p0[1])
    else:
        scales = np.arange(scale_range[0], scale_range[1] + 1e-9, 0.01)
    s_mid = float(np.mean(scales))
    flat_t = template(remove_vignetting(Sc, n_samples=_VIGNETTING_SAMPLES)[0], r / k, s_mid, 1.0)
    flat_b = ndimage.gaussian_filter(remove_vignetting(Bc, n_samples=_VIGNETTING_SAMPLES)[0], 1.0)
    ms = (max(2, int(math.ceil(max_shift * Bc.shape[0]))),
          max(2, int(math.ceil(max_shift * Bc.shape[1]))))
    p0c = _coarse_search(flat_t, flat_b, scales, ms)
    if init is not None:  # keep init unless the search around it matches better
        pi = (p0[0], p0[1], p0[2] / k, p0[3] / k)
        m = _interior(flat_b.shape)
        if _ncc(_warp(flat_t, pi, flat_b.shape), flat_b, m) >= _ncc(_warp(flat_t, p0c, flat_b.shape), flat_b, m):
            p0c = pi
    # (2) Gauss-Newton on the raw images: coarse level (smoothed), then full resolution
    Tc = template(Sc, r / k, 0.5 * (p0c[0] + p0c[1]), 1.0)
    pc, _ = _gauss_newton(Tc, ndimage.gaussian_filter(Bc, 1.0), p0c)
    p1 = (pc[0], pc[1], pc[2] * k, pc[3] * k)
    T = template(S, r, 0.5 * (p1[0] + p1[1]))
    p, ncc = _gauss_newton(T, B, p1)
    return AlignmentResult(p[0], p[1], p[2], p[3], residual=1.0 - ncc)
