"""The synthetic training stream (`deblur.train --synthetic`): batches made on the fly by
`pipelines.simulation.synth`, in worker processes, for any Keras backend (a `keras.utils.PyDataset`,
no tf.data).

    image index n of the stream (seed S) -> synth_pair(S, n): a 1:7 input (208 x 337 x C) and target
    pyramid models: one sample per image, cropped to a multiple of the model's size multiple
    valid-conv models: `tiles_per_image` random (in_size, out_size) tiles per image (the scene is
    reused for several crops: generation costs more than a tile's training step)

Batch b of epoch e holds the samples (e * batches_per_epoch + b) * batch_size + [0, batch_size):
every epoch sees new scenes, a resumed run (`epoch` set from the backup) continues the stream
where it stopped (with data echoing, `echo_sample`, each scene is trained on several times), and
the validation scenes come from another stream of the same seed
(`pipelines.simulation.synth.STREAMS`), so they never appear in training. Deterministic per
(seed, index).
"""
from __future__ import annotations

import multiprocessing as mp
from collections import OrderedDict

import numpy as np

from pipelines.common.threads import ONE_THREAD_ENV
from pipelines.preparation.prepare import env_defaults
from pipelines.simulation.synth import pair_rng, synth_pair


def _make_image(job):
    seed, index, steps, weights, stream, preprocess, nontext = job
    p = synth_pair(seed, index, steps, weights, stream=stream, config=preprocess, nontext=nontext)
    return p.x, p.y, p.step


class ImageSource:
    """synth_pair images by index, made ahead in `workers` processes (0 = in this process)."""

    def __init__(self, seed: int, steps, weights=None, preprocess=None, workers: int = 1,
                 lookahead: int = 16, stream: str = "train", nontext: float = 0.0, cache: int = 8):
        self.seed, self.steps, self.weights, self.stream = int(seed), list(steps), weights, stream
        self.nontext = float(nontext)
        self.preprocess, self.workers, self.lookahead = preprocess, int(workers), int(lookahead)
        self._pool = None
        self._pending: dict = {}
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = int(cache)

    def _job(self, index):
        w = None if self.weights is None else list(self.weights)
        return (self.seed, index, self.steps, w, self.stream, self.preprocess, self.nontext)

    def get(self, index: int):
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self.workers <= 0:
            item = _make_image(self._job(index))
        else:
            if self._pool is None:
                # spawned with one BLAS thread each (read when numpy loads): idle OpenBLAS threads
                # spin, and a 2-thread worker burnt 4x the CPU of its work beside the trainer
                with env_defaults(ONE_THREAD_ENV):
                    self._pool = mp.get_context("spawn").Pool(self.workers)
            for j in range(index, index + self.lookahead):
                if j not in self._pending:
                    self._pending[j] = self._pool.apply_async(_make_image, (self._job(j),))
            item = self._pending.pop(index).get()
            for j in [j for j in self._pending if j < index]:  # a jump (resume): drop stale work
                self._pending.pop(j)
        self._cache[index] = item
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return item

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
            self._pending.clear()


