"""The blurred camera's flat field (illumination measured on a folder's text images): used for an
image whose own border is scene, not paper; text images keep their own fit."""
import numpy as np
import pytest

from pipelines.preprocessing.flatfield import FlatFields, flat_field
from pipelines.preprocessing.preprocess import (FLAT_TOLERANCE, choose_background, downscale,
                                                estimate_background, remove_vignetting)
from pipelines.reading.images import load_image


def _small(path, factor=7):
    return downscale(load_image(path, expect_shape=None), factor)


def test_text_keeps_its_own_fit_and_a_photo_takes_the_flat_field(sim_eval):
    folder = sim_eval / "steps_5_to_9" / "CAM02_blurred"
    flat = FlatFields()(folder / "focusStep_5_Image_camera.tif", 5, 7)
    assert flat is not None and flat.shape == (1460 // 7, 2360 // 7)
    text = _small(next(folder.glob("focusStep_5_timesR_*.tif")))
    own, which = choose_background(estimate_background(text), flat)
    assert which == "own"
    # the flat field is the text's white background: their own fits agree within the tolerance
    assert np.median(np.abs(own / flat - 1)) < FLAT_TOLERANCE / 5
    for name in ("camera", "coins"):
        photo = _small(folder / f"focusStep_5_Image_{name}.tif")
        bg, which = choose_background(estimate_background(photo), flat)
        assert which == "flat" and bg is not None
        corrected, used = remove_vignetting(photo, flat=flat)
        np.testing.assert_allclose(used, np.maximum(flat, 1e-3))
        np.testing.assert_allclose(corrected, photo / used - 1, rtol=1e-5, atol=1e-6)
    # without a flat field: the own fit, as before
    corrected, used = remove_vignetting(text)
    np.testing.assert_array_equal(used, estimate_background(text))


def test_a_flat_field_of_another_size_is_refused(sim_eval):
    folder = sim_eval / "steps_0_to_4" / "CAM02_blurred"
    text = _small(next(folder.glob("focusStep_0_timesR_*.tif")))
    with pytest.raises(ValueError, match="same down-scaling factor"):
        choose_background(estimate_background(text), np.ones((10, 10), np.float32))


def test_the_blurred_cameras_flat_field_needs_text_of_the_same_step(sim_eval, tmp_path):
    folder = sim_eval / "steps_5_to_9" / "CAM02_blurred"
    # the white level changes with the step: another step's text images do not measure it
    assert flat_field(folder, 6, 7, any_step=False) is None
    assert flat_field(folder, 6, 7) is not None  # (the sharp camera's use: any step)
    assert FlatFields()(folder / "focusStep_6_Image_camera.tif", 6, 7) is None
    # step 5 vs step 0: gain and offset differ, so does the white level
    f5 = flat_field(folder, 5, 7, any_step=False)
    f0 = flat_field(sim_eval / "steps_0_to_4" / "CAM02_blurred", 0, 7, any_step=False)
    assert abs(float(np.median(f5 / f0)) - 1) > 0.005


def test_the_stream_gives_photos_the_flat_field_and_text_its_own_fit(monkeypatch):
    import pipelines.preprocessing.preprocess as PP
    from pipelines.simulation.synth import flat_small, synth_pair

    chosen = []
    real = PP.choose_background

    def spy(own, flat, tolerance=FLAT_TOLERANCE):
        bg, which = real(own, flat, tolerance)
        chosen.append(which)
        return bg, which

    monkeypatch.setattr(PP, "choose_background", spy)
    kinds = []
    for i in range(12):
        kinds.append(synth_pair(4, i, nontext=0.5).kind)
    text = [w for k, w in zip(kinds, chosen) if k == "text"]
    other = [w for k, w in zip(kinds, chosen) if k != "text"]
    assert text and set(text) == {"own"}
    assert other and other.count("flat") >= len(other) // 2
    # the simulated flat field: the step's white under the camera's vignetting, darker at high steps'
    # corners than at the bottom centre
    f = flat_small(10, np.random.default_rng(0))
    assert f.shape == (1460 // 7, 2360 // 7) and f[0, -1] < f[-1, f.shape[1] // 2]


def test_an_image_of_another_size_gets_no_flat_field_and_a_corrupt_text_image_is_skipped(sim_eval, tmp_path):
    import shutil

    src = sim_eval / "steps_5_to_9" / "CAM02_blurred"
    folder = tmp_path / "CAM02_blurred"
    folder.mkdir()
    for p in src.glob("focusStep_5_*.tif"):
        shutil.copy(p, folder / p.name)
    (folder / "focusStep_5_timesR_size_30_sample_0099.tif").write_bytes(b"not a TIFF")
    flats = FlatFields()
    photo = folder / "focusStep_5_Image_camera.tif"
    flat = flats(photo, 5, 7, (1460, 2360))
    assert flat is not None and flat.shape == (208, 337)  # the corrupt text image left out
    assert flats(photo, 5, 7, (1000, 1500)) is None


def test_the_flat_field_follows_the_cameras_illumination_into_the_centre(sim_eval):
    """Fitted on the text images' border frame and extrapolated inwards, the flat field must match
    the simulated camera's vignetting (an x*y-shaped illumination) in the centre too, where a photo's
    subject sits: the border fit's default terms come out several % too dark there, more than a dim
    photo's whole contrast."""
    from pipelines.preprocessing.preprocess import DEFAULT_TERMS
    from pipelines.reading.hdc import is_text_image
    from pipelines.simulation.synth import vignetting_small

    folder = sim_eval / "steps_5_to_9" / "CAM02_blurred"
    true = vignetting_small(0.0)
    texts = [_small(p) for p in sorted(folder.glob("focusStep_5_*.tif")) if is_text_image(p)][:4]
    assert texts

    def worst(fit):
        ratio = fit / true
        return float(np.max(np.abs(ratio / np.median(ratio) - 1)))

    assert worst(flat_field(folder, 5, 7, any_step=False)) < 0.015  # (the shots' vignetting jitter is +-1 %)
    border_terms = np.mean([estimate_background(t, terms=DEFAULT_TERMS) for t in texts], axis=0)
    assert worst(border_terms) > 0.03
