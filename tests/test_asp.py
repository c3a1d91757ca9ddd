"""ASP reasoner: differential tests against the reference executor, uncertainty, traces."""
import math
import random
import re
from pathlib import Path

import pytest

from vqa import Program, SceneGraph, SceneObject
from vqa.datasets.clevr import load_scenes
from vqa.executor import execute
from vqa.ontology import CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS
from vqa.reason.asp import ASPReasoner
from vqa.reason.asp_encode import cost, encode, encode_scene
from vqa.reason.random_programs import random_program, random_scene
from vqa.reason.solver import by_name, load_theory, solve
from conftest import FIXTURES

RULES = Path(__file__).resolve().parents[1] / "rules" / "clevr"
SCENES = load_scenes(FIXTURES / "clevr/scenes/CLEVR_val_scenes.json")
SCENE = SCENES["CLEVR_val_000000"]  # 0 large red rubber cube, 1 small blue metal sphere, 2 large red metal cylinder

# every function and every error path of the executor
EXPRESSIONS = [
    "count(scene)", "exist(filter_color[green](scene))", "exist(filter_color[red](scene))",
    "query_shape(unique(filter_size[small](scene)))", "query_color(unique(filter_shape[sphere](scene)))",
    "query_material(unique(filter_shape[cube](scene)))", "query_size(unique(filter_shape[cube](scene)))",
    "count(intersect(filter_color[red](scene), filter_material[metal](scene)))",
    "count(union(filter_shape[cube](scene), filter_shape[sphere](scene)))",
    "count(relate[right](unique(filter_shape[cube](scene))))", "count(relate[left](unique(filter_shape[cube](scene))))",
    "exist(relate[front](unique(filter_shape[sphere](scene))))", "count(relate[behind](unique(filter_shape[cylinder](scene))))",
    "count(same_color(unique(filter_shape[cube](scene))))", "count(same_size(unique(filter_shape[cube](scene))))",
    "count(same_material(unique(filter_shape[sphere](scene))))", "count(same_shape(unique(filter_shape[sphere](scene))))",
    "equal_size(query_size(unique(filter_shape[cube](scene))), query_size(unique(filter_shape[cylinder](scene))))",
    "equal_color(query_color(unique(filter_shape[cube](scene))), query_color(unique(filter_shape[sphere](scene))))",
    "equal_material(query_material(unique(filter_shape[cube](scene))), query_material(unique(filter_shape[cylinder](scene))))",
    "equal_shape(query_shape(unique(filter_shape[cube](scene))), query_shape(unique(filter_shape[cube](scene))))",
    "less_than(count(filter_color[red](scene)), count(filter_color[blue](scene)))",
    "greater_than(count(filter_color[red](scene)), count(filter_color[blue](scene)))",
    "equal_integer(count(filter_material[metal](scene)), count(filter_color[red](scene)))",
    # errors
    "query_color(unique(filter_color[red](scene)))", "query_color(unique(filter_color[green](scene)))",
    "count(unique(scene))", "count(query_color(unique(filter_shape[cube](scene))))",
    "filter_color[red](scene)", "unique(filter_shape[cube](scene))", "count(filter_colour[red](scene))",
    "equal_color(count(scene), count(scene))", "less_than(exist(scene), count(scene))",
    "relate[left](filter_shape[cube](scene))", "filter_color[red](count(scene))",
    "exist(filter_color[purple](relate[left](unique(filter_color[red](scene)))))",
]


def broken_programs():
    """Structural defects the parser would not produce: written step by step."""
    from vqa import Step
    return [
        Program([Step("scene"), Step("filter_color", ("red", "blue"), (0,)), Step("count", (), (1,))]),
        Program([Step("scene"), Step("filter_color", (), (0,)), Step("count", (), (1,))]),
        Program([Step("scene", (), (0,)), Step("count", (), (0,))]),
        Program([Step("scene"), Step("count", (), (0, 0))]),
        Program([Step("scene"), Step("count", (), (2,)), Step("scene")]),
        Program([Step("scene"), Step("count", ("x",), (0,))]),
        Program([Step("scene"), Step("union", (), (0,))]),
        Program([Step("scene"), Step("count", (), (-1,))]),
        Program([]),
        Program([Step("scene"), Step("unique", (), (0,)), Step("count", (), (0,))]),  # fails before the end
    ]


