"""Classical baselines: Wiener / Richardson-Lucy improve a disc-blurred text-like image, the PSF
measured from a simulated calibration shot has the disc's shape, the parameter table works."""
import json

import numpy as np
import pytest

from eval import baselines as B
from pipelines.preprocessing.registration import disc_blur
from pipelines.reading import physics as P
from pipelines.reading.psf import disc_kernel


def _text_like(shape=(120, 200), seed=0) -> np.ndarray:
    """Binary 'glyphs' (1 = white background, 0 = strokes): random bars and boxes in three lines."""
    rng = np.random.default_rng(seed)
    img = np.ones(shape, np.float32)
    for top in (20, 52, 84):
        x = 12
        while x < shape[1] - 20:
            w, h = rng.integers(2, 4), rng.integers(14, 20)
            img[top:top + h, x:x + w] = 0                      # a vertical stroke
            if rng.random() < 0.5:
                img[top:top + w, x:x + rng.integers(6, 10)] = 0  # a bar on top
            x += rng.integers(6, 11)
    return img


@pytest.mark.parametrize("method,value", [("wiener", 0.01), ("rl", 30)])
def test_deconvolution_improves_a_disc_blurred_text_image(method, value):
    sharp = _text_like()
    psf = disc_kernel(3.0)
    blurred = disc_blur(sharp, 3.0) + np.random.default_rng(1).normal(0, 0.005, sharp.shape).astype(np.float32)
    restored = np.clip(B.deconvolve_small(blurred, psf, method, value), 0, 1)
    err_blurred = np.abs(blurred - sharp).mean()
    err_restored = np.abs(restored - sharp).mean()
    assert err_restored < 0.8 * err_blurred, (err_blurred, err_restored)


def test_deconvolution_rejects_bad_parameters():
    u = np.ones((20, 20), np.float32)
    with pytest.raises(ValueError, match="balance"):
        B.deconvolve_small(u, disc_kernel(1.0), "wiener", 0)
    with pytest.raises(ValueError, match="num_iter"):
        B.deconvolve_small(u, disc_kernel(1.0), "rl", 0)
    with pytest.raises(ValueError, match="unknown baseline"):
        B.deconvolve_small(u, disc_kernel(1.0), "tv", 1)


def _pad_to(a, n):
    p = (n - a.shape[0]) // 2
    return np.pad(a, p)


@pytest.mark.parametrize("step", [5, 9])
def test_psf_from_a_simulated_psf_shot_matches_the_disc(step):
    from pipelines.simulation.scene import render_target
    from pipelines.simulation.simulate import blurred_camera, rng_for

    rng = rng_for(11, step, 103, 0)
    shot = blurred_camera(render_target("PSF"), step, rng)
    radius = P.step_physics(step)["radius"]
    psf = B.psf_from_shot(shot, radius)
    disc = disc_kernel(radius / 7)
    assert psf.shape[0] % 2 == 1 and psf.shape[0] == psf.shape[1]
    assert psf.sum() == pytest.approx(1.0)
    n = max(psf.shape[0], disc.shape[0])
    a, b = _pad_to(psf, n), _pad_to(disc, n)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert corr > 0.85, corr
    # centred: the centre of mass is within a pixel of the middle
    yy, xx = np.mgrid[:n, :n] - n // 2
    assert abs((a * yy).sum()) < 1.0 and abs((a * xx).sum()) < 1.0
    # the wrong radius is a worse match
    wrong = _pad_to(disc_kernel(2 * radius / 7), max(n, disc_kernel(2 * radius / 7).shape[0]))
    m = wrong.shape[0]
    a2 = _pad_to(psf, m) if m > n else a
    assert float(np.corrcoef(a2.ravel(), wrong.ravel())[0, 1]) < corr


def test_step_psf_uses_the_shots_and_falls_back_to_the_disc(sim_train, tmp_path):
    psf, used = B.step_psf(sim_train, 5, "shot")
    assert used == "shot" and psf.sum() == pytest.approx(1.0)
    radius = B.measured_radius(sim_train, 5)
    assert abs(radius / P.step_physics(5)["radius"] - 1) < 0.05
    psf, used = B.step_psf(sim_train, 5, "lsf")
    assert used == "lsf" and np.allclose(psf, disc_kernel(radius / 7))
    psf, used = B.step_psf(sim_train, 5, "disc")
    assert used == "disc" and np.allclose(psf, disc_kernel(P.step_physics(5)["radius"] / 7))
    (tmp_path / "empty").mkdir()
    assert B.step_psf(tmp_path / "empty", 5, "shot")[1] == "disc"
    assert B.step_psf(None, 5, "shot")[1] == "disc"
    assert B.step_psf(tmp_path / "empty", 5, "lsf")[1] == "disc"
    with pytest.raises(ValueError, match="PSF source"):
        B.step_psf(sim_train, 5, "guess")


