"""The official HDC2021 OCR scorer (eval/ocr.py): fixtures, post-processing, rounding, CLI."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rapidfuzz import fuzz

from eval import ocr
from eval.ocr import (
    DIV0_REASON,
    OcrResult,
    fuzz_ratio,
    normalise,
    official_score,
    postprocess,
    read_true_text,
    score_image,
    score_many,
    score_text,
    step_mean,
)
from pipelines.common.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TRUE3 = "VrkQCAeNBZ\nResijkFLTX\n GgceTmrxD"


def _cases(fx):
    s, t = fx / "scorer", fx / "text"
    name = "focusStep_{}_timesR_size_30_sample_0001"
    return [
        (s / "example.png", s / "example_TrueText.txt"),
        (s / f"dtu_{name.format(0)}.png", t / f"{name.format(0)}.txt"),
        (s / f"dtu_{name.format(4)}.png", t / f"{name.format(4)}.txt"),
        (s / f"dtu_{name.format(6)}.png", t / f"{name.format(6)}.txt"),
    ]


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    return _cases(fixtures_dir)


@pytest.fixture(scope="module")
def sequential(cases):
    return [score_image(im, tt) for im, tt in cases]


# ----------------------------------------------------------------------------- fixtures
def test_official_example_scores_90(sequential):
    r = sequential[0]
    assert r.score == 90 and r.reason is None
    assert r.ocr_lines[1] == "ResijkFLTX"
    assert len(r.ocr_lines) == 3
    assert not r.normaliser_div0
    assert 0.0 <= r.cer < 0.2


def test_dtu_step0_scores_100(sequential):
    r = sequential[1]
    assert r.score == 100 and r.reason is None
    assert r.ocr_lines[1] == "ecnhEjbBiM"
    assert 0.0 < r.cer < 0.3  # other lines have OCR slips: the score only looks at line 2


def test_dtu_step4_and_6_fail(sequential):
    r4, r6 = sequential[2], sequential[3]
    assert r4.score is None and r4.reason.startswith("OCR found") and r4.reason != "OCR found 3 lines"
    assert not r4.normaliser_div0  # left strip min is 14: dark, but no division by zero
    assert r6.score is None and r6.normaliser_div0
    assert DIV0_REASON in r6.reason and "OCR found" in r6.reason
    assert r4.cer == 1.0 and r6.cer == 1.0
    assert official_score(r4) == 0 and step_mean(sequential) == pytest.approx((90 + 100) / 4)


def test_array_inputs_match_file(cases, sequential):
    img, txt = cases[0]
    rgba = np.asarray(Image.open(img))
    assert rgba.ndim == 3 and rgba.shape[2] == 4
    assert score_image(rgba, txt) == sequential[0]
    gray = ocr.load_gray(img)
    assert np.array_equal(ocr.load_gray(rgba), gray)
    assert np.array_equal(ocr.load_gray(gray.astype(np.uint16) * 257), gray)
    assert np.array_equal(ocr.load_gray(gray / 255.0), gray)
    assert np.array_equal(ocr.load_gray(gray.astype(np.float32) / 255.0), gray)
    # the text may be given as a string; the middle line is what counts
    r = score_image(gray / 255.0, txt.read_text())
    assert r.score == 90


def test_zero_in_left_strip_wrecks_image(cases):
    img, txt = cases[0]
    gray = ocr.load_gray(img)
    assert gray[:, :50].min() > 0
    bad = gray.copy()
    bad[700, 10] = 0  # one black pixel in the left strip: 255 / 0
    r = score_image(bad, txt)
    assert r.score is None and r.normaliser_div0
    assert r.reason == f"{DIV0_REASON}; OCR found 0 lines"
    assert r.ocr_lines == [] and r.cer == 1.0


# ----------------------------------------------------------------------------- normaliser
def test_normaliser_known_answer():
    a = np.full((2, 60), 102, dtype=np.uint8)  # left-strip min 102 -> scale 255/102 = 2.5
    a[0, 50], a[0, 51], a[1, 52], a[1, 53], a[1, 54] = 0, 51, 103, 150, 1
    out = normalise(a)
    assert out.dtype == np.uint8
    assert out[0, 50] == 0
    assert out[0, 51] == 127  # 127.5 truncated, not rounded
    assert out[1, 54] == 2  # 2.5 truncated
    assert out[1, 52] == 255 and out[1, 53] == 255  # clipped
    assert out[0, 0] == 255  # 102 * 2.5 = 255 exactly


def test_normaliser_subtracts_global_min_but_scales_by_raw_strip_min():
    a = np.full((1, 60), 85, dtype=np.uint8)  # strip min 85 -> scale 3
    a[0, 55], a[0, 56] = 10, 40
    out = normalise(a)
    assert out[0, 55] == 0 and out[0, 56] == 90 and out[0, 0] == 225  # (85 - 10) * 3


def test_normaliser_division_by_zero_binarises():
    a = np.full((3, 60), 200, dtype=np.uint8)
    a[0, 3] = 0  # strip contains a 0
    a[1, 55], a[2, 56] = 1, 0
    with np.errstate(all="raise"):  # no numpy warnings leak out
        out = normalise(a)
    expected = np.full_like(a, 255)
    expected[0, 3] = expected[2, 56] = 0  # 0 * inf = NaN -> 0; everything else inf -> 255
    assert np.array_equal(out, expected)
    # and that is what plain numpy does with the official expression
    with np.errstate(all="ignore"):
        raw = np.clip((a - a.min()) * (255 / a[:, :50].min()), 0, 255).astype(np.uint8)
    assert np.array_equal(raw, expected)


def test_prepare_halves_with_bicubic():
    rng = np.random.default_rng(0)
    a = rng.integers(1, 256, size=(41, 63), dtype=np.uint8)
    img = ocr.prepare_image(a)
    assert img.size == (31, 20) and img.mode == "L"
    ref = Image.fromarray(normalise(a)).resize((31, 20), Image.Resampling.BICUBIC)
    near = Image.fromarray(normalise(a)).resize((31, 20), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(img), np.asarray(ref))
    assert not np.array_equal(np.asarray(img), np.asarray(near))


# ----------------------------------------------------------------------------- text handling
def test_postprocess_lines():
    assert postprocess("") == []
    assert postprocess("\n\f") == []
    assert postprocess("abc\ndef\nghi\n\f") == ["abc", "def", "ghi"]
    assert postprocess("abc\n\ndef\n\n\nghi\n") == ["abc", "def", "ghi"]
    assert postprocess("  abc \n \t \n de f  \nghi\n\f") == ["abc", "de f", "ghi"]
    assert postprocess("ab\n\fcd") == ["abcd"]  # "\n\f" is removed, joining the lines


def test_score_text_line_count_failures():
    for text, n in [("", 0), ("VrkQCAeNBZ\nResijkFLTX\n", 2), ("a\nb\nc\nd\n", 4)]:
        r = score_text(text, TRUE3)
        assert r.score is None and r.reason == f"OCR found {n} lines"
        assert official_score(r) == 0
        assert len(r.ocr_lines) == n
    assert score_text("", TRUE3).cer == 1.0


def test_score_text_middle_line_only_and_spaces():
    assert score_text("x\nResijkFLTX\ny\n\f", TRUE3).score == 100
    r = score_text("VrkQCAeNBZ\nResijkFLTX\nGgceTmrxD\n", TRUE3)
    assert r.score == 100 and 0 < r.cer < 0.1  # the lost leading space of line 3 costs CER only
    # true middle line: trailing spaces are rstripped, leading spaces are kept
    assert score_text("a\n ab cd\nc", "x\nab cd  \ny").score == 100
    assert score_text("a\n ab cd\nc", "x\n ab cd\ny").score == fuzz_ratio(" ab cd", "ab cd") == 91
    assert score_text("a\nRESIJKFLTX\nc", TRUE3).score == 50  # case counts: R+FLTX match


def test_fuzz_ratio_edge_cases():
    assert fuzz_ratio("", "") == 100  # equivalence is checked before emptiness
    assert fuzz_ratio("", "x") == 0 and fuzz_ratio("x", "") == 0
    assert fuzz_ratio(None, "x") == 0
    assert fuzz_ratio("abc", "abc") == 100
    assert fuzz_ratio("abc", "xyz") == 0


@pytest.mark.parametrize(
    "a,b,exact,expected",
    [
        ("abcdefgh", "aXXXXXXX", 12.5, 12),  # banker's rounding: down to even
        ("abcdefgh", "abcXXXXX", 37.5, 38),  # up to even
        ("abcdefgh", "abcdeXXX", 62.5, 62),
        ("abcdefgh", "abcdefgX", 87.5, 88),
    ],
)
def test_fuzz_ratio_rounds_half_to_even(a, b, exact, expected):
    assert fuzz.ratio(a, b) == exact
    assert fuzz_ratio(a, b) == expected


def test_fuzz_ratio_agrees_with_rapidfuzz_off_ties():
    rng = np.random.default_rng(1)
    alphabet = list("ABCDEFGHJKabcdefg ")
    for _ in range(300):
        a = "".join(rng.choice(alphabet, size=rng.integers(1, 12)))
        b = "".join(rng.choice(alphabet, size=rng.integers(1, 12)))
        ref = fuzz.ratio(a, b)
        if abs(ref - round(ref) - 0.5) > 1e-6 and abs(ref - round(ref) + 0.5) > 1e-6:
            assert fuzz_ratio(a, b) == round(ref), (a, b)


def test_step_mean_and_official_score():
    rs = [OcrResult(90, None), OcrResult(None, "OCR found 2 lines"), OcrResult(100, None)]
    assert [official_score(r) for r in rs] == [90, 0, 100]
    assert official_score(None) == 0
    assert step_mean(rs) == pytest.approx(190 / 3)
    with pytest.raises(ValueError):
        step_mean([])


# ----------------------------------------------------------------------------- bad input
def test_missing_and_unreadable_files(tmp_path, cases):
    img, txt = cases[0]
    with pytest.raises(DataError, match="missing_text.txt"):
        read_true_text(tmp_path / "missing_text.txt")
    with pytest.raises(DataError, match="missing.png"):
        score_image(tmp_path / "missing.png", txt)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="junk.png.*cannot read image"):
        score_image(junk, txt)
    one = tmp_path / "one_line.txt"
    one.write_text("abc")
    with pytest.raises(DataError, match="one_line.txt"):
        score_image(img, one)
    with pytest.raises(ValueError):
        ocr.load_gray(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError):
        ocr.load_gray(np.full((4, 4), np.nan))


def test_read_true_text_keeps_spaces(fixtures_dir, tmp_path):
    lines = read_true_text(fixtures_dir / "text" / "focusStep_4_timesR_size_30_sample_0001.txt")
    assert lines == ["WfSB ptLgg", "xvrWppVcSg", "PRWnYJScvi"]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b" abc  \r\nde f\r\nghi")
    assert read_true_text(crlf) == [" abc  ", "de f", "ghi"]


# ----------------------------------------------------------------------------- parallel
def test_score_many_parallel_matches_sequential(cases, sequential):
    order = [2, 0, 3, 1, 0]
    pairs = [cases[i] for i in order]
    par = score_many(pairs, workers=2, progress=False)
    assert par == [sequential[i] for i in order]
    assert score_many(cases[:2], workers=1, progress=False) == sequential[:2]
    assert score_many([], workers=2, progress=False) == []


def test_score_many_reports_bad_file(cases, tmp_path):
    pairs = [cases[0], (tmp_path / "gone.png", cases[0][1])]
    with pytest.raises(DataError, match="gone.png"):
        score_many(pairs, workers=2, progress=False)


# ----------------------------------------------------------------------------- CLI
def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "eval.ocr", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_cli(cases, tmp_path):
    p = _cli(*cases[0])
    assert p.returncode == 0 and p.stdout.strip() == "90", p.stderr
    p = _cli(*cases[2])
    assert p.returncode == 0 and p.stdout.startswith("fail: OCR found"), p.stderr
    p = _cli(tmp_path / "nope.png", cases[0][1])
    assert p.returncode != 0 and p.stdout == ""
    assert "nope.png" in p.stderr and "not found" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli(cases[0][0], tmp_path / "nope.txt")
    assert p.returncode != 0 and "nope.txt" in p.stderr and "Traceback" not in p.stderr


def test_module_does_not_import_tensorflow():
    code = "import sys, eval.ocr; sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
