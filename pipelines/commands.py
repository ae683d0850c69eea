"""Console entry points (pyproject.toml [project.scripts]); each is the same as `python -m MODULE`
with the same arguments:

    hdc-simulate  pipelines.simulate      hdc-train   eval.train (deblur.train + OCR validation)
    hdc-prepare   pipelines.prepare       hdc-deblur  deblur (the submission command)
                                          hdc-score   eval.score

Each imports its module only when run, so a command loads only what it needs (no TensorFlow for
the data and scoring commands).
"""
from __future__ import annotations

import importlib


def _main(module: str) -> int:
    return importlib.import_module(module).main()


def simulate() -> int:
    return _main("pipelines.simulate")


def prepare() -> int:
    from .common.threads import one_blas_thread

    one_blas_thread()  # before numpy loads, as `python -m pipelines.prepare` does
    return _main("pipelines.prepare")


def train() -> int:
    # eval.train: deblur.train with the official scorer plugged in (--ocr-val-every works too)
    return _main("eval.train")


def deblur() -> int:
    return _main("deblur.__main__")


def score() -> int:
    return _main("eval.score")