def same(a, r):
    return ((a.answer, a.error, a.error_step) == (r.answer, r.error, r.error_step)
            and [t.to_dict() for t in a.trace] == [t.to_dict() for t in r.trace])


@pytest.fixture(scope="module")
def reasoner():
    return ASPReasoner(score_threshold=None)  # scores as probabilities: the costs below are exact


def test_every_function_and_error_agrees_with_the_executor(reasoner):
    programs = [Program.parse(e) for e in EXPRESSIONS] + broken_programs()
    answers = reasoner.answer_batch(SCENE, programs)  # all in one call
    for p, a in zip(programs, answers):
        r = execute(p, SCENE)
        assert same(a, r), (p.to_expr() if p.steps else "empty", a, r)
    covered = {s.op for p in programs for s in p.steps}
    assert set(CLEVR_FUNCTIONS) <= covered
    assert sum(a.answer is None for a in answers) >= 15  # the error cases are there


def test_one_question_at_a_time_equals_the_batch(reasoner):
    programs = [Program.parse(e) for e in EXPRESSIONS[:12]]
    batch = reasoner.answer_batch(SCENE, programs)
    for p, a in zip(programs, batch):
        assert reasoner.answer(SCENE, p).to_dict() == a.to_dict()


def test_several_scenes_in_one_call_do_not_mix(reasoner):
    rng = random.Random(3)
    batch = []
    for i in range(6):
        scene = random_scene(rng, image_id=f"r{i}")
        batch.append((scene, [random_program(rng, scene) for _ in range(6)]))
    for (scene, programs), answers in zip(batch, reasoner.answer_many(batch)):
        for p, a in zip(programs, answers):
            assert same(a, execute(p, scene)), p.to_expr()


def test_random_programs_agree_with_the_executor(reasoner):
    rng = random.Random(11)
    n = fails = 0
    for i in range(30):
        scene = random_scene(rng, image_id=f"f{i}")
        programs = [random_program(rng, scene, p_broken=0.3) for _ in range(8)]
        for p, a in zip(programs, reasoner.answer_batch(scene, programs)):
            r = execute(p, scene)
            assert same(a, r), (p.to_expr(), a, r)
            n += 1
            fails += r.answer is None
    assert n == 240 and 20 < fails < 200


@pytest.mark.slow
def test_ten_thousand_generated_questions_agree(reasoner):
    import numpy as np

    from vqa.reason.asp_bench import make_workload

    n = 0
    for source, scenes in (("generated", 600), ("random", 500)):
        batch = make_workload(scenes, 10, seed=5, source=source)
        for i in range(0, len(batch), 8):
            chunk = batch[i:i + 8]
            for (scene, programs), answers in zip(chunk, reasoner.answer_many(chunk)):
                for p, a in zip(programs, answers):
                    assert same(a, execute(p, scene)), p.to_expr()
                    n += 1
    assert n >= 10_000


def test_relations_from_positions_when_the_scene_has_none(reasoner):
    rng = random.Random(5)
    scene = random_scene(rng, image_id="pos")
    no_rel = SceneGraph.from_dict({**scene.to_dict(), "relations": []})
    assert not no_rel.relations and no_rel.directions
    programs = [Program.parse(f"count(relate[{r}](unique(filter_shape[{s}](scene))))")
                for r in ("left", "right", "front", "behind") for s in ("cube", "sphere", "cylinder")]
    for p, a, b in zip(programs, reasoner.answer_batch(scene, programs), reasoner.answer_batch(no_rel, programs)):
        assert a.to_dict() == b.to_dict()
        assert same(a, execute(p, scene))


def _obj(i, color, shape="cube", score=1.0):
    return SceneObject(str(i), shape, [0, 0, 1, 1], {"color": color, "shape": {shape: 1.0}, "size": {"large": 1.0},
                                                     "material": {"rubber": 1.0}}, score=score)


