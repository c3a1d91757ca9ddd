"""Question generator of the synthetic world, on scenes made here from random attributes
and positions (relationships by CLEVR's rule), checked against the reference executor."""
from collections import Counter

import numpy as np
import pytest

from vqa import Program, SceneGraph
from vqa.datasets.synth.questions import BalanceConfig, QuestionGenerator
from vqa.datasets.synth.templates import FAMILIES, GROUPS
from vqa.executor import execute
from vqa.ontology import CLEVR_ANSWERS, CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS
from vqa.scene import clevr_relations, clevr_relationships

DIRECTIONS = {"left": [-0.66, -0.75, 0.0], "right": [0.66, 0.75, 0.0], "front": [0.75, -0.66, 0.0],
              "behind": [-0.75, 0.66, 0.0], "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}


def make_scene(rng, index=0):
    n = int(rng.integers(3, 11))
    objects = []
    for _ in range(n):
        obj = {c: str(rng.choice(v)) for c, v in CLEVR_ATTRIBUTES.items()}
        obj["3d_coords"] = [float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3)), 0.35]
        obj["pixel_coords"] = [160, 120, 10.0]  # unused by questions; the loader wants a box or a centre
        objects.append(obj)
    rels = clevr_relationships(clevr_relations([o["3d_coords"] for o in objects], DIRECTIONS), n)
    return {"split": "test", "image_index": index, "image_filename": f"CLEVR_test_{index:06d}.png",
            "directions": DIRECTIONS, "objects": objects, "relationships": rels}


def run(num_scenes, k=10, seed=0, **kw):
    rng = np.random.default_rng(1000 + seed)
    scenes = [make_scene(rng, i) for i in range(num_scenes)]
    gen = QuestionGenerator(np.random.default_rng(seed), **kw)
    return gen, scenes, [gen.generate(s, k) for s in scenes]


@pytest.fixture(scope="module")
def moderate():
    return run(120)


def test_same_seed_same_questions():
    _, _, a = run(8, seed=3)
    _, _, b = run(8, seed=3)
    _, _, c = run(8, seed=4)
    assert a == b and a != c
    assert sum(len(qs) for qs in a) == 80


def test_scene_graph_input_gives_the_same_questions():
    rng = np.random.default_rng(5)
    scenes = [make_scene(rng, i) for i in range(6)]
    g1, g2 = QuestionGenerator(np.random.default_rng(0)), QuestionGenerator(np.random.default_rng(0))
    assert [g1.generate(s, 6) for s in scenes] == [g2.generate(SceneGraph.from_clevr(s), 6) for s in scenes]


def _filter_chains(program: Program):
    """Maximal runs of filter steps: (index of the chain's input, [(category, value, step)])."""
    consumers = Counter(k for s in program for k in s.inputs)
    chains = []
    for i, s in enumerate(program):
        if not s.op.startswith("filter_"):
            continue
        src = s.inputs[0]
        if program[src].op.startswith("filter_") and consumers[src] == 1:
            continue  # continues a chain started earlier
        chain, j = [], i
        while True:
            chain.append((program[j].op[len("filter_"):], program[j].args[0], j))
            nxt = [t for t, st in enumerate(program) if j in st.inputs and st.op.startswith("filter_")]
            if not nxt:
                break
            j = nxt[0]
        chains.append((src, chain))
    return chains


def test_every_answer_and_every_step_is_well_posed(moderate):
    _, scenes, questions = moderate
    for scene, qs in zip(scenes, questions):
        graph = SceneGraph.from_clevr(scene)
        for q in qs:
            program = Program.from_clevr(q["program"])
            assert program.problems() == [], q
            assert q["answer"] in CLEVR_ANSWERS
            result = execute(program, graph)
            assert result.ok and result.answer == q["answer"], (q, result.error)
            values = [t.value for t in result.trace]
            for i, step in enumerate(program):
                if step.op == "unique":  # every unique has a singleton input
                    assert len(values[step.inputs[0]]) == 1, q
                if step.op.startswith("filter_"):  # every filter step changes its input
                    assert values[i] != values[step.inputs[0]], q
            # no redundant attribute: dropping any one filter of a chain changes the chain's result
            for src, chain in _filter_chains(program):
                result_set = values[chain[-1][2]]
                for drop in range(len(chain)):
                    kept = [c for d, c in enumerate(chain) if d != drop]
                    reduced = tuple(o for o in values[src]
                                    if all(graph.object(o).value(cat) == v for cat, v, _ in kept))
                    assert reduced != tuple(result_set), (q["question"], chain[drop])
            # a queried or compared attribute is never named in the description it is asked about
            for i, step in enumerate(program):
                if step.op.startswith("query_"):
                    cat = step.op[len("query_"):]
                    j = step.inputs[0]  # the unique
                    names = []
                    k = program[j].inputs[0]
                    while program[k].op.startswith("filter_"):
                        names.append(program[k].op[len("filter_"):])
                        k = program[k].inputs[0]
                    assert cat not in names, q["question"]


