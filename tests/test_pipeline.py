"""The user-facing pipeline: Pipeline API, vqa answer (image, scene, many questions), explanations."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from vqa import Pipeline, Program
from vqa.cli import main
from vqa.datasets.clevr import iter_questions, load_scenes
from vqa.datasets.synth.generate import generate_dataset
from vqa.executor import execute
from vqa.explain import explain_image
from vqa.pipeline import Answer, load_scene
from conftest import FIXTURES

SCENES = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_scenes=2, questions_per_scene=6, seed=91, split="val", image_size=(240, 160))
    return root


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained()


def _image(root, n=0):
    return root / "images" / "val" / f"CLEVR_val_{n:06d}.png"


def test_scene_and_program_answers_match_the_executor(pipe):
    scenes = load_scenes(SCENES)
    for expr in ("count(filter_color[red](scene))", "query_shape(unique(filter_size[small](scene)))",
                 "query_color(unique(filter_color[red](scene)))"):
        for scene in scenes.values():
            prog = Program.parse(expr)
            ref = execute(prog, scene)
            got = pipe.answer(scene, "", program=expr)
            assert (got.answer, got.error) == (ref.answer, ref.error)
            assert [t.value for t in got.trace] == [t.value for t in ref.trace]
            assert got.confidence == (1.0 if ref.ok else 0.0)


def test_image_question_gives_a_typed_result(pipe, synth):
    r = pipe.answer(_image(synth), "How many cubes are there?")
    assert isinstance(r, Answer) and r.reasoner == "asp"
    assert r.program.to_expr() == "count(filter_shape[cube](scene()))"
    assert r.ok and r.answer.isdigit() and 0 < r.confidence <= 1
    assert r.top[0][0] == r.answer and abs(sum(p for _, p in r.top) - 1) < 1e-6
    # the most probable reading of the predicted scene keeps exactly the objects scored above 0.5
    assert len(r.scene.objects) >= 1
    assert set(r.trace[0].value) == {o.id for o in r.scene.objects if o.score > 0.5}
    assert r.answer == str(sum(o.score > 0.5 and o.value("shape") == "cube" for o in r.scene.objects))
    d = r.to_dict()
    assert json.loads(json.dumps(d))["answer"] == r.answer and d["program"][0]["function"] == "scene"


def test_many_questions_equal_one_at_a_time_and_parse_the_image_once(synth, monkeypatch):
    pipe = Pipeline.from_pretrained()
    calls = []
    parser = pipe.scene_parser
    original = parser.parse_image
    monkeypatch.setattr(parser, "parse_image", lambda *a, **k: calls.append(1) or original(*a, **k))
    qs = [q.text for q in iter_questions(synth / "questions/CLEVR_val_questions.json") if q.image_id == "CLEVR_val_000000"]
    many = pipe.answer_many(_image(synth), qs)
    one = [pipe.answer(_image(synth), q) for q in qs]
    assert [(a.answer, a.error) for a in many] == [(a.answer, a.error) for a in one]
    assert len(calls) == 1


def test_nsm_reasoner_attention_trace(pipe, synth):
    r = pipe.answer(_image(synth), "What color is the large sphere?", reasoner="nsm")
    assert r.reasoner == "nsm" and r.answer and 0 < r.confidence <= 1
    # one entry per program step; each holds the soft set (membership in [0, 1]) of the
    # machine step that carries it out or whose state it reads; the last one the answer
    assert [t.token for t in r.trace] == [s.token for s in r.program.steps]
    for t in r.trace:
        assert set(t.attention) == set(r.scene.ids)
        assert all(-1e-6 <= p <= 1 + 1e-6 for p in t.attention.values())
    assert r.trace[-1].value == r.answer


def test_explanation_image(pipe, synth):
    r = pipe.answer(_image(synth), "How many things are left of the large sphere?")
    im = explain_image(_image(synth), r)
    assert im.width > 320 and im.height > 100
    scene_only = pipe.answer(load_scene(SCENES), "", program="count(filter_color[red](scene))")
    im2 = explain_image(None, scene_only)
    # the selected objects are drawn in the selection colour: present in the filter panel
    assert (30, 200, 60) in {c for _, c in im2.getcolors(maxcolors=1 << 20)}


def test_bad_inputs_are_clear_errors(pipe, tmp_path):
    from vqa.errors import VQAError

    with pytest.raises(VQAError, match="no such image"):
        pipe.answer(tmp_path / "missing.png", "How many?")
    with pytest.raises(VQAError, match="empty"):
        pipe.answer(load_scene(SCENES), "  ")
    with pytest.raises(VQAError, match="unknown reasoner"):
        Pipeline(reasoner="magic")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(VQAError):
        pipe.answer(junk, "How many cubes are there?")


def test_cli_answer_image_json_and_explain(synth, tmp_path, capsys):
    out = tmp_path / "why.png"
    assert main(["answer", "--image", str(_image(synth, 1)), "--question", "Is there a metal cube?", "--json",
                 "--explain", str(out)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["answer"] in ("yes", "no") and d["program_text"].startswith("exist(")
    assert Image.open(out).width > 0


def test_cli_many_questions(synth, tmp_path, capsys):
    records = [{"image": str(_image(synth, n)), "question": q} for n in (0, 1)
               for q in ("How many things are there?", "Is there a red thing?")]
    f = tmp_path / "qs.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in records))
    assert main(["answer", "--questions", str(f), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["question"] for x in lines] == [r["question"] for r in records]
    assert [x["image"] for x in lines] == [r["image"] for r in records]
    # a CLEVR questions file with --images
    assert main(["answer", "--questions", str(synth / "questions/CLEVR_val_questions.json"),
                 "--images", str(synth / "images/val")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == len(list(iter_questions(synth / "questions/CLEVR_val_questions.json")))


def test_cli_bad_question_file_names_the_record(tmp_path):
    f = tmp_path / "qs.json"
    f.write_text(json.dumps([{"image": "a.png", "question": "ok?"}, {"image": "b.png"}]))
    r = subprocess.run([sys.executable, "-m", "vqa", "answer", "--questions", str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and "record 1" in r.stderr and "Traceback" not in r.stderr


def test_bench_pipeline_reports_side_by_side(capsys):
    assert main(["bench", "pipeline", "--skip", "cold", "--warm-questions", "4", "--scenes", "4",
                 "--questions-per-scene", "3", "--workers-repeats", "2", "--json"]) == 0
    captured = capsys.readouterr()
    rep = json.loads(captured.out)
    # progress: one line per step on stderr (a bar would disturb the timings)
    assert "vqa bench pipeline: [1/2] warm" in captured.err and "vqa bench pipeline: [2/2] workers" in captured.err
    assert rep["warm"]["answer_qps"] > 0 and rep["warm"]["answer_many_qps"] > 0
    w = rep["workers"]
    runs = w["runs"]
    assert runs["1"]["questions"] == runs["2"]["questions"] > 0 and runs["1"]["accuracy"] == runs["2"]["accuracy"] == 1.0
    assert len(runs["1"]["all_seconds"]) == len(runs["2"]["all_seconds"]) == 2 == len(w["machine_all"])
    assert w["speedup"] == round(runs["1"]["seconds"] / runs["2"]["seconds"], 2) and w["machine_speedup"] > 0


def test_pil_images_are_cached_by_content(synth):
    pipe = Pipeline.from_pretrained()
    a, b = Image.open(_image(synth, 0)).convert("RGB"), Image.open(_image(synth, 1)).convert("RGB")
    sa = pipe.scene(a)
    assert pipe.scene(a.copy()) is sa  # same pixels: parsed once
    assert pipe.scene(b) is not sa and len(pipe._scenes) == 2


def test_model_sets_resolve_shipped_files_and_answer():
    """`models="clevr"` loads the CLEVR-distribution set (Blender-render scene parser, parsers
    trained on the official templates), each with its checked numpy export; a wrong set name or
    a folder together with a set is refused."""
    from vqa.errors import VQAError
    from vqa.pipeline import CHECKPOINT_DIR, MODEL_SETS, Pipeline

    for names in MODEL_SETS.values():
        for name in names.values():
            assert (CHECKPOINT_DIR / name).is_file(), name
    pipe = Pipeline.from_pretrained(models="clevr")
    assert pipe.checkpoint("scene").name == "scene_parser_clevr.npz"
    assert pipe.checkpoint("parser").name == "question_parser_official.npz"
    default = Pipeline.from_pretrained()
    assert default.checkpoint("scene").name == "scene_parser.npz"
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "data" / "samples" / "sample.png"
    r = pipe.answer(sample, "How many cyan things are there?")
    assert r.ok and r.program.to_expr() == "count(filter_color[cyan](scene()))"
    with pytest.raises(VQAError, match="unknown model set"):
        Pipeline.from_pretrained(models="gqa-huge")
    with pytest.raises(VQAError, match="not both"):
        Pipeline.from_pretrained(CHECKPOINT_DIR, models="clevr")


def test_scene_cli_models_clevr_uses_the_clevr_scene_parser(capsys, monkeypatch):
    from pathlib import Path

    import vqa.pipeline as pipeline_mod

    sample = Path(__file__).resolve().parents[1] / "data" / "samples" / "sample.png"
    seen = []
    real = pipeline_mod.Pipeline.checkpoint

    def spy(self, part):
        path = real(self, part)
        seen.append(path.name)
        return path

    monkeypatch.setattr(pipeline_mod.Pipeline, "checkpoint", spy)
    assert main(["scene", "--models", "clevr", "--image", str(sample), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"]
    assert seen and seen[-1] == "scene_parser_clevr.npz"
