"""GQA semantic steps -> structured steps and back; the attribute ontology."""
import json
import tracemalloc
from pathlib import Path

import pytest

from vqa.cli import main
from vqa.datasets.gqa import iter_question_records, iter_questions
from vqa.datasets.gqa_ontology import GQAOntology, default_ontology, learn_hypernyms, learn_types
from vqa.datasets.gqa_program import parse_program, parse_step, steps_number, to_program, to_semantic

FIX = Path(__file__).parent / "fixtures" / "gqa"
QUESTION_FILES = [FIX / "val_balanced_questions.json", FIX / "families_questions.json"]


@pytest.mark.parametrize("op,arg,deps,want", [
    ("select", "man (1232)", [], dict(family="select", name="man", object_ids=("1232",), absent=False)),
    ("select", "people (12,13)", [], dict(name="people", object_ids=("12", "13"))),
    ("select", "cat (-)", [], dict(name="cat", object_ids=(), absent=True)),
    ("select", "scene", [], dict(scene=True, name=None)),
    ("relate", "_,holding,o (1233)", [0], dict(family="relate", name="_", values=("holding",), direction="o",
                                               object_ids=("1233",))),
    ("relate", "fork,on,s (-)", [0], dict(name="fork", values=("on",), direction="s", absent=True)),
    ("relate", "bag,same color,o (7)", [0], dict(values=("same color",), direction="o")),
    ("relate", "man,to the left of,s (4,5)", [0], dict(values=("to the left of",), object_ids=("4", "5"))),
    ("filter color", "red", [0], dict(family="filter", type="color", values=("red",), negated=False)),
    ("filter color", "not(red)", [0], dict(type="color", values=("red",), negated=True)),
    ("filter", "tall", [0], dict(type=None, values=("tall",))),
    ("verify size", "small ", [1], dict(type="size", values=("small",), verbatim="small ")),
    ("relate", "_,same color,_ (7)", [0], dict(name="_", values=("same color",), direction="_")),
    ("filter hposition", "left", [0], dict(type="hposition", values=("left",))),
    ("query", "name", [1], dict(family="query", values=("name",))),
    ("query", "hposition", [1], dict(values=("hposition",))),
    ("verify color", "red", [0], dict(family="verify", type="color", values=("red",))),
    ("verify rel", "dog,on,s (5)", [0], dict(type="rel", name="dog", values=("on",), direction="s")),
    ("choose color", "red|blue", [0], dict(family="choose", type="color", values=("red", "blue"))),
    ("choose rel", "dog,to the left of|to the right of,s (1234)", [0],
     dict(type="rel", name="dog", values=("to the left of", "to the right of"), direction="s")),
    ("choose hposition", "left|right", [0], dict(type="hposition", values=("left", "right"))),
    ("choose name", "cat|dog", [0], dict(type="name", values=("cat", "dog"))),
    ("choose younger", "", [0, 1], dict(type="younger", values=())),
    ("choose healthier", "", [0, 1], dict(type="healthier")),
    ("exist", "?", [1], dict(family="exist", values=("?",))),
    ("and", "", [1, 3], dict(family="and", inputs=(1, 3))),
    ("or", "", [1, 3], dict(family="or")),
    ("same color", "", [0, 1], dict(family="same", type="color", inputs=(0, 1))),
    ("same material", "", [0], dict(family="same", type="material", inputs=(0,))),
    ("different color", "", [0, 1], dict(family="different", type="color")),
    ("same", "", [0, 1], dict(family="same", type=None)),
    ("common", "", [0, 1], dict(family="common")),
])
def test_every_form_parses_and_round_trips(op, arg, deps, want):
    s = parse_step(op, arg, deps)
    assert s.unparsed is None
    for k, v in want.items():
        assert getattr(s, k) == v, k
    assert s.raw() == (op, arg)
    assert s.to_record() == {"operation": op, "argument": arg, "dependencies": deps}


def test_comparative_and_relational_flags():
    assert parse_step("choose younger", "", [0, 1]).is_comparative
    assert not parse_step("choose color", "red|blue", [0]).is_comparative
    assert not parse_step("choose name", "cat|dog", [0]).is_comparative
    assert parse_step("verify rel", "dog,on,s (5)", [0]).is_relational


@pytest.mark.parametrize("op,arg", [("relate", "on the table"), ("relate", "a,b,x (1)"), ("count", ""),
                                    ("verify rel", "dog")])
def test_unknown_forms_are_kept_verbatim(op, arg):
    s = parse_step(op, arg, [0])
    assert s.unparsed == arg
    assert s.raw() == (op, arg)


def test_spacing_variants_keep_structure_and_text():
    s = parse_step("select", "man(12)", [])
    assert (s.name, s.object_ids, s.unparsed, s.verbatim) == ("man", ("12",), None, "man(12)")
    assert s.raw() == ("select", "man(12)")
    s = parse_step("filter color", "not(red) ", [0])
    assert s.raw() == ("filter color", "not(red) ")


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_fixture_programs_round_trip(path):
    data = json.loads(path.read_text())
    for qid, rec in data.items():
        steps = parse_program(rec["semantic"])
        assert to_semantic(steps) == rec["semantic"], qid
        assert all(s.unparsed is None for s in steps if s.family != "count"), qid
    for q in iter_questions(path):  # also from the core Program
        steps = parse_program(q.program)
        assert to_program(steps) == q.program
        assert to_semantic(steps) == q.program.to_gqa()


