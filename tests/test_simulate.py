"""The simulator: layout, file format, intensities, determinism and the calibrated blur."""
import numpy as np
import pytest
import tifffile

from pipelines.preprocessing.preprocess import downscale
from pipelines.reading import physics as P
from pipelines.reading.psf import measure_radius_from_lsf
from pipelines.simulation.scene import ALPHABET, DISPLAY_SHAPE, SANITY_PHOTOS, render_photo, render_target, sample_camera
from pipelines.simulation.simulate import blurred_camera, main, parse_photos, rng_for, simulate


def test_files_dtype_size_and_text(sim_train):
    cam01 = sim_train / "step0" / "Verdana" / "CAM01"
    names = sorted(p.name for p in cam01.iterdir())
    assert names == ["focusStep_0_Image_camera.tif", "focusStep_0_Image_coins.tif",
                     "focusStep_0_LSF_X.tif", "focusStep_0_LSF_Y.tif", "focusStep_0_PSF.tif",
                     "focusStep_0_QRcode.tif", "focusStep_0_verdanaRef_size_30_sample_0001.tif",
                     "focusStep_0_verdanaRef_size_30_sample_0001.txt"]
    img = tifffile.imread(cam01 / "focusStep_0_verdanaRef_size_30_sample_0001.tif")
    assert img.dtype == np.uint16 and img.shape == (1460, 2360)
    raw = (cam01 / "focusStep_0_verdanaRef_size_30_sample_0001.txt").read_bytes()
    assert len(raw) == 32 and not raw.endswith(b"\n")
    assert raw == (sim_train / "step0" / "Verdana" / "CAM02" /
                   "focusStep_0_verdanaRef_size_30_sample_0001.txt").read_bytes()
    assert set(raw.decode().replace("\n", "")) <= set(ALPHABET)


def test_alphabet_is_the_real_one():
    assert len(ALPHABET) == 49 and not set("IOlo0123456789") & set(ALPHABET)


def test_eval_layout_names(sim_eval):
    blurred = sim_eval / "steps_5_to_9" / "CAM02_blurred"
    names = {p.name for p in blurred.glob("*.tif")}
    assert {"focusStep_5_timesR_size_30_sample_0001.tif", "focusStep_5_verdanaRef_size_30_sample_0001.tif",
            "focusStep_5_QRcode.tif", "focusStep_5_PSF.tif", "focusStep_5_LSF_X.tif",
            "focusStep_5_LSF_Y.tif", "focusStep_5_Image_camera.tif", "focusStep_5_Image_coins.tif"} == names
    assert (sim_eval / "steps_5_to_9" / "CAM01_focused" / "focusStep_5_timesR_size_30_sample_0001.txt").is_file()


def _dn(path):
    return tifffile.imread(path).astype(np.float64) / 65535 * 255


def test_intensity_ranges(sim_train):
    sharp = _dn(sim_train / "step0" / "Times" / "CAM01" / "focusStep_0_timesR_size_30_sample_0001.tif")
    text = np.percentile(sharp, 1)
    assert 20 <= text <= 40  # text ~27-30 DN, plus noise
    bg_centre = np.median(sharp[1300:1440, 1080:1280])
    corner = np.median(sharp[:100, -100:])
    assert 215 <= bg_centre <= 235 and 180 <= corner <= 200  # 226 bottom centre, top right darkest
    assert 0.05 <= 1 - corner / bg_centre <= 0.18
    noise = np.std(sharp[1300:1440, 1080:1280] - np.median(sharp[1300:1440, 1080:1280]))
    assert 3 <= noise <= 7
    blurred = _dn(sim_train / "step5" / "Times" / "CAM02" / "focusStep_5_timesR_size_30_sample_0001.tif")
    bg = np.percentile(blurred, 90)
    assert 193 <= bg <= 248  # measured blurred background range
    assert np.percentile(blurred, 1) > text + 60  # contrast drops with blur and offset


def test_deterministic_and_worker_independent(tmp_path):
    a = simulate(tmp_path / "a", [3], samples=1, seed=11, workers=1, progress=False)
    simulate(tmp_path / "b", [3], samples=1, seed=11, workers=2, progress=False)
    simulate(tmp_path / "c", [3], samples=1, seed=12, workers=1, progress=False)
    rel = "step3/Times/CAM02/focusStep_3_timesR_size_30_sample_0001.tif"
    assert np.array_equal(tifffile.imread(tmp_path / "a" / rel), tifffile.imread(tmp_path / "b" / rel))
    assert not np.array_equal(tifffile.imread(tmp_path / "a" / rel), tifffile.imread(tmp_path / "c" / rel))
    assert a["pairs"] == 2


