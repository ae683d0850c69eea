"""pipelines.preparation.preview: the picture of every preparation stage."""
from collections import namedtuple
from pathlib import Path

import pytest
from PIL import Image

from pipelines.common.errors import DataError
from pipelines.preparation.preview import choose_samples, main, preview

FakeSample = namedtuple("FakeSample", "step font sample_id blurred")


def _fake(steps, fonts=("Times", "Verdana"), per_font=2):
    return [FakeSample(s, f, i, Path(f"/d/{s}/{f}/{i}.tif")) for s in steps for f in fonts
            for i in range(1, per_font + 1)]


def test_choose_samples_spreads_over_steps_and_fonts():
    samples = _fake(range(10))
    three = choose_samples(samples, 3)
    assert [s.step for s in three] == [0, 4, 9] or [s.step for s in three] == [0, 5, 9]
    assert {s.font for s in three} == {"Times", "Verdana"}
    many = choose_samples(samples, 25)  # every step, then second samples per step, ...
    assert len(many) == 25 and len(set(many)) == 25
    assert {s.step for s in many} == set(range(10))
    assert len(choose_samples(samples, 1000)) == len(samples)
    with pytest.raises(ValueError):
        choose_samples(samples, 0)


def test_preview_writes_a_png(sim_train, tmp_path):
    out = tmp_path / "sub" / "preview.png"
    path = preview(sim_train, out, samples=2, registration="table")
    assert path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        w, h = im.size
    # 11 panels per row (input, background, corrected, 4 medians, target, registered, check, tiles)
    assert 1500 < w < 2600 and 200 < h < 400, (w, h)
    assert out.stat().st_size > 50_000
    assert [p.name for p in out.parent.iterdir()] == ["preview.png"]  # written atomically


def test_preview_command_with_step_registration(sim_train, tmp_path):
    out = tmp_path / "p.png"
    assert main(["--data", str(sim_train), "--out", str(out), "--steps", "5", "--samples", "1"]) == 0
    with Image.open(out) as im:
        assert im.size[1] < 250  # one row


def test_no_samples_is_a_clear_error(sim_train, tmp_path, capsys):
    out = tmp_path / "p.png"
    with pytest.raises(DataError, match="no text samples for steps \\[3\\]"):
        preview(sim_train, out, steps=[3])
    assert main(["--data", str(sim_train), "--out", str(out), "--steps", "3"]) == 1
    assert "nothing to preview" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(DataError, match="no samples"):
        from pipelines.preparation.preview import write_preview
        write_preview(out, [], {})
