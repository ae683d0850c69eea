"""CAM01 -> CAM02 registration and the blur kernel (pipelines.preprocessing.registration)."""
import numpy as np
import pytest

from pipelines.preprocessing import registration as R
from pipelines.preprocessing.preprocess import downscale
from pipelines.reading.physics import step_physics

FULL = (1460, 2360)


def _vignette(shape, depth, tilt):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    x = (x - (w - 1) / 2) / ((w - 1) / 2)
    y = (y - (h - 1) / 2) / ((h - 1) / 2)
    return (1 - depth * (0.5 * (x * x + y * y)) ** 1.5 - tilt * (x - y) / 2).astype(np.float32)


def _text_page(shape, rng):
    """Synthetic HDC-like page (1 = white, 0 = ink): 3 lines x 10 glyphs of random bars, inside
    the real text block (x 200-2070, y 350-1210 full-size px)."""
    h, w = shape
    sy, sx = h / FULL[0], w / FULL[1]
    page = np.ones(shape, np.float32)
    cap = 183 * sy
    for top in (350, 640, 930):
        y0 = top * sy
        for ch in range(10):
            x0, gw = (200 + ch * 187) * sx, 140 * sx
            for _ in range(rng.integers(2, 5)):
                if rng.random() < 0.5:  # vertical stroke
                    bw = rng.uniform(15, 35) * sx
                    x = x0 + rng.uniform(0, gw - bw)
                    t, b = y0 + rng.uniform(0, 0.3) * cap, y0 + rng.uniform(0.7, 1.0) * cap
                    page[int(t):int(b), int(x):int(x + bw)] = 0
                else:
                    bh = rng.uniform(15, 30) * sy
                    y = y0 + rng.uniform(0, cap - bh)
                    l, r = x0 + rng.uniform(0, 0.3) * gw, x0 + rng.uniform(0.6, 1.0) * gw
                    page[int(y):int(y + bh), int(l):int(r)] = 0
    return page


def _pair(geometry, radius_full, factor, seed=0, gain=0.6, offset=0.4, noise_full=0.04):
    """(sharp, blurred) at 1:factor. Simulated at 1:2 (warp, disc blur, gain/offset, each camera's
    own vignetting), then down-scaled, so the test also checks that the geometry convention
    survives `downscale` (shifts / factor, scales unchanged). Noise ~0.04 full-size, / factor."""
    rng = np.random.default_rng(seed)
    gen = (FULL[0] // 2, FULL[1] // 2)
    page = 0.12 + 0.74 * _text_page(gen, rng)  # ink 0.12, paper 0.86
    sharp = page * _vignette(gen, 0.12, 0.04)
    sx, sy, dx, dy = geometry
    warped = R.warp_to_blurred_frame(page, (sx, sy, dx / 2, dy / 2))
    blurred = (gain * R.disc_blur(warped, radius_full / 2) + offset) * _vignette(gen, 0.08, 0.06)
    s, b = downscale(sharp, factor / 2), downscale(blurred, factor / 2)
    b = b + rng.normal(0, noise_full / factor, b.shape).astype(np.float32)
    return s, b


# ---------------------------------------------------------------------------------- disc kernel

@pytest.mark.parametrize("radius", [17.0, 9.7, 30.0, 4.0])
def test_disc_kernel_normalised_centred_and_radius_from_second_moment(radius):
    k = R.disc_kernel(radius)
    assert k.dtype == np.float64 and k.ndim == 2
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert abs(k.sum() - 1) < 1e-12
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)  # centred
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    half = k.shape[0] // 2
    x = np.arange(-half, half + 1)
    var_x = float((k.sum(axis=0) * x * x).sum())  # = r^2 / 4 for a uniform disc
    assert abs(2 * np.sqrt(var_x) / radius - 1) < 0.05
    # flat top: the centre is as high as anything in the kernel
    assert k[half, half] >= k.max() - 1e-12


