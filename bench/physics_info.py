"""How much the physics channel tells about the target, per blur step and Wiener balance (issue 23).

    python -m bench.physics_info --frames 8 --steps 0-19 \\
        --balances 0.0003,0.001,0.003,0.01,0.03,0.1,0.3 --out docs/physics-info.png \\
        [--multi 0.003,0.1,3 [--multi ...]] [--json docs/physics-info.json]

On `--frames` synthetic scenes per step of the training stream's generator
(`pipelines.simulation.synth.synth_pair`, stream "compare": never a training or validation scene),
the network's input is rebuilt exactly as training makes it (1:7 CAM02 image -> vignetting
correction -> median channels) and the physics channel
(`pipelines.preprocessing.deconv.physics_channel`) is computed at every balance. The plain
corrected 1:7 input (channel 0 of the network's input) is the "no deconvolution" reference.
Figures, each the mean over the frames:

- text scenes, per channel: ROC AUC of the channel's value for telling text pixels (binarised 1:7
  target < 0.5) from paper (darker = text; 0.5 = no information, 1 = perfect); the same AUC "near
  the text" (paper within NEAR_PX px of a text pixel only: are the strokes resolved, or only the
  lines found?); the Pearson correlation with the soft target (the best linear fit y ~ a + b ch).
- text scenes, channel sets: a pointwise linear fit of the target on the five median channels
  ("input"), on them plus one Wiener channel (the shipped 0.003, the step's best balance), plus each
  `--multi` set of balances, and plus all balances; fitted on half the frames and scored (R^2 and
  the AUC of the fitted value) on the other half, then the other way round. It tells whether
  several balances as channels carry more than one.
- non-text scenes (pipelines.simulation.nontext): the Spearman correlation of each channel with
  the sharp grey target (a channel that rings on photos scores below the plain input).

Pointwise figures: the network reads neighbourhoods, so they measure how directly a channel shows
the answer, not all the information it holds. One core: about 1 s per scene (12 text + 12
non-text scenes per step, 20 steps, 11 balances: 7 minutes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DEFAULT_BALANCES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
SHIPPED_BALANCE = 0.003
NEAR_PX = 2  # "auc_near": paper pixels within this many 1:7 px of text (a stroke is ~1-2 px)
FIT_PIXELS = 20_000  # pixels per frame in the channel-set fits (a fixed random subset)


# ---- figures of one frame --------------------------------------------------------------------

def auc(score, positive) -> float:
    """ROC AUC of `score` (higher = positive) for the boolean mask `positive` (Mann-Whitney U, ties
    counted half); NaN if one class is empty."""
    from scipy.stats import rankdata

    s = np.asarray(score, np.float64).ravel()
    pos = np.asarray(positive, bool).ravel()
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pearson(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a, b) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(np.ravel(a)), rankdata(np.ravel(b)))


def text_figures(channel, target, near: int = NEAR_PX) -> dict:
    """A channel (dark = text) against a text frame's 1:7 target (1 = paper): {"auc", "auc_near",
    "r"}. "auc_near" compares the text pixels with the paper within `near` px of text only (inside
    and between the glyphs): it asks whether the strokes are resolved, where the plain AUC also
    credits a channel that only shows where the lines are."""
    from scipy import ndimage

    ch, text = np.asarray(channel), np.asarray(target) < 0.5
    ring = ndimage.binary_dilation(text, iterations=int(near)) if text.any() else text
    return {"auc": auc(-ch, text), "auc_near": auc(-ch[ring], text[ring]), "r": pearson(channel, target)}


# ---- the scenes ------------------------------------------------------------------------------

def frame_channels(step: int, index: int, balances, kind: str, seed: int = 0):
    """(median channels (H, W, 5), {balance: physics channel}, target) of synthetic scene `index`
    of the step, as training builds them (physics channels from the corrected input, channel 0)."""
    from pipelines.preprocessing.deconv import physics_channels
    from pipelines.preprocessing.preprocess import PreprocessConfig
    from pipelines.simulation.synth import synth_pair

    config = PreprocessConfig()
    p = synth_pair(seed, step * 1000 + index, step=step, stream="compare", config=config, kind=kind)
    corrected = p.x[..., 0]
    stack = physics_channels(corrected, step, config.factor, list(balances))
    phys = {b: stack[..., k] for k, b in enumerate(balances)}
    return p.x, phys, p.y


def _design(median, phys, balances, idx):
    cols = [median.reshape(-1, median.shape[-1])[idx]]
    cols += [phys[b].ravel()[idx, None] for b in balances]
    x = np.concatenate(cols, axis=1).astype(np.float64)
    return np.concatenate([np.ones((len(x), 1)), x], axis=1)


def _fit_score(sets, frames_a, frames_b) -> dict:
    """For each channel set: least squares of y on it over frames_a, scored on frames_b (R^2, AUC)."""
    out = {}
    for name, balances in sets.items():
        xa = np.concatenate([f[0](balances) for f in frames_a])
        ya = np.concatenate([f[1] for f in frames_a])
        coef = np.linalg.lstsq(xa, ya, rcond=None)[0]
        xb = np.concatenate([f[0](balances) for f in frames_b])
        yb = np.concatenate([f[1] for f in frames_b])
        pred = xb @ coef
        r2 = 1 - float(np.mean((yb - pred) ** 2) / max(np.var(yb), 1e-12))
        out[name] = {"r2": r2, "auc": auc(-pred, yb < 0.5)}
    return out


def multi_name(balances) -> str:
    return "input+{" + ",".join(f"{float(b):g}" for b in balances) + "}"


def measure_step(step: int, balances, frames: int, seed: int = 0, multi=(), bar=None) -> dict:
    """Every figure of one step (module docstring) as a dict."""
    balances = [float(b) for b in balances]
    figs = ("auc", "auc_near", "r")
    text = {k: {m: [] for m in figs} for k in ["input"] + balances}
    ring = {"input": [], **{b: [] for b in balances}}
    fit_frames = []
    rng = np.random.default_rng([seed, step])
    for i in range(frames):
        median, phys, y = frame_channels(step, i, balances, "text", seed)
        for key, ch in [("input", median[..., 0])] + [(b, phys[b]) for b in balances]:
            f = text_figures(ch, y)
            for m in figs:
                text[key][m].append(f[m])
        idx = rng.choice(y.size, size=min(FIT_PIXELS, y.size), replace=False)
        design = (lambda bs, m=median, p=phys, ix=idx: _design(m, p, bs, ix))
        fit_frames.append((design, y.ravel()[idx].astype(np.float64)))
        if bar is not None:
            bar.update()
        median, phys, g = frame_channels(step, i, balances, "nontext", seed)
        ring["input"].append(spearman(median[..., 0], g))
        for b in balances:
            ring[b].append(spearman(phys[b], g))
        if bar is not None:
            bar.update()
    mean = lambda v: float(np.nanmean(v))  # noqa: E731
    row = {"step": step,
           **{m: {str(k): mean(v[m]) for k, v in text.items()} for m in figs},
           "nontext_spearman": {str(k): mean(v) for k, v in ring.items()}}
    best = max(balances, key=lambda b: row["auc"][str(b)])
    row["best_balance"] = best
    row["best_balance_near"] = max(balances, key=lambda b: row["auc_near"][str(b)])
    sets = {"input": [], f"input+{SHIPPED_BALANCE:g}": [SHIPPED_BALANCE] if SHIPPED_BALANCE in balances else [],
            "input+best": [best]}
    for m in multi:
        sets[multi_name(m)] = [float(b) for b in m]
    sets["input+all"] = balances
    if frames >= 2:
        half_a, half_b = fit_frames[0::2], fit_frames[1::2]
        s1, s2 = _fit_score(sets, half_a, half_b), _fit_score(sets, half_b, half_a)
        row["fit"] = {k: {m: (s1[k][m] + s2[k][m]) / 2 for m in ("r2", "auc")} for k in sets}
    return row


def measure(steps, balances, frames: int, seed: int = 0, multi=(), progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    missing = sorted({b for m in multi for b in m if float(b) not in [float(x) for x in balances]})
    if missing:
        raise ValueError(f"--multi balances {missing} are not among --balances")
    rows = []
    with tqdm(total=2 * frames * len(steps), desc="physics-info", unit="scene", disable=not progress,
              file=sys.stderr) as bar:
        for step in steps:
            rows.append(measure_step(step, balances, frames, seed, multi, bar))
    return rows


# ---- report ----------------------------------------------------------------------------------

def _table(rows, key: str, balances, mark_best: bool = True) -> str:
    head = "| step | input | " + " | ".join(f"{b:g}" for b in balances) + " |"
    lines = [head, "|" + "---|" * (len(balances) + 2)]
    for r in rows:
        vals = r[key]
        best = max(balances, key=lambda b: vals[str(b)]) if mark_best else None
        cells = [f"**{vals[str(b)]:.3f}**" if b == best else f"{vals[str(b)]:.3f}" for b in balances]
        lines.append(f"| {r['step']} | {vals['input']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fit_table(rows) -> str:
    names = list(rows[0]["fit"])
    lines = ["| step | best balance | " + " | ".join(f"{n} R^2 / AUC" for n in names) + " |",
             "|" + "---|" * (len(names) + 2)]
    for r in rows:
        lines.append(f"| {r['step']} | {r['best_balance']:g} | "
                     + " | ".join(f"{r['fit'][n]['r2']:.3f} / {r['fit'][n]['auc']:.3f}" for n in names) + " |")
    return "\n".join(lines)


def report(rows, balances) -> str:
    out = ["Text scenes: ROC AUC of the channel for text vs paper pixels (best balance bold)",
           _table(rows, "auc", balances), "",
           f"Text scenes: ROC AUC near the text (paper within {NEAR_PX} px of a text pixel: are the strokes resolved?)",
           _table(rows, "auc_near", balances), "",
           "Text scenes: Pearson correlation of the channel with the soft target",
           _table(rows, "r", balances), "",
           "Non-text scenes: Spearman correlation with the sharp grey target (ringing lowers it)",
           _table(rows, "nontext_spearman", balances)]
    if "fit" in rows[0]:
        out += ["", "Text scenes: pointwise linear fit of the target on channel sets (held-out frames)",
                _fit_table(rows)]
    return "\n".join(out)


def plot(rows, balances, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.common.atomic import atomic_path

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    axes = axes.ravel()
    cmap = plt.get_cmap("viridis")
    for ax, key, title in zip(axes, ("auc", "auc_near", "r", "nontext_spearman"),
                              ("text: ROC AUC, text vs paper pixels",
                               f"text: ROC AUC near the text (paper within {NEAR_PX} px of text)",
                               "text: Pearson r with the target", "non-text: Spearman with the grey target")):
        for i, b in enumerate(balances):
            ax.plot(steps, [r[key][str(b)] for r in rows], marker=".", color=cmap(i / max(1, len(balances) - 1)),
                    lw=2.2 if b == SHIPPED_BALANCE else 1.2,
                    label=f"Wiener {b:g}" + (" (shipped)" if b == SHIPPED_BALANCE else ""))
        ax.plot(steps, [r[key]["input"] for r in rows], "k--", lw=1.5, label="corrected input")
        if key == "auc" and "fit" in rows[0]:
            ax.plot(steps, [r["fit"]["input"]["auc"] for r in rows], ":", color="grey", label="fit: 5 median channels")
            for name, colour in zip([n for n in rows[0]["fit"] if n.startswith("input+{")], ("red", "orange", "brown")):
                ax.plot(steps, [r["fit"][name]["auc"] for r in rows], ":", color=colour,
                        label=f"fit: median + Wiener {name[6:]}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("blur step")
        ax.set_xticks(steps)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.axhline(0.5, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _balances(text: str) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not vals or not all(v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"balances must be positive numbers, got {text!r}")
    return vals


def main(argv=None) -> int:
    from pipelines.reading.physics import parse_steps

    ap = argparse.ArgumentParser(prog="python -m bench.physics_info", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8, help="text scenes (and as many non-text scenes) per step")
    ap.add_argument("--steps", default="0-19")
    ap.add_argument("--balances", type=_balances, default=list(DEFAULT_BALANCES))
    ap.add_argument("--multi", type=_balances, action="append", default=None,
                    help="balances of a multi-channel set for the fit table (among --balances); repeat for "
                         "several sets (default: wiener-multi's 0.003,0.1,3 and 0.003,0.03,0.3, those measured)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="PNG plot (written atomically)")
    ap.add_argument("--json", default=None, help="all figures as JSON (written atomically)")
    args = ap.parse_args(argv)
    try:
        steps = parse_steps(args.steps)
        if args.multi is None:  # the default "wiener-multi" set and the 0.003/0.03/0.3 one, where measured
            from pipelines.preprocessing.deconv import MULTI_BALANCES
            args.multi = [list(m) for m in (MULTI_BALANCES, (0.003, 0.03, 0.3))
                          if all(float(b) in args.balances for b in m)]
        if args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        t0 = time.time()
        rows = measure(steps, args.balances, args.frames, args.seed, args.multi)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.frames} text + {args.frames} non-text scenes per step, seed {args.seed}, "
          f"{time.time() - t0:.0f} s")
    print(report(rows, args.balances))
    if args.out:
        plot(rows, args.balances, args.out)
        print(f"wrote {args.out}")
    if args.json:
        from pipelines.common.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps({"frames": args.frames, "seed": args.seed, "balances": args.balances,
                                                 "multi": args.multi, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
