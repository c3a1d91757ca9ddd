"""GQA evaluation in step with the official eval.py: the predictions file written is complete
for the questions file (what eval.py looks up), `--from-predictions` scores any model's file
with the same metrics (checked against a separate re-implementation of eval.py's loop), and
the warnings say when the scores cannot match the official ones."""
import json
import random
from pathlib import Path

import pytest

from vqa.cli import main
from vqa.errors import DataError
from vqa.eval.gqa import evaluate_gqa, score_predictions

FIX = Path(__file__).parent / "fixtures" / "gqa"
METRICS = ("scored", "accuracy", "binary", "open", "consistency", "consistency_questions", "validity",
           "plausibility", "distribution", "per_structural", "per_semantic", "per_detailed", "per_steps",
           "per_words", "missing_choices")


def make_split(tmp_path, *, drop_entailed=False):
    """The families questions with entailment links, global groups, some unbalanced
    questions, and a choices file; with `drop_entailed`, the unbalanced questions are
    removed (a balanced-only file whose entailed questions are partly missing)."""
    data = json.loads((FIX / "families_questions.json").read_text())
    rng = random.Random(5)
    ids = list(data)
    for i, (qid, r) in enumerate(data.items()):
        r["entailed"] = rng.sample(ids, 3)  # may name the question itself (eval.py skips it)
        r["groups"] = {"global": rng.choice([None, "g1", "g2"]), "local": None}
        r["isBalanced"] = i % 4 != 0
    if drop_entailed:
        data = {q: r for q, r in data.items() if r["isBalanced"]}
    (tmp_path / "q.json").write_text(json.dumps(data))
    choices = {qid: {"valid": [r["answer"], "yes", "no", "hat"], "plausible": [r["answer"], "yes"]}
               for qid, r in data.items() if rng.random() < 0.8}
    (tmp_path / "choices.json").write_text(json.dumps(choices))
    return tmp_path / "q.json", tmp_path / "choices.json", data, choices


def official_scores(questions: dict, predictions: dict, choices: dict) -> dict:
    """The loop of GQA's eval.py, written out again from its description (balanced questions;
    consistency over each correct question's entailed ones, itself excluded)."""
    acc, binary, open_, valid, plaus, cons = [], [], [], [], [], []
    for qid, q in questions.items():
        if not q["isBalanced"]:
            continue
        pred = predictions[qid]  # eval.py stops when one is missing
        ok = float(pred == q["answer"])
        acc.append(ok)
        (open_ if q["types"]["structural"] == "query" else binary).append(ok)
        if qid in choices:
            valid.append(float(pred in choices[qid]["valid"]))
            plaus.append(float(pred in choices[qid]["plausible"]))
        ent = [e for e in q["entailed"] if e != qid]
        if ok and ent:
            cons.append(sum(predictions[e] == questions[e]["answer"] for e in ent) / len(ent))

    def avg(x):
        return 100 * sum(x) / len(x) if x else None
    return {"accuracy": avg(acc), "binary": avg(binary), "open": avg(open_), "validity": avg(valid),
            "plausibility": avg(plaus), "consistency": avg(cons)}


@pytest.mark.parametrize("reasoner", ["asp", "reference"])
def test_written_predictions_are_complete_and_score_the_same(tmp_path, reasoner):
    qfile, cfile, data, choices = make_split(tmp_path)
    pred = tmp_path / "pred.json"
    run = evaluate_gqa(qfile, FIX / "families_sceneGraphs.json", choices=cfile, predictions=pred, reasoner=reasoner)
    written = json.loads(pred.read_text())
    # every question of the file, in file order, official keys only, "" where no answer
    assert [p["questionId"] for p in written] == list(data)
    assert all(set(p) == {"questionId", "prediction"} and isinstance(p["prediction"], str) for p in written)
    preds = {p["questionId"]: p["prediction"] for p in written}
    assert sum(v == "" for v in preds.values()) >= run["failed"] > 0
    assert run["predictions_written"] == len(data) and run["missing_choices"] > 0
    # what eval.py would compute on it
    official = official_scores(data, preds, choices)
    for k, v in official.items():
        assert run[k] == pytest.approx(v, abs=1e-9), k
    # read back: the same metrics, no scene graphs involved
    back = score_predictions(qfile, pred, choices=cfile)
    for k in METRICS:
        assert back[k] == run[k], k
    assert back["missing_predictions"] == 0

    # a partly wrong file (another model's): --from-predictions agrees with eval.py's loop
    rng = random.Random(2)
    wrong = [{"questionId": p["questionId"], "prediction": rng.choice(["yes", "no", "hat", p["prediction"]])}
             for p in written]
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    other = score_predictions(qfile, tmp_path / "wrong.json", choices=cfile)
    official = official_scores(data, {p["questionId"]: p["prediction"] for p in wrong}, choices)
    assert other["accuracy"] != run["accuracy"]
    for k, v in official.items():
        assert other[k] == pytest.approx(v, abs=1e-9), k


