"""Shipping a run as a packaged model: the file reloads and the card says what produced it."""
import json

import numpy as np
import pytest

from test_train import MODEL_CFG, make_set


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from deblur.train import train

    data = make_set(tmp_path_factory.mktemp("set"))
    run = tmp_path_factory.mktemp("run") / "r"
    train(dict(data=str(data), run_dir=str(run), steps=[0, 1], epochs=2, batch_size=8, lr=0.01,
               verbose=False, **MODEL_CFG))
    return run


def test_ship_copies_a_reloadable_model_and_writes_its_card(run_dir, tmp_path):
    from deblur.model import load_model
    from deblur.ship import read_card, ship

    out = ship(run_dir, "best", tmp_path / "models" / "m.keras", command="python -m deblur.train ...")
    card = read_card(out)
    hist = [json.loads((run_dir / "history.json").read_text())]
    assert card["epochs_run"] == 2 == len(hist[0]["epoch"])
    assert card["best"]["val_loss"] == pytest.approx(min(hist[0]["val_loss"]))
    assert set(card["best"]["val_loss_per_step"]) == {"0", "1"}
    assert card["steps"] == [0, 1] and card["command"] == "python -m deblur.train ..."
    assert card["model"]["output_size"] == 16 and card["wall_time_s"] >= 0
    a, b = load_model(out), load_model(run_dir / "best.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_ship_refuses_flips_for_a_tiled_model(run_dir, tmp_path):
    from deblur.ship import ship

    with pytest.raises(ValueError, match="pyramid"):
        ship(run_dir, "best", tmp_path / "m.keras", flips=2)
    with pytest.raises(ValueError, match="flips must be"):
        ship(run_dir, "best", tmp_path / "m.keras", flips=3)
    assert not list(tmp_path.iterdir())


def test_ship_refuses_a_folder_without_a_model(tmp_path):
    from deblur.ship import main

    assert main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "x.keras")]) == 2
    assert not (tmp_path / "x.keras").exists()


def test_history_plot_writes_a_png(run_dir, tmp_path):
    from PIL import Image

    from deblur.history_plot import main

    assert main([str(run_dir), "--out", str(tmp_path / "h.png")]) == 0
    assert Image.open(tmp_path / "h.png").size[0] > 500
    assert main([str(tmp_path / "nothing")]) == 2
    # the phases of one model, one after the other
    assert main([str(run_dir), str(run_dir), "--out", str(tmp_path / "phases.png")]) == 0
    assert Image.open(tmp_path / "phases.png").size == Image.open(tmp_path / "h.png").size
    assert main([str(run_dir), str(tmp_path / "nothing"), "--out", str(tmp_path / "bad.png")]) == 2
    assert not (tmp_path / "bad.png").exists()


def test_history_plot_adds_the_ocr_validation_panel(run_dir, tmp_path):
    """A run with OCR validation (val_ocr_step{N}, NaN between validations) gets a third panel."""
    import csv
    import shutil

    from PIL import Image

    from deblur.history_plot import main

    ocr_run = tmp_path / "ocr_run"
    ocr_run.mkdir()
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0]) + ["val_ocr_step1", "val_ocr_hard"]
    with open(ocr_run / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "val_ocr_step1": "nan" if i == 0 else "55.0", "val_ocr_hard": "nan" if i == 0 else "55.0"})
    assert main([str(run_dir), "--out", str(tmp_path / "plain.png")]) == 0
    assert main([str(ocr_run), "--out", str(tmp_path / "ocr.png")]) == 0
    plain, ocr = Image.open(tmp_path / "plain.png"), Image.open(tmp_path / "ocr.png")
    assert ocr.size[0] > 1.4 * plain.size[0] and ocr.size[1] == plain.size[1]
    shutil.rmtree(ocr_run)


def test_reshipping_keeps_the_cards_routes_unless_dropped(run_dir, tmp_path):
    from deblur.infer import Deblurrer
    from deblur.model import ModelLoadError
    from deblur.ship import read_card, route, ship
    from test_specialists import _shipped

    general = ship(run_dir, "best", tmp_path / "general.keras")
    factor = Deblurrer.from_file(general).preprocess.factor
    special = _shipped(tmp_path, "special", 2, [16, 17, 18, 19])
    card = read_card(special)
    card["preprocess"]["factor"] = factor  # the same scale as the general model
    (tmp_path / "special.json").write_text(json.dumps(card))
    route(special, [17, 18, 19], into=general)
    ship(run_dir, "last", general)
    assert read_card(general)["source"] == "last.keras"
    assert read_card(general)["specialists"] == [{"model_file": "special.keras", "steps": [17, 18, 19]}]
    assert Deblurrer.from_file(general).for_step(18).source == special
    # a route that no longer fits is refused before anything is written
    broken = read_card(general)
    broken["specialists"] = [{"model_file": "gone.keras", "steps": [19]}]
    (tmp_path / "general.json").write_text(json.dumps(broken))
    before = general.read_bytes()
    with pytest.raises(ModelLoadError, match="gone.keras"):
        ship(run_dir, "best", general)
    assert general.read_bytes() == before and read_card(general) == broken
    ship(run_dir, "best", general, keep_routes=False)
    assert "specialists" not in read_card(general)
