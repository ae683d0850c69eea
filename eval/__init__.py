"""Scoring exactly as HDC2021 did: the OCR scorer, baselines and the per-step leaderboard."""