def test_most_probable_consistent_reading(reasoner):
    # object 0 is most likely red (0.6): then two red things and `unique` fails;
    # as blue (0.4) the question is answerable: the reasoner answers under that reading.
    scene = SceneGraph("u", 480, 320, [_obj(0, {"red": 0.6, "blue": 0.4}, "cube"), _obj(1, {"red": 1.0}, "sphere")])
    q_unique = Program.parse("query_shape(unique(filter_color[red](scene)))")
    q_count = Program.parse("count(filter_color[red](scene))")
    assert execute(q_unique, scene).error  # the executor reads the most likely colour and fails
    a, b = reasoner.answer_batch(scene, [q_unique, q_count])
    assert a.answer == "sphere" and a.error is None
    assert a.cost == cost(0.4) - cost(0.6) and a.top == [("sphere", 1.0)]
    # the other question of the same call keeps the most likely reading (red): its own choice
    assert b.answer == "2" and b.cost == 0
    assert [x for x, _ in b.top] == ["2", "1"]
    assert b.top[0][1] == pytest.approx(0.6, abs=1e-3) and b.top[1][1] == pytest.approx(0.4, abs=1e-3)
    # no reading helps: the question fails
    c = reasoner.answer(scene, Program.parse("query_color(unique(filter_shape[cylinder](scene)))"))
    assert c.answer is None and "got 0" in c.error and c.top == []


def test_uncertain_objects_and_relations(reasoner):
    scene = SceneGraph("u", 480, 320, [_obj(0, {"red": 1.0}, score=0.3), _obj(1, {"red": 1.0}, "sphere")])
    a = reasoner.answer(scene, Program.parse("count(scene)"))
    assert a.answer == "1" and [x for x, _ in a.top] == ["1", "2"]
    assert a.top[0][1] == pytest.approx(0.7, abs=1e-3)
    scene = SceneGraph.from_dict({**scene.to_dict(), "objects": [o.to_dict() | {"score": 1.0} for o in scene.objects],
                                  "relations": [{"subject": "1", "predicate": "left", "object": "0", "probability": 0.8}]})
    a = reasoner.answer(scene, Program.parse("exist(relate[left](unique(filter_shape[cube](scene))))"))
    assert a.answer == "yes" and a.top[1][0] == "no" and a.top[0][1] == pytest.approx(0.8, abs=1e-3)


def test_object_scores_are_calibrated_like_the_nsm():
    # a detection scored 0.45 (the parser's objectness, not a probability): raw, it is more
    # likely absent; calibrated (threshold 0.4, temperature 0.05) it exists with p = 0.73
    scene = SceneGraph("c", 480, 320, [_obj(0, {"blue": 1.0}, score=0.45), _obj(1, {"red": 1.0}, "sphere", score=0.33)])
    q = [Program.parse("exist(filter_color[blue](scene))"), Program.parse("count(scene)")]
    raw = ASPReasoner(score_threshold=None, explain=False).answer_batch(scene, q)
    cal = ASPReasoner(explain=False)
    assert (cal.config.score_threshold, cal.config.score_temperature) == (0.4, 0.05)
    assert [a.answer for a in raw] == ["no", "0"]
    answers = cal.answer_batch(scene, q)
    assert [a.answer for a in answers] == ["yes", "1"]
    probs = [o.score for o in cal.calibrated(scene).objects]
    assert probs == pytest.approx([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1.4))])
    assert [o.score for o in scene.objects] == [0.45, 0.33]  # the caller's scene is not changed
    assert cal.calibrated(SCENE) is SCENE  # gold scenes (every score 1) as they are
    with pytest.raises(ValueError, match="temperature"):
        ASPReasoner(score_temperature=0)


def test_a_scene_parsers_declared_objectness_midpoint_is_used():
    """A scene graph whose parser declares its objectness midpoint (0.3) is read with it: the
    detection scored 0.33 counts (p = sigmoid(0.6) = 0.65) where the default threshold 0.4 leaves
    it out; scene_calibration=False and score_threshold=None ignore the declaration."""
    import dataclasses
    objs = [_obj(0, {"blue": 1.0}, score=0.9), _obj(1, {"red": 1.0}, "sphere", score=0.33)]
    plain = SceneGraph("c", 480, 320, objs)
    declared = dataclasses.replace(plain, info={"objectness_midpoint": 0.3})
    q = [Program.parse("count(scene)")]
    asp = ASPReasoner(explain=False)
    assert asp.answer_batch(plain, q)[0].answer == "1"
    assert asp.answer_batch(declared, q)[0].answer == "2"
    assert [o.score for o in asp.calibrated(declared).objects][1] == pytest.approx(1 / (1 + math.exp(-0.6)))
    assert ASPReasoner(explain=False, scene_calibration=False).answer_batch(declared, q)[0].answer == "1"
    assert ASPReasoner(explain=False, score_threshold=None).calibrated(declared) is declared
    again = SceneGraph.from_json(declared.to_json())  # the declaration survives the JSON form
    assert again.info["objectness_midpoint"] == 0.3


