"""The leaderboard (eval.score): aggregation and the challenge rule on hand-made results, the CLI on
a small simulated evaluation tree, the model method through a stand-in Deblurrer."""
import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from eval import score as S


def _rec(method, step, font, score, cer=0.1):
    return {"method": method, "step": step, "font": font, "score": score, "cer": cer}


def test_aggregate_means_per_font_and_failures_as_zero():
    recs = [_rec("m", 0, "Times", 100, 0.0), _rec("m", 0, "Times", None, 1.0),
            _rec("m", 0, "Verdana", 80, 0.2), _rec("m", 0, "Verdana", 60, 0.4),
            _rec("m", 1, "Times", 70, 0.3)]
    rows = S.aggregate(recs)
    r0, r1 = rows
    assert (r0["method"], r0["step"], r0["n"]) == ("m", 0, 4)
    assert r0["score"] == pytest.approx((100 + 0 + 80 + 60) / 4)
    assert r0["score_times"] == pytest.approx(50.0)
    assert r0["score_verdana"] == pytest.approx(70.0)
    assert r0["failures"] == 1
    assert r0["cer"] == pytest.approx(0.4)
    assert r0["passed"] is False
    assert r1["score"] == 70 and r1["passed"] is True  # 70 passes
    assert r1["score_verdana"] is None  # no Verdana image at that step
    assert list(r0) == list(S.ROW_FIELDS)


def test_aggregate_keeps_method_order_and_sorts_steps():
    recs = [_rec("b", 3, "Times", 90), _rec("a", 1, "Times", 90), _rec("b", 0, "Times", 90)]
    rows = S.aggregate(recs)
    assert [(r["method"], r["step"]) for r in rows] == [("b", 0), ("b", 3), ("a", 1)]


def _rows(scores, method="m", start=0):
    return [{"method": method, "step": s, "score": v} for s, v in enumerate(scores, start)]


def test_highest_step_passed_edge_cases():
    assert S.highest_step_passed(_rows([90, 80, 70, 69.9, 95]), "m") == 2   # 70 passes, 69.9 not
    assert S.highest_step_passed(_rows([60, 90]), "m") == -1                 # step 0 fails
    assert S.highest_step_passed(_rows([100] * 20), "m") == 19
    assert S.highest_step_passed(_rows([90, 90], start=1), "m") is None      # step 0 not scored: n/a
    gap = [r for r in _rows([90, 90, 90]) if r["step"] != 1]
    assert S.highest_step_passed(gap, "m") == 0                              # a missing step stops it
    assert S.highest_step_passed(_rows([90]), "other") == -1
    shuffled = list(reversed(_rows([90, 90, 50, 90])))
    assert S.highest_step_passed(shuffled, "m") == 1
    both = _rows([90, 90], "a") + _rows([50, 90], "b")
    assert S.summary(both) == {"a": 1, "b": -1}


def test_parse_methods():
    assert S.parse_methods("sharp, identity,sharp") == ["sharp", "identity"]
    with pytest.raises(ValueError, match="unknown method.*'tv'"):
        S.parse_methods("sharp,tv")
    with pytest.raises(ValueError, match="no methods"):
        S.parse_methods(",")


def test_tables_format():
    rows = S.aggregate([_rec("sharp", 0, "Times", 100), _rec("sharp", 1, "Times", 90),
                        _rec("identity", 0, "Verdana", None), _rec("identity", 1, "Verdana", 75)])
    text = S.format_table(rows)
    assert text.splitlines()[0].split() == ["method", "step", "n", "score", "Times", "Verdana", "fail", "CER", "pass"]
    assert "highest step passed" in text and "sharp 1" in text and "identity -1" in text
    md = S.markdown_table(rows)
    assert md.splitlines()[2] == "| sharp | 100 | 90 | 1 |"


