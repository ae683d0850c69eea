"""Training: CLI parsing, shard streaming, a tiny learnable run, resume after a kill, mirrored and
mixed-precision training. Sets are tiny fakes written with pipelines.preparation.shards (targets =
the first input channel thresholded, centre-cropped: a task the network can learn in a few
epochs)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.common.errors import DataError
from pipelines.preparation.shards import FORMAT_VERSION, SHARD_DIR, shard_name, write_manifest, write_shard

ROOT = Path(__file__).resolve().parents[1]
SIZE, OUT = 32, 16           # the small model below maps 32 px tiles to 16 px
TARGET = 18                  # targets a little larger than the output: the pipeline centre-crops them
MODEL_ARGS = ["--model-arch", "highway", "--model-dim", "8", "--model-subdim", "8", "--model-refinements", "3",
              "--model-shared-width", "3", "--no-step-weighting"]
MODEL_CFG = dict(model_dim=8, model_subdim=8, model_refinements=3, model_shared_width=3)


def make_set(root, steps=(0, 1), n_train=24, n_val=8, shards=2, seed=0):
    rng = np.random.default_rng(seed)
    root = Path(root)
    entries = []
    c = (SIZE - TARGET) // 2
    for s in steps:
        for split, n, k in (("train", n_train, shards), ("val", n_val, 1)):
            for i in range(k):
                m = n // k
                x = rng.random((m, SIZE, SIZE, 5)).astype("float16").astype("float32")  # as stored
                y = np.where(x[:, c:c + TARGET, c:c + TARGET, :1] > 0.5, 255, 0).astype("uint8")
                e = write_shard(root / SHARD_DIR / shard_name(s, split, i), x, y, np.full(m, s), np.arange(m))
                entries.append({**e, "step": s, "split": split})
    write_manifest(root, {"format_version": FORMAT_VERSION, "shards": entries, "config": {"fake": True}})
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_set(tmp_path_factory.mktemp("set"))


def _rows(run_dir):
    with open(Path(run_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "deblur.train", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


# ---- command line ----------------------------------------------------------------------------

def test_steps_argument(capsys):
    from deblur.train import build_parser, main

    base = ["--data", "d", "--run-dir", "r"]
    assert build_parser().parse_args(base + ["--steps", "0,2,5-7"]).steps == [0, 2, 5, 6, 7]
    assert build_parser().parse_args(base).steps is None  # not given: the recipe's 0-19 (tests/test_recipe.py)
    for bad, words in (("3-1", "backwards"), ("25", "outside"), ("a", "not N or N-M")):
        with pytest.raises(SystemExit) as e:
            main(base + ["--steps", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--steps" in err and words in err, err
    p = build_parser()
    assert p.parse_args(base + ["--lr", "10**-2.5"]).lr == pytest.approx(10 ** -2.5)
    assert p.parse_args(base + ["--lr", "1e-3"]).lr == pytest.approx(1e-3)


def test_steps_error_from_the_shell_has_no_traceback():
    r = _cli("--data", "d", "--run-dir", "r", "--steps", "3-1")
    assert r.returncode == 2
    assert "backwards" in r.stderr and "Traceback" not in r.stderr


def test_missing_step_is_a_clear_error(data_dir, tmp_path, capsys):
    from deblur.data import open_set
    from deblur.train import main

    with pytest.raises(DataError, match=r"step\(s\) \[5\].*steps \[0, 1\]"):
        open_set(data_dir, [0, 5])
    assert main(["--data", str(data_dir), "--run-dir", str(tmp_path / "r"), "--steps", "5"]) == 1
    assert "no training shards for step(s) [5]" in capsys.readouterr().err
    with pytest.raises(DataError, match="no manifest"):
        open_set(tmp_path, [0])


# ---- input pipeline --------------------------------------------------------------------------

def test_streams_batches_of_the_requested_steps(data_dir):
    from deblur.data import epoch_steps, open_set, train_dataset, val_dataset

    tset = open_set(data_dir, [1])
    assert (tset.input_size, tset.channels, tset.target_size) == (SIZE, 5, TARGET)
    assert tset.count("train") == 24 and tset.count("val") == 8 and epoch_steps(tset, 8) == 3
    ds = train_dataset(tset, 8, OUT, shuffle_buffer=16, seed=0)
    for inputs, y in ds.take(4):  # infinite stream: more batches than one pass
        assert inputs["image"].shape == (8, SIZE, SIZE, 5) and inputs["image"].dtype.name == "float32"
        assert inputs["step"].shape == (8, 1) and set(inputs["step"].numpy().ravel()) == {1.0}
        assert y.shape == (8, OUT, OUT, 1) and set(np.unique(y.numpy())) <= {0.0, 1.0}
        # the cropped target is the thresholded centre of channel 0
        c = (SIZE - OUT) // 2
        np.testing.assert_array_equal(y.numpy()[..., 0],
                                      inputs["image"].numpy()[:, c:c + OUT, c:c + OUT, 0] > 0.5)
    n = sum(int(y.shape[0]) for _, y in val_dataset(open_set(data_dir, [0, 1]), 5, OUT))
    assert n == 16


def test_step_sampler_weights_follow_the_losses(data_dir):
    from deblur.data import StepSampler, open_set, train_dataset

    s = StepSampler([0, 1, 2], seed=0)
    np.testing.assert_allclose(s.weights, 1 / 3)
    w = s.update({0: 0.01, 1: 0.2, 2: 0.6})
    assert w[0] < w[1] < w[2] and w.sum() == pytest.approx(1)
    floor = 0.25 * (0.01 + 0.2 + 0.6) / 3  # losses below 0.25 x the mean loss count as that
    np.testing.assert_allclose(w, np.array([floor, 0.2, 0.6]) / (floor + 0.8))
    sampler = StepSampler([0, 1], seed=0, chunk=16)
    sampler.update({0: 0.1, 1: 0.9})  # step 1 favoured 9:1 (step 0 floored to 0.25 x mean)
    ds = train_dataset(open_set(data_dir, [0, 1]), 8, OUT, shuffle_buffer=0, sampler=sampler)
    steps = np.concatenate([i["step"].numpy().ravel() for i, _ in ds.take(12)])
    assert (steps == 1).mean() > 0.65


# ---- training --------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_training_run_lowers_the_loss(data_dir, tmp_path):
    from deblur.model import load_model, spec_of
    from deblur.train import train

    run = tmp_path / "run"
    hist = train(dict(data=str(data_dir), run_dir=str(run), steps=[0, 1], epochs=3, batch_size=8,
                      lr=0.01, verbose=False, step_weighting=True, **MODEL_CFG))
    assert hist["epoch"] == [0, 1, 2]
    assert hist["loss"][-1] < hist["loss"][0]
    for key in ("val_loss", "val_loss_step0", "val_loss_step1", "learning_rate", "weight_step1"):
        assert len(hist[key]) == 3 and all(np.isfinite(hist[key])), key
    for name in ("config.json", "history.csv", "history.json", "best.keras", "last.keras"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # removed once training ended
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["output_size"] == OUT and cfg["args"]["steps"] == [0, 1]
    assert cfg["data"]["manifest_config"] == {"fake": True}
    assert json.loads((run / "history.json").read_text())["epoch"] == [0, 1, 2]
    assert spec_of(load_model(run / "best.keras")).output_size == OUT
    # a finished run dir is not silently overwritten
    from deblur.train import RunDirError
    with pytest.raises(RunDirError, match="finished run"):
        train(dict(data=str(data_dir), run_dir=str(run), steps=[0, 1], epochs=1, verbose=False, **MODEL_CFG))


@pytest.mark.slow
def test_mixed_precision_trains_and_outputs_float32(data_dir, tmp_path):
    from deblur.model import load_model
    from deblur.train import train

    run = tmp_path / "mp"
    hist = train(dict(data=str(data_dir), run_dir=str(run), steps=[0], epochs=1, batch_size=8,
                      mixed_precision=True, verbose=False, **MODEL_CFG))
    assert np.isfinite(hist["loss"][0]) and np.isfinite(hist["val_loss"][0])
    assert json.loads((run / "config.json").read_text())["dtype_policy"] == "mixed_bfloat16"
    m = load_model(run / "last.keras")
    assert m.get_layer("refine").compute_dtype == "bfloat16"
    y = m({"image": np.zeros((1, SIZE, SIZE, 5), "float32"), "step": np.zeros((1, 1), "float32")})
    assert y.dtype.name == "float32"


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_finished_epoch(data_dir, tmp_path):
    from deblur.train import STOP_EXIT_CODE, main

    run = tmp_path / "resume"
    args = ["--data", str(data_dir), "--run-dir", str(run), "--steps", "0-1", "--epochs", "4",
            "--batch-size", "8", "--lr", "0.01", *MODEL_ARGS]
    r = _cli(*args, "--stop-after-epoch", "2")  # exits hard (os._exit) after epoch 2's backup
    assert r.returncode == STOP_EXIT_CODE, r.stdout + r.stderr
    assert [row["epoch"] for row in _rows(run)] == ["0", "1"]
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    # simulate a kill between CSVLogger's row for epoch 3 and its backup: that row must not stay
    text = (run / "history.csv").read_text()
    (run / "history.csv").write_text(text + text.splitlines()[-1].replace("1,", "2,", 1) + "\n")
    assert [row["epoch"] for row in _rows(run)] == ["0", "1", "2"]
    assert main(args + ["--quiet"]) == 0  # the same command again: continues with epochs 3 and 4
    rows = _rows(run)
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    assert float(rows[3]["loss"]) < float(rows[0]["loss"])
    assert json.loads((run / "history.json").read_text())["epoch"] == [0, 1, 2, 3]


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(data_dir, tmp_path):
    run = tmp_path / "mirrored"
    r = _cli("--data", str(data_dir), "--run-dir", str(run), "--steps", "0-1", "--epochs", "1",
             "--batch-size", "8", "--distribute", "mirrored", "--logical-cpus", "2", *MODEL_ARGS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MirroredStrategy x2" in r.stdout
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["strategy"] == "MirroredStrategy" and cfg["replicas"] == 2
    assert len(_rows(run)) == 1 and (run / "last.keras").is_file()
