"""Full-image deblurring with a trained model: the API behind `python -m deblur` (the submission CLI).

    from deblur.infer import Deblurrer
    d = Deblurrer.from_file("runs/r1/best.keras")   # or from_file() for the shipped default model
    out = d.deblur(image, step)                      # (H, W) float32 in [0, 1], 1 = white paper
    out = d.deblur(rgb, "auto")                      # colour as the CLI converts it; step estimated

Pipeline (the same stages as training, `pipelines.preprocessing`: `preprocess` / `tiling`):

    full-size blurred image -> preprocess_blurred (1:7, vignetting removed, median channels and,
        if the model has one, the physics channel of the step)
        -> TileGrid at the model's input/output size -> batched predict -> stitch(blend="smooth")
        -> upscale to the input's full shape

"tiled" is the reference path: exactly what the network saw in training (110 x 110 tiles, 52 x 52
valid outputs). For a fully convolutional hdc_deblur model (no coarse pathway) every output pixel
depends only on the input pixels of its own tile, so running a copy of the model with a free input
size (`deblur.model.rebuild(model, input_size=None)`) once on the whole image, padded by the tile
margin exactly as `TileGrid` pads it, gives the same result (to float round-off; tested) with
about half the convolution work, because overlapping tiles recompute their shared borders. That
is the "full" path; method="auto" (the default) uses it when it applies and "tiled" otherwise.

TensorFlow / Keras are imported lazily, inside functions: `import deblur.infer` stays light.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from pipelines.common.errors import DataError
from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_blurred, upscale
from pipelines.preprocessing.tiling import TileGrid
from pipelines.reading.images import LUMA, to_unit_gray
from pipelines.reading.physics import N_STEPS, check_step

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.keras"
METHODS = ("auto", "tiled", "full")
# Above this many padded input pixels the whole-image path falls back to tiles (memory: the
# activations of a 32-channel layer cost 128 bytes per pixel). HDC images at 1:7 are ~0.1 Mpx.
FULL_MAX_PIXELS = 4_000_000
MIN_SIDE_SMALL = 8  # px per side at the preprocessing scale: smaller leaves no background to fit
# Test-time flip averaging: the blur disc is symmetric, so deblurring a mirrored image and mirroring
# the result back is as valid as deblurring it directly; the mean of these views averages errors.
FLIP_VIEWS = {1: ((False, False),), 2: ((False, False), (False, True)),
              4: ((False, False), (False, True), (True, False), (True, True))}  # (up-down, left-right)


def card_path(model_path) -> Path:
    """The model card beside a model file: same stem, `.json`."""
    return Path(model_path).with_suffix(".json")


def run_preprocess(model_path) -> dict | None:
    """The PreprocessConfig dict of the training run a checkpoint sits in (RUN/best.keras ->
    RUN/config.json: the stream's settings, or the prepared set's manifest), None if not found."""
    config_file = Path(model_path).parent / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8")).get("data") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return data.get("preprocess") or (data.get("manifest_config") or {}).get("preprocess")


def model_preprocess(model_path, card: dict | None = None) -> PreprocessConfig:
    """The PreprocessConfig a model was trained with: its card's
    "preprocess" (`card`, else read from beside the model), else, for a checkpoint inside its run
    directory, the run's config.json; defaults if neither. A bad record raises TypeError or
    ValueError with `.source` set to the file."""
    card = read_card(model_path) if card is None else card
    pre_dict, source = card.get("preprocess"), card_path(model_path)
    if not pre_dict:  # a checkpoint inside its run directory: the run's own preprocessing
        pre_dict, source = run_preprocess(model_path), Path(model_path).parent / "config.json"
    try:
        return PreprocessConfig.from_dict(pre_dict or {})
    except (TypeError, ValueError) as e:
        e.source = source
        raise


def trained_steps(card: dict, model_path=None) -> list[int] | None:
    """The blur steps a model was trained on: its card's "steps" (or, for older cards, the steps of
    its training tiles), else its run directory's config.json; None if nothing says."""
    card = card or {}
    steps = card.get("steps")
    if not steps:
        tiles = ((card.get("data") or {}).get("tiles") or {}).get("train")
        steps = [k for k in tiles if str(k).isdigit()] if isinstance(tiles, dict) else None
    if not steps and model_path is not None and not card:
        try:
            steps = json.loads((Path(model_path).parent / "config.json").read_text(encoding="utf-8")).get("steps")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            steps = None
    try:
        return sorted({int(s) for s in steps}) if steps else None
    except (TypeError, ValueError):
        return None


