"""One table of the project's speeds on this machine.

    python -m bench.speeds [--pairs 20] [--images 5] [--ocr 20] [--seconds 4] [--model PATH]

Rows: simulator (image pairs/s), prepare (pairs/s, default per-step registration), training
(tiles/s of the shipped model's configuration), inference (s per full-size 2360 x 1460 image,
shipped model), OCR scorer (images/s with all cores), and the classical baselines Wiener and
Richardson-Lucy (s per full-size image, at their tuned step-5 parameters) for comparison. Each
row calls the same code the commands use; the detailed per-stage benchmarks are
bench.prepare_bench, bench.train_bench and bench.infer_bench. Measure on an idle machine: the
figures scale with the cores a run actually gets.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STEP = 5  # a mid-range blur step for the per-image timings


def _median_time(fn, n: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_simulator(tmp: Path, pairs: int) -> float:
    from pipelines.simulation.simulate import simulate

    per_font = max(1, pairs // 2)
    t0 = time.perf_counter()
    # text pairs per second: the per-step sanity photos are left out (a fixed cost per step)
    simulate(tmp / "sim", [STEP], per_font, seed=123, layout="train", progress=False, photos=())
    return 2 * per_font / (time.perf_counter() - t0)


def bench_prepare(tmp: Path) -> float:
    from bench.prepare_bench import run_mode

    return run_mode(tmp / "sim", tmp / "prep", [STEP], "step", os.cpu_count() or 1)["rate"]


def bench_ocr(tmp: Path, n: int) -> float:
    from eval.ocr import score_many
    from pipelines.reading.hdc import find_samples, load_tiff

    samples = find_samples(tmp / "sim", [STEP])
    pairs = [(load_tiff(s.sharp), "\n".join(s.text)) for s in samples][:n]
    pairs = (pairs * (n // max(1, len(pairs)) + 1))[:n]
    t0 = time.perf_counter()
    score_many(pairs, workers=os.cpu_count(), progress=False)
    return n / (time.perf_counter() - t0)


def _model_config(model_path):
    """(model file or None, its ModelSpec as a dict): the card's full spec, highway or pyramid."""
    from deblur.infer import DEFAULT_MODEL, read_card

    path = Path(model_path) if model_path else DEFAULT_MODEL
    card = read_card(path) if path.is_file() else {}
    m = card.get("model") or {"dim": 32, "subdim": 32, "refinements": 12, "shared_width": 5, "input_size": 110}
    return path if path.is_file() else None, m


def bench_training(cfg: dict, seconds: float) -> tuple[float, str]:
    """Training throughput of the configuration as it trains: 168 px tiles (batch 16) for the
    valid-conv design, whole 1:7 frames from the synthetic stream (batch 4) for the pyramid."""
    import keras
    import numpy as np

    from bench.train_bench import _timed
    from deblur.model import ModelSpec, build_from_spec

    if cfg.get("arch", "highway") != "pyramid":
        import tensorflow as tf

        from bench.train_bench import bench_config

        tile = {k: cfg[k] for k in ("dim", "subdim", "refinements", "shared_width", "input_size")}
        return bench_config(tf, keras, np, tile, "float32", 16, seconds)["train_tps"], \
            f"{tile['input_size']} px tiles, batch 16"
    keras.utils.set_random_seed(0)
    spec = ModelSpec.from_dict({**cfg, "input_size": None})
    model = build_from_spec(spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    m = spec.size_multiple
    h, w = (n // m * m for n in (1460 // 7, 2360 // 7))  # a 1:7 frame, cropped as the stream crops
    rng, batch = np.random.default_rng(0), 4
    x = {"image": rng.random((batch, h, w, spec.channels), dtype=np.float32),
         "step": rng.integers(0, 20, (batch, 1)).astype(np.float32)}
    y = (rng.random((batch, h, w, 1)) > 0.5).astype(np.float32)
    return batch / _timed(lambda: model.train_on_batch(x, y), seconds), f"whole {w} x {h} frames, batch 4"


def bench_inference(model_path, cfg: dict, image, n: int) -> float:
    from bench.infer_bench import bench_deblurrer
    from deblur.infer import Deblurrer
    from deblur.model import ModelSpec, build_from_spec

    d = Deblurrer.from_file(model_path) if model_path else Deblurrer(build_from_spec(ModelSpec.from_dict(cfg)))
    return bench_deblurrer(d, image, STEP, n)[0]["total"]


def bench_baseline(method: str, image, n: int) -> float:
    from deblur.infer import as_unit_image
    from eval.baselines import PARAM_NAME, deblur, disc_psf, params_for

    value = params_for(method, STEP)[PARAM_NAME[method]]
    psf = disc_psf(STEP)
    unit = as_unit_image(image)
    return _median_time(lambda: deblur(unit, STEP, method, value, psf), n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speeds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=20, help="pairs to simulate and prepare")
    p.add_argument("--images", type=int, default=5, help="timed runs per full-image row")
    p.add_argument("--ocr", type=int, default=20, help="images to OCR")
    p.add_argument("--seconds", type=float, default=4.0, help="time per training measurement")
    p.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    args = p.parse_args(argv)

    from bench.infer_bench import simulated_image

    rows = []

    def row(what, value, unit, note=""):
        rows.append((what, value, unit, note))
        print(f"  {what:34s} {value:9.2f} {unit:12s} {note}", flush=True)

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; step {STEP} images, 2360 x 1460")
    model_path, cfg = _model_config(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        row("simulator", bench_simulator(tmp, args.pairs), "pairs/s", f"{args.pairs} pairs, all cores")
        row("prepare (--registration step)", bench_prepare(tmp), "pairs/s", "goal >= 7 (4000 pairs in 10 min)")
        row("OCR scorer", bench_ocr(tmp, args.ocr), "images/s", "official options, all cores")
    image = simulated_image(STEP)
    arch = cfg.get("arch", "highway")
    shape = (f"dims {'/'.join(map(str, cfg['pyramid_dims']))}" if arch == "pyramid"
             else f"dim {cfg['dim']}, {cfg['refinements']} refinements")
    model_note = f"{'shipped model' if model_path else 'random weights'}, {arch} {shape}"
    tps, geometry = bench_training(cfg, args.seconds)
    row("training", tps, "tiles/s", f"{geometry}, float32, {model_note}")
    row("inference (python -m deblur)", bench_inference(model_path, cfg, image, args.images), "s/image",
        f"{model_note}; goal < 1 s")
    for method in ("wiener", "rl"):
        row(f"{'Wiener' if method == 'wiener' else 'Richardson-Lucy'} baseline", bench_baseline(method, image, args.images),
            "s/image", "at 1:7 with the model's pre/post-processing")
    print("\n| what | speed | unit | note |\n|---|---|---|---|")
    for what, value, unit, note in rows:
        print(f"| {what} | {value:.2f} | {unit} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
