import copy

import pytest

from vqa import DataError, Program, Step
from conftest import FIXTURES, load_json

QUESTIONS = load_json(FIXTURES / "clevr/questions/CLEVR_val_questions.json")["questions"]
GQA = load_json(FIXTURES / "gqa/val_balanced_questions.json")


@pytest.mark.parametrize("rec", QUESTIONS, ids=lambda r: str(r["question_index"]))
def test_clevr_round_trip_is_lossless(rec):
    p = Program.from_clevr(rec["program"])
    assert p.to_clevr() == rec["program"]
    assert Program.from_prefix(p.to_prefix()) == p or len(p.to_prefix()) != len(p)
    assert Program.from_tree(p.to_tree()).to_expr() == p.to_expr()
    assert Program.parse(p.to_expr()).to_expr() == p.to_expr()
    assert p.problems() == []


def test_released_and_generator_forms_convert_into_each_other():
    gen = QUESTIONS[4]["program"]
    assert gen[0]["type"] == "scene"
    p = Program.from_clevr(gen)
    released = p.to_clevr("function")
    assert released[1] == {"function": "filter_shape", "value_inputs": ["cylinder"], "inputs": [0]}
    assert Program.from_clevr(released) == p
    assert Program.from_clevr(released).to_clevr("type") == gen


def test_extra_keys_and_bracket_form_survive():
    rec = [{"function": "scene", "inputs": [], "value_inputs": []},
           {"function": "filter_color[red]", "inputs": [0], "value_inputs": [], "_output": [1, 2]}]
    p = Program.from_clevr(rec)
    assert p[1].op == "filter_color" and p[1].args == ("red",)
    assert p.to_clevr() == rec


def test_prefix_and_tree():
    p = Program.parse("greater_than(count(filter_color[red](scene)), count(filter_shape[cube](scene())))")
    assert p.to_prefix() == ["greater_than", "count", "filter_color[red]", "scene", "count", "filter_shape[cube]", "scene"]
    assert Program.from_prefix(p.to_prefix()) == p
    tree = p.to_tree()
    assert tree["op"] == "greater_than" and tree["inputs"][1]["inputs"][0]["args"] == ["cube"]
    assert Program.from_tree(tree) == p


def test_pretty_printer_one_line_per_step():
    p = Program.from_clevr(QUESTIONS[3]["program"])
    lines = str(p).splitlines()
    assert len(lines) == len(p)
    assert lines[-1].split() == ["6", "greater_than", "<-", "2,", "5"]


def test_gqa_round_trip_is_lossless():
    for qid, rec in GQA.items():
        p = Program.from_gqa(rec["semantic"])
        assert p.to_gqa() == rec["semantic"], qid
        assert p.problems() == []
    p = Program.from_gqa(GQA["05515939"]["semantic"])
    assert p[1] == Step("verify color", ("red",), (0,))


@pytest.mark.parametrize("steps, field, fragment", [
    ([Step("scene"), Step("count", (), (2,))], "program[1].inputs", "earlier step"),
    ([Step("scene"), Step("filter_colour", ("red",), (0,))], "program[1].function", "unknown function"),
    ([Step("scene"), Step("filter_color", ("pink",), (0,))], "program[1].value_inputs", "'pink' is not a color"),
    ([Step("scene"), Step("relate", ("above",), (0,))], "program[1].value_inputs", "not a relation"),
    ([Step("scene"), Step("union", (), (0,))], "program[1].inputs", "takes 2 input"),
    ([Step("scene"), Step("count", ("x",), (0,))], "program[1].value_inputs", "takes 0 value"),
    ([Step("scene"), Step("query_color", (), (0,))], "program[1].inputs", "expects object from step 0"),
    ([Step("scene"), Step("unique", (), (0,))], "program[1]", "ends in object"),
])
def test_problems_name_the_step_and_field(steps, field, fragment):
    probs = Program(steps, "clevr").problems(file="q.json", record="7")
    assert any(p.field == field and fragment in p.message for p in probs), probs
    with pytest.raises(DataError, match=fragment):
        Program(steps, "clevr").validate()


def test_malformed_program_records():
    with pytest.raises(DataError, match="neither 'function'"):
        Program.from_clevr([{"inputs": []}], file="q.json", record=3)
    with pytest.raises(DataError) as e:
        Program.from_clevr([{"function": "scene", "inputs": ["0"]}], file="q.json", record=3)
    assert e.value.problem.field == "program[0].inputs" and e.value.problem.record == "3"
    bad = copy.deepcopy(GQA["05515938"]["semantic"])
    del bad[1]["argument"]
    with pytest.raises(DataError) as e:
        Program.from_gqa(bad, record="05515938")
    assert e.value.problem.field == "semantic[1].argument"
    gp = Program.from_gqa([{"operation": "select", "argument": "x", "dependencies": []},
                           {"operation": "frobnicate", "argument": "", "dependencies": [3]}])
    fields = sorted(p.field for p in gp.problems())
    assert fields == ["semantic[1].dependencies", "semantic[1].operation"]


@pytest.mark.parametrize("text", ["count(", "count(scene))", "filter_color[red](scene) extra", "(scene)"])
def test_parse_errors(text):
    with pytest.raises(DataError, match="cannot parse"):
        Program.parse(text)
