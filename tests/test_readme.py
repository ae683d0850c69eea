"""The README's examples run as written, so the front page cannot go stale.

Every ```bash and ```python block of README.md runs here, in a scratch folder holding what the
README assumes (my_images/, HDC/, photo.jpg, a copy of README.md, and deblur/models/ for the
shipped model's path). A `<!-- test: ... -->` line right above a block makes it smaller, and is the
only place where the test departs from the README: `A => B` replaces text in the block's commands,
`MODULE += ARGS` appends arguments to every `python -m MODULE` of the block (argparse keeps the last
value). `bash run.sh X` runs what run.sh runs for X; `bash run.sh test` is this suite itself.
"""
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- test: (.*) -->$")
FENCE = re.compile(r"^```(\w*)$")


def readme_blocks(text: str) -> list[dict]:
    """[{"lang", "code", "rules", "line"}] of the fenced blocks; rules from the marker above."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not (m and m.group(1)):
            i += 1
            continue
        end = lines.index("```", i + 1)
        marker = MARKER.match(lines[i - 1]) if i else None
        blocks.append({"lang": m.group(1), "code": "\n".join(lines[i + 1:end]), "line": i + 1,
                       "rules": parse_rules(marker.group(1)) if marker else []})
        i = end + 1
    return blocks


def parse_rules(text: str) -> list[tuple[str, str, str]]:
    rules = []
    for item in (t.strip() for t in text.split(" | ")):
        if " => " in item:
            a, b = item.split(" => ", 1)
            rules.append(("replace", a, b))
        elif " += " in item:
            a, b = item.split(" += ", 1)
            rules.append(("append", a, b))
        else:
            raise ValueError(f"unknown README test instruction {item!r} (expected 'A => B' or 'MODULE += ARGS')")
    return rules


def run_sh_modules() -> dict[str, str]:
    """run.sh's sub-command -> the module it runs with .venv/bin/python -m."""
    text = (ROOT / "run.sh").read_text()
    return dict(re.findall(r"^\s*([\w-]+)\)[^\n]*?\.venv/bin/python -m ([\w.]+)", text, re.M))


def commands(block) -> list[list[str]]:
    """The argv of every command of a bash block, after the block's rules; `bash run.sh test` is
    left out (it is what runs this)."""
    code = block["code"].replace("\\\n", " ")
    for kind, a, b in block["rules"]:
        if kind == "replace":
            assert a in code, f"README line {block['line']}: the test rule {a!r} => {b!r} matches nothing"
            code = code.replace(a, b)
    run_sh = run_sh_modules()
    out = []
    for line in code.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        if argv[:2] == ["bash", "run.sh"]:
            if argv[2] == "test":
                continue
            argv = ["python", "-m", run_sh[argv[2]], *argv[3:]]
        assert argv[:2] == ["python", "-m"], f"README line {block['line']}: not a python -m command: {line}"
        for kind, module, extra in block["rules"]:
            if kind == "append" and argv[2] == module:
                argv += shlex.split(extra)
        out.append([sys.executable, *argv[1:]])
    for kind, module, _ in block["rules"]:
        if kind == "append":
            assert any(c[2] == module for c in out), f"README line {block['line']}: no {module} command"
    return out


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
SHELL = [b for b in BLOCKS if b["lang"] == "bash"]
PYTHON = [b for b in BLOCKS if b["lang"] == "python"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sim_train, sim_eval):
    """A folder with what the README's commands take as given."""
    from PIL import Image

    from pipelines.reading.images import load_image

    ws = tmp_path_factory.mktemp("readme")
    (ws / "deblur").symlink_to(ROOT / "deblur", target_is_directory=True)  # deblur/models/default.keras
    (ws / "HDC").symlink_to(sim_train, target_is_directory=True)          # real pairs: the training layout
    shutil.copy(README, ws / "README.md")
    step5 = Path(sim_eval) / "steps_5_to_9" / "CAM02_blurred" / "focusStep_5_timesR_size_30_sample_0001.tif"
    (ws / "my_images").mkdir()
    shutil.copy(step5, ws / "my_images" / step5.name)
    gray = np.rint(load_image(step5) * 255).astype(np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB").save(ws / "photo.jpg", quality=95)
    return ws


def _run(argv, cwd, timeout=600):
    r = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{shlex.join(argv[1:])} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _block(word):
    found = [b for b in SHELL if word in b["code"]]
    assert len(found) == 1, f"expected one README bash block with {word!r}"
    return found[0]


# ---- the front page as a page ----------------------------------------------------------------

def test_the_front_page_is_short_and_has_the_five_things_early():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 12_000
    first = "\n".join(text.splitlines()[:150])
    for what in ("bash run.sh demo", "bash run.sh test",         # install and run
                 "out/demo/leaderboard.csv",                      # where the results land
                 "python -m deblur my_images/ out/my_images/ 5",  # own images, fixed step
                 "python -m deblur my_images/ out/my_images/ auto"):
        assert what in first, what
    assert "../shared" not in text


def test_links_point_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", text):
        assert (ROOT / target).exists(), target
    for doc in (ROOT / "docs").glob("*.md"):
        body = doc.read_text(encoding="utf-8")
        assert "../shared" not in body, doc
        for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", body):
            if target not in ("bad-input.md", "sanity.md"):  # written on other branches
                assert (doc.parent / target).exists(), f"{doc.name}: {target}"
    assert "10.5281/zenodo.4916176" in text and "10.3934/ipi.2022073" in text
    cff = (ROOT / "CITATION.cff").read_text()
    assert "10.5281/zenodo.4916176" in cff and "10.3934/ipi.2022073" in cff
    assert "MIT" in (ROOT / "LICENSE").read_text() and 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


def test_every_block_is_run_here_and_the_ci_runs_the_readme_test_command():
    assert len(SHELL) == 5 and len(PYTHON) == 1, [b["line"] for b in BLOCKS]
    assert run_sh_modules()["test"] == "pytest" and run_sh_modules()["demo"] == "eval.demo"
    assert "bash run.sh test -q" in (ROOT / ".ci" / "run").read_text()
    assert "bash run.sh test" in _block("bash run.sh demo")["code"]


def test_the_leaderboard_table_is_what_eval_table_makes_of_its_figures(tmp_path):
    """The table between the markers has the generator's exact format: written back to a
    leaderboard.csv, `python -m eval.table` reproduces it line for line."""
    from eval.table import BEGIN, END, main

    text = README.read_text(encoding="utf-8")
    block = text.split(BEGIN)[1].split(END)[0].strip()
    lines = block.splitlines()
    steps = [int(c) for c in lines[0].strip("|").split("|")[1:-1]]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        method, sanity = cells[0].removesuffix(": sanity"), cells[0].endswith(": sanity")
        for s, v in zip(steps, cells[1:-1]):
            row = rows.setdefault((method, s), {"method": method, "step": s, "score": ""})
            if sanity and v != "-":
                med, low = v.removesuffix(" x").split("/")
                row.update(sanity_median=med, sanity_min=low, sanity_passed=str(not v.endswith(" x")))
            elif not sanity:
                row["score"] = "" if v == "-" else v
    rows = list(rows.values())
    with open(tmp_path / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "step", "score", "sanity_median", "sanity_min", "sanity_passed"])
        w.writeheader()
        w.writerows(rows)
    readme = tmp_path / "README.md"
    readme.write_text(text.replace(block, "(old table)"))
    assert main([str(tmp_path / "leaderboard.csv"), "--readme", str(readme)]) == 0
    assert readme.read_text() == text


