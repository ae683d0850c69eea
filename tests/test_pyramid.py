"""The multi-scale (pyramid) model, training from the synthetic stream, resume, and --init."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deblur.model import ModelSpec, build_from_spec, describe, load_model, rebuild, save_model, spec_of  # noqa: E402

TINY = dict(model_arch="pyramid", model_pyramid_dims=(4, 6, 8), model_pyramid_refinements=(1, 1, 1),
            model_dim=4, model_subdim=4)
TINY_ARGS = ["--model-arch", "pyramid", "--model-pyramid-dims", "4,6,8", "--model-pyramid-refinements",
             "1,1,1", "--model-dim", "4", "--model-subdim", "4"]


def _spec(**kw):
    base = dict(arch="pyramid", dim=4, subdim=4, input_size=None, pyramid_dims=(4, 6, 8),
                pyramid_refinements=(1, 1, 2))
    return ModelSpec(**{**base, **kw})


def _rows(run_dir):
    with open(Path(run_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_default_pyramid_covers_twice_the_largest_blur_disc():
    spec = ModelSpec(arch="pyramid", input_size=None, pyramid_dims=(16, 24, 32, 48),
                     pyramid_refinements=(1, 2, 3, 4))
    diameter_19 = 2 * 205 / 7
    assert spec.receptive_field >= 2 * diameter_19 >= 117
    assert spec.size_multiple == 8 and spec.output_size_for(208) == 208


def test_parameters_match_describe_and_shapes_are_free():
    spec = _spec()
    m = build_from_spec(spec)
    assert m.count_params() == describe(spec, 64)["params"]
    for h, w in ((64, 64), (208, 336), (16, 40)):
        y = m.predict_on_batch({"image": np.zeros((1, h, w, 5), "float32"), "step": np.ones((1, 1), "float32")})
        assert y.shape == (1, h, w, 1)


def test_levels_share_one_refinement_conv_each():
    m = build_from_spec(_spec())
    refine = sorted((layer for layer in m.layers if layer.name.startswith("refine")), key=lambda l: l.name)
    assert [layer.name for layer in refine] == ["refine0", "refine1", "refine2"]
    assert all(layer.padding == "same" for layer in refine)
    assert len(refine[1]._inbound_nodes) == 2  # level 1: encoder and decoder use the same weights
    assert len(refine[0]._inbound_nodes) == 1 and len(refine[2]._inbound_nodes) == 1


def test_save_reload_exact_and_spec_kept(tmp_path):
    keras.utils.set_random_seed(3)
    m = build_from_spec(_spec())
    x = {"image": np.random.default_rng(0).random((2, 32, 48, 5)).astype("float32"),
         "step": np.array([[2.0], [17.0]], "float32")}
    path = save_model(m, tmp_path / "p.keras")
    r = load_model(path)
    np.testing.assert_array_equal(m.predict_on_batch(x), r.predict_on_batch(x))
    assert spec_of(r).arch == "pyramid" and spec_of(r).pyramid_refinements == (1, 1, 2)
    assert np.abs(rebuild(r, input_size=None).predict_on_batch(x) - m.predict_on_batch(x)).max() < 1e-6


def test_bad_pyramid_specs():
    with pytest.raises(ValueError, match="multiple of 4"):
        _spec(input_size=30)
    with pytest.raises(ValueError, match="one entry per level"):
        _spec(pyramid_refinements=(1, 1))
    with pytest.raises(ValueError, match="arch must be"):
        _spec(arch="unet")


def test_step_gating_changes_the_output():
    keras.utils.set_random_seed(5)
    m = build_from_spec(_spec())
    img = np.random.default_rng(1).random((1, 32, 32, 5)).astype("float32")
    a = m.predict_on_batch({"image": img, "step": np.array([[0.0]], "float32")})
    b = m.predict_on_batch({"image": img, "step": np.array([[19.0]], "float32")})
    assert np.abs(a - b).max() > 1e-4


@pytest.mark.slow
def test_synthetic_training_resume_and_init(tmp_path):
    """Train a tiny pyramid from the stream, kill it after epoch 1, resume (the stream continues
    at epoch 2's scenes), then start a new run from its weights with --init."""
    import subprocess
    import sys

    from deblur.train import STOP_EXIT_CODE, main

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "syn"
    args = ["--synthetic", "--run-dir", str(run), "--steps", "3,15", "--epochs", "2", "--steps-per-epoch", "2",
            "--batch-size", "2", "--synth-val-per-step", "1", "--synth-workers", "1", "--lr", "0.01", *TINY_ARGS]
    r = subprocess.run([sys.executable, "-m", "deblur.train", *args, "--stop-after-epoch", "1"], cwd=root,
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == STOP_EXIT_CODE, r.stdout + r.stderr
    assert [row["epoch"] for row in _rows(run)] == ["0"]
    assert main(args + ["--quiet"]) == 0
    rows = _rows(run)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    for key in ("val_loss_step3", "val_loss_step15"):
        assert all(np.isfinite(float(row[key])) for row in rows)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["synthetic"] is True and cfg["model"]["arch"] == "pyramid"

    # --init: the new run starts from exactly these weights
    from deblur.train import _load_init
    src = load_model(run / "last.keras")
    fresh = build_from_spec(spec_of(src))
    _load_init(fresh, run / "last.keras")
    for a, b in zip(fresh.get_weights(), src.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = build_from_spec(_spec(pyramid_dims=(4, 6, 10)))
    from pipelines.common.errors import DataError
    with pytest.raises(DataError, match="another architecture"):
        _load_init(other, run / "last.keras")
    tuned = tmp_path / "tuned"
    assert main(["--synthetic", "--run-dir", str(tuned), "--steps", "3,15", "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "2", "--synth-val-per-step", "1",
                 "--synth-workers", "0", "--lr", "0.001", "--init", str(run / "last.keras"),
                 "--quiet", *TINY_ARGS]) == 0
    assert json.loads((tuned / "config.json").read_text())["args"]["init"] == str(run / "last.keras")


def test_stream_continues_after_resume_and_never_uses_validation_scenes():
    from deblur.stream import ImageSource, make_sample, synthetic_dataset, validation_batches

    geo = {"kind": "image", "multiple": 8}
    ds = synthetic_dataset(7, [4, 9], batch_size=2, batches_per_epoch=3, geometry=geo, workers=0)
    first_epoch = [ds[i] for i in range(3)]
    ds.on_epoch_end()
    second = ds[0]
    resumed = synthetic_dataset(7, [4, 9], batch_size=2, batches_per_epoch=3, geometry=geo, workers=0,
                                initial_epoch=1)
    np.testing.assert_array_equal(resumed[0][0]["image"], second[0]["image"])
    assert not np.array_equal(first_epoch[0][0]["image"], second[0]["image"])
    x, y = first_epoch[0]
    assert x["image"].shape == (2, 208, 336, 5) and y.shape == (2, 208, 336, 1)
    assert set(x["step"][:, 0]) <= {4.0, 9.0}
    val = validation_batches(7, [4, 9], per_step=1, geometry=geo, batch_size=4)
    src = ImageSource(7, [4, 9], workers=0)
    train_imgs = [make_sample(src, i, geo)[0] for i in range(6)]
    for vx in val[0][0]["image"]:
        assert not any(np.array_equal(vx, t) for t in train_imgs)


@pytest.mark.parametrize("batch,echo", [(4, 2), (2, 3), (1, 4)])
def test_data_echoing_trains_each_fresh_sample_echo_times_in_other_batches(batch, echo):
    from deblur.stream import ECHO_WINDOW_BATCHES, echo_sample

    n = 5 * ECHO_WINDOW_BATCHES * batch * echo
    fresh = [echo_sample(i, batch, echo, seed=3) for i in range(n)]
    counts = np.bincount(fresh)
    assert len(counts) == n // echo and set(counts) == {echo}  # every fresh sample, echo times
    batches = [fresh[i:i + batch] for i in range(0, n, batch)]
    assert all(len(set(b)) == len(b) for b in batches)  # never twice in one batch
    assert fresh[:ECHO_WINDOW_BATCHES * batch] == list(range(ECHO_WINDOW_BATCHES * batch))
    assert fresh != sorted(fresh)  # later rounds are shuffled
    assert [echo_sample(i, batch, 1) for i in range(n)] == list(range(n))


def test_echoed_stream_repeats_the_fresh_scenes():
    from deblur.stream import synthetic_dataset

    geo = {"kind": "image", "multiple": 8}
    fresh = synthetic_dataset(5, [3, 7], batch_size=2, batches_per_epoch=2, geometry=geo, workers=0)
    echoed = synthetic_dataset(5, [3, 7], batch_size=2, batches_per_epoch=4, geometry=geo, workers=0, echo=2)
    a = [x for i in range(2) for x in fresh[i][0]["image"]]
    b = [x for i in range(4) for x in echoed[i][0]["image"]]
    for x in a:  # each of the 4 fresh scenes comes back twice, nothing else
        assert sum(np.array_equal(x, y) for y in b) == 2


def test_training_with_data_echoing_logs_and_records_it(tmp_path, capsys):
    from deblur.train import main

    run = tmp_path / "echo"
    assert main(["--synthetic", "--run-dir", str(run), "--steps", "4", "--epochs", "1", "--steps-per-epoch", "2",
                 "--batch-size", "2", "--synth-val-per-step", "1", "--synth-workers", "0", "--synth-echo", "2",
                 *TINY_ARGS]) == 0
    assert "each scene echoed 2x" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["args"]["synth_echo"] == 2
    assert np.isfinite(float(_rows(run)[0]["loss"]))
    with pytest.raises(SystemExit) as e:
        main(["--data", "x", "--run-dir", str(tmp_path / "d"), "--synth-echo", "2"])
    assert e.value.code == 2 and "--synth-echo is for --synthetic" in capsys.readouterr().err


def test_tiles_from_the_stream_for_valid_conv_models():
    from deblur.stream import ImageSource, make_sample

    geo = {"kind": "tiles", "in_size": 48, "out_size": 20, "tiles_per_image": 3}
    src = ImageSource(2, [6], workers=0)
    xs = [make_sample(src, i, geo) for i in range(4)]
    assert all(x.shape == (48, 48, 5) and y.shape == (20, 20) and s == 6 for x, y, s in xs)
    assert not np.array_equal(xs[0][0], xs[1][0])  # other crops of the same scene


@pytest.mark.slow
def test_fine_tuning_on_a_shifted_simulated_set_lowers_its_loss(tmp_path, monkeypatch):
    """The real-data recipe in miniature: a model trained on the standard synthetic stream, then
    fine-tuned with --init and a lower learning rate on a prepared set whose text is 25 % larger
    (a deliberate shift, as real data differs from the simulator): its loss on that set falls."""
    from deblur.model import load_model
    from deblur.train import batch_bce, main
    from deblur import data as D
    from pipelines.preparation.prepare import prepare
    from pipelines.reading import physics as P
    from pipelines.simulation import scene
    from pipelines.simulation.simulate import simulate

    base = tmp_path / "base"
    common = ["--steps", "3", "--batch-size", "4", "--quiet", "--model-arch", "highway", "--model-dim", "4",
              "--model-subdim", "4", "--model-refinements", "2", "--model-shared-width", "3"]
    assert main(["--synthetic", "--physics", "none", "--run-dir", str(base), "--epochs", "2", "--steps-per-epoch", "4",
                 "--model-input-size", "40", "--synth-tiles-per-image", "8", "--synth-val-per-step", "1",
                 "--synth-workers", "0", "--lr", "0.01", *common]) == 0

    monkeypatch.setattr(P, "FONT_SIZE_DISPLAY", 38)
    scene.font.cache_clear()
    scene._tallest_above_baseline.cache_clear()
    try:
        simulate(tmp_path / "sim", [3], samples=4, seed=3, workers=1, progress=False)
    finally:
        monkeypatch.undo()
        scene.font.cache_clear()
        scene._tallest_above_baseline.cache_clear()
    prepare(tmp_path / "sim", tmp_path / "prep", [3], in_size=40, out_size=26, registration="table",
            val_fraction=0.25, seed=0, workers=1, progress=False)

    def val_loss(model_path):
        m = load_model(model_path)
        tset = D.open_set(tmp_path / "prep", [3])
        losses = [batch_bce(y, m.predict_on_batch({k: np.asarray(v) for k, v in x.items()}))
                  for x, y in D.val_dataset(tset, 16, 26)]
        return float(np.concatenate(losses).mean())

    before = val_loss(base / "last.keras")
    tuned = tmp_path / "tuned"
    assert main(["--data", str(tmp_path / "prep"), "--run-dir", str(tuned), "--epochs", "3",
                 "--steps-per-epoch", "6", "--lr", "0.003", "--init", str(base / "last.keras"), *common]) == 0
    after = val_loss(tuned / "last.keras")
    assert after < 0.9 * before, (before, after)
