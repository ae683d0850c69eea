"""OCR validation while training (issue 23): the official scorer on a few fixed full-size images per
step, every few epochs, so that `best.keras` can be chosen by what the challenge measures
(`python -m deblur.train --ocr-val-every K --monitor val_ocr_hard`).

The images: `per_step` per chosen step, made once, before training, by the simulator of the
evaluation sets (`pipelines.simulation.simulate.simulate_sample`, the path of
`python -m pipelines.simulate`), from the run's seed on a random stream of their own
(OCR_VAL_STREAM): none of them is a scene of the training stream or of a simulated evaluation set
(those are streams 0 and 1 of the simulator, any seed), and the same seed always gives the same
images. Fonts alternate Times, Verdana; each image is held as the 16-bit array its TIFF would hold.

The output that is scored: `deblur.infer.Deblurrer` around the model being trained (its weights in
memory, no file written or read) with the run's preprocessing, then
`pipelines.common.output.to_uint8`: the PNG that `python -m deblur` writes for that TIFF with these
weights, pixel for pixel.

The scorer is injected: a function [(uint8 image, true lines), ...] -> [official score, ...]
(failures 0). The official one is `eval.ocr`, a layer above `deblur`, which never imports `eval`
(docs/development.md, tests/test_imports.py): `python -m eval.train` is `python -m deblur.train`
with it plugged in (eval.train.official_scores).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

OCR_VAL_STREAM = 300  # the simulator's random stream of these images (data sets: 0 and 1, targets 100+, photos 200+)
FONTS = ("Times", "Verdana")

Scorer = Callable[[list], Sequence[float]]


@dataclass(frozen=True, eq=False)
class OcrValImage:
    step: int
    font: str
    sample: int
    blurred: np.ndarray  # (h, w) uint16, the CAM02 TIFF's content
    text: tuple  # the three true lines


def ocr_val_images(seed: int, steps, per_step: int) -> list[OcrValImage]:
    """The fixed validation images: `per_step` per step (fonts alternating), deterministic in `seed`."""
    from pipelines.simulation.simulate import simulate_sample, to_uint16

    out = []
    for step in steps:
        for i in range(per_step):
            font, sample = FONTS[i % len(FONTS)], i // len(FONTS) + 1
            text, _, blurred = simulate_sample(seed, int(step), font, sample, stream=OCR_VAL_STREAM)
            out.append(OcrValImage(int(step), font, sample, to_uint16(blurred), tuple(text)))
    return out


def is_due(epoch: int, every: int, epochs: int) -> bool:
    """Whether OCR validation runs after `epoch` (0-based): every `every` epochs and at the last."""
    return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == epochs)


def deblur_for_ocr(deblurrer, image: OcrValImage) -> np.ndarray:
    """The 8-bit result `python -m deblur` writes for this image (to_uint8 of Deblurrer.deblur)."""
    from pipelines.common.output import to_uint8

    return to_uint8(deblurrer.deblur(image.blurred, image.step))


def ocr_validate(deblurrer, images: Sequence[OcrValImage], scorer: Scorer) -> dict:
    """Deblur and score the images: {"steps": {step: mean official score}, "hard": mean over the
    steps, "deblur_s", "ocr_s"}. The deblurrer's in-memory copy is refreshed first."""
    deblurrer.sync_weights()
    t0 = time.perf_counter()
    outputs = [deblur_for_ocr(deblurrer, im) for im in images]
    t1 = time.perf_counter()
    scores = list(scorer([(out, list(im.text)) for out, im in zip(outputs, images)]))
    t2 = time.perf_counter()
    if len(scores) != len(images):
        raise ValueError(f"the OCR scorer returned {len(scores)} scores for {len(images)} images")
    per_step: dict[int, list[float]] = {}
    for im, s in zip(images, scores):
        per_step.setdefault(im.step, []).append(float(s))
    steps = {s: float(np.mean(v)) for s, v in per_step.items()}
    return {"steps": steps, "hard": float(np.mean(list(steps.values()))) if steps else math.nan,
            "deblur_s": t1 - t0, "ocr_s": t2 - t1}


def callback_class():
    """The Keras callback class (built lazily: it subclasses keras.callbacks.Callback)."""
    import keras

    class OcrValidation(keras.callbacks.Callback):
        """Every `every` epochs and at the last one: deblur the fixed images with the current weights,
        score them, add val_ocr_step{N} and val_ocr_hard (mean over the chosen steps) to the logs and
        print one line. Other epochs get NaN for these keys: CSVLogger needs the same columns every
        epoch, and a NaN is never an improvement for ModelCheckpoint (mode max, started at -inf)."""

        def __init__(self, deblurrer, images, steps, every: int, epochs: int, scorer: Scorer,
                     verbose: bool = True):
            super().__init__()
            self.deblurrer, self.images, self.steps = deblurrer, list(images), list(steps)
            self.every, self.epochs, self.scorer, self.verbose = every, epochs, scorer, verbose
            self.last: dict | None = None  # the last result of ocr_validate

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if not is_due(epoch, self.every, self.epochs):
                for s in self.steps:
                    logs[f"val_ocr_step{s}"] = math.nan
                logs["val_ocr_hard"] = math.nan
                return
            r = self.last = ocr_validate(self.deblurrer, self.images, self.scorer)
            for s in self.steps:
                logs[f"val_ocr_step{s}"] = r["steps"].get(s, math.nan)
            logs["val_ocr_hard"] = r["hard"]
            if self.verbose:
                per = " ".join(f"{s}:{r['steps'].get(s, math.nan):.1f}" for s in self.steps)
                print(f"OCR validation after epoch {epoch + 1}: val_ocr_hard {r['hard']:.1f} | per step {per} "
                      f"({len(self.images)} images; deblur {r['deblur_s']:.1f}s, OCR {r['ocr_s']:.1f}s)",
                      flush=True)

    return OcrValidation
