"""Procedural non-text scenes for training: unlimited, no downloads, drawn on the display raster.

HDC2021 gates every step on a "sanity check": the method must deblur general images, not turn
everything into text. A network that has only seen text learns to paint strokes, so the synthetic
stream mixes in these scenes (`pipelines.simulation.synth`, `--nontext-fraction`) with their sharp
grey image as the target. The photographs that scikit-image ships are the sanity check's evaluation
set and are deliberately NOT used here.

Kinds (display raster, 1 = white, 0 = black, grey values in between):
- dead_leaves: occluding discs with a power-law radius distribution (a standard synthetic prior
  for restoration networks: scale-invariant, sharp edges, natural-image-like statistics);
- fractal: 1/f^a noise (the power spectrum of natural photographs);
- shapes: rectangles, ellipses, polygons and thick lines of random greys;
- smooth: gradients and low-frequency fields (no edges: the network must not invent any);
- star: a Siemens star (every orientation and frequency up to the display's resolution);
- bars: bar groups of several periods and orientations (resolution charts);
- qr: QR-like module grids.
Half of the scenes get a random contrast/brightness remap (down to 4 % of the grey range), a quarter sit in a white or black frame
(a picture on a page).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .scene import DISPLAY_SHAPE

KINDS = ("dead_leaves", "fractal", "shapes", "smooth", "star", "bars", "qr")
KIND_WEIGHTS = (0.27, 0.20, 0.14, 0.12, 0.09, 0.09, 0.09)


def _canvas(rng, shape) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", shape[::-1], int(rng.integers(0, 256)))
    return img, ImageDraw.Draw(img)


def _grey(rng) -> int:
    return int(rng.integers(0, 256))


def dead_leaves(rng, shape=DISPLAY_SHAPE, n: int = 600, r_min: float = 1.0, r_max: float = 90.0) -> np.ndarray:
    """Discs with radius density ~ r^-3 between r_min and r_max (inverse-CDF sampling), painted in
    order, so later ones occlude earlier ones."""
    img, draw = _canvas(rng, shape)
    u = rng.random(n)
    r = 1.0 / np.sqrt(u / r_max ** 2 + (1 - u) / r_min ** 2)
    cy = rng.uniform(-r_max / 2, shape[0] + r_max / 2, n)
    cx = rng.uniform(-r_max / 2, shape[1] + r_max / 2, n)
    for y, x, rr in zip(cy, cx, np.sort(r)[::-1]):  # big first: small leaves stay visible
        draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=_grey(rng))
    return np.asarray(img, np.float32) / 255


def fractal(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f^a, a in [1.6, 2.6], stretched to [0, 1]."""
    h, w = shape
    a = rng.uniform(1.6, 2.6)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** (a / 2)
    spec[0, 0] = 0
    field = np.fft.irfft2(spec, s=shape)
    lo, hi = np.quantile(field, [0.01, 0.99])
    return np.clip((field - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def shapes(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    img, draw = _canvas(rng, shape)
    h, w = shape
    for _ in range(int(rng.integers(5, 30))):
        kind = rng.integers(4)
        x0, y0 = rng.uniform(-20, w), rng.uniform(-20, h)
        x1, y1 = x0 + rng.uniform(3, w / 2), y0 + rng.uniform(3, h / 2)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=_grey(rng))
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=_grey(rng))
        elif kind == 2:
            pts = [(float(x), float(y)) for x, y in zip(rng.uniform(x0, x1, 3 + rng.integers(4)),
                                                         rng.uniform(y0, y1, 3 + rng.integers(4)))]
            if len(pts) >= 3:
                draw.polygon(pts[:min(len(pts), 6)], fill=_grey(rng))
        else:
            draw.line((x0, y0, x1, y1), fill=_grey(rng), width=int(rng.integers(1, 8)))
    return np.asarray(img, np.float32) / 255


def smooth(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    """A linear gradient plus a low-frequency random field."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(t) * xx / w + np.sin(t) * yy / h)
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(6, 40))
    field /= max(float(np.abs(field).max()), 1e-9)
    s = ramp * rng.uniform(0, 1) + field * rng.uniform(0, 1)
    lo, hi = float(s.min()), float(s.max())
    return ((s - lo) / max(hi - lo, 1e-9)).astype(np.float32)


def star(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    """A Siemens star: `spokes` dark/bright sectors around a random centre, on a random background."""
    h, w = shape
    cy, cx = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
    radius = rng.uniform(25, 0.6 * w)
    spokes = int(rng.integers(8, 40))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(yy - cy, xx - cx)
    inside = np.hypot(yy - cy, xx - cx) <= radius
    a, b = sorted(rng.uniform(0, 1, 2))
    sectors = np.where(np.sin(spokes * ang) > 0, b, a)
    bg = rng.uniform(0, 1)
    return np.where(inside, sectors, bg).astype(np.float32)


def bars(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    """Groups of bars (resolution-chart style): periods 2-24 display pixels, both orientations."""
    h, w = shape
    bg = rng.uniform(0, 1)
    s = np.full(shape, bg, np.float32)
    for _ in range(int(rng.integers(2, 8))):
        gh, gw = int(rng.integers(10, h // 2)), int(rng.integers(10, w // 2))
        y0, x0 = int(rng.integers(0, h - gh)), int(rng.integers(0, w - gw))
        period = int(rng.integers(2, 25))
        level = rng.uniform(0, 1)
        if rng.random() < 0.5:
            on = (np.arange(gw) % period) < max(1, period // 2)
            s[y0:y0 + gh, x0:x0 + gw][:, on] = level
        else:
            on = (np.arange(gh) % period) < max(1, period // 2)
            s[y0:y0 + gh, x0:x0 + gw][on, :] = level
    return s


def qr(rng, shape=DISPLAY_SHAPE) -> np.ndarray:
    """A QR-like grid of random modules (module 2-8 display pixels) with finder squares."""
    h, w = shape
    module = int(rng.integers(2, 9))
    n = int(rng.integers(15, 40))
    n = max(7, min(n, (min(h, w) - 2) // module))
    grid = rng.random((n, n)) < 0.5
    for y0, x0 in ((0, 0), (0, n - 7), (n - 7, 0)):
        grid[y0:y0 + 7, x0:x0 + 7] = True
        grid[y0 + 1:y0 + 6, x0 + 1:x0 + 6] = False
        grid[y0 + 2:y0 + 5, x0 + 2:x0 + 5] = True
    big = np.kron(grid, np.ones((module, module), bool))
    s = np.ones(shape, np.float32)
    top = int(rng.integers(0, h - big.shape[0] + 1))
    left = int(rng.integers(0, w - big.shape[1] + 1))
    s[top:top + big.shape[0], left:left + big.shape[1]] = np.where(big, 0.0, 1.0)
    return s


GENERATORS = {"dead_leaves": dead_leaves, "fractal": fractal, "shapes": shapes, "smooth": smooth,
              "star": star, "bars": bars, "qr": qr}


MIN_CONTRAST = 0.04


def _remap(s: np.ndarray, rng) -> np.ndarray:
    """Random contrast, brightness and gamma (photographs are rarely full-range). The contrast
    (hi - lo) is log-uniform in [MIN_CONTRAST, 1]: two in five remapped scenes span less than 0.15
    of the grey range, as dim, hazy or low-key photos do, where the vignetting and the noise are as
    large as the scene and a network that has only seen full-range scenes paints strokes."""
    contrast = float(np.exp(rng.uniform(np.log(MIN_CONTRAST), 0.0)))
    lo = rng.uniform(0, 1 - contrast)
    return (lo + contrast * np.clip(s, 0, 1) ** rng.uniform(0.5, 2.0)).astype(np.float32)


def _frame(s: np.ndarray, rng) -> np.ndarray:
    """The scene inside a white or black frame of random widths (a picture on a page)."""
    h, w = s.shape
    out = np.full_like(s, 1.0 if rng.random() < 0.7 else 0.0)
    t, b = int(rng.uniform(0.05, 0.3) * h), int(rng.uniform(0.05, 0.3) * h)
    l, r = int(rng.uniform(0.05, 0.3) * w), int(rng.uniform(0.05, 0.3) * w)
    out[t:h - b, l:w - r] = s[t:h - b, l:w - r]
    return out


def nontext_scene(rng: np.random.Generator, kind: str | None = None, shape=DISPLAY_SHAPE) -> tuple[np.ndarray, str]:
    """(display raster in [0, 1], kind): a random non-text scene (module docstring)."""
    if kind is None:
        p = np.asarray(KIND_WEIGHTS) / np.sum(KIND_WEIGHTS)
        kind = KINDS[int(rng.choice(len(KINDS), p=p))]
    if kind not in GENERATORS:
        raise ValueError(f"unknown non-text scene kind {kind!r}; known: {KINDS}")
    s = GENERATORS[kind](rng, shape)
    if rng.random() < 0.5:
        s = _remap(s, rng)
    if rng.random() < 0.25:
        s = _frame(s, rng)
    return np.clip(s, 0, 1).astype(np.float32), kind