def test_chains_and_comparisons_name_distinct_objects(moderate):
    _, scenes, questions = moderate
    for scene, qs in zip(scenes, questions):
        graph = SceneGraph.from_clevr(scene)
        for q in qs:
            program = Program.from_clevr(q["program"])
            trace = execute(program, graph).trace
            uniques = [trace[i].value for i, s in enumerate(program) if s.op == "unique"]
            group = q["template_filename"][:-len(".json")]
            if group in ("one_hop", "two_hop", "three_hop", "comparison"):
                assert len(set(uniques)) == len(uniques), q["question"]


def test_all_groups_functions_and_families_appear(moderate):
    gen, _, questions = moderate
    flat = [q for qs in questions for q in qs]
    assert {q["template_filename"] for q in flat} == {f"{g}.json" for g in GROUPS}
    assert {s["function"] for q in flat for s in q["program"]} == set(CLEVR_FUNCTIONS)
    assert {q["question_family_index"] for q in flat} == set(range(len(FAMILIES)))
    assert [f.index for f in FAMILIES] == list(range(len(FAMILIES)))
    # family usage stays even: every family within a few questions of the others
    per_family = Counter(q["question_family_index"] for q in flat)
    assert max(per_family.values()) - min(per_family.values()) <= 3


def test_answers_are_balanced_within_each_family(moderate):
    gen, _, questions = moderate
    cfg = gen.balance
    flat = [q for qs in questions for q in qs]
    for f in FAMILIES:
        counts = Counter(q["answer"] for q in flat if q["question_family_index"] == f.index)
        assert counts == gen.answer_counts[f.index]
        top, top_n = counts.most_common(1)[0]
        runner_up = max((c for a, c in counts.items() if a != top), default=0)
        assert top_n <= max(cfg.floor, cfg.ratio * runner_up), (f.name, counts)
        if f.final in ("exist", "equal", "compare"):
            assert set(counts) == {"yes", "no"}, (f.name, counts)


def test_cap_holds_when_a_family_can_only_say_one_thing():
    """Every object red: 'what color is ...' can only be answered red, so the family
    stops at the cap's floor instead of filling up with 'red'."""
    scene = make_scene(np.random.default_rng(2))
    for o in scene["objects"]:
        o["color"] = "red"
    family = [f for f in FAMILIES if f.name == "one_hop/query_color"]
    gen = QuestionGenerator(np.random.default_rng(0), families=family, balance=BalanceConfig(ratio=1.5, floor=3))
    answers = [q["answer"] for _ in range(40) for q in gen.generate(scene, 1)]
    assert answers == ["red"] * 3


def test_wording_uses_synonyms_and_fills_every_slot(moderate):
    _, _, questions = moderate
    texts = [q["question"] for qs in questions for q in qs]
    words = Counter(w.strip("?,.").lower() for t in texts for w in t.split())
    for a, b in (("ball", "sphere"), ("block", "cube"), ("big", "large"), ("tiny", "small"),
                 ("shiny", "metal"), ("metallic", "metal"), ("matte", "rubber"), ("thing", "object")):
        assert words[a] + words[a + "s"] > 0 and words[b] + words[b + "s"] > 0, (a, b)
    assert all(t.endswith("?") and "{" not in t and t[0].isupper() and "  " not in t for t in texts)
    # several phrasings per family
    per_family = {}
    for qs in questions:
        for q in qs:
            per_family.setdefault(q["question_family_index"], set()).add(q["question"].split()[0])
    assert sum(len(v) >= 2 for v in per_family.values()) >= len(FAMILIES) // 2


