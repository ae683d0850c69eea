"""Throughput of `python -m pipelines.prepare`, and where one pair's time goes.

    python -m bench.prepare_bench [--pairs 40] [--workers 1,2] [--modes step,pair,table,none]
        [--steps 4,9] [--data DIR] [--accuracy]

Simulates --pairs image pairs (`pipelines.simulation.simulate.simulate`, spread over --steps and
both fonts) into a temporary folder (or uses an existing set given by --data), then prints

1. the time of every stage of one pair (best of 3, in this process): load TIFFs, downscale (both
   images), vignetting, median channels, binarise, registration (one pair's estimate), warp of the
   target, tiling, shard write (float16 + .npz + SHA-256);
2. prepare's throughput for every registration mode x number of workers: pairs/s over the wall
   clock of the whole `prepare` call (worker start-up and the step registration included), and a
   projection to the real training set (4000 pairs, 20 steps x 200): the step registration costs
   per step, the rest per pair; and the CPU time per pair (this process and its workers, start-up
   included), whose inverse x workers is what the cores would give if nothing else ran on them.

--accuracy prints instead the registration error per step against the simulator's truth (the
physics table, `pipelines.reading.physics.step_physics`): of every pair's own estimate (pair mode)
and of the step median that --registration step applies (`estimate_step_geometry`), as the largest
misalignment over the image in full-size pixels (`residual_misalignment`). Simulate more pairs per
step for it, e.g. --steps 0-19 --pairs 120.

Like the prepare command, this runs with one BLAS thread per process
(pipelines.common.threads.ONE_THREAD_ENV). The numbers depend on what else runs on the machine:
the load average is printed before and after.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # one BLAS thread, before numpy loads: see pipelines/common/threads.py
    for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_k, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REAL_PAIRS, REAL_STEPS = 4000, 20


def _best(fn, reps=3):
    best, out = math.inf, None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def stage_times(sample, cfg, tmp: Path, reps: int = 3) -> list[tuple[str, float]]:
    """Seconds of each stage of one pair, with the functions prepare uses."""
    from pipelines.preparation.shards import write_shard
    from pipelines.preparation.stages import estimate_pair_geometry
    from pipelines.preprocessing.preprocess import PreprocessConfig, binarise_target, downscale, median_channels, remove_vignetting
    from pipelines.preprocessing.registration import warp_to_blurred_frame
    from pipelines.preprocessing.tiling import TileGrid
    from pipelines.reading.hdc import load_pair

    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    f = pre.factor
    rows = []

    def timed(name, fn, n=reps):
        t, out = _best(fn, n)
        rows.append((name, t))
        return out

    sharp, blurred = timed("load TIFFs (2)", lambda: load_pair(sample))
    small, s_small = timed("downscale (2)", lambda: (downscale(blurred, f), downscale(sharp, f)))
    corrected, _ = timed("vignetting", lambda: remove_vignetting(
        small, pre.vignetting, terms=pre.terms, border=pre.border, n_samples=pre.n_samples,
        discard=pre.discard, seed=pre.seed))
    channels = timed("median channels", lambda: median_channels(corrected, pre.median_widths))
    target = timed("binarise", lambda: binarise_target(s_small, pre.white_fraction,
                                                       near_black_radius=pre.near_black_radius,
                                                       black_level=pre.black_level))
    est = timed("registration (estimate, 1 pair)",
                lambda: estimate_pair_geometry(s_small, small, sample.step, f), n=min(reps, 2))
    reg = timed("warp target", lambda: warp_to_blurred_frame(target, est.params, output_shape=small.shape, cval=1.0))

    def tiles():
        grid = TileGrid.for_image(channels.shape[:2], cfg["in_size"], cfg["out_size"])
        return grid.extract(channels), np.rint(np.clip(grid.extract_windows(reg), 0, 1) * 255).astype(np.uint8)

    x, y = timed("tiling", tiles)
    timed("shard write", lambda: write_shard(tmp / "bench-shard.npz", x, y, np.zeros(len(x)), np.zeros(len(x))))
    return rows


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_mode(data, out, steps, mode, workers) -> dict:
    from pipelines.preparation.prepare import prepare

    c0, t0 = _cpu_seconds(), time.perf_counter()
    m = prepare(data, out, steps, workers=workers, registration=mode, progress=False, overwrite=True)
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - c0  # the pool's workers are joined (and counted) when prepare returns
    pairs = m["pairs_processed"]
    reg = m["seconds_registration"]
    per_pair = max(wall - reg, 1e-9) / pairs
    projected = REAL_STEPS / len(steps) * reg + REAL_PAIRS * per_pair
    return {"mode": mode, "workers": m["workers"], "pairs": pairs, "seconds": wall, "rate": pairs / wall,
            "registration_s": reg, "projected_min": projected / 60, "cpu_ms": cpu / pairs * 1e3,
            "idle_rate": m["workers"] * pairs / cpu}


def _pair_error(job):
    from pipelines.preparation.stages import estimate_pair_geometry
    from pipelines.preprocessing.preprocess import downscale
    from pipelines.preprocessing.registration import residual_misalignment
    from pipelines.reading.hdc import load_pair

    sample, factor = job
    sharp, blurred = load_pair(sample)
    b_small = downscale(blurred, factor)
    est = estimate_pair_geometry(downscale(sharp, factor), b_small, sample.step, factor)
    return residual_misalignment(_truth(sample.step, factor), est, b_small.shape) * factor


def _step_error(job):
    from pipelines.preparation.stages import estimate_step_geometry
    from pipelines.preprocessing.preprocess import downscaled_shape
    from pipelines.preprocessing.registration import residual_misalignment

    samples, cfg = job
    factor = float(cfg["preprocess"]["factor"])
    rec = estimate_step_geometry(samples, cfg)
    shape = downscaled_shape((1460, 2360), factor)
    return residual_misalignment(_truth(samples[0].step, factor), rec, shape) * factor, rec["spread_full_px"]


def _truth(step, factor):
    from pipelines.reading.physics import step_physics

    ph = step_physics(step)
    return (ph["scale_x"], ph["scale_y"], ph["shift_x"] / factor, ph["shift_y"] / factor)


def accuracy(samples, cfg, workers) -> None:
    """Print the registration error per step (pair estimates and step median) against the truth."""
    from pipelines.preparation.prepare import run_jobs, worker_pool

    factor = float(cfg["preprocess"]["factor"])
    steps = sorted({s.step for s in samples})
    with worker_pool(workers) as pool:
        pair_err = run_jobs(pool, _pair_error, [(s, factor) for s in samples])
        step_err = run_jobs(pool, _step_error, [([s for s in samples if s.step == st], cfg) for st in steps])
    print(f"\n## Registration error vs the simulator's truth, full-size px (largest misalignment over the image)\n")
    print(f"| step | pairs | pair mode: median | pair mode: worst | step median ({cfg['registration_pairs']} pairs) "
          "| spread of its estimates |\n|---|---|---|---|---|---|")
    for st, (err, spread) in zip(steps, step_err):
        e = [x for s, x in zip(samples, pair_err) if s.step == st]
        print(f"| {st} | {len(e)} | {np.median(e):.2f} | {max(e):.2f} | {err:.2f} | {spread:.2f} |")


def main(argv=None) -> int:
    from pipelines.preparation.stages import REGISTRATION_MODES, make_config
    from pipelines.reading.hdc import find_samples
    from pipelines.reading.physics import parse_steps
    from pipelines.simulation.simulate import simulate

    ap = argparse.ArgumentParser(prog="python -m bench.prepare_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40, help="pairs to simulate (spread over --steps, both fonts)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--modes", default="step,pair,table,none", help="comma-separated registration modes")
    ap.add_argument("--steps", default="4,9", help="blur steps to simulate, e.g. 4,9 or 0-19")
    ap.add_argument("--data", type=Path, default=None, help="use this data set instead of simulating one")
    ap.add_argument("--accuracy", action="store_true",
                    help="measure the registration error per step instead of the throughput")
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    try:
        steps = parse_steps(args.steps)
    except ValueError as e:
        ap.error(str(e))
    bad = [m for m in modes if m not in REGISTRATION_MODES]
    if bad or args.pairs < 1 or min(workers) < 1:
        ap.error(f"need --pairs >= 1, --workers >= 1 and modes from {REGISTRATION_MODES}")

    print(f"# prepare benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "sim"
            per_font = max(1, math.ceil(args.pairs / (2 * len(steps))))
            t0 = time.perf_counter()
            simulate(data, steps, samples=per_font, seed=11, workers=max(workers), progress=False)
            print(f"simulated {2 * per_font * len(steps)} pairs (steps {steps}) in {time.perf_counter() - t0:.1f} s")
        samples = find_samples(data, steps=set(steps))
        if not samples:
            ap.error(f"no text samples for steps {steps} in {data}")

        cfg = make_config(data, steps)
        if args.accuracy:
            accuracy(samples, cfg, max(workers))
            return 0
        sample = samples[len(samples) // 2]
        rows = stage_times(sample, cfg, tmp)
        total = sum(t for _, t in rows)
        reg = dict(rows)["registration (estimate, 1 pair)"]
        print(f"\n## One pair (step {sample.step}, {sample.font}), best of 3\n")
        print("| stage | ms | share |\n|---|---|---|")
        for name, t in rows:
            print(f"| {name} | {t * 1e3:.1f} | {t / total:.0%} |")
        print(f"| total, registration per pair | {total * 1e3:.1f} | 100% |")
        print(f"| total, without it (step / table / none) | {(total - reg) * 1e3:.1f} | {(total - reg) / total:.0%} |")

        print(f"\n## prepare throughput ({len(samples)} pairs, steps {steps})\n")
        print("| registration | workers | seconds | pairs/s | of which step registration s "
              f"| projected {REAL_PAIRS} pairs, min | CPU ms/pair | pairs/s if the cores were idle |\n"
              "|---|---|---|---|---|---|---|---|")
        for mode in modes:
            for w in workers:
                r = run_mode(data, tmp / f"prep-{mode}-{w}", steps, mode, w)
                print(f"| {mode} | {r['workers']} | {r['seconds']:.1f} | {r['rate']:.1f} | "
                      f"{r['registration_s']:.1f} | {r['projected_min']:.1f} | {r['cpu_ms']:.0f} | "
                      f"{r['idle_rate']:.1f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
