"""Procedural non-text training scenes (pipelines.simulation.nontext), their pairs in the synthetic
stream, and the preprocessing that must keep a photo's range (the HDC2021 sanity check)."""
import json

import numpy as np
import pytest

from pipelines.preprocessing.deconv import physics_channel
from pipelines.preprocessing.preprocess import BACKGROUND_RANGE, PreprocessConfig, estimate_background, remove_vignetting
from pipelines.reading import physics as P
from pipelines.simulation import nontext as N
from pipelines.simulation.scene import DISPLAY_SHAPE
from pipelines.simulation.synth import grey_target_small, is_nontext, synth_pair


@pytest.mark.parametrize("kind", N.KINDS)
def test_every_kind_is_a_deterministic_grey_scene(kind):
    a, k = N.nontext_scene(np.random.default_rng(3), kind)
    b, _ = N.nontext_scene(np.random.default_rng(3), kind)
    c, _ = N.nontext_scene(np.random.default_rng(4), kind)
    assert k == kind and a.shape == DISPLAY_SHAPE and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.02
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_remap_reaches_low_contrast_and_keeps_the_grey_order():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 1, 50, dtype=np.float32)
    outs = [N._remap(ramp, rng) for _ in range(400)]
    spans = np.array([o[-1] - o[0] for o in outs])
    assert spans.min() >= N.MIN_CONTRAST - 1e-6 and spans.max() <= 1 + 1e-6
    assert 0.25 < np.mean(spans < 0.15) < 0.6  # dim / hazy scenes are common, not rare
    assert all(0 <= o.min() and o.max() <= 1 and np.all(np.diff(o) >= 0) for o in outs)


def test_random_kinds_cover_all_and_unknown_kind_is_refused():
    rng = np.random.default_rng(0)
    seen = {N.nontext_scene(rng)[1] for _ in range(80)}
    assert seen == set(N.KINDS)
    with pytest.raises(ValueError, match="unknown non-text scene kind"):
        N.nontext_scene(rng, "photo")


def test_nontext_fraction_draws_its_own_stream_and_leaves_text_pairs_unchanged():
    flags = [is_nontext(5, i, "train", 0.25) for i in range(400)]
    assert 0.18 < np.mean(flags) < 0.32
    assert not any(is_nontext(5, i, "train", 0.0) for i in range(50))
    i = next(i for i, f in enumerate(flags) if not f)
    plain = synth_pair(5, i, step=6)
    mixed = synth_pair(5, i, step=6, nontext=0.25)
    assert mixed.kind == "text" and mixed.text == plain.text
    np.testing.assert_array_equal(mixed.x, plain.x)
    j = flags.index(True)
    p = synth_pair(5, j, step=6, nontext=0.25)
    assert p.kind in N.KINDS and p.text == () and p.x.shape == plain.x.shape and p.y.shape == plain.y.shape


def test_nontext_target_is_the_grey_scene_not_a_binarised_one():
    p = synth_pair(1, 0, step=10, kind="fractal")
    black = P.TEXT_DN / P.BACKGROUND_DN
    assert p.y.min() >= black - 1e-6 and p.y.max() <= 1 + 1e-6

    def mid_greys(y):  # share of pixels inside the target's own range (a scene may be low-contrast)
        lo, hi = float(y.min()), float(y.max())
        return np.mean((y > lo + 0.1 * (hi - lo)) & (y < hi - 0.1 * (hi - lo)))

    assert p.y.max() - p.y.min() > 0.02
    assert mid_greys(p.y) > 0.2  # many grey levels across its range
    assert mid_greys(synth_pair(1, 0, step=10).y) < 0.1  # a text target is white or stroke
    white = grey_target_small(np.ones(DISPLAY_SHAPE, np.float32), 10)
    dark = grey_target_small(np.zeros(DISPLAY_SHAPE, np.float32), 10)
    np.testing.assert_allclose(white, 1.0, atol=1e-5)
    np.testing.assert_allclose(dark, black, atol=1e-5)


def test_target_and_input_are_aligned_for_a_nontext_scene():
    """The grey target is in the CAM02 frame: it correlates with the noise-free blurred image."""
    p = synth_pair(2, 1, step=3, kind="dead_leaves", noise=False)
    r = np.corrcoef(p.y.ravel(), p.blurred.ravel())[0, 1]
    shifted = np.corrcoef(np.roll(p.y, 6, axis=0).ravel(), p.blurred.ravel())[0, 1]
    assert r > 0.8 and r > shifted + 0.05


