"""The package's shape (docs/design.md): subpackages by stage, no import circles (lazy imports and
``TYPE_CHECKING`` blocks included, between modules and between subpackages), no private name imported
from another module (tests and benchmarks too), modules that read in one sitting."""

from __future__ import annotations

import ast
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "protkit"
MAX_MODULE_LINES = 450
STAGES = ("data", "teacher", "distill", "evaluate", "embed", "search")  # workflow/rules/<stage>.smk


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """protkit modules ``path`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "protkit":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "protkit")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def module_graph() -> dict[str, set[str]]:
    return {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def subpackage(name: str) -> str:
    """``protkit.teacher.build`` -> ``protkit.teacher``; top-level modules stand for themselves."""
    return ".".join(name.split(".")[:2])


def test_subpackages_mirror_the_pipeline_stages() -> None:
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(packages) >= 6, packages
    rules = {p.stem for p in (REPO / "workflow" / "rules").glob("*.smk")}
    for stage in STAGES:
        assert stage in packages and stage in rules, f"stage {stage}: protkit/{stage}/ and workflow/rules/{stage}.smk"
    for package in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(package.read_text())), f"{package} needs a docstring naming its job"


def test_no_import_circle_between_modules() -> None:
    graph = module_graph()
    assert all(target in MODULES for targets in graph.values() for target in targets), "an import names no module"
    assert cycles(graph) == []


def test_no_import_circle_between_subpackages() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for name, targets in module_graph().items():
        packages[subpackage(name)] |= {subpackage(t) for t in targets} - {subpackage(name), "protkit"}
    assert cycles(packages) == []


def test_cycle_finder_finds_a_circle() -> None:  # the two tests above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("folder", ["protkit", "tests", "benchmarks", "workflow"])
def test_no_private_name_crosses_a_module_boundary(folder: str) -> None:
    private = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("protkit", "benchmarks"):
                private += [f"{path.relative_to(REPO)}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and a.name != "__version__"]
    assert private == []


def test_modules_read_in_one_sitting() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def code_tokens(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of the NUMBER and STRING tokens of a module's code (docstrings left out)."""
    docstrings = {node.body[0].value.lineno for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node)}
    with open(path, "rb") as handle:
        return [(t.start[0], t.string) for t in tokenize.tokenize(handle.readline)
                if t.type in (tokenize.NUMBER, tokenize.STRING) and t.start[0] not in docstrings]


@pytest.mark.parametrize(("value", "home"), [
    ("960", "protkit/models/names.py"),  # teacher widths
    ("1152", "protkit/models/names.py"),
    ('"model.safetensors"', "protkit/models/names.py"),  # model file names
    ('"model.pt"', "protkit/models/names.py"),
    ('"quantization.json"', "protkit/models/names.py"),
    ('"manifest.json"', "protkit/teacher/layout.py"),  # the teacher cache's files
])
def test_one_home_for_format_constants(value: str, home: str) -> None:
    places = sorted({str(path.relative_to(REPO)) for path in MODULES.values()
                     for _, text in code_tokens(path) if text == value})
    assert places == [home]


def test_one_list_of_pooling_names() -> None:
    """Pooling names are listed once (protkit.sequences.pooling); elsewhere they are looked up."""
    names = {"cls", "mean", "max"}
    places = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(values & names) >= 2:
                    places.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert places and all(p.startswith("protkit/sequences/pooling.py") for p in places), places


def test_model_classes_keep_their_public_import_paths() -> None:
    """Users' notebooks import the models from these paths."""
    from protkit.models.esmc import ESMC, ESMCConfig
    from protkit.models.prothash import PRESETS, ProtHash, ProtHashConfig

    assert ProtHash.__module__ == "protkit.models.prothash.model" and ESMC.__module__ == "protkit.models.esmc.model"
    assert isinstance(PRESETS["ProtHash-V2-384-Tiny"], ProtHashConfig) and ESMCConfig().n_layers == 30
