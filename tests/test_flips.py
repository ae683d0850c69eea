"""Test-time flip averaging (Deblurrer flips / the card's "inference": {"flips": N})."""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deblur.infer import Deblurrer  # noqa: E402
from deblur.model import ModelLoadError, build_model, save_model  # noqa: E402
from pipelines.preprocessing.preprocess import PreprocessConfig  # noqa: E402
from test_specialists import tiny_pyramid  # noqa: E402

X = np.random.default_rng(4).random((37, 45, 5)).astype("float32")  # odd sides: padding is flipped too


def test_flips_average_the_mirrored_views():
    model = tiny_pyramid(3)
    one, four, two = (Deblurrer(model, flips=n) for n in (1, 4, 2))
    plain = one.predict_small(X, 18)
    views = [one.predict_small(X[::a, ::b], 18)[::a, ::b] for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    assert max(np.abs(v - plain).max() for v in views[1:]) > 1e-4  # the model is not mirror-symmetric
    np.testing.assert_allclose(four.predict_small(X, 18), np.mean(views, axis=0), atol=1e-6)
    np.testing.assert_allclose(two.predict_small(X, 18), np.mean(views[:2], axis=0), atol=1e-6)
    # four views: mirroring the input mirrors the output
    np.testing.assert_allclose(four.predict_small(X[::-1], 18)[::-1], four.predict_small(X, 18), atol=1e-6)
    assert four.predict_small(X, 18).dtype == np.float32


def test_the_card_sets_flips_and_a_bad_value_is_refused(tmp_path):
    path = save_model(tiny_pyramid(2), tmp_path / "m.keras")
    card = {"preprocess": PreprocessConfig().to_dict(), "steps": list(range(20))}
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert Deblurrer.from_file(path).flips == 1
    card["inference"] = {"flips": 4}
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert Deblurrer.from_file(path).flips == 4
    for bad in ({"flips": 3}, {"flips": True}, [4]):
        card["inference"] = bad
        (tmp_path / "m.json").write_text(json.dumps(card))
        with pytest.raises(ModelLoadError, match=r"m\.json.*flips"):
            Deblurrer.from_file(path)


def test_flips_need_a_pyramid_model():
    with pytest.raises(ValueError, match="pyramid"):
        Deblurrer(build_model(dim=4, subdim=4, refinements=1), flips=2)
    with pytest.raises(ValueError, match="flips must be"):
        Deblurrer(tiny_pyramid(), flips=8)