def test_sanity_photos_in_both_layouts(sim_train, sim_eval):
    """The real names, 16-bit, full size, both cameras; in the training layout in both font folders
    (separate captures), in the evaluation layout once; the photo is the scene of both cameras."""
    for font in ("Times", "Verdana"):
        for cam in ("CAM01", "CAM02"):
            folder = sim_train / "step5" / font / cam
            for name in ("focusStep_5_Image_camera.tif", "focusStep_5_Image_coins.tif", "focusStep_5_QRcode.tif"):
                img = tifffile.imread(folder / name)
                assert img.dtype == np.uint16 and img.shape == (1460, 2360), (folder, name)
    a = tifffile.imread(sim_train / "step5" / "Times" / "CAM02" / "focusStep_5_Image_camera.tif")
    b = tifffile.imread(sim_train / "step5" / "Verdana" / "CAM02" / "focusStep_5_Image_camera.tif")
    assert not np.array_equal(a, b)  # two captures (own noise), one scene

    def corr(x, y):
        x, y = (v / 65535.0 if v.dtype == np.uint16 else v for v in (x, y))
        return np.corrcoef(downscale(x, 8).ravel(), downscale(y, 8).ravel())[0, 1]

    assert corr(a, b) > 0.99
    sharp = tifffile.imread(sim_eval / "steps_0_to_4" / "CAM01_focused" / "focusStep_0_Image_camera.tif")
    blurred = tifffile.imread(sim_eval / "steps_0_to_4" / "CAM02_blurred" / "focusStep_0_Image_camera.tif")
    scene = sample_camera(render_photo("camera"))
    # both captures follow the photo (grey levels, not binary text)
    assert corr(sharp, scene) > 0.95 and corr(blurred, scene) > 0.9
    assert len(np.unique(np.round(scene, 2))) > 50


def test_render_photo_fills_the_display_in_grey():
    assert len(SANITY_PHOTOS) == 7 and "camera" in SANITY_PHOTOS and "moon" in SANITY_PHOTOS
    for name in SANITY_PHOTOS:
        r = render_photo(name)
        assert r.shape == DISPLAY_SHAPE and r.dtype == np.float32
        assert 0 <= r.min() < r.max() <= 1 and r.std() > 0.03, name
    r = render_photo("astronaut")
    r[:] = 0  # a copy: the cached raster is untouched
    assert render_photo("astronaut").max() > 0
    with pytest.raises(ValueError, match="unknown sanity photo"):
        render_photo("lena")


def test_photos_option_and_worker_independence(tmp_path):
    assert parse_photos("none") == () and parse_photos("moon, camera") == ("moon", "camera")
    with pytest.raises(ValueError, match="unknown sanity photo"):
        parse_photos("camera,lena")
    simulate(tmp_path / "a", [19], samples=1, seed=3, layout="eval", workers=1, progress=False, photos=("moon",))
    simulate(tmp_path / "b", [19], samples=1, seed=3, layout="eval", workers=2, progress=False, photos=("moon",))
    s = simulate(tmp_path / "c", [19], samples=1, seed=3, layout="eval", workers=1, progress=False, photos=())
    rel = "steps_15_to_19/CAM02_blurred/focusStep_19_Image_moon.tif"
    assert np.array_equal(tifffile.imread(tmp_path / "a" / rel), tifffile.imread(tmp_path / "b" / rel))
    assert not (tmp_path / "c" / rel).exists() and (tmp_path / "c" / rel).with_name("focusStep_19_QRcode.tif").is_file()
    assert s["sanity_photos"] == []
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "d"), "--photos", "lena"])


@pytest.mark.parametrize("step", range(P.N_STEPS))
def test_measured_blur_radius_matches_table(step):
    """The radius measured back from the simulated line shots is within 10 % of the table."""
    rng = rng_for(0, step, 101, 0)
    rx = measure_radius_from_lsf(blurred_camera(render_target("LSF_X"), step, rng), 0, P.LINE_WIDTH_PX)
    ry = measure_radius_from_lsf(blurred_camera(render_target("LSF_Y"), step, rng), 1, P.LINE_WIDTH_PX)
    for r in (rx, ry):
        assert abs(r / P.RADIUS_PX[step] - 1) < 0.10, (step, rx, ry)


def test_cli_rejects_bad_steps(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", "/tmp/never", "--steps", "3-25"])
    assert e.value.code == 2
    assert "outside 0-19" in capsys.readouterr().err


def test_parse_steps():
    assert P.parse_steps("0,2,5-7") == [0, 2, 5, 6, 7]
    assert P.parse_steps("3") == [3]
    for bad in ("3-1", "a", "", "20", "1,,2"):
        with pytest.raises(ValueError):
            P.parse_steps(bad)
