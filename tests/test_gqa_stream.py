"""GQA evaluation at scale, in small: many gold images per clingo call answer as one image per
call does (differential), shards merge to the whole run (`vqa report --dataset gqa`), and
the on-disk store names duplicate question ids."""
import json
from pathlib import Path

import pytest

from vqa.cli import main
from vqa.datasets.gqa import SceneGraphs, iter_question_records
from vqa.datasets.gqa_program import parse_step
from vqa.datasets.gqa_synth.generate import generate_gqa_dataset
from vqa.errors import DataError
from vqa.eval.gqa import evaluate_gqa, score_predictions
from vqa.reason.gqa_asp import GQAReasoner

FIX = Path(__file__).parent / "fixtures" / "gqa"
METRICS = ("scored", "accuracy", "binary", "open", "consistency", "consistency_questions", "distribution",
           "per_structural", "per_semantic", "per_detailed", "per_steps", "per_words", "validity", "plausibility")


def _by_image(questions, scenes):
    graphs, by = SceneGraphs(scenes), {}
    for _, qid, rec in iter_question_records(questions):
        by.setdefault(str(rec["imageId"]), {})[qid] = [parse_step(s["operation"], s["argument"], s["dependencies"])
                                                       for s in rec["semantic"]]
    return [(graphs[i], p) for i, p in sorted(by.items())]


def test_many_images_per_call_answer_as_one_image_per_call(tmp_path):
    generate_gqa_dataset(tmp_path, num_scenes=12, questions_per_scene=8, seed=11, split="val", images=False)
    batch = _by_image(tmp_path / "questions1.2" / "val_balanced_questions.json",
                      tmp_path / "sceneGraphs" / "val_sceneGraphs.json")
    batch += _by_image(FIX / "families_questions.json", FIX / "families_sceneGraphs.json")
    batch += _by_image(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json")
    # an uncertain object: that image goes to a call of its own inside the batch
    scene, programs = batch[0]
    scene.objects[0].score = 0.9
    r = GQAReasoner()
    one = [r.answer_image(s, p) for s, p in batch]
    many = r.answer_images(batch)
    n = 0
    for a, b in zip(one, many):
        assert a.keys() == b.keys()
        for qid in a:
            assert (a[qid].answer, a[qid].failed_step, a[qid].trace) == (b[qid].answer, b[qid].failed_step,
                                                                          b[qid].trace), qid
            n += 1
    assert n > 100 and sum(x.answer is None for res in one for x in res.values()) >= 1  # failures included
    quiet = r.answer_images(batch, trace=False)
    assert [{q: x.answer for q, x in res.items()} for res in quiet] == [{q: x.answer for q, x in res.items()}
                                                                         for res in one]
    assert all(not x.trace for res in quiet[1:] for x in res.values())


def _replicated(tmp_path, images=24):
    data = json.loads((FIX / "families_questions.json").read_text())
    graph = json.loads((FIX / "families_sceneGraphs.json").read_text())["1000"]
    questions, graphs = {}, {}
    for i in range(images):
        image = f"im{i}"
        graphs[image] = graph
        ids = [f"{i:04d}{j:03d}" for j in range(len(data))]
        for j, rec in enumerate(data.values()):
            questions[ids[j]] = dict(rec, imageId=image, entailed=[ids[(j + 1) % len(ids)], ids[(j + 3) % len(ids)]],
                                     groups={"global": "g" if j % 2 else None, "local": None},
                                     answer=rec["answer"] if (i + j) % 5 else "wrong")
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "sg.json").write_text(json.dumps(graphs))
    choices = {q: {"valid": [r["answer"], "yes"], "plausible": [r["answer"]]} for q, r in questions.items()}
    (tmp_path / "c.json").write_text(json.dumps(choices))
    return tmp_path / "q.json", tmp_path / "sg.json", tmp_path / "c.json", questions


def test_shards_merge_to_the_whole_run(tmp_path, capsys):
    q, s, c, questions = _replicated(tmp_path)
    whole = evaluate_gqa(q, s, choices=c, predictions=tmp_path / "whole.json", reasoner="reference")
    preds, seen = {}, set()
    shards = []
    for i in range(3):
        pred = tmp_path / f"shard{i}.json"
        rep = evaluate_gqa(q, s, choices=c, predictions=pred, reasoner="reference", shard=(i, 3))
        assert rep["shard"] == f"{i}/3" and 0 < rep["scored"] < whole["scored"]
        part = {p["questionId"]: p["prediction"] for p in json.loads(pred.read_text())}
        assert not seen & set(part)  # each question in one shard only
        assert len({questions[k]["imageId"] for k in part} & {questions[k]["imageId"] for k in seen}) == 0
        seen |= set(part)
        preds.update(part)
        shards.append(str(pred))
    assert preds == {p["questionId"]: p["prediction"] for p in json.loads((tmp_path / "whole.json").read_text())}
    assert main(["report", "--dataset", "gqa", "--questions", str(q), "--choices", str(c), "--predictions", *shards,
                 "--out", str(tmp_path / "merged.json"), "--json"]) == 0
    captured = capsys.readouterr()
    merged = json.loads(captured.out)
    for k in METRICS:
        assert merged[k] == whole[k], k
    steps = [x for x in captured.err.splitlines() if x.startswith("vqa report: [")]  # progress, one line a step
    assert len(steps) == 2 + len(shards) + 1 and all(f"/{len(steps)}]" in x for x in steps)
    assert sum("reading the predictions" in x for x in steps) == len(shards)
    assert merged["missing_predictions"] == 0 and (tmp_path / "merged.md").exists()
    # one shard alone: the others' questions are missing, and said so
    alone = score_predictions(q, shards[0])
    assert alone["missing_predictions"] > 0 and any("no prediction" in w for w in alone["warnings"])
    # two files that disagree on a question
    data = json.loads(Path(shards[0]).read_text())
    data[0]["prediction"] = "something else"
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="earlier file"):
        score_predictions(q, [shards[0], tmp_path / "other.json"])


def test_duplicate_question_id_across_parts_is_named(tmp_path):
    data = json.loads((FIX / "val_balanced_questions.json").read_text())
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.json").write_text(json.dumps(data))
    (parts / "b.json").write_text(json.dumps({k: data[k] for k in list(data)[:1]}))
    with pytest.raises(DataError, match="appears twice"):
        evaluate_gqa(parts, FIX / "val_sceneGraphs.json", reasoner="reference")
    (parts / "b.json").unlink()
    assert evaluate_gqa(parts, FIX / "val_sceneGraphs.json", reasoner="reference")["accuracy"] == 100.0
