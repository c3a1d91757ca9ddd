"""The GQA-format synthetic world: layout, richness, and ASP theory = reference executor on
every generated question (differential test)."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vqa.datasets.check import check_gqa
from vqa.datasets.gqa import SceneGraphs, iter_questions
from vqa.datasets.gqa_ontology import default_ontology
from vqa.datasets.gqa_program import parse_program
from vqa.datasets.gqa_synth.generate import generate_gqa_dataset, paths
from vqa.datasets.gqa_synth.questions import STRUCTURAL
from vqa.datasets.gqa_synth.world import CATEGORIES, NAMES, categories_of
from vqa.eval.gqa import evaluate_gqa
from vqa.reason.gqa_asp import GQAReasoner
from vqa.reason.gqa_reference import run_gqa

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("gqa_world")
    summary = generate_gqa_dataset(out, num_scenes=20, questions_per_scene=10, seed=3, split="val", images=False)
    return out, summary


def differential(questions_file, scenes_file):
    """(questions, ASP answers == reference answers == file answers) over a whole file."""
    scenes = SceneGraphs(scenes_file)
    onto = default_ontology()
    reasoner = GQAReasoner()
    by_image = {}
    for q in iter_questions(questions_file):
        by_image.setdefault(q.image_id, []).append(q)
    n, disagree = 0, []
    for image_id, qs in by_image.items():
        sg = scenes[image_id]
        progs = {q.qid: parse_program(q.program) for q in qs}
        asp = reasoner.answer_image(sg, progs)
        for q in qs:
            ref, _ = run_gqa(sg, progs[q.qid], onto)
            n += 1
            if not (asp[q.qid].answer == ref == q.answer):
                disagree.append((q.qid, q.text, q.answer, ref, asp[q.qid].answer))
    return n, disagree


def test_layout_and_fields(world):
    out, summary = world
    p = paths(out, "val")
    assert summary["num_questions"] == 200 and p["questions"].exists() and p["scenes"].exists()
    qs = json.loads(p["questions"].read_text())
    sgs = json.loads(p["scenes"].read_text())
    assert len(sgs) == 20 and all(k.isdigit() for k in qs)
    for qid, r in qs.items():
        assert set(r) >= {"imageId", "question", "answer", "fullAnswer", "semantic", "semanticStr", "types",
                          "groups", "isBalanced", "equivalent", "entailed", "annotations"}
        assert r["imageId"] in sgs and r["isBalanced"] is True and r["equivalent"] == [qid]
        assert all(e in qs and qs[e]["imageId"] == r["imageId"] for e in r["entailed"])
        assert set(r["types"]) == {"structural", "semantic", "detailed"}
        for i, s in enumerate(r["semantic"]):
            assert set(s) == {"operation", "argument", "dependencies"} and all(d < i for d in s["dependencies"])
    # the official checker reads it without a complaint
    rep = check_gqa(p["questions"], p["scenes"])
    assert rep.ok, rep.format()


def test_richer_than_clevr(world):
    out, _ = world
    p = paths(out, "val")
    sgs = json.loads(p["scenes"].read_text())
    onto = default_ontology()
    rels, kinds_per_object, names = Counter(), [], set()
    for sg in sgs.values():
        for o in sg["objects"].values():
            names.add(o["name"])
            kinds = {t for a in o["attributes"] for t in onto.types_of(a)}
            kinds_per_object.append(len(kinds))
            assert len(o["attributes"]) == len(kinds)  # every attribute has one known type
            rels.update(r["name"] for r in o["relations"])
    assert min(kinds_per_object) >= 4 and max(kinds_per_object) == 5
    assert set(rels) == {"to the left of", "to the right of", "in front of", "behind", "next to"}
    # the name hierarchy is the shipped ontology's, so `select` by a category works in the reasoners
    for n in set(NAMES.values()):
        for c in categories_of(n):
            assert n in onto.hypernyms[c] or any(n in onto.hypernyms[m] for m in CATEGORIES[c])
    qs = list(iter_questions(p["questions"]))
    structural = Counter(q.meta["types"]["structural"] for q in qs)
    assert set(structural) == set(STRUCTURAL.values()) == {"query", "verify", "choose", "logical", "compare"}
    ops = Counter()
    selected_by_category = 0
    for q in qs:
        steps = parse_program(q.program)
        ops.update(s.operation.split(" ")[0] if s.family != "choose" or s.type in ("rel", "name") or
                   s.is_comparative else "choose attr" for s in steps)
        selected_by_category += any(s.family == "select" and s.name in CATEGORIES for s in steps)
    assert set(ops) >= {"select", "relate", "filter", "query", "verify", "choose", "exist", "and", "or", "same",
                        "different", "common"}
    assert selected_by_category > 10
    answers = Counter(q.answer for q in qs if q.answer in ("yes", "no"))
    assert 0.35 < answers["yes"] / sum(answers.values()) < 0.65


def test_asp_equals_reference_on_every_question(world):
    out, summary = world
    p = paths(out, "val")
    n, disagree = differential(p["questions"], p["scenes"])
    assert n == summary["num_questions"] and disagree == []


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a = generate_gqa_dataset(tmp_path / "a", num_scenes=3, questions_per_scene=5, seed=7, images=False)
    b = generate_gqa_dataset(tmp_path / "b", num_scenes=3, questions_per_scene=5, seed=7, images=False)
    c = generate_gqa_dataset(tmp_path / "c", num_scenes=3, questions_per_scene=5, seed=8, images=False)
    for k in ("questions_file", "scenes_file"):
        assert Path(a[k]).read_bytes() == Path(b[k]).read_bytes() != Path(c[k]).read_bytes()


def test_generator_catches_a_wrong_answer(monkeypatch, tmp_path):
    """The reference check is live: a generator that lies is stopped."""
    import vqa.datasets.gqa_synth.questions as Q

    real = Q.GQAQuestionGenerator._queryAttr

    def lying(self, w, rng):
        m = real(self, w, rng)
        m.answer = "nonsense"
        return m
    monkeypatch.setattr(Q.GQAQuestionGenerator, "_queryAttr", lying)
    monkeypatch.setitem(Q.KINDS, "queryAttr", 1000)
    with pytest.raises(RuntimeError, match="reference executor"):
        generate_gqa_dataset(tmp_path, num_scenes=2, questions_per_scene=5, seed=0, images=False)


def test_cli_generate_format_gqa_with_images_and_evaluate(tmp_path):
    out = tmp_path / "w"
    r = subprocess.run([sys.executable, "-m", "vqa", "generate", "--format", "gqa", "--out", str(out),
                        "--num-scenes", "2", "--questions-per-scene", "6", "--seed", "1", "--split", "val",
                        "--image-size", "96x64"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    p = paths(out, "val")
    from PIL import Image
    assert Image.open(p["images"] / "0.jpg").size == (96, 64)
    rep = check_gqa(p["questions"], p["scenes"], p["images"])
    assert rep.ok, rep.format()
    report = evaluate_gqa(p["questions"], p["scenes"], choices=p["choices"], reasoner="asp")
    assert report["accuracy"] == 100.0 and report["validity"] == 100.0 and report["scored"] == 12


@pytest.mark.slow
def test_asp_equals_reference_on_a_bigger_world(tmp_path):
    summary = generate_gqa_dataset(tmp_path, num_scenes=500, questions_per_scene=10, seed=11, split="train",
                                   images=False)
    n, disagree = differential(summary["questions_file"], summary["scenes_file"])
    assert n == summary["num_questions"] >= 4900 and disagree == []


def test_annotations_point_at_the_objects_named(world):
    """GQA's `annotations`: token index -> object id, in the question, the full answer and the
    answer. Each annotated token is the object's name, a category above it, their plural or a
    pronoun; every single object a program argument names (select, relate, verify/choose rel)
    is annotated in the question or (relS/relO: the object found) in the answer."""
    from vqa.datasets.gqa_synth.questions import gqa_tokens
    from vqa.datasets.gqa_synth.world import PLURALS

    out, _ = world
    p = paths(out, "val")
    qs = json.loads(p["questions"].read_text())
    sgs = json.loads(p["scenes"].read_text())
    n = Counter()
    for r in qs.values():
        objs = sgs[r["imageId"]]["objects"]
        ann = r["annotations"]
        assert set(ann) == {"question", "answer", "fullAnswer"}
        for field, text in (("question", r["question"]), ("fullAnswer", r["fullAnswer"]), ("answer", r["answer"])):
            toks = gqa_tokens(text)
            for k, oid in ann[field].items():
                word = toks[int(k)].lower()
                names = [objs[oid]["name"]] + categories_of(objs[oid]["name"])
                assert word in names + [PLURALS.get(x) for x in names] + ["it"], (text, k, oid)
                n[field] += 1
        named = {a["argument"].rsplit("(", 1)[1].rstrip(")") for a in r["semantic"]
                 if a["operation"] in ("select", "relate", "verify rel", "choose rel") and "(" in a["argument"]}
        single = {i for i in named if i != "-" and "," not in i}
        assert single <= set(ann["question"].values()) | set(ann["answer"].values()), r["question"]
    assert n["question"] > 200 and n["fullAnswer"] > 100 and n["answer"] > 20


def test_same_seed_same_world_whatever_the_hash_seed(tmp_path):
    """A seed gives one world: nothing depends on the order of a set of strings (which
    changes with PYTHONHASHSEED from one process to the next)."""
    import os

    files = []
    for h in ("1", "2"):
        out = tmp_path / h
        r = subprocess.run([sys.executable, "-m", "vqa", "generate", "--format", "gqa", "--out", str(out),
                            "--num-scenes", "12", "--questions-per-scene", "8", "--seed", "4", "--no-images",
                            "--split", "val"], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": h})
        assert r.returncode == 0, r.stderr
        p = paths(out, "val")
        files.append((p["questions"].read_text(), p["scenes"].read_text()))
    assert files[0] == files[1]
