"""The library's layering (S4): models import neither ``classical`` nor ``train``; files stay small.

Checked on the source (the import statements), so a lazy import inside a function counts too.
"""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "course_lib"
MAX_LINES = 400


def _imported_modules(path: Path) -> set[str]:
    """Every ``course_lib`` module a file imports, as an absolute dotted name."""
    package = ".".join(path.relative_to(LIB.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(LIB.parent).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("course_lib")}


@pytest.mark.parametrize("path", sorted((LIB / "networks").glob("*.py")), ids=lambda p: p.name)
def test_networks_import_neither_classical_nor_train(path):
    bad = {m for m in _imported_modules(path)
           if m.startswith(("course_lib.classical", "course_lib.train"))}
    assert not bad, f"{path.name} imports {sorted(bad)}: learned and iterative paths meet only in the lessons"


def test_the_import_checker_sees_relative_imports():
    mods = _imported_modules(LIB / "train" / "sae.py")
    assert "course_lib.networks.autoencoder" in mods and "course_lib.train.loop" in mods


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_every_library_file_is_at_most_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(LIB)} has {n} lines (at most {MAX_LINES}: split it by concept)"
