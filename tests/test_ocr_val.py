"""OCR validation while training (deblur/ocr_val.py, `python -m eval.train --ocr-val-every K`): the
fixed images, the NaN epochs, best.keras chosen by val_ocr_hard (highest), and the in-memory path
giving exactly what the saved model gives through `python -m deblur`'s path. Real Tesseract."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

TINY = ["--model-arch", "pyramid", "--model-pyramid-dims", "4,6,8", "--model-pyramid-refinements", "1,1,1",
        "--model-dim", "4", "--model-subdim", "4", "--physics", "none", "--steps", "3",
        "--steps-per-epoch", "1", "--batch-size", "1", "--synth-val-per-step", "1", "--synth-workers", "0",
        "--nontext-fraction", "0", "--no-step-weighting"]


def _rows(run):
    with open(Path(run) / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _same_weights(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


# ---- the images ------------------------------------------------------------------------------

def test_ocr_val_images_are_fixed_by_the_seed():
    from deblur.ocr_val import ocr_val_images
    from pipelines.reading.images import IMAGE_SHAPE

    a, b = ocr_val_images(7, [3, 12], 2), ocr_val_images(7, [3, 12], 2)
    assert [(i.step, i.font, i.sample) for i in a] == [(3, "Times", 1), (3, "Verdana", 1),
                                                      (12, "Times", 1), (12, "Verdana", 1)]
    for x, y in zip(a, b):
        assert x.blurred.dtype == np.uint16 and x.blurred.shape == tuple(IMAGE_SHAPE)
        assert x.text == y.text and len(x.text) == 3
        np.testing.assert_array_equal(x.blurred, y.blurred)
    other = ocr_val_images(8, [3], 1)[0]
    assert other.text != a[0].text and not np.array_equal(other.blurred, a[0].blurred)


def test_ocr_val_images_use_the_simulators_path_on_their_own_stream(tmp_path):
    """Stream 0 of simulate_sample is what `python -m pipelines.simulate` writes; the OCR validation
    stream gives other scenes for the same seed, step, font and sample."""
    import tifffile

    from deblur.ocr_val import ocr_val_images
    from pipelines.simulation.simulate import simulate, simulate_sample, to_uint16

    simulate(tmp_path, [3], samples=1, seed=9001, layout="eval", workers=1, progress=False, photos=())
    stem = tmp_path / "steps_0_to_4" / "CAM02_blurred" / "focusStep_3_timesR_size_30_sample_0001"
    text, _, blurred = simulate_sample(9001, 3, "Times", 1)
    np.testing.assert_array_equal(to_uint16(blurred), tifffile.imread(f"{stem}.tif"))
    assert "\n".join(text) == Path(f"{stem}.txt").read_text()
    assert ocr_val_images(9001, [3], 1)[0].text != tuple(text)


# ---- schedule, monitor direction, command line -----------------------------------------------

def test_due_epochs_and_the_monitor_direction():
    from deblur.ocr_val import is_due
    from deblur.train import best_row, best_value, monitor_mode

    assert [e for e in range(7) if is_due(e, 3, 7)] == [2, 5, 6]  # every 3 and the last
    assert not any(is_due(e, 0, 7) for e in range(7))
    assert (monitor_mode("val_loss"), monitor_mode("val_excess_hard"), monitor_mode("val_ocr_hard")) == (
        "min", "min", "max")
    with pytest.raises(ValueError, match="unknown --monitor"):
        monitor_mode("val_ocr")
    rows = [{"epoch": 0, "val_loss": 0.3, "val_ocr_hard": math.nan},
            {"epoch": 1, "val_loss": 0.2, "val_ocr_hard": 40.0},
            {"epoch": 2, "val_loss": 0.1, "val_ocr_hard": 55.0},
            {"epoch": 3, "val_loss": 0.4, "val_ocr_hard": 55.0}]
    assert best_row(rows, "val_ocr_hard")["epoch"] == 2  # highest; the first of equals
    assert best_row(rows, "val_loss")["epoch"] == 2 and best_value(rows, "val_loss") == 0.1
    assert best_row(rows[:1], "val_ocr_hard") is None and best_value(rows, "val_excess_hard") is None


def test_resume_takes_the_best_in_the_monitors_direction(tmp_path):
    from deblur.train import RunDirError, TrainConfig, _prepare_run_dir

    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 3}))
    (run / "history.csv").write_text("epoch,val_loss,val_ocr_hard\n0,0.3,nan\n1,0.2,40\n2,0.25,35\n")
    record = {"model": {"arch": "x"}, "steps": [3]}
    (run / "config.json").write_text(json.dumps(record))
    for monitor, best in (("val_ocr_hard", 40.0), ("val_loss", 0.2)):
        config = TrainConfig(data=None, run_dir=str(run), monitor=monitor)
        assert _prepare_run_dir(run, record, config)["best"] == best
    # the OCR columns of history.csv cannot change on a resume
    (run / "config.json").write_text(json.dumps({**record, "args": {"ocr_val_every": 2, "ocr_val_steps": [3]}}))
    with pytest.raises(RunDirError, match="OCR validation steps"):
        _prepare_run_dir(run, record, TrainConfig(data=None, run_dir=str(run)))


def test_command_line_needs_the_ocr_validation_and_its_scorer(tmp_path, capsys):
    from deblur.train import main

    with pytest.raises(SystemExit) as e:
        main(["--run-dir", str(tmp_path / "r"), "--monitor", "val_ocr_hard"])
    assert e.value.code == 2 and "needs --ocr-val-every" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # deblur does not import eval: the scorer is handed in
        main(["--run-dir", str(tmp_path / "r"), "--ocr-val-every", "2"])
    assert e.value.code == 2 and "python -m eval.train" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_in_memory_output_follows_the_weights_and_is_the_saved_models(tmp_path):
    """The validation's Deblurrer wraps the model being trained: after its weights change (and
    sync_weights), it gives pixel for pixel what the saved model gives through Deblurrer.from_file,
    the path of `python -m deblur`."""
    import json

    from deblur.infer import DEFAULT_MODEL, Deblurrer, card_path, read_card
    from deblur.model import load_model, save_model
    from deblur.ocr_val import deblur_for_ocr, ocr_val_images

    image = ocr_val_images(0, [5], 1)[0]
    model = load_model(DEFAULT_MODEL)
    d = Deblurrer(model, read_card(DEFAULT_MODEL)["preprocess"])
    before = deblur_for_ocr(d, image)
    assert before.dtype == np.uint8 and before.shape == image.blurred.shape
    rng = np.random.default_rng(0)
    model.set_weights([w * (1 + 0.05 * rng.standard_normal(w.shape)).astype(w.dtype) if w.ndim == 4 else w
                       for w in model.get_weights()])  # "training" moved the conv kernels
    d.sync_weights()
    after = deblur_for_ocr(d, image)
    assert not np.array_equal(before, after)
    path = save_model(model, tmp_path / "m.keras")
    card = {k: v for k, v in read_card(DEFAULT_MODEL).items() if k != "specialists"}  # this model alone
    card_path(path).write_text(json.dumps(card))
    np.testing.assert_array_equal(deblur_for_ocr(Deblurrer.from_file(path), image), after)


# ---- training runs with real OCR -------------------------------------------------------------

def test_epochs_without_ocr_validation_are_nan_and_never_best(tmp_path, capsys):
    """Every 2 epochs of 2: epoch 1 has NaN, epoch 2 is measured (the last) and is best.keras,
    although Keras would take any first value (the NaN) as best if the maximum started at None."""
    from deblur.model import load_model
    from eval.train import main

    run = tmp_path / "run"
    assert main(["--run-dir", str(run), "--epochs", "2", "--ocr-val-every", "2", "--ocr-val-per-step", "1",
                 "--ocr-val-steps", "3", "--monitor", "val_ocr_hard", *TINY]) == 0
    out = capsys.readouterr().out
    assert out.count("OCR validation after epoch") == 1 and "OCR validation after epoch 2:" in out
    r0, r1 = _rows(run)
    assert math.isnan(r0["val_ocr_step3"]) and math.isnan(r0["val_ocr_hard"])
    assert 0 <= r1["val_ocr_step3"] <= 100 and r1["val_ocr_hard"] == r1["val_ocr_step3"]
    assert _same_weights(load_model(run / "best.keras"), load_model(run / "last.keras"))


def test_ocr_validation_chooses_best_keras_and_reads_what_the_saved_model_gives(tmp_path):
    """From the shipped model (so the OCR reads text) at step 15, where it is borderline: val_ocr_step15 in [0, 100];
    best.keras is the epoch with the highest val_ocr_hard; and the saved best.keras, run through
    `python -m deblur`'s path (Deblurrer.from_file: preprocessing from the run's config.json),
    scores exactly the number the in-memory validation logged for that epoch."""
    from deblur.infer import DEFAULT_MODEL, Deblurrer
    from deblur.model import load_model
    from deblur.ocr_val import deblur_for_ocr, ocr_val_images
    from deblur.train import best_row
    from eval.ocr import official_score, score_image
    from eval.train import main

    run = tmp_path / "run"
    args = ["--run-dir", str(run), "--epochs", "2", "--init", str(DEFAULT_MODEL), "--lr", "1e-3",
            "--steps", "15", "--steps-per-epoch", "1", "--batch-size", "1", "--synth-val-per-step", "1",
            "--synth-workers", "0", "--nontext-fraction", "0", "--seed", "11",
            "--ocr-val-every", "1", "--ocr-val-per-step", "1", "--ocr-val-steps", "15",
            "--monitor", "val_ocr_hard", "--quiet"]
    assert main(args) == 0
    rows = _rows(run)
    assert len(rows) == 2
    for r in rows:
        assert 0 <= r["val_ocr_step15"] <= 100 and r["val_ocr_hard"] == r["val_ocr_step15"]
    cfg = json.loads((run / "config.json").read_text())["args"]
    assert (cfg["monitor"], cfg["ocr_val_every"], cfg["ocr_val_steps"], cfg["ocr_val_per_step"]) == (
        "val_ocr_hard", 1, [15], 1)
    best = best_row(rows, "val_ocr_hard")
    last = best["epoch"] == rows[-1]["epoch"]
    assert _same_weights(load_model(run / "best.keras"), load_model(run / "last.keras")) == last
    image = ocr_val_images(11, [15], 1)[0]
    saved = deblur_for_ocr(Deblurrer.from_file(run / "best.keras"), image)
    assert official_score(score_image(saved, list(image.text))) == best["val_ocr_hard"]