def test_from_predictions_cli_and_warnings(tmp_path, capsys):
    qfile, cfile, data, _ = make_split(tmp_path, drop_entailed=True)
    pred, out = tmp_path / "pred.json", tmp_path / "r.json"
    args = ["evaluate", "--dataset", "gqa", "--questions", str(qfile), "--no-progress", "--json"]
    assert main([*args, "--scenes", str(FIX / "families_sceneGraphs.json"), "--predictions", str(pred),
                 "--choices", str(cfile), "--out", str(out)]) == 0
    run = json.loads(capsys.readouterr().out)
    assert out.with_suffix(".md").exists() and "Failed questions" in out.with_suffix(".md").read_text()
    assert run["failed_questions"][0]["questionId"] in out.with_suffix(".md").read_text()
    # scored from the file alone: no --scenes
    assert main([*args, "--from-predictions", str(pred), "--choices", str(cfile), "--out", str(tmp_path / "s.json")]) == 0
    captured = capsys.readouterr()
    scored = json.loads(captured.out)
    for k in METRICS:
        assert scored[k] == run[k], k
    warn = [x for x in captured.err.splitlines() if "warning" in x]
    missing = len({e for r in data.values() for e in r["entailed"]} - set(data))
    assert missing > 0 and scored["entailed_missing"] == missing
    assert any(f"{missing} entailed question(s)" in w for w in warn), warn
    assert any(f"{scored['missing_choices']} of {scored['scored']} scored question(s) have no entry" in w
               for w in warn), warn
    assert (tmp_path / "s.md").exists()
    # a file missing some predictions: counted wrong, and said
    some = json.loads(pred.read_text())[3:]
    (tmp_path / "some.json").write_text(json.dumps(some))
    assert main([*args, "--from-predictions", str(tmp_path / "some.json")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["missing_predictions"] == 3
    assert "3 scored question(s) have no prediction" in captured.err


@pytest.mark.parametrize("content, where", [
    ({"1": "yes"}, "expected a list"),
    ([{"questionId": "1"}], "record [0]: field 'prediction'"),
    ([{"questionId": "1", "prediction": "a"}, {"questionId": 2.5, "prediction": "a"}], "record [1]: field 'questionId'"),
    ([{"questionId": "1", "prediction": None}], "field 'prediction': expected a string"),
])
def test_bad_predictions_file_is_named(tmp_path, content, where):
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=where.replace("[", r"\[").replace("]", r"\]")):
        score_predictions(FIX / "val_balanced_questions.json", tmp_path / "p.json")


def test_limit_still_writes_every_question(tmp_path):
    data = json.loads((FIX / "families_questions.json").read_text())
    pred = tmp_path / "p.json"
    report = evaluate_gqa(FIX / "families_questions.json", FIX / "families_sceneGraphs.json", limit=5,
                          predictions=pred, reasoner="reference")
    written = json.loads(pred.read_text())
    assert [p["questionId"] for p in written] == list(data)
    answered = [p for p in written if p["prediction"]]
    assert report["answered"] == 5 and len(answered) == 5 and all(p["prediction"] == "" for p in written[5:])


def test_printed_summary_names_failed_questions(tmp_path, capsys):
    """The summary `vqa evaluate --dataset gqa` prints names the failed questions (not only
    their number), as the .md does."""
    qfile, cfile, _, _ = make_split(tmp_path, drop_entailed=True)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", "gqa", "--questions", str(qfile), "--no-progress",
                 "--scenes", str(FIX / "families_sceneGraphs.json"), "--predictions", str(tmp_path / "p.json"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    run = json.loads(out.read_text())
    assert run["failed"] >= 1
    line = next(x for x in printed.splitlines() if x.startswith("failed questions"))
    first = run["failed_questions"][0]
    assert f"{first['questionId']} (image {first['imageId']}, at {first['operation']})" in line
    assert line.count("(image ") == min(run["failed"], 5)
