"""The sanity-check measure (eval.sanity): rank correlation with the sharp image at 1:8."""
import numpy as np
import pytest
from scipy import ndimage

from eval import sanity as Z
from pipelines.preprocessing.preprocess import downscale
from pipelines.reading import physics as P
from pipelines.reading.images import load_image
from pipelines.simulation.scene import DISPLAY_SHAPE, random_text, render_photo, render_text, sample_camera


@pytest.fixture(scope="module")
def scene():
    """The astronaut on the display, as CAM02 sees it at step 8, full size, and its 1:8 reference."""
    full = sample_camera(render_photo("astronaut"), P.step_physics(8))
    return full, downscale(full, Z.FACTOR)


def test_rank_correlation_basics():
    rng = np.random.default_rng(0)
    a = rng.random((60, 80))
    assert Z.rank_correlation(a, a) == pytest.approx(1.0)
    assert Z.rank_correlation(a, np.exp(3 * a) - 7) == pytest.approx(1.0)  # any increasing map
    assert Z.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert abs(Z.rank_correlation(a, rng.random((60, 80)))) < 0.05
    assert Z.rank_correlation(a, np.zeros_like(a)) == 0.0  # a constant output ranks nothing
    with pytest.raises(ValueError, match="shape"):
        Z.rank_correlation(a, a[:-1])
    # the margin: a frame of garbage outside the central region does not count
    b = a.copy()
    b[:2] = rng.random((2, 80))
    assert Z.rank_correlation(a, b, margin=0.05) == pytest.approx(1.0)
    assert Z.rank_correlation(a, b, margin=0.0) < 1.0


def test_sharp_high_blurred_lower_text_and_noise_low(scene):
    full, ref = scene
    assert Z.correlation(full, ref) > 0.999
    mild = ndimage.uniform_filter(full, 25)  # a mild blur (25 px box at full size)
    strong = ndimage.uniform_filter(full, 301)
    assert 0.85 < Z.correlation(mild, ref) < 0.999
    assert Z.correlation(strong, ref) < Z.correlation(mild, ref) - 0.1
    # a text-stroke texture, as a text-only network paints over a photo
    rng = np.random.default_rng(1)
    text = np.zeros(P.IMAGE_SHAPE, np.float32)
    for font in ("Times", "Verdana"):
        text += sample_camera(render_text(random_text(rng), font))
        text += np.roll(sample_camera(render_text(random_text(rng), font)), (500, 300), axis=(0, 1))
    assert abs(Z.correlation(text, ref)) < 0.3
    assert abs(Z.correlation(rng.random(P.IMAGE_SHAPE).astype(np.float32), ref)) < 0.05
    # strokes painted over a faint copy of the photo stay below the bar (0.48)
    assert Z.correlation(0.1 * full + text, ref) < Z.MEDIAN_MIN
    with pytest.raises(ValueError, match="does not match the reference"):
        Z.correlation(full[:800], ref)


def test_step_verdict_thresholds():
    assert Z.step_verdict([0.9, 0.7, 0.65, 0.3])["passed"] is True
    assert Z.step_verdict([0.9, 0.7, 0.65, 0.1])["passed"] is False   # one photo below the floor
    assert Z.step_verdict([0.9, 0.55, 0.5, 0.4])["passed"] is False   # median below 0.6
    v = Z.step_verdict([0.6, 0.2, 0.9])
    assert v == {"n": 3, "median": 0.6, "min": 0.2, "passed": True}   # both bounds inclusive
    assert Z.step_verdict([])["passed"] is None


def test_reference_on_simulated_data_matches_the_noise_free_scene(sim_eval):
    """The CAM01 reference (flat-fielded, warped with the table's geometry) scores the blurred
    image like the noise-free scene does; the `sharp` method's output scores ~1."""
    scorer = Z.SanityScorer()
    photos = [s for s in Z.select_sanity(sim_eval) if s.is_photo]
    assert [(s.step, s.name) for s in photos] == [(0, "camera"), (0, "coins"), (5, "camera"), (5, "coins")]
    for s in photos:
        blurred = load_image(s.blurred)
        via_cam01 = scorer(s, blurred)
        via_scene = Z.correlation(blurred, Z.scene_reference(s.name, s.step))
        assert abs(via_cam01 - via_scene) < 0.03, (s.step, s.name, via_cam01, via_scene)
        assert via_cam01 > 0.85
        assert scorer(s, scorer.sharp_output(s)) > 0.97
        # CAM01 as it is, in its own frame and with its vignetting: lower (the sharp method
        # therefore outputs it in the CAM02 frame)
        if s.step == 5:
            assert scorer(s, load_image(s.sharp)) < scorer(s, scorer.sharp_output(s)) - 0.01


def test_flat_field_is_the_white_background(sim_eval):
    folder = sim_eval / "steps_0_to_4" / "CAM01_focused"
    flat = Z.flat_field(folder, 0, Z.FACTOR)
    h, w = P.IMAGE_SHAPE
    assert flat.shape == (h // 8, w // 8)
    # the simulator's CAM01 white is 226 DN at the bottom centre, the top right corner darkest
    assert flat[-5, w // 16] == pytest.approx(226 / 255, abs=0.02)
    assert flat[2, -3] < flat[2, 2] < flat[-5, w // 16]
    assert Z.flat_field(sim_eval / "steps_5_to_9" / "CAM01_focused", 3, 8) is not None  # another step's text
    empty = folder.parent / "nothing"
    empty.mkdir(exist_ok=True)
    assert Z.flat_field(empty, 0, 8) is None


def test_select_sanity_keeps_one_capture_per_step_and_name(sim_train):
    chosen = Z.select_sanity(sim_train)
    assert [(s.step, s.name) for s in chosen] == [(0, "QRcode"), (0, "camera"), (0, "coins"),
                                                  (5, "QRcode"), (5, "camera"), (5, "coins")]
    assert all(s.blurred.parent.parent.name == "Times" for s in chosen)
    assert Z.select_sanity(sim_train, [3]) == []


def test_render_photo_is_not_text_like():
    """The photos are grey scenes on the whole display: most display pixels are neither black nor white."""
    for name in ("camera", "coffee", "moon"):
        r = render_photo(name)
        assert r.shape == DISPLAY_SHAPE
        assert np.mean((r > 0.05) & (r < 0.95)) > 0.5, name


def test_the_flat_field_keeps_more_of_a_photo_than_its_own_border_fit(sim_eval):
    rows = Z.compare_vignetting(sim_eval, {5})
    assert [r["step"] for r in rows] == [5]
    assert rows[0]["flat"]["n"] == rows[0]["own"]["n"] == 2
    assert rows[0]["flat"]["median"] > rows[0]["own"]["median"] + 0.02
    assert Z.main(["--vignetting", "--data", str(sim_eval), "--steps", "5"]) == 0
