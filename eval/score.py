"""The leaderboard: deblur an HDC2021 data set with several methods and score them with the official
OCR scorer, per blur step.

    python -m eval.score --data DIR [--methods sharp,identity,wiener,rl,model] [--steps 0-19]
        [--model PATH] [--out out/score] [--samples N] [--workers N] [--sanity-only | --no-sanity]

Default methods: sharp, identity, wiener, rl and model (when the model file is there).

Methods (every output leaves through `pipelines.common.output.to_uint8`: 8-bit, left 50 columns
white):
  sharp     CAM01 as is: the ceiling
  identity  CAM02 (blurred) as is
  wiener    Wiener deconvolution at 1:7 (eval.baselines; parameters eval/baseline_params.json)
  rl        Richardson-Lucy deconvolution at 1:7 (same)
  wiener-reg  Wiener regularised for general images (eval.baselines.RegularisedWiener; the sanity check's
            reference deconvolution: it passes it, the OCR-tuned wiener does not)
  model     the deblurring network, deblur.infer.Deblurrer (--model PATH, default: the shipped one)
  model-auto  the same network at the step deblur.estimate finds in each image (not the true step)
  target    the training target (the sharp image at the model's scale, 1:7, binarised as for training;
            a photo: its grey image at that scale) upscaled as the model's output is: what a perfect
            network at that scale would read, the ceiling of the output's resolution (--model's card)

Works on both HDC layouts (training and evaluation), with TIFF, PNG or JPEG images
(`pipelines.reading.images.load_image`). `--samples N` takes the first N samples per font
per step. Per method and step: mean official score (all, Times, Verdana; failures count as 0), the
number of failures, mean character error rate, pass (score >= 70); per method the highest step
passed under the challenge rule (every step from 0 up to it passed; -1 if step 0 fails; "n/a
(step 0 not scored)" on a subset that does not start at step 0). Steps outside those the model's
card says it was trained on are scored and flagged with a * in the tables.

The sanity check (eval.sanity, docs/sanity.md): where the data hold sanity images
(`focusStep_N_Image_<name>`, `focusStep_N_QRcode`; the simulator writes them), every method also
deblurs them; per step the median and minimum rank correlation of its outputs with the sharp photos
and pass/fail. The challenge's "highest step passed" needs OCR >= 70 AND the sanity check passed at
every step up to it; both that and the OCR-only figure are printed. `--sanity-only` scores only the
sanity images (no OCR: a model checked in minutes); `--no-sanity` skips them.

Writes to --out: leaderboard.csv, leaderboard.json, per_image.csv, sanity_per_image.csv,
leaderboard.png (score and sanity correlation vs step), montage.png (blurred, each method, sharp at
three steps, text and a photo) and every output image under images/<method>/step<N>/<stem>.png.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from deblur.infer import DEFAULT_MODEL  # no TensorFlow: deblur.infer imports it lazily
from pipelines.common.atomic import atomic_path, write_text_atomic
from pipelines.common.errors import DataError
from pipelines.common.interrupt import ignore_sigint, sigint_ignored
from pipelines.common.output import to_uint8, write_png
from pipelines.reading.images import load_image
from pipelines.reading.physics import parse_steps

from .ocr import official_score, score_many
from .samples import format_steps, image_path, select_samples
from .sanity import (FLOOR, MEDIAN_MIN, SANITY_FIELDS, SanityScorer, aggregate_sanity, attach, format_sanity,
                     highest_sanity_step, highest_step_passed_with_sanity, sanity_records, select_sanity)

PASS = 70
METHODS = ("sharp", "identity", "wiener", "rl", "model", "model-auto", "wiener-reg", "target")
DEFAULT_METHODS = ("sharp", "identity", "wiener", "rl")  # + model when its file exists
NOT_SCORED = "n/a (step 0 not scored)"
UNTRAINED = "*"  # marks a step outside the steps the model was trained on
FONTS = ("Times", "Verdana")
ROW_FIELDS = ("method", "step", "n", "score", "score_times", "score_verdana", "failures", "cer", "passed")


# --------------------------------------------------------------------------------------------
# samples and methods
# --------------------------------------------------------------------------------------------

def check_model(path=None) -> Path:
    """The model file `path` (None: the shipped default); DataError if it is not there."""
    target = Path(path) if path is not None else DEFAULT_MODEL
    if not target.is_file():
        raise DataError(target, "model file not found" + (
            " (no default model shipped yet: train one with deblur.train and pass --model PATH)"
            if path is None else ""))
    return target


def default_methods(model=None) -> list[str]:
    """sharp, identity, wiener, rl, plus model when the model file (default: the shipped one) exists."""
    target = Path(model) if model is not None else DEFAULT_MODEL
    return list(DEFAULT_METHODS) + (["model"] if target.is_file() else [])


def parse_methods(text: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in str(text).split(",") if m.strip()))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, bad))}; known: {', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"no methods given; known: {', '.join(METHODS)}")
    return methods


def _sharp(sample) -> np.ndarray:
    return to_uint8(load_image(sample.sharp, expect_shape=None))


def _identity(sample) -> np.ndarray:
    return to_uint8(load_image(sample.blurred, expect_shape=None))


class ModelMethod:
    """The network through deblur.infer.Deblurrer (imported only when this method is used)."""

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else None
        check_model(self.path)
        try:
            from deblur.infer import Deblurrer
        except ImportError as e:
            raise RuntimeError(f"the model method needs deblur.infer ({e})") from None
        self.deblurrer = Deblurrer.from_file(None if self.path is None else str(self.path))
        self.max_step = int(getattr(self.deblurrer, "max_step", 19))

    def supports(self, step: int) -> bool:
        """Whether the model was built for this step (a model trained on steps 0-9 is not scored
        beyond: those steps count as not passed)."""
        return int(step) <= self.max_step

    def outside_training(self, step: int) -> bool:
        """Whether the model's card says it was trained on other steps (flagged in the tables)."""
        check = getattr(self.deblurrer, "outside_training", None)
        return bool(check(step)) if callable(check) else False

    def __call__(self, sample) -> np.ndarray:
        # the loader's float [0, 1] (any format); for a uint16 TIFF it is exactly the uint16 / 65535
        # that Deblurrer.deblur would compute itself
        image = load_image(sample.blurred, expect_shape=None)
        out = np.asarray(self.deblurrer.deblur(image, sample.step, flat=self.flat(sample, sample.step, image.shape)),
                         dtype=np.float32)
        return to_uint8(out)

    def flat(self, sample, step: int, shape=None):
        """The blurred camera's illumination for `sample` at `step`, as `python -m deblur` measures it
        (the text images of the step in the sample's folder)."""
        if not hasattr(self, "_flats"):
            from pipelines.preprocessing.flatfield import FlatFields
            self._flats = FlatFields()
        return self._flats(sample.blurred, step, self.deblurrer.preprocess.factor, shape)


