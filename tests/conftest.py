import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "hdc2021"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"real HDC2021 fixtures not found at {FIXTURES} (../shared is absent)")
    return FIXTURES


@pytest.fixture(scope="session")
def sim_train(tmp_path_factory):
    from sim_trees import build
    return build(tmp_path_factory.mktemp("sim_train"), "train")


@pytest.fixture(scope="session")
def sim_eval(tmp_path_factory):
    from sim_trees import build
    return build(tmp_path_factory.mktemp("sim_eval"), "eval")


@pytest.fixture(autouse=True)
def sigint_handler_kept():
    """A test must leave Ctrl-C handling as it found it: an ignored SIGINT is inherited by every
    later child process, and then Ctrl-C no longer stops the commands the tests run."""
    import signal
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"the test changed the SIGINT handler from {before!r} to {after!r}")
