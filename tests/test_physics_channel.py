"""The physics input channel: the step's Wiener deconvolution beside the median channels
(pipelines.preprocessing.deconv, PreprocessConfig.physics), shared with the Wiener baseline, and
carried through training (--physics, --init of a model with fewer channels) and inference."""
import numpy as np
import pytest

from pipelines.preprocessing import deconv
from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_blurred, preprocess_small
from pipelines.simulation.synth import synth_pair

WIENER = PreprocessConfig(physics="wiener")
MULTI = PreprocessConfig(physics="wiener-multi")


def test_config_channels_and_records():
    assert PreprocessConfig().channels == 5 and WIENER.channels == 6
    assert WIENER.needs_step and not PreprocessConfig().needs_step
    # without the channel the record is what it was before the option existed
    assert "physics" not in PreprocessConfig().to_dict()
    d = WIENER.to_dict()
    assert d["physics"] == "wiener" and d["physics_balance"] == pytest.approx(0.003)
    assert PreprocessConfig.from_dict(d) == WIENER
    with pytest.raises(ValueError, match="physics channel must be one of"):
        PreprocessConfig(physics="tikhonov")
    with pytest.raises(ValueError, match="physics_balance"):
        PreprocessConfig(physics="wiener", physics_balance=0)


def test_the_multi_config_records_its_balances_and_old_records_stay_as_they_were():
    assert MULTI.channels == 5 + len(deconv.MULTI_BALANCES) and MULTI.needs_step
    assert MULTI.balances == deconv.MULTI_BALANCES and MULTI.balances[0] == WIENER.physics_balance
    d = MULTI.to_dict()
    assert d["physics"] == "wiener-multi" and d["physics_balances"] == list(deconv.MULTI_BALANCES)
    assert "physics_balance" not in d and PreprocessConfig.from_dict(d) == MULTI
    # a "wiener" record (every card before the option) has exactly its two old keys
    assert set(WIENER.to_dict()) - set(PreprocessConfig().to_dict()) == {"physics", "physics_balance"}
    assert WIENER.balances == (0.003,) and WIENER.channels == 6
    two = PreprocessConfig(physics="wiener-multi", physics_balances=[0.003, 3])
    assert two.channels == 7 and two.balances == (0.003, 3.0)
    for bad, match in ((dict(physics="wiener", physics_balances=(0.1,)), "is for physics"),
                       (dict(physics="wiener-multi", physics_balances=(0.1, 0.1)), "distinct"),
                       (dict(physics="wiener-multi", physics_balances=(0.1, -1)), "distinct numbers > 0"),
                       (dict(physics="wiener-multi", physics_balance=0.01), "takes physics_balances")):
        with pytest.raises(ValueError, match=match):
            PreprocessConfig(**bad)


def test_one_wiener_channel_cards_still_get_their_input_and_the_shipped_card_three():
    """Models with one Wiener channel (physics "wiener", balance 0.003, no physics_balances in their
    card: text-only.keras) load and get exactly the input they were trained with; a wiener-multi card
    (the shipped default) gives the three balances."""
    import json
    from pathlib import Path

    for card in sorted((Path(__file__).resolve().parents[1] / "deblur" / "models").glob("*.json")):
        raw = json.loads(card.read_text())["preprocess"]
        pre = PreprocessConfig.from_dict(raw)
        if pre.physics == "wiener":
            assert pre == WIENER, card
        elif pre.physics == "wiener-multi":
            assert pre.balances == (0.003, 0.1, 3.0) and pre.channels == 8, card
    models = Path(__file__).resolve().parents[1] / "deblur" / "models"
    assert PreprocessConfig.from_dict(json.loads((models / "text-only.json").read_text())["preprocess"]) == WIENER
    shipped = PreprocessConfig.from_dict(json.loads((models / "default.json").read_text())["preprocess"])
    assert shipped.physics == "wiener-multi" and shipped.balances == (0.003, 0.1, 3.0)
    small = synth_pair(3, 0, step=16).blurred
    x = preprocess_small(small, WIENER, step=16)
    from pipelines.preprocessing.preprocess import remove_vignetting
    corrected, _ = remove_vignetting(small)
    np.testing.assert_array_equal(x[..., 5], deconv.physics_channel(corrected, 16, 7, 0.003))