def test_gold_scenes_are_plain_facts():
    enc = encode_scene(SCENE)
    assert not enc.uncertain and enc.mode_cost == 0
    assert "pattr" not in enc.facts and "pobj" not in enc.facts and "prel" not in enc.facts
    assert "attr(0,color,red)." in enc.facts and "rel(1,right,0)." in enc.facts
    assert cost(1.0) == 0 and cost(0.5) == 693 and cost(0.0) == cost(1e-9) == 10_000


def test_trace_is_the_explanation(reasoner):
    a = reasoner.answer(SCENE, Program.parse("count(relate[right](unique(filter_shape[cube](scene))))"))
    assert [t.value for t in a.trace] == [("0", "1", "2"), ("0",), "0", ("1", "2"), 2]
    assert a.to_dict()["trace"][3]["value"] == ["1", "2"]


def test_theory_catalogue_matches_the_ontology():
    atoms = by_name(solve((RULES / "catalogue.lp").read_text()).atoms)
    assert {c for (c,) in atoms["category"]} == set(CLEVR_ATTRIBUTES)
    terms = {"filter": "filter_", "query": "query_", "same": "same_", "equal": "equal_"}
    names = {f"{terms[f[0]]}{f[1]}" if isinstance(f, tuple) else f for (f,) in atoms["fn"]}
    assert names == set(CLEVR_FUNCTIONS)
    for name, spec in CLEVR_FUNCTIONS.items():
        f = (name.split("_")[0], spec.category) if spec.category else name
        assert (f, spec.arity) in atoms["arity"], name
        assert [k for g, _, k in sorted(e for e in atoms["expects"] if e[0] == f)] == list(spec.inputs), name
        assert ((f,) in atoms["takes_arg"]) == bool(spec.arg), name
        if not name.startswith("query_"):
            assert (f, spec.output) in atoms["yields"], name


def test_example_facts_run_with_the_theory():
    text = load_theory(RULES) + (RULES / "example_facts.lp").read_text()
    atoms = by_name(solve(text).atoms)
    assert sorted(atoms["ans"]) == [(0, 2), (1, "blue")]
    assert atoms["fail"] == [(2, 2, ("unique", 2))]


def test_rule_files_have_section_headers():
    for path in RULES.glob("*.lp"):
        assert re.search(r"^% ---", path.read_text(), re.M), path


def test_encoder_quotes_what_is_not_a_constant():
    _, facts = encode([(SCENE, [Program.parse("count(filter_color[Dark Red](scene))")])])
    assert 'arg(0,1,"Dark Red").' in facts


def test_a_theory_that_does_not_parse_is_reported(tmp_path):
    from vqa.errors import VQAError

    (tmp_path / "bad.lp").write_text("p(X :- q.")
    with pytest.raises(VQAError, match="unexpected"):
        ASPReasoner(tmp_path)
    with pytest.raises(VQAError, match="no such folder of ASP rule files$"):
        ASPReasoner(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VQAError, match="no .lp files"):
        ASPReasoner(tmp_path / "empty")


def test_solver_helpers_optimum_and_messages():
    from vqa.reason.solver import SolverError

    text = "1 { pick(a); pick(b); pick(c) } 1. :~ pick(a). [2] :~ pick(b). [1] :~ pick(c). [1] #show pick/1."
    res = solve(text)
    assert res.optimal and res.cost == [1] and len(res.atoms) == 1
    res = solve(text, all_optimal=True)
    assert sorted(str(m[0]) for m in res.optimal_models) == ["pick(b)", "pick(c)"]
    with pytest.raises(SolverError) as e:
        solve("p(X) :- q.")
    assert any("unsafe" in m for m in e.value.messages)


