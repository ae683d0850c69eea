"""bench.physics_info: the figures that chose the physics channels (docs/physics-info.md)."""
import numpy as np
import pytest

from bench import physics_info as B


def test_auc_and_the_target_itself():
    y = np.ones((12, 16), np.float32)
    y[3:6, 2:12] = 0.15
    f = B.text_figures(y, y)
    assert f["auc"] == 1.0 and f["auc_near"] == 1.0 and f["r"] == pytest.approx(1.0)
    assert B.text_figures(-y, y)["auc"] == 0.0
    assert B.auc(np.zeros(10), np.arange(10) < 4) == 0.5  # ties: no information
    assert np.isnan(B.auc(np.arange(5), np.zeros(5, bool)))
    assert B.spearman(np.arange(10) ** 3, np.arange(10)) == pytest.approx(1.0)


def test_one_step_on_two_frames_gives_sane_figures(capsys):
    row = B.measure_step(6, [0.003, 3.0], frames=2, multi=[[0.003, 3.0]])
    for key in ("auc", "auc_near", "r", "nontext_spearman"):
        assert set(row[key]) == {"input", "0.003", "3.0"}
        assert all(-1 <= v <= 1 for v in row[key].values())
    assert all(0.5 < v <= 1 for v in row["auc"].values())  # text is darker than paper in every channel
    assert row["auc_near"]["0.003"] > row["auc_near"]["input"]  # at step 6 Wiener resolves the strokes
    assert row["best_balance"] in (0.003, 3.0)
    fit = row["fit"]
    assert set(fit) == {"input", "input+0.003", "input+best", "input+{0.003,3}", "input+all"}
    assert all(0 < f["auc"] <= 1 and f["r2"] <= 1 for f in fit.values())
    text = B.report([row], [0.003, 3.0])
    assert "| 6 |" in text and "near the text" in text


def test_the_command_writes_its_plot_and_json(tmp_path):
    import json

    out, js = tmp_path / "p.png", tmp_path / "p.json"
    assert B.main(["--frames", "1", "--steps", "3", "--balances", "0.003,0.3", "--out", str(out),
                   "--json", str(js)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(js.read_text())["rows"]
    assert rows[0]["step"] == 3 and "fit" not in rows[0]  # one frame: no held-out fit
    assert B.main(["--frames", "1", "--steps", "3", "--balances", "0.3", "--multi", "0.003,0.3"]) == 2