@pytest.mark.parametrize("step", [2, 17])
def test_multi_channels_are_the_wiener_channel_at_each_balance(step):
    small = synth_pair(4, 1, step=step).blurred
    x = preprocess_small(small, MULTI, step=step)
    assert x.shape == small.shape + (MULTI.channels,) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., :6], preprocess_small(small, WIENER, step=step))
    for k, b in enumerate(MULTI.balances):  # the shared-FFT path gives physics_channel's values
        np.testing.assert_array_equal(x[..., 5 + k], deconv.physics_channel(x[..., 0], step, 7, b))


def test_the_channel_needs_the_step_and_adds_one_channel():
    small = synth_pair(3, 0, step=6).blurred
    plain = preprocess_small(small)
    with pytest.raises(ValueError, match="needs the blur step"):
        preprocess_small(small, WIENER)
    with pytest.raises(ValueError, match="blur step must be"):
        preprocess_small(small, WIENER, step=20)
    x = preprocess_small(small, WIENER, step=6)
    assert x.shape == plain.shape[:2] + (6,) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., :5], plain)
    lo, hi = deconv.CHANNEL_CLIP
    assert lo <= x[..., 5].min() and x[..., 5].max() <= hi


@pytest.mark.parametrize("step", [4, 8, 12])
def test_the_wiener_channel_is_closer_to_the_target_than_the_blurred_input(step):
    """What the channel is for: at the middle steps it already resolves the text the blurred
    channels smear (correlation with the binarised target), on the sharp scale (text -1, paper 0)."""
    p = synth_pair(11, step, step=step, config=WIENER)
    y = p.y.ravel()

    def corr(c):
        return np.corrcoef(p.x[..., c].ravel(), y)[0, 1]

    assert corr(5) > max(corr(c) for c in range(5)) + 0.1
    w = p.x[..., 5]
    assert abs(float(np.median(w[p.y == 1]))) < 0.1  # paper at 0
    assert float(np.median(w[p.y < 0.5])) < -0.5  # text towards -1


def test_the_baseline_uses_the_same_wiener():
    from eval import baselines

    assert baselines.wiener is deconv.wiener and baselines.disc_psf is deconv.disc_psf


@pytest.mark.parametrize("config", [WIENER, MULTI], ids=["wiener", "wiener-multi"])
def test_full_size_and_stream_inputs_agree_with_the_channel(config):
    """preprocess_blurred (inference, prepare) and the stream's preprocess_small give the same
    physics channels for the same 1:7 image."""
    rng = np.random.default_rng(0)
    full = np.clip(0.8 + 0.02 * rng.standard_normal((7 * 40, 7 * 60)), 0, 1).astype(np.float32)
    full[100:160, 120:300] = 0.3
    from pipelines.preprocessing.preprocess import downscale
    np.testing.assert_array_equal(preprocess_blurred(full, config, step=9),
                                  preprocess_small(downscale(full, 7), config, step=9))


def test_the_stream_feeds_what_inference_builds():
    """A synthetic pair's input (the training stream) is preprocess_small of its 1:7 image, the
    stages inference runs after down-scaling."""
    p = synth_pair(5, 2, step=15, config=MULTI)
    assert p.x.shape[-1] == MULTI.channels
    np.testing.assert_array_equal(p.x, preprocess_small(p.blurred, MULTI, step=15))


# ------------------------------------------------------------------ training and inference

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("more", [1, 3])
def test_init_extends_a_model_with_fewer_channels(tmp_path, more):
    """--init from a 5-channel model into a 6-channel run: the new channel's weights start at 0, so
    the extended model computes exactly what the saved one did; other differences stay errors."""
    import dataclasses

    from deblur.model import ModelSpec, build_from_spec, save_model
    from deblur.train import _load_init
    from pipelines.common.errors import DataError

    spec5 = ModelSpec(arch="pyramid", dim=4, subdim=4, input_size=None, pyramid_dims=(4, 6, 8),
                      pyramid_refinements=(1, 1, 1), channels=5)
    keras.utils.set_random_seed(3)
    src = build_from_spec(spec5)
    save_model(src, tmp_path / "five.keras")
    six = build_from_spec(dataclasses.replace(spec5, channels=5 + more))
    note = _load_init(six, tmp_path / "five.keras")
    assert f"from 5 to {5 + more} channels" in note
    rng = np.random.default_rng(0)
    x = -0.3 * rng.random((1, 32, 48, 5)).astype(np.float32)
    x6 = np.concatenate([x, rng.random((1, 32, 48, more)).astype(np.float32)], axis=-1)
    step = np.array([[7.0]], np.float32)
    np.testing.assert_allclose(six.predict_on_batch({"image": x6, "step": step}),
                               src.predict_on_batch({"image": x, "step": step}), atol=1e-6)
    wider = build_from_spec(dataclasses.replace(spec5, channels=6, pyramid_dims=(4, 6, 10)))
    with pytest.raises(DataError, match="another architecture"):
        _load_init(wider, tmp_path / "five.keras")
    fewer = build_from_spec(dataclasses.replace(spec5, channels=4))
    with pytest.raises(DataError, match="another architecture"):
        _load_init(fewer, tmp_path / "five.keras")


