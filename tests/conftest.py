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


def _clevr_official_dir() -> Path | None:
    """`../shared/clevr-official` beside the checkout (or $VQA_CLEVR_OFFICIAL), if present."""
    import os

    env = os.environ.get("VQA_CLEVR_OFFICIAL")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "clevr-official")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture
def clevr_official() -> Path:
    """The official CLEVR generator's reference material (templates, assets, questions, val
    renders) from `../shared/clevr-official`: data read in place, never copied into the
    project. Tests that use it skip where it is absent."""
    d = _clevr_official_dir()
    if d is None:
        pytest.skip("../shared/clevr-official is not present (set VQA_CLEVR_OFFICIAL)")
    return d