def test_disc_kernel_edges_and_small_radii():
    hard = R.disc_kernel(10, edge=0)
    assert abs(hard.sum() - 1) < 1e-12
    soft = R.disc_kernel(10, edge=5)
    assert soft.shape[0] > hard.shape[0]  # the soft edge reaches further
    tiny = R.disc_kernel(3 / 7)  # step 0 at 1:7: almost a delta
    assert abs(tiny.sum() - 1) < 1e-12 and tiny[tiny.shape[0] // 2, tiny.shape[0] // 2] > 0.5
    delta = R.disc_kernel(0)
    assert delta.max() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        R.disc_kernel(-1)


# ------------------------------------------------------------------------------------- warping

def test_warp_moves_a_point_where_the_convention_says():
    shape = (150, 240)
    img = np.zeros(shape, np.float32)
    x1, y1 = 50.0, 30.0
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img[:] = np.exp(-((xx - x1) ** 2 + (yy - y1) ** 2) / (2 * 2.0 ** 2))
    sx, sy, dx, dy = 0.9, 0.95, -3.5, 4.25
    out = R.warp_to_blurred_frame(img, (sx, sy, dx, dy))
    cx, cy = (shape[1] - 1) / 2, (shape[0] - 1) / 2
    m = out.sum()
    assert (out * xx).sum() / m == pytest.approx(cx + sx * (x1 - cx) + dx, abs=0.02)
    assert (out * yy).sum() / m == pytest.approx(cy + sy * (y1 - cy) + dy, abs=0.02)
    # identity, other inputs, fill, output shape
    np.testing.assert_allclose(R.warp_to_blurred_frame(img, (1, 1, 0, 0)), img, atol=1e-6)
    phys = step_physics(14)
    assert R.warp_to_blurred_frame(img, phys).shape == shape
    stack = R.warp_to_blurred_frame(np.dstack([img, img]), (sx, sy, dx, dy))
    np.testing.assert_allclose(stack[..., 1], out, atol=1e-6)
    white = R.warp_to_blurred_frame(np.zeros(shape, np.float32), (0.5, 0.5, 0, 0), cval=1.0)
    assert white[0, 0] == 1.0 and white[shape[0] // 2, shape[1] // 2] == 0.0
    assert R.warp_to_blurred_frame(img, (1, 1, 0, 0), output_shape=(100, 200)).shape == (100, 200)


def test_residual_misalignment():
    shape = (365, 590)
    assert R.residual_misalignment((1, 1, 2, 3), (1, 1, 2, 3), shape) == 0
    assert R.residual_misalignment((1, 1, 0, 0), (1, 1, 3, 4), shape) == pytest.approx(5)
    # a scale error grows to the corners: (W - 1) / 2 * ds
    assert R.residual_misalignment((1, 1, 0, 0), (1.01, 1, 0, 0), shape) == pytest.approx(2.945)
    res = R.AlignmentResult(0.96, 0.955, -4.5, -8.5, 0.1)
    assert res.rescaled(4 / 7).params == pytest.approx((0.96, 0.955, -18 / 7, -34 / 7))
    assert R.as_params(res.to_dict()) == res.params
    with pytest.raises(ValueError):
        R.as_params((1, 1, 0))


# -------------------------------------------------------------------------------- estimation

@pytest.mark.parametrize("factor", [4, 7])
def test_alignment_recovers_a_known_geometry(factor):
    true_full = (0.96, 0.955, -18.0, -34.0)  # step-14-like shift, step-6-10 scale
    radius_full = 68.0  # step 9
    sharp, blurred = _pair(true_full, radius_full, factor)
    est = R.estimate_alignment(sharp, blurred, radius_full / factor)
    assert isinstance(est, R.AlignmentResult)
    assert abs(est.scale_x / true_full[0] - 1) < 0.005
    assert abs(est.scale_y / true_full[1] - 1) < 0.005
    # shifts within 1 full-size pixel (the estimate is in 1:factor pixels)
    assert abs(est.shift_x * factor - true_full[2]) < 1.0
    assert abs(est.shift_y * factor - true_full[3]) < 1.0
    true = (true_full[0], true_full[1], true_full[2] / factor, true_full[3] / factor)
    before = R.residual_misalignment(true, (1, 1, 0, 0), sharp.shape) * factor
    after = R.residual_misalignment(true, est, sharp.shape) * factor
    assert before > 30 and after < 1.0
    assert 0 <= est.residual < 0.5


def test_alignment_at_a_low_step_with_init_and_physics_table():
    phys = step_physics(3)
    geometry = (phys["scale_x"], phys["scale_y"], phys["shift_x"], phys["shift_y"])
    sharp, blurred = _pair(geometry, phys["radius"], 4, seed=1, gain=phys["gain"], offset=phys["offset"])
    init = (phys["scale_x"] + 0.01, phys["scale_y"] - 0.01, 0.0, 0.0)
    est = R.estimate_alignment(sharp, blurred, phys["radius"] / 4, init=init)
    true = (geometry[0], geometry[1], geometry[2] / 4, geometry[3] / 4)
    assert R.residual_misalignment(true, est, sharp.shape) * 4 < 1.0


def test_alignment_rejects_bad_inputs():
    a = np.ones((100, 160), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        R.estimate_alignment(a, a[:90], 3)
    with pytest.raises(ValueError, match="float"):
        R.estimate_alignment(a.astype(np.uint16), a.astype(np.uint16), 3)
    with pytest.raises(ValueError, match="radius"):
        R.estimate_alignment(a, a, -2)
