"""The blur-step estimator (deblur.estimate), its CLI, `python -m deblur IN OUT auto` and the
leaderboard's model-auto method."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bench.estimate_bench import non_text_frames
from deblur import estimate as E
from pipelines.common.errors import DataError
from pipelines.reading import physics as P
from pipelines.simulation.scene import random_text, render_text
from pipelines.simulation.simulate import blurred_camera, rng_for, to_uint16, write_tiff

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(\S+) (\d+) (\d+\.\d) (\d\.\d{3})$")


def simulated(step: int, font: str, seed: int = 31, shift=(0, 0)) -> np.ndarray:
    """One full-size simulated CAM02 text image, float in [0, 1] as load_tiff gives it; `shift`:
    display pixels (rows, columns) to move the text by."""
    rng = rng_for(seed, step, 0 if font == "Times" else 1, 1)
    raster = np.roll(render_text(random_text(rng), font), shift, axis=(0, 1))  # the margins are white
    img = blurred_camera(raster, step, rng)
    return to_uint16(img).astype(np.float32) / 65535


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Text images at steps 0, 5 and 13 (written as TIFFs) in one folder, no calibration shots."""
    root = tmp_path_factory.mktemp("est")
    for step, font in ((0, "Times"), (5, "Verdana"), (13, "Times")):
        write_tiff(root / f"focusStep_{step}_{'timesR' if font == 'Times' else 'verdanaRef'}_size_30_sample_0001.tif",
                   simulated(step, font))
    return root


@pytest.mark.parametrize("step", [0, 2, 4, 9, 16, 19])
@pytest.mark.parametrize("font", ["Times", "Verdana"])
def test_estimates_the_step_of_simulated_text(step, font):
    e = E.estimate(simulated(step, font))
    assert abs(e.step - step) <= 1, (e.step, e.radius_px, e.posterior.round(3))
    assert e.warning is None and e.confidence >= E.LOW_CONFIDENCE
    if step >= 2:  # the radius itself, where the 1:2 crop resolves the disc
        assert abs(e.radius_px / P.RADIUS_PX[step] - 1) < 0.15


@pytest.mark.parametrize("step,shift", [(3, (8, 25)), (12, (-10, 30))])
def test_the_text_position_does_not_matter(step, shift):
    """The layout may change (e.g. lines centred): the cues are spectra and contrasts."""
    e = E.estimate(simulated(step, "Verdana", seed=5, shift=shift))
    assert abs(e.step - step) <= 1 and e.warning is None


def test_estimate_is_deterministic():
    img = simulated(7, "Times")
    a, b = E.estimate(img), E.estimate(img.copy())
    assert (a.step, a.radius_px, a.confidence) == (b.step, b.radius_px, b.confidence)
    assert np.array_equal(a.posterior, b.posterior) and abs(a.posterior.sum() - 1) < 1e-9


def test_non_text_frames_get_low_confidence_and_a_warning():
    frames = non_text_frames(steps=(8,))
    assert set(frames) == {"blank", "saturated", "black", "photo step 8"}
    for name, frame in frames.items():
        e = E.estimate(frame)
        assert 0 <= e.step < P.N_STEPS and np.isfinite(e.radius_px), name
        assert e.confidence < E.LOW_CONFIDENCE and e.warning and "low confidence" in e.warning, name


