"""GQA evaluation under kill -9: the predictions are journaled as each image is answered, so
the same command again continues where the killed run stopped; every question is answered
exactly once and the report equals an uninterrupted run's (with `resumed` counted)."""
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vqa.errors import VQAError
from vqa.eval.gqa import evaluate_gqa, journal_path

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
FIX = Path(__file__).parent / "fixtures" / "gqa"
SAME = ("scored", "answered", "accuracy", "binary", "open", "consistency", "consistency_questions", "distribution",
        "per_structural", "per_semantic", "per_detailed", "per_steps", "failed", "failures_by_operation",
        "failed_questions", "failed_scored", "unsupported_by_operation", "images")


def replicate(tmp_path, images: int):
    """The families image and its questions copied `images` times (fresh image and question
    ids, the official layout), every seventh gold answer made wrong, entailment links
    within each image."""
    data = json.loads((FIX / "families_questions.json").read_text())
    graph = json.loads((FIX / "families_sceneGraphs.json").read_text())["1000"]
    questions, graphs = {}, {}
    k = 0
    for i in range(images):
        image = str(5000 + i)
        graphs[image] = graph
        ids = [str(10_000_000 + i * 100 + j) for j in range(len(data))]
        for j, rec in enumerate(data.values()):
            rec = dict(rec, imageId=image, entailed=[ids[(j + 1) % len(ids)], ids[(j + 5) % len(ids)]],
                       groups={"global": "g" if j % 3 else None, "local": None})
            if k % 7 == 0:
                rec["answer"] = "no" if rec["answer"] != "no" else "yes"
            questions[ids[j]] = rec
            k += 1
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "sg.json").write_text(json.dumps(graphs))
    return tmp_path / "q.json", tmp_path / "sg.json", len(questions)


def _cmd(q, s, pred, out, workers="1"):
    return [sys.executable, "-m", "vqa", "evaluate", "--dataset", "gqa", "--questions", str(q), "--scenes", str(s),
            "--predictions", str(pred), "--out", str(out), "--no-progress", "--json", "--workers", workers, "--scenes-per-call", "2"]


def _journal(pred) -> list[dict]:
    out = []
    for line in journal_path(pred).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the line the kill cut short
            pass
    return [r for r in out if "qid" in r]


