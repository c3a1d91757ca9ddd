"""The NSM on GQA: typed nodes, concept vocabulary, traces from GQA programs, training end to
end on tiny official-format files, `vqa evaluate --dataset gqa --reasoner nsm`."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vqa.datasets.gqa import SceneGraphs, iter_question_records
from vqa.datasets.gqa_ontology import default_ontology
from vqa.datasets.gqa_program import parse_step
from vqa.datasets.gqa_synth.generate import generate_gqa_dataset
from vqa.reason.nsm_gqa import (GQANSMTrainConfig, gqa_macro_steps, gqa_nsm_ontology, train_nsm_gqa,
                                typed_scene)
from vqa.scene import SceneGraph, SceneObject

ROOT = Path(__file__).parents[1]
FIX = Path(__file__).parent / "fixtures" / "gqa"


def test_typed_scene_spreads_bare_attributes_over_types():
    sg = SceneGraphs(FIX / "val_sceneGraphs.json")["2354786"]
    t = typed_scene(sg, default_ontology())
    man = next(o for o in t.objects if o.id == "1232")
    dog = next(o for o in t.objects if o.id == "1234")
    assert man.attributes["name"] == {"man": 1.0} and "person" in man.attributes["category"]
    assert man.attributes["pose"] == {"standing": 1.0} and man.attributes["age"] == {"young": 1.0}
    assert dog.attributes["color"] == {"brown": 1.0} and "animal" in dog.attributes["category"]
    assert dog.attributes["hposition"] == {"right": 1.0}
    # a predicted graph keeps its typed categories and probabilities
    p = SceneGraph("p", 100, 100, [SceneObject("a", "box", [0, 0, 10, 10], {"color": {"red": 0.7, "blue": 0.3}},
                                               score=0.8)], [])
    a = typed_scene(p, default_ontology()).objects[0]
    assert a.attributes["color"] == {"red": 0.7, "blue": 0.3} and a.score == 0.8
    assert "container" in a.attributes["category"] and a.attributes["hposition"] == {"left": 1.0}


def test_typed_scene_reads_name_readings_as_the_name_distribution():
    p = SceneGraph("p", 100, 100, [SceneObject("a", "apple", [0, 0, 10, 10], {}),
                                   SceneObject("b", "stool", [50, 0, 10, 10], {})], [],
                   info={"name_readings": {"a": {"apple": 0.6, "cup": 0.3}}})
    a, b = typed_scene(p, default_ontology()).objects
    assert a.attributes["name"] == {"apple": 0.6, "cup": 0.3}
    assert a.attributes["category"] == {"fruit": 0.6, "food": 0.6, "container": 0.3}
    assert b.attributes["name"] == {"stool": 1.0} and b.attributes["category"] == {"furniture": 1.0}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("gqa_nsm")
    tr = generate_gqa_dataset(out / "train", num_scenes=10, questions_per_scene=8, seed=4, split="train", images=False)
    va = generate_gqa_dataset(out / "val", num_scenes=3, questions_per_scene=6, seed=5, split="val", images=False)
    return tr, va


def test_concepts_come_from_the_training_graphs(world):
    tr, _ = world
    graphs = SceneGraphs(tr["scenes_file"])
    answers = Counter(r["answer"] for _, _, r in iter_question_records(tr["questions_file"]))
    ont = gqa_nsm_ontology([graphs[i] for i in graphs], answers, default_ontology())
    assert ont.identity == "name" and set(ont.properties["name"]) <= {"box", "cabinet", "stool", "can", "apple",
                                                                      "orange"}
    assert {"container", "furniture", "fruit", "food"} >= set(ont.properties["category"]) >= {"food", "fruit"}
    assert {"color", "material", "size", "shape", "texture", "hposition"} <= set(ont.properties)
    assert set(ont.relations) == {"to the left of", "to the right of", "in front of", "behind", "next to"}
    assert ont.answers[:2] == tuple(a for a, _ in answers.most_common(2)) and "yes" in ont.answers


def test_traces_follow_the_reference_executor(world):
    tr, _ = world
    graphs = SceneGraphs(tr["scenes_file"])
    onto = default_ontology()
    n = n_compare = n_rel = n_not = 0
    for _, qid, rec in iter_question_records(tr["questions_file"]):
        sg = graphs[rec["imageId"]]
        steps = [parse_step(r["operation"], r["argument"], r["dependencies"]) for r in rec["semantic"]]
        macros = gqa_macro_steps(steps, sg, onto, rec["answer"])
        assert macros is not None and 1 <= len(macros) <= 8, rec["question"]
        index = {o: k for k, o in enumerate(sg.ids)}
        if rec["types"]["detailed"] == "queryAttr":
            # the last state is the object asked about, whose id the select/relate argument names
            ids = rec["semantic"][-2]["argument"].rsplit("(", 1)[1].rstrip(")").split(",") \
                if "(" in rec["semantic"][-2]["argument"] else None
            if ids:
                assert macros[-1].target == sorted(index[i] for i in ids)
        assert macros[0].restart == 1 and macros[0].relation == 0
        if rec["types"]["detailed"] == "compare":
            # "Which is larger, A or B?": A or B, then a shift on "large" leaves the winner
            assert [m.op for m in macros[-2:]] == ["or", "shift"] and macros[-1].concepts == (steps[-1].type,)
            assert [sg.objects[k].name for k in macros[-1].target] == [rec["answer"]]
            n_compare += 1
        # the words each step's instruction attends to: a relation's content words (no "to",
        # "the", "of", found all over the question), "not" with a negated filter
        for m in macros:
            assert not {"to", "the", "of", "in", "on"} & set(m.concepts), (rec["question"], m.concepts)
            if m.relation == 1:
                n_rel += 1
                assert m.concepts and set(m.concepts) <= set(rec["question"].lower().replace("?", "").split())
        if any(s.negated and s.family == "filter" for s in steps):
            assert any("not" in m.concepts for m in macros), rec["question"]
            n_not += 1
        n += 1
    assert n == 80 and n_compare >= 1 and n_rel >= 10 and n_not >= 1
    # a wrong answer gives no trace
    steps = [parse_step("select", "box"), parse_step("exist", "?", [0])]
    sg = graphs[next(iter(graphs))]
    got = gqa_macro_steps(steps, sg, onto)
    assert gqa_macro_steps(steps, sg, onto, "maybe") is None and got is not None


def test_train_evaluate_resume_end_to_end(world, tmp_path):
    tr, va = world
    ckpt = tmp_path / "nsm_gqa.pt"
    r = subprocess.run([sys.executable, "-m", "vqa", "train", "nsm", "--dataset", "gqa",
                        "--questions", tr["questions_file"], "--scenes", tr["scenes_file"],
                        "--val-questions", va["questions_file"], "--val-scenes", va["scenes_file"],
                        "--out", str(ckpt), "--epochs", "1", "--batch-size", "16", "--dim", "32", "--steps", "6",
                        "--threads", "1", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["epochs"] == 1 and rep["questions"] == 80 and rep["val"]["questions"] == 18
    r = subprocess.run([sys.executable, "-m", "vqa", "evaluate", "--dataset", "gqa", "--reasoner", "nsm",
                        "--nsm-checkpoint", str(ckpt), "--questions", va["questions_file"], "--scenes",
                        va["scenes_file"], "--choices", va["choices_file"], "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["reasoner"] == "nsm" and ev["scored"] == 18 and ev["answered"] == 18
    for k in ("accuracy", "binary", "open", "validity", "plausibility", "consistency", "distribution"):
        assert k in ev
    assert ev["validity"] is not None
    # resume: one more epoch on the same run
    rep2 = train_nsm_gqa(tr["questions_file"], tr["scenes_file"], out=ckpt, resume=True,
                         config=GQANSMTrainConfig(epochs=2, batch_size=16), log=lambda m: None)
    assert rep2["epochs"] == 2 and len(rep2["history"]) == 2 and rep2["dataset"] == "gqa"
    # what ships: no optimizer state, still a GQA checkpoint that answers like the full one
    from vqa.reason.nsm import load_checkpoint
    from vqa.reason.nsm_gqa import GQANSMReasoner, strip_gqa_checkpoint

    ship = tmp_path / "ship.pt"
    strip_gqa_checkpoint(ckpt, ship)
    data = load_checkpoint(ship)[2]
    assert "optimizer" not in data and "rng" not in data and data["gqa_ontology"] and data["epoch"] == 2
    g = SceneGraphs(va["scenes_file"])
    recs = [r for _, _, r in iter_question_records(va["questions_file"])]
    scenes, texts = [g[r["imageId"]] for r in recs], [r["question"] for r in recs]
    assert [a.answer for a in GQANSMReasoner(ship).answer_batch(scenes, texts)] == \
        [a.answer for a in GQANSMReasoner(ckpt).answer_batch(scenes, texts)]


def test_real_format_fixture_trains(tmp_path):
    """The official-format fixture (real GQA names, attributes and relations) trains."""
    rep = train_nsm_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", out=tmp_path / "n.pt",
                        config=GQANSMTrainConfig(epochs=1, batch_size=4), log=lambda m: None)
    assert rep["questions"] > 0 and rep["history"][0]["answer"] > 0


def test_not_a_gqa_checkpoint(tmp_path):
    from vqa.errors import DataError
    from vqa.reason.nsm_gqa import GQANSMReasoner

    with pytest.raises(DataError):
        GQANSMReasoner(tmp_path / "missing.pt")


def test_function_words_keep_their_identity(world):
    """With nn.Embedding's N(0, 1) start a function word's tag logits spread about 8 against
    the "not a concept" bias of 4: most start (and stay) tagged one-hot as a random concept
    ("size", "shape" and "material" all `shape:round` in the first GQA checkpoint). The GQA
    start keeps them mostly themselves and puts concept words on their concepts."""
    import torch

    from vqa.reason.nsm import NSM, NSMConfig
    from vqa.reason.nsm_data import Vocab
    from vqa.reason.nsm_gqa import concept_tags, init_gqa_word_embeddings

    tr, _ = world
    graphs = SceneGraphs(tr["scenes_file"])
    recs = [r for _, _, r in iter_question_records(tr["questions_file"])]
    ont = gqa_nsm_ontology([graphs[i] for i in graphs], Counter(r["answer"] for r in recs), default_ontology())
    vocab = Vocab.build([r["question"] for r in recs], ont)
    concept_words = {w for vals in ont.properties.values() for v in vals for w in v.split()} | set(ont.relations)
    function = [w for w in vocab.words[2:] if w not in concept_words and w not in ("front", "next")]
    assert {"what", "is", "the"} <= set(function)

    def collapsed(m):
        return sorted(w for w, (tag, p) in concept_tags(m, vocab, function).items() if tag != "-" and p > 0.9)

    torch.manual_seed(0)
    plain = NSM(NSMConfig(dim=64), ont, len(vocab))
    plain.init_word_embeddings(vocab)
    assert len(collapsed(plain)) > len(function) // 4  # the old start: many words are a concept already
    torch.manual_seed(0)
    m = NSM(NSMConfig(dim=64), ont, len(vocab))
    counts = init_gqa_word_embeddings(m, vocab)
    assert collapsed(m) == [] and counts["other"] >= len(function)
    tags = concept_tags(m, vocab, ["red", "box", "front"])
    assert tags["red"][0] == "color:red" and tags["box"][0] == "name:box" and tags["front"][0] == "rel:in front of"


def _same(x, y) -> bool:
    import torch

    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and bool((x == y).all())
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y


def _training_side(world):
    """The world's training records, graphs, GQA ontology, NSM ontology and vocabulary."""
    from vqa.reason.nsm_data import Vocab
    from vqa.reason.nsm_gqa import _records

    tr, _ = world
    recs = _records(tr["questions_file"])
    graphs = SceneGraphs(tr["scenes_file"])
    onto = default_ontology()
    ont = gqa_nsm_ontology([graphs[i] for i in graphs], Counter(r["answer"] for r in recs.values()), onto)
    return recs, graphs, onto, ont, Vocab.build([r["question"] for r in recs.values()], ont)


