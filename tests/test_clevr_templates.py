"""The official CLEVR template format (vqa.datasets.clevr_templates): small template files
written here in that format, and the official files where ../shared/clevr-official exists."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vqa.datasets.clevr_templates import TEMPLATE_FILES, TemplateQuestionGenerator, TemplateSet, family_file
from vqa.datasets.synth.scenes import sample_scene
from vqa.errors import DataError
from vqa.executor import execute
from vqa.program import Program
from vqa.scene import SceneGraph

ATTR = {"Size": ["small", "large"], "Color": ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"],
        "Material": ["rubber", "metal"], "Shape": ["cube", "sphere", "cylinder"]}


def _fn(name, inputs, output, side=None, **kw):
    f = {"name": name, "inputs": inputs, "output": output, "terminal": False, **kw}
    if side is not None:
        f["side_inputs"] = side
    return f


METADATA = {
    "dataset": "test",
    "types": {"Object": None, "ObjectSet": None, "Integer": None, "Bool": None, **ATTR,
              "Relation": ["left", "right", "behind", "front"]},
    "functions": [
        _fn("scene", [], "ObjectSet"),
        *[_fn(f"filter_{c.lower()}", ["ObjectSet"], "ObjectSet", [c]) for c in ATTR],
        _fn("unique", ["ObjectSet"], "Object"), _fn("relate", ["Object"], "ObjectSet", ["Relation"]),
        _fn("union", ["ObjectSet", "ObjectSet"], "ObjectSet"), _fn("count", ["ObjectSet"], "Integer"),
        _fn("exist", ["ObjectSet"], "Bool"),
        *[_fn(f"query_{c.lower()}", ["Object"], c) for c in ATTR],
        *[_fn(f"equal_{c.lower()}", [c, c], "Bool") for c in ATTR],
        _fn("equal_integer", ["Integer", "Integer"], "Bool"),
        *[_fn(f"same_{c.lower()}", ["Object"], "ObjectSet") for c in ATTR],
        _fn("filter", ["ObjectSet"], "ObjectSet", list(ATTR), template_only=True),
        _fn("filter_unique", ["ObjectSet"], "Object", list(ATTR), template_only=True),
        _fn("filter_count", ["ObjectSet"], "Integer", list(ATTR), template_only=True),
        _fn("relate_filter_exist", ["Object"], "Bool", ["Relation", *ATTR], template_only=True),
    ],
}
SYNONYMS = {"thing": ["thing", "object"], "sphere": ["sphere", "ball"], "large": ["large", "big"],
            "left": ["left of", "to the left of"], "front": ["in front of"]}
P1 = [{"type": "Size", "name": "<Z>"}, {"type": "Color", "name": "<C>"}, {"type": "Material", "name": "<M>"},
      {"type": "Shape", "name": "<S>"}]
P2 = [{"type": t["type"], "name": t["name"][:-1] + "2>"} for t in P1]
TEMPLATES = [
    {"text": ["How many <Z> <C> <M> <S>s are there?", "What number of <Z> <C> <M> <S>s are [there]?"],
     "nodes": [{"inputs": [], "type": "scene"},
               {"inputs": [0], "type": "filter_count", "side_inputs": ["<Z>", "<C>", "<M>", "<S>"]}],
     "params": P1, "constraints": []},
    {"text": ["What color is the <Z> <C> <M> <S>?", "The <Z> <C> <M> <S> [has] what color?"],
     "nodes": [{"inputs": [], "type": "scene"},
               {"inputs": [0], "type": "filter_unique", "side_inputs": ["<Z>", "<C>", "<M>", "<S>"]},
               {"inputs": [1], "type": "query_color"}],
     "params": P1, "constraints": [{"type": "NULL", "params": ["<C>"]}]},
    {"text": ["Do the <Z> <C> <M> <S> and the <Z2> <C2> <M2> <S2> have the same shape?"],
     "nodes": [{"inputs": [], "type": "scene"},
               {"inputs": [0], "type": "filter_unique", "side_inputs": ["<Z>", "<C>", "<M>", "<S>"]},
               {"inputs": [], "type": "scene"},
               {"inputs": [2], "type": "filter_unique", "side_inputs": ["<Z2>", "<C2>", "<M2>", "<S2>"]},
               {"inputs": [1], "type": "query_shape"}, {"inputs": [3], "type": "query_shape"},
               {"inputs": [4, 5], "type": "equal_shape"}],
     "params": P1 + P2,
     "constraints": [{"type": "NULL", "params": ["<S>"]}, {"type": "NULL", "params": ["<S2>"]},
                     {"type": "OUT_NEQ", "params": [1, 3]}]},
    {"text": ["Are there any <Z2> <C2> <M2> <S2>s <R> the <Z> <C> <M> <S>?"],
     "nodes": [{"inputs": [], "type": "scene"},
               {"inputs": [0], "type": "filter_unique", "side_inputs": ["<Z>", "<C>", "<M>", "<S>"]},
               {"inputs": [1], "type": "relate_filter_exist", "side_inputs": ["<R>", "<Z2>", "<C2>", "<M2>", "<S2>"]}],
     "params": P1 + [{"type": "Relation", "name": "<R>"}] + P2, "constraints": []},
    {"text": ["Are there as many <C> things as <C2> things?"],
     "nodes": [{"inputs": [], "type": "scene"}, {"inputs": [0], "type": "filter_color", "side_inputs": ["<C>"]},
               {"inputs": [1], "type": "count"}, {"inputs": [], "type": "scene"},
               {"inputs": [3], "type": "filter_color", "side_inputs": ["<C2>"]}, {"inputs": [4], "type": "count"},
               {"inputs": [2, 5], "type": "equal_integer"}],
     "params": [{"type": "Color", "name": "<C>"}, {"type": "Color", "name": "<C2>"}],
     "constraints": [{"type": "NOT_EQ", "params": ["<C>", "<C2>"]}]},
]


def write_templates(folder: Path, templates=None, metadata=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(metadata or METADATA))
    (folder / "synonyms.json").write_text(json.dumps(SYNONYMS))
    (folder / "mine.json").write_text(json.dumps(templates or TEMPLATES))
    return folder


def scenes(n, seed=0):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        out.append({"split": "t", "image_index": i, "image_filename": f"CLEVR_t_{i:06d}.png",
                    **sample_scene(rng, image_size=(320, 240))})
    return out


def generate(folder, n=40, k=5, **kw):
    gen = TemplateQuestionGenerator(TemplateSet.load(folder), np.random.default_rng(1), **kw)
    out = []
    for sc in scenes(n):
        for rec in gen.generate(sc, k):
            out.append((rec, sc))
    return gen, out


def test_small_templates_instantiate_with_their_meaning(tmp_path):
    folder = write_templates(tmp_path / "t")
    gen, recs = generate(folder, n=60, k=5, verify=False)
    by = Counter(r["question_family_index"] for r, _ in recs)
    assert set(by) == {0, 1, 2, 3, 4}
    words = Counter()
    for rec, sc in recs:
        text = rec["question"]
        assert "<" not in text and "[" not in text and "  " not in text and text[0].isupper()
        words.update(text.lower().rstrip("?").split())
        program = Program.from_clevr(rec["program"])
        assert program.problems() == []
        # answers: the reference executor on the expanded program, independently of the generator
        assert execute(program, SceneGraph.from_clevr(sc)).answer == rec["answer"]
        ops = [s.op for s in program]
        fam = rec["question_family_index"]
        if fam == 1:  # NULL <C>: the description of the queried object never names its colour
            assert ops[-2:] == ["unique", "query_color"] and "filter_color" not in ops
        if fam == 2:  # OUT_NEQ: two different objects; NULL shape
            trace = execute(program, SceneGraph.from_clevr(sc)).trace
            uniques = [t.value for t in trace if t.token == "unique"]
            assert len(uniques) == 2 and uniques[0] != uniques[1]
            assert "filter_shape" not in ops
        if fam == 3:  # relate_filter_exist = relate + filters + exist
            i = ops.index("relate")
            assert ops[-1] == "exist" and all(o.startswith("filter_") for o in ops[i + 1:-1])
        if fam == 4:  # NOT_EQ
            colours = [s.args[0] for s in program if s.op == "filter_color"]
            assert len(colours) == 2 and colours[0] != colours[1]
    # optional words and synonyms are drawn both ways
    assert words["there"] > 0 and words["has"] > 0
    assert words["things"] + words["thing"] > 0 and words["objects"] + words["object"] > 0


def test_answers_are_balanced_within_a_template(tmp_path):
    folder = write_templates(tmp_path / "t", templates=[TEMPLATES[3]])
    gen, recs = generate(folder, n=200, k=1, verify=False)
    answers = Counter(r["answer"] for r, _ in recs)
    assert set(answers) == {"yes", "no"}
    assert max(answers.values()) <= 1.5 * min(answers.values()) + 1


def test_minimal_style_rejects_words_that_change_nothing(tmp_path):
    folder = write_templates(tmp_path / "t")
    _, recs = generate(folder, n=40, k=5, style="minimal")
    _, loose = generate(folder, n=40, k=5)

    def redundant(rec, sc):
        trace = execute(Program.from_clevr(rec["program"]), SceneGraph.from_clevr(sc)).trace
        return any(t.token.startswith("filter_") and t.value == trace[t.inputs[0]].value for t in trace)

    assert not any(redundant(r, s) for r, s in recs)
    assert any(redundant(r, s) for r, s in loose)  # the official style keeps redundant words


def test_raw_form_records(tmp_path):
    folder = write_templates(tmp_path / "t")
    _, recs = generate(folder, n=10, k=5, form="raw")
    for rec, sc in recs:
        assert all("type" in s and "_output" in s and "function" not in s for s in rec["program"])
        assert isinstance(rec["answer"], (bool, int, str))
        program = Program.from_clevr(rec["program"])
        assert program.problems() == []
        assert program.to_clevr() == rec["program"]  # lossless
        result = execute(program, SceneGraph.from_clevr(sc))
        from vqa.ontology import normalise_answer
        assert result.answer == normalise_answer(rec["answer"])


@pytest.mark.parametrize("change, field", [
    (lambda t: t[0]["nodes"][1].update(type="filter_counts"), "nodes[1]"),
    (lambda t: t[0]["nodes"][1].update(inputs=[3]), "nodes[1].inputs"),
    (lambda t: t[0]["nodes"][1].update(side_inputs=["<Z>", "<C>"]), "nodes[1].side_inputs"),
    (lambda t: t[0]["constraints"].append({"type": "NULL", "params": ["<Q>"]}), "constraints[0].params"),
    (lambda t: t[0]["constraints"].append({"type": "MAYBE", "params": []}), "constraints[0]"),
    (lambda t: t[0]["text"].append("How many <Q>s?"), "text"),
])
def test_bad_templates_name_file_record_and_field(tmp_path, change, field):
    templates = json.loads(json.dumps(TEMPLATES))
    change(templates)
    folder = write_templates(tmp_path / "t", templates=templates)
    with pytest.raises(DataError) as e:
        TemplateSet.load(folder)
    p = e.value.problem
    assert p.file.endswith("mine.json") and p.record == "0" and p.field == field


def test_bad_metadata_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        TemplateSet.load(tmp_path / "nope")
    folder = write_templates(tmp_path / "t")
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match="metadata.json.*not valid JSON"):
        TemplateSet.load(folder)


def test_family_file_of_released_global_indices():
    assert family_file(0) == "compare_integer.json" and family_file(8) == "compare_integer.json"
    assert family_file(9) == "comparison.json" and family_file(89) == "zero_hop.json"
    assert family_file(90) is None and family_file(-1) is None
    assert sum(1 for i in range(90) if family_file(i)) == 90 and len(TEMPLATE_FILES) == 9


def test_cli_generate_with_templates(tmp_path):
    from vqa.cli import main

    folder = write_templates(tmp_path / "t")
    assert main(["generate", "--out", str(tmp_path / "out"), "--num-scenes", "5", "--questions-per-scene", "3",
                 "--seed", "4", "--no-images", "--templates", str(folder)]) == 0
    qs = json.loads((tmp_path / "out/questions/CLEVR_train_questions.json").read_text())["questions"]
    assert qs and all(q["template_filename"] == "mine.json" for q in qs)


# ---- the official files ------------------------------------------------------------------
def test_official_templates_all_instantiate_and_asp_agrees(clevr_official):
    from vqa.reason.asp import ASPReasoner

    ts = TemplateSet.load(clevr_official / "templates")
    assert len(ts.templates) == 90 and Counter(t.filename for t in ts.templates)["same_relate.json"] == 28
    gen = TemplateQuestionGenerator(ts, np.random.default_rng(5))  # verify=True: executor re-derives answers
    recs = []
    for sc in scenes(12, seed=3):
        recs += [(r, sc) for r in gen.generate(sc, 90)]
    assert {(r["template_filename"], r["question_family_index"]) for r, _ in recs} == {
        (t.filename, t.index) for t in ts.templates}
    asp = ASPReasoner(explain=False)
    by_scene = {}
    for r, sc in recs:
        by_scene.setdefault(sc["image_index"], (sc, []))[1].append(r)
    for sc, rs in by_scene.values():
        graph = SceneGraph.from_clevr(sc)
        answers = asp.answer_batch(graph, [Program.from_clevr(r["program"]) for r in rs])
        assert [a.answer for a in answers] == [r["answer"] for r in rs]


def test_official_raw_sample_and_release_files_check_clean(clevr_official):
    from vqa.datasets.check import check_clevr

    qdir = clevr_official / "questions"
    for name in ("raw_generator_sample_val_questions.json", "CLEVR_val_questions.json"):
        rep = check_clevr(qdir / name, qdir / "CLEVR_val_scenes.json")
        assert rep.ok, rep.format()
    raw = json.loads((qdir / "raw_generator_sample_val_questions.json").read_text())["questions"]
    released = {q["question_index"]: q for q in
                json.loads((qdir / "CLEVR_val_questions.json").read_text())["questions"]}
    # the raw programs read like their released conversions
    for q in raw[:50]:
        rel = released[q["question_index"]]
        assert Program.from_clevr(q["program"]) == Program.from_clevr(rel["program"])


def test_report_by_family_and_program_match_by_template():
    from vqa.eval.report import format_report, score_records

    recs = [{"qid": "0", "prediction": "yes", "answer": "yes", "template": "one_hop", "function": "exist",
             "family": 3, "program_match": True},
            {"qid": "1", "prediction": "2", "answer": "3", "template": "one_hop", "function": "count",
             "family": 0, "program_match": False},
            {"qid": "2", "prediction": "red", "answer": "red", "template": "zero_hop", "function": "query_attribute",
             "family": 3, "program_match": True}]
    rep = score_records(recs)
    assert list(rep["by_family"]) == ["zero_hop:3", "one_hop:0", "one_hop:3"]
    assert rep["by_family"]["one_hop:0"]["accuracy"] == 0.0 and rep["by_family"]["one_hop:3"]["accuracy"] == 1.0
    assert rep["program_match_by_template"]["one_hop"] == {"total": 2, "correct": 1, "accuracy": 0.5}
    text = format_report({**rep, "reasoner": "reference"})
    assert "one_hop:0" in text and "program match by template" in text


def test_evaluate_reads_raw_generator_output(clevr_official):
    from vqa.eval.clevr import evaluate_clevr

    qdir = clevr_official / "questions"
    rep = evaluate_clevr(qdir / "raw_generator_sample_val_questions.json", qdir / "CLEVR_val_scenes.json",
                         reasoner="reference")
    assert rep["total"] == 200 and rep["accuracy"] == 1.0
    assert set(rep["by_template"]) <= {f.removesuffix(".json") for f in TEMPLATE_FILES}
    assert all(":" in k for k in rep["by_family"])


def test_parser_evaluation_counts_unsure_parses_and_uses_the_fallback(tmp_path):
    """Unsure = low confidence or a program the gold scene refuses; the fallback's program
    is scored instead (a stub fallback here; the LLM one is tested with a fake server)."""
    from vqa.datasets.clevr import iter_questions, load_scenes
    from vqa.language.parser import QuestionParser, evaluate_parser

    folder = write_templates(tmp_path / "t")
    from vqa.datasets.synth.generate import generate_dataset

    generate_dataset(tmp_path / "d", num_scenes=6, questions_per_scene=5, seed=3, split="val", images=False,
                     templates=folder)
    qs = list(iter_questions(tmp_path / "d/questions/CLEVR_val_questions.json"))[:10]
    sc = load_scenes(tmp_path / "d/scenes/CLEVR_val_scenes.json")
    parser = QuestionParser.from_checkpoint()
    gold = {q.text: q.program for q in qs}

    class Oracle:
        calls = 0

        def parse(self, text):
            Oracle.calls += 1
            return type("R", (), {"program": gold[text]})()

    base = evaluate_parser(parser, qs, sc)
    assert "unsure" not in base
    every = evaluate_parser(parser, qs, sc, unsure_below=1.01, fallback=Oracle())  # every parse is unsure
    assert every["unsure"] == len(qs) == every["fallback_used"] == Oracle.calls
    assert every["unsure_exact"] == base["exact"] and every["exact_match"] == 1.0 and every["answer_accuracy"] == 1.0
    none = evaluate_parser(parser, qs, sc, unsure_below=0.0)
    refused = sum(1 for q in qs if not execute(parser.parse(q.text).program, sc[q.image_id]).ok)
    assert none["unsure"] == refused


def test_cli_parse_with_llm_fallback(tmp_path, capsys):
    from fake_openai import FakeOpenAI

    from vqa.cli import main
    from vqa.datasets.clevr import iter_questions
    from vqa.datasets.synth.generate import generate_dataset

    generate_dataset(tmp_path / "d", num_scenes=2, questions_per_scene=3, seed=3, split="val", images=False,
                     templates=write_templates(tmp_path / "t"))
    qfile, sfile = tmp_path / "d/questions/CLEVR_val_questions.json", tmp_path / "d/scenes/CLEVR_val_scenes.json"
    qs = list(iter_questions(qfile))[:3]
    with FakeOpenAI([f"P: {q.program.to_expr()}" for q in qs]) as s:
        assert main(["parse", "--questions", str(qfile), "--scenes", str(sfile), "--limit", "3", "--unsure-below",
                     "1.01", "--fallback", "llm", "--base-url", s.url, "--model", "fake", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["unsure"] == 3 and res["fallback_used"] == 3 and res["exact_match"] == 1.0
    assert len(s.requests) == 3
    assert main(["parse", "--questions", str(qfile), "--fallback", "llm"]) == 2  # needs --unsure-below


def test_commutative_key_ignores_branch_order_only():
    from vqa.language.parser import commutative_key

    a = Program.parse("count(intersect(relate[left](unique(filter_color[red](scene))), "
                      "relate[behind](unique(filter_shape[cube](scene)))))")
    b = Program.parse("count(intersect(relate[behind](unique(filter_shape[cube](scene))), "
                      "relate[left](unique(filter_color[red](scene)))))")
    c = Program.parse("count(intersect(relate[front](unique(filter_shape[cube](scene))), "
                      "relate[left](unique(filter_color[red](scene)))))")
    assert a != b and commutative_key(a) == commutative_key(b) != commutative_key(c)
    d = Program.parse("greater_than(count(filter_color[red](scene)), count(filter_shape[cube](scene)))")
    e = Program.parse("greater_than(count(filter_shape[cube](scene)), count(filter_color[red](scene)))")
    assert commutative_key(d) != commutative_key(e)  # only and/or branches commute
