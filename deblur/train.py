"""Train the deblurring network; with no other flag, the shipped recipe: the multi-scale pyramid
(dims 16/24/32/48, refinements 1/2/3/4) with Wiener physics input channels at three balances, on the
synthetic stream with 40 % procedural non-text scenes.

    python -m deblur.train --steps 0-19 --run-dir DIR            the recipe (defaults below)
    python -m deblur.train --run-dir DIR --init MODEL.keras      continue / fine-tune MODEL: its
        architecture and preprocessing come from its card (MODEL.json) or its run's config.json
    python -m deblur.train --data PREPARED_DIR --run-dir DIR     train on a prepared set (pipelines.prepare)
    python -m deblur.train --run-dir DIR --model-arch highway    the original highway design (tiles)
    python -m eval.train --run-dir DIR --ocr-val-every 5 --monitor val_ocr_hard
        the same command with the OCR validation: best.keras by the official scorer at steps 15-19

Defaults are the recipe of the shipped model: its card (deblur/models/default.json) gives the
architecture, the preprocessing (physics channels) and the training settings it records (batch 4,
50 batches per epoch, step weighting, patience 30, non-text fraction 0.4); steps 0-19, lr 10**-2.5, 3 validation scenes per
step. With --init the model's own architecture and preprocessing replace the card's; every flag
given overrides, and a flag that contradicts --init's model (another architecture, fewer channels)
is an error naming it. `--model-arch highway` alone gives the highway design's own sizes (dim 32,
batch 32).

Without --data, batches are made on the fly by pipelines.simulation.synth (deblur/stream.py), in
--synth-workers processes, validated on --synth-val-per-step fixed scenes per step of a separate
stream. Pyramid models train on whole 1:7 images, valid-conv models on random tiles
(--synth-tiles-per-image per scene, --model-input-size). Runs under any Keras backend
(KERAS_BACKEND=jax: no TensorFlow import on that path).

OCR validation (--ocr-val-every K, deblur/ocr_val.py): every K epochs and at the last, the current
weights deblur --ocr-val-per-step fixed full-size simulated images per --ocr-val-steps step (made once
from the run's seed), exactly as `python -m deblur` would, and the official OCR scorer reads them:
val_ocr_step{N} and val_ocr_hard (their mean) in history.csv, NaN on the other epochs. The scorer is
eval.ocr, a layer above deblur: `python -m eval.train` is this command with it plugged in.

Run dir: config.json (arguments, model spec, data set), best.keras (best --monitor: lowest val_loss
or val_excess_hard, highest val_ocr_hard), last.keras, history.csv (one row per epoch: loss,
val_loss, val_loss_step{N}, val_excess, val_excess_step{N}, val_excess_hard, learning_rate,
[weight_step{N}], [val_ocr_step{N}, val_ocr_hard]),
tensorboard/ (if the tensorboard package is installed), backup/ (BackupAndRestore: rerunning the same command after a crash or kill resumes
from the last finished epoch; the backup is removed when training ends) and history.json at the end.

Loss: binary cross-entropy on targets / 255; Adam(lr); learning rate halved after patience // 2
epochs without val_loss improvement (ReduceLROnPlateau); EarlyStopping after --patience epochs.
Validation runs every epoch on the set's "val" split, overall and per step.

Devices: TensorFlow uses a visible GPU automatically (the devices are printed at start).
--mixed-precision: "mixed_float16" (with loss scaling) on a GPU, "mixed_bfloat16" on CPU; the
output layer stays float32. --batch-size is the global batch (split across replicas).
--distribute mirrored: tf.distribute.MirroredStrategy over all local GPUs (on a CPU-only machine
over the logical CPUs made by the debug flag --logical-cpus N). Past one machine:
--distribute multiworker uses tf.distribute.MultiWorkerMirroredStrategy, configured by the
TF_CONFIG environment variable on every worker, e.g.
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'
(same command on each host with its own task index, the same --data, and a --run-dir of its own
on each worker, not one shared folder; worker 0 is the chief; docs/distributed-training.md).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.common.errors import DataError
from pipelines.preprocessing.deconv import MULTI_BALANCES, PHYSICS_CHANNELS
from pipelines.reading.physics import N_STEPS, parse_steps

STOP_EXIT_CODE = 3  # exit status of the --stop-after-epoch debug flag


@dataclass
class TrainConfig:
    data: str | None
    run_dir: str
    steps: list = field(default_factory=lambda: list(range(10)))
    epochs: int = 100
    batch_size: int = 32
    lr: float = 10 ** -2.5
    model_dim: int = 32
    model_subdim: int = 32
    model_refinements: int = 12
    model_shared_width: int = 5
    model_max_step: int = N_STEPS - 1
    model_coarse_pathway: bool = False
    model_coarse_refinements: int = 4
    model_arch: str = "highway"
    model_pyramid_dims: tuple = (16, 24, 32, 48)
    model_pyramid_refinements: tuple = (1, 2, 3, 4)
    model_input_size: int = 110
    synthetic: bool = False
    synth_workers: int = 1
    synth_val_per_step: int = 4
    synth_tiles_per_image: int = 4
    synth_echo: int = 1
    nontext_fraction: float = 0.0
    contrast_weight: float = 0.0
    freeze_batchnorm: bool = False
    synth_val_nontext: int = 1
    physics: str = "none"
    physics_balances: tuple | None = None  # "wiener-multi": the balances (None: the mode's default)
    init: str | None = None
    seed: int = 0
    mixed_precision: bool = False
    distribute: str = "none"
    step_weighting: bool = False
    monitor: str = "val_loss"
    ocr_val_every: int = 0
    ocr_val_steps: list | None = None
    ocr_val_per_step: int = 4
    patience: int = 10
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 1024
    cycle_length: int = 4
    val_batch_size: int | None = None
    logical_cpus: int | None = None
    stop_after_epoch: int | None = None
    verbose: bool = True

    @classmethod
    def from_any(cls, config) -> "TrainConfig":
        if isinstance(config, cls):
            return config
        if isinstance(config, argparse.Namespace):
            config = vars(config)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - names
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        return cls(**config)


# ---- command line --------------------------------------------------------------------------

def _steps_arg(text):
    try:
        return parse_steps(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _lr_arg(text):
    t = str(text).strip()
    try:
        if "**" in t:
            base, exp = t.split("**", 1)
            v = float(base) ** float(exp)
        else:
            v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read learning rate {text!r} (e.g. 0.003 or 10**-2.5)") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"learning rate must be positive, got {text!r}")
    return v


def _pos_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _int_list(text):
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None


def _fraction_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return v


def _balance_list(text):
    try:
        v = tuple(float(b) for b in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not all(math.isfinite(b) and b > 0 for b in v) or len(set(v)) != len(v):
        raise argparse.ArgumentTypeError(f"balances must be distinct numbers > 0, got {text!r}")
    return v


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def build_parser(prog: str = "python -m deblur.train") -> argparse.ArgumentParser:
    """The command line (`prog`: the command's name in its help). Options that the recipe sets default to None here (None = not given):
    `resolve` fills them in from the recipe or --init's model, so it can tell a given flag apart."""
    r = recipe()
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="prepared set folder (manifest.json + shards/); "
                   "without it: the synthetic stream")
    p.add_argument("--synthetic", action="store_true",
                   help="train from the synthetic stream (pipelines.simulation.synth): the default without --data")
    p.add_argument("--synth-workers", type=_nonneg_int, default=None,
                   help=f"processes generating synthetic pairs (0: in the training process; recipe {r['synth_workers']})")
    p.add_argument("--synth-val-per-step", type=_pos_int, default=None,
                   help=f"validation scenes per step (recipe {r['synth_val_per_step']})")
    p.add_argument("--synth-tiles-per-image", type=_pos_int, default=4,
                   help="random tiles cut from each synthetic scene (valid-conv models)")
    p.add_argument("--synth-echo", type=_pos_int, default=1,
                   help="data echoing: train on each synthetic scene this many times, in other batches "
                        "(deblur.stream.echo_sample): the stream's CPU per trained frame falls this-fold, "
                        "for a CPU where the stream shares the cores with the trainer; fewer fresh scenes "
                        "per epoch (default 1: every frame fresh)")
    p.add_argument("--nontext-fraction", type=_fraction_arg, default=None,
                   help="synthetic stream: fraction of procedural non-text scenes (pipelines.simulation.nontext: dead leaves, "
                        "1/f noise, shapes, Siemens stars, bars, QR grids) with their grey image as the target, "
                        "so the network deblurs general images (the HDC2021 sanity check), not only text "
                        f"(recipe {r['nontext_fraction']:g})")
    p.add_argument("--contrast-weight", type=float, default=0.0, metavar="MAX",
                   help="synthetic stream: weight each frame's loss by CONTRAST_REF / std(target), clipped to "
                        "[1, MAX] (deblur.stream.contrast_weights): a low-contrast photo's cross-entropy is "
                        "~contrast^2 small, the sanity check's rank correlation is contrast-blind (default 0: off)")
    p.add_argument("--freeze-batchnorm", action="store_true",
                   help="keep the BatchNormalization statistics of --init fixed (inference mode while training): "
                        "fine-tuning on a new input mix (e.g. --nontext-fraction) with small batches otherwise "
                        "moves the running statistics away from what the weights were trained with")
    p.add_argument("--synth-val-nontext", type=_nonneg_int, default=1,
                   help="non-text validation scenes per step (with --nontext-fraction > 0)")
    p.add_argument("--physics", choices=PHYSICS_CHANNELS, default=None,
                   help="synthetic stream: the physics input channel(s), the step's Wiener deconvolution: "
                        "wiener, one channel at balance 0.003; wiener-multi, one per --physics-balances "
                        f"(pipelines.preprocessing.deconv, docs/physics-info.md; recipe {r['physics']}); "
                        "with --data the prepared set decides")
    p.add_argument("--physics-balances", type=_balance_list, default=None,
                   help="--physics wiener-multi: the Wiener balances, one channel each, in this order "
                        f"(default {_csv(MULTI_BALANCES)}; from a wiener model, start with its 0.003 so the "
                        "extended model starts from its function)")
    p.add_argument("--init", default=None, help="start from the weights of this saved .keras model and take its "
                   "architecture and preprocessing from its card or run config (a model with fewer input "
                   "channels is extended: the new channels' weights start at 0)")
    p.add_argument("--model-arch", choices=["highway", "pyramid"], default=None,
                   help=f"pyramid: multi-scale 1:7..1:56; highway: the design (valid convs, tiles) (recipe {r['model_arch']})")
    p.add_argument("--model-pyramid-dims", type=_int_list, default=None,
                   help=f"recipe {_csv(r['model_pyramid_dims'])}")
    p.add_argument("--model-pyramid-refinements", type=_int_list, default=None,
                   help=f"recipe {_csv(r['model_pyramid_refinements'])}")
    p.add_argument("--model-input-size", type=_pos_int, default=110,
                   help="input tile size of a valid-conv model trained with --synthetic")
    p.add_argument("--run-dir", required=True, help="output folder; rerun the same command to resume")
    p.add_argument("--steps", type=_steps_arg, default=None,
                   help="blur steps to train on, e.g. 0-19 or 0,2,5-9 (default 0-19)")
    p.add_argument("--epochs", type=_pos_int, default=100)
    p.add_argument("--batch-size", type=_pos_int, default=None,
                   help=f"global batch size (recipe {r['batch_size']}; highway 32)")
    p.add_argument("--lr", type=_lr_arg, default=10 ** -2.5, help="Adam learning rate (default 10**-2.5)")
    p.add_argument("--model-dim", type=_pos_int, default=None, help=f"recipe {r['model_dim']}; highway 32")
    p.add_argument("--model-subdim", type=_pos_int, default=None, help=f"recipe {r['model_subdim']}; highway 32")
    p.add_argument("--model-refinements", type=_nonneg_int, default=None, help=f"recipe {r['model_refinements']}")
    p.add_argument("--model-shared-width", type=_pos_int, default=None, help=f"recipe {r['model_shared_width']}")
    p.add_argument("--model-max-step", type=_nonneg_int, default=None,
                   help="highest step the model accepts (default 19)")
    p.add_argument("--model-coarse-pathway", action=argparse.BooleanOptionalAction, default=None,
                   help="add the 2x down-scaled pathway (highway design: larger receptive field per FLOP)")
    p.add_argument("--model-coarse-refinements", type=_nonneg_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed_float16 on GPU, mixed_bfloat16 on CPU; output stays float32")
    p.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                   help="mirrored: all local GPUs; multiworker: MultiWorkerMirroredStrategy via TF_CONFIG")
    p.add_argument("--step-weighting", action=argparse.BooleanOptionalAction, default=None,
                   help=f"sample steps in proportion to their last validation excess loss (cross-entropy minus "
                        f"the targets' entropy: what is left to gain), floored at 1/4 of the mean (recipe: "
                        f"{'on' if r['step_weighting'] else 'off'})")
    p.add_argument("--monitor", choices=list(MONITOR_MODES), default="val_loss",
                   help="the validation figure that chooses best.keras: val_loss (all steps, lowest), "
                        "val_excess_hard, the excess loss (cross-entropy minus the targets' entropy) of the "
                        "hardest quarter of the trained steps (15-19 of 0-19; lowest), or val_ocr_hard, "
                        "the mean official OCR score of --ocr-val-steps (highest; needs --ocr-val-every)")
    p.add_argument("--ocr-val-every", type=_nonneg_int, default=0, metavar="K",
                   help="every K epochs and at the last one, deblur --ocr-val-per-step fixed full-size "
                        "simulated images per --ocr-val-steps step with the current weights and score them "
                        "with the official OCR scorer: val_ocr_step{N}, val_ocr_hard in history.csv (NaN on "
                        "the other epochs); 0 = off (default). Needs the scorer: python -m eval.train")
    p.add_argument("--ocr-val-steps", type=_steps_arg, default=None,
                   help="steps of the OCR validation (default: the hardest quarter of --steps, 15-19 of 0-19)")
    p.add_argument("--ocr-val-per-step", type=_pos_int, default=4, metavar="M",
                   help="OCR validation images per step (default 4; deblurring and OCR about 1.3 s per image "
                        "on a busy 2-core CPU)")
    p.add_argument("--patience", type=_pos_int, default=None,
                   help=f"EarlyStopping patience in epochs (recipe {r['patience']})")
    p.add_argument("--steps-per-epoch", type=_pos_int, default=None,
                   help=f"batches per epoch (synthetic stream: recipe {r['steps_per_epoch']}; "
                        "--data: one pass over the training tiles)")
    p.add_argument("--shuffle-buffer", type=_nonneg_int, default=1024, help="tiles in the shuffle buffer")
    p.add_argument("--cycle-length", type=_pos_int, default=4, help="shards read concurrently")
    p.add_argument("--val-batch-size", type=_pos_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--logical-cpus", type=_pos_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--stop-after-epoch", type=_pos_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", dest="verbose", action="store_false", help=argparse.SUPPRESS)
    return p


def main(argv=None, ocr_scorer=None, prog: str = "python -m deblur.train") -> int:
    """The command. `ocr_scorer`: the OCR scorer for --ocr-val-every (deblur.ocr_val; the official
    one is plugged in by `python -m eval.train`, since deblur does not import eval)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.monitor == "val_ocr_hard" and not args.ocr_val_every:
        parser.error("--monitor val_ocr_hard needs --ocr-val-every K (the OCR validation it reads)")
    if args.ocr_val_every and ocr_scorer is None:
        parser.error("--ocr-val-every needs the official OCR scorer (eval.ocr), which deblur does not import "
                     "(the layers of docs/development.md): run the same command as python -m eval.train")
    if args.data and args.synthetic:
        parser.error("give --data DIR or --synthetic, not both (without --data the synthetic stream is used)")
    if args.data and args.nontext_fraction:
        parser.error("--nontext-fraction is for --synthetic (the procedural scenes are made on the fly)")
    if args.data and args.contrast_weight > 1:
        parser.error("--contrast-weight is for --synthetic (the stream's frames are weighted as they are made)")
    if args.data and args.synth_echo > 1:
        parser.error("--synth-echo is for --synthetic (a prepared set is read from disk, not made)")
    if args.data and (args.physics is not None or args.physics_balances is not None):
        parser.error("--physics is for the synthetic stream; a prepared set has its channels already "
                     "(python -m pipelines.prepare --physics)")
    if Path(args.run_dir).exists() and not Path(args.run_dir).is_dir():
        parser.error(f"--run-dir {args.run_dir} is a file, not a folder")
    try:
        config = resolve(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        if config.logical_cpus:
            configure_logical_cpus(config.logical_cpus)
        train(config, ocr_scorer=ocr_scorer)
    except (DataError, RunDirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if argv is None and _pipeline_failed():
            _exit_now(1)
        return 1
    return 0


# ---- the recipe: defaults from the shipped model's card, or from --init's model ------------------

# What the recipe sets when neither the shipped card nor --init's model says otherwise (the
# recipe of `bash run.sh train-default`). `python -m deblur.train --run-dir R` trains exactly this.
RECIPE = {
    "steps": list(range(N_STEPS)), "model_arch": "pyramid", "model_pyramid_dims": (16, 24, 32, 48),
    "model_pyramid_refinements": (1, 2, 3, 4), "model_dim": 16, "model_subdim": 16,
    "model_refinements": 12, "model_shared_width": 5, "model_max_step": N_STEPS - 1,
    "model_coarse_pathway": False, "model_coarse_refinements": 4, "physics": "wiener",
    "batch_size": 4, "steps_per_epoch": 50, "step_weighting": True, "patience": 30,
    "synth_val_per_step": 3, "synth_workers": 1, "nontext_fraction": 0.0,
}
# The design's own sizes, used when --model-arch names another architecture than the recipe's
ARCH_DEFAULTS = {"highway": {"model_dim": 32, "model_subdim": 32, "model_refinements": 12,
                             "model_shared_width": 5, "batch_size": 32},
                 "pyramid": {k: RECIPE[k] for k in ("model_dim", "model_subdim", "model_pyramid_dims",
                                                    "model_pyramid_refinements", "model_shared_width", "batch_size")}}
# TrainConfig field <- key of a card's / run config's "model" (ModelSpec) record
MODEL_FIELDS = {"model_arch": "arch", "model_dim": "dim", "model_subdim": "subdim",
                "model_refinements": "refinements", "model_shared_width": "shared_width",
                "model_max_step": "max_step", "model_coarse_pathway": "coarse_pathway",
                "model_coarse_refinements": "coarse_refinements", "model_pyramid_dims": "pyramid_dims",
                "model_pyramid_refinements": "pyramid_refinements"}
# training settings a card ("training") or a run config ("args") records that the recipe takes
TRAINING_FIELDS = ("batch_size", "steps_per_epoch", "step_weighting", "patience", "nontext_fraction")
# what must agree with --init's model for its weights to load (the flag that sets it)
INIT_FLAGS = {f: "--" + f.replace("_", "-") for f in MODEL_FIELDS if f != "model_max_step"}
INIT_FLAGS["physics"] = "--physics"
INIT_FLAGS["physics_balances"] = "--physics-balances"


def _csv(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def record_settings(record: dict, training: bool = False) -> dict:
    """The TrainConfig settings a model card or a run's config.json records: architecture (its
    "model") and physics channel (its preprocessing), with `training` also the recipe's training
    settings (a card's "training", a run's "args")."""
    out = {}
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    for name, key in MODEL_FIELDS.items():
        if model.get(key) is not None:
            v = model[key]
            out[name] = tuple(v) if isinstance(v, list) else v
    pre = record_preprocess(record)
    if pre:
        out["physics"] = pre.get("physics", "none")  # PreprocessConfig.to_dict leaves out "none"
        if pre.get("physics_balances"):
            out["physics_balances"] = tuple(float(b) for b in pre["physics_balances"])
    if training:
        settings = record.get("training") or record.get("args") or {}
        out.update({k: settings[k] for k in TRAINING_FIELDS if settings.get(k) is not None})
    return out


def record_preprocess(record: dict) -> dict:
    """The PreprocessConfig dict a model card or a run's config.json records ({} if none)."""
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    pre = record.get("preprocess") or data.get("preprocess") or (data.get("manifest_config") or {}).get("preprocess")
    return pre if isinstance(pre, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def recipe() -> dict:
    """The defaults: RECIPE, updated with what the shipped model's card records, so that they
    follow the model that ships."""
    from .infer import DEFAULT_MODEL, card_path

    return {**RECIPE, **record_settings(_read_json(card_path(DEFAULT_MODEL)), training=True)}


def init_record(path) -> tuple[dict, Path | None]:
    """(settings, source file) of an --init model: its card (MODEL.json beside it) or, for a
    checkpoint in its run directory, the run's config.json; ({}, None) if neither says."""
    path = Path(path)
    for source in (path.with_suffix(".json"), path.parent / "config.json"):
        settings = record_settings(_read_json(source))
        if "model_arch" in settings:
            return settings, source
    return {}, None


def resolve(args) -> "TrainConfig":
    """A TrainConfig from parsed arguments: each option not given takes --init's model's value
    (architecture, preprocessing), else the recipe's. ValueError naming the flag when a given flag
    contradicts --init's model."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    base = recipe()
    settings = {}
    if args.init:
        settings, source = init_record(args.init)
        for name, flag in INIT_FLAGS.items():
            if name not in given or name not in settings or given[name] == settings[name]:
                continue
            if name == "physics" and given[name] != "none":
                continue  # adding channels extends the model (new weights 0)
            if name == "physics_balances" and given.get("physics", settings.get("physics")) != "wiener-multi":
                continue  # the model's balances are not this run's (an error below)
            value = (lambda v: _csv(v) if isinstance(v, tuple) else v)
            raise ValueError(f"{flag} {value(given[name])} contradicts --init {args.init}, whose "
                             f"{source.name} records {flag} {value(settings[name])}; leave {flag} out "
                             "to take the model's")
    physics = given.get("physics", settings.get("physics", base["physics"]))
    if "physics_balances" in given and physics != "wiener-multi":
        raise ValueError(f"--physics-balances is for --physics wiener-multi (this run: --physics {physics})")
    if physics != "wiener-multi" or settings.get("physics") != "wiener-multi":
        settings.pop("physics_balances", None)  # --init's balances go only to a run of its own mode
    if physics == "wiener-multi" and settings.get("physics") == "wiener":
        first = given.get("physics_balances", MULTI_BALANCES)[0]
        had = float(record_preprocess(_read_json(source)).get("physics_balance", 0.003))
        if first != had:
            raise ValueError(f"--init {args.init} has the wiener channel at balance {had:g}: the first "
                             f"--physics-balances must be that one (got {first:g}), so that the extended "
                             "model starts from its function")
    arch = given.get("model_arch", settings.get("model_arch", base["model_arch"]))
    if arch != settings.get("model_arch", base["model_arch"]):  # another design than the recipe's
        base.update(ARCH_DEFAULTS[arch])
        settings = {}
    values = {**base, **settings, **given}
    values["data"], values["synthetic"] = args.data, not args.data
    if values.get("physics") != "wiener-multi":
        values["physics_balances"] = None
    if args.data:
        values["nontext_fraction"] = 0.0  # the stream's procedural scenes; a prepared set has none
        if "steps_per_epoch" not in given:
            values["steps_per_epoch"] = None  # one pass over the prepared set
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_any({k: v for k, v in values.items() if k in names})


def _pipeline_failed() -> bool:
    return bool(getattr(sys.modules.get("deblur.data"), "PIPELINE_ERRORS", None))


def _exit_now(code: int):
    """End the command at once. After an error inside the tf.data pipeline, destroying its iterator
    can deadlock (its reader threads wait for the GIL that the garbage collector holds), so the
    process leaves without the interpreter's clean-up: every file of the run is already complete
    (atomic writes; history.csv is flushed after each epoch)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---- helpers ---------------------------------------------------------------------------------

class RunDirError(ValueError):
    """The run dir cannot be used for this run (message says why)."""


def configure_logical_cpus(n: int):
    """Split the CPU into n logical devices (must happen before TensorFlow initialises devices)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise RuntimeError(f"TensorFlow is already initialised with {have} logical CPU(s); "
                               f"--logical-cpus {n} must be applied before anything else") from None


def _strategy(tf, kind: str):
    if kind in (None, "none"):
        return tf.distribute.get_strategy()
    if kind == "multiworker":
        from .distribute import multi_worker_strategy
        return multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def read_history_csv(path: Path) -> list[dict]:
    """The rows of a run's history.csv (epoch as int, metrics as float); [] if there is none."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v not in ("", None)})
    return out


def _truncate_history(path: Path, epochs: int):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        keep = [r for r in reader if r and int(r[header.index("epoch")]) < epochs]
    from pipelines.common.atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(keep)


def _history_dict(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
    return {k: [r.get(k) for r in rows] for k in keys}


def _log(config, *a):
    if config.verbose:
        print(*a, flush=True)


# ---- callbacks (built lazily: they subclass keras.callbacks.Callback) --------------------------

def batch_bce(y, p, eps: float = 1e-7):
    """Per-sample binary cross-entropy (mean over pixels), in numpy: backend-neutral validation."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss.reshape(len(loss), -1).mean(axis=1)


def batch_entropy(y, eps: float = 1e-7):
    """Per-sample mean binary entropy of soft targets: the floor of their cross-entropy, so
    bce - entropy (the KL divergence, "excess loss") is what a model can still gain."""
    return batch_bce(y, y, eps)


def hardest_steps(steps) -> list:
    """The highest quarter of the trained steps (at least one): 15-19 of 0-19."""
    steps = sorted(steps)
    return steps[len(steps) - max(1, math.ceil(len(steps) / 4)):]


def _callback_classes():
    import keras
    import numpy as np

    class StepValidation(keras.callbacks.Callback):
        """Validate on the val split each epoch; add val_loss and val_loss_step{N} to the logs
        (placed first, so checkpoints, LR schedule, early stopping and CSVLogger see them)."""

        def __init__(self, dataset, steps, sampler=None, stream=None, replicas=1):
            super().__init__()
            self.dataset, self.steps, self.sampler, self.stream = dataset, list(steps), sampler, stream
            self.replicas = replicas

        def _predict(self, inputs):
            if self.replicas > 1:  # predict_on_batch would run the whole batch on every replica
                return np.asarray(self.model(inputs, training=False))  # and concatenate the results
            return self.model.predict_on_batch(inputs)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            sums, counts, excess = {}, {}, {}
            kinds = {0.0: [], 1.0: []}  # text / non-text losses
            for inputs, y in self.dataset:
                inputs = {k: np.asarray(v) for k, v in inputs.items()}
                nontext = inputs.pop("nontext", np.zeros(len(y), np.float32))
                loss = batch_bce(y, self._predict(inputs))
                gain = loss - batch_entropy(y)
                step = inputs["step"][:, 0].astype(int)
                for s in np.unique(step):
                    m = step == s
                    sums[s] = sums.get(s, 0.0) + float(loss[m].sum())
                    excess[s] = excess.get(s, 0.0) + float(gain[m].sum())
                    counts[s] = counts.get(s, 0) + int(m.sum())
                for k, v in zip(nontext, loss):
                    kinds[float(k)].append(float(v))
            per_step = {int(s): sums[s] / counts[s] for s in sums}
            logs["val_loss"] = sum(sums.values()) / max(1, sum(counts.values()))
            logs["val_excess"] = sum(excess.values()) / max(1, sum(counts.values()))
            if kinds[1.0]:
                logs["val_loss_text"] = float(np.mean(kinds[0.0])) if kinds[0.0] else float("nan")
                logs["val_loss_nontext"] = float(np.mean(kinds[1.0]))
            per_excess = {int(s): excess[s] / counts[s] for s in excess}
            for s in self.steps:
                logs[f"val_loss_step{s}"] = per_step.get(s, float("nan"))
                logs[f"val_excess_step{s}"] = per_excess.get(s, float("nan"))
            hard = [s for s in hardest_steps(self.steps) if s in counts]
            logs["val_excess_hard"] = (sum(excess[s] for s in hard) / sum(counts[s] for s in hard)
                                       if hard else float("nan"))
            logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
            if self.sampler is not None:
                for s, w in zip(self.sampler.steps, self.sampler.weights):
                    logs[f"weight_step{s}"] = float(w)  # weights used during this epoch
                self.sampler.update(per_excess)
                if self.stream is not None:
                    self.stream.set_weights(self.sampler.weights)

    class EpochLine(keras.callbacks.Callback):
        def __init__(self, epochs, steps, verbose=True):
            super().__init__()
            self.epochs, self.steps, self.verbose = epochs, steps, verbose
            self._t = time.time()

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if not self.verbose:
                return
            logs = logs or {}
            per = " ".join(f"{s}:{logs.get(f'val_loss_step{s}', float('nan')):.4f}" for s in self.steps)
            kinds = (f" (text {logs['val_loss_text']:.4f}, non-text {logs['val_loss_nontext']:.4f})"
                     if "val_loss_nontext" in logs else "")
            print(f"epoch {epoch + 1}/{self.epochs} {time.time() - self._t:.1f}s "
                  f"loss {logs.get('loss', float('nan')):.4f} val_loss {logs.get('val_loss', float('nan')):.4f}{kinds} "
                  f"excess {logs.get('val_excess', float('nan')):.4f} "
                  f"lr {logs.get('learning_rate', float('nan')):.2e} | per step {per}", flush=True)

    class StopAfterEpoch(keras.callbacks.Callback):
        """Debug: exit the process hard (os._exit) after n finished epochs, backup written."""

        def __init__(self, n):
            super().__init__()
            self.n = n

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= self.n:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(STOP_EXIT_CODE)

    return StepValidation, EpochLine, StopAfterEpoch


# ---- training --------------------------------------------------------------------------------

# the figures --monitor can choose best.keras by, and their direction
MONITOR_MODES = {"val_loss": "min", "val_excess_hard": "min", "val_ocr_hard": "max"}


def monitor_mode(monitor: str) -> str:
    """"min" or "max": which way `monitor` improves (ValueError for an unknown one)."""
    try:
        return MONITOR_MODES[monitor]
    except KeyError:
        raise ValueError(f"unknown --monitor {monitor!r}; known: {', '.join(MONITOR_MODES)}") from None


def best_row(rows: list[dict], monitor: str) -> dict | None:
    """The history row (epoch) with the best finite `monitor` (lowest or highest, monitor_mode; the
    first of equals, as ModelCheckpoint keeps it), None if there is none (epochs without an OCR
    validation hold NaN)."""
    rows = [r for r in rows if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])]
    if not rows:
        return None
    sign = -1 if monitor_mode(monitor) == "max" else 1
    return min(rows, key=lambda r: sign * r[monitor])


def best_value(rows: list[dict], monitor: str) -> float | None:
    """The best finite value of `monitor` in history rows (best_row), None if there is none."""
    row = best_row(rows, monitor)
    return None if row is None else row[monitor]


def _prepare_run_dir(run_dir: Path, record: dict, config) -> dict:
    """Check resume compatibility; returns {"resuming": bool, "best": float|None}."""
    run_dir.mkdir(parents=True, exist_ok=True)
    backup = run_dir / "backup"
    hist = run_dir / "history.csv"
    rows = read_history_csv(hist)
    resuming = backup.is_dir() and any(backup.iterdir())
    if resuming:
        old = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
        for key in ("model", "steps"):
            if key in old and old[key] != record[key]:
                raise RunDirError(f"{run_dir}: holds an interrupted run with a different {key} "
                                  f"({old[key]} vs {record[key]}); use another --run-dir")
        ocr_steps = [(a.get("ocr_val_steps") if a.get("ocr_val_every") else None)
                     for a in (old.get("args") or {}, record.get("args") or {})]
        if ocr_steps[0] != ocr_steps[1]:  # history.csv's columns (val_ocr_step{N}) must stay the same
            raise RunDirError(f"{run_dir}: holds an interrupted run with OCR validation steps {ocr_steps[0]} "
                              f"(vs {ocr_steps[1]} now); give the same --ocr-val-every / --ocr-val-steps "
                              "(on or off) or use another --run-dir")
        meta = backup / "training_metadata.json"
        done = json.loads(meta.read_text()).get("epoch") if meta.is_file() else None
        if done is not None and any(r.get("epoch", -1) >= done for r in rows):
            # killed after CSVLogger wrote an epoch but before its backup: that epoch reruns
            _truncate_history(hist, done)
            rows = [r for r in rows if r.get("epoch", -1) < done]
    elif rows:
        raise RunDirError(f"{run_dir}: already holds a finished run ({len(rows)} epochs in history.csv); "
                          f"use another --run-dir")
    elif hist.exists():
        hist.unlink()
    from pipelines.common.atomic import write_text_atomic
    write_text_atomic(run_dir / "config.json", json.dumps(record, indent=2, sort_keys=True, default=str))
    best = best_value(rows, getattr(config, "monitor", "val_loss")) if resuming else None
    last = rows[-1] if rows else {}
    return {"resuming": resuming, "best": best, "last_row": last}


def set_seed(keras, seed: int):
    """keras.utils.set_random_seed, except that off TensorFlow it does not import TensorFlow (Keras
    would, wherever it is installed, to seed tf.data): the same global Keras seed, Python and numpy."""
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, int(seed))
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def _backend_info(keras):
    """(backend name, device description, has_gpu) without importing TensorFlow under JAX."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        return backend, ", ".join(d.name for d in tf.config.list_logical_devices()), bool(gpus)
    if backend == "jax":
        import jax
        devs = jax.devices()
        return backend, ", ".join(str(d) for d in devs), any(d.platform == "gpu" for d in devs)
    return backend, "?", False


def _initial_epoch(run_dir: Path) -> int:
    """Epochs already finished by an interrupted run (BackupAndRestore's metadata), else 0."""
    meta = run_dir / "backup" / "training_metadata.json"
    try:
        return int(json.loads(meta.read_text()).get("epoch") or 0) if meta.is_file() else 0
    except (ValueError, OSError):
        return 0


def _load_init(model, path, prepared: bool = False):
    """Copy the weights of a saved model into `model` (same architecture), with clear errors.

    A saved model with fewer input channels (e.g. trained before the physics channel was added) is
    extended: the kernels that read the input get zero weights for the new channels, so the
    extended model starts out computing exactly what the saved one did. Returns a note on what
    was extended ("" if nothing). The error for another architecture names the flags that differ
    (`prepared`: the input channels come from a prepared set, not from --physics)."""
    import numpy as np

    from .model import load_model, spec_of

    src = load_model(path)
    a, b = spec_of(src), spec_of(model)
    keys = ("arch", "dim", "subdim", "refinements", "shared_width", "channels", "coarse_pathway",
            "coarse_refinements", "pyramid_dims", "pyramid_refinements")
    diff = {k: (getattr(a, k), getattr(b, k)) for k in keys if getattr(a, k) != getattr(b, k)}
    extend = set(diff) == {"channels"} and a.channels < b.channels
    if diff and not extend:
        flags = {**{key: f"--model-{key.replace('_', '-')}" for key in keys}, "arch": "--model-arch",
                 "channels": "input channels" if prepared else "--physics"}
        hint = ("prepare the set with python -m pipelines.prepare --physics "
                f"{ {5: 'none', 6: 'wiener'}.get(a.channels, 'wiener-multi')}" if prepared and "channels" in diff
                else "leave these flags out to take the model's")
        raise DataError(path, "--init model has another architecture than this run: "
                              + "; ".join(f"{flags[k]}: model {v[0]}, this run {v[1]}" for k, v in diff.items())
                              + f" ({hint})")
    weights, extended = [], 0
    for w, target in zip(src.get_weights(), model.get_weights()):
        if w.shape != target.shape:
            # only a conv kernel's input axis may differ: (kh, kw, c_in, c_out)
            if not (extend and w.ndim == 4 and w.shape[:2] + w.shape[3:] == target.shape[:2] + target.shape[3:]
                    and w.shape[2] == a.channels and target.shape[2] == b.channels):
                raise DataError(path, f"--init weights of shape {w.shape} do not fit {target.shape}")
            pad = np.zeros(w.shape[:2] + (b.channels - a.channels,) + w.shape[3:], dtype=w.dtype)
            w = np.concatenate([w, pad], axis=2)
            extended += 1
        weights.append(w)
    model.set_weights(weights)
    return (f"extended {extended} input kernel(s) from {a.channels} to {b.channels} channels "
            "(new weights 0)") if extended else ""


def _model_spec(config, input_size, channels):
    from .model import ModelSpec

    size = None if config.model_arch == "pyramid" and config.synthetic else input_size
    return ModelSpec(dim=config.model_dim, subdim=config.model_subdim,
                     refinements=config.model_refinements, shared_width=config.model_shared_width,
                     input_size=size, channels=channels,
                     max_step=config.model_max_step, coarse_pathway=config.model_coarse_pathway,
                     coarse_refinements=config.model_coarse_refinements, arch=config.model_arch,
                     pyramid_dims=tuple(config.model_pyramid_dims),
                     pyramid_refinements=tuple(config.model_pyramid_refinements))


def train(config, ocr_scorer=None) -> dict:
    """Train as configured (TrainConfig, dict or argparse Namespace); returns the full history
    {metric: [value per epoch]} including epochs run before a resume. `ocr_scorer`: the OCR scorer
    of the OCR validation (config.ocr_val_every > 0; deblur.ocr_val)."""
    config = TrainConfig.from_any(config)
    mode = monitor_mode(config.monitor)
    if config.monitor == "val_ocr_hard" and not config.ocr_val_every:
        raise ValueError("--monitor val_ocr_hard needs --ocr-val-every K (the OCR validation it reads)")
    if config.ocr_val_every:
        if ocr_scorer is None:
            raise ValueError("--ocr-val-every needs an OCR scorer (python -m eval.train plugs in the official one)")
        config = dataclasses.replace(config, ocr_val_steps=sorted(set(config.ocr_val_steps or
                                                                      hardest_steps(config.steps))))
    if config.logical_cpus:
        configure_logical_cpus(config.logical_cpus)
    import keras

    from . import data as D
    from .model import build_from_spec

    backend = keras.backend.backend()
    if config.synthetic and config.distribute != "none":
        raise DataError(None, "the synthetic stream (no --data) trains on one machine: --distribute needs --data")
    if backend != "tensorflow" and (not config.synthetic or config.distribute != "none"):
        raise DataError(None, f"the {backend} backend trains only with --synthetic (shards use tf.data)")
    strategy = None
    if backend == "tensorflow":
        import tensorflow as tf
        # the first TensorFlow call: MultiWorkerMirroredStrategy must configure collective ops
        # before anything (seeding, device listing) initialises the runtime
        strategy = _strategy(tf, config.distribute)
    StepValidation, EpochLine, StopAfterEpoch = _callback_classes()
    set_seed(keras, config.seed)
    backend, devices, gpu = _backend_info(keras)
    _log(config, f"backend {backend}; devices: {devices}", "(GPU)" if gpu else "(no GPU: training on CPU)")

    from pipelines.preprocessing.preprocess import PreprocessConfig
    run_dir = Path(config.run_dir)
    if config.synthetic:
        pre = PreprocessConfig(physics=config.physics, physics_balances=tuple(config.physics_balances or ())
                               if config.physics == "wiener-multi" else ())
        spec = _model_spec(config, config.model_input_size, pre.channels)
        tset = None
        data_record = {"synthetic": True, "seed": config.seed, "preprocess": pre.to_dict(),
                       "nontext_fraction": config.nontext_fraction}
    else:
        tset = D.open_set(config.data, config.steps)
        spec = _model_spec(config, tset.input_size, tset.channels)
        D.target_crop(tset.target_size, spec.output_size, Path(config.data) / "manifest.json")
        data_record = {"path": str(Path(config.data).resolve()),
                       "manifest_config": tset.manifest.get("config"),
                       "format_version": tset.manifest.get("format_version"),
                       "tiles": {split: {str(s): n for s, n in c.items()} for split, c in tset.counts.items()},
                       "input_size": tset.input_size, "target_size": tset.target_size}
    if max(config.steps) > spec.max_step:
        raise DataError(None, f"--steps include {max(config.steps)} but the model's max step is {spec.max_step}")
    if config.ocr_val_every and max(config.ocr_val_steps) > spec.max_step:
        raise DataError(None, f"--ocr-val-steps include {max(config.ocr_val_steps)} but the model's max step "
                              f"is {spec.max_step}")

    if strategy is not None:
        strategy_name, replicas, tf_version = type(strategy).__name__, strategy.num_replicas_in_sync, tf.__version__
    else:
        strategy_name, replicas, tf_version = "none", 1, None
    policy = None
    if config.mixed_precision:
        policy = "mixed_float16" if gpu else "mixed_bfloat16"
    record = {
        "args": dataclasses.asdict(config),
        "steps": list(config.steps),
        "model": spec.summary(),
        "data": data_record,
        "dtype_policy": policy or "float32",
        "strategy": strategy_name, "replicas": replicas, "backend": backend,
        "versions": {"keras": keras.__version__, **({"tensorflow": tf_version} if tf_version else {})},
    }
    state = _prepare_run_dir(run_dir, record, config)
    _log(config, f"model: {spec.summary()}")
    if config.synthetic:
        echoed = f", each scene echoed {config.synth_echo}x" if config.synth_echo > 1 else ""
        what = f"synthetic stream (seed {config.seed}, {config.synth_workers} worker(s){echoed})"
    else:
        what = f"{tset.count('train')} training / {tset.count('val')} val tiles"
    _log(config, f"data: {what}, steps {config.steps}; strategy {strategy_name} x{replicas}; "
                 f"dtype {policy or 'float32'}" + ("; resuming" if state["resuming"] else ""))

    import contextlib
    with (strategy.scope() if strategy is not None else contextlib.nullcontext()):
        model = build_from_spec(spec, dtype=policy)
        if config.freeze_batchnorm:  # before compile: Keras 3 runs a non-trainable BN in inference mode
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        optimizer = keras.optimizers.Adam(config.lr)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy())
    if config.init and not state["resuming"]:  # a resumed run restores its own weights
        note = _load_init(model, config.init, prepared=not config.synthetic)
        _log(config, f"initial weights from {config.init}" + (f"; {note}" if note else ""))

    sampler = None
    if config.step_weighting:
        sampler = D.StepSampler(config.steps, seed=config.seed)
        last = state["last_row"]
        if state["resuming"] and last:
            key = "val_excess_step" if any(k.startswith("val_excess_step") for k in last) else "val_loss_step"
            sampler.update({s: last[f"{key}{s}"] for s in config.steps if f"{key}{s}" in last})
    stream = None
    if config.synthetic:
        from . import stream as S
        if spec.arch == "pyramid":
            geometry = {"kind": "image", "multiple": spec.size_multiple}
        else:
            geometry = {"kind": "tiles", "in_size": spec.input_size, "out_size": spec.output_size,
                        "tiles_per_image": config.synth_tiles_per_image}
        steps_per_epoch = config.steps_per_epoch or 50
        train_ds = stream = S.synthetic_dataset(
            config.seed, config.steps, config.batch_size, steps_per_epoch, geometry, pre,
            config.synth_workers, None if sampler is None else sampler.weights, _initial_epoch(run_dir),
            nontext=config.nontext_fraction, echo=config.synth_echo, contrast_weight=config.contrast_weight)
        val_ds = S.validation_batches(config.seed, config.steps, config.synth_val_per_step, geometry,
                                      config.val_batch_size or config.batch_size, pre,
                                      config.synth_val_nontext if config.nontext_fraction > 0 else 0)
    else:
        train_ds = D.train_dataset(tset, config.batch_size, spec.output_size, config.shuffle_buffer,
                                   config.seed, config.cycle_length, sampler)
        val_ds = D.val_dataset(tset, config.val_batch_size or config.batch_size, spec.output_size)
        steps_per_epoch = config.steps_per_epoch or D.epoch_steps(tset, config.batch_size)

    ocr_callbacks = []
    if config.ocr_val_every:
        from . import ocr_val
        from .infer import Deblurrer

        # the preprocessing `python -m deblur` finds for RUN/best.keras (deblur.infer.run_preprocess)
        pre_dict = data_record.get("preprocess") or (data_record.get("manifest_config") or {}).get("preprocess")
        deblurrer = Deblurrer(model, PreprocessConfig.from_dict(pre_dict or {}))
        t = time.perf_counter()
        images = ocr_val.ocr_val_images(config.seed, config.ocr_val_steps, config.ocr_val_per_step)
        _log(config, f"OCR validation every {config.ocr_val_every} epoch(s) and at the last: {len(images)} "
                     f"full-size images (steps {config.ocr_val_steps}, {config.ocr_val_per_step} per step, "
                     f"seed {config.seed}) made in {time.perf_counter() - t:.1f}s")
        ocr_callbacks.append(ocr_val.callback_class()(deblurrer, images, config.ocr_val_steps,
                                                      config.ocr_val_every, config.epochs, ocr_scorer,
                                                      config.verbose))
    # best.keras: a NaN (an epoch without OCR validation) must never count as the best, so the
    # maximised monitor starts at -inf (Keras takes any first value when it starts at None)
    threshold = state["best"] if state["best"] is not None else (-math.inf if mode == "max" else None)
    callbacks = [
        StepValidation(val_ds, config.steps, sampler, stream, replicas),
        *ocr_callbacks,
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(1, config.patience // 2), min_lr=1e-6),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=config.monitor, mode=mode,
                                        save_best_only=True, initial_value_threshold=threshold),
        keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        EpochLine(config.epochs, config.steps, config.verbose),
    ]
    import importlib.util
    if backend == "tensorflow" and importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False,
                                                     profile_batch=0))
    elif backend == "tensorflow":
        _log(config, "note: the tensorboard package is not installed: no TensorBoard logs "
                     "(pip install tensorboard to get run_dir/tensorboard)")
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup")))
    if config.stop_after_epoch:
        callbacks.append(StopAfterEpoch(config.stop_after_epoch))

    t0 = time.time()
    D.PIPELINE_ERRORS.clear()
    try:
        if config.synthetic:
            model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, verbose=0)
        else:
            model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                      shuffle=False, verbose=0)
    except Exception:
        if D.PIPELINE_ERRORS:  # a bad shard: its own message, not TensorFlow's wrapper and traceback
            raise D.PIPELINE_ERRORS[0] from None
        raise
    finally:
        if stream is not None:
            stream.source.close()
    rows = read_history_csv(run_dir / "history.csv")
    history = _history_dict(rows)
    from pipelines.common.atomic import write_text_atomic
    write_text_atomic(run_dir / "history.json", json.dumps(history, indent=1))
    _log(config, f"done: {len(rows)} epochs in {time.time() - t0:.0f}s (this session); "
                 f"best val_loss {min(history.get('val_loss', [float('nan')])):.4f}; "
                 f"models {run_dir / 'best.keras'}, {run_dir / 'last.keras'}")
    return history


if __name__ == "__main__":
    sys.exit(main())