def read_card(model_path) -> dict:
    """The model card (a JSON object) beside `model_path`, or {} if there is none."""
    from .model import ModelLoadError

    path = card_path(model_path)
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(path, f"cannot read the model card ({e})") from None
    if not isinstance(card, dict):
        raise ModelLoadError(path, "the model card must be a JSON object")
    return card


def load_specialists(path: Path, card: dict, general, batch_size: int, method: str) -> dict:
    """{step: Deblurrer} of the card's "specialists": [{"model_file": NAME, "steps": [...]}, ...],
    models beside `path` trained for some steps that `general` (the card's own model) then hands
    over. ModelLoadError naming the card if an entry is malformed, routes a step twice, or its
    model was not trained on its steps or runs at another scale than `general`."""
    from .model import ModelLoadError

    entries, routed = card.get("specialists") or [], {}
    if not isinstance(entries, list):
        raise ModelLoadError(card_path(path), '"specialists" must be a list of {"model_file", "steps"}')
    for entry in entries:
        try:
            name, steps = entry["model_file"], sorted({check_step(s) for s in entry["steps"]})
            if not steps:
                raise ValueError("no steps")
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(card_path(path), f"bad \"specialists\" entry {entry!r}: {e}") from None
        sub = Deblurrer.from_file(path.parent / name, batch_size=batch_size, method=method)
        if sub.specialists:
            raise ModelLoadError(card_path(path), f"specialist {name} routes steps itself; one level only")
        if sub.trained_steps is not None and not set(steps) <= set(sub.trained_steps):
            raise ModelLoadError(card_path(path), f"specialist {name} was trained on steps {sub.trained_steps}, "
                                                  f"not on all of {steps}")
        if sub.preprocess.factor != general.preprocess.factor or sub.max_step < max(steps):
            raise ModelLoadError(card_path(path), f"specialist {name} works at 1:{sub.preprocess.factor:g} "
                                                  f"up to step {sub.max_step}; it cannot take steps {steps}")
        for s in steps:
            if s in routed:
                raise ModelLoadError(card_path(path), f"step {s} is routed to two specialists")
            routed[s] = sub
    return routed


def card_flips(path, card: dict) -> int:
    """The card's "inference": {"flips": N} (1 if absent); ModelLoadError naming the card if malformed."""
    from .model import ModelLoadError

    inference = card.get("inference") or {}
    flips = inference.get("flips", 1) if isinstance(inference, dict) else None
    if flips not in FLIP_VIEWS or isinstance(flips, bool):
        raise ModelLoadError(card_path(path), f'"inference" must be {{"flips": 1, 2 or 4}}, got {inference!r}')
    return flips


def _mirror(a: np.ndarray, view: tuple[bool, bool]) -> np.ndarray:
    """`a` flipped up-down and/or left-right (its own inverse)."""
    up_down, left_right = view
    return a[::-1 if up_down else 1, ::-1 if left_right else 1]


