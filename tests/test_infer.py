"""Full-image deblurring API (deblur.infer) and the submission CLI (python -m deblur)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

keras = pytest.importorskip("keras")

from deblur import infer  # noqa: E402
from deblur.__main__ import main as cli  # noqa: E402
from deblur.infer import Deblurrer  # noqa: E402
from deblur.model import ModelLoadError, build_model, save_model  # noqa: E402
from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_blurred, upscale  # noqa: E402


@keras.saving.register_keras_serializable(package="test_infer")
class CentreChannel0(keras.layers.Layer):
    """[image, step] -> the centre crop (margin px per side) of channel 0: an 'identity' model."""

    def __init__(self, margin, **kwargs):
        super().__init__(**kwargs)
        self.margin = int(margin)

    def call(self, inputs):
        image, step = inputs
        m = self.margin
        return image[:, m:-m, m:-m, :1] + 0.0 * step[:, :, None, None]

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def identity_model(in_size=20, out_size=8, channels=5):
    image = keras.Input((in_size, in_size, channels), name="image")
    step = keras.Input((1,), name="step")
    out = CentreChannel0((in_size - out_size) // 2)([image, step])
    return keras.Model({"image": image, "step": step}, out)


def blurred_like(shape, seed=0):
    """A smooth vignetted background with a few dark blobs, uint16 (like a blurred HDC image)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 0.85 - 0.1 * ((xx / w - 0.5) ** 2 + (yy / h - 0.4) ** 2)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.3 * h, 0.7 * h), rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.02, 0.06) * w
        img -= 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2)
    img += rng.normal(0, 0.01, shape)
    return np.clip(np.rint(img * 65535), 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    model = build_model(dim=4, subdim=4, refinements=1)
    out = model.get_layer("output")  # a random model's output is ~0.5 everywhere: spread it
    out.set_weights([w * 100 for w in out.get_weights()])
    return model


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    save_model(tiny_model, path)
    return path


# ------------------------------------------------------------------ API

@pytest.mark.parametrize("shape", [(7 * 41 + 3, 7 * 57 + 6), (7 * 9 + 5, 7 * 13 + 1)])
def test_identity_model_stitches_back_the_preprocessed_input(shape):
    d = Deblurrer(identity_model(), batch_size=3, method="tiled")
    image = blurred_like(shape)
    ref = preprocess_blurred(image.astype(np.float32) / 65535)[..., 0]
    small = d.deblur_small(image, 5)
    assert small.shape == ref.shape and small.dtype == np.float32
    assert d.last_method == "tiled"
    np.testing.assert_allclose(small, ref, rtol=0, atol=1e-6)
    assert ref.std() > 0.01  # the comparison means something
    full = d.deblur(image, 5)
    assert full.shape == shape and full.dtype == np.float32
    np.testing.assert_allclose(full, np.clip(upscale(ref, shape, factor=7), 0, 1), atol=1e-6)


def test_identity_model_on_an_image_smaller_than_one_output_tile():
    d = Deblurrer(identity_model(in_size=30, out_size=20), method="tiled")
    image = blurred_like((7 * 15 + 2, 7 * 33))  # 15 x 33 at 1:7: one tile row, two columns
    ref = preprocess_blurred(image.astype(np.float32) / 65535)[..., 0]
    np.testing.assert_allclose(d.deblur_small(image, 0), ref, rtol=0, atol=1e-6)


def test_uint16_and_float_inputs_agree_and_bad_inputs_are_refused():
    d = Deblurrer(identity_model())
    image = blurred_like((7 * 12, 7 * 20))
    np.testing.assert_array_equal(d.deblur(image, 3), d.deblur(image.astype(np.float32) / 65535, 3))
    eight = (image >> 8).astype(np.uint8)  # 8-bit data is read as v / 255, not v / 65535
    np.testing.assert_array_equal(d.deblur(eight, 3), d.deblur(eight.astype(np.float32) / 255, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.deblur(image.astype(np.float32), 3)
    with pytest.raises(ValueError, match="dtype"):
        d.deblur(image.astype(np.int32), 3)
    with pytest.raises(ValueError, match="2-D"):
        d.deblur(np.zeros((2, 70, 70), np.uint16), 3)
    with pytest.raises(ValueError, match="0-19"):
        d.deblur(image, 20)


def test_tiled_and_full_image_paths_agree(tiny_model):
    image = blurred_like((7 * 100 + 3, 7 * 130 + 1), seed=2)  # 100 x 130 at 1:7
    tiled = Deblurrer(tiny_model, method="tiled", batch_size=4)
    full = Deblurrer(tiny_model, method="full")
    a, b = tiled.deblur_small(image, 4), full.deblur_small(image, 4)
    assert tiled.last_method == "tiled" and full.last_method == "full"
    assert a.shape == b.shape == (100, 130)
    assert a.std() > 1e-3  # not a constant output (tolerance below is 1e-5)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert Deblurrer(tiny_model).deblur_small(image, 4) is not None
    with pytest.raises(ValueError, match="full"):
        full.deblur_small(blurred_like((7 * 30, 7 * 80)), 4)  # 30 px < the 96 px output tile


def test_saved_tiny_model_from_file_with_card(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_model(dim=4, subdim=4, refinements=1, channels=3, max_step=9)
    path = save_model(model, tmp_path / "m.keras")
    pre = PreprocessConfig(median_widths=(3, 5))  # 3 channels: only works if the card is read
    (tmp_path / "m.json").write_text(json.dumps({"preprocess": pre.to_dict(), "note": "test"}))
    d = Deblurrer.from_file(path, batch_size=8)
    assert d.preprocess == pre and d.max_step == 9 and d.source == path
    image = blurred_like((7 * 30 + 4, 7 * 45 + 2), seed=4)
    out = d.deblur(image, 9)
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out.std() > 0
    with pytest.raises(ValueError, match="steps 0-9"):
        d.deblur(image, 10)
    # without the card the 3-channel model does not fit the default 5-channel preprocessing
    (tmp_path / "m.json").unlink()
    with pytest.raises(ModelLoadError, match="channels"):
        Deblurrer.from_file(path)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="m.json"):
        Deblurrer.from_file(path)


def test_default_model_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(infer, "DEFAULT_MODEL", tmp_path / "default.keras")
    with pytest.raises(ModelLoadError, match="no default model is shipped yet; pass --model PATH"):
        Deblurrer.from_file()


def test_import_does_not_load_tensorflow():
    code = "import sys, deblur.infer; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False False", r.stderr


# ------------------------------------------------------------------ CLI

@pytest.fixture(scope="module")
def eval_step0(sim_eval):
    folder = Path(sim_eval) / "steps_0_to_4" / "CAM02_blurred"
    assert folder.is_dir()
    return folder


def _copy(folder, dest, names):
    dest.mkdir()
    for n in names:
        shutil.copy(folder / n, dest / n)
    return dest


def test_cli_writes_full_size_pngs_and_skips_calibration(eval_step0, tiny_model_file, tmp_path, capsys):
    from PIL import Image

    tifs = sorted(p.name for p in eval_step0.glob("*.tif"))
    calib = [n for n in tifs if any(k in n for k in ("_PSF", "_LSF_X", "_LSF_Y"))]
    assert len(calib) == 3 and any("QRcode" in n for n in tifs)
    out = tmp_path / "out" / "nested"
    rc = cli([str(eval_step0), str(out), "0", "--model", str(tiny_model_file), "--batch-size", "8"])
    msg = capsys.readouterr()
    assert rc == 0, msg.err
    expected = sorted(n[:-4] + ".png" for n in tifs if n not in calib)
    assert sorted(p.name for p in out.iterdir()) == expected
    for name in expected:
        with Image.open(out / name) as im:
            assert im.mode == "L" and im.size == (2360, 1460)
            a = np.asarray(im)
        assert a.dtype == np.uint8 and (a[:, :50] == 255).all()
    assert f"wrote {len(expected)} PNGs" in msg.out and "skipped 3 calibration shots" in msg.out
    assert "s per image" in msg.out


@pytest.mark.parametrize("kind", ["TIFF", "PNG"])
def test_cli_reports_a_corrupt_file_and_writes_the_others(kind, eval_step0, tiny_model_file, tmp_path, capsys):
    good = sorted(p.name for p in eval_step0.glob("focusStep_0_*_sample_*.tif"))[:1] + ["focusStep_0_PSF.tif"]
    src = _copy(eval_step0, tmp_path / "in", good)
    bad = src / f"focusStep_0_timesR_size_30_sample_0099.{kind.lower()[:3]}"
    if kind == "TIFF":
        bad.write_bytes((eval_step0 / good[0]).read_bytes()[:5000])  # truncated
    else:
        bad.write_text("not an image")
    out = tmp_path / "out"
    rc = cli([str(src), str(out), "0", "--model", str(tiny_model_file)])
    msg = capsys.readouterr()
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == [good[0][:-4] + ".png"]
    assert f"{bad}: unreadable or truncated {kind}" in msg.err
    assert "failed 1" in msg.err and "wrote 1 PNG" in msg.out
    assert "Traceback" not in msg.err


@pytest.mark.parametrize("step", ["25", "-1", "five", "2.5"])
def test_cli_bad_step(step, eval_step0, tmp_path, capsys):
    assert cli([str(eval_step0), str(tmp_path / "out"), step]) == 2
    err = capsys.readouterr().err
    assert "STEP must be an integer blur step 0-19" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_bad_step_as_a_command_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "deblur", str(tmp_path), str(tmp_path / "o"), "25"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "0-19" in r.stderr and "Traceback" not in r.stderr


def test_cli_model_cannot_take_the_step(eval_step0, tmp_path, capsys):
    keras.utils.set_random_seed(5)
    path = save_model(build_model(dim=4, subdim=4, refinements=1, max_step=3), tmp_path / "m3.keras")
    src = _copy(eval_step0, tmp_path / "in", [sorted(p.name for p in eval_step0.glob("*sample*.tif"))[0]])
    rc = cli([str(src), str(tmp_path / "out"), "5", "--model", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "steps 0-3" in err and "step 5" in err and "Traceback" not in err


def test_cli_no_default_model(monkeypatch, eval_step0, tmp_path, capsys):
    monkeypatch.setattr(infer, "DEFAULT_MODEL", tmp_path / "models" / "default.keras")
    rc = cli([str(eval_step0), str(tmp_path / "out"), "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "no default model is shipped yet; pass --model PATH" in err


def test_cli_bad_model_file(eval_step0, tmp_path, capsys):
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a model")
    assert cli([str(eval_step0), str(tmp_path / "out"), "0", "--model", str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err


def test_cli_empty_or_missing_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli([str(tmp_path / "empty"), str(tmp_path / "out"), "0"]) == 2
    assert "no *.tif, *.png or *.jpg images" in capsys.readouterr().err
    assert cli([str(tmp_path / "missing"), str(tmp_path / "out"), "0"]) == 2
    assert "input folder not found" in capsys.readouterr().err
    only_calib = tmp_path / "calib"
    only_calib.mkdir()
    (only_calib / "focusStep_0_PSF.tif").write_bytes(b"")
    assert cli([str(only_calib), str(tmp_path / "out"), "0"]) == 2
    assert "only 1 calibration shots" in capsys.readouterr().err