def test_cli_prints_one_line_per_image_and_skips_calibration_shots(folder, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(folder, src)
    (src / "focusStep_5_LSF_X.tif").write_bytes(b"")  # a calibration shot: skipped, not an image
    assert E.main([str(src)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    got = {}
    for line in lines:
        m = LINE.match(line)
        assert m, line
        got[Path(m.group(1)).name.split("_")[1]] = (int(m.group(2)), float(m.group(3)), float(m.group(4)))
    for step in (0, 5, 13):
        est, radius, conf = got[str(step)]
        assert abs(est - step) <= 1 and 0 <= conf <= 1 and radius > 0


def test_cli_unreadable_file_gets_the_readers_error(folder, tmp_path, capsys):
    bad = tmp_path / "focusStep_3_timesR_size_30_sample_0009.tif"
    good = sorted(folder.glob("*.tif"))[0]
    bad.write_bytes(good.read_bytes()[:5000])  # truncated
    rc = E.main([str(bad), str(good), str(tmp_path / "missing.tif")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"error: {bad}: unreadable or truncated TIFF" in err
    assert f"{tmp_path / 'missing.tif'}: file not found" in err
    assert "Traceback" not in err and len(out.strip().splitlines()) == 1 and out.startswith(str(good))
    with pytest.raises(DataError, match="unreadable or truncated TIFF"):
        E.estimate_file(bad)


def test_cli_warns_on_a_blank_frame(tmp_path, capsys):
    path = tmp_path / "focusStep_3_Image_blank.tif"
    tifffile.imwrite(path, np.full(P.IMAGE_SHAPE, 50000, np.uint16))
    assert E.main([str(path)]) == 0
    out, err = capsys.readouterr()
    assert LINE.match(out.strip()) and float(out.split()[-1]) < E.LOW_CONFIDENCE
    assert f"warning: {path}: low confidence" in err


def test_measured_lsf_radii_replace_the_table(sim_eval):
    folder = Path(sim_eval) / "steps_0_to_4" / "CAM02_blurred"  # LSF shots of step 0 only
    radii = E.folder_radii(str(folder.resolve()))
    assert len(radii) == P.N_STEPS and radii[1:] == tuple(map(float, P.RADIUS_PX[1:]))
    assert radii[0] != P.RADIUS_PX[0] and abs(radii[0] / P.RADIUS_PX[0] - 1) < 0.35


def test_shipped_table_and_its_refit_command(sim_train, tmp_path):
    table = E.load_table()
    assert table["fitted_on"]["command"].startswith("python -m deblur.estimate --fit")
    assert table["fitted_on"]["seed"] not in (9001,)  # never the evaluation seed
    with pytest.raises(DataError, match="every step"):  # the tiny tree has steps 0 and 5 only
        E.fit_table(sim_train, progress=False)
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"n_eff": 3}))
    with pytest.raises(DataError, match=str(bad)):
        E.load_table(bad)


def test_import_does_not_load_tensorflow():
    code = "import sys, deblur.estimate; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ------------------------------------------------------------------ with the network

def test_deblur_cli_auto_on_a_tiny_folder(folder, tmp_path, capsys):
    pytest.importorskip("keras")
    from deblur.__main__ import main as cli

    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(folder.glob("focusStep_[05]_*.tif")):  # steps 0 and 5: within the shipped model's
        shutil.copy(p, src / p.name)
    tifffile.imwrite(src / "focusStep_3_Image_blank.tif", np.full(P.IMAGE_SHAPE, 50000, np.uint16))
    rc = cli([str(src), str(tmp_path / "out"), "auto"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.stem + ".png" for p in src.iterdir())
    assert "at the estimated step of each image" in out
    m = re.search(r"estimated steps: (.*)", out)
    assert m and "step 0: 1 image" in m.group(1) and "step 5: 1 image" in m.group(1)
    assert "low confidence" in out and "focusStep_3_Image_blank.tif" in out
    assert "warning:" in err and "Traceback" not in err


def test_deblur_cli_auto_step_beyond_the_model(folder, tmp_path, capsys):
    keras = pytest.importorskip("keras")
    from deblur.__main__ import main as cli
    from deblur.model import build_model, save_model

    keras.utils.set_random_seed(5)
    model = save_model(build_model(dim=4, subdim=4, refinements=1, max_step=3), tmp_path / "m3.keras")
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(folder.glob("focusStep_[05]_*.tif")):
        shutil.copy(p, src / p.name)
    rc = cli([str(src), str(tmp_path / "out"), "auto", "--model", str(model)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert re.search(r"estimated blur step [456] \(radius \d+ px, confidence [\d.]+\) is beyond the "
                     r"model's steps 0-3", err), err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [next(folder.glob("focusStep_0_*")).stem + ".png"]
    assert "Traceback" not in err


def test_score_model_auto_uses_the_estimated_step(folder, tmp_path):
    keras = pytest.importorskip("keras")
    from deblur.model import build_model, save_model
    from eval.score import METHODS, AutoModelMethod, make_method
    from pipelines.reading.hdc import Sample

    keras.utils.set_random_seed(5)
    path = save_model(build_model(dim=4, subdim=4, refinements=1, max_step=19), tmp_path / "m.keras")
    method = make_method("model-auto", model=path)
    assert "model-auto" in METHODS and isinstance(method, AutoModelMethod)
    blurred = next(folder.glob("focusStep_13_*"))
    sample = Sample(13, "Times", 1, blurred, blurred, blurred.with_suffix(".txt"), ("a", "b", "c"))
    out = method(sample)
    assert out.dtype == np.uint8 and out.shape == P.IMAGE_SHAPE
    assert abs(method.estimated[str(blurred)] - 13) <= 1
