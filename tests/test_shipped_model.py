"""The shipped default model: its card describes the file, and it makes simulated step-5 text
readable where the raw image is not (real TensorFlow, real Tesseract)."""
import hashlib

import numpy as np
import pytest

from deblur.infer import DEFAULT_MODEL, read_card

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no default model shipped")


def test_card_describes_the_shipped_file():
    card = read_card(DEFAULT_MODEL)
    assert card["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert card["steps"] == list(range(20))
    data = card["data"]
    seed = data["seed"] if data.get("synthetic_stream") else data["simulator_seed"]
    assert seed != 9001  # never trained on the evaluation seed
    assert card["model"]["receptive_field"] >= 120  # twice the step-19 disc at 1:7
    assert card["best"]["val_loss"] < 0.2 and card["epochs_run"] >= card["best"]["epoch"]
    assert DEFAULT_MODEL.stat().st_size < 5_000_000


def test_shipped_model_reads_step_5_text_the_raw_image_cannot(sim_eval):
    from deblur.infer import Deblurrer
    from eval.ocr import official_score, score_image
    from pipelines.common.output import to_uint8
    from pipelines.reading.hdc import find_samples, load_tiff

    d = Deblurrer.from_file(None)
    samples = find_samples(sim_eval, [5])
    assert len(samples) == 2
    model, raw = [], []
    for s in samples:
        blurred = load_tiff(s.blurred)
        out = d.deblur(blurred, 5)
        assert out.shape == blurred.shape and out.dtype == np.float32
        model.append(official_score(score_image(to_uint8(out), "\n".join(s.text))))
        raw.append(official_score(score_image(to_uint8(blurred), "\n".join(s.text))))
    assert np.mean(model) >= 70 > np.mean(raw) + 30, (model, raw)


def test_the_card_routes_steps_16_19_to_a_specialist_it_describes():
    from deblur.infer import Deblurrer, card_path
    from deblur.model import spec_of

    card = read_card(DEFAULT_MODEL)
    routes = card.get("specialists") or []
    assert routes, "the shipped card routes no step"
    d = Deblurrer.from_file(None)
    for route in routes:
        path = DEFAULT_MODEL.parent / route["model_file"]
        sub = read_card(path)
        assert sub["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), card_path(path)
        assert set(route["steps"]) <= set(sub["steps"]) and sub["data"]["seed"] != 9001
        assert sub["preprocess"] == card["preprocess"]  # the same input pipeline as the general model
        for step in route["steps"]:
            assert d.for_step(step).source == path and not d.outside_training(step)
    assert d.for_step(0) is d and spec_of(d.for_step(19).model).pyramid_dims[-1] > spec_of(d.model).pyramid_dims[-1]
