"""The e-ink scene: random HDC-style text rendered on the display raster, and camera sampling of it.
Also the "sanity check" photographs (`render_photo`) shown on the same display.

The display shows binary pixels; each is ~8.5 camera pixels wide, which gives sharp HDC images
their pixel staircase. A scene is kept at display resolution and sampled per camera pixel by
nearest neighbour, so a camera geometry (scale + shift) costs only two index vectors.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..reading import physics as P

# 49 symbols seen in every real HDC2021 text file: A-Z without I, O; a-z without l, o; space.
ALPHABET = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "IO") + \
           "".join(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in "lo") + " "
FONT_FILES = {  # Debian packages: fonts-liberation (Times-like), fonts-dejavu-core / arkpandora (Verdana-like)
    "Times": ["/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
              "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"],
    "Verdana": ["/usr/share/fonts/truetype/ttf-bitstream-vera/Veranda.ttf",
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"],
}
DISPLAY_SHAPE = (int(np.ceil(P.IMAGE_SHAPE[0] / P.DISPLAY_SCALE)) + 1,
                 int(np.ceil(P.IMAGE_SHAPE[1] / P.DISPLAY_SCALE)) + 1)
# The photographs scikit-image ships (bundled, no download) for the HDC2021 sanity check: evaluation
# material only, never training data (training uses procedural scenes, pipelines.simulation.synth).
SANITY_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon")


def random_text(rng: np.random.Generator) -> tuple[str, str, str]:
    """Three lines of ten symbols drawn uniformly from the 49-symbol alphabet."""
    idx = rng.integers(0, len(ALPHABET), size=(3, 10))
    return tuple("".join(ALPHABET[i] for i in row) for row in idx)  # type: ignore[return-value]


def _font_path(name: str) -> str:
    path = next((p for p in FONT_FILES[name] if Path(p).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"no font file for {name}: tried {FONT_FILES[name]}; "
                                "install Debian's fonts-liberation and fonts-dejavu-core")
    return path


@lru_cache(maxsize=None)
def font(name: str) -> ImageFont.FreeTypeFont:
    """The font at the real data's point size, FONT_SIZE_DISPLAY display pixels, for both fonts
    (DejaVu Sans then matches Verdana's width per capital height within ~1 %)."""
    return ImageFont.truetype(_font_path(name), P.FONT_SIZE_DISPLAY)


@lru_cache(maxsize=None)
def _tallest_above_baseline(font_name: str) -> int:
    """Height (display px) of the alphabet's tallest glyph above the baseline."""
    return -font(font_name).getbbox(ALPHABET, anchor="ls")[1]


def camera_to_display(x_px: float) -> float:
    """Display-raster coordinate of a camera pixel centre (sample_camera's nearest-neighbour map)."""
    return (x_px + 0.5) / P.DISPLAY_SCALE


def render_text(lines, font_name: str) -> np.ndarray:
    """Display raster (1 = white, 0 = ink) with the three lines, binary like e-ink pixels: each line
    centred on TEXT_CENTRE_X_PX, the top of the font's tallest glyph at the line's LINE_TOPS_PX."""
    img = Image.new("L", DISPLAY_SHAPE[::-1], 255)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # no anti-aliasing: the display's pixels are black or white
    f = font(font_name)
    x = camera_to_display(P.TEXT_CENTRE_X_PX)
    rise = _tallest_above_baseline(font_name)
    for line, top in zip(lines, P.LINE_TOPS_PX[font_name]):
        draw.text((x, camera_to_display(top) + rise), line, font=f, fill=0, anchor="ms")
    return (np.asarray(img) > 127).astype(np.float32)


def render_target(kind: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Calibration and technical targets on the display: white features on a black screen
    ('PSF' dot, 'LSF_X' horizontal line, 'LSF_Y' vertical line), or a QR-like module grid."""
    h, w = DISPLAY_SHAPE
    r = np.zeros((h, w), np.float32)
    cy, cx = h // 2, w // 2
    if kind == "PSF":
        r[cy - 1:cy + 1, cx - 1:cx + 1] = 1
    elif kind == "LSF_X":
        r[cy - 1:cy + 1, 10:w - 10] = 1
    elif kind == "LSF_Y":
        r[10:h - 10, cx - 1:cx + 1] = 1
    elif kind == "QRcode":
        rng = rng or np.random.default_rng(0)
        r[:] = 1
        modules = rng.random((25, 25)) < 0.5
        for y0, x0 in ((0, 0), (0, 18), (18, 0)):  # finder squares
            modules[y0:y0 + 7, x0:x0 + 7] = True
            modules[y0 + 1:y0 + 6, x0 + 1:x0 + 6] = False
            modules[y0 + 2:y0 + 5, x0 + 2:x0 + 5] = True
        grid = np.kron(modules, np.ones((5, 5), bool))
        top, left = (h - grid.shape[0]) // 2, (w - grid.shape[1]) // 2
        r[top:top + grid.shape[0], left:left + grid.shape[1]] = ~grid
    else:
        raise ValueError(f"unknown target {kind!r}")
    return r


@lru_cache(maxsize=None)
def _photo_raster(name: str) -> np.ndarray:
    import skimage.data
    from skimage.color import rgb2gray

    if name not in SANITY_PHOTOS:
        raise ValueError(f"unknown sanity photo {name!r}; known: {', '.join(SANITY_PHOTOS)}")
    a = getattr(skimage.data, name)()
    grey = (rgb2gray(a[..., :3]) if a.ndim == 3 else a / 255.0).astype(np.float32)
    h, w = grey.shape
    aspect = DISPLAY_SHAPE[1] / DISPLAY_SHAPE[0]
    ch, cw = (h, int(round(h * aspect))) if w / h > aspect else (int(round(w / aspect)), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.ascontiguousarray(grey[top:top + ch, left:left + cw]), mode="F")
    # BOX = exact area average over each display pixel's footprint
    r = np.asarray(crop.resize(DISPLAY_SHAPE[::-1], Image.Resampling.BOX), dtype=np.float32)
    r = np.clip(r, 0.0, 1.0)
    r.setflags(write=False)
    return r


def render_photo(name: str) -> np.ndarray:
    """A sanity photo on the display raster (1 = white, 0 = black, grey in between; radiance is
    linear in it): grey, centre-cropped to the display's aspect ratio, area-averaged to the raster."""
    return _photo_raster(name).copy()


def sample_camera(raster: np.ndarray, geometry: dict | None = None, shape=P.IMAGE_SHAPE) -> np.ndarray:
    """Camera image of a display raster by nearest neighbour: the pixel staircase.

    geometry (scale_x, scale_y, shift_x, shift_y) maps CAM01 to this camera as documented in physics.
    """
    h, w = shape
    sx, sy, dx, dy = ((geometry["scale_x"], geometry["scale_y"], geometry["shift_x"], geometry["shift_y"])
                      if geometry else (1.0, 1.0, 0.0, 0.0))
    cx, cy = (w - 1) / 2, (h - 1) / 2
    x1 = cx + (np.arange(w) - cx - dx) / sx  # invert the CAM01 -> camera map
    y1 = cy + (np.arange(h) - cy - dy) / sy
    cols = np.clip(np.floor((x1 + 0.5) / P.DISPLAY_SCALE).astype(int), 0, raster.shape[1] - 1)
    rows = np.clip(np.floor((y1 + 0.5) / P.DISPLAY_SCALE).astype(int), 0, raster.shape[0] - 1)
    return raster[np.ix_(rows, cols)]


def vignetting(shape=P.IMAGE_SHAPE, jitter: float = 0.0, rows=None, cols=None) -> np.ndarray:
    """Multiplicative illumination: 1 at the bottom centre, corners 5-15 % darker, top right darkest.
    `rows`/`cols`: evaluate at these (fractional) full-size pixel positions instead of every pixel."""
    h, w = shape
    rows = np.arange(h) if rows is None else np.asarray(rows)
    cols = np.arange(w) if cols is None else np.asarray(cols)
    u = (-1 + 2 * cols / (w - 1)).astype(np.float32)[None, :]
    v = (-1 + 2 * rows / (h - 1)).astype(np.float32)[:, None]  # -1 = top
    top = (1 - v) / 2
    a, b, c = 0.05 + jitter, 0.075, 0.025  # bottom corners 0.95, top left 0.90, top right 0.85
    return 1 - a * u ** 2 - b * top ** 2 - c * u * top