def as_unit_image(image) -> np.ndarray:
    """An image as (h, w) float32 in [0, 1], converted as `pipelines.reading.images.load_image`
    converts files: uint16 is divided by 65535, uint8 by 255, floats must already be in [0, 1];
    gray + alpha, RGB and RGBA (h, w, 2|3|4) become gray with the ITU-R 601-2 luma weights, alpha
    ignored."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        if a.dtype in (np.uint8, np.uint16):
            return to_unit_gray(a)
        planes = [as_unit_image(a[..., i]) for i in range(1 if a.shape[-1] <= 2 else 3)]  # dtype, range
        return planes[0] if len(planes) == 1 else (np.stack(planes, axis=-1) @ LUMA).astype(np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale (h, w) or a colour (h, w, 3|4) image, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected a uint8 or uint16 image or a float image in [0, 1], got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError("image contains NaN or infinite values")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"a float image must be in [0, 1], got values in [{a.min():.4g}, {a.max():.4g}] "
                         "(pass uint8 / uint16 data as such, or divide it by 255 / 65535)")
    return a


def _tile_geometry(model) -> tuple[int, int, int]:
    """(input tile size, output tile size, input channels) from a Keras model's shapes."""
    image_in = None
    for t in model.inputs:
        name = getattr(t, "name", "")
        if name == "image" or name.startswith("image"):
            image_in = t
    if image_in is None:
        raise ValueError(f"model {model.name!r} has no input named 'image' "
                         "(expected inputs {'image': (b, n, n, C), 'step': (b, 1)})")
    shape = tuple(image_in.shape)
    out = tuple(model.outputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
        raise ValueError(f"model {model.name!r} needs a fixed square input tile, has {shape}")
    if len(out) != 4 or out[1] is None or out[1] != out[2] or out[3] != 1:
        raise ValueError(f"model {model.name!r} must output (b, n, n, 1) tiles, has {out}")
    return int(shape[1]), int(out[1]), int(shape[3])


class Deblurrer:
    """A trained model with its preprocessing: blurred full-size image + step -> deblurred image.

    `model`: an hdc_deblur Keras model (or any Keras model with inputs {"image": (b, n, n, C),
    "step": (b, 1)} and output (b, m, m, 1) in [0, 1] that is the centre crop of its input);
    `preprocess`: the PreprocessConfig the model was trained with; `batch_size`: tiles per
    predict call; `method`: "auto", "tiled" or "full" (module docstring); `flips`: 1, 2 or 4 views
    averaged (pyramid models: the image, + mirrored left-right, + upside down and both; the card's
    "inference": {"flips": N}).
    After every call, `timings` holds the seconds of its stages: preprocess, predict, stitch.
    """

    def __init__(self, model, preprocess: PreprocessConfig | None = None, batch_size: int = 16,
                 method: str = "auto", flips: int = 1):
        if preprocess is None:
            preprocess = PreprocessConfig()
        elif isinstance(preprocess, dict):
            preprocess = PreprocessConfig.from_dict(preprocess)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.model = model
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.method = method
        if flips not in FLIP_VIEWS:
            raise ValueError(f"flips must be one of {sorted(FLIP_VIEWS)}, got {flips!r}")
        self.flips = flips
        self._spec = self._hdc_spec(model)
        self.max_step = self._spec.max_step if self._spec is not None else N_STEPS - 1
        self._full_model = None
        self.timings: dict[str, float] = {}
        self.last_method: str | None = None
        self.source: Path | None = None
        self.card: dict = {}
        self.trained_steps: list[int] | None = None  # from the card (from_file); None = not known
        self.last_estimate = None  # the deblur.estimate.Estimate of the last call with step "auto"
        self.specialists: dict[int, Deblurrer] = {}  # step -> the model the card routes it to
        if self._spec is not None and self._spec.arch == "pyramid":
            # fully convolutional, same padding: always the whole image, padded to the size multiple
            if method == "tiled":
                raise ValueError("pyramid models run on the whole image (method 'auto' or 'full')")
            if self._spec.channels != preprocess.channels:
                raise ValueError(f"model {model.name!r} takes {self._spec.channels} input channels but the "
                                 f"preprocessing gives {preprocess.channels}")
            self.in_size = self.out_size = None
            return
        if flips != 1:
            raise ValueError("flip averaging (flips > 1) needs a pyramid model")
        self.in_size, self.out_size, channels = _tile_geometry(model)
        if channels != preprocess.channels:
            raise ValueError(f"model {model.name!r} takes {channels} input channels but the preprocessing "
                             f"gives {preprocess.channels} (median widths {preprocess.median_widths}); "
                             "is the model card missing or wrong?")
        if (self.in_size - self.out_size) % 2:
            raise ValueError(f"model {model.name!r}: input {self.in_size} and output {self.out_size} "
                             "differ by an odd number of pixels (the output must be the centre crop)")

    @staticmethod
    def _hdc_spec(model):
        from .model import spec_of

        try:
            return spec_of(model)
        except ValueError:  # not an hdc_deblur model (no StepInput layer): tiled path only
            return None

    @classmethod
    def from_file(cls, path=None, batch_size: int = 16, method: str = "auto") -> "Deblurrer":
        """Load a saved model (.keras) and its card (same stem, .json: "preprocess" holds the
        PreprocessConfig it was trained with; without a card, a checkpoint's run directory's
        config.json; defaults if neither). path None: the shipped default
        model `deblur/models/default.keras`. Raises ModelLoadError naming the file."""
        from .model import ModelLoadError, load_model

        if path is None:
            path = DEFAULT_MODEL
            if not path.is_file():
                raise ModelLoadError(path, "no default model is shipped yet; pass --model PATH")
        path = Path(path)
        model = load_model(path)
        card = read_card(path)
        try:
            pre = model_preprocess(path, card)
        except (TypeError, ValueError) as e:
            raise ModelLoadError(e.source, f"bad \"preprocess\" settings: {e}") from None
        flips = card_flips(path, card)
        try:
            d = cls(model, pre, batch_size=batch_size, method=method, flips=flips)
        except ValueError as e:
            raise ModelLoadError(path, str(e)) from None
        d.source, d.card, d.trained_steps = path, card, trained_steps(card, path)
        d.specialists = load_specialists(path, card, d, batch_size, method)
        return d

    def for_step(self, step: int) -> "Deblurrer":
        """The Deblurrer that deblurs this step: the specialist the card routes it to, else self."""
        return self.specialists.get(int(step), self)

    # ------------------------------------------------------------------ checks
    def check_step(self, step) -> int:
        """The step as an int; ValueError if it is not 0-19 or beyond what the model was trained for."""
        step = check_step(step)
        if step > self.max_step:
            raise ValueError(f"the model was built for blur steps 0-{self.max_step} and cannot deblur "
                             f"step {step}")
        return step

    def outside_training(self, step) -> bool:
        """Whether the card says the model that deblurs this step was trained on other steps."""
        d = self.for_step(step)
        return d.trained_steps is not None and int(step) not in d.trained_steps

    def resolve_step(self, image, step) -> int:
        """The step to deblur `image` (float [0, 1]) at: `step` checked, or for "auto" the step that
        `deblur.estimate.estimate` finds in the image (kept in `last_estimate`)."""
        if isinstance(step, str) and step.strip().lower() == "auto":
            from .estimate import estimate

            self.last_estimate = estimate(image)
            step = self.last_estimate.step
            if step > self.max_step:
                raise ValueError(f"estimated blur step {step} (confidence {self.last_estimate.confidence:.2f}) "
                                 f"is beyond the model's steps 0-{self.max_step}")
        return self.check_step(step)
    def check_size(self, shape) -> None:
        """DataError (a ValueError) naming the image's size if it is too small to deblur."""
        need = int(math.ceil(MIN_SIDE_SMALL * self.preprocess.factor))
        if min(shape[:2]) < need:
            raise DataError(None, f"image of {shape[1]} x {shape[0]} px (w x h) is too small to deblur: "
                                  f"at least {need} px per side ({MIN_SIDE_SMALL} at 1:{self.preprocess.factor:g})")

    # ------------------------------------------------------------------ stages
    def _use_full(self, shape) -> bool:
        if self.method == "tiled" or self._spec is None or self._spec.coarse_pathway:
            ok = False
        else:
            h, w = shape[:2]
            m = (self.in_size - self.out_size) // 2
            ok = min(h, w) >= self.out_size and (h + 2 * m) * (w + 2 * m) <= FULL_MAX_PIXELS
        if self.method == "full" and not ok:
            raise ValueError("method 'full' needs an hdc_deblur model without the coarse pathway and an "
                             f"image of at least {self.out_size} px per side at 1:{self.preprocess.factor:g}")
        return ok

    def _full(self):
        if self._full_model is None:
            from .model import rebuild

            policy = getattr(getattr(self.model, "dtype_policy", None), "name", None) or "float32"
            self._full_model = rebuild(self.model, input_size=None, dtype=policy)
        return self._full_model

    def sync_weights(self) -> None:
        """After `model`'s weights changed in memory (a training run validating its current
        weights, deblur.ocr_val), copy them into the whole-image copy the "full" and pyramid paths
        run; the tiled path uses `model` itself. Without this, that copy keeps the weights of the
        first call."""
        if self._full_model is not None:
            self._full_model.set_weights(self.model.get_weights())

    def predict_tiles(self, tiles: np.ndarray, step: int) -> np.ndarray:
        """(n, in, in, C) tiles -> (n, out, out) model outputs, `batch_size` tiles per
        predict_on_batch call (measured faster on CPU than model.predict or eager calls)."""
        outs = []
        for i in range(0, len(tiles), self.batch_size):
            batch = tiles[i:i + self.batch_size]
            steps = np.full((len(batch), 1), step, dtype=np.float32)
            outs.append(np.asarray(self.model.predict_on_batch({"image": batch, "step": steps})))
        return np.concatenate(outs)[..., 0].astype(np.float32, copy=False)

    def predict_small(self, x: np.ndarray, step: int) -> np.ndarray:
        """Preprocessed (h, w, C) input -> (h, w) float32 network output in [0, 1].
        Sets timings["predict"] (model calls) and timings["stitch"] (tiling and stitching)."""
        step = self.check_step(step)
        t0 = time.perf_counter()
        if self.in_size is None:
            return self._predict_pyramid(x, step, t0)
        grid = TileGrid.for_image(x.shape, self.in_size, self.out_size)
        if self._use_full(x.shape):
            self.last_method = "full"
            m = grid.margin  # pad as TileGrid.extract pads (h, w >= out_size: no canvas growth)
            p = np.pad(x, ((m, m), (m, m), (0, 0)), mode=grid.pad_mode)[None].astype(np.float32, copy=False)
            t1 = time.perf_counter()
            out = self._full().predict_on_batch({"image": p, "step": np.array([[step]], dtype=np.float32)})
            small = np.asarray(out, dtype=np.float32)[0, ..., 0]
            t2 = time.perf_counter()
        else:
            self.last_method = "tiled"
            tiles = grid.extract(x)
            t1 = time.perf_counter()
            outputs = self.predict_tiles(tiles, step)
            t2 = time.perf_counter()
            small = grid.stitch(outputs, blend="smooth")
        self.timings["predict"] = t2 - t1
        self.timings["stitch"] = (t1 - t0) + (time.perf_counter() - t2)
        return small

    def _predict_pyramid(self, x: np.ndarray, step: int, t0: float) -> np.ndarray:
        """Whole image, zero-padded (= background after vignetting division) at the bottom and right
        to the model's size multiple, cropped back; with `flips` > 1, the mean over mirrored views
        (one batch), each mirrored back."""
        self.last_method = "full"
        m = self._spec.size_multiple
        h, w = x.shape[:2]
        views = FLIP_VIEWS[self.flips]
        p = np.stack([np.pad(_mirror(x, v), ((0, -h % m), (0, -w % m), (0, 0))) for v in views])
        p = p.astype(np.float32, copy=False)
        t1 = time.perf_counter()
        steps = np.full((len(views), 1), step, dtype=np.float32)
        out = np.asarray(self._full().predict_on_batch({"image": p, "step": steps}), dtype=np.float32)
        t2 = time.perf_counter()
        small = np.mean([_mirror(o[:h, :w, 0], v) for o, v in zip(out, views)], axis=0, dtype=np.float32)
        self.timings["predict"] = t2 - t1
        self.timings["stitch"] = (t1 - t0) + (time.perf_counter() - t2)
        return small

    def deblur_small(self, image, step, flat=None) -> np.ndarray:
        """Blurred full-size image (as for `deblur`) and step (0-19 or "auto") -> (h, w) float32 result
        at the preprocessing scale (1:7 by default), 1 = white."""
        return self._deblur_unit_small(as_unit_image(image), step, flat)

    def _deblur_unit_small(self, a: np.ndarray, step, flat=None) -> np.ndarray:
        # `a` is already checked by as_unit_image
        step = self.resolve_step(a, step)
        self.check_size(a.shape)
        d = self.for_step(step)
        self.timings = d.timings = {}
        t0 = time.perf_counter()
        x = preprocess_blurred(a, d.preprocess, step=step, flat=flat)
        self.timings["preprocess"] = time.perf_counter() - t0
        small = d.predict_small(x, step)
        self.last_method = d.last_method
        return small

    def deblur(self, image, step, flat=None) -> np.ndarray:
        """Blurred full-size image -> deblurred (h, w) float32 image in [0, 1], 1 = white paper.
        `image`: gray (h, w) or colour (h, w, 3|4), uint8, uint16 or float in [0, 1] (an array, or
        anything np.asarray takes, e.g. a PIL image), converted as the command line converts files
        (`as_unit_image`). `step`: the blur step 0-19, or "auto" to
        estimate it from the image (`last_estimate` holds the estimate). `flat`: the blurred camera's
        illumination at the preprocessing scale, measured on text images of the same step
        (`pipelines.preprocessing.flatfield.FlatFields`; `python -m deblur` uses the image's folder),
        taken for a photo whose border is scene, not paper (`preprocess.choose_background`); None:
        the image's own border fit. `timings["stitch"]` includes the up-scaling."""
        a = as_unit_image(image)
        small = self._deblur_unit_small(a, step, flat)
        t0 = time.perf_counter()
        out = np.clip(upscale(small, a.shape, factor=self.preprocess.factor), 0.0, 1.0)
        self.timings["stitch"] += time.perf_counter() - t0
        return out.astype(np.float32, copy=False)
