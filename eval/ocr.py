"""The official HDC2021 OCR scorer (OCR_evaluation.py), re-implemented step by step.

For one output image and its true text:

1. load and convert to 8-bit grayscale (PIL ``ImageOps.grayscale``);
2. normalise ``a = (a - a.min()) * (255 / a[:, :50].min())`` in float, clip to [0, 255],
   truncate to uint8 -- the left 50 columns are taken as white background;
3. resize to ``(int(w/2), int(h/2))`` with bicubic (PIL's default for mode L when the
   challenge ran; pinned here so that newer/older Pillow cannot change it);
4. ``pytesseract.image_to_string`` with the official config;
5. post-process the text; anything but exactly 3 non-empty lines is a failure (None);
6. score = fuzzywuzzy ``fuzz.ratio(true_lines[1].rstrip(), ocr_lines[1])`` (middle line only).

A step's score is the mean over its images with failures counted as 0 (``step_mean``).
The character error rate over all three lines (``OcrResult.cer``) is extra, not official.

This module must stay free of TensorFlow: scoring is run in many worker processes.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from rapidfuzz.distance import Indel, Levenshtein

from pipelines.common.errors import DataError
from pipelines.common.interrupt import ignore_sigint, sigint_ignored

TESSERACT_CONFIG = (
    "--oem 1 --psm 6 -c load_system_dawg=false -c load_freq_dawg=false "
    "-c textord_old_xheight=0 -c textord_min_xheight=100 -c preserve_interword_spaces=0"
)
LEFT_STRIP = 50  # columns taken as white background by the normaliser
EXPECTED_LINES = 3
DIV0_REASON = "left 50 columns contain a 0 (division by zero in the normaliser)"

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]


@dataclass
class OcrResult:
    """The outcome for one image.

    score: the official score 0..100, or None for a failure (counted as 0 in step means).
    reason: why it failed (None when it did not).
    ocr_lines: the post-processed OCR lines (whatever there were, also on failure).
    cer: character error rate of all three lines, capped at 1.0 (secondary metric).
    normaliser_div0: the left strip contained a 0, so the official normaliser divided by zero
        (the image then becomes black where it equalled its minimum, white elsewhere).
    """

    score: int | None
    reason: str | None
    ocr_lines: list[str] = field(default_factory=list)
    cer: float = 1.0
    normaliser_div0: bool = False

    @property
    def passed_ocr(self) -> bool:
        return self.score is not None


# ----------------------------------------------------------------------------- true text
def _parse_true_text(text: str, origin) -> list[str]:
    # The official script reads the file in text mode (universal newlines) and indexes the
    # lines as readlines() returns them; the middle line is then .rstrip()-ed.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln.rstrip("\n") for ln in io.StringIO(text, newline="\n").readlines()]
    if len(lines) < 2:
        raise DataError(origin, f"true text has {len(lines)} line(s); expected {EXPECTED_LINES}")
    return lines


def read_true_text(path) -> list[str]:
    """Read a true-text file; return its lines (newline characters removed, spaces kept)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(p, "true text file not found") from None
    except IsADirectoryError:
        raise DataError(p, "true text path is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(p, f"cannot read true text file ({e})") from None
    return _parse_true_text(text, p)


def _true_lines(true_text) -> list[str]:
    """``true_text`` is a path (str without a newline, or os.PathLike), or the text itself."""
    if isinstance(true_text, (list, tuple)):
        return [str(s) for s in true_text]
    if isinstance(true_text, str) and "\n" in true_text:
        return _parse_true_text(true_text, None)
    return read_true_text(true_text)


# ----------------------------------------------------------------------------- image
def _array_to_pil(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"image array must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4; got shape {a.shape}")
    if a.dtype == np.uint8:
        u8 = a
    elif a.dtype == np.uint16:
        u8 = np.rint(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("image array contains NaN or infinity")
        u8 = np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"image array dtype must be uint8, uint16 or float; got {a.dtype}")
    # uint8 HxW -> L, HxWx2 -> LA, HxWx3 -> RGB, HxWx4 -> RGBA (Pillow's fromarray mapping)
    return Image.fromarray(np.ascontiguousarray(u8))


def load_gray(image: ImageLike) -> np.ndarray:
    """Step 1: an 8-bit grayscale array, exactly as ``ImageOps.grayscale`` gives it."""
    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, np.ndarray):
        img = _array_to_pil(image)
    else:
        p = Path(image)
        if not p.is_file():
            raise DataError(p, "image file not found" if not p.exists() else "image path is not a file")
        try:
            img = Image.open(p)
            img.load()
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(p, f"cannot read image ({e})") from None
    return np.array(ImageOps.grayscale(img))


