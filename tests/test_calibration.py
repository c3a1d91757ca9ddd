"""Calibration of `confidence` (issue 25): reliability bins, ECE, the isotonic map, and the
report's reliability plot and labels."""
import json
import random

import pytest

from vqa.calibration import Calibration, apply, calibration_summary, expected_calibration_error, reliability
from vqa.errors import DataError
from vqa.plots import run_labels
from vqa.eval.report import format_report, markdown_report, score_records, write_reports


def _rec(c, ok, i=0):
    return {"qid": str(i), "answer": "yes", "prediction": "yes" if ok else "no", "confidence": c,
            "template": "zero_hop", "function": "exist"}


def test_ece_by_hand():
    recs = [_rec(0.95, True), _rec(0.95, False), _rec(0.15, False), _rec(0.15, False)]
    # bin 0.9-1.0: accuracy 0.5, confidence 0.95; bin 0.1-0.2: accuracy 0, confidence 0.15
    assert expected_calibration_error(recs) == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    bins = reliability(recs)
    assert [b["n"] for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[9]["accuracy"] == 0.5 and bins[9]["confidence"] == pytest.approx(0.95)
    # no answer: confidence 0, never right; unscored records and records without confidence left out
    none = {"qid": "x", "answer": "yes", "prediction": None, "confidence": 0.0}
    assert reliability([none])[0]["n"] == 1 and reliability([none])[0]["accuracy"] == 0.0
    assert calibration_summary([{"answer": None, "prediction": "a", "confidence": 1.0}]) is None
    assert calibration_summary([{"answer": "a", "prediction": "a"}]) is None


def test_calibrated_and_miscalibrated_samples():
    rng = random.Random(0)
    good = [_rec(c, rng.random() < c, i) for i, c in enumerate(rng.random() for _ in range(20000))]
    assert expected_calibration_error(good) < 0.02
    # overconfident: right with probability c^2
    bad = [_rec(c, rng.random() < c * c, i) for i, c in enumerate(rng.random() for _ in range(20000))]
    assert expected_calibration_error(bad) > 0.1


def test_isotonic_map_fitted_on_one_sample_calibrates_another(tmp_path):
    rng = random.Random(1)

    def sample(n):
        return [_rec(c, rng.random() < c * c, i) for i, c in enumerate(rng.random() for _ in range(n))]

    fit_on, held_out = sample(20000), sample(20000)
    cal = Calibration.fit(fit_on, {"what": "test"})
    assert all(a <= b for a, b in zip(cal.y, cal.y[1:]))  # monotone
    assert all(a < b for a, b in zip(cal.x, cal.x[1:]))
    # pool adjacent violators keeps the total: fitted values sum to the number right
    pairs = sorted((r["confidence"], r["prediction"] == r["answer"]) for r in fit_on)
    assert sum(cal(c) for c, _ in pairs) == pytest.approx(sum(ok for _, ok in pairs), rel=1e-9)
    after = apply(held_out, cal)
    assert after[0]["raw_confidence"] == held_out[0]["confidence"]
    assert expected_calibration_error(held_out) > 0.1 and expected_calibration_error(after) < 0.03
    cal.save(tmp_path / "c.json")
    again = Calibration.load(tmp_path / "c.json")
    assert again.x == cal.x and again.y == cal.y and again.meta["what"] == "test"
    (tmp_path / "bad.json").write_text(json.dumps({"x": [0.5, 0.1], "y": [0.1, 0.2]}))
    with pytest.raises(DataError, match="bad.json"):
        Calibration.load(tmp_path / "bad.json")


def test_report_has_calibration_and_a_reliability_plot(tmp_path):
    recs = [_rec(0.95, True, 0), _rec(0.95, False, 1), _rec(0.15, False, 2), _rec(0.15, False, 3)]
    report = {"reasoner": "asp", **score_records(recs)}
    assert report["calibration"]["ece"] == pytest.approx(0.3)
    assert "calibration: ECE 0.3000 over 4 questions" in format_report(report)
    md = markdown_report(report)
    assert "Expected calibration error **0.3000**" in md and "| 0.9-1.0 | 2 | 0.9500 | 0.5000 |" in md
    write_reports(report, tmp_path / "r" / "report.json")
    assert (tmp_path / "r" / "report.reliability.png").stat().st_size > 1000
    assert (tmp_path / "r" / "report.png").stat().st_size > 1000
    # without confidences: no calibration, no reliability plot
    plain = score_records([{k: v for k, v in r.items() if k != "confidence"} for r in recs])
    assert "calibration" not in plain


def test_compare_labels_name_what_differs():
    a = {"reasoner": "asp", "scene_source": "predicted", "program_source": "parsed"}
    b = {"reasoner": "asp", "scene_source": "gold", "program_source": "gold"}
    assert run_labels(a, b) == ("predicted scenes, parsed programs", "gold scenes, gold programs")
    assert run_labels(a, {**a, "program_source": "gold"}) == ("parsed programs", "gold programs")
    assert run_labels(a, {**a, "min_reading": 0.0}) == ("min-reading default", "min-reading 0.0")
    assert run_labels(a, dict(a)) == ("run 1", "run 2")
    md = markdown_report({**a, **score_records([_rec(0.9, True)])}, {**b, **score_records([_rec(0.9, False)])})
    assert "| | predicted scenes, parsed programs | gold scenes, gold programs |" in md


def test_ties_are_one_point_of_the_fit():
    recs = [_rec(0.9, True, 0), _rec(0.9, False, 1), _rec(0.9, True, 2), _rec(0.5, True, 3), _rec(0.95, True, 4)]
    cal = Calibration.fit(recs)
    assert len(cal.x) == len(set(cal.x))
    # 0.5 (right) and 0.9 (2 of 3) pooled: 3 of 4; then 0.95 alone
    assert cal(0.9) == pytest.approx(0.75) and cal(0.5) == pytest.approx(0.75) and cal(0.97) == 1.0
    # a question with no answer is not fitted on and keeps confidence 0
    none = {"qid": "n", "answer": "yes", "prediction": None, "confidence": 0.0}
    assert Calibration.fit(recs + [none] * 50).y == cal.y
    assert apply([none], cal)[0]["confidence"] == 0.0


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from vqa.datasets.synth.generate import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_scenes=3, questions_per_scene=5, seed=93, split="val", image_size=(192, 128))
    return root


