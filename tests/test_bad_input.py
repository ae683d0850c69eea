"""The bad-input matrix: every command, run as a user runs it (`python -m ...` in a subprocess), on
bad input, interruption and changed data. Each case checks the exit status, a one-line message
naming the file or the flag, no traceback, and that no input or earlier output changed (checksums
of every file before and after). Inputs are tiny crops of the simulated session tree; cases that
need a model share one run of it (docs/bad-input.md lists what each case gives).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.preparation.shards import read_shard

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "deblur" / "models" / "default.keras"
TIMES = "step5/Times"
STEM = "focusStep_5_timesR_size_30_sample_{:04d}"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run(*args, timeout=300, cwd=None):
    """`python -m args...` -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=cwd)


def snapshot(*roots) -> dict:
    """sha256 of every file (and the target of every link) below the roots: the before/after check."""
    out = {}
    for root in map(Path, roots):
        paths = [root] if not root.is_dir() else sorted(root.rglob("*"))
        for p in paths:
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def no_traceback(r):
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text[-3000:]


def line_with(text: str, *needles) -> str:
    """The one line of `text` that holds every needle (the message must fit on one line)."""
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if all(n in ln for n in needles)]
    assert lines, f"no line with {needles} in:\n{text[-3000:]}"
    return lines[0]


def fails(r, code: int, *needles) -> str:
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    no_traceback(r)
    return line_with(r.stdout + r.stderr, *needles)