class AutoModelMethod(ModelMethod):
    """The network at the step estimated from each image (`deblur.estimate`, with the LSF shots of
    the image's folder); an estimate beyond the model's steps is clamped to its highest step.
    `estimated` maps each image to its estimated step."""

    def __init__(self, path=None, share: ModelMethod | None = None):
        if share is not None:  # the model already loaded for the "model" row
            self.path, self.deblurrer, self.max_step = share.path, share.deblurrer, share.max_step
        else:
            super().__init__(path)
        self.estimated: dict[str, int] = {}

    def __call__(self, sample) -> np.ndarray:
        from deblur.estimate import estimate, folder_radii

        image = load_image(sample.blurred, expect_shape=None)
        step = estimate(image, radii=folder_radii(str(Path(sample.blurred).parent.resolve()))).step
        self.estimated[str(sample.blurred)] = step
        step = min(step, self.max_step)
        return to_uint8(np.asarray(self.deblurrer.deblur(image, step, flat=self.flat(sample, step, image.shape)), dtype=np.float32))


class TargetMethod:
    """The training target at the model's scale, upscaled to full size as the model's output is
    (`preprocess_sharp` / `upscale`, the card's PreprocessConfig): the best a network whose output
    is at that scale can be read. A sanity photo gets its grey image at that scale (its training
    target is not binarised), in the blurred image's frame as the `sharp` method gives it."""

    def __init__(self, model=None):
        from deblur.infer import model_preprocess

        self.config = model_preprocess(check_model(model))
        self._sanity = SanityScorer()  # gives the sharp photo in the blurred frame

    def __call__(self, sample) -> np.ndarray:
        from pipelines.preprocessing.preprocess import downscale, preprocess_sharp, upscale
        from pipelines.reading.hdc import SanitySample

        if isinstance(sample, SanitySample):  # the sharp method's photo: in the blurred frame
            sharp = self._sanity.sharp_output(sample).astype(np.float32) / np.float32(255)
            small = downscale(sharp, self.config.factor)
        else:
            sharp = load_image(sample.sharp, expect_shape=None)
            small = preprocess_sharp(sharp, self.config)
        return to_uint8(np.clip(upscale(small, sharp.shape, factor=self.config.factor), 0.0, 1.0))


