"""Small simulated HDC2021 trees shared by several test modules (built once per session)."""
import shutil
from pathlib import Path

import numpy as np

from pipelines.simulation.simulate import simulate

STEPS = (0, 5)
PHOTOS = ("camera", "coins")  # two of the sanity photos keep the shared trees small


def build(root, layout):
    simulate(root, STEPS, samples=1, seed=7, layout=layout, workers=2, progress=False, photos=PHOTOS)
    return root


def to_png8(tif, png) -> Path:
    """A TIFF as an 8-bit grayscale PNG the way HDC examples circulate: round(v / 65535 * 255)."""
    from PIL import Image

    from pipelines.reading.images import load_image

    a = np.rint(load_image(tif, expect_shape=None) * 255).astype(np.uint8)
    Image.fromarray(a, mode="L").save(png)
    return Path(png)


def png_copy(src, dst, pattern="*"):
    """A copy of the tree `src` at `dst` with every TIFF matching `pattern` as an 8-bit PNG
    (other files, text files included, copied as they are; TIFFs not matching left out)."""
    src, dst = Path(src), Path(dst)
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".tif":
            if path.match(pattern):
                to_png8(path, target.with_suffix(".png"))
        else:
            shutil.copy(path, target)
    return dst
