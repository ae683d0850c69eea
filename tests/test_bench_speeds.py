"""bench.speeds times the shipped configuration as it trains, whichever architecture the card names."""
import pytest

pytest.importorskip("tensorflow")

from bench.speeds import _model_config, bench_training  # noqa: E402
from deblur.infer import DEFAULT_MODEL, read_card  # noqa: E402


def test_the_training_row_follows_the_cards_architecture():
    path, cfg = _model_config(None)
    assert path == DEFAULT_MODEL
    assert cfg == read_card(DEFAULT_MODEL)["model"]
    tiny_pyramid = {**cfg, "arch": "pyramid", "pyramid_dims": [4, 4], "pyramid_refinements": [1, 1]}
    tps, geometry = bench_training(tiny_pyramid, seconds=0.1)
    assert tps > 0 and geometry == "whole 336 x 208 frames, batch 4"
    tiny_highway = {"dim": 4, "subdim": 4, "refinements": 1, "shared_width": 3, "input_size": 40}
    tps, geometry = bench_training(tiny_highway, seconds=0.1)
    assert tps > 0 and geometry == "40 px tiles, batch 16"
