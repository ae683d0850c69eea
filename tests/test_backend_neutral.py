"""`deblur.train --synthetic` under the JAX backend on a machine without TensorFlow (the lent GPU
machines have JAX but no TensorFlow). Emulated here by making `import tensorflow` fail; skipped
where JAX is not installed (the test extra installs it: pip install -e ".[test]")."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys
class NoTensorFlow:  # a machine without TensorFlow: every import of it fails
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked for this test")
sys.meta_path.insert(0, NoTensorFlow())
from deblur.train import main
rc = main(sys.argv[1:])
print("RESULT", rc, "tensorflow" in sys.modules)
'''


def test_synthetic_training_runs_under_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[test]' brings it)")
    run = tmp_path / "jax"
    args = ["--synthetic", "--run-dir", str(run), "--steps", "2,14", "--model-arch", "pyramid",
            "--model-pyramid-dims", "4,6,8", "--model-pyramid-refinements", "1,1,1", "--model-dim", "4",
            "--model-subdim", "4", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
            "--synth-val-per-step", "1", "--synth-workers", "0", "--quiet"]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1500)
    assert "RESULT 0 False" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backend"] == "jax"
    assert (run / "last.keras").is_file() and (run / "history.csv").read_text().count("\n") == 2
    # trained under JAX, it loads and runs under TensorFlow (this process's backend)
    keras = pytest.importorskip("keras")
    import numpy as np

    import deblur  # noqa: F401  (registers the custom layers)
    model = keras.models.load_model(run / "last.keras")
    out = np.asarray(model.predict_on_batch({"image": np.full((1, 16, 24, cfg["model"]["channels"]), 0.5, np.float32),
                                             "step": np.array([[14.0]], np.float32)}))
    assert keras.backend.backend() == "tensorflow"
    assert out.shape == (1, 16, 24, 1) and np.isfinite(out).all()
