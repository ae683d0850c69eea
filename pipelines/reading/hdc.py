"""Reading the HDC2021 data exactly as published, in both layouts.

Training layout:   <root>/stepN/{Times,Verdana}/{CAM01,CAM02}/focusStep_N_<font>_size_30_sample_XXXX.tif
Evaluation layout: <root>/steps_A_to_B[/steps_A_to_B]/{CAM01_focused,CAM02_blurred}/focusStep_N_...tif
Both are found by looking for blurred-camera folders anywhere below the root, so a root that is one
step folder, one group folder or a double-nested unpack works too. Text files are read beside the
sharp image, else beside the blurred one.

Images may also be 8- or 16-bit PNG or JPEG (`pipelines.reading.images`: the formats, the grayscale
rule and which file wins when one name exists in several formats); the names and rules above are the
same whatever the format, and the sharp partner and the text file are matched by stem.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import DataError
from .images import IMAGE_SUFFIXES, find_image, image_files, load_image

BLURRED_DIRS = {"CAM02": "CAM01", "CAM02_blurred": "CAM01_focused"}  # blurred -> sharp sibling
FONTS = {"timesR": "Times", "verdanaRef": "Verdana"}
TEXT_RE = re.compile(r"^focusStep_(\d+)_(timesR|verdanaRef)_size_30_sample_(\d+)$")
CALIB_RE = re.compile(r"^focusStep_(\d+)_(PSF|LSF_X|LSF_Y)$")
STEP_RE = re.compile(r"^focusStep_(\d+)_")
SANITY_RE = re.compile(r"^focusStep_(\d+)_(Image_(.+)|QRcode)$")  # the sanity check's photos and QR target
CALIBRATION_KINDS = ("PSF", "LSF_X", "LSF_Y")


@dataclass(frozen=True)
class Sample:
    """One text capture: the blurred image, its sharp partner and the true text."""
    step: int
    font: str          # "Times" or "Verdana"
    sample_id: int
    blurred: Path
    sharp: Path
    text_path: Path
    text: tuple[str, str, str]

    @property
    def key(self) -> str:
        """Unique across a data set (sample names repeat between folders, so the folder is part of it)."""
        return str(self.blurred)


@dataclass(frozen=True)
class SanitySample:
    """One sanity-check capture (a photo `focusStep_N_Image_<name>` or the `focusStep_N_QRcode`
    target): no text. `name` is <name> for a photo, "QRcode" for the target. Has the attributes
    the leaderboard methods read (step, blurred, sharp)."""
    step: int
    name: str
    blurred: Path
    sharp: Path

    @property
    def is_photo(self) -> bool:
        return self.name != "QRcode"

    @property
    def key(self) -> str:
        return str(self.blurred)


# The reader's old name: it has always been the one loader, now for PNG and JPEG too.
load_tiff = load_image


def read_text(path) -> tuple[str, str, str]:
    """The three lines of a true-text file (spaces kept; a final newline tolerated)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "true-text file is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"cannot read text ({e})") from None
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n")
    if len(lines) != 3:
        raise DataError(path, f"true text must have exactly 3 lines, found {len(lines)}")
    return tuple(lines)  # type: ignore[return-value]


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, blurred) as float32; sizes must match."""
    blurred = load_image(sample.blurred, expect_shape=None)
    sharp = load_image(sample.sharp, expect_shape=None)
    if sharp.shape != blurred.shape:
        raise DataError(sample.blurred, f"size {blurred.shape[::-1]} differs from its sharp partner "
                                        f"{sample.sharp} of size {sharp.shape[::-1]} (w x h)")
    return sharp, blurred


def blurred_folders(root) -> list[Path]:
    """All blurred-camera folders below root (training and evaluation layouts, any nesting)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "data folder not found")
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        if Path(dirpath).name in BLURRED_DIRS:
            found.append(Path(dirpath))
            dirnames.clear()
    return found


