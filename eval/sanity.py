"""The HDC2021 sanity check, measured: does a method deblur general images, or paint text?

Per sanity image (a photo `focusStep_N_Image_<name>` or the `focusStep_N_QRcode` target, read by
`pipelines.reading.hdc.find_sanity`): the Spearman rank correlation between the method's output and
the sharp image in the blurred image's frame, both area-downscaled 1:8
(`pipelines.preprocessing.preprocess.downscale`), on the central region without the outer MARGIN of
each side (the borders, where the frames' fields of view and the blur's edge handling differ, must
not dominate). Rank correlation does not depend on the intensity mapping (any monotone contrast
stretch scores the same), only on the order of the grey levels: a text texture painted over a photo
ranks its pixels by stroke, not by scene.

The sharp reference works for real data too: CAM01 down-scaled 1:8, divided by CAM01's illumination
(the vignetted white background fitted on the text images of the same step and folder,
`flat_field`: a photo's own border cannot tell illumination from scene, and on a low-contrast photo
like "moon" the 5-15 % vignetting is a larger signal than the scene), then warped into the CAM02
frame with the physics table's geometry
(`pipelines.preprocessing.registration.warp_to_blurred_frame`, as
`pipelines.simulation.synth.target_small` does). On simulated data it agrees with the noise-free
scene (`pipelines.simulation.scene.sample_camera` in the step's geometry) to about 0.03
(`--compare-reference`).

The output is scored as it is: a method that keeps the blurred camera's vignetting is judged with it
(on "moon", whose contrast is below the vignetting's, that costs the photo). It is not forgiven by
also scoring the output divided by CAM02's illumination: that division orders the tied pixels of a
saturated (white-washed) output along the illumination gradient, and raises a text-painting
output's score (~0.15 on the shipped model's median) for nothing it did.

A step passes when, over the step's photos, the median correlation is >= MEDIAN_MIN and none is
below FLOOR (docs/sanity.md: the calibration and why). The QR target is reported, not judged.

    python -m eval.sanity --compare-reference --data DIR [--steps 0-19]   # the reference, checked
    python -m eval.sanity --sweep-balance 0.1,1,3,10,30 --data DIR        # wiener-reg's balance
    python -m eval.sanity --vignetting --data DIR                         # own fit vs flat field

TensorFlow is never imported here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pipelines.preprocessing.preprocess import downscale
from pipelines.preprocessing.registration import warp_to_blurred_frame
from pipelines.reading import physics as P

from pipelines.preprocessing.flatfield import flat_field  # the illumination of a folder's text images

FACTOR = 8          # both images area-downscaled 1:8 before comparing
MARGIN = 0.05       # fraction of each side left out
MEDIAN_MIN = 0.6    # a step passes: median over its photos >= MEDIAN_MIN ...
FLOOR = 0.2         # ... and no photo below FLOOR


def reference(sharp, step: int, shape=None, factor: int = FACTOR, flat=None) -> np.ndarray:
    """The sharp (CAM01) full-size image at 1:`factor` in the blurred (CAM02) frame, with the
    physics table's geometry of `step`; `shape`: the 1:`factor` shape of the blurred image
    (default: the sharp one's); `flat`: CAM01's illumination at 1:`factor` (`flat_field`), divided out."""
    small = downscale(np.asarray(sharp, dtype=np.float32), factor)
    if flat is not None and np.shape(flat) == small.shape:  # (text images of another size: none)
        small = small / np.maximum(np.asarray(flat, dtype=np.float32), 1e-3)
    ph = P.step_physics(int(step))
    params = (ph["scale_x"], ph["scale_y"], ph["shift_x"] / factor, ph["shift_y"] / factor)
    return warp_to_blurred_frame(small, params, output_shape=shape or small.shape)


def central(a: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """`a` without the outer `margin` fraction of each side."""
    h, w = a.shape[:2]
    dy, dx = int(round(margin * h)), int(round(margin * w))
    return a[dy:h - dy, dx:w - dx]


def rank_correlation(a, b, margin: float = MARGIN) -> float:
    """Spearman rank correlation of two same-shape images on their central region (ties get their
    mean rank); 0 when either is constant there (no ordering at all)."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    ra = rankdata(central(a, margin).ravel())
    rb = rankdata(central(b, margin).ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def correlation(output, ref_small, factor: int = FACTOR, margin: float = MARGIN) -> float:
    """The sanity measure of one full-size output image (any intensity scale, CAM02 frame) against
    its 1:`factor` reference (`reference`)."""
    out_small = downscale(np.asarray(output, dtype=np.float32), factor)
    if out_small.shape != np.shape(ref_small):
        raise ValueError(f"output of shape {np.shape(output)} does not match the reference "
                         f"({np.shape(ref_small)} at 1:{factor})")
    return rank_correlation(out_small, ref_small, margin)


def step_verdict(values) -> dict:
    """{"n", "median", "min", "passed"} of one step's photo correlations (passed None: no photos)."""
    v = [float(x) for x in values]
    if not v:
        return {"n": 0, "median": None, "min": None, "passed": None}
    med, low = float(np.median(v)), float(np.min(v))
    return {"n": len(v), "median": med, "min": low, "passed": bool(med >= MEDIAN_MIN and low >= FLOOR)}


# --------------------------------------------------------------------------------------------
# scoring a method's outputs (eval.score)
# --------------------------------------------------------------------------------------------

SANITY_FIELDS = ("sanity_n", "sanity_median", "sanity_min", "sanity_gain", "sanity_qrcode", "sanity_passed")


def select_sanity(data, steps=None) -> list:
    """The sanity captures below `data` at `steps`, one per (step, name): the simulator's training
    layout holds each in both font folders, the second copy is left out."""
    from pipelines.reading.hdc import find_sanity

    chosen, seen = [], set()
    for s in find_sanity(data, None if steps is None else set(steps)):
        if (s.step, s.name) not in seen:
            seen.add((s.step, s.name))
            chosen.append(s)
    return chosen


class SanityScorer:
    """Correlations of outputs with their sanity sample's reference (references and CAM01 flat
    fields cached: every method is scored against the same ones)."""

    def __init__(self, factor: int = FACTOR, margin: float = MARGIN):
        self.factor, self.margin = factor, margin
        self._flats: dict = {}
        self._refs: dict = {}

    def flat(self, sample):
        key = (str(Path(sample.sharp).parent), sample.step)
        if key not in self._flats:
            self._flats[key] = flat_field(Path(sample.sharp).parent, sample.step, self.factor)
        return self._flats[key]

    def reference(self, sample) -> np.ndarray:
        if sample.key not in self._refs:
            from pipelines.reading.images import load_image

            sharp = load_image(sample.sharp, expect_shape=None)
            flat = self.flat(sample)
            shape = downscale(load_image(sample.blurred, expect_shape=None), self.factor).shape
            self._refs[sample.key] = reference(sharp, sample.step, shape, self.factor, flat)
        return self._refs[sample.key]

    def __call__(self, sample, output) -> float:
        return correlation(output, self.reference(sample), self.factor, self.margin)

    def blurred(self, sample) -> float:
        """The blurred input's own correlation (what doing nothing scores: as the `identity`
        method outputs it, 8-bit), cached."""
        key = ("blurred", sample.key)
        if key not in self._refs:
            from pipelines.common.output import to_uint8
            from pipelines.reading.images import load_image

            out = to_uint8(load_image(sample.blurred, expect_shape=None))
            self._refs[key] = self(sample, out.astype(np.float32) / np.float32(255))  # as a PNG reads
        return self._refs[key]

    def sharp_output(self, sample) -> np.ndarray:
        """The `sharp` leaderboard method on a sanity image: CAM01 with its illumination divided out,
        in the CAM02 frame, full size, uint8 (the reference at full size: the ceiling, ~1)."""
        from pipelines.common.output import to_uint8
        from pipelines.preprocessing.preprocess import upscale
        from pipelines.reading.images import load_image

        sharp = load_image(sample.sharp, expect_shape=None)
        flat = self.flat(sample)
        if flat is not None and flat.shape == downscale(sharp, self.factor).shape:
            sharp = sharp / np.maximum(upscale(flat, sharp.shape), 1e-3)
        out = warp_to_blurred_frame(sharp, P.step_physics(sample.step),
                                    output_shape=load_image(sample.blurred, expect_shape=None).shape)
        return to_uint8(np.clip(out, 0, 1))


def sanity_records(method: str, samples, paths, scorer: SanityScorer, out=None) -> list[dict]:
    """Per-image records {method, step, name, photo, rho, rho_blurred (the input's own), image,
    blurred} of a method's output PNGs."""
    from pipelines.reading.images import load_image

    recs = []
    for s, p in zip(samples, paths):
        rho = scorer(s, load_image(p, expect_shape=None))
        recs.append({"method": method, "step": s.step, "name": s.name, "photo": s.is_photo, "rho": rho,
                     "rho_blurred": scorer.blurred(s),
                     "image": str(Path(p).relative_to(out)) if out is not None else str(p),
                     "blurred": str(s.blurred)})
    return recs


def aggregate_sanity(records) -> dict:
    """{(method, step): {sanity_n, sanity_median, sanity_min, sanity_gain, sanity_qrcode,
    sanity_passed}}: the verdict over the step's photos (`step_verdict`); beside it, reported but not
    judged, the median gain over the blurred input (rho - rho_blurred per photo: below 0, the method
    makes photos less like the scene than doing nothing) and the QR target's correlation."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["method"], int(r["step"])), []).append(r)
    out = {}
    for key, rs in groups.items():
        v = step_verdict(r["rho"] for r in rs if r["photo"])
        qr = [r["rho"] for r in rs if not r["photo"]]
        gain = [r["rho"] - r["rho_blurred"] for r in rs if r["photo"] and r.get("rho_blurred") is not None]
        out[key] = {"sanity_n": v["n"], "sanity_median": v["median"], "sanity_min": v["min"],
                    "sanity_gain": float(np.median(gain)) if gain else None,
                    "sanity_qrcode": float(np.mean(qr)) if qr else None, "sanity_passed": v["passed"]}
    return out


def attach(rows, sanity: dict, methods, ocr_fields) -> list[dict]:
    """The leaderboard rows with the sanity fields added (None where a step has no sanity image);
    a (method, step) with sanity images but no text row gets a row of its own (`ocr_fields` None)."""
    by = {(r["method"], r["step"]): dict(r) for r in rows}
    for key in sanity:
        if key not in by:
            by[key] = {**{f: None for f in ocr_fields}, "method": key[0], "step": key[1], "n": 0}
    empty = {f: None for f in SANITY_FIELDS}
    order = {m: i for i, m in enumerate(methods)}
    merged = [{**r, **sanity.get(k, empty)} for k, r in by.items()]
    return sorted(merged, key=lambda r: (order.get(r["method"], len(order)), r["step"]))


def _chain(rows, method, ok) -> int | None:
    """The highest step up to which every step from 0 is `ok` (-1: step 0 is not; None: the method
    has rows, but none at step 0, so a subset cannot tell, as eval.score.highest_step_passed)."""
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["step"])
    if mine and mine[0]["step"] != 0:
        return None
    best = -1
    for r in mine:
        if r["step"] != best + 1 or not ok(r):
            break
        best = r["step"]
    return best


def highest_sanity_step(rows, method) -> int | None:
    """The sanity check alone: passed at every step from 0 up to it (-1 if step 0 fails); None
    when the method has no sanity measurement or no row at step 0."""
    if not any(r.get("sanity_passed") is not None for r in rows if r["method"] == method):
        return None
    return _chain(rows, method, lambda r: r.get("sanity_passed") is True)


def highest_step_passed_with_sanity(rows, method, pass_score: float) -> int | None:
    """The challenge rule with the sanity check: OCR score >= `pass_score` AND sanity passed at
    every step from 0 up to it; None when the method has no sanity measurement or no row at step 0."""
    if highest_sanity_step(rows, method) is None:
        return None
    return _chain(rows, method, lambda r: r.get("score") is not None and r["score"] >= pass_score
                  and r.get("sanity_passed") is True)


def _f(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_sanity(rows, with_ocr: bool = True, pass_score: float = 70) -> str:
    """Per step and method: median / min rank correlation over the photos and pass, then the
    highest steps (sanity alone; OCR and sanity, the challenge rule)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    steps = sorted({r["step"] for r in rows if r.get("sanity_n")})
    by = {(r["method"], r["step"]): r for r in rows}
    lines = [f"sanity check (rank correlation with the sharp image at 1:{FACTOR}, photos: median/min; "
             f"pass: median >= {MEDIAN_MIN} and min >= {FLOOR}):",
             f"{'step':>4} " + " ".join(f"{m:>19}" for m in methods)]
    for s in steps:
        cells = []
        for m in methods:
            r = by.get((m, s))
            if r is None or not r.get("sanity_n"):
                cells.append(f"{'-':>19}")
            else:  # three decimals: 0.595 must not read as a passing 0.60
                flag = "pass" if r["sanity_passed"] else "FAIL"
                cells.append(f"{_f(r['sanity_median'], 3):>6}/{_f(r['sanity_min'], 3):>6} {flag:>5}")
        lines.append(f"{s:>4} " + " ".join(cells))
    lines += ["median gain over the blurred input (rho - the input's own, per photo; reported, not judged):",
              f"{'step':>4} " + " ".join(f"{m:>19}" for m in methods)]
    for s in steps:
        cells = [by.get((m, s), {}).get("sanity_gain") for m in methods]
        lines.append(f"{s:>4} " + " ".join(f"{'-' if g is None else f'{g:+.3f}':>19}" for g in cells))
    lines.append("sanity check passed at every step up to: "
                 + ", ".join(f"{m} {_n(highest_sanity_step(rows, m))}" for m in methods))
    if with_ocr:
        lines.append(f"highest step passed with the sanity check (OCR >= {pass_score:g} and sanity passed "
                     "at every step up to it): "
                     + ", ".join(f"{m} {_n(highest_step_passed_with_sanity(rows, m, pass_score))}"
                                 for m in methods))
    return "\n".join(lines)


def _n(v) -> str:
    return "n/a" if v is None else str(v)


def scene_reference(name: str, step: int, factor: int = FACTOR) -> np.ndarray:
    """Simulated data only: the noise-free scene of sanity photo `name` in CAM02's geometry of
    `step` (no optics, noise or vignetting), 1:`factor`."""
    from pipelines.simulation.scene import render_photo, sample_camera

    return downscale(sample_camera(render_photo(name), P.step_physics(int(step))), factor)


def compare_reference(data, steps=None) -> list[dict]:
    """Per step of a simulated set: median over the photos of the blurred image's correlation with
    the CAM01 reference (`SanityScorer`: flat-fielded, warped) and with the noise-free scene
    (`scene_reference`), and the largest difference between the two over the photos."""
    from pipelines.reading.images import load_image

    scorer = SanityScorer()
    samples = [s for s in select_sanity(data, steps) if s.is_photo]
    rows = []
    for step in sorted({s.step for s in samples}):
        cam01, scene = [], []
        for s in (x for x in samples if x.step == step):
            blurred = load_image(s.blurred, expect_shape=None)
            cam01.append(scorer(s, blurred))
            scene.append(correlation(blurred, scene_reference(s.name, step)))
        rows.append({"step": step, "n": len(cam01), "cam01": float(np.median(cam01)),
                     "scene": float(np.median(scene)),
                     "max_abs_diff": float(np.max(np.abs(np.subtract(cam01, scene))))})
    return rows


def sweep_balance(data, balances, steps=None) -> list[dict]:
    """Per step: median and minimum over the photos of wiener-reg (`eval.baselines.RegularisedWiener`)
    at each balance, and of the blurred image itself (balance None)."""
    from pipelines.reading.images import load_image

    from .baselines import RegularisedWiener

    scorer = SanityScorer()
    methods = {b: RegularisedWiener(data, b) for b in balances}
    samples = [s for s in select_sanity(data, steps) if s.is_photo]
    rows = []
    for step in sorted({s.step for s in samples}):
        values: dict = {None: []} | {b: [] for b in balances}
        for s in (x for x in samples if x.step == step):
            values[None].append(scorer(s, load_image(s.blurred, expect_shape=None)))
            for b, m in methods.items():
                values[b].append(scorer(s, m(s)))
        rows.append({"step": step, **{b: step_verdict(v) for b, v in values.items()}})
    return rows


def compare_vignetting(data, steps=None, factor: int = 7) -> list[dict]:
    """Per step: median and minimum over the photos of the blurred input at 1:`factor` with the
    vignetting divided out, by the image's own border fit ("own") and by the folder's flat field
    where the own fit is not paper ("flat", `pipelines.preprocessing.preprocess.choose_background`),
    up-scaled to full size: what the network's first input channel keeps of a photo."""
    from pipelines.preprocessing.flatfield import FlatFields
    from pipelines.preprocessing.preprocess import remove_vignetting, upscale
    from pipelines.reading.images import load_image

    scorer, flats = SanityScorer(), FlatFields()
    samples = [s for s in select_sanity(data, steps) if s.is_photo]
    rows = []
    for step in sorted({s.step for s in samples}):
        values: dict = {"own": [], "flat": []}
        for s in (x for x in samples if x.step == step):
            image = load_image(s.blurred, expect_shape=None)
            small = downscale(image, factor)
            for name, flat in (("own", None), ("flat", flats(s.blurred, step, factor))):
                corrected, _ = remove_vignetting(small, flat=flat)
                values[name].append(scorer(s, upscale(corrected, image.shape, factor=factor)))
        rows.append({"step": step, **{k: step_verdict(v) for k, v in values.items()}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.sanity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-reference", action="store_true",
                    help="simulated data: the CAM01 reference vs the noise-free scene, on the blurred images")
    ap.add_argument("--sweep-balance", metavar="B1,B2,...",
                    help="wiener-reg at these balances: median/min over the photos per step")
    ap.add_argument("--vignetting", action="store_true",
                    help="the blurred input with the vignetting divided out by its own border fit vs by "
                         "the folder's flat field: median/min over the photos per step")
    ap.add_argument("--data", required=True, help="a simulated HDC2021 set with sanity photos")
    ap.add_argument("--steps", default="0-19")
    args = ap.parse_args(argv)
    if not (args.compare_reference or args.sweep_balance or args.vignetting):
        ap.error("nothing to do: pass --compare-reference, --sweep-balance and/or --vignetting "
                 "(the leaderboard's sanity columns: python -m eval.score --sanity-only)")
    try:
        steps = P.parse_steps(args.steps)
        balances = [float(b) for b in args.sweep_balance.split(",")] if args.sweep_balance else []
        if any(not b > 0 for b in balances):
            raise ValueError("balances must be > 0")
    except ValueError as e:
        ap.error(str(e))
    from pipelines.common.errors import DataError
    try:
        rows = compare_reference(args.data, set(steps)) if args.compare_reference else None
        sweep = sweep_balance(args.data, balances, set(steps)) if balances else None
        vig = compare_vignetting(args.data, set(steps)) if args.vignetting else None
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not (rows or sweep or vig):
        print(f"error: {args.data}: no sanity photos at steps {args.steps}", file=sys.stderr)
        return 1
    if rows:
        print("| step | photos | blurred vs CAM01 reference (median) | blurred vs noise-free scene (median) "
              "| largest difference |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['step']} | {r['n']} | {r['cam01']:.3f} | {r['scene']:.3f} | {r['max_abs_diff']:.3f} |")
    if sweep:
        print("\nmedian/min over the photos, * = passes\n| step | blurred | "
              + " | ".join(f"wiener-reg {b:g}" for b in balances) + " |\n" + "|---" * (len(balances) + 2) + "|")
        for r in sweep:
            cells = [f"{_f(r[b]['median'])}/{_f(r[b]['min'])}{'*' if r[b]['passed'] else ''}" for b in [None] + balances]
            print(f"| {r['step']} | " + " | ".join(cells) + " |")
    if vig:
        print("\nthe blurred input at 1:7, vignetting divided out; median/min over the photos, * = passes\n"
              "| step | own border fit | flat field |\n|---|---|---|")
        for r in vig:
            cells = [f"{_f(r[k]['median'])}/{_f(r[k]['min'])}{'*' if r[k]['passed'] else ''}" for k in ("own", "flat")]
            print(f"| {r['step']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