# ---- the fast path: checked programs, gold scenes written as their reading ----------
def test_checked_programs_can_fail_only_on_the_scene():
    from vqa.reason.asp_encode import is_checked

    assert [is_checked(p) for p in broken_programs()] == [False] * 9 + [True]  # the last fails on the scene
    checked = [Program.parse(e) for e in EXPRESSIONS if is_checked(Program.parse(e))]
    assert len(checked) >= 26  # every function; a value outside the vocabulary is fine
    assert is_checked(Program.parse("count(filter_color[Dark Red](scene))"))
    assert not is_checked(Program.parse("count(filter_colour[red](scene))"))
    assert not is_checked(Program.parse("unique(filter_shape[cube](scene))"))
    rng = random.Random(7)
    seen = set()
    for i in range(200):
        scene = random_scene(rng, image_id=f"c{i}")
        p = random_program(rng, scene, p_broken=0.5)
        r = execute(p, scene)
        if is_checked(p):
            assert r.error is None or r.error.startswith("unique expects") or "attribute" in r.error, r.error
        seen.add(is_checked(p))
    assert seen == {True, False}


def test_fast_path_and_plain_facts_agree(reasoner):
    """The reasoner's fast path (checked programs, gold readings, shared programs) against
    the plain facts with the complete theory (every step checked, readings copied)."""
    from vqa.reason.asp import read_answers
    from vqa.reason.asp_encode import encode

    rng = random.Random(13)
    batch = [(SCENE, [Program.parse(e) for e in EXPRESSIONS] + broken_programs())]
    for i in range(3):
        scene = random_scene(rng, image_id=f"m{i}")
        batch.append((scene, [random_program(rng, scene, p_broken=0.3) for _ in range(8)]))
    encodings, fast = encode(batch, fast=True)
    assert "run(" in fast and "has(g(0)," in fast and "attr(" not in fast
    assert encodings[0].shared[0][0] == encodings[0].shared[1][0] == 0  # one shared scene step
    encodings, plain = encode(batch)
    assert "run(" not in plain and "attr(0,color,red)." in plain and not encodings[0].shared
    model = " ".join(str(a) for a in solve(load_theory(RULES) + plain).atoms)
    programs = [p for _, ps in batch for p in ps]
    expected = read_answers(programs, model, [i for enc in encodings for i in enc.ids])
    got = [a for answers in reasoner.answer_many(batch) for a in answers]
    for p, a, b in zip(programs, got, expected):
        assert same(a, b), p
    assert sum(a.answer is None for a in got) >= 20


def test_a_call_mixes_checked_unchecked_gold_and_uncertain(reasoner):
    scene = SceneGraph("u", 480, 320, [_obj(0, {"red": 0.6, "blue": 0.4}, "cube"), _obj(1, {"red": 1.0}, "sphere")])
    uncertain = [Program.parse("query_shape(unique(filter_color[red](scene)))"), Program.parse("count(filter_color[red](scene))")]
    gold = [Program.parse(e) for e in EXPRESSIONS[:6]] + broken_programs()[:3]
    together = reasoner.answer_many([(SCENE, gold), (scene, uncertain)])
    assert [a.to_dict() for a in together[0]] == [a.to_dict() for a in reasoner.answer_batch(SCENE, gold)]
    assert [a.to_dict() for a in together[1]] == [a.to_dict() for a in reasoner.answer_batch(scene, uncertain)]


def test_without_explanations_the_answers_stay():
    quiet = ASPReasoner(explain=False)
    programs = [Program.parse(e) for e in EXPRESSIONS]
    checked = quiet.answer_batch(SCENE, programs[:24])  # checked programs only: no step values shown
    for p, a in zip(programs, checked):
        r = execute(p, SCENE)
        assert (a.answer, a.error, a.error_step) == (r.answer, r.error, r.error_step) and a.trace == []
    mixed = quiet.answer_batch(SCENE, programs + broken_programs())
    for p, a in zip(programs + broken_programs(), mixed):
        r = execute(p, SCENE)
        assert (a.answer, a.error, a.error_step) == (r.answer, r.error, r.error_step)
        assert (a.trace == []) == (r.error is None or not p.steps)  # a failure keeps its trace


