"""GQA's grounding score (vqa.eval.gqa_grounding) on a tiny fixture in the official format."""
import json

import pytest

from vqa.errors import DataError
from vqa.eval.gqa import score_predictions
from vqa.eval.gqa_grounding import graph_attention, grounding_score, read_attentions, score_grounding
from vqa.scene import SceneGraph


def _q(answer, ann_q, ann_a, balanced=True):
    return {"imageId": "img1", "question": "q?", "answer": answer, "fullAnswer": "a.", "isBalanced": balanced,
            "types": {"structural": "query", "semantic": "obj", "detailed": "x"}, "entailed": [],
            "groups": {"global": None, "local": None},
            "semantic": [{"operation": "select", "argument": "thing (A)", "dependencies": []}],
            "annotations": {"question": ann_q, "answer": {}, "fullAnswer": ann_a}}


@pytest.fixture
def files(tmp_path):
    # a 100x50 image: object A is the left half, B the right half
    scenes = {"img1": {"width": 100, "height": 50, "objects": {
        "A": {"name": "cup", "x": 0, "y": 0, "w": 50, "h": 50, "attributes": [], "relations": []},
        "B": {"name": "box", "x": 50, "y": 0, "w": 50, "h": 50, "attributes": [], "relations": []}}}}
    questions = {"q1": _q("cup", {"2": "A"}, {"1": "A"}),  # A named in question and full answer
                 "q2": _q("box", {"3": "B"}, {}),
                 "q3": _q("box", {"3": "B"}, {}, balanced=False)}  # not scored
    attentions = [{"questionId": "q1", "attention": [[0, 0, 50, 50, 0.6], [50, 0, 100, 50, 0.4]]},
                  {"questionId": "q2", "attention": [[25, 0, 75, 50, 1.0]]}]  # a box half on B
    paths = {k: tmp_path / f"{k}.json" for k in ("scenes", "questions", "attentions", "predictions")}
    for k, v in (("scenes", scenes), ("questions", questions), ("attentions", attentions),
                 ("predictions", [{"questionId": q, "prediction": questions[q]["answer"]} for q in questions])):
        paths[k].write_text(json.dumps(v))
    return paths


def test_grounding_by_hand(files):
    # q1: box A lies wholly in region A, which is counted twice (question and full answer):
    #     0.6 * 1 + 0.6 * 1 = 1.2; box B overlaps nothing. Each object once: 0.6.
    # q2: the box (area 50x50) overlaps B over 25x50: 1.0 * 0.5 = 0.5.
    # mean over the balanced questions: (1.2 + 0.5) / 2 = 85 %; once: (0.6 + 0.5) / 2 = 55 %.
    r = score_grounding(files["questions"], files["scenes"], files["attentions"])
    assert r["grounding_questions"] == 2 and r["grounding_missing"] == 0
    assert r["grounding"] == pytest.approx(100 * (1.2 + 0.5) / 2)
    assert r["grounding_distinct"] == pytest.approx(100 * (0.6 + 0.5) / 2)


def test_attention_off_the_regions_scores_less(files):
    scenes = json.loads(files["scenes"].read_text())["img1"]
    q = _q("box", {"3": "B"}, {})
    assert grounding_score(q, scenes, [[0, 0, 50, 50, 1.0]]) == 0.0  # all on A, the region is B
    assert grounding_score(q, scenes, [[50, 0, 100, 50, 1.0]]) == pytest.approx(1.0)


def test_missing_entry_counts_zero_and_warns(files):
    files["attentions"].write_text(json.dumps([{"questionId": "q2", "attention": [[50, 0, 100, 50, 1.0]]}]))
    r = score_predictions(files["questions"], files["predictions"], scenes=files["scenes"],
                          attentions=files["attentions"])
    assert r["grounding"] == pytest.approx(50.0) and r["grounding_missing"] == 1
    assert any("attentions file" in w for w in r["warnings"])
    assert r["accuracy"] == pytest.approx(100.0)


def test_malformed_attentions_one_line(files):
    files["attentions"].write_text(json.dumps([{"questionId": "q1", "attention": [[0, 0, 50, 50]]}]))
    with pytest.raises(DataError, match=r"attention\[0\]"):
        read_attentions(files["attentions"])


def test_unknown_object_in_annotations(files):
    q = json.loads(files["questions"].read_text())
    q["q2"]["annotations"]["question"] = {"3": "Z"}
    files["questions"].write_text(json.dumps(q))
    with pytest.raises(DataError, match="'Z'"):
        score_grounding(files["questions"], files["scenes"], files["attentions"])


def test_graph_attention_boxes_in_pixels(files):
    g = SceneGraph.from_gqa("img1", json.loads(files["scenes"].read_text())["img1"])
    att = graph_attention(g, {"A": 0.25, "B": 0.75})
    assert sorted(att) == [[0.0, 0.0, 50.0, 50.0, 0.25], [50.0, 0.0, 100.0, 50.0, 0.75]]


def test_cli_from_predictions_with_attentions(files, tmp_path, capsys):
    from vqa.cli import main

    out = tmp_path / "r" / "report.json"
    rc = main(["evaluate", "--dataset", "gqa", "--questions", str(files["questions"]), "--scenes",
               str(files["scenes"]), "--from-predictions", str(files["predictions"]), "--attentions",
               str(files["attentions"]), "--out", str(out), "--no-progress"])
    assert rc in (0, None)
    assert "grounding" in capsys.readouterr().out
    assert json.loads(out.read_text())["grounding"] == pytest.approx(85.0)
    assert "| grounding | 85.00 |" in out.with_suffix(".md").read_text()


def test_nsm_writes_and_scores_its_attentions(tmp_path):
    """`vqa evaluate --dataset gqa --reasoner nsm` (shipped checkpoint) writes the final step's
    attention over the graph's objects as an attentions file and reports its grounding."""
    from vqa.datasets.gqa_synth.generate import generate_gqa_dataset
    from vqa.eval.gqa import evaluate_gqa

    va = generate_gqa_dataset(tmp_path / "w", num_scenes=3, questions_per_scene=6, seed=5, split="val", images=False)
    pred = tmp_path / "out" / "pred.json"
    pred.parent.mkdir()
    r = evaluate_gqa(va["questions_file"], va["scenes_file"], reasoner="nsm", predictions=pred,
                     out=tmp_path / "out" / "report.json")
    att = read_attentions(r["attentions_file"])
    assert set(att) == {p["questionId"] for p in json.loads(pred.read_text())}
    for boxes in att.values():  # a distribution over the graph's objects, boxes in pixels
        assert sum(b[4] for b in boxes) == pytest.approx(1.0, abs=1e-3)
        assert all(b[2] > b[0] and b[3] > b[1] for b in boxes)
    again = score_grounding(va["questions_file"], va["scenes_file"], r["attentions_file"])
    assert r["grounding"] == pytest.approx(again["grounding"]) and r["grounding_questions"] == r["scored"]
    with pytest.raises(Exception, match="NSM gives its own"):
        evaluate_gqa(va["questions_file"], va["scenes_file"], reasoner="nsm", attentions=r["attentions_file"])
