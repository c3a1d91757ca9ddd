import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def clevr_root(tmp_path) -> Path:
    """A writable copy of the hand-written CLEVR fixture (official layout)."""
    root = tmp_path / "CLEVR_v1.0"
    shutil.copytree(FIXTURES / "clevr", root)
    return root


@pytest.fixture
def gqa_dir(tmp_path) -> Path:
    d = tmp_path / "gqa"
    shutil.copytree(FIXTURES / "gqa", d)
    return d


def load_json(path):
    return json.loads(Path(path).read_text())


def dump_json(obj, path):
    Path(path).write_text(json.dumps(obj, indent=1))