def crop_image(x, y, multiple: int):
    """Top-left crop of an image pair to sides that are multiples of `multiple`."""
    h, w = (x.shape[0] // multiple) * multiple, (x.shape[1] // multiple) * multiple
    return x[:h, :w], y[:h, :w]


def random_tile(x, y, in_size: int, out_size: int, rng: np.random.Generator):
    """A random (in_size, in_size, C) input tile and its centred (out_size, out_size) target, from an
    image padded as `pipelines.preprocessing.tiling.TileGrid` pads (reflect, margin
    (in - out) / 2)."""
    m = (in_size - out_size) // 2
    xp = np.pad(x, ((m, m), (m, m), (0, 0)), mode="reflect")
    i = int(rng.integers(0, max(1, x.shape[0] - out_size + 1)))
    j = int(rng.integers(0, max(1, x.shape[1] - out_size + 1)))
    return xp[i:i + in_size, j:j + in_size], y[i:i + out_size, j:j + out_size]


def make_sample(source: ImageSource, sample: int, geometry: dict):
    """Sample number `sample` of the stream: (x, y, step) for the model's geometry."""
    if geometry["kind"] == "image":
        x, y, step = source.get(sample)
        x, y = crop_image(x, y, geometry["multiple"])
        return x, y, step
    k = geometry["tiles_per_image"]
    x, y, step = source.get(sample // k)
    rng = pair_rng(source.seed, sample, "train")
    tx, ty = random_tile(x, y, geometry["in_size"], geometry["out_size"], rng)
    return tx, ty, step


ECHO_WINDOW_BATCHES = 2  # fresh batches whose scenes are echoed together (bounds the image cache)


def echo_sample(sample: int, batch_size: int, echo: int, seed: int = 0) -> int:
    """The fresh sample that trained sample `sample` repeats under data echoing (Choi et al., 2019,
    "Faster neural network training with data echoing"): every fresh sample is trained on `echo`
    times, so the stream's cost per trained frame falls `echo`-fold where making data shares the
    CPU with the trainer. A window of ECHO_WINDOW_BATCHES fresh batches is trained `echo` times in
    a row, each round a new permutation of its samples (round 0 in stream order): a scene never
    appears twice in one batch, and its repeats fall into other batches. echo 1: the identity."""
    if echo <= 1:
        return int(sample)
    window = ECHO_WINDOW_BATCHES * batch_size  # fresh samples per window
    w, pos = divmod(int(sample), window * echo)
    rnd, k = divmod(pos, window)
    order = np.arange(window) if rnd == 0 else \
        np.random.default_rng([int(seed), w, rnd, 0xEC0]).permutation(window)
    return w * window + int(order[k])


CONTRAST_REF = 0.15  # the std of a text frame's target at steps 16-19 (0.15-0.21): weight 1 from here up


def contrast_weights(ys, max_weight: float) -> np.ndarray:
    """Per-frame loss weights min(max_weight, max(1, CONTRAST_REF / std(target))). Cross-entropy on
    a grey target falls with the square of the scene's contrast, so a dim or hazy photo (the sanity
    set's "moon": std 0.04) weighs ~1/10 of a text frame however wrong its structure comes out,
    while the sanity check ranks grey levels and does not see contrast at all. max_weight <= 1: ones."""
    ys = np.asarray(ys, dtype=np.float32)
    if max_weight <= 1:
        return np.ones(len(ys), np.float32)
    std = ys.reshape(len(ys), -1).std(axis=1)
    return np.clip(CONTRAST_REF / np.maximum(std, 1e-6), 1.0, float(max_weight)).astype(np.float32)


def stack(samples):
    """Samples (x, y, step[, nontext]) -> a batch; validation batches also carry "nontext" (0/1)
    per sample, which the validation callback takes out before calling the model."""
    xs, ys, steps = zip(*[s[:3] for s in samples])
    inputs = {"image": np.stack(xs).astype(np.float32),
              "step": np.array(steps, dtype=np.float32).reshape(-1, 1)}
    if len(samples[0]) > 3:
        inputs["nontext"] = np.array([s[3] for s in samples], dtype=np.float32)
    return inputs, np.stack(ys)[..., None].astype(np.float32)


def synthetic_dataset(seed: int, steps, batch_size: int, batches_per_epoch: int, geometry: dict,
                      preprocess=None, workers: int = 1, weights=None, initial_epoch: int = 0,
                      nontext: float = 0.0, echo: int = 1, contrast_weight: float = 0.0):
    """A keras.utils.PyDataset of synthetic batches (module docstring); `echo` > 1: data echoing
    (`echo_sample`); `contrast_weight` > 1: batches carry per-frame loss weights (`contrast_weights`)."""
    import keras

    class SyntheticBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.source = ImageSource(seed, steps, weights, preprocess, workers,
                                      lookahead=max(4, 2 * batch_size // geometry.get("tiles_per_image", 1)),
                                      nontext=nontext, cache=max(8, ECHO_WINDOW_BATCHES * batch_size))
            self.epoch = int(initial_epoch)

        def __len__(self):
            return int(batches_per_epoch)

        def __getitem__(self, i):
            first = (self.epoch * batches_per_epoch + int(i)) * batch_size
            inputs, y = stack([make_sample(self.source, echo_sample(first + k, batch_size, echo, seed), geometry)
                               for k in range(batch_size)])
            if contrast_weight > 1:
                # (batch, 1, 1): Keras weighs the per-pixel loss (batch, h, w) and does not broadcast (batch,)
                return inputs, y, contrast_weights(y, contrast_weight)[:, None, None]
            return inputs, y

        def on_epoch_end(self):
            self.epoch += 1

        def set_weights(self, w):
            """New per-step sampling weights (the adaptive sampler); applies to images not yet made."""
            self.source.weights = None if w is None else [float(v) for v in w]

    return SyntheticBatches()


def validation_batches(seed: int, steps, per_step: int, geometry: dict, batch_size: int, preprocess=None,
                       nontext_per_step: int = 0):
    """Fixed validation batches: `per_step` text scenes and `nontext_per_step` non-text scenes of
    each step from the "val" stream (whole images for pyramid models, every output tile of the
    image for valid-conv models); each sample is marked text (0) or non-text (1)."""
    from pipelines.preprocessing.tiling import TileGrid

    samples = []
    for step in steps:
        for i in range(per_step + nontext_per_step):
            kind = "text" if i < per_step else "nontext"
            p = synth_pair(seed, step * 100_000 + i, step=step, stream="val", config=preprocess, kind=kind)
            flag = float(kind != "text")
            if geometry["kind"] == "image":
                x, y = crop_image(p.x, p.y, geometry["multiple"])
                samples.append((x, y, step, flag))
            else:
                grid = TileGrid.for_image(p.x.shape, geometry["in_size"], geometry["out_size"])
                for tx, ty in zip(grid.extract(p.x), grid.extract_windows(p.y)):
                    samples.append((tx, ty, step, flag))
    return [stack(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
