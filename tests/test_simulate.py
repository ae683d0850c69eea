"""The simulator: layout, file format, intensities, determinism and the calibrated blur."""
import numpy as np
import pytest
import tifffile

from pipelines import physics as P
from pipelines.psf import measure_radius_from_lsf
from pipelines.scene import ALPHABET, render_target
from pipelines.simulate import LINE_WIDTH_PX, blurred_camera, main, rng_for, simulate


def test_files_dtype_size_and_text(sim_train):
    cam01 = sim_train / "step0" / "Verdana" / "CAM01"
    names = sorted(p.name for p in cam01.iterdir())
    assert names == ["focusStep_0_LSF_X.tif", "focusStep_0_LSF_Y.tif", "focusStep_0_PSF.tif",
                     "focusStep_0_verdanaRef_size_30_sample_0001.tif",
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
            "focusStep_5_LSF_Y.tif"} == names
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


@pytest.mark.parametrize("step", range(P.N_STEPS))
def test_measured_blur_radius_matches_table(step):
    """The radius measured back from the simulated line shots is within 10 % of the table."""
    rng = rng_for(0, step, 101, 0)
    rx = measure_radius_from_lsf(blurred_camera(render_target("LSF_X"), step, rng), 0, LINE_WIDTH_PX)
    ry = measure_radius_from_lsf(blurred_camera(render_target("LSF_Y"), step, rng), 1, LINE_WIDTH_PX)
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
