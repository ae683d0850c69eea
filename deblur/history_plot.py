"""Plot a training run's curves: loss, val_loss and, per step, the validation excess loss per epoch.

    python -m deblur.history_plot RUN_DIR [RUN_DIR ...] [--out FIRST_RUN_DIR/history.png]

Per-step curves show where the model is still learning and which steps it has given up on. They show
the excess loss (cross-entropy minus the soft targets' own entropy, the part a model can still gain;
log scale) where history.csv has it, else the cross-entropy (older runs); with OCR validation
(`python -m eval.train --ocr-val-every K`), a third panel shows the OCR score per validated step. Several
run folders are the phases of one model (each started with --init from the one before): their
epochs are drawn one after the other, a dashed line where a phase starts (phases may validate on
different scenes, e.g. another --seed, so a jump there is not a change of the model).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common.atomic import atomic_path


def read_history(run_dir) -> list[dict]:
    from .train import read_history_csv

    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {run_dir} a training run folder?)")
    return read_history_csv(path)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and v == v and abs(v) != float("inf")


def plot_history(run_dirs, out=None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    rows, starts = [], []
    for run in runs:
        part = read_history(run)
        if not part:
            raise ValueError(f"{run}: history.csv has no finished epoch yet")
        starts.append(len(rows) + 0.5)
        rows += part
    out = Path(out) if out else Path(runs[0]) / "history.png"
    epochs = list(range(1, len(rows) + 1))
    steps = sorted(int(k.removeprefix("val_loss_step")) for k in rows[0] if k.startswith("val_loss_step"))
    excess = all(f"val_excess_step{s}" in r for r in rows for s in steps[:1])
    key = "val_excess_step" if excess else "val_loss_step"
    ocr_steps = sorted({int(k.removeprefix("val_ocr_step")) for r in rows for k in r
                        if k.startswith("val_ocr_step")})
    fig, axes = plt.subplots(1, 3 if ocr_steps else 2, figsize=(16.5 if ocr_steps else 11, 4))
    a, b = axes[0], axes[1]
    a.plot(epochs, [r.get("loss") for r in rows], label="train loss")
    a.plot(epochs, [r.get("val_loss") for r in rows], label="val loss")
    a.set(xlabel="epoch", ylabel="binary cross-entropy", title="overall")
    a.legend()
    cmap = plt.get_cmap("viridis")
    for i, s in enumerate(steps):
        b.plot(epochs, [r.get(f"{key}{s}") for r in rows], color=cmap(i / max(1, len(steps) - 1)),
               label=f"step {s}")
    if excess:
        b.set(yscale="log", xlabel="epoch", ylabel="val excess loss (cross-entropy - target entropy)",
              title="validation excess loss per blur step")
    else:
        b.set(xlabel="epoch", ylabel="val binary cross-entropy", title="validation loss per blur step")
    b.legend(fontsize=7, ncol=2)
    if ocr_steps:  # only the validated epochs (the others are NaN or absent)
        c = axes[2]
        for i, s in enumerate(ocr_steps):
            pts = [(e, r[f"val_ocr_step{s}"]) for e, r in zip(epochs, rows) if _finite(r.get(f"val_ocr_step{s}"))]
            if pts:
                c.plot(*zip(*pts), marker="o", color=cmap(i / max(1, len(ocr_steps) - 1)), label=f"step {s}")
        c.axhline(70, color="grey", linestyle=":", linewidth=0.8)
        c.set(xlabel="epoch", ylabel="mean official OCR score", ylim=(0, 100),
              title="OCR validation (pass: 70)")
        c.legend(fontsize=7, ncol=2)
    for x in starts[1:]:
        for ax in axes:
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="+", help="one run, or the phases of one model in order")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    try:
        print(f"wrote {plot_history(args.run_dir, args.out)}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
