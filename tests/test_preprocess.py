"""Preprocessing shared by prepare / inference / evaluation (pipelines.preprocessing.preprocess)."""
import json

import numpy as np
import pytest
from scipy import ndimage

from pipelines.preprocessing import preprocess as P


def _coords(shape):
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2) / ((h - 1) / 2)
    x = (np.arange(w) - (w - 1) / 2) / ((w - 1) / 2)
    return np.meshgrid(x, y)


def _page(shape, seed=0, ink=0.13):
    """1 = white paper, `ink` = text; text only inside the HDC text block (x 200-2070, y 350-1210
    of 2360 x 1460), as glyph-like random bars."""
    rng = np.random.default_rng(seed)
    h, w = shape
    page = np.ones(shape, np.float32)
    for _ in range(120):
        y0 = rng.uniform(350, 1150) / 1460 * h
        x0 = rng.uniform(200, 2000) / 2360 * w
        bh = rng.uniform(10, 60) / 1460 * h
        bw = rng.uniform(10, 70) / 2360 * w
        page[int(y0):int(y0 + bh) + 1, int(x0):int(x0 + bw) + 1] = ink
    return page


def _background(shape):
    """A known quadratic vignetting: corners up to ~13 % darker, top right darkest."""
    x, y = _coords(shape)
    return (0.86 * (1 + 0.015 * x - 0.02 * y - 0.07 * x * x - 0.05 * y * y)).astype(np.float32)


# ------------------------------------------------------------------------------------- scaling

def test_downscale_shape_dtype_and_mean():
    x, y = _coords((1460, 2360))
    img = (0.5 + 0.3 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)
    small = P.downscale(img, 7)
    assert small.shape == (208, 337) and small.dtype == np.float32
    assert P.downscaled_shape((1460, 2360), 7) == (208, 337)
    assert abs(float(small.mean()) - float(img.mean())) < 1e-3
    # every output pixel is the mean of its 7 x 7 block (centred crop: 2 rows off the top)
    np.testing.assert_allclose(small[5, 9], img[2 + 35:2 + 42, 63:70].mean(), atol=1e-6)
    const = np.full((100, 90), 0.42, np.float32)
    np.testing.assert_allclose(P.downscale(const, 7), 0.42, atol=1e-6)
    np.testing.assert_allclose(P.downscale(const, 2.5), 0.42, atol=1e-6)


def test_fractional_factor_is_an_area_mean():
    rng = np.random.default_rng(0)
    img = rng.random((14, 14)).astype(np.float32)
    small = P.downscale(img, 3.5)
    assert small.shape == (4, 4)
    # output (0, 0) covers [0, 3.5) x [0, 3.5): full pixels 0-2 and half of pixel 3
    w = np.array([1, 1, 1, 0.5]) / 3.5
    np.testing.assert_allclose(small[0, 0], w @ img[:4, :4] @ w, atol=1e-6)
    np.testing.assert_allclose(P.downscale(img, 7.0), P.downscale(img, 7), atol=1e-7)