def test_examples_are_the_same_with_load_workers(world):
    """--load-workers encodes in forked processes: the same examples, in the same order, and
    the per-scene tables / typed graph passed down change nothing against computing them afresh."""
    from vqa.reason.nsm_gqa import _steps, encode_gqa_example, load_gqa_examples

    recs, graphs, onto, ont, vocab = _training_side(world)
    one = load_gqa_examples(recs, graphs, ont, vocab, onto, 8)
    three = load_gqa_examples(recs, graphs, ont, vocab, onto, 8, workers=3)
    assert len(one) == len(recs) and sum("trace" in e for e in one) > len(recs) // 2
    assert _same(one, three)
    qid, rec = next(iter(recs.items()))
    raw = graphs[str(rec["imageId"])]
    fresh = encode_gqa_example(ont, vocab, typed_scene(raw, onto), rec["question"], _steps(rec, qid), rec["answer"],
                               8, one[0]["family"], None, onto, raw)
    assert _same(fresh["trace"], one[0]["trace"])


def test_edge_control_starts_as_the_instruction_only_machine(world):
    """edge_control adds the control state to the edge relevance through a zero-initialised
    layer: at the start it is the plain machine; a checkpoint without it loads unchanged."""
    import torch

    from vqa.reason.nsm import NSM, NSMConfig
    from vqa.reason.nsm_data import collate
    from vqa.reason.nsm_gqa import load_gqa_examples

    recs, graphs, onto, ont, vocab = _training_side(world)
    batch = collate(load_gqa_examples(recs, graphs, ont, vocab, onto, 8)[:16])
    torch.manual_seed(0)
    plain = NSM(NSMConfig(), ont, len(vocab)).eval()
    ctl = NSM(NSMConfig(edge_control=True), ont, len(vocab)).eval()
    missing, unexpected = ctl.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["edge_ctl.bias", "edge_ctl.weight"] and not unexpected
    with torch.no_grad():
        a, b = plain(batch), ctl(batch)
        assert torch.allclose(a["logits"], b["logits"]) and torch.allclose(a["states"], b["states"])
        ctl.edge_ctl.weight.normal_()  # the control state now moves the relation shifts
        c = ctl(batch)
    assert not torch.allclose(a["states"], c["states"])


