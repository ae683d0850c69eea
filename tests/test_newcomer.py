"""What a new user runs into first: the leaderboard's defaults and its rule on subsets, the steps a
model was trained on, images that are not HDC-like, the Python API taking what the command line
takes, and a quiet TensorFlow on a machine without a GPU."""
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from eval import score as S

ROOT = Path(__file__).resolve().parents[1]


def _step_image(sim_eval, step=5):
    folder = Path(sim_eval) / ("steps_0_to_4" if step < 5 else "steps_5_to_9") / "CAM02_blurred"
    return folder / f"focusStep_{step}_timesR_size_30_sample_0001.tif"


# ---- the leaderboard -------------------------------------------------------------------------

def test_highest_step_passed_on_a_subset_is_not_scored_rather_than_minus_one():
    rows = S.aggregate([{"method": m, "step": s, "font": "Times", "score": 95, "cer": 0.0}
                        for m in ("sharp", "model") for s in (3, 4)])
    assert S.highest_step_passed(rows, "sharp") is None
    assert S.summary(rows) == {"sharp": None, "model": None}
    text = S.format_table(rows)
    assert "sharp n/a (step 0 not scored), model n/a (step 0 not scored)" in text and "-1" not in text
    assert S.markdown_table(rows).splitlines()[2].endswith("| n/a (step 0 not scored) |")
    assert S.highest_step_passed([{"method": "m", "step": 0, "score": 50.0}], "m") == -1  # step 0 failed


class _StandIn:
    """A stand-in deblur.infer.Deblurrer trained on steps 0-1 that returns its input."""
    max_step = 19
    trained_steps = [0, 1]
    preprocess = types.SimpleNamespace(factor=7)

    @classmethod
    def from_file(cls, path):
        return cls()

    def outside_training(self, step):
        return step not in self.trained_steps

    def deblur(self, image, step, flat=None):
        return image


def test_the_model_is_a_default_method_and_untrained_steps_are_flagged(sim_eval, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "deblur.infer", types.SimpleNamespace(Deblurrer=_StandIn))
    model = tmp_path / "m.keras"
    model.write_bytes(b"stand-in")
    assert S.default_methods(model) == ["sharp", "identity", "wiener", "rl", "model"]
    assert "model" not in S.default_methods(tmp_path / "absent.keras")
    out = tmp_path / "out"
    assert S.main(["--data", str(sim_eval), "--steps", "0,5", "--samples", "1", "--model", str(model),
                   "--out", str(out), "--workers", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "leaderboard.json").read_text())
    assert result["methods"] == ["sharp", "identity", "wiener", "rl", "model"]
    flagged = [(r["method"], r["step"]) for r in result["rows"] if r.get("untrained")]
    assert flagged == [("model", 5)]
    assert "note: model: step(s) 5 are outside the steps the model was trained on" in text
    assert "model       5*" in text or "   5*" in text
    assert "* outside the steps the model was trained on" in text


# ---- python -m deblur: trained steps and out-of-domain images ---------------------------------

@pytest.fixture(scope="module")
def model_trained_on_0_1(tmp_path_factory):
    """A tiny 5-channel highway model whose card says it was trained on steps 0-1."""
    keras = pytest.importorskip("keras")
    from deblur.model import build_model, save_model

    keras.utils.set_random_seed(2)
    folder = tmp_path_factory.mktemp("m01")
    path = save_model(build_model(dim=4, subdim=4, refinements=1), folder / "m01.keras")
    (folder / "m01.json").write_text(json.dumps({"steps": [0, 1], "preprocess": {}}))
    return path


def test_deblur_warns_about_a_step_the_model_was_not_trained_on(sim_eval, model_trained_on_0_1, tmp_path, capsys):
    from deblur.__main__ import main

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_step_image(sim_eval), src)
    assert main([str(src), str(tmp_path / "out"), "5", "--model", str(model_trained_on_0_1)]) == 0
    err = capsys.readouterr().err
    assert "warning: the model was trained on steps 0-1; step 5 is outside them" in err
    assert main([str(src), str(tmp_path / "out0"), "0", "--model", str(model_trained_on_0_1)]) == 0
    assert "outside" not in capsys.readouterr().err


