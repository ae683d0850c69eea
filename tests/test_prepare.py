"""pipelines.prepare: shards, manifest, split by sample, resume, configuration guard, bad input."""
import json

import numpy as np
import pytest

from pipelines.common.errors import DataError
from pipelines.preparation.prepare import main, prepare
from pipelines.preparation.shards import read_manifest, read_shard


def _run(data, out, **kw):
    return prepare(data, out, [0, 5], workers=1, val_fraction=0.5, images_per_shard=1, progress=False, **kw)


def _check_step_registration(m, out):
    """Default mode: one median geometry per step, near the simulator's truth (the physics table),
    kept in step_registration.json."""
    from pipelines.preprocessing.registration import residual_misalignment
    from pipelines.reading.physics import step_physics

    assert m["config"]["registration"] == "step" and m["config"]["registration_pairs"] == 5
    assert set(m["step_registration"]) == {"0", "5"}
    for step, rec in m["step_registration"].items():
        ph = step_physics(int(step))
        truth = (ph["scale_x"], ph["scale_y"], ph["shift_x"] / 7, ph["shift_y"] / 7)
        assert rec["source"] == "median" and len(rec["pairs"]) == 2  # both pairs of the step
        assert residual_misalignment(truth, rec, (208, 337)) * 7 < 2.0  # full-size px
    assert all(r["step_median"] for r in m["registration"])
    assert json.loads((out / "step_registration.json").read_text()) == m["step_registration"]


def test_shards_manifest_and_resume(sim_train, tmp_path):
    out = tmp_path / "prep"
    m = _run(sim_train, out)
    _check_step_registration(m, out)
    assert m["counts"]["train"] > 0 and m["counts"]["val"] > 0
    assert {s["split"] for s in m["shards"]} == {"train", "val"}
    first = read_shard(out / "shards" / m["shards"][0]["file"])
    assert first["x"].shape[1:] == (110, 110, 5) and first["y"].shape[1:] == (52, 52, 1)
    assert first["x"].dtype == np.float16 and first["y"].dtype == np.uint8
    assert 0 < first["y"].mean() < 255
    # split is by sample: each blurred image is in exactly one split
    assert set(m["splits"].values()) == {"train", "val"}
    # "kill" after some shards: remove one shard and the manifest, rerun, get identical files
    victim = out / "shards" / m["shards"][1]["file"]
    victim.unlink()
    (out / "manifest.json").unlink()
    m2 = _run(sim_train, out)
    assert m2["pairs_processed"] == 1
    assert [(s["file"], s["sha256"]) for s in m2["shards"]] == [(s["file"], s["sha256"]) for s in m["shards"]]
    assert read_manifest(out)["counts"] == m["counts"]
    assert m2["step_registration"] == m["step_registration"]  # the same geometry (step_registration.json)


def test_changed_configuration_refused(sim_train, tmp_path):
    out = tmp_path / "prep"
    _run(sim_train, out, registration="table")
    with pytest.raises(DataError, match="another configuration"):
        _run(sim_train, out, registration="none")
    m = _run(sim_train, out, registration="none", overwrite=True)
    assert m["config"]["registration"] == "none"