def test_evaluate_confidence_is_the_pipelines(synth, tmp_path, capsys):
    """Differential: `vqa evaluate --confidence` (predicted scenes, parsed programs) records
    the very confidence `Pipeline.answer_many` gives for each question."""
    from vqa.calibration import confidence_records
    from vqa.cli import main

    q = synth / "questions" / "CLEVR_val_questions.json"
    preds, out = tmp_path / "p.jsonl", tmp_path / "r" / "report.json"
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes",
                 str(synth / "scenes" / "CLEVR_val_scenes.json"), "--scene-source", "predicted", "--program-source",
                 "parsed", "--images", str(synth / "images" / "val"), "--confidence", "--predictions", str(preds),
                 "--out", str(out)]) == 0
    recs = {r["qid"]: r for r in map(json.loads, preds.read_text().splitlines()[1:])}
    pipe = {r["qid"]: r for r in confidence_records(q, synth / "images" / "val")}
    assert len(recs) == len(pipe) == 15
    for qid, r in recs.items():
        assert r["prediction"] == pipe[qid]["prediction"]
        assert r["confidence"] == pytest.approx(pipe[qid]["confidence"], abs=1e-5), qid
    report = json.loads(out.read_text())
    assert report["calibration"]["n"] == 15 and out.with_suffix(".reliability.png").is_file()
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes",
                 str(synth / "scenes" / "CLEVR_val_scenes.json"), "--reasoner", "reference", "--confidence"]) == 2
    assert "--confidence applies to the asp reasoner" in capsys.readouterr().err


def test_cross_fit_holds_out_whole_images():
    from vqa.calibration import cross_fit

    rng = random.Random(4)
    recs = []
    for i in range(400):  # underconfident: confidence 0.3 questions are right 90 % of the time
        c = rng.choice([0.3, 0.95])
        recs.append({**_rec(c, rng.random() < (0.9 if c == 0.3 else 0.95), i), "image": f"im{i // 10}"})
    out = cross_fit(recs, folds=2)
    assert len(out["folds"]) == 2 and sum(f["n"] for f in out["folds"]) == 400
    assert out["ece_before"] == pytest.approx(expected_calibration_error(recs), abs=0.03)
    assert out["ece_after"] < 0.05 < out["ece_before"]
    # fewer images than folds: refused
    with pytest.raises(ValueError, match="folds"):
        cross_fit(recs[:10], folds=2)
