"""GQA question parser: target tokens, grammar, training end to end on tiny official-format
files, checkpoint/resume/export, and `vqa evaluate --dataset gqa --program-source parsed`."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vqa.datasets.gqa import iter_question_records
from vqa.datasets.gqa_synth.generate import generate_gqa_dataset
from vqa.language.gqa_parser import (DEFAULT_CHECKPOINT, GQAGrammar, GQAProgramVocab, GQAQuestionParser,
                                     GQATrainConfig, from_tokens, gqa_normalise, normalised_semantic, strip_ids,
                                     to_tokens, train_gqa_parser)
from vqa.language.grammar import greedy_search

ROOT = Path(__file__).parents[1]
FIX = Path(__file__).parent / "fixtures" / "gqa"


def test_strip_ids_keeps_what_is_not_an_id():
    assert strip_ids("select", "man (1232)") == "man"
    assert strip_ids("select", "people (12,13)") == "people"
    assert strip_ids("relate", "fork,on,s (-)") == "fork,on,s"
    assert strip_ids("choose rel", "dog,to the left of|to the right of,s (5)") == "dog,to the left of|to the right of,s"
    assert strip_ids("filter color", "not(red)") == "not(red)"
    assert strip_ids("verify size", "small ") == "small"
    assert strip_ids("select", "scene") == "scene"


def test_tokens_round_trip_on_real_and_fixture_programs():
    n = 0
    for f in ("val_balanced_questions.json", "families_questions.json"):
        for _, qid, rec in iter_question_records(FIX / f):
            toks = to_tokens(rec["semantic"])
            back = from_tokens(toks)
            assert len(back) == len(rec["semantic"])
            for a, b in zip(back, rec["semantic"]):
                assert a["operation"] == b["operation"].strip() and a["dependencies"] == b["dependencies"]
                assert a["argument"] == strip_ids(b["operation"], b["argument"]).replace(", ", ",")
            assert normalised_semantic(back) == back
            n += 1
    assert n > 10
    toks = to_tokens([{"operation": "select", "argument": "man (1)", "dependencies": []},
                      {"operation": "filter color", "argument": "not(red)", "dependencies": [0]}])
    assert toks == ["@select", "man", "@filter color", "#0", "not", "(", "red", ")"]


def test_tokenizer_has_no_clevr_synonyms():
    assert gqa_normalise("Is the shiny ball big?") == ["is", "the", "shiny", "ball", "big"]
    assert gqa_normalise("What's the man's shirt?") == ["what", "is", "the", "man", "s", "shirt"]


def test_grammar_keeps_random_decoding_well_formed():
    progs = [to_tokens(r["semantic"]) for _, _, r in iter_question_records(FIX / "families_questions.json")]
    vocab = GQAProgramVocab.build(progs)
    grammar = GQAGrammar(vocab, max_len=30)
    rng = np.random.default_rng(0)

    class Random:
        rows = 16

        def step(self, tokens):
            return rng.normal(size=(self.rows, len(vocab))) * 3

        def select(self, rows):
            self.rows = len(rows)
    for d in greedy_search(Random(), grammar):
        assert d.tokens and d.tokens[0].startswith("@") and len(d.tokens) <= 30
        sem = from_tokens(d.tokens)
        for i, s in enumerate(sem):
            assert s["dependencies"] == sorted(set(s["dependencies"])) and all(k < i for k in s["dependencies"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gqa_parser")
    tr = generate_gqa_dataset(out / "train", num_scenes=12, questions_per_scene=8, seed=1, split="train", images=False)
    va = generate_gqa_dataset(out / "val", num_scenes=3, questions_per_scene=6, seed=2, split="val", images=False)
    return out, tr, va


def test_train_resume_export_and_evaluate_parsed(tiny, tmp_path):
    out, tr, va = tiny
    ckpt = tmp_path / "gqa_parser.pt"
    cfg = GQATrainConfig(steps=6, batch_size=16, eval_every=3, eval_size=5, ckpt_every=3,
                         model=dict(dim=32, enc_layers=1, dec_layers=1))
    logs = []
    s1 = train_gqa_parser([tr["questions_file"], FIX / "families_questions.json"], va["questions_file"], ckpt, cfg,
                          log=logs.append)
    assert s1["steps"] == 6 and ckpt.exists() and Path(str(ckpt) + ".state").exists()
    assert s1["held_out"]["questions"] == 18
    parser = GQAQuestionParser.from_checkpoint(ckpt)
    # the real-format fixture's words and program tokens are in the vocabularies
    assert "wearing" in parser.tokenizer.index and "@verify rel" in parser.vocab.index
    # resume continues from the saved step
    cfg2 = GQATrainConfig(steps=9, model=cfg.model)
    s2 = train_gqa_parser([tr["questions_file"], FIX / "families_questions.json"], va["questions_file"], ckpt, cfg2,
                          resume=True, log=logs.append)
    assert s2["steps"] == 9 and any("resumed at step 6" in m for m in logs)
    # numpy export parses exactly like torch
    r = subprocess.run([sys.executable, "-m", "vqa", "export-numpy", str(ckpt)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    npz = GQAQuestionParser.from_checkpoint(ckpt.with_suffix(".npz"))
    parser = GQAQuestionParser.from_checkpoint(ckpt)
    texts = [rec["question"] for _, _, rec in iter_question_records(va["questions_file"])]
    assert [p.tokens for p in npz.parse_batch(texts)] == [p.tokens for p in parser.parse_batch(texts)]
    # the CLI evaluates parsed programs with the official metrics and reports exact match
    r = subprocess.run([sys.executable, "-m", "vqa", "evaluate", "--dataset", "gqa", "--questions",
                        va["questions_file"], "--scenes", va["scenes_file"], "--program-source", "parsed",
                        "--parser-checkpoint", str(ckpt), "--reasoner", "reference", "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["program_source"] == "parsed" and rep["programs_parsed"] == 18
    assert 0 <= rep["program_exact_match"] <= 100 and rep["scored"] == 18


@pytest.mark.slow
def test_training_learns_a_tiny_world(tiny, tmp_path):
    """A few hundred steps are enough to get most of 96 training questions right: the
    target side and the batches are wired correctly (a shuffled target would not learn)."""
    out, tr, va = tiny
    ckpt = tmp_path / "p.pt"
    cfg = GQATrainConfig(steps=400, batch_size=32, lr=3e-3, warmup=20, eval_every=0, ckpt_every=0,
                         unk_prob=0, drop_prob=0, insert_prob=0, model=dict(dim=64, enc_layers=1, dec_layers=1))
    s = train_gqa_parser([tr["questions_file"]], tr["questions_file"], ckpt, cfg, log=lambda m: None)
    assert s["held_out"]["exact_match"] > 0.5


def test_bad_training_file_is_one_clear_error(tmp_path):
    from vqa.errors import DataError

    bad = tmp_path / "q.json"
    bad.write_text(json.dumps({"1": {"imageId": "1", "question": "What?", "answer": "x"}}))
    with pytest.raises(DataError, match="semantic"):
        train_gqa_parser([bad], bad, tmp_path / "p.pt", GQATrainConfig(steps=1))


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="no shipped GQA parser")
def test_shipped_checkpoint_parses_a_fresh_world(tmp_path):
    va = generate_gqa_dataset(tmp_path, num_scenes=20, questions_per_scene=10, seed=9, split="val", images=False)
    parser = GQAQuestionParser.from_checkpoint(DEFAULT_CHECKPOINT)
    from vqa.language.gqa_parser import evaluate_gqa_parser
    from vqa.datasets.gqa import SceneGraphs
    recs = {qid: rec for _, qid, rec in iter_question_records(va["questions_file"])}
    res = evaluate_gqa_parser(parser, recs, SceneGraphs(va["scenes_file"]))
    assert res["exact_match"] >= 0.97 and res["answer_accuracy"] >= 0.97, res["mistakes"][:3]


def test_ground_ids_puts_object_ids_back():
    from vqa.datasets.gqa import SceneGraphs
    from vqa.language.gqa_parser import ground_ids

    sg = SceneGraphs(FIX / "val_sceneGraphs.json")["2354786"]
    sem = [{"operation": "select", "argument": "man", "dependencies": []},
           {"operation": "relate", "argument": "_,holding,o", "dependencies": [0]},
           {"operation": "query", "argument": "name", "dependencies": [1]}]
    got = ground_ids(sem, sg)
    assert [s["argument"] for s in got] == ["man (1232)", "_,holding,o (1233)", "name"]
    sem[0]["argument"] = "zebra"
    assert ground_ids(sem, sg)[0]["argument"] == "zebra (-)"
    # grounding then stripping gives the parsed program back
    assert normalised_semantic(got) == normalised_semantic([dict(s, argument=a) for s, a in
                                                            zip(got, ["man", "_,holding,o", "name"])])
