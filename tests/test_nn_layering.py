"""Layering: the shared `vqa.nn` layer imports only torch (and the standard library, numpy),
never another part of the project (issue 22, item 4). Checked twice: statically, every
import statement of every module (including those inside functions), and at run time,
what importing each module pulls into `sys.modules`."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vqa.nn

NN = Path(vqa.nn.__file__).parent
MODULES = sorted(p.stem for p in NN.glob("*.py") if p.stem != "__init__")


def project_imports(path: Path) -> list[str]:
    """Modules of the project outside vqa.nn that `path` imports anywhere (dotted names)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level == 1:  # from . / from .x: inside vqa.nn
                names = [f"vqa.nn.{node.module}" if node.module else "vqa.nn"]
            else:  # from .. (vqa) or higher
                names = [("vqa." + node.module) if node.module else "vqa"]
        else:
            continue
        out += [n for n in names if (n == "vqa" or n.startswith("vqa.")) and not (n == "vqa.nn" or n.startswith("vqa.nn."))]
    return out


def test_nn_modules_import_nothing_of_the_project_statically():
    assert MODULES, "no modules found in vqa/nn"
    bad = {m: project_imports(NN / f"{m}.py") for m in MODULES + ["__init__"]}
    assert {m: v for m, v in bad.items() if v} == {}


def test_the_static_check_catches_a_lazy_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch\nfrom .attention import Attention\n\ndef g():\n    from ..language.parser import x\n"
                 "    import vqa.scene\n    from vqa.nn import vit\n")
    assert project_imports(f) == ["vqa.language.parser", "vqa.scene"]


def test_nn_modules_load_nothing_of_the_project_at_run_time():
    code = ("import sys, importlib\n"
            f"for m in {MODULES!r}:\n"
            "    importlib.import_module('vqa.nn.' + m)\n"
            "import vqa\n"
            "base = {'vqa', 'vqa.errors', 'vqa.program', 'vqa.question', 'vqa.scene', 'vqa.ontology'}\n"
            "print(sorted(k for k in sys.modules if k.startswith('vqa.') and not k.startswith('vqa.nn') and k not in base))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
