"""tf.data input pipeline streaming a prepared training set (pipelines.preparation.shards format).

    shard file names (reshuffled every pass, repeated)
      -> interleave: each slot loads ONE shard (tf.numpy_function -> shards.read_shard) and yields
         its tiles; `cycle_length` shards are open at a time
      -> shuffle buffer (tiles) -> batch -> cast (x float32, step float32 (b, 1), y / 255 float32,
         y centre-cropped to the model's output size) -> prefetch

The whole set is never in memory: at most `cycle_length` shards (+ the interleave's read-ahead)
plus the shuffle buffer. Elements are ({"image": x, "step": step}, y).

Step weighting (`StepSampler`): one stream per step (one open shard each), merged by
`tf.data.Dataset.choose_from_datasets` with a choice stream drawn from the sampler's current
weights. `deblur.train` sets the weights after each epoch proportional to each step's latest
validation loss, floored at `floor` x the mean weight: steps the model has learnt (low loss, in
practice the less blurred ones) are shown less often, none is dropped entirely.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.common.errors import DataError
from pipelines.preparation.shards import SHARD_DIR, read_manifest, read_shard, shard_entries


def _npy_header(zf: zipfile.ZipFile, name: str):
    with zf.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def shard_shapes(path) -> dict[str, tuple]:
    """Shapes of a shard's arrays, read from the .npy headers only (no data loaded)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {k: _npy_header(zf, f"{k}.npy")[0] for k in ("x", "y", "step")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(path, f"unreadable shard ({type(e).__name__}: {e})") from None


@dataclass
class TrainingSet:
    """A prepared set restricted to some steps: shard paths per split and step, tile geometry."""
    root: Path
    manifest: dict
    steps: list[int]
    files: dict[str, dict[int, list[str]]]   # split -> step -> shard paths
    counts: dict[str, dict[int, int]]        # split -> step -> tiles
    input_size: int
    channels: int
    target_size: int

    def all_files(self, split: str, steps=None) -> list[str]:
        return [f for s in (steps or self.steps) for f in self.files[split].get(s, [])]

    def count(self, split: str, steps=None) -> int:
        return sum(self.counts[split].get(s, 0) for s in (steps or self.steps))


def open_set(root, steps) -> TrainingSet:
    """Read the manifest; DataError if a requested step has no training shards or no val split exists."""
    root = Path(root)
    manifest = read_manifest(root)
    mpath = root / "manifest.json"
    if not isinstance(manifest.get("shards"), list):
        raise DataError(mpath, "manifest has no 'shards' list")
    steps = sorted(int(s) for s in steps)
    files: dict = {"train": {}, "val": {}}
    counts: dict = {"train": {}, "val": {}}
    for split in files:
        for e in shard_entries(manifest, split, steps):
            p = root / SHARD_DIR / e["file"]
            if not p.is_file():
                raise DataError(p, "shard listed in the manifest is missing")
            files[split].setdefault(int(e["step"]), []).append(str(p))
            counts[split][int(e["step"])] = counts[split].get(int(e["step"]), 0) + int(e["count"])
    have = sorted({int(e["step"]) for e in manifest["shards"] if e.get("split") == "train"})
    missing = [s for s in steps if not counts["train"].get(s)]
    if missing:
        raise DataError(mpath, f"no training shards for step(s) {missing}; the set has training "
                               f"shards for steps {have}")
    if not counts["val"]:
        raise DataError(mpath, f"no 'val' shards for steps {steps}: validation needs them")
    first = files["train"][steps[0]][0]
    shapes = shard_shapes(first)
    x, y = shapes["x"], shapes["y"]
    if len(x) != 4 or x[1] != x[2] or len(y) != 4 or y[1] != y[2] or y[3] != 1:
        raise DataError(first, f"unexpected tile shapes x {x}, y {y} (want (n, in, in, C), (n, out, out, 1))")
    return TrainingSet(root, manifest, steps, files, counts, int(x[1]), int(x[3]), int(y[1]))


def target_crop(target_size: int, output_size: int, path="") -> int:
    """Pixels to crop from each side of the targets to match the model output (centred windows)."""
    extra = target_size - output_size
    if extra < 0 or extra % 2:
        raise DataError(path or None, f"target tiles are {target_size} px but the model outputs "
                                      f"{output_size} px: need targets >= the output, larger by an even number")
    return extra // 2


# ---- tf.data ---------------------------------------------------------------------------------

