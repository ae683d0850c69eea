"""bench.train_speed: the shipped architecture's training speed per setting, against the matmul peak."""
import pytest

pytest.importorskip("tensorflow")

from bench import train_speed  # noqa: E402
from deblur.infer import DEFAULT_MODEL  # noqa: E402
from deblur.model import describe, load_model, spec_of  # noqa: E402


def test_a_setting_reports_frames_and_gflops_of_the_shipped_architecture():
    r = train_speed.run_setting(str(DEFAULT_MODEL), "base", seconds=0.1)
    h, w = train_speed.FRAME
    per_px = describe(spec_of(load_model(DEFAULT_MODEL)), input_size=1)["forward_flops_per_output_px"]
    assert r["gflop_frame"] == pytest.approx(3 * per_px * h * w / 1e9)
    assert r["frames_s"] > 0 and r["peak_gflops"] > 0
    # achieved = frames/s x GFLOP per frame, and no faster than a few times the measured peak
    assert r["train_gflops"] == pytest.approx(r["frames_s"] * r["gflop_frame"])
    assert r["train_gflops"] < 5 * r["peak_gflops"]


def test_an_unknown_setting_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        train_speed.main(["--settings", "base,warp9"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "warp9" in err and "jit-bf16" in err


def test_end_to_end_rows_know_their_echo_and_unknown_rows_are_refused(capsys):
    assert train_speed._echo("base") == 1 and train_speed._echo("bf16-echo2") == 2
    with pytest.raises(SystemExit) as e:
        train_speed.main(["--end-to-end", "--e2e-settings", "base,turbo"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "turbo" in err and "bf16-echo2" in err