def crop_tree(src: Path, dst: Path, shape=(350, 560)) -> Path:
    """A copy of a simulated tree with every TIFF centre-cropped: prepare takes ~0.3 s on it."""
    import tifffile

    for p in sorted(src.rglob("*")):
        if p.is_dir():
            continue
        t = dst / p.relative_to(src)
        t.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".tif":
            a = tifffile.imread(p)
            h, w = a.shape
            tifffile.imwrite(t, a[(h - shape[0]) // 2:(h + shape[0]) // 2, (w - shape[1]) // 2:(w + shape[1]) // 2])
        else:
            shutil.copy2(p, t)
    return dst


def add_pair(data: Path, new_id: int, like: int = 1):
    """A new text sample of step 5 (a copy of sample `like`): the data folder gains a pair."""
    for cam in ("CAM01", "CAM02"):
        for suffix in (".tif", ".txt"):
            src = data / TIMES / cam / (STEM.format(like) + suffix)
            if src.exists():
                shutil.copy(src, data / TIMES / cam / (STEM.format(new_id) + suffix))


def symlinked_pairs(data: Path, dst: Path, n: int) -> Path:
    """n step-5 text samples that are links to one pair (many inputs, no disk)."""
    for i in range(n):
        for cam in ("CAM01", "CAM02"):
            folder = dst / TIMES / cam
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(data / TIMES / cam / (STEM.format(1) + ".tif"), folder / (STEM.format(i) + ".tif"))
        shutil.copy(data / TIMES / "CAM01" / (STEM.format(1) + ".txt"), dst / TIMES / "CAM01" / (STEM.format(i) + ".txt"))
    return dst


def interrupt_when(cmd, ready, timeout=120):
    """Start `python -m cmd` in its own session, wait until ready(proc) is true, send Ctrl-C to the
    whole process group (as a terminal does), return (CompletedProcess-like, seconds)."""
    # the default Ctrl-C handling in the child even if this test process ignores SIGINT (an ignored
    # signal is inherited, and Python then installs no KeyboardInterrupt handler)
    p = subprocess.Popen([sys.executable, "-m", *map(str, cmd)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not ready(p) and p.poll() is None and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert p.poll() is None, f"finished before the interrupt: {p.returncode}"
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def png_ok(path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
    return True


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(sim_train, tmp_path_factory) -> Path:
    """The session's simulated tree (steps 0 and 5, two pairs each), cropped to 560 x 350."""
    return crop_tree(sim_train, tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture()
def data(tiny, tmp_path) -> Path:
    """A copy a test may change."""
    return Path(shutil.copytree(tiny, tmp_path / "data", copy_function=shutil.copy2))


@pytest.fixture(scope="module")
def blurred(tiny) -> Path:
    return tiny / TIMES / "CAM02" / (STEM.format(1) + ".tif")


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> Path:
    from test_train import make_set

    return make_set(tmp_path_factory.mktemp("set") / "set")


@pytest.fixture(scope="module")
def small_run(shard_set, tmp_path_factory) -> Path:
    """A finished 1-epoch run of a tiny model built for steps 0-3 (through the command line)."""
    run_dir = tmp_path_factory.mktemp("run") / "r"
    r = run("deblur.train", "--data", shard_set, "--run-dir", run_dir, "--steps", "0-1", "--epochs", "1",
            "--model-arch", "highway", "--no-step-weighting",
            "--batch-size", "8", "--model-max-step", "3", "--model-dim", "8", "--model-subdim", "8",
            "--model-refinements", "3", "--model-shared-width", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return run_dir


# --------------------------------------------------------------------------------------------
# 1. inputs overwritten
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("out", ["same", "dotdot", "link"])
def test_deblur_refuses_the_input_folder_as_output(blurred, tmp_path, out):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(blurred, d / "a.tif")
    from PIL import Image
    Image.fromarray(np.full((350, 560), 200, np.uint8)).save(d / "b.png")  # would be replaced by b.png
    target = {"same": d, "dotdot": d / "sub" / "..", "link": tmp_path / "link"}[out]
    if out == "link":
        target.symlink_to(d)
    before = snapshot(d)
    r = run("deblur", d, target, "5")
    fails(r, 2, str(target), "is the input folder")
    assert snapshot(d) == before


def test_ship_never_replaces_the_default_model_without_the_flag(small_run, tmp_path):
    packaged = (DEFAULT_MODEL, DEFAULT_MODEL.with_suffix(".json"))
    backup = tmp_path / "backup"
    backup.mkdir()
    for p in packaged:
        shutil.copy2(p, backup / p.name)
    before, run_before = snapshot(*packaged), snapshot(small_run)
    try:
        fails(run("deblur.ship", "--run-dir", small_run), 2, "--replace-default")
        fails(run("deblur.ship", "--run-dir", small_run, "--out", DEFAULT_MODEL), 2, str(DEFAULT_MODEL),
              "--replace-default")
        assert snapshot(*packaged) == before and snapshot(small_run) == run_before
    finally:  # never leave a clobbered packaged model behind, whatever the code under test did
        if snapshot(*packaged) != before:
            for p in packaged:
                shutil.copy2(backup / p.name, p)


# --------------------------------------------------------------------------------------------
# 2. a data error inside the training pipeline
# --------------------------------------------------------------------------------------------

def test_training_on_a_truncated_shard_exits_1_with_its_message(shard_set, tmp_path):
    """The first training shard is fine (its header is read before training); the second is cut.
    The run must end (no hang: the issue's 3 of 5 runs never exited) with the shard's own message.
    `python -m bench.corrupt_shard_bench` repeats this 20 times."""
    data = Path(shutil.copytree(shard_set, tmp_path / "set"))
    bad = data / "shards" / "step00-train-0001.npz"
    bad.write_bytes(bad.read_bytes()[:5000])
    before = snapshot(data)
    r = run("deblur.train", "--data", data, "--run-dir", tmp_path / "run", "--steps", "0-1", "--epochs", "2",
            "--model-arch", "highway", "--no-step-weighting",
            "--batch-size", "8", "--model-dim", "8", "--model-subdim", "8", "--model-refinements", "3",
            "--model-shared-width", "3", timeout=120)
    line = fails(r, 1, str(bad), "unreadable shard")
    assert line.startswith("error: ")
    assert snapshot(data) == before


# --------------------------------------------------------------------------------------------
# 3. a resumed prepare and changed data
# --------------------------------------------------------------------------------------------

def test_prepare_refuses_to_resume_on_changed_input_files(data, tmp_path):
    out = tmp_path / "set"
    args = ("pipelines.prepare", "--data", data, "--out", out, "--steps", "5", "--workers", "1")
    assert run(*args).returncode == 0
    before = snapshot(out)
    add_pair(data, 9)
    inputs = snapshot(data)
    line = fails(run(*args), 1, "prepare_inputs.json", "input files changed", "--overwrite")
    assert "3 added" in line  # blurred, sharp and text file
    assert snapshot(out) == before and snapshot(data) == inputs
    r = run(*args, "--overwrite")  # the way out the message names
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads((out / "manifest.json").read_text())["registration"]) == 3


def test_a_resumed_manifest_covers_every_pair(data, tmp_path):
    out = tmp_path / "set"
    args = ("pipelines.prepare", "--data", data, "--out", out, "--steps", "0,5", "--workers", "1",
            "--images-per-shard", "1", "--val-fraction", "0.5")
    assert run(*args).returncode == 0
    full = json.loads((out / "manifest.json").read_text())
    (out / "shards" / full["shards"][0]["file"]).unlink()  # "killed" before the end
    (out / "manifest.json").unlink()
    r = run(*args)
    assert r.returncode == 0 and "1 pairs in" in r.stdout, r.stdout + r.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["registration"]) == 4 == len(full["registration"])
    assert sorted(g["blurred"] for g in m["registration"]) == sorted(g["blurred"] for g in full["registration"])
    assert [(s["file"], s["sha256"]) for s in m["shards"]] == [(s["file"], s["sha256"]) for s in full["shards"]]


# --------------------------------------------------------------------------------------------
# 4. one size limit for every format; 5. one bad file does not stop a list
# --------------------------------------------------------------------------------------------

def test_estimate_refuses_huge_and_tiny_images_and_goes_on(blurred, tmp_path):
    import tifffile
    from PIL import Image

    huge_tif, huge_png = tmp_path / "huge.tif", tmp_path / "huge.png"
    tifffile.imwrite(huge_tif, np.zeros((8001, 8001), np.uint8), compression="zlib")  # 70 KB, 64 Mpx
    Image.fromarray(np.zeros((8100, 8000), np.uint8)).save(huge_png)
    small, thin = tmp_path / "small.png", tmp_path / "thin.png"
    Image.fromarray(np.full((10, 10), 128, np.uint8)).save(small)
    Image.fromarray(np.full((1, 2360), 128, np.uint8)).save(thin)
    good = tmp_path / "good.tif"
    shutil.copy(blurred, good)
    files = [huge_tif, small, huge_png, thin, good]
    before = snapshot(tmp_path)
    r = run("deblur.estimate", *files)
    fails(r, 1, str(huge_tif), "8001 x 8001", "64 Mpx limit")
    line_with(r.stderr, str(huge_png), "8000 x 8100", "64 Mpx limit")
    line_with(r.stderr, str(small), "10 x 10", "too small")
    line_with(r.stderr, str(thin), "2360 x 1", "too small")
    assert line_with(r.stdout, str(good)).split()[1] == "5"  # the good file after them is estimated
    assert snapshot(tmp_path) == before


def test_score_with_a_model_that_covers_none_of_the_steps(tiny, small_run, tmp_path):
    out = tmp_path / "score"
    r = run("eval.score", "--data", tiny, "--methods", "model", "--model", small_run / "best.keras",
            "--steps", "5", "--out", out, "--workers", "1", "--quiet")
    fails(r, 1, "best.keras", "steps 0-3", "5")
    assert not out.exists()  # nothing written, not even a header-only leaderboard


# --------------------------------------------------------------------------------------------
# 6. a failed prepare does not block the corrected re-run; 7./8. options checked first
# --------------------------------------------------------------------------------------------

def test_failed_prepare_leaves_nothing_that_blocks_the_rerun(tiny, tmp_path):
    out = tmp_path / "set"
    fails(run("pipelines.prepare", "--data", tiny, "--out", out, "--steps", "7"), 1, str(tiny), "no text samples")
    assert not out.exists()
    r = run("pipelines.prepare", "--data", tiny, "--out", out, "--steps", "5", "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("option, value, flag", [
    ("--images-per-shard", "0", "--images-per-shard"), ("--images-per-shard", "-1", "--images-per-shard"),
    ("--downscale", "0", "--downscale"), ("--in-size", "10", "--in-size"), ("--out-size", "200", "--out-size"),
    ("--val-fraction", "2", "--val-fraction"), ("--val-fraction", "-1", "--val-fraction")])
def test_prepare_checks_its_options_before_writing(tiny, tmp_path, option, value, flag):
    out = tmp_path / "set"
    before = snapshot(tiny)
    fails(run("pipelines.prepare", "--data", tiny, "--out", out, "--steps", "5", option, value), 2, flag, value)
    assert not out.exists() and snapshot(tiny) == before


@pytest.mark.parametrize("command", ["prepare", "score", "train", "deblur"])
def test_an_output_that_is_a_file(tiny, shard_set, blurred, tmp_path, command):
    f = tmp_path / "file"
    f.write_text("mine")
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(blurred, d / "a.tif")
    args, code, flag = {
        "prepare": (("pipelines.prepare", "--data", tiny, "--out", f, "--steps", "5"), 1, "--out"),
        "score": (("eval.score", "--data", tiny, "--methods", "identity", "--steps", "5", "--out", f), 1, "--out"),
        "train": (("deblur.train", "--data", shard_set, "--run-dir", f, "--steps", "0"), 2, "--run-dir"),
        # the output folder is checked before the model is loaded: a missing model is not reached
        "deblur": (("deblur", d, f, "5", "--model", tmp_path / "missing.keras"), 2, "output folder"),
    }[command]
    fails(run(*args), code, str(f), flag)
    assert f.read_text() == "mine"


# --------------------------------------------------------------------------------------------
# 9. leftovers, --skip-bad, and the images deblur cannot use (one model load for all of them)
# --------------------------------------------------------------------------------------------

def test_deblur_reports_bad_images_and_skips_hidden_files(blurred, tmp_path):
    from PIL import Image

    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    shutil.copy(blurred, d / "a.tif")
    Image.fromarray(np.full((10, 10), 128, np.uint8)).save(d / "small.png")
    Image.fromarray(np.full((350, 560), 255, np.uint8)).save(d / "white.png")
    Image.fromarray(np.zeros((350, 560), np.uint8)).save(d / "black.png")
    (d / "loop.png").symlink_to("loop.png")
    (d / ".a.png.k2j4h5g6.png").write_bytes(b"")   # what a killed write leaves behind
    stale = out / ".a.png.abcd1234.png"
    stale.write_bytes(b"")
    before = snapshot(d)
    r = run("deblur", d, out, "5")
    fails(r, 1, str(d / "small.png"), "10 x 10 px", "too small")
    line_with(r.stderr, str(d / "loop.png"), "link loop")
    line_with(r.stderr, "warning", str(d / "white.png"), "blank frame")
    line_with(r.stderr, "warning", str(d / "black.png"), "blank frame")
    line_with(r.stdout, "deblurring 5 images")  # a.tif, small, white, black, loop: not the hidden file
    assert ".k2j4h5g6" not in r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "black.png", "white.png"]  # stale temp removed
    assert all(png_ok(p) for p in out.iterdir())
    assert snapshot(d) == before


def test_skip_bad_covers_a_missing_sharp_partner(data, tmp_path):
    partner = data / TIMES / "CAM01" / (STEM.format(1) + ".tif")
    partner.unlink()
    bad = data / TIMES / "CAM02" / (STEM.format(1) + ".tif")
    before = snapshot(data)
    fails(run("pipelines.prepare", "--data", data, "--out", tmp_path / "a", "--steps", "5"), 1,
          str(bad), "no sharp partner")
    r = run("pipelines.prepare", "--data", data, "--out", tmp_path / "b", "--steps", "5", "--skip-bad",
            "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    no_traceback(r)
    line_with(r.stderr, "skipped", str(bad), "no sharp partner")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [s["file"] for s in m["skipped"]] == [str(bad)] and len(m["registration"]) == 1
    assert snapshot(data) == before


# --------------------------------------------------------------------------------------------
# 7. Ctrl-C: one summary line, nothing half-written
# --------------------------------------------------------------------------------------------

def _no_hidden(folder: Path):
    hidden = [p for p in folder.rglob(".*")]
    assert not hidden, hidden


def test_ctrl_c_in_prepare_leaves_complete_shards_and_resumes(tiny, tmp_path):
    data = symlinked_pairs(tiny, tmp_path / "many", 120)
    out = tmp_path / "set"
    args = ("pipelines.prepare", "--data", data, "--out", out, "--steps", "5", "--images-per-shard", "1",
            "--workers", "2", "--registration", "table")
    r = interrupt_when(args, lambda p: any((out / "shards").glob("step*.npz")))
    line = fails(r, 130, "interrupted", str(out / "shards"), "complete shards")
    n = int(line.split("interrupted: ")[1].split()[0])
    shards = sorted((out / "shards").glob("step*.npz"))
    assert 1 <= n == len(shards) < 120 and not (out / "manifest.json").exists()
    assert all(len(read_shard(p)["x"]) for p in shards) and all(p.with_suffix(".json").is_file() for p in shards)
    _no_hidden(out)
    r = run(*args)
    assert r.returncode == 0 and f"{120 - n} pairs in" in r.stdout, r.stdout + r.stderr[-2000:]
    assert len(json.loads((out / "manifest.json").read_text())["registration"]) == 120


def test_ctrl_c_in_score_writes_no_leaderboard(tiny, tmp_path):
    data = symlinked_pairs(tiny, tmp_path / "many", 60)
    out = tmp_path / "score"
    r = interrupt_when(("eval.score", "--data", data, "--methods", "identity", "--steps", "5", "--out", out,
                        "--workers", "2"), lambda p: any(out.glob("images/*/*/*.png")))
    fails(r, 130, "interrupted", str(out / "images"), "no leaderboard")
    assert not (out / "leaderboard.csv").exists() and not (out / "per_image.csv").exists()
    assert all(png_ok(p) for p in out.glob("images/*/*/*.png"))
    _no_hidden(out)


def test_ctrl_c_in_deblur_says_what_was_written(tmp_path):
    import tifffile

    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(d / "img_00.tif", (20000 + rng.random((1460, 2360)) * 40000).astype(np.uint16))
    for i in range(1, 12):  # full-size images, so that the loop takes long enough to interrupt
        (d / f"img_{i:02d}.tif").symlink_to(d / "img_00.tif")
    before = snapshot(d)
    r = interrupt_when(("deblur", d, out, "5"), lambda p: "deblurring" in p.stdout.readline())
    line = fails(r, 130, "interrupted: wrote", "of 12 PNGs", str(out))
    written = int(line.split("wrote ")[1].split()[0])
    assert written < 12 and len(list(out.glob("*.png"))) == written
    assert all(png_ok(p) for p in out.glob("*.png"))
    _no_hidden(out)
    assert snapshot(d) == before