def make_method(name: str, data_root=None, model=None, params: dict | None = None):
    """A callable sample -> full-size uint8 image for one leaderboard method."""
    if name == "sharp":
        return _sharp
    if name == "identity":
        return _identity
    if name in ("wiener", "rl"):
        from .baselines import Baseline
        return Baseline(name, data_root, params)
    if name == "wiener-reg":
        from .baselines import RegularisedWiener
        return RegularisedWiener(data_root)
    if name == "model":
        return ModelMethod(model)
    if name == "model-auto":
        return AutoModelMethod(model)
    if name == "target":
        return TargetMethod(model)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")


_WORKER_METHODS: dict = {}


def _produce(job) -> str:
    """Worker: run one (picklable) method on one sample and write its PNG."""
    name, data_root, params, sample, path = job
    key = (name, str(data_root))
    if key not in _WORKER_METHODS:
        _WORKER_METHODS[key] = make_method(name, data_root, params=params)
    write_png(path, _WORKER_METHODS[key](sample))
    return str(path)


def produce(name: str, samples, out, data_root=None, model=None, params=None, workers: int = 1,
            progress: bool = True, fn=None) -> list[Path]:
    """Run a method on every sample; write images/<method>/step<N>/<stem>.png; return the paths.
    `fn`: the method's callable when already made (the model: loaded once, run in this process)."""
    from tqdm import tqdm

    paths = [image_path(out, name, s) for s in samples]
    bar = tqdm(total=len(samples), desc=f"deblur {name}", unit="img", disable=not progress)
    try:
        # the model's methods (and target, which reads the model's card) run here: the workers
        # would not know --model
        if fn is not None or name.startswith("model") or name == "target" or workers <= 1 or len(samples) < 2:
            fn = fn or make_method(name, data_root, model, params)
            for s, p in zip(samples, paths):
                write_png(p, fn(s))
                bar.update(1)
        else:
            jobs = [(name, data_root, params, s, p) for s, p in zip(samples, paths)]
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"),
                                     initializer=ignore_sigint) as ex:
                with sigint_ignored():  # the workers start here (pipelines/common/interrupt.py)
                    done = ex.map(_produce, jobs, chunksize=4)
                for _ in done:
                    bar.update(1)
    finally:
        bar.close()
    return paths


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------

def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def aggregate(records) -> list[dict]:
    """Per (method, step) rows from per-image records {method, step, font, score (int or None), cer}.

    score = mean official score (failures, score None, count as 0), also per font (None when the
    step has no image of that font); failures = number of None scores; passed = score >= 70.
    Methods keep their first-seen order, steps are sorted.
    """
    groups: dict = {}
    for r in records:
        groups.setdefault(r["method"], {}).setdefault(int(r["step"]), []).append(r)
    rows = []
    for method, by_step in groups.items():
        for step in sorted(by_step):
            rs = by_step[step]
            official = [official_score_of(r) for r in rs]
            score = float(np.mean(official))
            row = {"method": method, "step": step, "n": len(rs), "score": score}
            for font in FONTS:
                row[f"score_{font.lower()}"] = _mean(official_score_of(r) for r in rs if r["font"] == font)
            row["failures"] = sum(r["score"] is None for r in rs)
            row["cer"] = float(np.mean([r["cer"] for r in rs]))
            row["passed"] = score >= PASS
            rows.append(row)
    return rows


