"""Which samples a scoring run uses and where their output images go (shared by eval.score,
eval.baselines and eval.montage, which import it one way)."""
from __future__ import annotations

from pathlib import Path

from pipelines.common.errors import DataError
from pipelines.reading.hdc import find_samples


def select_samples(data, steps=None, per_font: int | None = None) -> list:
    """The text samples below `data` at `steps`, the first `per_font` per (step, font) if given.
    Raises DataError when there are none."""
    samples = find_samples(data, steps=None if steps is None else set(steps))
    if per_font is not None:
        if per_font < 1:
            raise ValueError("--samples must be at least 1")
        kept, count = [], {}
        for s in samples:
            k = (s.step, s.font)
            if count.get(k, 0) < per_font:
                kept.append(s)
                count[k] = count.get(k, 0) + 1
        samples = kept
    if not samples:
        which = "any step" if steps is None else f"steps {format_steps(steps)}"
        raise DataError(data, f"no text samples found for {which} (HDC2021 training or evaluation layout expected)")
    return samples


def format_steps(steps) -> str:
    steps = sorted(steps)
    if steps and steps == list(range(steps[0], steps[-1] + 1)) and len(steps) > 1:
        return f"{steps[0]}-{steps[-1]}"
    return ",".join(map(str, steps))


def image_path(out, method: str, sample) -> Path:
    return Path(out) / "images" / method / f"step{sample.step}" / f"{Path(sample.blurred).stem}.png"