def test_synthetic_training_with_the_physics_channel(tmp_path):
    """deblur.train --synthetic --physics wiener trains a 6-channel model and records the channel
    in the run's preprocessing (which the card, and so inference, rebuilds)."""
    import json

    from deblur.model import load_model, spec_of
    from deblur.train import main

    run = tmp_path / "phys"
    assert main(["--synthetic", "--physics", "wiener", "--run-dir", str(run), "--steps", "4,9",
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--synth-val-per-step", "1",
                 "--synth-workers", "0", "--model-arch", "pyramid", "--model-pyramid-dims", "4,6,8",
                 "--model-pyramid-refinements", "1,1,1", "--model-dim", "4", "--model-subdim", "4",
                 "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["preprocess"]["physics"] == "wiener"
    assert spec_of(load_model(run / "last.keras")).channels == 6
    # a checkpoint without a card takes its run's preprocessing, physics channel included
    from deblur.infer import Deblurrer
    from deblur.model import ModelLoadError

    d = Deblurrer.from_file(run / "last.keras")
    assert d.preprocess.physics == "wiener" and d.preprocess.channels == 6
    assert d.deblur_small(np.full((7 * 24, 7 * 32), 0.8, np.float32), 9).shape == (24, 32)
    lone = tmp_path / "lone.keras"  # the same file outside its run: no way to know the channel
    lone.write_bytes((run / "last.keras").read_bytes())
    with pytest.raises(ModelLoadError, match="6 input channels"):
        Deblurrer.from_file(lone)
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--physics", "wiener", "--run-dir", str(run)])


@keras.saving.register_keras_serializable(package="test_physics_channel")
class CentreLastChannel(keras.layers.Layer):
    """[image, step] -> the centre crop of the last input channel (margin px per side)."""

    def __init__(self, margin, **kwargs):
        super().__init__(**kwargs)
        self.margin = int(margin)

    def call(self, inputs):
        image, step = inputs
        m = self.margin
        return image[:, m:-m, m:-m, -1:] + 0.0 * step[:, :, None, None]

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def test_inference_feeds_the_step_s_wiener_channel():
    from deblur.infer import Deblurrer

    image = keras.Input((20, 20, 6), name="image")
    step = keras.Input((1,), name="step")
    model = keras.Model({"image": image, "step": step}, CentreLastChannel(6)([image, step]))
    rng = np.random.default_rng(1)
    full = np.clip(0.8 + 0.01 * rng.standard_normal((7 * 30, 7 * 44)), 0, 1).astype(np.float32)
    full[70:120, 90:230] = 0.35
    d = Deblurrer(model, preprocess=WIENER, batch_size=4, method="tiled")
    for s in (3, 10):
        ref = preprocess_blurred(full, WIENER, step=s)[..., 5]
        np.testing.assert_allclose(d.deblur_small(full, s), ref, atol=1e-6)
    assert not np.allclose(preprocess_blurred(full, WIENER, step=3)[..., 5],
                           preprocess_blurred(full, WIENER, step=10)[..., 5], atol=1e-3)
    with pytest.raises(ValueError, match="input channels"):
        Deblurrer(model, preprocess=PreprocessConfig())


def test_inference_feeds_every_multi_channel():
    from deblur.infer import Deblurrer

    image = keras.Input((20, 20, MULTI.channels), name="image")
    step = keras.Input((1,), name="step")
    model = keras.Model({"image": image, "step": step}, CentreLastChannel(6)([image, step]))
    rng = np.random.default_rng(2)
    full = np.clip(0.8 + 0.01 * rng.standard_normal((7 * 30, 7 * 44)), 0, 1).astype(np.float32)
    full[70:120, 90:230] = 0.35
    d = Deblurrer(model, preprocess=MULTI.to_dict(), batch_size=4, method="tiled")  # as from a card
    ref = preprocess_blurred(full, MULTI, step=17)[..., -1]
    np.testing.assert_allclose(d.deblur_small(full, 17), ref, atol=1e-6)
    with pytest.raises(ValueError, match="input channels"):
        Deblurrer(model, preprocess=WIENER)


def test_train_flags_for_several_balances(tmp_path, capsys):
    """--physics wiener-multi from a wiener model keeps its 0.003 first (exact extension); the
    balances a multi model records are taken over; contradictions are named."""
    import json

    from deblur.train import build_parser, main, resolve

    def config(*argv):
        return resolve(build_parser().parse_args(["--run-dir", "R", *argv]))

    c = config("--physics", "wiener-multi")  # the shipped card's balances are the recipe's
    assert c.physics == "wiener-multi" and c.physics_balances == (0.003, 0.1, 3.0)
    assert config("--physics", "wiener").physics_balances is None
    assert config("--physics", "wiener-multi", "--physics-balances", "0.003,3").physics_balances == (0.003, 3.0)
    for argv, message in ((["--physics", "wiener", "--physics-balances", "0.1,3"], "is for --physics wiener-multi"),
                          (["--physics", "wiener-multi", "--physics-balances", "0.1,0.1"], "distinct"),
                          (["--data", "D", "--physics-balances", "0.1,3"], "--physics is for the synthetic")):
        with pytest.raises(SystemExit):
            main(["--run-dir", "R", *argv])
        assert message in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    model = {"arch": "pyramid", "dim": 4, "subdim": 4, "pyramid_dims": [4, 6, 8], "pyramid_refinements": [1, 1, 1]}
    (run / "config.json").write_text(json.dumps({"args": {}, "steps": [3], "model": {**model, "channels": 6},
                                                 "data": {"synthetic": True, "preprocess": WIENER.to_dict()}}))
    init = str(run / "best.keras")
    assert config("--init", init).physics == "wiener"
    assert config("--init", init, "--physics", "wiener-multi").physics == "wiener-multi"
    with pytest.raises(ValueError, match="first --physics-balances must be that one"):
        config("--init", init, "--physics", "wiener-multi", "--physics-balances", "0.1,3")
    multi = tmp_path / "multi"
    multi.mkdir()
    two = PreprocessConfig(physics="wiener-multi", physics_balances=(0.003, 3))
    (multi / "config.json").write_text(json.dumps({"args": {}, "steps": [3], "model": {**model, "channels": 7},
                                                   "data": {"synthetic": True, "preprocess": two.to_dict()}}))
    c = config("--init", str(multi / "best.keras"))
    assert (c.physics, c.physics_balances) == ("wiener-multi", (0.003, 3.0))
    with pytest.raises(ValueError, match="--physics-balances 0.003,1 contradicts --init"):
        config("--init", str(multi / "best.keras"), "--physics-balances", "0.003,1")


def test_synthetic_training_with_several_balances(tmp_path):
    """deblur.train --physics wiener-multi: the run records the balances, and a checkpoint loads
    for inference with them."""
    import json

    from deblur.infer import Deblurrer
    from deblur.model import load_model, spec_of
    from deblur.train import main

    run = tmp_path / "multi"
    assert main(["--synthetic", "--physics", "wiener-multi", "--physics-balances", "0.003,3", "--run-dir", str(run),
                 "--steps", "16", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
                 "--synth-val-per-step", "1", "--synth-workers", "0", "--model-arch", "pyramid",
                 "--model-pyramid-dims", "4,6,8", "--model-pyramid-refinements", "1,1,1", "--model-dim", "4",
                 "--model-subdim", "4", "--quiet"]) == 0
    pre = json.loads((run / "config.json").read_text())["data"]["preprocess"]
    assert pre["physics"] == "wiener-multi" and pre["physics_balances"] == [0.003, 3.0]
    assert spec_of(load_model(run / "last.keras")).channels == 7
    d = Deblurrer.from_file(run / "last.keras")
    assert d.preprocess.balances == (0.003, 3.0)
    assert d.deblur_small(np.full((7 * 24, 7 * 32), 0.8, np.float32), 16).shape == (24, 32)
