"""The package's layers: no module imports another that imports it back, and the schema stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "harness"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def harness_imports(path: Path, modules: set[str]) -> set[str]:
    """The harness modules that `path` imports anywhere in it (at the top or inside a function):
    `from harness.x import y` counts as harness.x.y when y is a module, else as harness.x."""
    name = module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: use absolute imports"
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(node.module)
    return (found & modules) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_harness_module_imports_one_that_imports_it_back():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): harness_imports(p, modules) for p in paths}
    assert "harness.encode.kernels" in graph["harness.search.exact"]  # the graph sees real edges
    assert "harness.encode.kernels" in graph["harness.encode.engines"]
    assert cycles(graph) == []


def test_suite_schema_and_precision_rule_import_without_torch():
    """The suite (and through it the precision rule) loads without torch, so `harness --help`, suite
    validation and reports stay fast."""
    code = ("import sys, harness.input.suite, harness.vocabulary.precision, harness.vocabulary.timing; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_faiss_backend_loads_torch_before_faiss():
    """Each brings its own OpenMP runtime; with faiss's loaded first torch's matmul ran 1.45x slower in the same
    process (benchmarks/RESULTS.md, 2026-12-03), so the module that imports faiss imports torch first."""
    code = ("import sys, harness.search.faiss_index; names = list(sys.modules); "
            "print(names.index('torch') < names.index('faiss'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
