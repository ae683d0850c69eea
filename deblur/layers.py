"""Custom Keras 3 layers of the step-conditioned highway network.

All layers use `keras.ops` only (no tf.* calls, no Lambda layers, no lambda initialisers) and are
registered under the package "hdc_deblur", so `keras.models.load_model(path)` restores a saved
model without `custom_objects` once this module has been imported (`import deblur` does it).

    StepInput         scales the raw blur step (float, shape (batch, 1)) by a fixed constant and
                      carries the model's hyperparameters ("spec") in its config
    StepGate          x * sigmoid(Dense(step))[:, None, None, :]: per-channel gate from the step
    HighwayRefinement n iterations of ONE shared Conv2D(dim, width, tanh), valid (cropping x) or
                      same padding (the pyramid's levels):
                      x = crop(x) * (1 - d_i) + shared(x) * d_i,  d_i = sigmoid(Dense_i(step))
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "hdc_deblur"
DENSE_STDDEV = 0.01  # the design's Dense initialiser: 0.01 * normal


def _gate_initializer(stddev: float):
    return keras.initializers.RandomNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package=PACKAGE)
class StepInput(keras.layers.Layer):
    """Multiply the raw step number by `scale` (fixed, recorded in the config).

    `max_step` (the highest step the model was built for) and `spec` (the model's hyperparameters,
    a plain dict) are metadata: they travel with the saved model so inference can read them back.
    """

    def __init__(self, scale: float = 0.1, max_step: int = 19, spec: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.max_step = int(max_step)
        self.spec = dict(spec) if spec else {}

    def call(self, step):
        return ops.cast(step, self.compute_dtype) * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "max_step": self.max_step,
                "spec": dict(self.spec)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StepGate(keras.layers.Layer):
    """Called on [x, step]: x (batch, h, w, ch) times sigmoid(step @ kernel + bias) (batch, 1, 1, ch).

    Equivalent to the design's `x * Dense(ch, activation='sigmoid')(step)[:, None, None, :]`;
    2 * ch parameters for a scalar step.
    """

    def __init__(self, stddev: float = DENSE_STDDEV, **kwargs):
        super().__init__(**kwargs)
        self.stddev = float(stddev)

    def build(self, input_shape):
        x_shape, step_shape = input_shape
        units, step_dim = int(x_shape[-1]), int(step_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(step_dim, units),
                                      initializer=_gate_initializer(self.stddev))
        self.bias = self.add_weight(name="bias", shape=(units,), initializer="zeros")

    def call(self, inputs):
        x, step = inputs
        gate = ops.sigmoid(ops.matmul(step, self.kernel) + self.bias)
        return x * gate[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HighwayRefinement(keras.layers.Layer):
    """The refinement stage: `iterations` highway steps around one shared valid convolution.

    Called on [x, step] with x (batch, h, w, dim); returns (batch, h - n(w-1), w - n(w-1), dim).
    Weights: the shared conv (width, width, dim, dim) + (dim,), and per iteration a gate Dense
    kernel (step_dim, dim) and bias (dim,), stored stacked as (n, step_dim, dim) and (n, dim).
    Keeping everything in one layer makes the weight sharing explicit and serialises cleanly.
    """

    def __init__(self, iterations: int = 12, width: int = 5, stddev: float = DENSE_STDDEV,
                 kernel_initializer="glorot_uniform", padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        if int(width) < 1 or int(width) % 2 == 0:
            raise ValueError(f"shared conv width must be odd and positive, got {width}")
        if int(iterations) < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = int(iterations)
        self.width = int(width)
        self.stddev = float(stddev)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        x_shape, step_shape = input_shape
        dim, step_dim, n, w = int(x_shape[-1]), int(step_shape[-1]), self.iterations, self.width
        self.kernel = self.add_weight(name="kernel", shape=(w, w, dim, dim),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(dim,), initializer="zeros")
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(n, step_dim, dim),
                                           initializer=_gate_initializer(self.stddev))
        self.gate_bias = self.add_weight(name="gate_bias", shape=(n, dim), initializer="zeros")

    def call(self, inputs):
        x, step = inputs
        c = (self.width - 1) // 2
        for i in range(self.iterations):
            d = ops.sigmoid(ops.matmul(step, self.gate_kernel[i]) + self.gate_bias[i])[:, None, None, :]
            y = ops.tanh(ops.conv(x, self.kernel, strides=1, padding=self.padding) + self.bias)
            if c and self.padding == "valid":
                x = x[:, c:-c, c:-c, :]
            x = x * (1 - d) + y * d
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, ch = input_shape[0]
        shrink = self.iterations * (self.width - 1) if self.padding == "valid" else 0
        return (b, None if h is None else h - shrink, None if w is None else w - shrink, ch)

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "width": self.width,
                "stddev": self.stddev, "padding": self.padding,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BilinearUpsample2x(keras.layers.Layer):
    """x2 bilinear up-sampling with half-pixel centres and clamped edges (what
    UpSampling2D(interpolation="bilinear") computes), written with keras.ops slicing so that it
    also runs on inputs whose height and width are unknown until run time (any image size)."""

    @staticmethod
    def _axis(x, axis):
        n = ops.shape(x)[axis]
        first = ops.take(x, [0], axis=axis)
        last = ops.take(x, ops.convert_to_tensor([n - 1]), axis=axis)
        prev = ops.concatenate([first, ops.take(x, ops.arange(0, n - 1), axis=axis)], axis=axis)
        nxt = ops.concatenate([ops.take(x, ops.arange(1, n), axis=axis), last], axis=axis)
        even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
        both = ops.stack([even, odd], axis=axis + 1)
        shape = ops.shape(x)
        new = [shape[i] for i in range(4)]
        new[axis] = shape[axis] * 2
        return ops.reshape(both, new)

    def call(self, x):
        return self._axis(self._axis(x, 1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


CUSTOM_LAYERS = (StepInput, StepGate, HighwayRefinement, BilinearUpsample2x)
