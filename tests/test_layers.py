"""The package's layers hold: every import runs downward, and no module imports another's private names.

Layers, ground floor up (docs/architecture.md): each folder (or top-level module) of ``harness/`` sits on one floor
and imports only from its own floor or below. Imports are read from the source (top-level, inside functions and
under ``TYPE_CHECKING`` alike), so a lazy import that runs back up fails too."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "harness"
FLOORS = ["vocabulary", "input", "encode", "search", "scoring", "analysis", "reporting", "pipeline", "api", "cli"]


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    parts = module.split(".")
    if parts == ["harness"]:
        return FLOORS.index("api")  # harness/__init__.py re-exports the API
    return FLOORS.index(parts[1])


def harness_imports(path: Path, root: Path = REPO) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import of a harness module in ``path`` (a ``from harness.x import
    y`` of a submodule ``y`` counts as an import of ``harness.x.y``)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "harness":
                names = [alias.name for alias in node.names]
                submodules = [f"{target}.{n}" for n in names if is_module(root, f"{target}.{n}")]
                found += [(node.lineno, sub, []) for sub in submodules]
                plain = [n for n in names if f"{target}.{n}" not in submodules]
                if plain or not submodules:
                    found.append((node.lineno, target, plain))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "harness"]
    return found


def is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "shipped" not in p.parts)


def test_every_module_sits_on_a_floor():
    for path in sources():
        module = module_name(path)
        assert module == "harness" or module.split(".")[1] in FLOORS, (
            f"{path.relative_to(REPO)}: not in a layer folder; move it into one of {FLOORS} (docs/architecture.md)")


def test_imports_run_only_downward():
    upward = []
    for path in sources():
        mine = floor_of(module_name(path))
        for line, target, _ in harness_imports(path):
            if target != "harness" and floor_of(target) > mine:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target} "
                              f"({FLOORS[floor_of(target)]} is above {FLOORS[mine]})")
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sources():
        for line, target, names in harness_imports(path):
            if target != module_name(path):
                private += [f"{path.relative_to(REPO)}:{line} imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_reader_sees_lazy_and_relative_imports(tmp_path):
    """The test itself can fail: an import inside a function and a relative import are both found."""
    folder = tmp_path / "harness" / "input"
    folder.mkdir(parents=True)
    probe = folder / "probe.py"
    probe.write_text("def f():\n    from harness.api import _validated\n    from ..scoring import records\n")
    found = harness_imports(probe, tmp_path)
    assert (2, "harness.api", ["_validated"]) in found
    assert (3, "harness.scoring", ["records"]) in found
