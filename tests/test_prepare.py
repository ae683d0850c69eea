"""pipelines.prepare: shards, manifest, split by sample, resume, configuration guard, bad input."""
import json

import numpy as np
import pytest

from pipelines.errors import DataError
from pipelines.prepare import main, prepare
from pipelines.shards import read_manifest, read_shard


def _run(data, out, **kw):
    return prepare(data, out, [0, 5], workers=1, val_fraction=0.5, images_per_shard=1, progress=False, **kw)


def test_shards_manifest_and_resume(sim_train, tmp_path):
    out = tmp_path / "prep"
    m = _run(sim_train, out)
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