def test_verify_mode_catches_a_wrong_answer(monkeypatch):
    from vqa.datasets.synth import questions

    scene = make_scene(np.random.default_rng(0))
    assert len(QuestionGenerator(np.random.default_rng(0)).generate(scene, 5)) == 5
    monkeypatch.setattr(questions, "_answer", lambda index, skeleton, parts: "11")
    with pytest.raises(RuntimeError, match="reference executor says"):
        QuestionGenerator(np.random.default_rng(0)).generate(scene, 5)
    assert len(QuestionGenerator(np.random.default_rng(0), verify=False).generate(scene, 5)) == 5


def test_family_indices_are_stable_and_grouped():
    assert len(FAMILIES) == 59
    assert [f.index for f in FAMILIES] == list(range(59))
    groups = [f.group for f in FAMILIES]
    assert sorted(set(groups), key=groups.index) == list(GROUPS)  # contiguous, in CLEVR's group order
    assert all(groups.count(g) == len(groups) - groups[::-1].index(g) - groups.index(g) for g in GROUPS)
    assert (FAMILIES[0].name, FAMILIES[2].name, FAMILIES[58].name) == (
        "zero_hop/count", "zero_hop/query_size", "compare_integer/greater_than_relate")


_RELATION_WORD = {"left": r"\bleft\b", "right": r"\bright\b", "front": r"\bfront\b", "behind": r"\bbehind\b"}


def _branch_order(record: dict) -> list[tuple[str, bool, bool]]:
    """For each intersect/union of two `relate` branches with different relations, each
    relation word occurring once in the text: (op, is the first input's relation named
    first in the text, do the first input's steps come first in the program)."""
    import re

    prog, text, out = record["program"], record["question"].lower(), []

    def steps(i):
        return {i}.union(*(steps(k) for k in prog[i]["inputs"]))

    for s in prog:
        op = s.get("function", s.get("type"))
        if op not in ("intersect", "union"):
            continue
        a, b = (prog[i] for i in s["inputs"])
        if {a.get("function", a.get("type")), b.get("function", b.get("type"))} != {"relate"}:
            continue
        ra, rb = a["value_inputs"][0], b["value_inputs"][0]
        if ra == rb or len(re.findall(_RELATION_WORD[ra], text)) != 1 or len(re.findall(_RELATION_WORD[rb], text)) != 1:
            continue
        named = re.search(_RELATION_WORD[ra], text).start() < re.search(_RELATION_WORD[rb], text).start()
        out.append((op, named, min(steps(s["inputs"][0])) < min(steps(s["inputs"][1]))))
    return out


def test_and_or_branch_order_follows_the_release(moderate):
    """As in CLEVR's released programs: "... A and B" is intersect(B, A) with B's steps first,
    "... A or B" is union(A, B) with A's steps first."""
    _, _, per_scene = moderate
    seen = Counter()
    for qs in per_scene:
        for q in qs:
            for op, named_first, steps_first in _branch_order(q):
                assert named_first == (op == "union") and steps_first, (q["question"], q["program"])
                seen[op] += 1
    assert seen["intersect"] >= 20 and seen["union"] >= 10, seen


def test_branch_order_matches_the_official_files(clevr_official):
    """The same check on the official-generator train file (release format) and on questions
    of the official and/or templates made by the project's template engine."""
    import json

    from vqa.datasets.clevr_templates import TemplateQuestionGenerator, TemplateSet

    released = json.loads((clevr_official / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    ts = TemplateSet.load(clevr_official / "templates", files=["single_and.json", "single_or.json"])
    gen = TemplateQuestionGenerator(ts, np.random.default_rng(0))
    rng = np.random.default_rng(7)
    made = [q for i in range(60) for q in gen.generate(make_scene(rng, i), 6)]
    for source in (released, made):
        seen = Counter()
        for q in source:
            for op, named_first, steps_first in _branch_order(q):
                assert named_first == (op == "union") and steps_first, (q["question"], q["program"])
                seen[op] += 1
        assert seen["intersect"] >= 20, seen
