"""The step-conditioned highway network: geometry, parameter counts, serialisation, gating."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deblur.layers import HighwayRefinement, StepGate, StepInput  # noqa: E402
from deblur.model import (ModelLoadError, ModelSpec, build_model, cost_table, describe,  # noqa: E402
                          load_model, max_step_of, model_geometry, output_size_of, rebuild,
                          save_model, spec_of)

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(dim=8, subdim=8, refinements=3, shared_width=3, input_size=32)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _inputs(n=2, size=32, steps=(0.0, 9.0), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, size, size, 5)).astype("float32"),
            "step": np.array(steps[:n], dtype="float32").reshape(n, 1)}


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(1)
    return build_model(**SMALL)


def test_default_model_matches_the_design():
    m = build_model()
    assert m.count_params() == 67_185
    assert _count(m.trainable_weights) == 66_849
    assert _count(m.non_trainable_weights) == 336
    assert m.output_shape == (None, 52, 52, 1)
    assert [i.name for i in m.inputs] == ["image", "step"]
    assert tuple(m.get_layer("image").batch_shape) == (None, 110, 110, 5)
    spec = spec_of(m)
    assert (spec.output_size, spec.receptive_field, spec.offset) == (52, 59, 29)
    assert spec.pre_widths == (32, 32, 32, 32, 32) and spec.post_widths == (32, 8, 1)
    d = describe(spec)
    assert (d["params"], d["trainable_params"], d["non_trainable_params"]) == (67_185, 66_849, 336)
    assert 4.0e9 < d["forward_flops"] < 4.6e9
    assert max_step_of(m) == 19 and output_size_of(m) == 52


def test_geometry_of_other_configurations():
    spec = model_geometry(**SMALL)
    assert (spec.output_size, spec.receptive_field) == (32 - 10 - 3 * 2, 1 + 10 + 3 * 2)
    # channel widths follow the design's weighted geometric means
    s = ModelSpec(dim=32, subdim=8)
    assert s.pre_widths == (8, int((32 * 8 ** 3) ** 0.25), 16, int((32 ** 3 * 8) ** 0.25), 32)
    for cfg in (SMALL, dict(dim=6, subdim=12, refinements=2, shared_width=5, input_size=40),
                dict(SMALL, input_size=40, coarse_pathway=True, coarse_refinements=2),
                dict(SMALL, input_size=41, shared_width=5, coarse_pathway=True, coarse_refinements=2)):
        m = build_model(**cfg)
        spec = spec_of(m)
        assert m.output_shape[1:] == (spec.output_size, spec.output_size, 1), cfg
        d = describe(spec)
        assert d["params"] == m.count_params(), cfg
        assert d["non_trainable_params"] == _count(m.non_trainable_weights), cfg
    with pytest.raises(ValueError, match="too small"):
        ModelSpec(input_size=50)
    with pytest.raises(ValueError, match="odd"):
        ModelSpec(shared_width=4)
    rows = cost_table(refinements=(6, 12, 18))
    assert [r["receptive_field"] for r in rows] == [35, 59, 83]
    assert [r["output_size"] for r in rows] == [52, 52, 52]
    assert rows[0]["forward_flops"] < rows[1]["forward_flops"] < rows[2]["forward_flops"]


def test_custom_layer_configs_round_trip():
    x = np.random.default_rng(0).random((2, 9, 9, 4)).astype("float32")
    s = np.array([[0.3], [1.2]], dtype="float32")
    for layer in (StepGate(stddev=0.02, name="g"), HighwayRefinement(iterations=2, width=3, name="h")):
        y = layer([x, s])
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        clone([x, s])
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone([x, s]), y, atol=1e-6)
    assert HighwayRefinement(2, 3)([x, s]).shape == (2, 5, 5, 4)
    step = StepInput(scale=0.5, max_step=7, spec={"dim": 3})
    clone = StepInput.from_config(step.get_config())
    assert (clone.scale, clone.max_step, clone.spec) == (0.5, 7, {"dim": 3})
    np.testing.assert_allclose(clone(s), s * 0.5)


def test_save_and_load_give_identical_outputs(small_model, tmp_path):
    x = _inputs()
    path = save_model(small_model, tmp_path / "m.keras")
    for loaded in (keras.models.load_model(path), load_model(path)):
        np.testing.assert_allclose(loaded(x), small_model(x), atol=1e-6)
        assert spec_of(loaded) == spec_of(small_model)
        assert max_step_of(loaded) == 19


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found") as e:
        load_model(tmp_path / "missing.keras")
    assert "missing.keras" in str(e.value)
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    with pytest.raises(ModelLoadError, match="bad.keras"):
        load_model(bad)
    import zipfile
    z = tmp_path / "zip.keras"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hello.txt", "x")
    with pytest.raises(ModelLoadError, match="zip.keras"):
        load_model(z)


def test_step_gating_changes_the_output(small_model):
    x = _inputs(n=1, steps=(0.0,))
    y0 = np.asarray(small_model(x))
    x["step"] = np.array([[9.0]], dtype="float32")
    y9 = np.asarray(small_model(x))
    assert np.abs(y0 - y9).max() > 1e-5


def test_rebuild_fully_convolutional_and_float32(small_model):
    x = _inputs()
    m = rebuild(small_model, input_size=None)
    assert m.output_shape == (None, None, None, 1)
    np.testing.assert_allclose(m(x), small_model(x), atol=1e-6)
    assert output_size_of(m, 40) == 24
    big = _inputs(size=40)
    assert m(big).shape == (2, 24, 24, 1)
    # output pixel (i, j) only sees input (i + offset +- rf//2): the 32 px crop gives the same centre
    off = spec_of(small_model).offset_for(40) - spec_of(small_model).offset  # 4
    crop = {"image": big["image"][:, off:off + 32, off:off + 32], "step": big["step"]}
    np.testing.assert_allclose(m(big)[:, off:off + 16, off:off + 16], small_model(crop), atol=1e-5)


def test_mixed_precision_model_outputs_float32():
    m = build_model(**SMALL, dtype="mixed_bfloat16")
    y = m(_inputs())
    assert str(y.dtype) == "float32" or getattr(y.dtype, "name", "") == "float32"
    assert m.get_layer("refine").compute_dtype == "bfloat16"
    m32 = rebuild(m)
    assert m32.get_layer("refine").compute_dtype == "float32"


def test_model_code_uses_keras_only():
    for name in ("layers.py", "model.py"):
        src = (ROOT / "deblur" / name).read_text()
        assert "import tensorflow" not in src and not re.search(r"\btf\.\w", src), name
        assert "Lambda(" not in src and "lambda shape" not in src
    out = subprocess.run([sys.executable, "-c", "import deblur, sys; print('tensorflow' in sys.modules)"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
