import json
import subprocess
import sys

from vqa.cli import main
from conftest import FIXTURES

SCENES = str(FIXTURES / "clevr/scenes/CLEVR_val_scenes.json")


def test_answer_from_sample_scene(capsys):
    assert main(["answer", "--scene", SCENES, "--image-id", "CLEVR_val_000001",
                 "--program", "count(same_color(unique(filter_shape[cube](filter_size[small](scene)))))", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "1"
    assert out["trace"][-2]["value"] == ["3"]


def test_user_errors_end_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for argv in (["answer", "--scene", str(bad), "--program", "count(scene)"],
                 ["answer", "--scene", SCENES, "--program", "count(filter_colour[red](scene))"],
                 ["answer", "--scene", str(tmp_path / "missing.json"), "--program", "count(scene)"]):
        r = subprocess.run([sys.executable, "-m", "vqa", *argv], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and "error:" in r.stderr


def test_failed_step_is_reported_as_no_answer(capsys):
    assert main(["answer", "--scene", SCENES, "--program", "query_color(unique(filter_color[red](scene)))"]) == 1
    assert "unique expects exactly one object, got 2" in capsys.readouterr().out
