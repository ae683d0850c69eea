"""A small picture of what the leaderboard methods do: at a few steps, one sample each, the blurred
input, every method's output and the sharp image side by side (text area cropped, 1:4); then the
same for a sanity-check photo (does the method deblur a photo, or paint text on it?)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.common.atomic import atomic_path
from pipelines.common.output import to_uint8
from pipelines.reading.images import load_image

CROP = (slice(230, 1330), slice(120, 2260))  # rows, columns of the full-size text area (+ blur spread)
REDUCE = 4
LABEL_H = 22


def pick_steps(steps, count: int = 3) -> list[int]:
    """`count` steps evenly spread over the sorted `steps` (all of them if there are no more)."""
    steps = sorted(set(steps))
    if len(steps) <= count:
        return steps
    idx = np.linspace(0, len(steps) - 1, count).round().astype(int)
    return [steps[i] for i in dict.fromkeys(idx)]


def _panel(image_u8: np.ndarray) -> np.ndarray:
    from PIL import Image

    a = np.asarray(image_u8)
    crop = a[CROP] if a.shape[0] >= CROP[0].stop and a.shape[1] >= CROP[1].stop else a
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).reduce(REDUCE))


def _load_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def pick_photo(sanity) -> str | None:
    """The photo the sanity rows show: the first of SANITY_PHOTOS present (else any photo)."""
    from pipelines.simulation.scene import SANITY_PHOTOS

    names = [s.name for s in sanity if s.is_photo]
    return next((n for n in SANITY_PHOTOS if n in names), names[0] if names else None)


def montage(samples, methods, out_dir, path, count: int = 3, sanity=()) -> Path | None:
    """Write the montage PNG from the images already under out_dir/images (blurred and sharp are
    read from the data when `identity`/`sharp` were not scored). `sanity`: the sanity samples scored;
    one photo (`pick_photo`) gets rows at `count` steps below the text rows. Returns the path
    (None: nothing)."""
    from PIL import Image, ImageDraw, ImageFont

    from .samples import image_path

    columns = ["blurred"] + [m for m in methods if m not in ("identity", "sharp")] + ["sharp"]
    def first_per_step(items):
        return [next(x for x in items if x.step == step) for step in pick_steps({x.step for x in items}, count)]

    photo = pick_photo(sanity)
    shown = [(s, f"step {s.step} ({s.font} {s.sample_id})") for s in first_per_step(samples)]
    shown += [(s, f"step {s.step} (photo {photo})") for s in first_per_step([x for x in sanity if x.name == photo])]
    rows = []
    for s, label in shown:
        panels = []
        for col in columns:
            method = {"blurred": "identity"}.get(col, col)
            p = image_path(out_dir, method, s)
            if p.is_file():
                img = _load_png(p)
            elif col == "blurred":
                img = to_uint8(load_image(s.blurred, expect_shape=None))
            elif col == "sharp":
                img = to_uint8(load_image(s.sharp, expect_shape=None))
            else:  # not run at this step (a model built for fewer steps): an empty panel
                panels.append((f"{col} (not run)", None))
                continue
            panels.append((col, _panel(img)))
        rows.append((label, panels))
    if not rows:
        return None
    ph, pw = rows[0][1][0][1].shape
    ncol = max(len(p) for _, p in rows)
    canvas = Image.new("L", (ncol * (pw + 4), len(rows) * (ph + LABEL_H + 4)), 255)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for r, (label, panels) in enumerate(rows):
        y = r * (ph + LABEL_H + 4)
        for c, (name, a) in enumerate(panels):
            x = c * (pw + 4)
            draw.text((x + 4, y + 3), f"{label}: {name}" if c == 0 else name, fill=0, font=font)
            if a is not None:
                canvas.paste(Image.fromarray(a), (x, y + LABEL_H))
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG", optimize=True)
    return path
