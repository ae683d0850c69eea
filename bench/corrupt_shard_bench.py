"""Training on a corrupt shard ends, every time: exit 1 with the shard's message, no hang.

    python -m bench.corrupt_shard_bench [--runs 20] [--timeout 60] [--keep DIR]

Writes a tiny prepared set (pipelines.preparation.shards format: step 5, three training shards of
random 32 px tiles and one validation shard), cuts the third training shard to its first 5000 bytes,
as in the issue (`head -c 5000 good.npz > set/shards/step05-train-0002.npz`), then runs `python -m
deblur.train` on it --runs times (a tiny model, 2 epochs), each killed after --timeout seconds if it
has not ended. Prints one row per run (exit status, seconds, whether the last line is the shard's
error) and a summary. The goal (issue 22): every run exits 1 within 60 s. Other jobs on the machine
slow every run alike.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.preparation.shards import FORMAT_VERSION, SHARD_DIR, shard_name, write_manifest, write_shard

MODEL = ["--model-dim", "8", "--model-subdim", "8", "--model-refinements", "3", "--model-shared-width", "3"]


def tiny_set(root: Path, size: int = 32, target: int = 16, per_shard: int = 8) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for step in (5,):
        for split, shards in (("train", 3), ("val", 1)):
            for i in range(shards):
                x = rng.random((per_shard, size, size, 5)).astype(np.float16)
                y = rng.integers(0, 2, (per_shard, target, target, 1), dtype=np.uint8) * 255
                e = write_shard(root / SHARD_DIR / shard_name(step, split, i), x, y, np.full(per_shard, step),
                                np.arange(per_shard))
                entries.append({**e, "step": step, "split": split})
    write_manifest(root, {"format_version": FORMAT_VERSION, "shards": entries, "config": {"bench": True}})
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corrupt_shard_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a run counts as hung")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder (default: a temporary one)")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="corrupt_shard_"))
    data = tiny_set(work / "set")
    bad = data / SHARD_DIR / shard_name(5, "train", 2)
    bad.write_bytes(bad.read_bytes()[:5000])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print(f"corrupt shard: {bad} (5000 bytes); {args.runs} runs, {args.timeout:.0f} s limit each")
    print(f"{'run':>3} {'exit':>4} {'seconds':>7}  message")
    rows = []
    for i in range(args.runs):
        cmd = [sys.executable, "-m", "deblur.train", "--data", str(data), "--run-dir", str(work / f"run{i}"),
               "--steps", "5", "--epochs", "2", "--batch-size", "8", *MODEL]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            code, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired as e:  # run() kills the process
            code, err = "hung", (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        seconds = time.perf_counter() - t0
        last = (err.strip().splitlines() or [""])[-1]
        ok_message = last.startswith("error: ") and str(bad) in last and "Traceback" not in err
        rows.append((code, seconds, ok_message))
        print(f"{i + 1:>3} {code!s:>4} {seconds:>7.1f}  {'shard error, one line' if ok_message else last[:80]}",
              flush=True)
    good = sum(c == 1 and s < args.timeout and m for c, s, m in rows)
    secs = [s for _, s, _ in rows]
    print(f"{good}/{len(rows)} runs exited 1 with the shard's message within {args.timeout:.0f} s "
          f"(seconds: median {np.median(secs):.1f}, max {max(secs):.1f})")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