def normalise(gray: np.ndarray) -> np.ndarray:
    """Step 2, the official normaliser, including what it does on a division by zero.

    ``(a - a.min()) * (255 / a[:, :50].min())`` in float64, clipped, truncated to uint8.
    When the left strip holds a 0, numpy yields 255/0 = inf: pixels equal to the image
    minimum become 0*inf = NaN and all others inf. Clipping maps inf to 255 and leaves NaN,
    and NaN -> uint8 gives 0 on x86 and ARM numpy (undefined in C, so we write it explicitly):
    the image is binarised -- black exactly where it equalled its minimum, white elsewhere.
    """
    a = np.asarray(gray)
    if a.ndim != 2:
        raise ValueError(f"normalise expects a 2-D grayscale array; got shape {a.shape}")
    lo = float(a.min())
    strip_min = float(a[:, :LEFT_STRIP].min())
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.float64(255.0) / np.float64(strip_min)
        f = (a.astype(np.float64) - lo) * scale
    f = np.clip(f, 0, 255)
    f = np.nan_to_num(f, nan=0.0)  # what the official uint8 cast of NaN produced
    return f.astype(np.uint8)  # truncation, like the official astype


def prepare_image(gray: np.ndarray) -> Image.Image:
    """Steps 2-3: normalise, then halve the size with bicubic (the original default)."""
    img = Image.fromarray(normalise(gray))
    w, h = img.size
    return img.resize((int(w / 2), int(h / 2)), Image.Resampling.BICUBIC)


def run_tesseract(img: Image.Image) -> str:
    """Step 4: the official Tesseract call (language eng, the default)."""
    import pytesseract

    return pytesseract.image_to_string(img, config=TESSERACT_CONFIG)


# ----------------------------------------------------------------------------- text
def postprocess(ocr_text: str) -> list[str]:
    """Step 5: the official post-processing of Tesseract's output into lines."""
    text = ocr_text.replace("\n\f", "").replace("\n\n", "\n")
    lines = [ln.strip() for ln in text.split("\n")]
    return [ln for ln in lines if ln]


def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy ``fuzz.ratio`` (what the organisers called), computed with rapidfuzz.

    fuzzywuzzy's ratio is decorated, outermost first, with
    ``@check_for_none`` (None -> 0), ``@check_for_equivalence`` (a == b -> 100) and
    ``@check_empty_string`` (either empty -> 0): equality is tested BEFORE emptiness, so
    '' vs '' gives 100 while '' vs 'x' gives 0. Otherwise it returns
    ``utils.intr(100 * m.ratio())`` = ``int(round(100 * r))`` with Python's round (banker's
    rounding: 12.5 -> 12, 37.5 -> 38), where r = (len(a)+len(b) - indel) / (len(a)+len(b))
    (python-Levenshtein's ratio; difflib's 2*M/T is the same number whenever its greedy
    matching finds the longest common subsequence). We compute r from rapidfuzz's integer
    InDel distance with the same float operations, so .5 ties round exactly as they did.
    """
    if a is None or b is None:
        return 0
    if a == b:
        return 100
    if len(a) == 0 or len(b) == 0:
        return 0
    total = len(a) + len(b)
    r = (total - Indel.distance(a, b)) / total
    return int(round(100 * r))


def char_error_rate(true_lines: Sequence[str], ocr_lines: Sequence[str]) -> float:
    """Levenshtein distance of the joined lines over the true length, capped at 1.0."""
    ref = "\n".join(true_lines[:EXPECTED_LINES])
    hyp = "\n".join(ocr_lines)
    if not ref:
        return 0.0 if not hyp else 1.0
    return min(1.0, Levenshtein.distance(ref, hyp) / len(ref))


def score_text(ocr_text: str, true_text, *, normaliser_div0: bool = False) -> OcrResult:
    """Steps 5-6 (and the CER) on Tesseract's raw output."""
    true_lines = _true_lines(true_text)
    lines = postprocess(ocr_text)
    cer = char_error_rate(true_lines, lines)
    if len(lines) != EXPECTED_LINES:
        reason = f"OCR found {len(lines)} lines"
        if normaliser_div0:
            reason = f"{DIV0_REASON}; {reason}"
        return OcrResult(None, reason, lines, cer, normaliser_div0)
    score = fuzz_ratio(true_lines[1].rstrip(), lines[1])
    return OcrResult(score, None, lines, cer, normaliser_div0)