def is_calibration(path) -> bool:
    return CALIB_RE.match(Path(path).stem) is not None


def is_text_image(path) -> bool:
    return TEXT_RE.match(Path(path).stem) is not None


def step_of(path) -> int | None:
    m = STEP_RE.match(Path(path).stem)
    return int(m.group(1)) if m else None


def _text_beside(stem: str, *folders: Path) -> Path:
    for folder in folders:
        candidate = folder / f"{stem}.txt"
        if candidate.is_file():
            return candidate
    return folders[0] / f"{stem}.txt"


def find_samples(root, steps=None, fonts=None, skipped: list | None = None) -> list[Sample]:
    """Every text sample below root, sorted by (step, font, sample, folder).

    Calibration shots, QR targets and sanity photos are not text samples and are skipped.
    Raises DataError for a blurred image whose sharp partner or text file is missing or bad; with a
    `skipped` list, appends {"file", "problem"} to it instead and leaves the sample out.
    """
    samples = []
    for folder in blurred_folders(root):
        sharp_folder = folder.parent / BLURRED_DIRS[folder.name]
        for image in image_files(folder):
            m = TEXT_RE.match(image.stem)
            if not m:
                continue
            step, font, sid = int(m.group(1)), FONTS[m.group(2)], int(m.group(3))
            if (steps is not None and step not in steps) or (fonts is not None and font not in fonts):
                continue
            try:
                sharp = find_image(sharp_folder, image.stem)
                if sharp is None:
                    raise DataError(image, f"no sharp partner: {sharp_folder / image.stem}"
                                           f"{{{','.join(IMAGE_SUFFIXES)}}} is missing")
                text_path = _text_beside(image.stem, sharp_folder, folder)
                samples.append(Sample(step, font, sid, image, sharp, text_path, read_text(text_path)))
            except DataError as e:
                if skipped is None:
                    raise
                skipped.append({"file": str(e.path), "problem": e.problem})
    samples.sort(key=lambda s: (s.step, s.font, s.sample_id, str(s.blurred)))
    return samples


def find_sanity(root, steps=None) -> list[SanitySample]:
    """Every sanity-check capture below root (either layout), sorted by (step, name, folder):
    `focusStep_N_Image_<name>` photos and `focusStep_N_QRcode` targets with a sharp partner.
    The simulator's training layout has each one in both font folders (two captures).
    Raises DataError for a blurred one whose sharp partner is missing."""
    found = []
    for folder in blurred_folders(root):
        sharp_folder = folder.parent / BLURRED_DIRS[folder.name]
        for image in image_files(folder):
            m = SANITY_RE.match(image.stem)
            if not m or (steps is not None and int(m.group(1)) not in steps):
                continue
            sharp = find_image(sharp_folder, image.stem)
            if sharp is None:
                raise DataError(image, f"no sharp partner: {sharp_folder / image.stem}"
                                       f"{{{','.join(IMAGE_SUFFIXES)}}} is missing")
            found.append(SanitySample(int(m.group(1)), m.group(3) or "QRcode", image, sharp))
    found.sort(key=lambda s: (s.step, s.name, str(s.blurred)))
    return found


def find_calibration(root, step: int, camera: str = "blurred") -> dict[str, Path]:
    """The step's calibration shots {'PSF': path, 'LSF_X': ..., 'LSF_Y': ...} (only those present)."""
    shots: dict[str, Path] = {}
    for folder in blurred_folders(root):
        if camera != "blurred":
            folder = folder.parent / BLURRED_DIRS[folder.name]
        for kind in CALIBRATION_KINDS:
            path = find_image(folder, f"focusStep_{step}_{kind}") if kind not in shots else None
            if path is not None:
                shots[kind] = path
    return shots


def list_inputs(folder) -> list[Path]:
    """Images a submission must process in one input folder: every image (one per stem,
    `pipelines.reading.images.image_files`) but the calibration shots."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "input folder not found")
    return [p for p in image_files(folder) if not is_calibration(p)]
