"""Training throughput from the synthetic stream vs from prepared shards, same model, same batch.

    python -m bench.stream_bench --data data/prep-cmp [--batches 40] [--workers 0,1,2] [--batch-size 16]

The shipped recipe's tile model (the design at dim 16, 168 -> 110 px tiles, as `deblur.train
--model-dim 16 --model-subdim 16` builds it for 168 px shards) trains with `model.fit` for
--batches batches from each source, after a warm-up fit of a few batches (tracing, pool start-up,
the stream's first look-ahead): shards through `deblur.data.train_dataset` (tf.data), the stream
through `deblur.stream.synthetic_dataset` with 0 (in-process), 1, 2 ... generator processes. Prints
tiles/s per source and the stream's ratio to shards (issue 11's goal: >= 0.9 on 2 cores). The
machine's load average is printed beside, since other jobs on the cores change the figures.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tiles_per_s(model, ds, warmup: int, batches: int, batch_size: int) -> float:
    """One fit of warmup + batches batches; the rate over the batches after the warm-up (the
    input pipeline's start, e.g. filling the shuffle buffer, is not timed)."""
    import keras

    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    model.fit(ds, steps_per_epoch=warmup + batches, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    return batches * batch_size / (ends[-1] - ends[warmup - 1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared set with 168 px input / 110 px target tiles")
    p.add_argument("--batches", type=int, default=40, help="timed batches per source")
    p.add_argument("--warmup", type=int, default=4, help="untimed batches per source first")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", default="0,1,2", help="stream generator processes to try")
    p.add_argument("--tiles-per-image", type=int, default=8, help="stream tiles cut from each scene")
    p.add_argument("--steps", default="0-9")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.batches < 1:
        p.error("--warmup and --batches must be >= 1")

    import keras

    from deblur import data as D
    from deblur import stream as S
    from deblur.model import ModelSpec, build_from_spec
    from deblur.train import _steps_arg

    steps = _steps_arg(args.steps)
    tset = D.open_set(args.data, steps)
    spec = ModelSpec(dim=16, subdim=16, input_size=tset.input_size, channels=tset.channels)
    model = build_from_spec(spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    print(f"model: design dim 16, {spec.input_size} -> {spec.output_size} px tiles, batch {args.batch_size}; "
          f"{os.cpu_count()} CPUs; load average before {os.getloadavg()[0]:.1f}")

    rows = []
    shards = D.train_dataset(tset, args.batch_size, spec.output_size, seed=1)
    rows.append(("shards (tf.data)", _tiles_per_s(model, shards, args.warmup, args.batches, args.batch_size)))
    geometry = {"kind": "tiles", "in_size": spec.input_size, "out_size": spec.output_size,
                "tiles_per_image": args.tiles_per_image}
    for w in [int(v) for v in args.workers.split(",")]:
        ds = S.synthetic_dataset(1, steps, args.batch_size, args.warmup + args.batches, geometry, workers=w)
        try:
            rate = _tiles_per_s(model, ds, args.warmup, args.batches, args.batch_size)
        finally:
            ds.source.close()
        rows.append((f"stream, {w} generator process(es)", rate))

    base = rows[0][1]
    print("\n| source | train tiles/s | vs shards |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