def test_upscale_inverts_the_downscale_grid():
    x, y = _coords((1460, 2360))
    img = (0.5 + 0.3 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)
    small = P.downscale(img, 7)
    big = P.upscale(small, img.shape)
    assert big.shape == img.shape and big.dtype == np.float32
    # a smooth image survives the round trip: no half-pixel shift between the two grids
    assert np.abs(big - img)[10:-10, 10:-10].max() < 2e-3
    # a stretch when the shape is not an integer down-scale
    assert P.upscale(small, (500, 700)).shape == (500, 700)
    with pytest.raises(ValueError):
        P.upscale(small, (1460, 2360), factor=4)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="float"):
        P.downscale(np.zeros((100, 100), np.uint16))
    with pytest.raises(ValueError, match="factor"):
        P.downscale(np.zeros((100, 100), np.float32), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        P.downscale(np.full((10, 10), np.nan, np.float32), 2)
    with pytest.raises(ValueError, match="dimensions"):
        P.estimate_background(np.zeros((5, 10, 10), np.float32))


# ----------------------------------------------------------------------------------- vignetting

@pytest.mark.parametrize("shape", [(208, 337), (365, 590)])
def test_multiplicative_background_is_recovered_and_divided_out(shape):
    bg = _background(shape)
    page = _page(shape)
    img = page * bg
    est = P.estimate_background(img)
    rng_ = float(bg.max() - bg.min())
    assert np.abs(est - bg).max() < 0.01 * rng_
    corrected, est2 = P.remove_vignetting(img, "divide")
    np.testing.assert_array_equal(est, est2)
    assert corrected.dtype == np.float32 and corrected.shape == shape
    assert np.abs(corrected[page == 1]).max() < 0.005  # background -> 0
    np.testing.assert_allclose(corrected[page < 1], 0.13 - 1, atol=0.005)  # text -> ink - 1


def test_additive_background_is_subtracted():
    shape = (208, 337)
    bg = _background(shape)
    page = _page(shape, seed=3)
    img = bg - 0.6 * (1 - page)
    corrected, est = P.remove_vignetting(img, "subtract")
    assert np.abs(est - bg).max() < 0.01 * float(bg.max() - bg.min())
    assert np.abs(corrected[page == 1]).max() < 0.002
    np.testing.assert_allclose(corrected[page < 1], -0.6 * (1 - 0.13), atol=0.002)


def test_background_fit_is_robust_to_noise_and_border_outliers():
    shape = (208, 337)
    rng = np.random.default_rng(7)
    bg = _background(shape)
    img = _page(shape, seed=1) * bg + rng.normal(0, 0.003, shape).astype(np.float32)
    # dark specks on ~4 % of the border frame (dust, a stray text tail)
    frame = np.flatnonzero(P.border_mask(shape))
    img.ravel()[rng.choice(frame, size=frame.size // 25, replace=False)] = 0.2
    est = P.estimate_background(img)
    assert np.abs(est - bg).max() < 0.05 * float(bg.max() - bg.min())
    no_refit = P.estimate_background(img, discard=0.0)
    assert np.abs(est - bg).max() < 0.5 * np.abs(no_refit - bg).max()
    # deterministic for a seed
    np.testing.assert_array_equal(est, P.estimate_background(img))


def test_background_at_full_size_and_scale_free_border():
    bg = _background((1460, 2360))
    img = _page((1460, 2360)) * bg
    est = P.estimate_background(img)
    assert np.abs(est - bg).max() < 0.01 * float(bg.max() - bg.min())
    # the text-free frame is a fraction of the image, the same at every scale
    assert abs(P.border_mask((1460, 2360)).mean() - P.border_mask((208, 337)).mean()) < 0.01
    assert not (P.border_mask((1460, 2360)) & (_page((1460, 2360)) < 1)).any()


def test_vignetting_mode_none_and_bad_mode():
    img = np.full((50, 60), 0.5, np.float32)
    c, b = P.remove_vignetting(img, "none")
    np.testing.assert_array_equal(c, img)
    np.testing.assert_array_equal(b, 1)
    with pytest.raises(ValueError, match="mode"):
        P.remove_vignetting(img, "multiply")


# ------------------------------------------------------------------------------ median channels

def test_median_channels():
    rng = np.random.default_rng(0)
    img = rng.random((208, 337)).astype(np.float32)
    ch = P.median_channels(img)
    assert ch.shape == (208, 337, 5) and ch.dtype == np.float32
    np.testing.assert_array_equal(ch[..., 0], img)
    for i, w in enumerate((3, 5, 7, 9), start=1):
        np.testing.assert_array_equal(ch[..., i], ndimage.median_filter(img, size=w, mode="reflect"))
    assert P.median_channels(img[:20, :31], widths=(3, 7)).shape == (20, 31, 3)
    with pytest.raises(ValueError, match="widths"):
        P.median_channels(img, widths=(3, 0))


# ---------------------------------------------------------------------------------- binarising

def test_binarise_target_white_fraction_text_and_grey_corners():
    shape = (208, 337)
    page = _page(shape, seed=2, ink=0.12)
    x, y = _coords(shape)
    vign = 1 - 0.15 * (x * x + y * y) / 2  # corners 15 % darker: grey, never black
    rng = np.random.default_rng(0)
    sharp = (0.85 * page * vign + rng.normal(0, 0.01, shape)).astype(np.float32)
    t = P.binarise_target(sharp)
    assert t.dtype == np.float32 and t.shape == shape
    assert t.min() >= 0 and t.max() <= 1
    assert (t == 1).mean() >= 0.75
    corners = np.zeros(shape, bool)
    corners[:20, :30] = corners[:20, -30:] = corners[-20:, :30] = corners[-20:, -30:] = True
    assert (t[corners] == 1).all()
    # text stays dark; nothing non-white far from the text
    assert np.median(t[page < 1]) < 0.25
    near_text = ndimage.binary_dilation(page < 1, iterations=3)
    assert (t[~near_text] == 1).all()


def test_binarise_target_arguments():
    with pytest.raises(ValueError, match="white_fraction"):
        P.binarise_target(np.ones((10, 10), np.float32), white_fraction=1.5)
    with pytest.raises(ValueError, match="black"):
        P.binarise_target(np.zeros((10, 10), np.float32))


# ------------------------------------------------------------------------------ config/compose

def test_config_round_trip_and_validation():
    c = P.PreprocessConfig(factor=4, median_widths=(3, 7), vignetting="subtract", white_fraction=0.7)
    d = json.loads(json.dumps(c.to_dict()))
    assert P.PreprocessConfig.from_dict(d) == c
    assert P.PreprocessConfig.from_dict({}) == P.PreprocessConfig()
    assert c.channels == 3
    with pytest.raises(ValueError, match="unknown"):
        P.PreprocessConfig.from_dict({"factr": 7})
    with pytest.raises(ValueError):
        P.PreprocessConfig(vignetting="multiply")
    with pytest.raises(ValueError):
        P.PreprocessConfig(factor=0)


def test_preprocess_blurred_and_sharp_compose_the_steps():
    shape = (1460, 2360)
    bg = _background(shape)
    blurred = ndimage.uniform_filter(_page(shape, seed=5), 40) * bg * 0.6 + 0.35
    x = P.preprocess_blurred(blurred)
    assert x.shape == (208, 337, 5) and x.dtype == np.float32
    small = P.downscale(blurred, 7)
    np.testing.assert_allclose(x, P.median_channels(P.remove_vignetting(small, "divide")[0]), atol=1e-6)
    cfg = P.PreprocessConfig(factor=7, median_widths=(3, 5))
    np.testing.assert_array_equal(P.preprocess_blurred(blurred, cfg), x[..., :3])
    np.testing.assert_array_equal(P.preprocess_blurred(blurred, cfg.to_dict()), x[..., :3])
    np.testing.assert_array_equal(P.preprocess_blurred(blurred, 7, widths=(3, 5)), x[..., :3])
    y = P.preprocess_sharp(_page(shape) * bg)
    assert y.shape == (208, 337) and (y == 1).mean() >= 0.75
