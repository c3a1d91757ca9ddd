"""GQA's official metrics on hand-computed examples, and the evaluation end to end."""
import json
from pathlib import Path

import pytest

from vqa.errors import DataError, VQAError
from vqa.eval.gqa import chi_square, evaluate_gqa, format_report, gqa_metrics, load_questions

FIX = Path(__file__).parent / "fixtures" / "gqa"


def sem(*ops):
    return [{"operation": o, "argument": a, "dependencies": []} for o, a in ops]


def rec(answer, structural, semantic, detailed, *, balanced=True, entailed=(), group=None, program=None, words=4):
    return {"answer": answer, "isBalanced": balanced, "question": " ".join(["w"] * words),
            "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
            "entailed": list(entailed), "groups": {"global": group, "local": None},
            "semantic": program or sem(("select", "x (1)"), ("query", "name"))}


QUESTIONS = {
    "q1": rec("cat", "query", "obj", "queryObject", entailed=["q2", "q3"], group="animal"),
    "q2": rec("yes", "verify", "attr", "verifyAttr", entailed=["q1"],
              program=sem(("select", "x (1)"), ("verify color", "red"))),
    "q3": rec("red", "choose", "attr", "chooseAttr", entailed=["q1", "q3"], group="color",
              program=sem(("select", "x (1)"), ("filter size", "big"), ("choose color", "red|blue"))),
    "q4": rec("blue", "query", "attr", "queryAttr", group="color", program=sem(("select", "x (1)"), ("query", "color"))),
    "q5": rec("dog", "query", "obj", "queryObject", balanced=False, group="animal"),
    "q6": rec("color", "compare", "attr", "twoCommon", words=7,
              program=sem(("select", "a (1)"), ("select", "b (2)"), ("common", ""))),
}
PREDICTIONS = {"q1": "cat", "q2": "no", "q3": "red", "q4": "green", "q5": "dog", "q6": "material"}
CHOICES = {
    "q1": {"valid": ["cat", "dog"], "plausible": ["cat"]},
    "q2": {"valid": ["yes", "no"], "plausible": ["yes"]},
    "q3": {"valid": ["red", "blue"], "plausible": ["red"]},
    "q4": {"valid": ["blue", "red"], "plausible": ["blue"]},
    "q5": {"valid": ["dog"], "plausible": ["dog"]},
    "q6": {"valid": ["x"], "plausible": ["x"]},  # "Common" types: the set is color/material/shape
}


def test_metrics_hand_computed():
    m = gqa_metrics(QUESTIONS, PREDICTIONS, choices=CHOICES)
    # balanced: q1 q2 q3 q4 q6; correct q1 q3
    assert m["scored"] == 5
    assert m["accuracy"] == pytest.approx(40.0)
    assert m["open"] == pytest.approx(50.0)            # query: q1 right, q4 wrong
    assert m["binary"] == pytest.approx(100 / 3)       # q2 wrong, q3 right, q6 wrong
    # q1 correct: entailed q2 (wrong), q3 (right) -> 0.5; q3 correct: entailed q1 (itself excluded) -> 1
    assert m["consistency"] == pytest.approx(75.0) and m["consistency_questions"] == 2
    assert m["validity"] == pytest.approx(80.0)        # q4 "green" not valid
    assert m["plausibility"] == pytest.approx(60.0)    # q2 "no", q4 "green" not plausible
    # animal: gold {cat:1} pred {cat:1} -> 0 (n=1); color: gold {red:1, blue:1}, pred {red, green}
    # -> (1-1)^2/1 + (0-1)^2/1 = 1 (n=2); (0*1 + 1*2) / 3 / 100
    assert m["distribution"] == pytest.approx(2 / 3 / 100)
    assert m["per_structural"]["query"] == {"accuracy": 50.0, "n": 2}
    assert m["per_semantic"]["attr"]["n"] == 4 and m["per_semantic"]["attr"]["accuracy"] == pytest.approx(25.0)
    assert m["per_detailed"]["twoCommon"] == {"accuracy": 0.0, "n": 1}
    # steps as eval.py counts them: "query: name" is not counted
    assert m["per_steps"]["1"]["n"] == 1 and m["per_steps"]["2"]["n"] == 2 and m["per_steps"]["3"]["n"] == 2
    assert m["per_words"]["7"] == {"accuracy": 0.0, "n": 1}


def test_balanced_only_vs_all():
    m = gqa_metrics(QUESTIONS, PREDICTIONS, all_questions=True)
    assert m["scored"] == 6 and m["accuracy"] == pytest.approx(50.0)
    # animal now gold {cat, dog} = pred -> 0; color 1 * 2; (0*2 + 2) / 4 / 100
    assert m["distribution"] == pytest.approx(0.5 / 100)
    assert m["validity"] is None and m["plausibility"] is None  # no choices file
    only = gqa_metrics(QUESTIONS, PREDICTIONS, only={"q1", "q2"})
    assert only["scored"] == 2 and only["accuracy"] == pytest.approx(50.0)


def test_chi_square_definition():
    assert chi_square({"g": {"a": 2, "b": 2}}, {"g": {"a": 4}}) == pytest.approx(((4 - 2) ** 2 / 2 + 2 ** 2 / 2))
    assert chi_square({}, {}) is None


def test_missing_prediction_counts_wrong_and_missing_choices_are_counted():
    m = gqa_metrics(QUESTIONS, {"q1": "cat"}, choices={"q1": CHOICES["q1"]})
    assert m["accuracy"] == pytest.approx(20.0) and m["missing_choices"] == 4
    # q1's entailed questions have no prediction: skipped, so nothing to average
    assert m["consistency"] is None and m["consistency_questions"] == 0


