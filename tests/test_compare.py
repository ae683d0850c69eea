"""eval.compare: paired per-image comparison of two eval.score runs."""
import csv
import math

import pytest

from eval.compare import main, official_by_image, paired

FIELDS = ["method", "step", "font", "sample_id", "score", "official", "cer", "reason",
          "ocr_middle", "true_middle", "image", "blurred"]


def write_run(folder, scores, method="model"):
    """scores: {(step, name): official}; writes folder/per_image.csv as eval.score does."""
    folder.mkdir()
    with (folder / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for (step, name), s in scores.items():
            w.writerow({"method": method, "step": step, "font": "Times", "sample_id": 1, "score": s,
                        "official": s, "cer": 0.1, "reason": "", "ocr_middle": "", "true_middle": "",
                        "image": f"images/{name}.png", "blurred": f"data/x/{name}"})
    return folder


def test_paired_difference_and_standard_error(tmp_path, capsys):
    a = write_run(tmp_path / "a", {(16, "i1"): 50, (16, "i2"): 60, (17, "i3"): 40, (17, "only_a"): 99})
    b = write_run(tmp_path / "b", {(16, "i1"): 60, (16, "i2"): 60, (17, "i3"): 55})
    r = paired(official_by_image(a, "model"), official_by_image(b / "per_image.csv", "model"))
    assert r["n"] == 3 and r["only_a"] == 1 and r["only_b"] == 0
    assert r["steps"][16] == {"n": 2, "a": 55.0, "b": 60.0}
    assert r["diff"] == pytest.approx(25 / 3)
    d = [10, 0, 15]
    m = sum(d) / 3
    assert r["se"] == pytest.approx(math.sqrt(sum((x - m) ** 2 for x in d) / 2 / 3))
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| 17 | 1 | 40.0 | 55.0 | +15.0 |" in out and "paired difference +8.33" in out


def test_refusals_name_the_problem(tmp_path, capsys):
    a = write_run(tmp_path / "a", {(16, "i1"): 50, (16, "i2"): 60})
    b = write_run(tmp_path / "b", {(16, "other"): 50}, method="wiener")
    with pytest.raises(ValueError, match="no images of method 'model'"):
        official_by_image(b, "model")
    assert main([str(a), str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="share 0 scored image"):
        paired(official_by_image(a, "model"), official_by_image(b, "wiener"))
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not a per_image.csv"):
        official_by_image(tmp_path / "bad.csv", "model")