def test_to_unit_maps_background_to_one_and_text_darker():
    from pipelines.simulation.scene import render_text
    from pipelines.simulation.simulate import blurred_camera, rng_for

    img = blurred_camera(render_text(("ABCDEFGHJK", "LMNPQRSTUV", "WXYZ012345"), "Times"), 0, rng_for(3, 0, 0, 1))
    u = B.to_unit(img, 0)
    assert u.shape == (208, 337)
    assert abs(float(np.median(u)) - 1.0) < 0.05
    assert float(np.percentile(u, 1)) < 0.4  # step 0 text at full contrast is near 0


def test_params_table(tmp_path):
    assert B.params_for("wiener", 3, {}) == B.DEFAULTS["wiener"]
    table = {"rl": {"3": {"num_iter": 7, "psf": "disc", "score": 90.0}}}
    assert B.params_for("rl", 3, table) == {"num_iter": 7, "psf": "disc"}
    assert B.params_for("rl", 4, table) == B.DEFAULTS["rl"]
    p = tmp_path / "t.json"
    p.write_text(json.dumps(table))
    assert B.load_params(p) == table
    assert B.load_params(tmp_path / "missing.json") == {}
    with pytest.raises(ValueError, match="unknown baseline"):
        B.params_for("tv", 3, {})


def test_the_committed_table_covers_every_step():
    table = B.load_params()
    for m in B.BASELINES:
        assert sorted(map(int, table[m])) == list(range(20))
        for entry in table[m].values():
            assert entry["psf"] in B.PSF_SOURCES + ("disc",) and B.PARAM_NAME[m] in entry
    assert "python -m eval.baselines --tune" in table["_about"]["command"]


def test_baseline_method_on_a_sample(sim_eval):
    from pipelines.reading.hdc import find_samples

    s = find_samples(sim_eval, steps={5})[0]
    out = B.Baseline("wiener", sim_eval)(s)
    assert out.dtype == np.uint8 and out.shape == P.IMAGE_SHAPE
    assert (out[:, :50] == 255).all()
    assert out[300:1250, 150:2150].min() < 128  # some dark text survives


def test_tuning_refuses_the_evaluation_seed(tmp_path, capsys):
    (tmp_path / "simulation.json").write_text(json.dumps({"seed": 9001}))
    assert B.main(["--tune", "--data", str(tmp_path), "--out", str(tmp_path / "p.json")]) == 1
    assert "evaluation set" in capsys.readouterr().err


def test_regularised_wiener_sharpens_a_photo_like_image():
    """wiener-reg's deconvolution on its own (1:1): a smooth random scene, disc-blurred with noise,
    comes back closer to the scene (rank correlation) than the blurred image is."""
    from scipy import ndimage

    from eval.sanity import rank_correlation

    rng = np.random.default_rng(4)
    scene = ndimage.gaussian_filter(rng.random((160, 240)), 3).astype(np.float32)
    scene = (scene - scene.min()) / (scene.max() - scene.min())
    psf = disc_kernel(6.0)
    blurred = disc_blur(0.2 + 0.6 * scene, 6.0) + rng.normal(0, 0.002, scene.shape).astype(np.float32)
    out = B.regularised_wiener(blurred, psf, balance=0.3, factor=1)
    assert out.dtype == np.uint8 and out.shape == scene.shape and (out[:, :50] == 255).all()
    inner = (slice(20, -20), slice(60, -20))
    before = rank_correlation(blurred[inner], scene[inner], margin=0)
    after = rank_correlation(out[inner].astype(np.float32), scene[inner], margin=0)
    assert after > before + 0.05, (before, after)


def test_wiener_reg_passes_where_the_ocr_tuned_wiener_rings(sim_eval):
    """On a sanity photo the OCR-tuned Wiener rings (the photo's border fit and a tiny balance);
    wiener-reg keeps the photo (docs/sanity.md)."""
    from eval.sanity import SanityScorer, select_sanity

    scorer = SanityScorer()
    photo = next(s for s in select_sanity(sim_eval, [5]) if s.name == "camera")
    reg = scorer(photo, B.RegularisedWiener(sim_eval)(photo))
    tuned = scorer(photo, B.Baseline("wiener", sim_eval)(photo))
    assert reg > 0.85 and reg > tuned + 0.2, (reg, tuned)
