"""The HDC2021 submission command: deblur every image of a folder.

    python -m deblur INPUT_DIR OUTPUT_DIR STEP [--model PATH] [--batch-size N] [--method auto|tiled|full]

STEP is the blur step 0-19 of every image, or `auto`: estimate each image's step from the image
(`deblur.estimate`, using the folder's LSF calibration shots when there are any) and deblur with it;
the summary lists the estimated steps, and images whose estimate has a low confidence are named.

Reads every image in INPUT_DIR (text images, QR targets and sanity photos; the calibration shots
PSF / LSF_X / LSF_Y are skipped and counted): TIFF, PNG or JPEG, 8- or 16-bit, read to [0, 1] by
`pipelines.reading.images.load_image` (one image per name: foo.tif wins over foo.png). Writes one
8-bit grayscale PNG per input with the same
stem into OUTPUT_DIR (created if missing), at the input's full size, with the left 50 columns
white (`pipelines.common.output.to_uint8`), atomically. Without --model the shipped default model is
used.

Warnings (stderr, one line each; the images are still written): a step outside the steps the
model's card says it was trained on; with a numeric STEP, an image far from HDC2021's size or text
scale (`deblur.domain`), for which `auto` is the better choice.

Exit status: 0 all written; 1 some inputs could not be read or deblurred (each is reported with
its path and the problem; the others are still written); 2 nothing was done: bad STEP, a model
that cannot take the step or cannot be loaded, a missing or empty input folder, an output folder
that is the input folder (or a file); 130 interrupted (Ctrl-C): a one-line summary of what was
written, no partial file left. Hidden files (an interrupted write's temporary file) are not inputs.
At a fixed STEP a blank frame (nothing darker than the noise) is written with a warning.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipelines.common.errors import DataError
from pipelines.reading.physics import N_STEPS, check_step


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblur", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of blurred images (.tif, .png, .jpg)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder for the PNG results (created)")
    p.add_argument("step", metavar="STEP", help=f"blur step of the images, an integer 0-{N_STEPS - 1}, "
                                                "or 'auto' to estimate it per image")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="trained .keras model (its card PATH.json beside it); default: the shipped model")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="tiles per predict call (16)")
    p.add_argument("--method", choices=("auto", "tiled", "full"), default="auto",
                   help="tiled = as in training; full = whole image at once (same result, faster); "
                        "auto = full where it applies")
    return p


def _parse_step(text: str) -> int | None:
    """The step, or None for 'auto'."""
    if text.strip().lower() == "auto":
        return None
    try:
        return check_step(int(text))
    except ValueError:
        raise ValueError(f"STEP must be an integer blur step 0-{N_STEPS - 1} or 'auto', got {text!r}") from None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _steps_text(steps) -> str:
    """0-19 for a run of steps, else 0,2,5."""
    steps = sorted(steps)
    if len(steps) > 1 and steps == list(range(steps[0], steps[-1] + 1)):
        return f"{steps[0]}-{steps[-1]}"
    return ",".join(map(str, steps))


def _print_estimates(estimated) -> None:
    """The estimated steps: how many images at each, and the images with a low confidence."""
    from collections import Counter

    counts = Counter(e.step for _, e in estimated)
    print("estimated steps: " + ", ".join(f"step {s}: {n} image{'s' if n != 1 else ''}"
                                          for s, n in sorted(counts.items())))
    low = [(p, e) for p, e in estimated if e.warning]
    for path, e in low:
        print(f"  low confidence {e.confidence:.2f}: {path.name} (estimated step {e.step})")


def _output_problem(in_dir: Path, out_dir: Path, inputs) -> str | None:
    """Why OUTPUT_DIR cannot take the results, None if it can; checked before the model load and
    before anything is written."""
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        return f"{out_dir}: the output folder is a file (or a broken link), not a folder"
    real = os.path.realpath  # unlike Path.resolve, no error for a link loop or a missing path
    if real(out_dir) == real(in_dir):
        return f"{out_dir}: the output folder is the input folder (results would replace inputs); choose another"
    clash = [p for p in inputs if real(out_dir / f"{p.stem}.png") == real(p)]
    if clash:
        return f"{clash[0]}: the result {out_dir / (clash[0].stem + '.png')} would replace this input"
    parent = out_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{out_dir}: cannot create the output folder ({parent} is not a writable folder)"
    return None


def main(argv=None) -> int:
    state = {"written": 0, "total": 0, "out": None}  # what _run has done so far, for Ctrl-C
    try:
        return _run(argv, state)
    except KeyboardInterrupt:  # every write is atomic: the image being written is simply absent
        where = f" to {state['out']}" if state["out"] is not None else ""
        print(f"\ninterrupted: wrote {state['written']} of {state['total']} PNGs{where}; no partial file left",
              file=sys.stderr)
        return 130


def _run(argv, state: dict) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        step = _parse_step(args.step)
    except ValueError as e:
        parser.print_usage(sys.stderr)
        return _fail(str(e))
    if args.batch_size < 1:
        parser.print_usage(sys.stderr)
        return _fail(f"--batch-size must be at least 1, got {args.batch_size}")

    from pipelines.reading.hdc import is_calibration
    from pipelines.reading.images import image_files, load_image

    in_dir, out_dir = Path(args.input_dir), Path(args.output_dir)
    if not in_dir.is_dir():
        return _fail(f"{in_dir}: input folder not found")
    images = image_files(in_dir)
    calibration = [p for p in images if is_calibration(p)]
    inputs = [p for p in images if not is_calibration(p)]
    if not inputs:
        extra = f" (only {len(calibration)} calibration shots, which are skipped)" if calibration else ""
        return _fail(f"{in_dir}: no *.tif, *.png or *.jpg images to deblur{extra}")
    problem = _output_problem(in_dir, out_dir, inputs)
    if problem:
        return _fail(problem)
    state.update(total=len(inputs), out=out_dir)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipelines.common.output import to_uint8, write_png

    from .infer import Deblurrer
    from pipelines.preprocessing.flatfield import FlatFields

    try:
        deblurrer = Deblurrer.from_file(args.model, batch_size=args.batch_size, method=args.method)
        if step is not None:
            deblurrer.check_step(step)
    except (DataError, ValueError) as e:  # ModelLoadError is a DataError
        return _fail(str(e))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _fail(f"{out_dir}: cannot create the output folder ({e.strerror or e})")

    from tqdm import tqdm

    model_name = deblurrer.source if deblurrer.source is not None else "(in memory)"
    trained = deblurrer.trained_steps
    if step is None:
        from .estimate import estimate, folder_radii

        radii = folder_radii(str(in_dir.resolve()))
    else:
        from .estimate import blank_reason
        if deblurrer.outside_training(step):
            print(f"warning: the model was trained on steps {_steps_text(trained)}; step {step} is outside them "
                  "(deblurring anyway)", file=sys.stderr)
    from .domain import domain_warning
    blank: list[Path] = []  # blank frames at a fixed step: written, with a warning
    estimated: list[tuple[Path, object]] = []  # (image, deblur.estimate.Estimate) with STEP auto
    at_step = "the estimated step of each image" if step is None else f"step {step}"
    print(f"deblurring {len(inputs)} images of {in_dir} at {at_step} with {model_name}; "
          f"skipping {len(calibration)} calibration shots", flush=True)
    failed: list[tuple[Path, str]] = []
    written = 0
    per_image: list[dict[str, float]] = []  # stage seconds of every written image
    t_start = time.perf_counter()
    flats = FlatFields()
    bar = tqdm(inputs, desc="deblur", unit="img", file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name, refresh=False)
        try:
            t0 = time.perf_counter()
            image = load_image(path, expect_shape=None)
            deblurrer.check_size(image.shape)
            t1 = time.perf_counter()
            image_step = step
            if step is not None:
                why = blank_reason(image)
                if why:
                    blank.append(path)
                    bar.write(f"warning: {path}: blank frame ({why}): the output is not a deblurred text image",
                              file=sys.stderr)
            if step is None:
                est = estimate(image, radii=radii)
                estimated.append((path, est))
                if est.warning:
                    bar.write(f"warning: {path}: {est.warning}", file=sys.stderr)
                if est.step > deblurrer.max_step:
                    raise DataError(path, f"estimated blur step {est.step} (radius {est.radius_px:.0f} px, "
                                          f"confidence {est.confidence:.2f}) is beyond the model's steps "
                                          f"0-{deblurrer.max_step}")
                if deblurrer.outside_training(est.step):
                    bar.write(f"warning: {path}: estimated blur step {est.step} is outside the steps the model "
                              f"was trained on ({_steps_text(trained)}); deblurring anyway", file=sys.stderr)
                image_step = est.step
            else:
                far = domain_warning(image)
                if far:
                    bar.write(f"warning: {path}: {far}", file=sys.stderr)
            t1e = time.perf_counter()
            # the camera's illumination from the folder's text images of this step (a photo's own
            # border is scene, not paper; pipelines/preprocessing/flatfield.py)
            result = deblurrer.deblur(image, image_step, flat=flats(path, image_step, deblurrer.preprocess.factor, image.shape))
            t2 = time.perf_counter()
            write_png(out_dir / f"{path.stem}.png", to_uint8(result))
            t3 = time.perf_counter()
        except DataError as e:
            failed.append((path, e.problem))
        except Exception as e:  # one bad image must not stop a submission run
            failed.append((path, f"{type(e).__name__}: {e}"))
        else:
            written += 1
            state["written"] = written
            per_image.append({"total": t3 - t0, "read": t1 - t0, "estimate": t1e - t1, "write": t3 - t2,
                              **{k: deblurrer.timings.get(k, 0.0) for k in ("preprocess", "predict", "stitch")}})
            continue
        bar.write(f"failed: {failed[-1][0]}: {failed[-1][1]}", file=sys.stderr)
    bar.close()
    total = time.perf_counter() - t_start

    print(f"wrote {written} PNG{'s' if written != 1 else ''} to {out_dir}")
    print(f"skipped {len(calibration)} calibration shot{'s' if len(calibration) != 1 else ''}"
          + (f" ({', '.join(p.name for p in calibration)})" if calibration else ""))
    if written:
        # the first image also pays for building the graph (tracing): leave it out of the stages
        steady = per_image[1:] or per_image
        per = {k: sum(t[k] for t in steady) / len(steady) for k in steady[0]}
        print(f"{total / len(inputs):.2f} s per image over {len(inputs)} images; "
              f"{per['total']:.2f} s per image{' after the first' if len(per_image) > 1 else ''} "
              f"(read {per['read']:.2f}, " + (f"estimate {per['estimate']:.2f}, " if step is None else "")
              + f"preprocess {per['preprocess']:.2f}, predict {per['predict']:.2f} "
              f"[{deblurrer.last_method}], stitch+upscale {per['stitch']:.2f}, write {per['write']:.2f})")
    if estimated:
        _print_estimates(estimated)
    if blank:
        print(f"blank frames (written, but nothing to deblur): {', '.join(p.name for p in blank)}", file=sys.stderr)
    if failed:
        print(f"failed {len(failed)}:", file=sys.stderr)
        for path, problem in failed:
            print(f"  {path}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
