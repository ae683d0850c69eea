"""deblur.train's defaults are the shipped model's recipe (tests/test_readme.py trains with them and
compares the result with deblur/models/default.keras); --init takes a model's architecture and
preprocessing from its card or run config; a flag that contradicts --init's model is named."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deblur.train import build_parser, init_record, main, record_settings, resolve

ROOT = Path(__file__).resolve().parents[1]
CARD = json.loads((ROOT / "deblur" / "models" / "default.json").read_text())
DEFAULT = str(ROOT / "deblur" / "models" / "default.keras")


def _config(*argv):
    return resolve(build_parser().parse_args(["--run-dir", "R", *argv]))


def test_no_flags_give_the_shipped_architecture_preprocessing_and_training_settings():
    c = _config("--steps", "0-19")
    assert c.synthetic and c.data is None
    assert (c.model_arch, c.model_pyramid_dims, c.model_pyramid_refinements) == ("pyramid", (16, 24, 32, 48), (1, 2, 3, 4))
    assert (c.model_dim, c.model_subdim, c.physics, c.physics_balances) == (16, 16, "wiener-multi", (0.003, 0.1, 3.0))
    training = CARD["training"]
    assert (c.batch_size, c.steps_per_epoch, c.step_weighting, c.patience, c.nontext_fraction) == (
        training["batch_size"], training["steps_per_epoch"], training["step_weighting"], training["patience"],
        training["nontext_fraction"])
    assert c.nontext_fraction == 0.4  # the shipped card's: 40 % non-text scenes
    assert _config().steps == list(range(20))


def test_the_help_starts_with_the_pyramid():
    text = build_parser().format_help()
    first = text.split("\n\n")[1].splitlines()[0]
    assert "pyramid" in first and "highway" not in first


def test_the_highway_design_is_one_flag_away():
    c = _config("--model-arch", "highway")
    assert (c.model_arch, c.model_dim, c.model_subdim, c.model_refinements, c.batch_size) == ("highway", 32, 32, 12, 32)
    assert _config("--model-arch", "highway", "--model-dim", "8").model_dim == 8


def test_data_runs_take_one_pass_per_epoch_and_their_channels_from_the_set():
    c = _config("--data", "D")
    assert not c.synthetic and c.steps_per_epoch is None and c.model_arch == "pyramid"
    with pytest.raises(SystemExit):
        main(["--data", "D", "--run-dir", "R", "--physics", "wiener"])
    with pytest.raises(SystemExit):
        main(["--data", "D", "--synthetic", "--run-dir", "R"])


def test_init_takes_the_card_and_flags_override_or_are_named(capsys):
    c = _config("--init", DEFAULT, "--lr", "0.0003")
    assert record_settings(CARD) == {k: getattr(c, k) for k in record_settings(CARD)}
    assert c.lr == pytest.approx(3e-4)
    assert _config("--init", DEFAULT, "--batch-size", "8").batch_size == 8   # not architecture: overrides
    for flag, value, recorded in (("--model-pyramid-dims", "8,16,24,32", "16,24,32,48"),
                                  ("--physics", "none", "wiener-multi"), ("--model-arch", "highway", "pyramid")):
        with pytest.raises(SystemExit) as e:
            main(["--run-dir", "R", "--init", DEFAULT, flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"{flag} {value} contradicts --init" in err and f"records {flag} {recorded}" in err, err
    # the same values as the card's are no conflict
    assert _config("--init", DEFAULT, "--model-pyramid-dims", "16,24,32,48",
                   "--physics", "wiener-multi").physics == "wiener-multi"


def test_init_from_a_checkpoint_reads_its_run_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "args": {"batch_size": 2}, "steps": [3],
        "model": {"arch": "pyramid", "dim": 4, "subdim": 4, "pyramid_dims": [4, 6, 8],
                  "pyramid_refinements": [1, 1, 1], "channels": 5},
        "data": {"synthetic": True, "preprocess": {"factor": 7}}}))
    settings, source = init_record(run / "best.keras")
    assert source == run / "config.json"
    assert settings["model_pyramid_dims"] == (4, 6, 8) and settings["physics"] == "none"
    c = _config("--init", str(run / "best.keras"))
    assert (c.model_dim, c.model_pyramid_dims, c.physics, c.batch_size) == (4, (4, 6, 8), "none", CARD["training"]["batch_size"])
    c = _config("--init", str(run / "best.keras"), "--physics", "wiener")  # adds the channel: allowed
    assert c.physics == "wiener"
    assert init_record(tmp_path / "nowhere.keras") == ({}, None)


def test_a_set_without_the_physics_channel_cannot_continue_a_physics_model(sim_train, tmp_path):
    """The old fine-tuning recipe (prepare without --physics wiener, then --init the shipped model)
    stopped with "{'channels': (6, 5)}"; the error now says what to add to pipelines.prepare."""
    from pipelines.preparation.prepare import prepare

    data = tmp_path / "real"
    prepare(sim_train, data, [5], in_size=208, out_size=208, workers=1, progress=False)
    r = subprocess.run([sys.executable, "-m", "deblur.train", "--data", str(data), "--run-dir", str(tmp_path / "r"),
                        "--steps", "5", "--epochs", "1", "--init", DEFAULT],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "input channels: model 8, this run 5" in r.stderr, r.stderr
    assert "pipelines.prepare --physics wiener-multi" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_defaults_follow_the_shipped_card_including_its_non_text_fraction(tmp_path, monkeypatch):
    """A new shipped model's card (ship records its training settings) changes the defaults."""
    from deblur import infer

    card = {**CARD, "training": {**CARD["training"], "nontext_fraction": 0.3, "batch_size": 6}}
    (tmp_path / "default.json").write_text(json.dumps(card))
    monkeypatch.setattr(infer, "DEFAULT_MODEL", tmp_path / "default.keras")
    c = _config()
    assert (c.nontext_fraction, c.batch_size, c.model_arch) == (0.3, 6, "pyramid")
    assert _config("--data", "D").nontext_fraction == 0.0  # a prepared set has no procedural scenes
    assert _config("--nontext-fraction", "0.1").nontext_fraction == 0.1
    assert "recipe 0.3" in " ".join(build_parser().format_help().split())