def test_bad_input_clear_error_or_skipped(sim_train, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(sim_train, data)
    bad = data / "step5" / "Times" / "CAM02" / "focusStep_5_timesR_size_30_sample_0001.tif"
    bad.write_bytes(bad.read_bytes()[:4000])
    with pytest.raises(DataError, match="truncated TIFF"):
        _run(data, tmp_path / "p1", registration="table")
    m = _run(data, tmp_path / "p2", registration="table", skip_bad=True)
    assert len(m["skipped"]) == 1 and m["skipped"][0]["file"] == str(bad)
    assert main(["--data", str(data), "--out", str(tmp_path / "p3"), "--steps", "5", "--workers", "1"]) == 1


def test_pair_stages_are_the_preprocessing_functions(sim_train):
    """prepare composes the stages itself (to share the down-scaled images with the registration);
    it must stay identical to preprocess_blurred / preprocess_sharp."""
    from pipelines.preparation.stages import make_config, pair_stages
    from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_blurred, preprocess_sharp
    from pipelines.reading.hdc import find_samples, load_pair

    sample = find_samples(sim_train, steps={5})[0]
    cfg = make_config(sim_train, [5], registration="table")
    sharp, blurred = load_pair(sample)
    st = pair_stages(sample, cfg, images=(sharp, blurred))
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    np.testing.assert_array_equal(st["channels"], preprocess_blurred(blurred, pre))
    np.testing.assert_array_equal(st["target"], preprocess_sharp(sharp, pre))
    assert st["channels"].shape[:2] == st["registered"].shape == st["grid"].image_shape
    with pytest.raises(ValueError, match="step's geometry"):
        pair_stages(sample, make_config(sim_train, [5]), images=(sharp, blurred))
    # with the physics channel: the same five channels plus the step's Wiener channel
    cfg = make_config(sim_train, [5], registration="table", physics="wiener")
    st6 = pair_stages(sample, cfg, images=(sharp, blurred))
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    assert pre.physics == "wiener" and st6["channels"].shape[-1] == 6
    np.testing.assert_array_equal(st6["channels"], preprocess_blurred(blurred, pre, step=5))
    np.testing.assert_array_equal(st6["channels"][..., :5], st["channels"])
    # several balances ("wiener-multi"): the set's record names them, the stages add one channel each
    cfg = make_config(sim_train, [5], registration="table", physics="wiener-multi", physics_balances=(0.003, 3))
    assert cfg["preprocess"]["physics_balances"] == [0.003, 3.0]
    st7 = pair_stages(sample, cfg, images=(sharp, blurred))
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    np.testing.assert_array_equal(st7["channels"], preprocess_blurred(blurred, pre, step=5))
    np.testing.assert_array_equal(st7["channels"][..., :6], st6["channels"])


def test_physics_balances_flag_is_checked(tmp_path, capsys):
    from pipelines.preparation.prepare import main

    for extra, message in ((["--physics", "wiener", "--physics-balances", "0.1"], "is for --physics wiener-multi"),
                           (["--physics", "wiener-multi", "--physics-balances", "0.1,x"], "--physics-balances 0.1,x"),
                           (["--physics", "wiener-multi", "--physics-balances", "0.1,0"], "> 0")):
        with pytest.raises(SystemExit) as e:
            main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_workers_give_the_same_shards_and_preview(sim_train, tmp_path, monkeypatch):
    """Worker processes, forked (the environment asks for one BLAS thread, as the command line sets
    it) or spawned (it does not), produce the same bytes as the in-process run; --preview writes a PNG."""
    from pipelines.preparation.prepare import ONE_THREAD_ENV

    a = _run(sim_train, tmp_path / "a", registration="table")
    for k in ONE_THREAD_ENV:
        monkeypatch.delenv(k, raising=False)
    spawned = prepare(sim_train, tmp_path / "s", [5], workers=2, val_fraction=0.5, images_per_shard=1,
                      progress=False, registration="table")
    for k, v in ONE_THREAD_ENV.items():
        monkeypatch.setenv(k, v)
    forked = prepare(sim_train, tmp_path / "f", [0, 5], workers=2, val_fraction=0.5, images_per_shard=1,
                     progress=False, registration="table", preview=2)
    assert spawned["workers"] == forked["workers"] == 2
    shards = [(s["file"], s["sha256"]) for s in a["shards"]]
    assert [(s["file"], s["sha256"]) for s in forked["shards"]] == shards
    assert [(s["file"], s["sha256"]) for s in spawned["shards"]] == [x for x in shards if x[0].startswith("step05")]
    png = tmp_path / "f" / "preview.png"
    assert forked["preview"] == "preview.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "f").iterdir() if p.name.startswith(".")]  # no temp files left