# ---- the commands --------------------------------------------------------------------------------

def test_set_up_and_run(workspace):
    for argv in commands(_block("bash run.sh demo")):
        _run(argv, workspace)
    table = README.read_text(encoding="utf-8").split("**Where the results land.**")[1].split("\n\n", 2)[1]
    listed = re.findall(r"`(out/demo/[^`<]+)`", table)
    assert len(listed) >= 5
    for path in listed:
        assert (workspace / path).exists(), path
    result = json.loads((workspace / "out/demo/leaderboard.json").read_text())
    assert "model" in result["methods"] and result["steps"] == [5]


def test_deblur_your_own_images(workspace):
    from PIL import Image

    for argv in commands(_block("out/my_images/ auto")):
        r = _run(argv, workspace)
        assert "cuInit" not in r.stderr
    with Image.open(workspace / "out/my_images/focusStep_5_timesR_size_30_sample_0001.png") as im:
        assert im.mode == "L" and im.size == (2360, 1460)


def test_how_good_is_it(workspace):
    for argv in commands(_block("eval.table")):
        _run(argv, workspace)
    text = (workspace / "README.md").read_text()
    assert re.search(r"^\| step \| 5 \| highest step passed \|$", text, re.M)
    assert re.search(r"^\| model \| \d+\.\d \| (n/a \(step 0 not scored\)) \|$", text, re.M)


def test_train_ship_and_use(workspace):
    """`python -m deblur.train --steps 0-19 --run-dir R` (here 1 epoch of 2 batches) builds the
    architecture and input channels of the shipped model: the defaults are its recipe."""
    from deblur.model import load_model, spec_of

    for argv in commands(_block("--run-dir runs/mine")):
        _run(argv, workspace)
    config = json.loads((workspace / "runs/mine/config.json").read_text())
    card = json.loads((ROOT / "deblur/models/default.json").read_text())
    assert config["model"] == card["model"] and config["data"]["preprocess"] == card["preprocess"]
    assert config["steps"] == list(range(20)) and config["args"]["step_weighting"] is True
    assert spec_of(load_model(workspace / "models/mine.keras")) == spec_of(load_model(ROOT / "deblur/models/default.keras"))
    assert json.loads((workspace / "models/mine.json").read_text())["preprocess"] == card["preprocess"]
    assert any((workspace / "out/mine").glob("*.png"))


def test_fine_tune_on_real_pairs(workspace):
    for argv in commands(_block("--data HDC")):
        _run(argv, workspace)
    config = json.loads((workspace / "runs/real/config.json").read_text())
    assert config["args"]["init"] == "deblur/models/default.keras"
    assert config["model"]["arch"] == "pyramid" and config["model"]["channels"] == 8
    card = json.loads((workspace / "models/real.json").read_text())
    assert card["preprocess"]["physics"] == "wiener-multi" and card["steps"] == [5]
    assert card["preprocess"]["physics_balances"] == [0.003, 0.1, 3.0]


def test_python_api(workspace):
    (workspace / "api.py").write_text(PYTHON[0]["code"])
    r = _run([sys.executable, "api.py"], workspace)
    step, radius, confidence, warning = r.stdout.split()[-4:]
    assert step == "5" and float(radius) > 0 and 0 <= float(confidence) <= 1 and warning == "None"
    from PIL import Image
    with Image.open(workspace / "photo_deblurred.png") as im:
        assert im.mode == "L" and im.size == (2360, 1460)
