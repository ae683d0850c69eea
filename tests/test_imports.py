"""Import structure: no import cycles among the project's modules, and the data-prep / OCR side
never loads TensorFlow.

The graph counts every import of a project module, at module level and inside functions: a lazy
import hides a cycle from Python's loader, not from the reader (two modules that need each other
are one module split in two), so both kinds are edges."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deblur", "pipelines", "eval", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(node, module: str, is_package: bool, modules) -> set[str]:
    """Project modules an import statement refers to (`from pkg import mod` counts as pkg.mod)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in modules:  # `import pipelines.x.y` -> the deepest project module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _project_modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, name, path.name == "__init__.py", modules)
        graph[name] = edges
    return graph


def find_cycles(graph) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "pipelines.common.errors" in graph["pipelines.reading.hdc"]  # module level, absolute
    assert "pipelines.common.atomic" in graph["pipelines.simulation.simulate"]  # relative, `..`
    assert "deblur.layers" in graph["deblur.model"]                     # module level, relative
    assert "deblur.model" in graph["deblur.train"]                      # inside a function


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles among the project's modules: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def _python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_data_prep_and_ocr_do_not_import_tensorflow():
    # every pipelines module (the commands pipelines.prepare and pipelines.simulate, simulation,
    # preprocessing, ...); eval.score imports deblur (deblur.infer.DEFAULT_MODEL): the package
    # itself must stay light
    data_side = sorted(m for m in _project_modules() if m.split(".")[0] == "pipelines")
    assert {"pipelines.prepare", "pipelines.simulate", "pipelines.preprocessing.preprocess"} <= set(data_side)
    code = (f"import sys, deblur, deblur.infer, deblur.estimate, {', '.join(data_side)}, "
            "eval.ocr, eval.score, eval.baselines; "
            "bad = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = _python(code)
    assert r.returncode == 0, f"loaded {r.stdout.strip()} {r.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("imports, loader", [
    ("import deblur, keras", "keras.models.load_model"),          # deblur first: the import hook
    ("import keras, deblur", "keras.models.load_model"),          # keras first: registered at once
    ("import deblur, tensorflow as tf", "tf.keras.models.load_model"),  # TF looks keras up first
])
def test_plain_keras_loader_after_import_deblur(imports, loader):
    r = _python(f"{imports}; m = {loader}('deblur/models/default.keras'); "
                "print(type(m.get_layer('step_scale')).__module__)")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "deblur.layers"


LAYERS = {"pipelines": 0, "deblur": 1, "eval": 2, "bench": 3}  # data < model < evaluation < benchmarks

# Inside pipelines (docs/development.md): shared utilities < reading the data < preprocessing <
# simulation < preparing training sets < the command modules at the top.
PIPELINES_LAYERS = {"common": 0, "reading": 1, "preprocessing": 2, "simulation": 3, "preparation": 4}
PIPELINES_TOP = {"pipelines", "pipelines.commands", "pipelines.prepare", "pipelines.simulate"}


def package_layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def pipelines_layer(module: str) -> int:
    if module in PIPELINES_TOP:
        return len(PIPELINES_LAYERS)
    return PIPELINES_LAYERS[module.split(".")[1]]


def upward_imports(graph, layer=package_layer, within=None) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one (among the modules of
    package `within` only, if given)."""
    def inside(m):
        return within is None or m.split(".")[0] == within

    return sorted((a, b) for a, deps in graph.items() for b in deps
                  if inside(a) and inside(b) and layer(b) > layer(a))


def test_no_import_runs_from_a_lower_package_to_a_higher_one():
    assert upward_imports(import_graph()) == []


def test_upward_import_check_can_fail():
    assert upward_imports({"deblur.estimate": {"eval.baselines"}, "eval.score": {"deblur.infer"}}) == [
        ("deblur.estimate", "eval.baselines")]


def test_every_pipelines_module_has_a_layer():
    """A new module goes into one of the subpackages (or is a command module at the top)."""
    pipelines = [m for m in _project_modules() if m.split(".")[0] == "pipelines"]
    unplaced = [m for m in pipelines if m not in PIPELINES_TOP and m.split(".")[1] not in PIPELINES_LAYERS]
    assert not unplaced, f"modules outside the pipelines subpackages: {unplaced}"
    assert set(PIPELINES_LAYERS) == {m.split(".")[1] for m in pipelines if m not in PIPELINES_TOP}


def test_no_import_runs_from_a_lower_pipelines_subpackage_to_a_higher_one():
    assert upward_imports(import_graph(), pipelines_layer, within="pipelines") == []


def test_pipelines_upward_import_check_can_fail():
    graph = {"pipelines.reading.lsf": {"pipelines.simulation.simulate", "pipelines.common.errors"},
             "pipelines.simulation.synth": {"pipelines.preprocessing.preprocess"},
             "pipelines.preprocessing.deconv": {"pipelines.prepare"},
             "deblur.stream": {"pipelines.simulation.synth"}}
    assert upward_imports(graph, pipelines_layer, within="pipelines") == [
        ("pipelines.preprocessing.deconv", "pipelines.prepare"),
        ("pipelines.reading.lsf", "pipelines.simulation.simulate")]