# ----------------------------------------------------------------------------- public API
def score_image(image: ImageLike, true_text) -> OcrResult:
    """Score one image (path, numpy array or PIL image) against its true text (path or text).

    Raises DataError for a missing or unreadable image or true-text file.
    """
    true_lines = _true_lines(true_text)  # fail on a bad text file before paying for OCR
    gray = load_gray(image)
    div0 = bool(gray[:, :LEFT_STRIP].min() == 0)
    text = run_tesseract(prepare_image(gray))
    return score_text(text, true_lines, normaliser_div0=div0)


def official_score(result: OcrResult | None) -> int:
    """The number that enters the step mean: failures (None) count as 0."""
    if result is None or result.score is None:
        return 0
    return int(result.score)


def step_mean(results: Iterable[OcrResult | None]) -> float:
    """Mean official score over a step's images, failures as 0 (pass = mean >= 70)."""
    vals = [official_score(r) for r in results]
    if not vals:
        raise ValueError("step_mean of no results")
    return float(sum(vals)) / len(vals)


def _init_worker() -> None:
    # Tesseract's OpenMP threads fight each other across processes; one thread each gives
    # the same text and is about 5x cheaper per call.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    ignore_sigint()  # Ctrl-C is the main process's to handle (pipelines/common/interrupt.py)


def score_many(pairs, workers: int | None = None, progress: bool = True) -> list[OcrResult]:
    """Score many (image, true_text) pairs; results come back in input order.

    workers=None uses every CPU; workers=1 runs in this process. Worker processes are
    spawned (safe even when the caller has TensorFlow loaded) and run Tesseract with
    OMP_THREAD_LIMIT=1. A bad input raises DataError.
    """
    from tqdm import tqdm

    pairs = list(pairs)
    n = len(pairs)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), n)) if n else 1
    results: list[OcrResult | None] = [None] * n
    bar = tqdm(total=n, desc="OCR", unit="img", disable=not progress)
    try:
        if workers == 1:
            for i, (image, true_text) in enumerate(pairs):
                results[i] = score_image(image, true_text)
                bar.update(1)
        else:
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker
            ) as ex:
                with sigint_ignored():  # the workers start here (pipelines/common/interrupt.py)
                    futures = {ex.submit(score_image, im, tt): i for i, (im, tt) in enumerate(pairs)}
                try:
                    for fut in as_completed(futures):
                        results[futures[fut]] = fut.result()
                        bar.update(1)
                except BaseException:  # a bad input or Ctrl-C: do not wait for the queued images
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.ocr",
        description="Score one image with the official HDC2021 OCR scorer. Prints the score "
        "(an integer) or 'fail: <reason>'.",
    )
    parser.add_argument("image", help="the (deblurred) image file")
    parser.add_argument("true_text", help="the true text file (3 lines)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the OCR lines and the character error rate")
    args = parser.parse_args(argv)
    try:
        result = score_image(args.image, Path(args.true_text))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # e.g. tesseract missing: one clear line, no traceback
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(result.score if result.score is not None else f"fail: {result.reason}")
    if args.verbose:
        for ln in result.ocr_lines:
            print(f"ocr: {ln!r}")
        print(f"cer: {result.cer:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
