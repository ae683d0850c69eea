"""The leaderboard's challenge rule."""
from eval.demo import highest_step_passed  # re-exported from eval.score


def _rows(scores):
    return [{"method": "m", "step": s, "score": v} for s, v in enumerate(scores)]


def test_highest_step_passed_needs_every_step_below():
    assert highest_step_passed(_rows([90, 80, 70, 69.9, 95]), "m") == 2
    assert highest_step_passed(_rows([60, 90]), "m") == -1
    assert highest_step_passed(_rows([100] * 20), "m") == 19
    gap = [r for r in _rows([90, 90, 90]) if r["step"] != 1]
    assert highest_step_passed(gap, "m") == 0


def test_demo_default_methods(tmp_path):
    from eval.demo import default_methods

    assert default_methods(tmp_path / "absent.keras") == ["sharp", "identity", "wiener", "rl"]
    (tmp_path / "m.keras").write_bytes(b"x")
    assert default_methods(tmp_path / "m.keras")[-1] == "model"


def test_demo_end_to_end_small(tmp_path, capsys):
    import json

    from eval.demo import main

    assert main(["--out", str(tmp_path), "--steps", "0", "--samples", "1", "--workers", "1",
                 "--methods", "sharp,identity"]) == 0
    out = capsys.readouterr().out
    assert "highest step passed" in out
    assert "sanity check" in out and "highest step passed with the sanity check" in out
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    assert {r["method"]: r["sanity_n"] for r in data["rows"]} == {"sharp": 7, "identity": 7}
    assert data["methods"] == ["sharp", "identity"] and data["steps"] == [0]
    assert (tmp_path / "data" / "simulation.json").is_file()
    assert (tmp_path / "montage.png").is_file() and (tmp_path / "leaderboard.png").is_file()
