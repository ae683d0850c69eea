"""The fast 1:7 forward model (pipelines.simulation.synth) against the full simulator, and its
stream."""
import numpy as np
import pytest

from pipelines.preprocessing.preprocess import PreprocessConfig, downscale
from pipelines.reading import physics as P
from pipelines.simulation import synth as S
from pipelines.simulation.scene import render_text, sample_camera


def test_area_sampling_is_exactly_downscaled_nearest_neighbour_sampling():
    rng = np.random.default_rng(0)
    raster = (rng.random((180, 290)) > 0.5).astype(np.float32)
    for geometry in (None, P.step_physics(14), P.step_physics(3)):
        full = downscale(sample_camera(raster, geometry), 7)
        fast = S.scene_small(raster, geometry, 7)
        np.testing.assert_allclose(fast, full, atol=1e-5)


def test_small_kernel_sums_to_one_and_grows_with_the_step():
    widths = []
    for step in (0, 5, 10, 19):
        k = S.small_kernel(P.step_physics(step)["radius"])
        assert abs(k.sum() - 1) < 1e-5 and np.allclose(k, k[::-1, ::-1])
        widths.append(int((k.sum(axis=0) > 1e-3).sum()))
    assert widths == sorted(widths) and widths[-1] >= 2 * 205 / 7


@pytest.mark.parametrize("step,font", [(0, "Times"), (8, "Verdana"), (19, "Times")])
def test_fast_path_matches_the_full_simulator(step, font):
    """The goals of `python -m pipelines.simulation.synth --compare` on one scene per step."""
    for i in (S.FONTS.index(font),):
        full = S.full_path_pair(11, i, step, font, noise=False)
        fast = S.synth_pair(11, i, step=step, font=font, stream="compare", noise=False)
        assert fast.text == full.text
        mad = np.mean(np.abs(fast.x[..., 0] - full.x[..., 0])) / P.text_contrast(step)
        assert mad <= 0.01, mad
        assert np.mean((fast.y < 0.5) == (full.y < 0.5)) >= 0.99
        full_n = S.full_path_pair(11, i, step, font, noise=True)
        fast_n = S.synth_pair(11, i, step=step, font=font, stream="compare", noise=True)
        ratio = np.std(fast_n.blurred - fast.blurred) / np.std(full_n.blurred - full.blurred)
        assert 0.9 <= ratio <= 1.1, ratio


def test_deterministic_per_seed_and_index():
    a, b = S.synth_pair(3, 17), S.synth_pair(3, 17)
    assert a.step == b.step and a.font == b.font and a.text == b.text
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    c = S.synth_pair(3, 18)
    assert c.text != a.text


def test_shapes_dtypes_and_ranges():
    p = S.synth_pair(0, 0, step=7)
    assert p.x.shape == (208, 337, PreprocessConfig().channels) and p.x.dtype == np.float32
    assert p.y.shape == (208, 337) and p.y.dtype == np.float32
    assert 0 <= p.y.min() and p.y.max() == 1 and (p.y < 0.5).mean() > 0.02  # text is there
    assert abs(np.median(p.x[..., 0])) < 0.02  # background 0 after vignetting division


def test_every_step_is_reachable_and_sampled_from_the_list():
    for step in range(P.N_STEPS):
        assert S.synth_pair(1, step, step=step).step == step
    drawn = {S.synth_pair(2, i, steps=[3, 17]).step for i in range(12)}
    assert drawn == {3, 17}
    weighted = {S.synth_pair(2, i, steps=[3, 17], weights=[0, 1]).step for i in range(4)}
    assert weighted == {17}


def test_streams_are_disjoint():
    train = {S.synth_pair(4, i).text for i in range(6)}
    val = {S.synth_pair(4, i, stream="val").text for i in range(6)}
    assert not train & val


def test_bad_arguments_are_one_line_errors(capsys):
    with pytest.raises(ValueError, match="blur step must be an integer in 0-19"):
        S.synth_pair(0, 0, steps=[3, 25])
    with pytest.raises(ValueError, match="samples must be at least 1"):
        S.check_request([3], samples=0)
    assert S.main(["--compare", "--steps", "0-25"]) == 2
    assert "outside 0-19" in capsys.readouterr().err
    assert S.main(["--compare", "--steps", "3", "--samples", "0"]) == 2
    assert "samples must be at least 1" in capsys.readouterr().err


def test_compare_cli_prints_a_row_per_step(capsys):
    assert S.main(["--compare", "--steps", "2,12", "--samples", "1"]) == 0
    rows = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| 2 ") or l.startswith("| 12 ")]
    assert len(rows) == 2


def test_preview_png(tmp_path):
    out = tmp_path / "synth.png"
    assert S.main(["--preview", str(out), "--steps", "0,19"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
