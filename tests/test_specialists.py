"""Growing a trained pyramid (deblur.grow) and routing steps to a specialist (card "specialists")."""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deblur.infer import Deblurrer  # noqa: E402
from deblur.model import ModelLoadError, ModelSpec, build_from_spec, build_model, save_model  # noqa: E402
from pipelines.preprocessing.preprocess import PreprocessConfig  # noqa: E402
from test_infer import blurred_like  # noqa: E402


def tiny_pyramid(seed=0, dims=(4, 6, 8)):
    keras.utils.set_random_seed(seed)
    spec = ModelSpec(arch="pyramid", dim=4, subdim=4, input_size=None, channels=5, max_step=19,
                     pyramid_dims=dims, pyramid_refinements=(1, 1, 2))
    model = build_from_spec(spec)
    for layer in model.layers:  # move BN statistics and gates off their initial values
        layer.set_weights([w + np.random.default_rng(seed).normal(0, 0.2, w.shape).astype(w.dtype)
                           if w.ndim == 1 else w for w in layer.get_weights()])
    return model


def _outputs(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((2, 32, 32, 5)).astype("float32")
    return model.predict({"image": x, "step": np.array([[2.0], [17.0]], "float32")}, verbose=0)


@pytest.mark.parametrize("dims", [(4, 6, 16), (4, 12, 16), (8, 6, 8)])
def test_widened_model_computes_what_the_trained_one_did(dims, tmp_path):
    from deblur.grow import widen
    from deblur.model import load_model, spec_of

    model = tiny_pyramid(1)
    wide = widen(model, dims)
    assert spec_of(wide).pyramid_dims == dims and wide.count_params() > model.count_params()
    for a, b in zip(wide.get_weights(), widen(model, dims, seed=0).get_weights()):
        np.testing.assert_array_equal(a, b)  # the new channels' draw is seeded (default 0)
    np.testing.assert_allclose(_outputs(wide), _outputs(model), atol=1e-6)
    again = load_model(save_model(wide, tmp_path / "w.keras"))
    np.testing.assert_allclose(_outputs(again), _outputs(model), atol=1e-6)
    # the new channels are live: moving a zeroed new->old path changes the output
    lvl, old = next((i, o) for i, (o, n) in enumerate(zip((4, 6, 8), dims)) if n > o)
    layer = wide.get_layer(f"refine{lvl}")
    k = layer.get_weights()
    k[0][:, :, old:, :old] = 0.5
    layer.set_weights(k)
    assert np.abs(_outputs(wide) - _outputs(model)).max() > 1e-5  # far above the 1e-6 kept above


def test_widen_refuses_shrinking_and_other_architectures(tmp_path):
    from deblur.grow import main, widen

    with pytest.raises(ValueError, match="only grow"):
        widen(tiny_pyramid(), (4, 4, 8))
    with pytest.raises(ValueError, match="3 levels"):
        widen(tiny_pyramid(), (4, 6, 8, 8))
    with pytest.raises(ValueError, match="pyramid"):
        widen(build_model(dim=4, subdim=4, refinements=1), (4, 6, 8))
    path = save_model(tiny_pyramid(), tmp_path / "m.keras")
    assert main(["--init", str(path), "--pyramid-dims", "4,2,8", "--out", str(tmp_path / "w.keras")]) == 2
    assert not (tmp_path / "w.keras").exists()
    assert main(["--init", str(path), "--pyramid-dims", "4,6,16", "--out", str(tmp_path / "w.keras")]) == 0
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["model"]["pyramid_dims"] == [4, 6, 16] and card["model_file"] == "w.keras"


def _shipped(folder, name, seed, steps):
    path = save_model(tiny_pyramid(seed), folder / f"{name}.keras")
    (folder / f"{name}.json").write_text(json.dumps({"preprocess": PreprocessConfig().to_dict(), "steps": steps}))
    return path


def test_card_routes_steps_to_the_specialist(tmp_path):
    from deblur.ship import route

    general = _shipped(tmp_path, "general", 1, list(range(20)))
    special = _shipped(tmp_path, "special", 2, [16, 17, 18, 19])
    route(special, [17, 18, 19], into=general)
    d, g, s = Deblurrer.from_file(general), Deblurrer.from_file(general), Deblurrer.from_file(special)
    g.specialists = {}
    image = blurred_like((7 * 40, 7 * 48), seed=3)
    np.testing.assert_array_equal(d.deblur(image, 18), s.deblur(image, 18))
    np.testing.assert_array_equal(d.deblur(image, 5), g.deblur(image, 5))
    assert not np.array_equal(g.deblur(image, 18), s.deblur(image, 18))
    assert set(d.specialists) == {17, 18, 19} and d.for_step(16) is d and "predict" in d.timings
    # re-routing replaces the file's entry
    route(special, [19], into=general)
    assert json.loads((tmp_path / "general.json").read_text())["specialists"] == [
        {"model_file": "special.keras", "steps": [19]}]


def test_a_bad_route_is_refused_and_the_card_kept(tmp_path):
    from deblur.ship import route

    general = _shipped(tmp_path, "general", 1, list(range(20)))
    special = _shipped(tmp_path, "special", 2, [16, 17, 18, 19])
    before = (tmp_path / "general.json").read_text()
    with pytest.raises(ModelLoadError, match="trained on steps"):
        route(special, [12, 17], into=general)  # the specialist never saw step 12
    assert (tmp_path / "general.json").read_text() == before
    card = json.loads(before)
    card["specialists"] = [{"model_file": "missing.keras", "steps": [19]}]
    (tmp_path / "general.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="missing.keras"):
        Deblurrer.from_file(general)
    for steps in ([25], []):
        card["specialists"] = [{"model_file": "special.keras", "steps": steps}]
        (tmp_path / "general.json").write_text(json.dumps(card))
        with pytest.raises(ModelLoadError, match="general.json"):
            Deblurrer.from_file(general)
