"""The physics input channel: the step's Wiener deconvolution beside the median channels
(pipelines.preprocessing.deconv, PreprocessConfig.physics), shared with the Wiener baseline, and
carried through training (--physics, --init of a model with fewer channels) and inference."""
import numpy as np
import pytest

from pipelines.preprocessing import deconv
from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_blurred, preprocess_small
from pipelines.simulation.synth import synth_pair

WIENER = PreprocessConfig(physics="wiener")


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


def test_full_size_and_stream_inputs_agree_with_the_channel():
    """preprocess_blurred (inference, prepare) and the stream's preprocess_small give the same
    physics channel for the same 1:7 image."""
    rng = np.random.default_rng(0)
    full = np.clip(0.8 + 0.02 * rng.standard_normal((7 * 40, 7 * 60)), 0, 1).astype(np.float32)
    full[100:160, 120:300] = 0.3
    from pipelines.preprocessing.preprocess import downscale
    np.testing.assert_array_equal(preprocess_blurred(full, WIENER, step=9),
                                  preprocess_small(downscale(full, 7), WIENER, step=9))


# ------------------------------------------------------------------ training and inference

keras = pytest.importorskip("keras")


def test_init_extends_a_model_with_fewer_channels(tmp_path):
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
    six = build_from_spec(dataclasses.replace(spec5, channels=6))
    note = _load_init(six, tmp_path / "five.keras")
    assert "from 5 to 6 channels" in note
    rng = np.random.default_rng(0)
    x = -0.3 * rng.random((1, 32, 48, 5)).astype(np.float32)
    x6 = np.concatenate([x, rng.random((1, 32, 48, 1)).astype(np.float32)], axis=-1)
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