def official_score_of(record) -> int:
    return 0 if record["score"] is None else int(record["score"])


def highest_step_passed(rows, method) -> int | None:
    """Challenge rule: every step from 0 up to it passed (-1 if step 0 fails or the method has no
    rows; None if the method was scored, but not at step 0: a subset cannot tell)."""
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["step"])
    if mine and mine[0]["step"] != 0:
        return None
    best = -1
    for r in mine:
        if r["step"] != best + 1 or r.get("score") is None or r["score"] < PASS:
            break
        best = r["step"]
    return best


def format_highest(value) -> str:
    return NOT_SCORED if value is None else str(value)


def summary(rows) -> dict:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    return {m: highest_step_passed(rows, m) for m in methods}


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(rows) -> str:
    """The long table (one line per method and step), then the step x method score summary."""
    head = ("method", "step", "n", "score", "Times", "Verdana", "fail", "CER", "pass")
    lines = [f"{head[0]:<9} {head[1]:>4} {head[2]:>3} {head[3]:>6} {head[4]:>6} {head[5]:>7} "
             f"{head[6]:>4} {head[7]:>6} {head[8]:>4}"]
    for r in rows:
        step = f"{r['step']}{UNTRAINED if r.get('untrained') else ''}"
        lines.append(f"{r['method']:<9} {step:>4} {r['n']:>3} {_fmt(r['score']):>6} "
                     f"{_fmt(r['score_times']):>6} {_fmt(r['score_verdana']):>7} {r['failures']:>4} "
                     f"{_fmt(r['cer'], 3):>6} {_fmt(r['passed']):>4}")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    steps = sorted({r["step"] for r in rows})
    by = {(r["method"], r["step"]): r for r in rows}
    lines += ["", "mean official score per step:",
              f"{'step':>4} " + " ".join(f"{m:>9}" for m in methods)]
    for s in steps:
        lines.append(f"{s:>4} " + " ".join(f"{_cell(by.get((m, s)), _fmt):>9}" for m in methods))
    lines.append("highest step passed (every step from 0 up to it >= 70): "
                 + ", ".join(f"{m} {format_highest(highest_step_passed(rows, m))}" for m in methods))
    if any(r.get("untrained") for r in rows):
        lines.append(f"{UNTRAINED} outside the steps the model was trained on (its card)")
    return "\n".join(lines)


def _cell(row, fmt) -> str:
    return "-" if row is None else fmt(row["score"]) + (UNTRAINED if row.get("untrained") else "")


