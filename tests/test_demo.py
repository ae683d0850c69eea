"""The leaderboard's challenge rule."""
from eval.demo import highest_step_passed


def _rows(scores):
    return [{"method": "m", "step": s, "score": v} for s, v in enumerate(scores)]


def test_highest_step_passed_needs_every_step_below():
    assert highest_step_passed(_rows([90, 80, 70, 69.9, 95]), "m") == 2
    assert highest_step_passed(_rows([60, 90]), "m") == -1
    assert highest_step_passed(_rows([100] * 20), "m") == 19
    gap = [r for r in _rows([90, 90, 90]) if r["step"] != 1]
    assert highest_step_passed(gap, "m") == 0
