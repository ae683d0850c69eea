"""Training and inference throughput of the deblurring network, with achieved GFLOP/s.

    python -m bench.train_bench [--batch-size 8] [--seconds 4] [--quick]
    python -m bench.train_bench --geometry     # receptive field, parameters, FLOPs per 1:7 pixel

For the default configuration (dim = subdim = 32, 12 refinements, width 5, 110 px tiles) and a
small one (dim = subdim = 16, 6 refinements, 86 px tiles, same 52 px output), in float32 and mixed
bfloat16 (mixed float16 on a GPU): tiles/s for training (train_on_batch: forward + backward + Adam)
and inference (predict_on_batch), on synthetic tiles. FLOPs are counted analytically from the conv
shapes (deblur.model.describe: 2 x MACs; training ~ 3 x forward) and set against the machine's
measured peak: a 4096 x 4096 matmul in float32 (and bfloat16) with TensorFlow in the same run.
The first batch (tracing, allocation) is excluded; each timing runs for about --seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "default": dict(dim=32, subdim=32, refinements=12, shared_width=5, input_size=110),
    "small": dict(dim=16, subdim=16, refinements=6, shared_width=5, input_size=86),
}


GEOMETRY = {  # analytic table only (--geometry)
    "design dim 32 (110 -> 52 tiles)": dict(dim=32, subdim=32, input_size=110),
    "design dim 16 (168 -> 110 tiles)": dict(dim=16, subdim=16, input_size=168),
    "pyramid 8/16/24/32, refine 1/1/2/3": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                               pyramid_dims=(8, 16, 24, 32), pyramid_refinements=(1, 1, 2, 3)),
    "pyramid 16/24/32/48, refine 1/2/3/4": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                                pyramid_dims=(16, 24, 32, 48), pyramid_refinements=(1, 2, 3, 4)),
    "pyramid 16/24/64/96, refine 1/2/3/4": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                                pyramid_dims=(16, 24, 64, 96), pyramid_refinements=(1, 2, 3, 4)),
    "pyramid 16/48/64/96, refine 1/2/3/4": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                                pyramid_dims=(16, 48, 64, 96), pyramid_refinements=(1, 2, 3, 4)),
    "pyramid 32/48/64/96, refine 1/2/3/4": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                                pyramid_dims=(32, 48, 64, 96), pyramid_refinements=(1, 2, 3, 4)),
    "pyramid 16/32/48/64, refine 2/2/3/4": dict(arch="pyramid", dim=16, subdim=16, input_size=208,
                                                pyramid_dims=(16, 32, 48, 64), pyramid_refinements=(2, 2, 3, 4)),
}


def geometry_table() -> list[dict]:
    """Receptive field (1:7 px), parameters and forward FLOPs per output pixel of GEOMETRY."""
    from deblur.model import ModelSpec, describe

    rows = []
    for name, cfg in GEOMETRY.items():
        d = describe(ModelSpec(**cfg))
        rows.append({"config": name, "receptive_field": d["receptive_field"], "params": d["params"],
                     "kflop_per_px": d["forward_flops_per_output_px"] / 1e3})
    return rows


def _timed(fn, seconds, min_reps=2, max_reps=50):
    fn()  # warm-up: tracing, allocation
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or (time.perf_counter() - t0 < seconds and reps < max_reps):
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps


def matmul_peak(tf, dtype, n=4096, seconds=2.0) -> float:
    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    mm = tf.function(lambda: tf.matmul(a, b))
    t = _timed(lambda: mm().numpy(), seconds, min_reps=2)
    return 2 * n ** 3 / t / 1e9


def bench_config(tf, keras, np, cfg, policy, batch, seconds):
    from deblur.model import build_model, describe, spec_of

    keras.utils.set_random_seed(0)
    model = build_model(**cfg, dtype=policy)
    opt = keras.optimizers.Adam(1e-3)
    if policy == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(optimizer=opt, loss="binary_crossentropy")
    spec = spec_of(model)
    rng = np.random.default_rng(0)
    x = {"image": rng.random((batch, spec.input_size, spec.input_size, spec.channels), dtype=np.float32),
         "step": rng.integers(0, 10, (batch, 1)).astype(np.float32)}
    y = (rng.random((batch, spec.output_size, spec.output_size, 1)) > 0.5).astype(np.float32)
    x_t = {k: tf.constant(v) for k, v in x.items()}
    y_t = tf.constant(y)
    t_train = _timed(lambda: model.train_on_batch(x_t, y_t), seconds)
    t_infer = _timed(lambda: np.asarray(model.predict_on_batch(x_t)), seconds)
    flops = describe(spec)["forward_flops"]
    return {"params": model.count_params(), "gflop_tile": flops / 1e9,
            "train_tps": batch / t_train, "train_gflops": batch * 3 * flops / t_train / 1e9,
            "infer_tps": batch / t_infer, "infer_gflops": batch * flops / t_infer / 1e9}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.train_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0, help="time per measurement (after warm-up)")
    p.add_argument("--configs", default="default,small")
    p.add_argument("--geometry", action="store_true", help="print the analytic geometry/cost table and exit")
    args = p.parse_args(argv)
    if args.geometry:
        print(f"{'configuration':40} {'RF (1:7 px)':>11} {'params':>9} {'kFLOP/px':>9}  (step-19 disc: 59 px)")
        for r in geometry_table():
            print(f"{r['config']:40} {r['receptive_field']:11d} {r['params']:9,d} {r['kflop_per_px']:9.1f}")
        return

    import keras
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU x{len(gpus)}" if gpus else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    low = "mixed_float16" if gpus else "mixed_bfloat16"
    t0 = time.time()
    peak32 = matmul_peak(tf, tf.float32)
    peak16 = matmul_peak(tf, tf.float16 if gpus else tf.bfloat16)
    print(f"device: {device}; TensorFlow {tf.__version__}, Keras {keras.__version__}; batch {args.batch_size}")
    print(f"measured peak (4096^2 matmul): float32 {peak32:.1f} GFLOP/s, "
          f"{'float16' if gpus else 'bfloat16'} {peak16:.1f} GFLOP/s")
    head = (f"{'config':8} {'dtype':15} {'params':>7} {'GFLOP/tile':>10} {'train tiles/s':>13} "
            f"{'train GFLOP/s':>13} {'infer tiles/s':>13} {'infer GFLOP/s':>13} {'% f32 peak (tr/inf)':>20}")
    print(head)
    print("-" * len(head))
    for name in args.configs.split(","):
        for policy in ("float32", low):
            r = bench_config(tf, keras, np, CONFIGS[name], policy, args.batch_size, args.seconds)
            print(f"{name:8} {policy:15} {r['params']:7d} {r['gflop_tile']:10.2f} {r['train_tps']:13.2f} "
                  f"{r['train_gflops']:13.1f} {r['infer_tps']:13.2f} {r['infer_gflops']:13.1f} "
                  f"{100 * r['train_gflops'] / peak32:9.0f} /{100 * r['infer_gflops'] / peak32:4.0f}",
                  flush=True)
    print(f"(total {time.time() - t0:.0f}s; FLOPs: convolutions only, 2 x MACs, training = 3 x forward)")


if __name__ == "__main__":
    main()