def test_steps_number_matches_eval_definition():
    sem = [{"operation": "select", "argument": "man (1)", "dependencies": []},
           {"operation": "relate", "argument": "_,holding,o (2)", "dependencies": [0]},
           {"operation": "query", "argument": "name", "dependencies": [1]}]
    assert steps_number(sem) == 2
    sem2 = sem[:2] + [{"operation": "exist", "argument": "?", "dependencies": [1]},
                      {"operation": "choose name", "argument": "a|b", "dependencies": [1]},
                      {"operation": "query", "argument": "color", "dependencies": [1]}]
    assert steps_number(sem2) == 3


# ---- ontology ---------------------------------------------------------------------------------
def test_default_ontology_has_common_types():
    onto = default_ontology()
    for t in ("color", "material", "shape", "size", "pose", "activity", "age", "weather", "length", "height",
              "width", "hposition", "vposition"):
        assert onto.types.get(t), t
    assert "color" in onto.types_of("red") and "material" in onto.types_of("wooden")
    assert "dog" in onto.hypernyms["animal"]
    assert onto.comparatives["younger"][:2] == ("young", "old")


def test_learn_types_from_programs():
    records = [(qid, rec) for _, qid, rec in iter_question_records(FIX / "families_questions.json")]
    onto, stats = learn_types(records)
    assert stats["questions"] == len(records)
    assert "red" in onto.types["color"] and "black" in onto.types["color"]   # verify / filter not()
    assert {"white", "black"} <= set(onto.types["color"])                     # choose color: white|black
    assert "old" in onto.types["age"] and "sitting" in onto.types["pose"]     # verify age / filter pose
    assert "plastic" in onto.types["material"]                                # query material -> answer
    assert "left" in onto.types["hposition"] and "top" in onto.types["vposition"]
    assert "cloudy" in onto.types["weather"] and "street" in onto.types["place"]
    assert "rel" not in onto.types and "younger" not in onto.types and "name" not in onto.types
    onto2, _ = learn_types(records, min_count=3)
    assert "red" not in onto2.types.get("color", [])


def test_learn_hypernyms_from_annotated_selects():
    records = [(qid, rec) for _, qid, rec in iter_question_records(FIX / "families_questions.json")]
    sg = json.loads((FIX / "families_sceneGraphs.json").read_text())
    names = {img: {oid: o["name"] for oid, o in g["objects"].items()} for img, g in sg.items()}
    hyp = learn_hypernyms(records, names)
    assert hyp["animal"] == ["dog"] and hyp["vehicle"] == ["car"] and hyp["people"] == ["man", "woman"]


def test_ontology_merge_and_save(tmp_path):
    a = GQAOntology(types={"color": ["red"]})
    b = GQAOntology(types={"color": ["blue", "red"], "size": ["big"]}, hypernyms={"animal": ["dog"]})
    m = a.merge(b)
    assert m.types == {"color": ["red", "blue"], "size": ["big"]} and m.hypernyms == {"animal": ["dog"]}
    m.save(tmp_path / "o.json")
    assert GQAOntology.load(tmp_path / "o.json").types == m.types
    (tmp_path / "bad.json").write_text('{"types": {"color": "red"}}')
    with pytest.raises(Exception, match="types.color"):
        GQAOntology.load(tmp_path / "bad.json")


def test_cli_gqa_ontology(tmp_path, capsys):
    out = tmp_path / "onto.json"
    assert main(["gqa", "ontology", "--questions", str(FIX / "families_questions.json"), "--out", str(out),
                 "--scenes", str(FIX / "families_sceneGraphs.json"), "--no-progress"]) == 0
    onto = GQAOntology.load(out)
    assert "white" in onto.types["color"] and onto.hypernyms["animal"] == ["dog"]
    assert "questions" in capsys.readouterr().out
    assert main(["gqa", "ontology", "--questions", str(tmp_path / "missing.json"), "--out", str(out)]) == 2


def test_ontology_learning_streams_a_large_file(tmp_path):
    """A questions file several times larger than the memory the learner may use."""
    path = tmp_path / "big_questions.json"
    rec = {"imageId": "1", "question": "Is the cup red?" + " pad" * 40, "answer": "no", "isBalanced": True,
           "semantic": [{"operation": "select", "argument": "cup (5)", "dependencies": []},
                        {"operation": "verify color", "argument": "red", "dependencies": [0]}]}
    n = 20000
    with open(path, "w") as f:
        f.write("{")
        for i in range(n):
            f.write(("," if i else "") + json.dumps(str(i)) + ":" + json.dumps(rec))
        f.write("}")
    size = path.stat().st_size
    tracemalloc.start()
    onto, stats = learn_types((qid, r) for _, qid, r in iter_question_records(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats["questions"] == n and onto.types == {"color": ["red"]}
    assert peak < size / 5, (peak, size)
