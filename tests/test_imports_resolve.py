"""Every relative import in the package names a module that exists, including the imports
made inside functions (which only fail when that code path runs): a moved module leaves
none behind."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vqa"


def _relative_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = ".".join(parts[:-1])  # a module's package; for __init__.py, the package itself
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                yield path, node.lineno, importlib.util.resolve_name("." * node.level + (node.module or ""), package)


def test_every_relative_import_resolves():
    missing = []
    for path, line, name in _relative_imports():
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert not missing, missing


def test_the_check_sees_function_level_imports():
    names = {name for path, _, name in _relative_imports() if path.name == "clevr.py" and path.parent.name == "eval"}
    assert "vqa.pipeline" in names  # imported inside a function of vqa/eval/clevr.py