@pytest.mark.parametrize("workers", [pytest.param("1", marks=pytest.mark.slow), "2"])  # (~20 s each, loaded)
def test_gqa_killed_midway_resumes_to_the_same_result(tmp_path, workers):
    q, s, n = replicate(tmp_path, 60)
    whole = subprocess.run(_cmd(q, s, tmp_path / "whole.json", tmp_path / "whole_r.json"), env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    full = json.loads(whole.stdout)
    assert full["answered"] == n and 70 < full["accuracy"] < 90 and full["resumed"] == 0

    pred = tmp_path / "p.json"
    proc = subprocess.Popen(_cmd(q, s, pred, tmp_path / "r.json", workers), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    import time

    end = time.monotonic() + 300
    while time.monotonic() < end and proc.poll() is None:
        if journal_path(pred).exists() and journal_path(pred).read_bytes().count(b"\n") > n // 4:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _journal(pred)
    assert 0 < len(before) < n, "the kill should land midway"
    assert not pred.exists()  # the official file is written at the end only

    again = subprocess.run(_cmd(q, s, pred, tmp_path / "r.json", workers), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    counts = Counter(r["qid"] for r in _journal(pred))
    assert len(counts) == n and max(counts.values()) == 1  # every question exactly once
    assert report["resumed"] >= len(before) - 38 * 2 * int(workers) and report["resumed"] + report["answered_now"] == n
    for k in SAME:
        assert report[k] == full[k], k
    assert json.loads(pred.read_text()) == json.loads((tmp_path / "whole.json").read_text())
    assert f"{report['resumed']} resumed" in (tmp_path / "r.md").read_text()
    # once complete, the same command answers nothing again
    third = subprocess.run(_cmd(q, s, pred, tmp_path / "r.json"), env=ENV, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and json.loads(third.stdout)["resumed"] == n


def test_journal_of_other_settings_is_refused(tmp_path):
    pred = tmp_path / "p.json"
    q, s = FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json"
    evaluate_gqa(q, s, predictions=pred, reasoner="reference")
    with pytest.raises(VQAError, match="other settings \\(reasoner\\)"):
        evaluate_gqa(q, s, predictions=pred, reasoner="asp")
    again = evaluate_gqa(q, s, predictions=pred, reasoner="reference")
    assert again["resumed"] == again["answered"] and again["answered_now"] == 0


def test_workers_give_the_same_report(tmp_path):
    q, s, n = replicate(tmp_path, 40)
    one = evaluate_gqa(q, s, predictions=tmp_path / "one.json")
    two = evaluate_gqa(q, s, predictions=tmp_path / "two.json", workers=2)
    for k in SAME:
        assert one[k] == two[k], k
    assert json.loads((tmp_path / "one.json").read_text()) == json.loads((tmp_path / "two.json").read_text())
    # workers renewed after every task of 3 images: the same answers
    ref = evaluate_gqa(q, s, predictions=tmp_path / "ref.json", reasoner="reference")
    renewed = evaluate_gqa(q, s, predictions=tmp_path / "ref2.json", reasoner="reference", workers=2,
                           images_per_task=3, tasks_per_worker=1)
    assert renewed["answered"] == n and renewed["accuracy"] == ref["accuracy"] == one["accuracy"]
    assert json.loads((tmp_path / "ref.json").read_text()) == json.loads((tmp_path / "ref2.json").read_text())


def test_pooled_answering_errors_and_renewal_for_long_asp_runs(tmp_path, monkeypatch):
    import vqa.eval.gqa as eg

    with pytest.raises(VQAError, match="unknown GQA reasoner"):  # not a pool restarting a failing worker
        evaluate_gqa(FIX / "val_balanced_questions.json", FIX / "val_sceneGraphs.json", reasoner="magic", workers=2)
    # an ASP run longer than one worker's life is answered in renewed workers, even with workers=1
    q, s, n = replicate(tmp_path, 6)
    used = []
    real = eg._pooled
    monkeypatch.setattr(eg, "_pooled", lambda *a: used.append(a) or real(*a))
    small = evaluate_gqa(q, s, all_questions=True, predictions=tmp_path / "a.json")
    assert not used
    renewed = evaluate_gqa(q, s, all_questions=True, predictions=tmp_path / "b.json", images_per_task=2,
                           tasks_per_worker=1)
    assert len(used) == 1 and renewed["answered"] == small["answered"] == n
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_tasks_end_at_images_or_questions(tmp_path, monkeypatch):
    """A task ends at `images_per_task` images or once its questions reach `questions_per_task`;
    every question comes exactly once, in image order, and the answers do not depend on it."""
    import vqa.eval.gqa as eg
    from vqa.eval.gqa_store import QuestionStore

    q, s, n = replicate(tmp_path, 9)
    per_image = n // 9
    store = QuestionStore(tmp_path / "s.sqlite")
    store.load_questions(q, all_questions=True)
    store.load_scene_spans(s)
    whole = [qid for t in store.tasks(100) for _, _, _, qs in t for qid, _ in qs]
    assert len(whole) == len(set(whole)) == n
    for images, questions, sizes in ((4, None, [4, 4, 1]), (100, 2 * per_image, [2, 2, 2, 2, 1]),
                                     (100, 1, [1] * 9), (2, 3 * per_image, [2, 2, 2, 2, 1])):
        tasks = list(store.tasks(images, questions))
        assert [len(t) for t in tasks] == sizes, (images, questions)
        assert [qid for t in tasks for _, _, _, qs in t for qid, _ in qs] == whole
    store.close()
    calls = []
    real = eg.answer_task
    monkeypatch.setattr(eg, "answer_task", lambda a, sc, task: calls.append(len(task)) or real(a, sc, task))
    one = evaluate_gqa(q, s, all_questions=True, predictions=tmp_path / "a.json")
    assert calls == [9]
    calls.clear()
    cut = evaluate_gqa(q, s, all_questions=True, predictions=tmp_path / "b.json", questions_per_task=per_image + 1)
    assert calls == [2, 2, 2, 2, 1] and cut["answered"] == one["answered"] == n
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