def markdown_table(rows) -> str:
    """step x method scores as a Markdown table (the README's format)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    steps = sorted({r["step"] for r in rows})
    by = {(r["method"], r["step"]): r for r in rows}
    out = ["| step | " + " | ".join(map(str, steps)) + " | highest passed |",
           "|---" * (len(steps) + 2) + "|"]
    for m in methods:
        cells = [_cell(by.get((m, s)), lambda v: f"{v:.0f}") for s in steps]
        out.append(f"| {m} | " + " | ".join(cells) + f" | {format_highest(highest_step_passed(rows, m))} |")
    return "\n".join(out)


def write_csv(path, rows, fields) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})


def plot(rows, path) -> None:
    """Mean official score vs step, one line per method, the pass line dashed; beside it (when
    measured) the sanity check: median rank correlation over the photos (the minimum dotted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_ocr = any(r.get("score") is not None for r in rows)
    has_sanity = any(r.get("sanity_median") is not None for r in rows)
    fig, axes = plt.subplots(1, has_ocr + has_sanity, figsize=(7 * (has_ocr + has_sanity), 4), squeeze=False)
    steps = sorted({r["step"] for r in rows})
    if has_ocr:
        ax = axes[0][0]
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["step"], r["score"]) for r in rows if r["method"] == method and r.get("score") is not None)
            label = f"{method} ({format_highest(highest_step_passed(rows, method))}"
            with_sanity = highest_step_passed_with_sanity(rows, method, PASS) if has_sanity else None
            label += ")" if with_sanity is None else f"; with sanity {with_sanity})"
            ax.plot(*zip(*pts), marker="o", ms=4, label=label)
        ax.axhline(PASS, color="gray", ls="--", lw=1, label="pass (70)")
        ax.set(xlabel="blur step", ylabel="mean official OCR score", ylim=(-2, 102),
               xticks=range(min(steps), max(steps) + 1))
        ax.set_title("OCR score per blur step (highest step passed in brackets)", fontsize=10)
        ax.legend(fontsize=8)
    if has_sanity:
        ax = axes[0][-1]
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["step"], r["sanity_median"], r["sanity_min"]) for r in rows
                         if r["method"] == method and r.get("sanity_median") is not None)
            if not pts:
                continue
            st, med, low = zip(*pts)
            line, = ax.plot(st, med, marker="o", ms=4, label=f"{method} ({highest_sanity_step(rows, method)})")
            ax.plot(st, low, ls=":", lw=1, color=line.get_color())
        ax.axhline(MEDIAN_MIN, color="gray", ls="--", lw=1, label=f"median >= {MEDIAN_MIN}")
        ax.axhline(FLOOR, color="gray", ls=":", lw=1, label=f"every photo >= {FLOOR}")
        ax.set(xlabel="blur step", ylabel="rank correlation with the sharp photo", ylim=(-1.02, 1.02),
               xticks=range(min(steps), max(steps) + 1))
        ax.set_title("sanity check: median over the photos, minimum dotted (passed up to)", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------------------------

def reusable_records(out, method: str, samples) -> list[dict] | None:
    """The per-image records of `method` from an earlier run in `out` (per_image.csv), in the order
    of `samples`, if that run scored every one of them and their images are still there; else None."""
    path = Path(out) / "per_image.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        old = {(r["method"], r["blurred"]): r for r in csv.DictReader(f) if r.get("method") == method}
    recs = []
    for s in samples:
        r = old.get((method, str(s.blurred)))
        if r is None or not (Path(out) / r["image"]).is_file():
            return None
        recs.append({**r, "step": int(r["step"]), "sample_id": int(r["sample_id"]),
                     "score": int(r["score"]) if r["score"] not in ("", None) else None,
                     "official": int(r["official"]), "cer": float(r["cer"])})
    return recs


def evaluate(data, methods, steps=None, out="out/score", samples: int | None = None,
             workers: int | None = None, model=None, params: dict | None = None,
             progress: bool = True, echo=print, reuse: bool = False, sanity: bool = True,
             sanity_only: bool = False) -> dict:
    """Deblur, score, aggregate and write everything; returns {"rows", "highest_step_passed", ...}.
    `sanity`: also the sanity images (when the data hold any); `sanity_only`: only them, no OCR."""
    from .montage import montage

    t0 = time.perf_counter()
    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise DataError(out, "--out is a file, not a folder")
    methods = parse_methods(",".join(methods)) if not isinstance(methods, str) else parse_methods(methods)
    sanity_set = select_sanity(data, steps) if (sanity or sanity_only) else []
    if sanity_only and not sanity_set:
        which = "any step" if steps is None else f"steps {format_steps(steps)}"
        raise DataError(data, f"no sanity images (focusStep_N_Image_<name>.tif, focusStep_N_QRcode.tif) "
                              f"found for {which}")
    chosen = [] if sanity_only else select_samples(data, steps, samples)
    found = sorted({s.step for s in chosen} | {s.step for s in sanity_set})
    if steps is not None and set(steps) - set(found):
        echo(f"note: no samples for step(s) {format_steps(set(steps) - set(found))}; scoring {format_steps(found)}")
    n_workers = max(1, int(workers)) if workers is not None else (os.cpu_count() or 1)
    echo(f"{len(chosen)} text images and {len(sanity_set)} sanity images at steps {format_steps(found)}; "
         f"methods {', '.join(methods)}")
    fns, per_method = {}, {m: chosen for m in methods}
    if "model" in methods:  # load it before any other work: a bad model fails fast
        fns["model"] = ModelMethod(model)
        per_method["model"] = [s for s in chosen if fns["model"].supports(s.step)]
        if any(not fns["model"].supports(s.step) for s in chosen or sanity_set):
            echo(f"note: the model was built for steps 0-{fns['model'].max_step}; it is not scored beyond")
    if "model-auto" in methods:
        fns["model-auto"] = AutoModelMethod(model, share=fns.get("model"))
        per_method["model-auto"] = [s for s in chosen if fns["model-auto"].supports(s.step)]
    pool = chosen or sanity_set  # what the methods run on (--sanity-only: the sanity images alone)
    empty = [m for m in methods if not any(m not in fns or fns[m].supports(s.step) for s in pool)]
    if len(empty) == len(methods):
        raise DataError(fns[methods[0]].path or DEFAULT_MODEL,
                        f"the model was built for steps 0-{fns[methods[0]].max_step}: none of the chosen "
                        f"steps {format_steps(found)} can be scored")
    if empty:
        echo(f"note: {', '.join(empty)} not scored: no chosen step is within the model's steps")
        methods = [m for m in methods if m not in empty]
    # the methods in fns are loaded from --model, which per_image.csv does not record: always rescore them
    reused = {m: reusable_records(out, m, per_method[m]) for m in methods if m not in fns} if reuse and chosen else {}
    reused = {m: r for m, r in reused.items() if r is not None}
    if reused:
        echo(f"reusing the scored images of {', '.join(reused)} from {out / 'per_image.csv'}")
    fresh = [m for m in methods if m not in reused]
    images = {m: produce(m, per_method[m], out, data, model, params, n_workers, progress, fns.get(m))
              if per_method[m] else [] for m in fresh}
    pairs = [(p, "\n".join(s.text)) for m in fresh for s, p in zip(per_method[m], images[m])]
    results = score_many(pairs, workers=n_workers, progress=progress) if pairs else []
    records = []
    i = 0
    for m in fresh:
        for s, p in zip(per_method[m], images[m]):
            r = results[i]
            i += 1
            records.append({"method": m, "step": s.step, "font": s.font, "sample_id": s.sample_id,
                            "score": r.score, "official": official_score(r), "cer": r.cer,
                            "reason": r.reason, "ocr_middle": r.ocr_lines[1] if len(r.ocr_lines) > 1 else "",
                            "true_middle": s.text[1], "image": str(p.relative_to(out)),
                            "blurred": str(s.blurred)})
    records = [r for m in methods for r in (reused[m] if m in reused else [r for r in records if r["method"] == m])]
    rows = aggregate(records)
    sanity_recs = run_sanity(methods, sanity_set, fns, out, data, model, params, n_workers, progress)
    sanity_rows = aggregate_sanity(sanity_recs)
    if chosen:  # the leaderboard's rows are the text rows: a step without text images gets none
        sanity_rows = {k: v for k, v in sanity_rows.items() if k in {(r["method"], r["step"]) for r in rows}}
    rows = attach(rows, sanity_rows, methods, ROW_FIELDS) if sanity_set else rows
    untrained = {m: sorted({r["step"] for r in rows if r["method"] == m and fn.outside_training(r["step"])})
                 for m, fn in fns.items()}
    for r in rows:
        if r["step"] in untrained.get(r["method"], ()):
            r["untrained"] = True
    for m, steps_out in untrained.items():
        if steps_out:
            echo(f"note: {m}: step(s) {format_steps(steps_out)} are outside the steps the model was trained on "
                 f"(flagged {UNTRAINED})")
    best = summary(rows) if chosen else {}
    write_csv(out / "leaderboard.csv", rows, ROW_FIELDS + SANITY_FIELDS)
    if records:
        write_csv(out / "per_image.csv", records, list(records[0]))
    if sanity_recs:
        write_csv(out / "sanity_per_image.csv", sanity_recs, list(sanity_recs[0]))
    plot(rows, out / "leaderboard.png")
    montage(chosen, methods, out, out / "montage.png", sanity=sanity_set)
    result = {"data": str(data), "steps": found, "methods": methods, "samples_per_font": samples,
              "n_images": len(chosen), "pass_threshold": PASS, "rows": rows, "highest_step_passed": best,
              "sanity": {"n_images": len(sanity_set), "median_min": MEDIAN_MIN, "floor": FLOOR,
                         "passed_up_to": {m: highest_sanity_step(rows, m) for m in methods},
                         "highest_step_passed_with_sanity": (
                             {m: highest_step_passed_with_sanity(rows, m, PASS) for m in methods}
                             if chosen and sanity_set else {})},
              "seconds": round(time.perf_counter() - t0, 1)}
    write_text_atomic(out / "leaderboard.json", json.dumps(result, indent=2))
    return result


def run_sanity(methods, sanity_set, fns, out, data, model, params, workers, progress) -> list[dict]:
    """Every method on the sanity images (the model only at its steps; `sharp` = CAM01 in the CAM02
    frame, `eval.sanity.SanityScorer.sharp_output`); their per-image correlation records."""
    if not sanity_set:
        return []
    scorer = SanityScorer()
    recs = []
    for m in methods:
        subset = [s for s in sanity_set if m not in fns or fns[m].supports(s.step)]
        fn = scorer.sharp_output if m == "sharp" else fns.get(m)
        paths = produce(m, subset, out, data, model, params, workers, progress, fn)
        recs += sanity_records(m, subset, paths, scorer, out)
    return recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.score", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="HDC2021 data (training or evaluation layout)")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated, from {','.join(METHODS)} (default: {','.join(DEFAULT_METHODS)}, "
                         "and model when its file exists)")
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--model", type=Path, default=None, help="a .keras model (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=Path("out/score"))
    ap.add_argument("--samples", type=int, default=None, help="first N samples per font per step (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="processes for deblurring and OCR (default: all cores)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the images and scores of the baselines already scored on the same images in --out "
                         "(model methods are always rescored)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--sanity-only", action="store_true",
                       help="score only the sanity images (photos, QR target): no text, no OCR")
    which.add_argument("--no-sanity", action="store_true", help="leave the sanity images out")
    args = ap.parse_args(argv)
    try:
        steps = parse_steps(args.steps)
        methods = parse_methods(args.methods) if args.methods else default_methods(args.model)
    except ValueError as e:
        ap.error(str(e))
    if args.samples is not None and args.samples < 1:
        ap.error("--samples must be at least 1")
    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be at least 1")
    started = time.time()
    try:
        result = evaluate(args.data, methods, steps, args.out, args.samples, args.workers, args.model,
                          progress=not args.quiet, reuse=args.reuse, sanity=not args.no_sanity,
                          sanity_only=args.sanity_only)
    except (DataError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # every file is written atomically: what is there is complete
        images = args.out / "images"
        n = sum(1 for p in images.rglob("*.png") if p.stat().st_mtime >= started) if images.is_dir() else 0
        print(f"\ninterrupted: {n} images written under {images}, no leaderboard written (no partial file)",
              file=sys.stderr)
        return 130
    print()
    if not args.sanity_only:
        print(format_table(result["rows"]))
    if result["sanity"]["n_images"]:
        print(("\n" if not args.sanity_only else "") + format_sanity(result["rows"], not args.sanity_only, PASS))
    elif not args.no_sanity:
        print("no sanity images in the data: the sanity check was not measured")
    print(f"\nwrote {args.out}/leaderboard.csv, leaderboard.json, leaderboard.png, montage.png"
          f"{'' if args.sanity_only else ', per_image.csv'}"
          f"{', sanity_per_image.csv' if result['sanity']['n_images'] else ''} "
          f"and images/ ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