def test_background_fit_stays_within_the_border_values():
    """A picture whose border is half black, half white: a polynomial fitted to it must not dip
    towards 0 inside (the division would stretch the picture without bound)."""
    h, w = 208, 337
    img = np.full((h, w), 0.9, np.float32)
    img[:, : w // 2] = 0.15
    img[30:180, 40:300] = np.random.default_rng(0).uniform(0.1, 0.95, (150, 260))
    bg = estimate_background(img)
    assert bg.max() / bg.min() <= (1 + BACKGROUND_RANGE) / (1 - BACKGROUND_RANGE) + 1e-4
    corrected, _ = remove_vignetting(img)
    assert np.isfinite(corrected).all() and corrected.max() < 20
    # the picture's large-scale brightness survives: its dark left half stays darker than the right
    assert corrected[:, :100].mean() < corrected[:, 240:].mean() - 0.3


def test_background_clamp_never_binds_on_a_text_image(monkeypatch):
    """On a real text frame (vignetting, noise, blur tails at step 19) the fit is what it was
    without the clamp."""
    import pipelines.preprocessing.preprocess as pre

    for step in (0, 19):
        blurred = synth_pair(3, 0, step=step).blurred
        clamped = estimate_background(blurred)
        monkeypatch.setattr(pre, "BACKGROUND_RANGE", 10.0)
        np.testing.assert_array_equal(estimate_background(blurred), clamped)
        monkeypatch.undo()
        assert clamped.max() / clamped.min() > 1.05  # the vignetting is there


def test_physics_channel_keeps_a_bright_region_on_a_dark_border():
    """Text lives in [-1, 0]; a region brighter than a dark border must not be clipped at the
    background level (it was, at 1, before non-text scenes)."""
    ph = P.step_physics(0)
    dark, bright = ph["gain"] * 0.11 + ph["offset"], ph["gain"] * 0.88 + ph["offset"]
    corrected = np.full((120, 160), 0.0, np.float32)
    corrected[30:90, 40:120] = bright / dark - 1
    ch = physics_channel(corrected, 0)
    assert ch[60, 80] > 3.0


def test_validation_batches_mark_nontext_scenes():
    from deblur.stream import validation_batches

    geo = {"kind": "image", "multiple": 8}
    val = validation_batches(7, [4], per_step=1, geometry=geo, batch_size=4,
                             preprocess=PreprocessConfig(), nontext_per_step=1)
    inputs, y = val[0]
    assert inputs["image"].shape[0] == 2 and list(inputs["nontext"]) == [0.0, 1.0]
    text_only = validation_batches(7, [4], per_step=1, geometry=geo, batch_size=4)
    np.testing.assert_array_equal(text_only[0][0]["image"][0], inputs["image"][0])


def test_excess_loss_is_zero_at_the_target_and_positive_elsewhere():
    from deblur.train import batch_bce, batch_entropy

    y = np.random.default_rng(0).uniform(0.1, 1, (2, 8, 8, 1))
    np.testing.assert_allclose(batch_bce(y, y) - batch_entropy(y), 0, atol=1e-12)
    assert (batch_bce(y, np.full_like(y, 0.5)) - batch_entropy(y) > 0.01).all()


def test_nontext_fraction_needs_the_synthetic_stream(capsys):
    from deblur.train import main

    with pytest.raises(SystemExit) as e:
        main(["--data", "x", "--run-dir", "r", "--nontext-fraction", "0.2"])
    assert e.value.code == 2 and "--nontext-fraction is for --synthetic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--synthetic", "--run-dir", "r", "--nontext-fraction", "1.5"])