def test_hdc_images_are_in_domain_and_others_get_a_warning_suggesting_auto(sim_eval):
    from deblur.domain import domain_warning, line_pitch
    from pipelines.reading.images import load_image
    from PIL import Image, ImageDraw, ImageFont

    for step in (0, 5):
        image = load_image(_step_image(sim_eval, step))
        assert domain_warning(image) is None
        assert 250 <= line_pitch(image) <= 320
    small = np.asarray(Image.fromarray(np.uint8(load_image(_step_image(sim_eval)) * 255)).resize((1200, 800)),
                       np.float32) / 255
    assert "1200 x 800 px is far from the HDC2021 camera's 2360 x 1460" in domain_warning(small)
    page = Image.new("L", (2360, 1460), 225)  # a page of small text, at the camera's size
    draw, font = ImageDraw.Draw(page), ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 60)
    for i in range(10):
        draw.text((150, 120 + 110 * i), "the quick brown fox jumps over a lazy dog", fill=30, font=font)
    warning = domain_warning(np.asarray(page, np.float32) / 255)
    assert warning.startswith("text lines ~") and "try STEP auto" in warning


def test_deblur_warns_about_a_photo_unlike_hdc_at_a_fixed_step(sim_eval, model_trained_on_0_1, tmp_path, capsys):
    from PIL import Image

    from deblur.__main__ import main
    from pipelines.reading.images import load_image

    src = tmp_path / "in"
    src.mkdir()
    gray = np.uint8(load_image(_step_image(sim_eval, 0)) * 255)
    Image.fromarray(np.stack([gray] * 3, -1)).resize((1200, 800)).save(src / "photo.jpg")
    assert main([str(src), str(tmp_path / "out"), "0", "--model", str(model_trained_on_0_1)]) == 0
    err = capsys.readouterr().err
    assert "photo.jpg: 1200 x 800 px is far from the HDC2021 camera's 2360 x 1460" in err and "try STEP auto" in err
    assert (tmp_path / "out" / "photo.png").is_file()


# ---- the Python API takes what the command line takes -----------------------------------------

def test_deblurrer_takes_rgb_like_the_cli_and_auto(sim_eval, tmp_path):
    keras = pytest.importorskip("keras")
    from PIL import Image

    from deblur.infer import Deblurrer, as_unit_image
    from deblur.model import build_model
    from pipelines.reading.images import load_image

    gray8 = np.uint8(np.rint(load_image(_step_image(sim_eval)) * 255))
    rgb = np.stack([gray8, gray8 // 2, 255 - gray8], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(as_unit_image(rgb), load_image(tmp_path / "c.png"), atol=1e-6)
    rgba = np.concatenate([rgb, np.full(gray8.shape + (1,), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(as_unit_image(rgba), as_unit_image(rgb))      # alpha ignored
    np.testing.assert_allclose(as_unit_image(rgb.astype(np.float32) / 255), as_unit_image(rgb), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_unit_image(rgb.astype(np.float32))

    keras.utils.set_random_seed(4)
    d = Deblurrer(build_model(dim=4, subdim=4, refinements=1))
    grey = np.stack([gray8] * 3, axis=-1)
    out = d.deblur(grey, 5)
    np.testing.assert_array_equal(out, d.deblur(gray8, 5))
    auto = d.deblur(grey, "auto")
    assert d.last_estimate.step == 5
    np.testing.assert_array_equal(auto, out)
    assert d.deblur_small(gray8, "AUTO").shape == (208, 337)
    with pytest.raises(ValueError, match="'auto'|0-19|step"):
        d.deblur(gray8, "sometimes")


# ---- TensorFlow on a machine without a GPU -----------------------------------------------------

@pytest.mark.skipif(any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version")),
                    reason="a GPU driver is present: TensorFlow's CUDA probe finds it")
def test_no_cuda_probe_noise_without_a_gpu():
    code = ("import deblur, keras, numpy as np, sys\n"
            "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
            "m.predict_on_batch(np.zeros((1, 4)))\n"
            "print('python still writes to stderr', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "cuInit" not in r.stderr and "cuda drivers" not in r.stderr, r.stderr
    assert "python still writes to stderr" in r.stderr