def test_shift_loss_reaches_saturated_relation_shifts(world):
    """The shift BCE trains each traced shift on its own set: with the edge scores far
    negative (where GQA's relation shifts got stuck) the state's BCE, which sees the shift
    only through the op and relation gates, hardly moves them; the shift BCE does."""
    import torch

    from vqa.reason.nsm import NSM, NSMConfig
    from vqa.reason.nsm_data import collate
    from vqa.reason.nsm_gqa import load_gqa_examples
    from vqa.reason.nsm_train import loss_fn

    recs, graphs, onto, ont, vocab = _training_side(world)
    batch = collate(load_gqa_examples(recs, graphs, ont, vocab, onto, 8))
    assert bool((batch["relation"] == 1).any())
    torch.manual_seed(0)
    model = NSM(NSMConfig(edge_control=True), ont, len(vocab))
    with torch.no_grad():
        model.edge_b.fill_(-8.0)
    grads = []
    for w in (0.0, 1.0):
        model.zero_grad()
        out = model(batch)
        loss, parts = loss_fn(out, batch, 1.0, 1.0, w)
        assert ("shift" in parts) == (w > 0)
        loss.backward()
        grads.append(model.edge_b.grad.abs().item())
    assert grads[1] > 10 * grads[0]


SHIPPED = ROOT / "data" / "checkpoints" / "nsm_gqa.pt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped GQA NSM checkpoint")
def test_shipped_checkpoint_answers_a_fresh_world(tmp_path):
    """The shipped file: small, no optimizer state, a GQA checkpoint, and it answers the
    questions of a world it never saw (seed 41) from the graphs and texts alone (98.27 % on
    the 3,000 of seed 300; 100 questions here)."""
    from vqa.reason.nsm import load_checkpoint
    from vqa.reason.nsm_gqa import answer_questions_nsm

    assert SHIPPED.stat().st_size < 5e6
    model, _, data = load_checkpoint(SHIPPED)
    assert "optimizer" not in data and "gqa_ontology" in data and model.config.edge_control
    w = generate_gqa_dataset(tmp_path, num_scenes=10, questions_per_scene=10, seed=41, split="val", images=False)
    recs = {q: r for _, q, r in iter_question_records(w["questions_file"])}
    answers, stats = answer_questions_nsm(recs, w["scenes_file"], checkpoint=SHIPPED)
    right = sum(answers[q] == r["answer"] for q, r in recs.items())
    assert len(recs) >= 90 and right >= 0.9 * len(recs), (right, len(recs))
