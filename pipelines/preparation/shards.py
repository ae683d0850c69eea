"""The on-disk training-set format shared by `pipelines.prepare` (writer) and `deblur.train` (reader).

A prepared set is a folder with `manifest.json` and `shards/*.npz`. Each shard holds the tiles of
one blur step and one split ("train" or "val"):
    x     float16 (n, in, in, C)   preprocessed blurred tiles (vignetting removed, median channels)
    y     uint8   (n, out, out, 1) binarised, registered target windows, 0 = black .. 255 = white
    step  int16   (n,)             blur step of each tile
    image int32   (n,)             index of the source image pair within the shard (for debugging)
Shards are uncompressed .npz so a reader can load one at a time without touching the others.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..common.atomic import atomic_path, write_text_atomic
from ..common.errors import DataError

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
FORMAT_VERSION = 1
KEYS = ("x", "y", "step", "image")


def shard_name(step: int, split: str, index: int) -> str:
    return f"step{step:02d}-{split}-{index:04d}.npz"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(path, x, y, step, image) -> dict:
    """Write one shard atomically; return its manifest entry (file, count, sha256)."""
    x = np.asarray(x, dtype=np.float16)
    y = np.asarray(y, dtype=np.uint8)
    if y.ndim == 3:
        y = y[..., None]
    step = np.asarray(step, dtype=np.int16)
    image = np.asarray(image, dtype=np.int32)
    if not (len(x) == len(y) == len(step) == len(image)):
        raise ValueError("shard arrays must have the same length")
    with atomic_path(path) as tmp:
        np.savez(tmp, x=x, y=y, step=step, image=image)
    return {"file": Path(path).name, "count": int(len(x)), "sha256": file_sha256(path)}


def read_shard(path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z]
            if missing:
                raise DataError(path, f"shard lacks arrays {missing}")
            return {k: z[k] for k in KEYS}
    except DataError:
        raise
    except Exception as e:  # zipfile/numpy errors for truncated files
        raise DataError(path, f"unreadable shard ({type(e).__name__}: {e})") from None


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(path, "no manifest: is this a folder written by `python -m pipelines.prepare`?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"manifest is not valid JSON ({e})") from None


def write_manifest(root, manifest: dict) -> None:
    write_text_atomic(Path(root) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def shard_entries(manifest: dict, split: str, steps=None) -> list[dict]:
    """Manifest entries of one split (optionally only some steps); each has file, step, split, count."""
    return [s for s in manifest["shards"]
            if s["split"] == split and (steps is None or s["step"] in steps)]