def test_values_below_min_probability_are_pruned():
    scene = SceneGraph("p", 480, 320, [_obj(0, {"red": 0.995, "blue": 0.005})])
    prog = Program.parse("query_color(unique(scene))")
    pruned = ASPReasoner(min_probability=0.01).answer(scene, prog)
    full = ASPReasoner(min_probability=0.0).answer(scene, prog)
    assert pruned.answer == full.answer == "red"
    assert [a for a, _ in pruned.top] == ["red"] and [a for a, _ in full.top] == ["red", "blue"]
    # a value kept only below the threshold leaves the certain remainder
    assert "blue" not in encode_scene(scene, min_probability=0.01).facts


def test_batched_uncertain_questions_match_one_at_a_time():
    """usc optimisation over several questions' readings = each question's own optimum."""
    rng = random.Random(5)
    scenes = [random_scene(rng, n_objects=(5, 5)) for _ in range(3)]
    for sc in scenes:  # make every object and attribute uncertain
        for o in sc.objects:
            o.score = rng.uniform(0.4, 0.99)
            for cat, dist in o.attributes.items():
                v = next(iter(dist))
                others = [x for x in CLEVR_ATTRIBUTES[cat] if x != v][:2]
                o.attributes[cat] = {v: 0.7, others[0]: 0.2, others[1]: 0.1} if len(others) > 1 else {v: 0.8, others[0]: 0.2}
    reasoner = ASPReasoner(top_k=1, explain=False)
    for sc in scenes:
        progs = [random_program(rng, sc) for _ in range(6)]
        together = [(a.answer, a.error is None) for a in reasoner.answer_batch(sc, progs)]
        alone = [(reasoner.answer(sc, p).answer, reasoner.answer(sc, p).error is None) for p in progs]
        assert together == alone


def test_alternatives_are_bounded_and_never_change_the_answer():
    """Looking for next-best answers is a new optimisation per round; a round that hits the
    solve limit ends the list but leaves the answer as the first solve found it."""
    import json

    case = json.loads((FIXTURES / "asp/hard_alternatives.json").read_text())
    scene = SceneGraph.from_dict(case["scene"])
    progs = [Program.parse(e) for e in case["programs"]]
    first = [a.answer for a in ASPReasoner(top_k=1).answer_batch(scene, progs)]
    ranked = ASPReasoner(top_k=3).answer_batch(scene, progs)
    assert [a.answer for a in ranked] == first
    for a in ranked:
        assert a.top[0][0] == a.answer and len({x for x, _ in a.top}) == len(a.top) <= 3


def test_gold_path_relations_as_pairs_and_failures_keep_their_traces():
    """The gold fast path (`encode_gold`): a relation that is not nested (a cycle) is given
    as pairs, CLEVR's as levels; without explanations a question that fails on the scene
    still gets the executor's trace (from a second call of its own)."""
    from vqa.reason.asp_encode import encode_gold
    from vqa.scene import Relation

    objects = [_obj(0, {"red": 1.0}), _obj(1, {"red": 1.0}, "sphere"), _obj(2, {"blue": 1.0}, "cylinder")]
    cycle = [Relation("1", "left", "0"), Relation("2", "left", "1"), Relation("0", "left", "2"),
             Relation("0", "front", "1"), Relation("0", "front", "2"), Relation("1", "front", "2")]
    scene = SceneGraph("cyc", 480, 320, objects, relations=cycle)
    programs = [Program.parse(e) for e in (
        "count(relate[left](unique(filter_shape[cube](scene))))", "query_shape(unique(relate[left](unique(filter_shape[sphere](scene)))))",
        "count(relate[front](unique(filter_shape[cylinder](scene))))", "exist(relate[front](unique(filter_shape[cube](scene))))",
        "query_shape(unique(filter_color[red](scene)))", "count(relate[left](unique(filter_color[red](scene))))",
        "query_color(unique(filter_shape[cube](scene)))")]
    _, terms, _ = encode_gold([(scene, programs)])
    assert terms["holds"] and any(",front," in t for t in terms["level"]) and not any(",left," in t for t in terms["level"])
    for explain in (True, False):
        answers = ASPReasoner(explain=explain).answer_batch(scene, programs)
        for p, a in zip(programs, answers):
            r = execute(p, scene)
            assert (a.answer, a.error, a.error_step) == (r.answer, r.error, r.error_step), p.to_expr()
            if explain or r.error is not None:
                assert [t.to_dict() for t in a.trace] == [t.to_dict() for t in r.trace], p.to_expr()
            else:
                assert a.trace == []
        assert sum(a.answer is None for a in answers) == 2
