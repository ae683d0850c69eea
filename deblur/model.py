"""The step-conditioned highway deblurring network (design: ../shared/hdc2021/design-blog-step-conditioned-highway.txt).

    image (in, in, C) ---- preprocessing: 5 valid 3x3 convs (ELU + BN, last tanh), each gated by
    step  (1,) raw step    sigmoid(Dense(step)) per channel
                      ---- refinement: ONE shared valid Conv2D(dim, w, tanh) applied n times, highway
                           style x = crop(x) * (1 - d_i) + shared(x) * d_i, d_i = sigmoid(Dense_i(step))
                      ---- [optional coarse pathway: AvgPool(2), 2 gated convs, its own highway
                           refinement at half resolution, UpSampling(2), cropped, concatenated]
                      ---- postprocessing: 1x1 convs (ELU + BN) -> Conv(1, 1, sigmoid) (float32)

Defaults (dim = subdim = 32, 12 refinements, shared width 5, 110 px input, 5 channels):
67,185 parameters (66,849 trainable), output 52 x 52, receptive field 59 px.

Geometry: every conv is "valid", so the output shrinks by (receptive field - 1) for the main
pathway; output pixel (i, j) is the input pixel (i + offset, j + offset) with offset = (in - out) / 2
(see `ModelSpec.offset`). Inputs are named "image" (float32, the prepared tile) and "step"
(float32, shape (batch, 1), the raw blur step number 0..max_step; the model scales it by
`step_scale` internally).

Larger receptive fields: each extra refinement adds (w - 1) px of receptive field for
2 * w^2 * dim^2 FLOPs per output pixel (and costs w-1 px of output); `describe(spec)` gives the
params/FLOPs/receptive field of any configuration, `python -m deblur.model` prints a table.
"""
from __future__ import annotations

import dataclasses
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.common.errors import DataError

from .layers import BilinearUpsample2x, HighwayRefinement, StepGate, StepInput  # noqa: F401  (registers the layers)

PRE_WIDTH = 3      # preprocessing kernel width
N_PRE = 5          # preprocessing convolutions
COARSE_CONVS = 2   # 3x3 convs of the coarse pathway before its refinement
ARCHS = ("highway", "pyramid")
POST_LAST = 8      # channels of the second postprocessing conv


class ModelLoadError(DataError):
    """A model file that is missing or is not a saved hdc_deblur model (message names the file)."""


def _root(x: float, eps: float = 1e-9) -> int:
    return int(x + eps)  # int() like the design, robust to 31.9999999 from float powers