def test_cli_on_a_simulated_evaluation_tree(sim_eval, tmp_path, capsys):
    out = tmp_path / "out"
    rc = S.main(["--data", str(sim_eval), "--methods", "sharp,identity,wiener", "--steps", "5",
                 "--out", str(out), "--workers", "1", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "method" in text and "highest step passed" in text
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(S.ROW_FIELDS + S.SANITY_FIELDS)
    assert [(r["method"], r["step"], r["n"]) for r in rows] == [
        ("sharp", "5", "2"), ("identity", "5", "2"), ("wiener", "5", "2")]
    sharp = rows[0]
    assert float(sharp["score"]) >= 70 and sharp["passed"] == "True"
    assert sharp["score_times"] != "" and sharp["score_verdana"] != ""
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["methods"] == ["sharp", "identity", "wiener"] and data["steps"] == [5]
    assert data["highest_step_passed"]["sharp"] is None  # step 0 was not scored: n/a
    assert "sharp n/a (step 0 not scored)" in text
    for name in ("leaderboard.png", "montage.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "montage.png").stat().st_size < 2_000_000
    for m in ("sharp", "identity", "wiener"):
        pngs = sorted((out / "images" / m / "step5").glob("*.png"))
        assert [p.stem for p in pngs] == ["focusStep_5_Image_camera", "focusStep_5_Image_coins",
                                          "focusStep_5_QRcode", "focusStep_5_timesR_size_30_sample_0001",
                                          "focusStep_5_verdanaRef_size_30_sample_0001"]
    # the sanity columns: two photos at step 5; sharp (the reference's own camera) ~1
    assert sharp["sanity_n"] == "2" and float(sharp["sanity_median"]) > 0.97 and sharp["sanity_passed"] == "True"
    assert "sanity check" in text and "highest step passed with the sanity check" in text
    assert data["sanity"]["n_images"] == 3 and data["sanity"]["median_min"] == 0.6
    with open(out / "sanity_per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 9  # 3 methods x (2 photos + QR)
    with open(out / "per_image.csv") as f:
        per_image = list(csv.DictReader(f))
    assert len(per_image) == 6


def test_cli_bad_inputs(sim_eval, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        S.main(["--data", str(sim_eval), "--methods", "sharp,tv", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown method" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert S.main(["--data", str(empty), "--methods", "sharp", "--out", str(tmp_path / "o")]) == 1
    assert "no text samples found" in capsys.readouterr().err
    assert S.main(["--data", str(tmp_path / "absent"), "--methods", "sharp", "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    assert S.main(["--data", str(sim_eval), "--steps", "3", "--methods", "sharp", "--out", str(tmp_path / "o")]) == 1
    assert "no text samples found for steps 3" in capsys.readouterr().err
    assert S.main(["--data", str(sim_eval), "--methods", "model", "--model", str(tmp_path / "none.keras"),
                   "--out", str(tmp_path / "o")]) == 1
    assert "model file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        S.main(["--data", str(sim_eval), "--steps", "0-25", "--out", str(tmp_path)])
    assert not (tmp_path / "o" / "leaderboard.csv").exists()


def test_select_samples_takes_the_first_n_per_font(sim_eval):
    samples = S.select_samples(sim_eval, [0, 5], per_font=1)
    assert [(s.step, s.font) for s in samples] == [(0, "Times"), (0, "Verdana"), (5, "Times"), (5, "Verdana")]


def test_model_method_through_a_stand_in_deblurrer(sim_eval, tmp_path, monkeypatch):
    import tifffile

    calls, seen, flats = [], [], []

    class FakeDeblurrer:
        preprocess = types.SimpleNamespace(factor=7)

        @classmethod
        def from_file(cls, path):
            calls.append(("from_file", path))
            return cls()

        def deblur(self, image, step, flat=None):
            calls.append(("deblur", image.dtype, image.shape, step))
            seen.append(image)
            flats.append(flat)
            return np.ones(image.shape, np.float32) * 0.5

    monkeypatch.setitem(sys.modules, "deblur.infer", types.SimpleNamespace(Deblurrer=FakeDeblurrer))
    model = tmp_path / "m.keras"
    model.write_bytes(b"stand-in")
    fn = S.make_method("model", sim_eval, model=model)
    sample = S.select_samples(sim_eval, [0], 1)[0]
    out = fn(sample)
    assert calls[0] == ("from_file", str(model))
    # the loader's float [0, 1] (any input format): for these uint16 TIFFs it is bit for bit the
    # uint16 / 65535 that Deblurrer.deblur computes from raw uint16 data (as_unit_image)
    assert calls[1] == ("deblur", np.dtype(np.float32), (1460, 2360), 0)
    raw = tifffile.imread(sample.blurred)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(seen[0], raw.astype(np.float32) / np.float32(65535))
    # the camera's illumination from the folder's text images of the step, at the model's scale
    assert flats[0] is not None and flats[0].shape == (1460 // 7, 2360 // 7)
    assert out.dtype == np.uint8 and (out[:, :50] == 255).all() and out[0, 60] == 128


def test_scoring_does_not_import_tensorflow(sim_eval, tmp_path):
    import subprocess

    code = ("import sys; from eval import score as S; "
            f"S.evaluate({str(sim_eval)!r}, ['identity', 'rl'], [0], {str(tmp_path)!r}, 1, 1, progress=False, "
            "echo=lambda *a: None); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(S.__file__).resolve().parents[1]))


def _stand_in_model(monkeypatch, tmp_path, max_step, deblur):
    """A model file and a stand-in `deblur.infer.Deblurrer` built for steps 0-max_step whose
    deblur(image, step) is `deblur` (the flat field it is handed is ignored)."""
    class FakeDeblurrer:
        preprocess = types.SimpleNamespace(factor=7)

        @classmethod
        def from_file(cls, path):
            return cls()

    FakeDeblurrer.max_step = max_step
    FakeDeblurrer.deblur = staticmethod(lambda image, step, flat=None: deblur(image, step))
    monkeypatch.setitem(sys.modules, "deblur.infer", types.SimpleNamespace(Deblurrer=FakeDeblurrer))
    model = tmp_path / "m.keras"
    model.write_bytes(b"stand-in")
    return model


def test_model_beyond_its_steps_is_not_scored(sim_eval, tmp_path, monkeypatch):
    def deblur(image, step):
        assert step == 0 and image.dtype == np.float32
        return image

    model = _stand_in_model(monkeypatch, tmp_path, 0, deblur)
    notes = []
    res = S.evaluate(sim_eval, ["identity", "model"], [0, 5], tmp_path / "out", 1, 1, model=model,
                     progress=False, echo=notes.append)
    assert [(r["method"], r["step"]) for r in res["rows"]] == [
        ("identity", 0), ("identity", 5), ("model", 0)]
    assert any("steps 0-0" in n for n in notes)
    assert res["highest_step_passed"]["model"] == res["highest_step_passed"]["identity"] or \
        res["highest_step_passed"]["model"] <= 0
    assert (tmp_path / "out" / "montage.png").is_file()


def test_reuse_scores_only_the_new_methods(sim_eval, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["--data", str(sim_eval), "--steps", "5", "--out", str(out), "--workers", "1", "--quiet"]
    assert S.main(args + ["--methods", "sharp,identity"]) == 0
    first = json.loads((out / "leaderboard.json").read_text())["rows"]
    img = out / "images" / "identity" / "step5" / "focusStep_5_timesR_size_30_sample_0001.png"
    stamp = img.stat().st_mtime_ns
    scored = []
    real = S.score_many
    monkeypatch.setattr(S, "score_many", lambda pairs, **kw: scored.extend(pairs) or real(pairs, **kw))
    assert S.main(args + ["--methods", "sharp,identity,wiener", "--reuse"]) == 0
    assert "reusing the scored images of sharp, identity" in capsys.readouterr().out
    assert len(scored) == 2 and all("wiener" in str(p) for p, _ in scored)  # only the new method
    assert img.stat().st_mtime_ns == stamp
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["sharp", "identity", "wiener"]
    assert rows[:2] == first
    # an image that went missing is not reused: that method is recomputed
    img.unlink()
    scored.clear()
    assert S.main(args + ["--methods", "sharp,identity", "--reuse"]) == 0
    assert len(scored) == 2 and img.is_file()


def test_reuse_always_rescores_the_model(sim_eval, tmp_path, monkeypatch):
    """per_image.csv does not record which --model made the images: reusing them could pass off
    one model's scores as another's."""
    calls = []
    model = _stand_in_model(monkeypatch, tmp_path, 19, lambda image, step: calls.append(step) or image)
    out = tmp_path / "out"
    for _ in range(2):
        S.evaluate(sim_eval, ["identity", "model"], [5], out, 1, 1, model=model, progress=False,
                   echo=lambda *a: None, reuse=True, sanity=False)
    assert len(calls) == 4  # 2 images, deblurred again on the second run


# ------------------------------------------------------------------ the sanity check

def _srows(method, scores, sanity):
    return [{"method": method, "step": i, "score": sc, "sanity_passed": sp, "sanity_median": None}
            for i, (sc, sp) in enumerate(zip(scores, sanity))]


def test_highest_step_passed_with_the_sanity_check():
    rows = _srows("m", [90, 90, 90, 90], [True, True, False, True])
    assert S.highest_step_passed(rows, "m") == 3                        # OCR alone
    assert S.highest_step_passed_with_sanity(rows, "m", S.PASS) == 1    # sanity fails at step 2
    assert S.highest_sanity_step(rows, "m") == 1
    rows = _srows("m", [90, 60, 90], [True, True, True])
    assert S.highest_step_passed_with_sanity(rows, "m", S.PASS) == 0    # OCR fails at step 1
    assert S.highest_sanity_step(rows, "m") == 2
    assert S.highest_step_passed_with_sanity(_srows("m", [90], [False]), "m", S.PASS) == -1
    no_sanity = _srows("m", [90, 90], [None, None])
    assert S.highest_step_passed_with_sanity(no_sanity, "m", S.PASS) is None  # not measured: n/a
    assert S.highest_sanity_step(no_sanity, "m") is None
    # --sanity-only rows: no OCR score
    only = _srows("m", [None, None], [True, True])
    assert S.highest_sanity_step(only, "m") == 1 and S.highest_step_passed(only, "m") == -1
    text = S.format_sanity([{**r, "sanity_n": 7, "sanity_median": 0.8, "sanity_min": 0.5}
                            for r in _srows("m", [90, 90], [True, False])])
    assert "sanity check passed at every step up to: m 0" in text
    assert "highest step passed with the sanity check" in text and "m 0" in text


def test_sanity_only_scores_no_text(sim_eval, tmp_path, capsys, monkeypatch):
    def no_ocr(*a, **kw):
        raise AssertionError("--sanity-only must not run OCR")

    monkeypatch.setattr(S, "score_many", no_ocr)
    out = tmp_path / "out"
    rc = S.main(["--data", str(sim_eval), "--methods", "sharp,identity", "--sanity-only", "--out", str(out),
                 "--workers", "1", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "sanity check passed at every step up to" in text and "mean official score" not in text
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(S.ROW_FIELDS + S.SANITY_FIELDS)
    assert [(r["method"], r["step"], r["score"]) for r in rows] == [
        ("sharp", "0", ""), ("sharp", "5", ""), ("identity", "0", ""), ("identity", "5", "")]
    assert all(r["sanity_n"] == "2" for r in rows)
    assert all(float(r["sanity_median"]) > 0.97 for r in rows if r["method"] == "sharp")
    assert all(float(r["sanity_median"]) > 0.85 for r in rows if r["method"] == "identity")
    assert float(rows[2]["sanity_qrcode"]) > 0.5
    # the gain over the blurred input: none for the input itself, positive for the sharp image
    assert all(abs(float(r["sanity_gain"])) < 1e-6 for r in rows if r["method"] == "identity")
    assert all(float(r["sanity_gain"]) > 0.01 for r in rows if r["method"] == "sharp")
    assert "median gain over the blurred input" in text
    assert not (out / "per_image.csv").exists() and not list((out / "images").rglob("*sample_*"))
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["n_images"] == 0 and data["sanity"]["n_images"] == 6
    assert data["sanity"]["passed_up_to"] == {"sharp": 0, "identity": 0}  # step 1 not in the data
    for name in ("leaderboard.png", "montage.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    (empty / "step0" / "Times" / "CAM02").mkdir(parents=True)
    assert S.main(["--data", str(empty), "--sanity-only", "--out", str(tmp_path / "o")]) == 1
    assert "no sanity images" in capsys.readouterr().err


def test_sanity_only_with_a_model_of_fewer_steps(sim_eval, tmp_path, monkeypatch):
    """The model deblurs the sanity images at its own steps only; none of them: a clear error, nothing written."""
    seen = []
    model = _stand_in_model(monkeypatch, tmp_path, 0, lambda image, step: seen.append(step) or image)
    res = S.evaluate(sim_eval, ["identity", "model"], [0, 5], tmp_path / "out", workers=1, model=model,
                     progress=False, echo=lambda *a: None, sanity_only=True)
    assert [(r["method"], r["step"]) for r in res["rows"]] == [("identity", 0), ("identity", 5), ("model", 0)]
    assert seen == [0, 0, 0]  # QR target and two photos at step 0
    assert res["sanity"]["passed_up_to"]["model"] in (-1, 0)
    with pytest.raises(S.DataError, match="none of the chosen steps 5"):
        S.evaluate(sim_eval, ["model"], [5], tmp_path / "none", workers=1, model=model, progress=False,
                   echo=lambda *a: None, sanity_only=True)
    assert not (tmp_path / "none").exists()


def test_target_is_the_training_target_upscaled_and_reads(sim_eval, tmp_path, capsys):
    from deblur.infer import DEFAULT_MODEL, read_card
    from pipelines.preprocessing.preprocess import PreprocessConfig, preprocess_sharp, upscale
    from pipelines.reading.images import load_image

    out = tmp_path / "out"
    rc = S.main(["--data", str(sim_eval), "--methods", "sharp,target", "--steps", "5", "--out", str(out),
                 "--workers", "2", "--quiet"])
    assert rc == 0
    with open(out / "leaderboard.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["target"]["score"]) >= 70  # a perfect 1:7 network reads step 5
    assert float(rows["target"]["sanity_median"]) > 0.97  # photos: their grey image at 1:7, same frame
    [text] = [p for p in (out / "images" / "target" / "step5").glob("*timesR*.png")]
    [sample] = [s for s in S.select_samples(sim_eval, [5], None) if s.blurred.stem == text.stem]
    sharp = load_image(sample.sharp, expect_shape=None)
    pre = PreprocessConfig.from_dict(read_card(DEFAULT_MODEL)["preprocess"])
    want = S.to_uint8(np.clip(upscale(preprocess_sharp(sharp, pre), sharp.shape, factor=pre.factor), 0, 1))
    got = np.asarray(S.load_image(text, expect_shape=None) * 255, dtype=np.float32)
    assert got.shape == sharp.shape
    np.testing.assert_allclose(got, want, atol=1)
    assert (want < 128).mean() > 0.01  # there is ink in it
