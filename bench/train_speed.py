"""Training speed of the shipped architecture, per setting: frames/s and achieved GFLOP/s.

    python -m bench.train_speed [--model deblur/models/default.keras] [--seconds 20]
    python -m bench.train_speed --settings base,jit,jit-b8 --stream

The network is built from the model's card (the pyramid, its input channels) and trained on
whole 1:7 frames as `deblur.train` does (208 x 336 x C crops; forward + backward + Adam through
`train_on_batch`). Each setting runs in its own Python process, because TensorFlow fixes its
thread pools at start-up:

    base        today's training: graph mode, no XLA, batch 4, TensorFlow's default threads
    jit         + XLA (`compile(jit_compile=True)`, `deblur.train --jit-compile`)
    b8, jit-b8  batch 8 instead of 4
    bf16, jit-bf16  mixed bfloat16 (oneDNN uses AMX/AVX-512 BF16 where the CPU has them)
    threads1    intra-op 2, inter-op 1 threads

FLOPs are counted analytically from the conv shapes (`deblur.model.describe`, 2 x MACs,
training = 3 x forward) and set against the machine's peak measured in the same process: a
4096^2 float32 matmul. `--stream` adds the synthetic stream's pairs/s in one process (the
trainer's data side: `deblur.train` makes pairs in 1 worker process beside the trainer).
The first batches (tracing, XLA compilation) are excluded.

`--end-to-end` times the real trainer instead: `deblur.train` from the model (`--init`), synthetic
stream with its 1 worker process, 20 batches of 4 per epoch, one validation frame per step; the
epochs after the first (tracing) give frames/s, validation included. Rows: float32 and
`--mixed-precision`, each also with data echoing (`--synth-echo 2`: every scene trained on twice,
so the stream's worker, which shares the 2 cores, makes half as many; "fresh scenes/s" is
frames/s over the echo).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FRAME = (208, 336)  # the synthetic stream's 1:7 frame, cropped to the pyramid's multiple of 8
SETTINGS = {
    "base": dict(jit=False, batch=4, policy="float32", threads=None),
    "jit": dict(jit=True, batch=4, policy="float32", threads=None),
    "b8": dict(jit=False, batch=8, policy="float32", threads=None),
    "jit-b8": dict(jit=True, batch=8, policy="float32", threads=None),
    "bf16": dict(jit=False, batch=4, policy="mixed_bfloat16", threads=None),
    "jit-bf16": dict(jit=True, batch=4, policy="mixed_bfloat16", threads=None),
    "threads1": dict(jit=False, batch=4, policy="float32", threads=(2, 1)),
}


def run_setting(model_path: str, name: str, seconds: float) -> dict:
    """One setting, in this process: train_on_batch frames/s, GFLOP/s and the matmul peak."""
    s = SETTINGS[name]
    import tensorflow as tf
    if s["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(s["threads"][0])
        tf.config.threading.set_inter_op_parallelism_threads(s["threads"][1])
    import keras
    import numpy as np

    from deblur.model import build_from_spec, describe, load_model, spec_of

    from bench.train_bench import _timed, matmul_peak

    peak = matmul_peak(tf, tf.float32)

    spec = spec_of(load_model(model_path))
    keras.utils.set_random_seed(0)
    model = build_from_spec(spec, dtype=None if s["policy"] == "float32" else s["policy"])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.BinaryCrossentropy(),
                  jit_compile=s["jit"])
    rng = np.random.default_rng(0)
    b, (h, w) = s["batch"], FRAME
    x = {"image": tf.constant(rng.random((b, h, w, spec.channels), dtype=np.float32)),
         "step": tf.constant(rng.integers(0, 20, (b, 1)).astype(np.float32))}
    y = tf.constant((rng.random((b, h, w, 1)) > 0.5).astype(np.float32))
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    model.train_on_batch(x, y)  # a second warm batch; _timed makes the third
    t = _timed(lambda: model.train_on_batch(x, y), seconds, min_reps=3)
    flops = describe(spec, input_size=1)["forward_flops_per_output_px"] * h * w
    return {"setting": name, **s, "first_batch_s": first, "frames_s": b / t,
            "train_gflops": b * 3 * flops / t / 1e9, "peak_gflops": peak,
            "gflop_frame": 3 * flops / 1e9, "cpus": os.cpu_count()}


def stream_rate(model_path: str, pairs: int) -> float:
    """Synthetic pairs/s made in this process (one core), with the model's preprocessing."""
    from deblur.infer import model_preprocess
    from pipelines.simulation.synth import synth_pair

    pre = model_preprocess(model_path)
    synth_pair(0, 0, config=pre, nontext=0.25)
    t0 = time.perf_counter()
    for i in range(1, pairs + 1):
        synth_pair(0, i, config=pre, nontext=0.25)
    return pairs / (time.perf_counter() - t0)


E2E = {"base": [], "bf16": ["--mixed-precision"], "echo2": ["--synth-echo", "2"],
       "bf16-echo2": ["--mixed-precision", "--synth-echo", "2"]}