def test_nontext_finetune_keeps_batchnorm_statistics_and_logs_both_kinds(tmp_path):
    """--freeze-batchnorm: the BatchNorm running statistics of --init survive a fine-tune on the
    mixed stream (the weights move); the history has text / non-text and excess losses."""
    import csv

    from deblur.model import load_model
    from deblur.train import main

    tiny = ["--model-arch", "pyramid", "--model-pyramid-dims", "4,6,8", "--model-pyramid-refinements",
            "1,1,1", "--model-dim", "4", "--model-subdim", "4", "--physics", "none", "--steps", "3,15",
            "--steps-per-epoch", "2", "--batch-size", "2", "--synth-val-per-step", "1", "--synth-workers", "0",
            "--quiet"]
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["--run-dir", str(base), "--epochs", "1", "--nontext-fraction", "0", *tiny]) == 0
    assert main(["--run-dir", str(tuned), "--epochs", "2", "--init", str(base / "last.keras"), "--lr", "0.01",
                 "--nontext-fraction", "0.5", "--freeze-batchnorm", "--step-weighting",
                 "--monitor", "val_excess_hard", *tiny]) == 0
    a, b = load_model(base / "last.keras"), load_model(tuned / "last.keras")
    bn = [layer.name for layer in a.layers if "BatchNormalization" in type(layer).__name__]
    assert bn
    for name in bn:
        wa, wb = a.get_layer(name).get_weights(), b.get_layer(name).get_weights()
        np.testing.assert_array_equal(wa[2], wb[2])  # moving mean
        np.testing.assert_array_equal(wa[3], wb[3])  # moving variance
    convs = [layer.name for layer in a.layers if type(layer).__name__ == "Conv2D"]
    assert any(not np.array_equal(a.get_layer(n).get_weights()[0], b.get_layer(n).get_weights()[0]) for n in convs)
    with open(tuned / "history.csv", newline="") as f:
        row, row2 = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    for key in ("val_loss_text", "val_loss_nontext", "val_excess", "val_excess_step3", "val_excess_hard"):
        assert np.isfinite(row[key])
    assert row["val_excess"] < row["val_loss"]
    assert row["val_excess_hard"] == pytest.approx(row["val_excess_step15"])  # the hardest quarter of 3,15
    # the second epoch samples steps in proportion to the first epoch's excess loss (floored)
    e3, e15 = row["val_excess_step3"], row["val_excess_step15"]
    floor = 0.25 * (e3 + e15) / 2
    w3, w15 = max(e3, floor), max(e15, floor)
    assert row2["weight_step3"] == pytest.approx(w3 / (w3 + w15), rel=1e-4)
    assert json.loads((tuned / "config.json").read_text())["args"]["monitor"] == "val_excess_hard"


def test_hardest_steps_are_the_top_quarter():
    from deblur.train import hardest_steps

    assert hardest_steps(range(20)) == [15, 16, 17, 18, 19]
    assert hardest_steps([3]) == [3] and hardest_steps([9, 2, 5]) == [9]


def test_contrast_weights_lift_low_contrast_frames_only():
    from deblur.stream import CONTRAST_REF, contrast_weights

    rng = np.random.default_rng(0)
    text = np.where(rng.random((8, 8)) < 0.1, 0.15, 1.0)  # ink on paper: std above CONTRAST_REF
    dim = 0.5 + 0.04 * rng.standard_normal((8, 8))       # a dim photo, moon-like std 0.04
    flat = np.full((8, 8), 0.7)
    w = contrast_weights(np.stack([text, dim, flat]), max_weight=4)
    assert w[0] == 1.0 and w[2] == 4.0
    assert w[1] == pytest.approx(CONTRAST_REF / dim.std(), rel=1e-4) and 1 < w[1] < 4
    np.testing.assert_array_equal(contrast_weights(np.stack([text, dim]), max_weight=0), [1.0, 1.0])


def test_stream_batches_carry_contrast_weights_that_keras_accepts(tmp_path):
    from deblur.stream import contrast_weights, synthetic_dataset
    from deblur.train import main

    geo = {"kind": "image", "multiple": 8}
    plain = synthetic_dataset(5, [3, 7], batch_size=2, batches_per_epoch=1, geometry=geo, workers=0, nontext=0.5)
    weighted = synthetic_dataset(5, [3, 7], batch_size=2, batches_per_epoch=1, geometry=geo, workers=0,
                                 nontext=0.5, contrast_weight=4)
    assert len(plain[0]) == 2
    x, y, w = weighted[0]
    np.testing.assert_array_equal(x["image"], plain[0][0]["image"])
    assert w.shape == (2, 1, 1)
    np.testing.assert_array_equal(w[:, 0, 0], contrast_weights(y, 4))
    tiny = ["--model-arch", "pyramid", "--model-pyramid-dims", "4,6", "--model-pyramid-refinements", "1,1",
            "--model-dim", "4", "--model-subdim", "4", "--physics", "none", "--steps", "3,15",
            "--steps-per-epoch", "2", "--batch-size", "2", "--synth-val-per-step", "1", "--synth-workers", "0",
            "--quiet", "--nontext-fraction", "0.5", "--contrast-weight", "4"]
    assert main(["--run-dir", str(tmp_path / "r"), "--epochs", "1", *tiny]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["args"]["contrast_weight"] == 4


def test_contrast_weight_needs_the_synthetic_stream(capsys):
    from deblur.train import main

    with pytest.raises(SystemExit) as e:
        main(["--data", "x", "--run-dir", "r", "--contrast-weight", "4"])
    assert e.value.code == 2 and "--contrast-weight is for --synthetic" in capsys.readouterr().err