def test_evaluate_end_to_end(tmp_path):
    out, pred = tmp_path / "report.json", tmp_path / "pred.json"
    qfile = FIX / "families_questions.json"
    data = json.loads(qfile.read_text())
    choices = {qid: {"valid": [r["answer"], "yes", "no"], "plausible": [r["answer"]]} for qid, r in data.items()}
    (tmp_path / "choices.json").write_text(json.dumps(choices))
    report = evaluate_gqa(qfile, FIX / "families_sceneGraphs.json", choices=tmp_path / "choices.json",
                          out=out, predictions=pred)
    balanced = [q for q, r in data.items() if r["isBalanced"]]
    assert report["scored"] == len(balanced)
    # every balanced question right except the absent-object one (no answer: query fails)
    assert report["accuracy"] == pytest.approx(100 * (len(balanced) - 1) / len(balanced))
    assert report["failures_by_operation"] == {"query": 1}
    assert report["plausibility"] == report["accuracy"]
    assert json.loads(out.read_text())["accuracy"] == report["accuracy"]
    assert out.with_suffix(".png").stat().st_size > 0
    preds = json.loads(pred.read_text())
    assert all(set(p) == {"questionId", "prediction"} for p in preds)
    assert {p["questionId"]: p["prediction"] for p in preds}["900000"] == "hat"
    text = format_report(report)
    assert "accuracy" in text and "structural type" in text
    # all questions: the unbalanced question with a step the theory does not cover (a negated
    # verify) is scored, counted as unsupported, not a crash
    report = evaluate_gqa(qfile, FIX / "families_sceneGraphs.json", all_questions=True)
    assert report["scored"] == len(data)
    assert report["unsupported_by_operation"] == {"verify pose": 1}
    assert report["failures_by_operation"] == {"query": 1, "verify pose": 1}
    # the reference executor gives the same predictions
    ref = evaluate_gqa(qfile, FIX / "families_sceneGraphs.json", all_questions=True, reasoner="reference")
    assert ref["accuracy"] == report["accuracy"]


def test_limit_and_entailed_questions_are_answered(tmp_path):
    data = json.loads((FIX / "val_balanced_questions.json").read_text())
    records, scored = load_questions(FIX / "val_balanced_questions.json", limit=1)
    assert scored == {"05515938"}
    assert set(records) == {"05515938", "05515939"}  # the entailed question is loaded for consistency
    report = evaluate_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", limit=1)
    assert report["scored"] == 1 and report["answered"] == 2 and report["consistency"] == 100.0
    assert data["05515940"]["isBalanced"] is False
    full = evaluate_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json")
    assert full["scored"] == 4 and full["accuracy"] == 100.0


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(VQAError, match="unknown GQA reasoner"):
        evaluate_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", reasoner="magic")
    sg = {"999": {"width": 10, "height": 10, "objects": {}}}
    (tmp_path / "sg.json").write_text(json.dumps(sg))
    with pytest.raises(DataError, match="no scene graph for image"):
        evaluate_gqa(FIX / "val_balanced_questions.json", tmp_path / "sg.json")


def test_bad_dependencies_and_learned_ontology_file(tmp_path):
    data = json.loads((FIX / "val_balanced_questions.json").read_text())
    data["05515938"]["semantic"][1]["dependencies"] = [2]
    (tmp_path / "q.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"semantic\[1\].dependencies"):
        evaluate_gqa(tmp_path / "q.json", FIX / "val_sceneGraphs.json")
    # a learned ontology file is merged onto the shipped default
    (tmp_path / "o.json").write_text(json.dumps({"types": {"color": ["brown"]}}))
    report = evaluate_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", ontology=tmp_path / "o.json")
    assert report["accuracy"] == 100.0  # merged onto the default, nothing lost


def test_predicted_scene_graphs_held_in_memory_answer_like_gold(tmp_path, monkeypatch):
    """--scene-source predicted: the graphs come as a dict (here the gold ones, standing for
    the scene parser's), answered in this process and in forked workers like the file's."""
    import vqa.vision.gqa_predicted as gp
    from vqa.datasets.gqa import SceneGraphs

    q, s = FIX / "families_questions.json", FIX / "families_sceneGraphs.json"
    graphs = SceneGraphs(s)

    def fake(images, ids, **kw):
        return {i: graphs[i] for i in ids}, {"images_parsed": len(ids)}
    monkeypatch.setattr(gp, "predicted_scene_graphs", fake)
    gold = evaluate_gqa(q, s, all_questions=True, reasoner="reference")
    for workers in (1, 2):
        pred = evaluate_gqa(q, None, all_questions=True, reasoner="reference", scene_source="predicted",
                            images=tmp_path, workers=workers, images_per_task=1)
        assert pred["answered"] == gold["answered"] > 0 and pred["accuracy"] == gold["accuracy"]


def test_a_program_ending_without_an_answer_is_a_failure_not_a_crash():
    """A parsed program can end in `select` (a set of objects, not an answer): the question
    counts as failed, named by its last operation, and the store takes the row."""
    from vqa.eval.gqa import answer_task
    from vqa.reason.gqa_asp import GQAAnswer

    program = json.dumps([["select", "box", []], ["verify color", "red", [0]]])
    ends_in_select = json.dumps([["select", "box", []]])

    def answer(batch):
        return [{"q1": GQAAnswer("q1", "yes"), "q2": GQAAnswer("q2", ["1", "2"])} for _ in batch]

    out = answer_task(answer, {"img": object()}, [("img", 0, 0, [("q1", program), ("q2", ends_in_select)])])
    assert out[0] == ("q1", "yes", None)
    assert out[1][0] == "q2" and out[1][1] is None and out[1][2].startswith("select")
