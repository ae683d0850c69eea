"""The HDC2021 reader on both layouts, and its errors for bad input."""
import shutil

import numpy as np
import pytest
import tifffile

from pipelines.common.errors import DataError
from pipelines.reading.hdc import find_calibration, find_samples, find_sanity, list_inputs, load_pair, load_tiff, read_text


def test_train_layout_records(sim_train):
    samples = find_samples(sim_train)
    assert [(s.step, s.font, s.sample_id) for s in samples] == [
        (0, "Times", 1), (0, "Verdana", 1), (5, "Times", 1), (5, "Verdana", 1)]
    s = samples[2]
    assert s.blurred == sim_train / "step5" / "Times" / "CAM02" / "focusStep_5_timesR_size_30_sample_0001.tif"
    assert s.sharp == sim_train / "step5" / "Times" / "CAM01" / s.blurred.name
    assert len(s.text) == 3 and all(len(line) == 10 for line in s.text)
    sharp, blurred = load_pair(s)
    assert sharp.dtype == np.float32 and sharp.shape == (1460, 2360)
    assert 0 <= blurred.min() and blurred.max() <= 1
    assert find_samples(sim_train, steps=[5], fonts=["Verdana"]) == [samples[3]]


def test_eval_layout_and_double_nesting(sim_eval, tmp_path):
    samples = find_samples(sim_eval)
    assert len(samples) == 4
    assert all(s.blurred.parent.name == "CAM02_blurred" for s in samples)
    assert samples[2].blurred.parent.parent.name == "steps_5_to_9"
    nested = tmp_path / "steps_5_to_9"
    shutil.copytree(sim_eval / "steps_5_to_9", nested / "steps_5_to_9")
    again = find_samples(tmp_path)
    assert [(s.step, s.font) for s in again] == [(5, "Times"), (5, "Verdana")]
    assert again[0].text == samples[2].text


def test_calibration_shots_found_and_skipped(sim_train, sim_eval):
    shots = find_calibration(sim_train, 5)
    assert sorted(shots) == ["LSF_X", "LSF_Y", "PSF"]
    assert shots["PSF"].name == "focusStep_5_PSF.tif" and shots["PSF"].parent.name == "CAM02"
    assert find_calibration(sim_train, 5, camera="sharp")["PSF"].parent.name == "CAM01"
    assert find_calibration(sim_train, 3) == {}
    folder = sim_eval / "steps_0_to_4" / "CAM02_blurred"
    names = [p.name for p in list_inputs(folder)]
    assert "focusStep_0_QRcode.tif" in names
    assert not any("PSF" in n or "LSF" in n for n in names)
    assert all(s.blurred.name != "focusStep_0_QRcode.tif" for s in find_samples(sim_eval))


def test_sanity_samples_listed_in_both_layouts(sim_train, sim_eval, tmp_path):
    ev = find_sanity(sim_eval)
    assert [(s.step, s.name) for s in ev] == [(0, "QRcode"), (0, "camera"), (0, "coins"),
                                              (5, "QRcode"), (5, "camera"), (5, "coins")]
    cam = ev[1]
    assert cam.blurred == sim_eval / "steps_0_to_4" / "CAM02_blurred" / "focusStep_0_Image_camera.tif"
    assert cam.sharp == sim_eval / "steps_0_to_4" / "CAM01_focused" / "focusStep_0_Image_camera.tif"
    assert cam.is_photo and not ev[0].is_photo
    tr = find_sanity(sim_train, steps={5})
    assert [(s.step, s.name, s.blurred.parent.parent.name) for s in tr] == [
        (5, "QRcode", "Times"), (5, "QRcode", "Verdana"), (5, "camera", "Times"), (5, "camera", "Verdana"),
        (5, "coins", "Times"), (5, "coins", "Verdana")]
    assert all(s.sharp.parent.name == "CAM01" and s.sharp.name == s.blurred.name for s in tr)
    # the text reader skips them; a missing sharp partner is a clear error
    assert not any("Image_" in s.blurred.name for s in find_samples(sim_eval))
    root = tmp_path / "broken"
    shutil.copytree(sim_eval / "steps_0_to_4", root / "steps_0_to_4")
    (root / "steps_0_to_4" / "CAM01_focused" / "focusStep_0_Image_coins.tif").unlink()
    with pytest.raises(DataError, match="focusStep_0_Image_coins.tif.*no sharp partner"):
        find_sanity(root)


def test_real_text_files_are_accepted(fixtures_dir):
    files = sorted((fixtures_dir / "text").glob("*.txt"))
    assert len(files) >= 10
    for f in files:
        lines = read_text(f)
        assert len(lines) == 3 and all(len(line) == 10 for line in lines), f


@pytest.fixture
def broken_tree(sim_train, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sim_train / "step0", root / "step0")
    return root, root / "step0" / "Times"


def test_truncated_tiff(broken_tree):
    _, times = broken_tree
    path = times / "CAM02" / "focusStep_0_timesR_size_30_sample_0001.tif"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="unreadable or truncated TIFF") as e:
        load_tiff(path)
    assert str(path) in str(e.value)


def test_not_a_tiff(tmp_path):
    path = tmp_path / "x.tif"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"x\.tif: unreadable or truncated TIFF"):
        load_tiff(path)


def test_wrong_dtype_and_size(tmp_path):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.zeros((1460, 2360), np.float32))
    with pytest.raises(DataError, match="expected an 8- or 16-bit image, found float32"):
        load_tiff(path)
    tifffile.imwrite(path, np.zeros((100, 200), np.uint16))
    with pytest.raises(DataError, match=r"expected 2360 x 1460 \(w x h\), found 200 x 100"):
        load_tiff(path)
    tifffile.imwrite(path, np.zeros((5, 1460, 2360), np.uint16))  # a stack, not one plane
    with pytest.raises(DataError, match="single-channel"):
        load_tiff(path)


def test_sharp_blurred_size_mismatch(broken_tree):
    root, times = broken_tree
    tifffile.imwrite(times / "CAM01" / "focusStep_0_timesR_size_30_sample_0001.tif",
                     np.zeros((1000, 2000), np.uint16))
    sample = find_samples(root, fonts=["Times"])[0]
    with pytest.raises(DataError, match="differs from its sharp partner") as e:
        load_pair(sample)
    assert "focusStep_0_timesR_size_30_sample_0001.tif" in str(e.value)


def test_missing_text_file(broken_tree):
    root, times = broken_tree
    for cam in ("CAM01", "CAM02"):
        (times / cam / "focusStep_0_timesR_size_30_sample_0001.txt").unlink()
    with pytest.raises(DataError, match="true-text file is missing") as e:
        find_samples(root)
    assert "focusStep_0_timesR_size_30_sample_0001.txt" in str(e.value)


def test_text_not_three_lines(broken_tree):
    root, times = broken_tree
    path = times / "CAM01" / "focusStep_0_timesR_size_30_sample_0001.txt"
    path.write_text("abcdefghij\nklmnpqrstu")
    with pytest.raises(DataError, match="exactly 3 lines, found 2"):
        find_samples(root)


def test_missing_sharp_partner(broken_tree):
    root, times = broken_tree
    (times / "CAM01" / "focusStep_0_timesR_size_30_sample_0001.tif").unlink()
    with pytest.raises(DataError, match="no sharp partner"):
        find_samples(root)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        find_samples(tmp_path / "nope")


def test_data_error_survives_pickling():
    import pickle
    e = pickle.loads(pickle.dumps(DataError("/x/y.tif", "unreadable")))
    assert isinstance(e, DataError) and str(e) == "/x/y.tif: unreadable" and e.problem == "unreadable"
