"""`generate_dataset` and `vqa generate`: a CLEVR-layout tree that the project's loaders read."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from vqa import VQAError
from vqa.cli import main
from vqa.datasets.check import check_clevr
from vqa.datasets.clevr import CLEVRDataset
from vqa.datasets.synth.generate import generate_dataset
from vqa.executor import execute

SIZE = (96, 64)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tree_round_trips_through_the_clevr_loader(tmp_path):
    out = tmp_path / "synth"
    summary = generate_dataset(out, num_scenes=3, questions_per_scene=8, seed=1, split="val", image_size=SIZE)
    assert summary["num_scenes"] == 3 and summary["num_questions"] == 24
    ds = CLEVRDataset(out, "val")
    pairs = list(ds.iter_with_scenes())
    assert len(pairs) == 24 and len(ds.scenes()) == 3
    for q, sg in pairs:
        assert execute(q.program, sg).answer == q.answer, q.text
        assert q.family is not None and q.meta["template_filename"].endswith(".json")
        with Image.open(ds.image_path(q.image_id)) as im:
            assert im.size == SIZE
    assert [int(q.qid) for q, _ in pairs] == list(range(24))
    report = check_clevr(ds.questions_path, ds.scenes_path, ds.images_dir)
    assert report.ok, report.format()
    info = json.loads(ds.questions_path.read_text())["info"]
    assert info["split"] == "val" and info["seed"] == 1


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate_dataset(tmp_path / name, num_scenes=2, questions_per_scene=5, seed=7, image_size=SIZE)
    generate_dataset(tmp_path / "c", num_scenes=2, questions_per_scene=5, seed=8, image_size=SIZE)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b and len(a) == 4
    assert a.keys() == c.keys() and a != c


def test_scene_streams_do_not_depend_on_the_run_length(tmp_path):
    """Scene i (and its questions) are the same in a 2-scene and a 3-scene run."""
    for name, n in (("short", 2), ("long", 3)):
        generate_dataset(tmp_path / name, num_scenes=n, questions_per_scene=6, seed=3, images=False)
    short = json.loads((tmp_path / "short/scenes/CLEVR_train_scenes.json").read_text())
    long = json.loads((tmp_path / "long/scenes/CLEVR_train_scenes.json").read_text())
    assert long["scenes"][:2] == short["scenes"]
    qs = json.loads((tmp_path / "short/questions/CLEVR_train_questions.json").read_text())["questions"]
    ql = json.loads((tmp_path / "long/questions/CLEVR_train_questions.json").read_text())["questions"]
    assert ql[:len(qs)] == qs
    # another split with the same seed gets other scenes
    generate_dataset(tmp_path / "short", num_scenes=2, questions_per_scene=6, seed=3, split="val", images=False)
    val = json.loads((tmp_path / "short/scenes/CLEVR_val_scenes.json").read_text())
    assert [s["objects"] for s in val["scenes"]] != [s["objects"] for s in short["scenes"]]


def test_no_images_writes_scenes_and_questions_only(tmp_path):
    summary = generate_dataset(tmp_path, num_scenes=4, questions_per_scene=10, seed=0, images=False)
    assert not (tmp_path / "images").exists() and summary["images_dir"] is None
    report = check_clevr(tmp_path / "questions/CLEVR_train_questions.json", tmp_path / "scenes/CLEVR_train_scenes.json")
    assert report.ok and report.counts["questions"] == 40, report.format()


@pytest.mark.parametrize("kw, fragment", [
    (dict(num_scenes=0), "number of scenes"),
    (dict(questions_per_scene=-1), "questions per scene"),
    (dict(split="my split"), "split"),
    (dict(image_size=(8, 8)), "image size"),
])
def test_bad_arguments_are_named(tmp_path, kw, fragment):
    args = dict(num_scenes=1, questions_per_scene=1, seed=0) | kw
    with pytest.raises(VQAError, match=fragment):
        generate_dataset(tmp_path, **args)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--out", str(out), "--num-scenes", "3", "--questions-per-scene", "4", "--seed", "2",
                 "--split", "val", "--image-size", "96x64", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_questions"] == 12
    assert sorted(p.name for p in (out / "images/val").iterdir()) == [f"CLEVR_val_{i:06d}.png" for i in range(3)]
    assert main(["data", "check", "--dataset", "clevr", "--questions", summary["questions_file"],
                 "--scenes", summary["scenes_file"], "--images", str(out / "images/val"), "--no-progress"]) == 0
    assert "no problems found" in capsys.readouterr().out


@pytest.mark.parametrize("bad, fragment", [
    (["--image-size", "320"], "WIDTHxHEIGHT"),
    (["--image-size", "10x10"], "at least 32x32"),
    (["--num-scenes", "0"], ">= 1"),
    (["--seed", "x"], "expected an integer"),
])
def test_cli_bad_arguments(tmp_path, bad, fragment):
    argv = ["generate", "--out", str(tmp_path / "o"), "--num-scenes", "1", "--questions-per-scene", "1",
            "--seed", "0", "--no-images"]
    for i in range(0, len(bad), 2):
        j = argv.index(bad[i]) if bad[i] in argv else None
        if j is None:
            argv += bad[i:i + 2]
        else:
            argv[j + 1] = bad[i + 1]
    r = subprocess.run([sys.executable, "-m", "vqa", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
