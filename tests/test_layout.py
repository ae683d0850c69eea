"""The simulator's text layout against the real HDC2021 images (issue 12): centred lines, both fonts
at the real point size, line tops as measured."""
from pathlib import Path

import numpy as np
import pytest

from pipelines.reading import physics as P
from pipelines.simulation.layout import REAL_EXTENTS, ink_extents, simulated_extents
from pipelines.simulation.scene import render_text, sample_camera

SHARP_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "hdc2021" / "fixtures" / "sharp" / \
    "cam01_focusStep_3_timesR_size_30_sample_0001.jpg"


@pytest.fixture(scope="module")
def extents():
    return {f: simulated_extents(f, 40, seed=5) for f in ("Times", "Verdana")}


@pytest.mark.parametrize("font_name", ["Times", "Verdana"])
def test_lines_are_centred_on_the_image_centre(font_name):
    """Ink centres of lines without leading/trailing spaces (those shift the ink, as in the real
    data) lie within 40 px of x = 1180; the old layout (lines from x = 200) fails this."""
    ext, texts = simulated_extents(font_name, 40, seed=5, with_text=True)
    trimmed = np.array([[line == line.strip() for line in t] for t in texts])
    centres = ((ext[..., 0] + ext[..., 1]) / 2)[trimmed]
    assert centres.size > 40 and np.all(np.abs(centres - 1180) <= 40), (centres.min(), centres.max())


def test_verdana_width_matches_the_real_lines(extents):
    real = np.mean([x1 - x0 for lines in REAL_EXTENTS["Verdana"].values() for x0, x1, _, _ in lines])
    sim = np.mean(extents["Verdana"][..., 1] - extents["Verdana"][..., 0])
    assert abs(sim / real - 1) <= 0.10, (sim, real)


@pytest.mark.parametrize("font_name", ["Times", "Verdana"])
def test_line_tops_as_measured(extents, font_name):
    real = np.array([[y0 for _, _, y0, _ in lines] for lines in REAL_EXTENTS[font_name].values()])
    sim_top = np.median(extents[font_name][..., 2], axis=0)
    assert np.all(np.abs(sim_top - real.mean(axis=0)) <= 12), (sim_top, real)


def test_verdana_block_lower_and_wider_pitch_than_times(extents):
    t, v = (np.median(extents[f][..., 2], axis=0) for f in ("Times", "Verdana"))
    assert 20 <= v[0] - t[0] <= 50
    assert np.diff(v).mean() > np.diff(t).mean() + 8


def test_spaces_count_in_the_centring():
    """A leading space moves the ink right (the renderer centres the advance width)."""
    a = ink_extents(sample_camera(render_text(("  ABCDEFGH", "ABCDEFGHJK", "ABCDEFGHJK"), "Times")), threshold=0.5)
    b = ink_extents(sample_camera(render_text(("ABCDEFGH  ", "ABCDEFGHJK", "ABCDEFGHJK"), "Times")), threshold=0.5)
    assert a[0][0] - b[0][0] > 100 and a[1] == b[1]


def test_ink_extents_of_the_real_fixture():
    if not SHARP_FIXTURE.is_file():
        pytest.skip(f"real sharp fixture not found at {SHARP_FIXTURE} (../shared absent)")
    from PIL import Image
    img = np.asarray(Image.open(SHARP_FIXTURE).convert("L"), dtype=np.float32) / 255
    got = ink_extents(img)
    want = REAL_EXTENTS["Times"]["step 3, sample 0001 (fixture)"]
    assert np.abs(np.array(got) - np.array(want)).max() <= 2


def test_ink_extents_needs_three_lines():
    blank = np.ones((300, 400), np.float32)
    blank[100:120, 50:300] = 0
    with pytest.raises(ValueError, match="found 1 text lines"):
        ink_extents(blank)


def test_layout_table_is_per_font():
    assert set(P.LINE_TOPS_PX) == {"Times", "Verdana"}
