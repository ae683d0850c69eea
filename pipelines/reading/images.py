"""One image loader for every input the project reads: TIFF, PNG and JPEG, 8- or 16-bit.

The HDC2021 data are single-channel uint16 TIFFs, but examples circulate as 8-bit PNG (and JPEG),
so every reader goes through `load_image`, which returns float32 in [0, 1] whatever the format:

  * .tif / .tiff (tifffile) and .png / .jpg / .jpeg (Pillow); the suffix picks the decoder,
    case-insensitively.
  * 8-bit data is divided by 255, 16-bit data by 65535 (so 8-bit v and 16-bit 257 * v are the same
    brightness). Anything else (float, 32-bit, signed) is refused.
  * Colour is converted to grayscale with the ITU-R 601-2 luma weights 0.299 R + 0.587 G + 0.114 B,
    in floating point: the weights of Pillow's "L" conversion and so of the official scorer's
    `ImageOps.grayscale`. An alpha channel is ignored, as the scorer ignores it (the official
    example.png is RGBA, the circulating sharp JPEG is RGB, both with R = G = B).
  * Every problem is a DataError naming the file: missing, unreadable or truncated, wrong bit depth,
    not an image plane, wrong size, larger than MAX_PIXELS (every format; the size is read from the
    header before anything is decoded).
  * Hidden files (name starting with ".", such as an interrupted write's temporary file) are not
    images of a folder; a broken or looping symbolic link is listed, so that reading it reports it.

When a folder holds the same name in several formats (foo.tif and foo.png), `find_image` and
`image_files` take the first in IMAGE_SUFFIXES order: TIFF (the lossless original), then PNG, then
JPEG.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..common.errors import DataError
from .physics import IMAGE_SHAPE

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")  # order = preference for one stem
_TIFF = (".tif", ".tiff")
_FORMAT_NAME = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R 601-2, as Pillow's "L"
# Pillow modes whose pixels are not plain gray/RGB(A) integers: converted first (palette, 1-bit, CMYK)
_PILLOW_CONVERT = {"1": "L", "P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
                   "HSV": "RGB"}
# One size limit for every format (an HDC frame is 3.4 Mpx); below Pillow's own bomb warning (89 Mpx)
MAX_PIXELS = 64_000_000


def is_image(path) -> bool:
    """Whether the path has one of the accepted image suffixes (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _preference(path: Path) -> int:
    return IMAGE_SUFFIXES.index(path.suffix.lower())


def image_files(folder) -> list[Path]:
    """The images of a folder, one per stem (the preferred format where a stem has several),
    sorted by file name."""
    chosen: dict[str, Path] = {}
    for p in Path(folder).iterdir():
        if is_image(p) and not p.name.startswith(".") and (p.is_file() or (p.is_symlink() and not p.exists())):
            old = chosen.get(p.stem)
            if old is None or (_preference(p), p.name) < (_preference(old), old.name):
                chosen[p.stem] = p
    return sorted(chosen.values(), key=lambda p: p.name)


def find_image(folder, stem: str) -> Path | None:
    """The image named `stem` in `folder` in the preferred format, or None."""
    folder = Path(folder)
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    if not folder.is_dir():
        return None
    # rare mixed-case suffixes (.Tif): a full scan, only when the quick probes miss
    return next((p for p in image_files(folder) if p.stem == stem), None)


def check_pixels(path, width: int, height: int, channels: int = 1) -> None:
    """DataError if an image of this size is over MAX_PIXELS (checked before decoding it)."""
    if width * height > MAX_PIXELS:
        raise DataError(path, f"image of {width} x {height} px (w x h, {width * height / 1e6:.1f} Mpx) "
                              f"is larger than the {MAX_PIXELS / 1e6:.0f} Mpx limit")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
            plane = shape[:-1] if len(shape) == 3 and shape[-1] <= 4 else shape  # without colour channels
            if len(plane) >= 2:
                check_pixels(path, int(plane[-1]), int(np.prod(plane[:-1])))
            return tif.asarray()
    except DataError:
        raise
    except Exception as e:  # tifffile raises many types for truncated or foreign files
        raise DataError(path, f"unreadable or truncated TIFF ({type(e).__name__}: {e})") from None


def pillow_array(im) -> np.ndarray:
    """A Pillow image as an integer array: (h, w) gray or (h, w, 2|3|4) gray/colour with alpha."""
    if im.mode in _PILLOW_CONVERT:
        im = im.convert(_PILLOW_CONVERT[im.mode])
    a = np.asarray(im)
    if im.mode == "I":  # 16-bit grayscale PNG as Pillow before 10.3 opens it (int32)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"32-bit integer values in [{a.min()}, {a.max()}] are not 16-bit data")
        a = a.astype(np.uint16)
    return a


def _read_pillow(path: Path, kind: str) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS says it
            im = Image.open(path, formats=["PNG", "JPEG"])
        with im:
            check_pixels(path, *im.size)
            im.load()  # decode now: a truncated file fails here, not later
            return pillow_array(im)
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(path, f"image is larger than the {MAX_PIXELS / 1e6:.0f} Mpx limit") from None
    except Exception as e:  # OSError (truncated, not an image), SyntaxError
        raise DataError(path, f"unreadable or truncated {kind} ({type(e).__name__}: {e})") from None


def _to_unit_gray(path: Path, data: np.ndarray) -> np.ndarray:
    """8/16-bit (h, w) or (h, w, 1) gray, gray+alpha, RGB or RGBA -> (h, w) float32 in [0, 1]."""
    if data.dtype.kind == "u" and data.dtype.itemsize in (1, 2):
        data = data.astype(data.dtype.newbyteorder("="), copy=False)  # big-endian TIFFs
        full = np.float32(255 if data.dtype.itemsize == 1 else 65535)
    else:
        raise DataError(path, f"expected an 8- or 16-bit image, found {data.dtype}")
    if data.ndim == 3 and data.shape[-1] in (1, 2, 3, 4):
        if data.shape[-1] <= 2:  # gray (+ alpha)
            data = data[..., 0]
        else:  # colour (+ alpha): luma, in float so 16-bit colour keeps its precision
            return (data[..., :3] @ LUMA / full).astype(np.float32)
    if data.ndim != 2:
        raise DataError(path, f"expected a single-channel image, found shape {data.shape}")
    return data.astype(np.float32) / full


def to_unit_gray(data: np.ndarray) -> np.ndarray:
    """An 8/16-bit gray or colour array -> (h, w) float32 in [0, 1], converted as `load_image`
    converts files (for images already in memory, e.g. `deblur.infer.Deblurrer.deblur`)."""
    try:
        return _to_unit_gray(Path("image"), np.asarray(data))
    except DataError as e:
        raise ValueError(e.problem) from None


def load_image(path, expect_shape: tuple[int, int] | None = IMAGE_SHAPE) -> np.ndarray:
    """Load a TIFF, PNG or JPEG image as (h, w) float32 in [0, 1] (module docstring for the rules);
    `expect_shape` (h, w), None for any size. DataError naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "broken symbolic link or link loop" if path.is_symlink() else "file not found")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(path, f"not a supported image type (expected one of {', '.join(IMAGE_SUFFIXES)})")
    data = _read_tiff(path) if suffix in _TIFF else _read_pillow(path, _FORMAT_NAME[suffix])
    image = _to_unit_gray(path, data)
    if expect_shape is not None and image.shape != tuple(expect_shape):
        raise DataError(path, f"expected {expect_shape[1]} x {expect_shape[0]} (w x h), "
                              f"found {image.shape[1]} x {image.shape[0]}")
    return image