# The first DataError raised inside the tf.data pipeline (set by `_load_numpy`): TensorFlow hands
# it back wrapped in an op error with its Python traceback; `deblur.train` re-raises this one.
PIPELINE_ERRORS: list[DataError] = []


def _load_numpy(path):
    try:
        d = read_shard(path.decode() if isinstance(path, bytes) else str(path))
    except DataError as e:
        PIPELINE_ERRORS.append(e)
        raise
    return d["x"], d["y"], d["step"]


def _shard_tiles(tf, input_size, channels, target_size):
    def load(path):
        x, y, step = tf.numpy_function(_load_numpy, [path], [tf.float16, tf.uint8, tf.int16],
                                       stateful=False)
        x.set_shape((None, input_size, input_size, channels))
        y.set_shape((None, target_size, target_size, 1))
        step.set_shape((None,))
        return tf.data.Dataset.from_tensor_slices((x, y, step))
    return load


def _to_model(tf, crop):
    def convert(x, y, step):
        y = tf.cast(y, tf.float32) / 255.0
        if crop:
            y = y[:, crop:-crop, crop:-crop, :]
        return {"image": tf.cast(x, tf.float32),
                "step": tf.reshape(tf.cast(step, tf.float32), (-1, 1))}, y
    return convert


def _file_stream(tf, files, seed, repeat):
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(files))
    if repeat:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds


class StepSampler:
    """Per-step sampling weights for the step-weighted training stream (see module docstring)."""

    def __init__(self, steps, seed: int = 0, floor: float = 0.25, chunk: int = 256):
        self.steps = list(steps)
        self.weights = np.full(len(self.steps), 1.0 / len(self.steps))
        self.floor = float(floor)
        self.chunk = int(chunk)
        self._rng = np.random.default_rng(seed)

    def update(self, losses: dict) -> np.ndarray:
        """Weights proportional to each step's loss (missing steps get the mean), floored."""
        w = np.array([losses.get(s, np.nan) for s in self.steps], dtype=float)
        if np.all(~np.isfinite(w)):
            return self.weights
        w[~np.isfinite(w)] = np.nanmean(w[np.isfinite(w)])
        w = np.maximum(w, 1e-12)
        w = np.maximum(w, self.floor * w.mean())
        self.weights = w / w.sum()
        return self.weights

    def choices(self):
        while True:
            yield self._rng.choice(len(self.steps), size=self.chunk, p=self.weights).astype(np.int64)


def train_dataset(tset: TrainingSet, batch_size: int, output_size: int, shuffle_buffer: int = 1024,
                  seed: int = 0, cycle_length: int = 4, sampler: StepSampler | None = None):
    """Infinite, shuffled training stream; use with steps_per_epoch = `epoch_steps(...)`."""
    import tensorflow as tf

    crop = target_crop(tset.target_size, output_size, tset.root)
    load = _shard_tiles(tf, tset.input_size, tset.channels, tset.target_size)
    if sampler is None:
        files = tset.all_files("train")
        ds = _file_stream(tf, files, seed, True).interleave(
            load, cycle_length=max(1, min(cycle_length, len(files))), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        streams = []
        for i, s in enumerate(sampler.steps):
            files = tset.files["train"][s]
            streams.append(_file_stream(tf, files, seed + 1000 * (i + 1), True).interleave(
                load, cycle_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
        choice = tf.data.Dataset.from_generator(
            sampler.choices, output_signature=tf.TensorSpec((None,), tf.int64)).unbatch()
        ds = tf.data.Dataset.choose_from_datasets(streams, choice)
    if shuffle_buffer and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    drop = tset.count("train") >= batch_size
    ds = ds.batch(batch_size, drop_remainder=drop)
    return ds.map(_to_model(tf, crop), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def epoch_steps(tset: TrainingSet, batch_size: int) -> int:
    """Batches in one pass over the training tiles."""
    n = tset.count("train")
    return max(1, n // batch_size) if n >= batch_size else 1


def val_dataset(tset: TrainingSet, batch_size: int, output_size: int, steps=None):
    """Finite, unshuffled stream over the val shards of `steps` (default: all requested)."""
    import tensorflow as tf

    crop = target_crop(tset.target_size, output_size, tset.root)
    files = tset.all_files("val", steps)
    load = _shard_tiles(tf, tset.input_size, tset.channels, tset.target_size)
    ds = _file_stream(tf, files, 0, False).interleave(load, cycle_length=1)
    return ds.batch(batch_size).map(_to_model(tf, crop)).prefetch(tf.data.AUTOTUNE)