def _echo(name: str) -> int:
    args = E2E[name]
    return int(args[args.index("--synth-echo") + 1]) if "--synth-echo" in args else 1


def end_to_end(model_path: str, name: str, epochs: int = 4, batches: int = 20) -> dict:
    """frames/s of `deblur.train` (setting `name` of E2E) over epochs 2..epochs."""
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "deblur.train", "--steps", "0-19", "--run-dir", f"{tmp}/run",
               "--init", model_path, "--nontext-fraction", "0.25", "--freeze-batchnorm", "--lr", "1e-5",
               "--epochs", str(epochs), "--steps-per-epoch", str(batches), "--synth-val-per-step", "1",
               "--synth-val-nontext", "0", *E2E[name]]
        out = subprocess.run(cmd, capture_output=True, text=True)
    times = [float(t) for t in re.findall(r"^epoch \d+/\d+ ([\d.]+)s", out.stdout, re.M)]
    if out.returncode or len(times) < 2:
        raise RuntimeError(f"deblur.train failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    frames_s = 4 * batches / (sum(times[1:]) / len(times[1:]))
    return {"setting": f"e2e-{name}", "epoch_s": times, "frames_s": frames_s, "fresh_frames_s": frames_s / _echo(name)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deblur/models/default.keras",
                   help="the architecture and input channels are taken from this model")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated, from {', '.join(SETTINGS)}")
    p.add_argument("--seconds", type=float, default=20.0, help="timing per setting after warm-up")
    p.add_argument("--stream", action="store_true", help="also time the synthetic stream (pairs/s, 1 process)")
    p.add_argument("--end-to-end", action="store_true",
                   help="instead: frames/s of the real trainer (deblur.train), float32 and mixed bfloat16, "
                        "each without and with data echoing (--synth-echo 2)")
    p.add_argument("--e2e-settings", default=",".join(E2E), help=f"--end-to-end rows, from {', '.join(E2E)}")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process's setting
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_setting(args.model, args.one, args.seconds)))
        return
    if args.end_to_end:
        rows = []
        print(f"deblur.train from {args.model}: synthetic stream (1 worker), batch 4, 20 batches an epoch, "
              f"validation included; {os.cpu_count()} CPUs")
        for name in _chosen(p, "--e2e-settings", args.e2e_settings, E2E):
            r = end_to_end(args.model, name)
            rows.append(r)
            print(f"{r['setting']:14} {r['frames_s']:6.2f} frames/s  x{r['frames_s'] / rows[0]['frames_s']:.2f}  "
                  f"fresh scenes {r['fresh_frames_s']:5.2f}/s  (epochs {', '.join(f'{t:.1f}' for t in r['epoch_s'])} s)",
                  flush=True)
        _write_json(args.json, rows)
        return
    names = _chosen(p, "--settings", args.settings, SETTINGS)
    print(f"model {args.model}; whole {FRAME[0]} x {FRAME[1]} frames at 1:7; {os.cpu_count()} CPUs; "
          f"{args.seconds:.0f} s per setting", flush=True)
    head = (f"{'setting':9} {'XLA':>4} {'batch':>5} {'dtype':>14} {'threads':>7} {'frames/s':>8} "
            f"{'x base':>6} {'GFLOP/s':>8} {'f32 peak':>8} {'% peak':>6} {'1st batch s':>11}")
    print(head + "\n" + "-" * len(head), flush=True)
    rows, base = [], None
    for name in names:
        out = subprocess.run([sys.executable, "-m", "bench.train_speed", "--model", args.model, "--one", name,
                              "--seconds", str(args.seconds)], capture_output=True, text=True)
        if out.returncode:
            print(f"{name:9} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or (r["frames_s"] if name == "base" else None)
        th = "default" if not r["threads"] else f"{r['threads'][0]}/{r['threads'][1]}"
        ratio = f"{r['frames_s'] / base:6.2f}" if base else f"{'':6}"
        print(f"{name:9} {'on' if r['jit'] else 'off':>4} {r['batch']:5d} {r['policy']:>14} {th:>7} "
              f"{r['frames_s']:8.2f} {ratio} {r['train_gflops']:8.1f} {r['peak_gflops']:8.1f} "
              f"{100 * r['train_gflops'] / r['peak_gflops']:6.1f} {r['first_batch_s']:11.1f}", flush=True)
        rows.append(r)
    if rows:
        print(f"(training = {rows[0]['gflop_frame']:.2f} GFLOP per frame: convolutions only, 2 x MACs, 3 x forward)")
    if args.stream:
        rate = stream_rate(args.model, 12)
        print(f"synthetic stream: {rate:.2f} pairs/s in one process (the trainer's 1 worker)")
        rows.append({"setting": "stream", "pairs_s": rate})
    _write_json(args.json, rows)


def _chosen(parser, flag: str, value: str, choices) -> list[str]:
    """The comma-separated names of `value`; an unknown one is a usage error naming the choices."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if n not in choices]
    if bad:
        parser.error(f"{flag}: unknown {', '.join(bad)} (choose from {', '.join(choices)})")
    return names


def _write_json(path, rows):
    if path:
        from pipelines.common.atomic import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
