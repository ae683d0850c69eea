"""The console entry points of pyproject.toml run the same commands as `python -m MODULE`."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"hdc-simulate": "pipelines.simulate", "hdc-prepare": "pipelines.prepare",
            "hdc-train": "eval.train", "hdc-deblur": "deblur", "hdc-score": "eval.score"}


def _scripts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_main_command_has_an_entry_point():
    assert sorted(_scripts()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_point_runs_the_module_command(name):
    module, func = _scripts()[name].split(":")
    code = f"import sys; sys.argv = [{name!r}, '--help']; from {module} import {func}; sys.exit({func}())"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"usage: python -m {EXPECTED[name]} " in r.stdout, r.stdout[:500]


def test_installed_scripts_work():
    """Where the package is installed (bash run.sh test installs it into .venv), the scripts exist."""
    bin_dir = Path(sys.executable).parent
    missing = [n for n in EXPECTED if not (bin_dir / n).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed in {bin_dir} (pip install -e . creates them)")
    r = subprocess.run([str(bin_dir / "hdc-simulate"), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: python -m pipelines.simulate" in r.stdout, r.stderr[-2000:]