@dataclass(frozen=True)
class ModelSpec:
    """Hyperparameters of the network and the geometry that follows from them."""
    dim: int = 32
    subdim: int = 32
    refinements: int = 12
    shared_width: int = 5
    input_size: int | None = 110
    channels: int = 5
    max_step: int = 19
    step_scale: float = 0.1
    coarse_pathway: bool = False
    coarse_refinements: int = 4
    arch: str = "highway"                       # "highway" (the design, valid convs) or "pyramid"
    pyramid_dims: tuple = (16, 32, 48, 64)      # channels at 1:7, 1:14, 1:28, 1:56
    pyramid_refinements: tuple = (2, 2, 3, 4)   # shared-refinement iterations per level

    def __post_init__(self):
        object.__setattr__(self, "pyramid_dims", tuple(int(v) for v in self.pyramid_dims))
        object.__setattr__(self, "pyramid_refinements", tuple(int(v) for v in self.pyramid_refinements))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "pyramid":
            self._check_pyramid()
            return
        for name in ("dim", "subdim", "channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.refinements < 0 or self.coarse_refinements < 0:
            raise ValueError("refinement counts must be >= 0")
        if self.shared_width < 1 or self.shared_width % 2 == 0:
            raise ValueError(f"shared_width must be odd and positive, got {self.shared_width}")
        if not 0 <= self.max_step:
            raise ValueError(f"max_step must be >= 0, got {self.max_step}")
        if self.coarse_pathway and self.input_size is None:
            raise ValueError("the coarse pathway needs a fixed input_size")
        if self.input_size is not None and self.output_size < 1:
            raise ValueError(f"input {self.input_size} px is too small for this model "
                             f"(needs at least {self.min_input_size} px)")

    def _check_pyramid(self):
        if len(self.pyramid_dims) < 2 or len(self.pyramid_dims) != len(self.pyramid_refinements):
            raise ValueError("pyramid_dims and pyramid_refinements need one entry per level (>= 2 levels), "
                             f"got {self.pyramid_dims} and {self.pyramid_refinements}")
        if min(self.pyramid_dims) < 1 or min(self.pyramid_refinements) < 0:
            raise ValueError("pyramid dims must be >= 1 and refinements >= 0")
        if self.shared_width < 1 or self.shared_width % 2 == 0:
            raise ValueError(f"shared_width must be odd and positive, got {self.shared_width}")
        if self.input_size is not None and self.input_size % self.size_multiple:
            raise ValueError(f"pyramid input size must be a multiple of {self.size_multiple}, got {self.input_size}")

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (1 for the valid-conv design)."""
        return 2 ** (len(self.pyramid_dims) - 1) if self.arch == "pyramid" else 1

    # ---- channel widths -------------------------------------------------------------------
    @property
    def pre_widths(self) -> tuple[int, ...]:
        d, s = self.dim, self.subdim
        return (s, _root((d * s ** 3) ** 0.25), _root((d ** 2 * s ** 2) ** 0.25),
                _root((d ** 3 * s) ** 0.25), d)

    @property
    def post_widths(self) -> tuple[int, ...]:
        return (_root(math.sqrt(self.subdim * self.dim)), POST_LAST, 1)

    # ---- geometry --------------------------------------------------------------------------
    @property
    def main_shrink(self) -> int:
        return N_PRE * (PRE_WIDTH - 1) + self.refinements * (self.shared_width - 1)

    @property
    def coarse_shrink(self) -> int:
        """Shrink of the coarse pathway in half-resolution pixels."""
        return COARSE_CONVS * (PRE_WIDTH - 1) + self.coarse_refinements * (self.shared_width - 1)

    def _windows(self, n: int):
        """(offset, size) of the main and (optionally) coarse outputs in input pixels, and the common window."""
        if self.arch == "pyramid":  # same padding: the output is the input's size
            return (0, n), None, (0, n)
        main = (self.main_shrink // 2, n - self.main_shrink)
        if not self.coarse_pathway:
            return main, None, main
        sc = self.coarse_shrink
        coarse = (sc, 2 * (n // 2 - sc))
        start = max(main[0], coarse[0])
        end = min(main[0] + main[1], coarse[0] + coarse[1])
        return main, coarse, (start, end - start)

    def output_size_for(self, n: int) -> int:
        return self._windows(int(n))[2][1]

    def offset_for(self, n: int) -> int:
        """Input pixel index that output pixel 0 corresponds to."""
        return self._windows(int(n))[2][0]

    @property
    def output_size(self) -> int | None:
        return None if self.input_size is None else self.output_size_for(self.input_size)

    @property
    def offset(self) -> int | None:
        return None if self.input_size is None else self.offset_for(self.input_size)

    @property
    def min_input_size(self) -> int:
        if self.arch == "pyramid":
            return self.size_multiple
        n = self.main_shrink + 1
        while self.output_size_for(n) < 1:
            n += 1
        return n

    @property
    def receptive_field(self) -> int:
        """Width (input pixels) of the input window that one output pixel depends on."""
        if self.arch == "pyramid":
            return _pyramid_receptive_field(self)
        rf = 1 + self.main_shrink
        if self.coarse_pathway:
            rf = max(rf, 2 * (1 + self.coarse_shrink))
        return rf

    def crops(self):
        """((left, right) crop of the main output, (left, right) crop of the upsampled coarse output)."""
        main, coarse, (start, size) = self._windows(self.input_size)
        end = start + size
        cm = (start - main[0], main[0] + main[1] - end)
        cc = None if coarse is None else (start - coarse[0], coarse[0] + coarse[1] - end)
        return cm, cc

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists, so a saved and a fresh spec compare equal)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})

    def summary(self) -> dict:
        """The spec plus its derived geometry (what config.json and the inference side need)."""
        return {**self.to_dict(), "output_size": self.output_size, "offset": self.offset,
                "receptive_field": self.receptive_field}


def model_geometry(dim=32, subdim=32, refinements=12, shared_width=5, input_size=110, channels=5,
                   max_step=19, **kwargs) -> ModelSpec:
    """The ModelSpec for these hyperparameters (output_size, offset, receptive_field, ...)."""
    return ModelSpec(dim=dim, subdim=subdim, refinements=refinements, shared_width=shared_width,
                     input_size=input_size, channels=channels, max_step=max_step, **kwargs)


# ---- construction --------------------------------------------------------------------------

def build_from_spec(spec: ModelSpec, dtype=None, name: str = "hdc_deblur"):
    """Build the Keras model. `dtype`: a dtype policy name for all layers (e.g. "mixed_bfloat16");
    None uses the global policy. The output conv is always float32."""
    import keras
    from keras import layers as L

    kw = {} if dtype is None else {"dtype": dtype}
    image = keras.Input((spec.input_size, spec.input_size, spec.channels), name="image")
    step_raw = keras.Input((1,), name="step")
    step = StepInput(spec.step_scale, spec.max_step, spec.to_dict(), name="step_scale", **kw)(step_raw)

    def conv(x, ch, k, act, bn, tag, padding="valid"):
        x = L.Conv2D(ch, k, activation=act, padding=padding, name=f"{tag}_conv", **kw)(x)
        return L.BatchNormalization(name=f"{tag}_bn", **kw)(x) if bn else x

    def gate(x, tag):
        return StepGate(name=f"{tag}_gate", **kw)([x, step])

    if spec.arch == "pyramid":
        x = _pyramid_body(spec, image, step, conv, gate, kw)
        p1, p2, _ = spec.post_widths
        x = conv(x, p1, 1, "elu", True, "post1")
        x = conv(x, p2, 1, "elu", True, "post2")
        out = L.Conv2D(1, 1, activation="sigmoid", name="output", dtype="float32")(x)
        return keras.Model({"image": image, "step": step_raw}, out, name=name)

    # preprocessing
    x = image
    widths = spec.pre_widths
    for i, ch in enumerate(widths, 1):
        last = i == len(widths)
        x = conv(x, ch, PRE_WIDTH, "tanh" if last else "elu", not last, f"pre{i}")
        x = gate(x, f"pre{i}")
    # refinement
    x = HighwayRefinement(spec.refinements, spec.shared_width, name="refine", **kw)([x, step])

    if spec.coarse_pathway:
        crop_main, crop_coarse = spec.crops()
        c = L.AveragePooling2D(2, name="coarse_pool", **kw)(image)
        c = gate(conv(c, spec.subdim, PRE_WIDTH, "elu", True, "coarse1"), "coarse1")
        c = gate(conv(c, spec.dim, PRE_WIDTH, "tanh", False, "coarse2"), "coarse2")
        c = HighwayRefinement(spec.coarse_refinements, spec.shared_width, name="coarse_refine",
                              **kw)([c, step])
        c = L.UpSampling2D(2, name="coarse_up", **kw)(c)
        if any(crop_coarse):
            c = L.Cropping2D((crop_coarse, crop_coarse), name="coarse_crop", **kw)(c)
        if any(crop_main):
            x = L.Cropping2D((crop_main, crop_main), name="main_crop", **kw)(x)
        x = L.Concatenate(name="merge", **kw)([x, c])

    # postprocessing
    p1, p2, _ = spec.post_widths
    x = conv(x, p1, 1, "elu", True, "post1")
    x = conv(x, p2, 1, "elu", True, "post2")
    out = L.Conv2D(1, 1, activation="sigmoid", name="output", dtype="float32")(x)
    return keras.Model({"image": image, "step": step_raw}, out, name=name)


def build_model(dim=32, subdim=32, refinements=12, shared_width=5, input_size=110, channels=5,
                max_step=19, *, step_scale=0.1, coarse_pathway=False, coarse_refinements=4,
                dtype=None, name="hdc_deblur"):
    """Build the network; inputs {"image": (in, in, channels), "step": (1,)} -> (out, out, 1) in [0, 1]."""
    spec = ModelSpec(dim=dim, subdim=subdim, refinements=refinements, shared_width=shared_width,
                     input_size=input_size, channels=channels, max_step=max_step,
                     step_scale=step_scale, coarse_pathway=coarse_pathway,
                     coarse_refinements=coarse_refinements)
    return build_from_spec(spec, dtype=dtype, name=name)


def _pyramid_body(spec: ModelSpec, image, step, conv, gate, kw):
    """Encoder 1:7 -> 1:56 (average pooling, a gated conv and the level's shared highway refinement),
    decoder back (bilinear up-sampling + a learned gated conv, skip concatenation, a gated merge
    conv and the SAME level's refinement again). All convs use same padding: zero = background."""
    from keras import layers as L

    dims, refs, n = spec.pyramid_dims, spec.pyramid_refinements, len(spec.pyramid_dims)
    refine = [HighwayRefinement(refs[lvl], spec.shared_width, padding="same", name=f"refine{lvl}", **kw)
              for lvl in range(n)]
    x = gate(conv(image, dims[0], PRE_WIDTH, "elu", True, "pre1", "same"), "pre1")
    x = gate(conv(x, dims[0], PRE_WIDTH, "tanh", False, "pre2", "same"), "pre2")
    skips = [x]
    for lvl in range(1, n):
        x = L.AveragePooling2D(2, name=f"down{lvl}_pool", **kw)(x)
        x = gate(conv(x, dims[lvl], PRE_WIDTH, "tanh", False, f"down{lvl}", "same"), f"down{lvl}")
        x = refine[lvl]([x, step])
        skips.append(x)
    for lvl in range(n - 2, -1, -1):
        u = BilinearUpsample2x(name=f"up{lvl}_resize", **kw)(x)
        u = gate(conv(u, dims[lvl], PRE_WIDTH, "elu", True, f"up{lvl}", "same"), f"up{lvl}")
        x = L.Concatenate(name=f"skip{lvl}", **kw)([u, skips[lvl]])
        x = gate(conv(x, dims[lvl], PRE_WIDTH, "tanh", False, f"merge{lvl}", "same"), f"merge{lvl}")
        x = refine[lvl]([x, step])
    return x


def _pyramid_receptive_field(spec: ModelSpec) -> int:
    """Theoretical receptive field (1:7 px) along the deepest path: encoder to the coarsest level
    and back (each k x k conv adds (k - 1) x the level's stride, pooling and bilinear up-sampling
    one coarse pixel each)."""
    w, refs, n = spec.shared_width, spec.pyramid_refinements, len(spec.pyramid_dims)
    rf = 1 + 2 * (PRE_WIDTH - 1)
    for lvl in range(1, n):
        s = 2 ** lvl
        rf += s // 2 + (PRE_WIDTH - 1) * s + refs[lvl] * (w - 1) * s
    for lvl in range(n - 2, -1, -1):
        s = 2 ** lvl
        rf += 2 * s + 2 * (PRE_WIDTH - 1) * s + refs[lvl] * (w - 1) * s
    return int(rf)


def _describe_pyramid(spec: ModelSpec, n: int) -> dict:
    """describe() of a pyramid model on an n x n input (FLOPs as 2 * MACs of the convolutions)."""
    params = non_trainable = 0
    flops = 0.0
    dims, refs, w = spec.pyramid_dims, spec.pyramid_refinements, spec.shared_width

    def conv(k, cin, cout, px, bn=False):
        nonlocal params, non_trainable, flops
        p, f = _conv(k, cin, cout, px)
        params += p + 2 * cout + (4 * cout if bn else 0)   # + gate (+ BN)
        non_trainable += 2 * cout if bn else 0
        flops += f

    px = [n * n / 4 ** lvl for lvl in range(len(dims))]
    conv(PRE_WIDTH, spec.channels, dims[0], px[0], True)
    conv(PRE_WIDTH, dims[0], dims[0], px[0])
    for lvl in range(len(dims)):
        params += w * w * dims[lvl] ** 2 + dims[lvl] + 2 * refs[lvl] * dims[lvl]
        uses = 1 if lvl in (0, len(dims) - 1) else 2
        flops += uses * refs[lvl] * _conv(w, dims[lvl], dims[lvl], px[lvl])[1]
        if lvl:
            conv(PRE_WIDTH, dims[lvl - 1], dims[lvl], px[lvl])
            conv(PRE_WIDTH, dims[lvl], dims[lvl - 1], px[lvl - 1], True)
            conv(PRE_WIDTH, 2 * dims[lvl - 1], dims[lvl - 1], px[lvl - 1])
    cin = dims[0]
    for i, ch in enumerate(spec.post_widths):
        p, f = _conv(1, cin, ch, px[0])
        params += p + (4 * ch if i < 2 else 0)
        non_trainable += 2 * ch if i < 2 else 0
        flops += f
        cin = ch
    return {"input_size": n, "output_size": n, "receptive_field": spec.receptive_field,
            "params": int(params), "trainable_params": int(params - non_trainable),
            "non_trainable_params": int(non_trainable), "forward_flops": flops, "train_flops": 3 * flops,
            "forward_flops_per_output_px": flops / (n * n)}


# ---- reading a built / loaded model ----------------------------------------------------------

def _step_input_layer(model):
    for layer in model.layers:
        if isinstance(layer, StepInput):
            return layer
    raise ValueError(f"model {model.name!r} is not an hdc_deblur model (no StepInput layer)")


def spec_of(model) -> ModelSpec:
    """The ModelSpec of a built or loaded model (input size read from the model's input)."""
    layer = _step_input_layer(model)
    spec = ModelSpec.from_dict(layer.spec)
    size = model.get_layer("image").batch_shape[1] if "image" in [l.name for l in model.layers] else spec.input_size
    return dataclasses.replace(spec, input_size=size, max_step=layer.max_step, step_scale=layer.scale)


def output_size_of(model, input_size: int | None = None) -> int | None:
    """Output tile size of a model (for a fully convolutional model: pass the input size)."""
    spec = spec_of(model)
    if input_size is not None:
        return spec.output_size_for(input_size)
    return spec.output_size


def max_step_of(model) -> int:
    return _step_input_layer(model).max_step


def rebuild(model, input_size="same", dtype="float32"):
    """A copy of `model` with another input size (None = any size, fully convolutional) and/or
    dtype policy (default float32, e.g. to run a mixed-precision-trained model in float32)."""
    spec = spec_of(model)
    if input_size != "same":
        spec = dataclasses.replace(spec, input_size=input_size)
    new = build_from_spec(spec, dtype=dtype, name=model.name)
    new.set_weights(model.get_weights())
    return new


# ---- files ---------------------------------------------------------------------------------

def save_model(model, path) -> Path:
    """Save as .keras, atomically."""
    from pipelines.common.atomic import atomic_path

    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved as .keras files")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def load_model(path, compile: bool = False):
    """Load a saved hdc_deblur model; ModelLoadError (naming the file) if missing or not a model."""
    import keras

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(path, "model file not found")
    if not path.is_file():
        raise ModelLoadError(path, "not a file (expected a .keras model file)")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelLoadError(path, "not a .keras model file (expected a zip archive written by model.save)")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as e:
        raise ModelLoadError(path, f"cannot load the model ({type(e).__name__}: {e})") from None
    try:
        _step_input_layer(model)
    except ValueError as e:
        raise ModelLoadError(path, str(e)) from None
    return model


# ---- cost ----------------------------------------------------------------------------------

def _conv(k, cin, cout, out_px) -> tuple[int, int]:
    """(params, forward FLOPs) of a conv: 2 * MACs."""
    return k * k * cin * cout + cout, 2 * k * k * cin * cout * out_px


def describe(spec: ModelSpec, input_size: int | None = None) -> dict:
    """Analytic cost of a configuration: parameters, forward/training FLOPs per tile (convolutions
    only, 2 * MACs; gates, BN and elementwise ops are < 1 % and left out; training ~ 3 x forward),
    receptive field and output size."""
    n = input_size or spec.input_size or 110
    if spec.arch == "pyramid":
        return _describe_pyramid(spec, n)
    params = trainable = flops = 0

    def add(p, f=0, non_trainable=0):
        nonlocal params, trainable, flops
        params += p + non_trainable
        trainable += p
        flops += f

    def bn(ch):
        add(2 * ch, non_trainable=2 * ch)

    def gate(ch):
        add(2 * ch)

    size, cin = n, spec.channels
    widths = spec.pre_widths
    for i, ch in enumerate(widths):
        size -= PRE_WIDTH - 1
        add(*_conv(PRE_WIDTH, cin, ch, size * size))
        if i < len(widths) - 1:
            bn(ch)
        gate(ch)
        cin = ch
    w, d = spec.shared_width, spec.dim
    p_shared, _ = _conv(w, d, d, 0)
    add(p_shared)
    for _ in range(spec.refinements):
        size -= w - 1
        add(2 * d, _conv(w, d, d, size * size)[1])
    post_in = d
    out = spec.output_size_for(n)
    if spec.coarse_pathway:
        cs = n // 2
        cin = spec.channels
        for ch, has_bn in ((spec.subdim, True), (d, False)):
            cs -= PRE_WIDTH - 1
            add(*_conv(PRE_WIDTH, cin, ch, cs * cs))
            if has_bn:
                bn(ch)
            gate(ch)
            cin = ch
        add(p_shared)
        for _ in range(spec.coarse_refinements):
            cs -= w - 1
            add(2 * d, _conv(w, d, d, cs * cs)[1])
        post_in = 2 * d
    cin = post_in
    for i, ch in enumerate(spec.post_widths):
        add(*_conv(1, cin, ch, out * out))
        if i < 2:
            bn(ch)
        cin = ch
    return {"input_size": n, "output_size": out, "receptive_field": spec.receptive_field,
            "params": params, "trainable_params": trainable, "non_trainable_params": params - trainable,
            "forward_flops": flops, "train_flops": 3 * flops,
            "forward_flops_per_output_px": flops / (out * out)}


def cost_table(base: ModelSpec | None = None, refinements=(6, 12, 18, 24, 30), input_size=None) -> list[dict]:
    """describe() for several refinement counts; input grown so the output stays base's size."""
    base = base or ModelSpec()
    rows = []
    for r in refinements:
        grow = (r - base.refinements) * (base.shared_width - 1)
        n = (input_size or base.input_size or 110) + grow
        spec = dataclasses.replace(base, refinements=r, input_size=n)
        rows.append({"refinements": r, **describe(spec)})
    return rows


def _main():
    base = ModelSpec()
    print("cost of more refinements (dim=32, subdim=32, width 5; input grown to keep a 52 px output)")
    print(f"{'refine':>6} {'input':>5} {'RF px':>5} {'params':>8} {'GFLOP/tile':>10} {'kFLOP/out px':>12}")
    for row in cost_table(base):
        print(f"{row['refinements']:6d} {row['input_size']:5d} {row['receptive_field']:5d} {row['params']:8d} "
              f"{row['forward_flops'] / 1e9:10.2f} {row['forward_flops_per_output_px'] / 1e3:12.1f}")
    print("coarse pathway (main 6 refinements + c coarse refinements at half resolution, 52 px output)")
    for c in (6, 9, 12, 15):
        spec = dataclasses.replace(base, refinements=6, coarse_pathway=True, coarse_refinements=c,
                                   input_size=1000)
        n = 50 + spec.receptive_field
        while dataclasses.replace(spec, input_size=n).output_size < 52:
            n += 1
        row = describe(dataclasses.replace(spec, input_size=n))
        print(f"{'6+' + str(c) + 'c':>6} {n:5d} {row['receptive_field']:5d} {row['params']:8d} "
              f"{row['forward_flops'] / 1e9:10.2f} {row['forward_flops_per_output_px'] / 1e3:12.1f}")

if __name__ == "__main__":
    _main()
