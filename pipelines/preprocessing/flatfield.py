"""A camera's illumination measured on a folder's text images (the flat field).

Vignetting removal fits the white background on an image's own border frame
(`preprocess.estimate_background`). On a text image the border is white paper; on a photograph it is
scene, and the fit then takes the photo's large-scale brightness for illumination (on "moon", whose
contrast is below the 5-15 % vignetting, it flattens the scene away). The text images of the same
step in the same folder were taken by the same camera with the same exposure: the mean of their fitted
backgrounds is the camera's illumination, which `preprocess.remove_vignetting(..., flat=)` uses for
an image whose own fit disagrees with it (`preprocess.FLAT_TOLERANCE`).

The flat field is fitted with the full second-order surface (FLAT_TERMS: 1, x, x^2, y, y^2, xy),
not the border fit's default terms (x, x^2, y, y^2 and the distance d from the centre). Fitted on
the border frame and extrapolated to the centre, the default terms cannot follow an illumination
that is brighter towards one side (an x*y term): on the simulator's camera their centre comes out
5-8 % too dark at every step, so a photo divided by it gets a bright central blob larger than a dim
photo's whole contrast ("moon": std 0.04). FLAT_TERMS follow it within 0.3 %
(`tests/test_flatfield.py`). Text images keep the default terms for their own fit: the shipped
networks were trained on that input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import DataError
from ..reading.hdc import is_text_image, step_of
from ..reading.images import image_files, load_image
from .preprocess import downscale, downscaled_shape, estimate_background

FLAT_TERMS = ("1", "x", "x2", "y", "y2", "xy")


def flat_field(folder, step: int, factor, count: int = 4, any_step: bool = True):
    """A camera's illumination at 1:`factor`: the mean of the vignetted white backgrounds fitted
    (`estimate_background`) on up to `count` text images of `step` in `folder` (with `any_step`, of
    any step if it has none of this one: right for the sharp camera, not for the blurred one, whose
    white level changes with the step); None if the folder has no such text image."""
    texts = [p for p in image_files(folder) if is_text_image(p)]
    same = [p for p in texts if step_of(p) == int(step)]
    texts = (same or texts) if any_step else same
    if not texts:
        return None
    fits = []
    for p in texts:
        if len(fits) == count:
            break
        try:
            image = load_image(p, expect_shape=None)
        except DataError:  # a corrupt text image is that image's failure, not its neighbours'
            continue
        small = downscale(image, factor)
        if fits and small.shape != fits[0].shape:  # an odd-sized image measures another frame
            continue
        fits.append(estimate_background(small, terms=FLAT_TERMS))
    return np.mean(fits, axis=0).astype(np.float32) if fits else None


class FlatFields:
    """The blurred camera's flat field of an image: `flat_field` of the text images of the same step
    in the image's folder (None if there are none), measured once per (folder, step, factor)."""

    def __init__(self, count: int = 4):
        self.count = count
        self._cache: dict = {}

    def __call__(self, path, step: int, factor, shape=None):
        """The flat field for the image at `path`; None where there is none, or where `shape` (the
        image's full-size shape) gives another down-scaled size than the folder's text images."""
        key = (str(Path(path).resolve().parent), int(step), factor)
        if key not in self._cache:
            self._cache[key] = flat_field(Path(path).parent, step, factor, self.count, any_step=False)
        flat = self._cache[key]
        if flat is not None and shape is not None and flat.shape != downscaled_shape(shape, factor):
            return None
        return flat
