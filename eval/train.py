"""Training with OCR validation: `python -m deblur.train` with the official OCR scorer plugged in.

    python -m eval.train --run-dir DIR --ocr-val-every 5 --monitor val_ocr_hard [deblur.train options]

Takes exactly deblur.train's options (`python -m eval.train --help`). deblur.train's OCR validation
(deblur/ocr_val.py: every K epochs, a few fixed full-size simulated images per step, deblurred with
the current weights as `python -m deblur` would) needs the official scorer, eval.ocr; deblur is a
layer below eval and never imports it (docs/development.md), so this command, one layer up, hands it
in. Without --ocr-val-every it trains exactly as `python -m deblur.train`.

The scorer runs Tesseract in OCR_WORKERS worker processes (eval.ocr.score_many; failures count 0).
"""
from __future__ import annotations

import os
import sys

from .ocr import official_score, score_many

OCR_WORKERS = 2  # Tesseract processes during a validation: modest, training shares the machine


def official_scores(pairs, workers: int | None = None) -> list[int]:
    """[(image, true lines), ...] -> their official scores (failures 0), in order."""
    pairs = list(pairs)
    workers = workers or min(OCR_WORKERS, os.cpu_count() or 1)
    return [official_score(r) for r in score_many(pairs, workers=workers, progress=False)]


def main(argv=None) -> int:
    from deblur.train import main as train_main

    return train_main(argv, ocr_scorer=official_scores, prog="python -m eval.train")


if __name__ == "__main__":
    sys.exit(main())
