"""`vqa evaluate` under kill -9 and concurrent runs: a run killed midway and rerun with the
same command answers every question exactly once with the accuracy of an uninterrupted
run; a second run on the same --predictions file is refused while the first holds it."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vqa.cli import main
from test_distill import task  # noqa: F401  (a fixture)

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A generated split (no images) with every fifth gold answer made wrong, so that the
    accuracy (0.8) shows whether anything was lost or counted twice."""
    from vqa.datasets.synth.generate import generate_dataset

    root = tmp_path_factory.mktemp("kill") / "gen"
    generate_dataset(root, num_scenes=80, questions_per_scene=10, seed=11, split="val", images=False)
    q = root / "questions/CLEVR_val_questions.json"
    data = json.loads(q.read_text())
    for i, rec in enumerate(data["questions"]):
        if i % 5 == 0:
            rec["answer"] = "no" if rec["answer"] != "no" else "yes"
    q.write_text(json.dumps(data))
    return q, root / "scenes/CLEVR_val_scenes.json", len(data["questions"])


def _cmd(q, s, pred, *extra):
    return [sys.executable, "-m", "vqa", "evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s),
            "--predictions", str(pred), "--scenes-per-call", "2", "--no-progress", "--json", *extra]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _wait_for(cond, timeout=120.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_evaluate_killed_midway_resumes_to_the_same_result(dataset, tmp_path, workers):
    q, s, n = dataset
    whole = subprocess.run(_cmd(q, s, tmp_path / "whole.jsonl", "--workers", workers), env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    full = json.loads(whole.stdout)
    assert full["total"] == n and 0.7 < full["accuracy"] < 0.9

    pred = tmp_path / "p.jsonl"
    proc = subprocess.Popen(_cmd(q, s, pred, "--workers", workers), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    reached = _wait_for(lambda: pred.exists() and pred.read_bytes().count(b"\n") > n // 4, proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, "the run ended before it could be killed midway"
    before = [r for r in _lines_tolerant(pred) if "qid" in r]
    assert 0 < len(before) < n, "the kill should land midway"

    again = subprocess.run(_cmd(q, s, pred, "--workers", workers), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    recs = [r for r in _lines(pred) if "qid" in r]
    counts = Counter(r["qid"] for r in recs)
    assert len(counts) == n and max(counts.values()) == 1  # every question exactly once
    assert report["resumed"] + report["answered_now"] == n and report["resumed"] >= len(before) - 2 * int(workers)
    for k in ("total", "correct", "accuracy", "by_function", "by_template"):
        assert report[k] == full[k], k
    # and the predictions themselves agree with the uninterrupted run's
    whole_recs = {r["qid"]: r["prediction"] for r in _lines(tmp_path / "whole.jsonl") if "qid" in r}
    assert {r["qid"]: r["prediction"] for r in recs} == whole_recs


def _lines_tolerant(path: Path) -> list[dict]:
    out = []
    for x in path.read_text().splitlines():
        try:
            out.append(json.loads(x))
        except json.JSONDecodeError:  # the line the kill cut short
            pass
    return out


def test_second_run_on_the_same_predictions_file_is_refused(dataset, tmp_path, capsys):
    q, s, n = dataset
    pred = tmp_path / "p.jsonl"
    first = subprocess.Popen(_cmd(q, s, pred), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = Path(str(pred) + ".lock")
    try:
        # stop the first run as soon as it holds the lock, so that the second surely meets it
        assert _wait_for(lambda: lock.exists() and lock.read_text().strip() == f"pid {first.pid}", proc=first)
        os.kill(first.pid, signal.SIGSTOP)
        assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s),
                     "--predictions", str(pred), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(pred) in err[0] and "being written by another run" in err[0], err
        assert f"pid {first.pid}" in err[0]
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    recs = [r for r in _lines(pred) if "qid" in r]
    assert len(recs) == n and len({r["qid"] for r in recs}) == n  # the first run's file is whole
    assert json.loads(out)["total"] == n
    # once it has ended, the same command runs (and resumes: nothing left to answer)
    assert main(["evaluate", "--dataset", "clevr", "--questions", str(q), "--scenes", str(s),
                 "--predictions", str(pred), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == n


def test_gqa_predictions_are_locked_too(tmp_path, capsys):
    from vqa.eval.loop import lock_predictions
    from conftest import FIXTURES

    pred = tmp_path / "gqa_pred.json"
    held = lock_predictions(pred)
    try:
        assert main(["evaluate", "--dataset", "gqa", "--questions", str(FIXTURES / "gqa/val_balanced_questions.json"),
                     "--scenes", str(FIXTURES / "gqa/val_sceneGraphs.json"), "--predictions", str(pred),
                     "--no-progress"]) == 2
        assert "being written by another run" in capsys.readouterr().err
    finally:
        held.close()
    assert main(["evaluate", "--dataset", "gqa", "--questions", str(FIXTURES / "gqa/val_balanced_questions.json"),
                 "--scenes", str(FIXTURES / "gqa/val_sceneGraphs.json"), "--predictions", str(pred),
                 "--no-progress"]) == 0
    assert json.loads(pred.read_text())


@pytest.mark.slow  # ~30 s; the default suite kills distill at request boundaries (test_distill, test_hostile_proposals)
def test_distill_killed_during_a_solver_check_resumes(task):  # noqa: F811
    """kill -9 while the sandbox child grounds a reply (not at a request boundary): the rerun
    takes the recorded reply, checks it again, asks nothing twice and ends as an
    uninterrupted run does."""
    from test_distill import GOOD, argv
    from fake_openai import FakeOpenAI

    tmp, scenes = task
    bomb = "```asp\np(X+1) :- p(X). p(0).\n```"
    args = argv(tmp, scenes, "URL") + ["--check-seconds", "3"]
    env = dict(ENV, PYTHONPATH=os.pathsep.join([ENV["PYTHONPATH"], str(Path(__file__).parent)]))
    with FakeOpenAI([bomb, GOOD]) as server:
        cmd = [sys.executable, "-m", "vqa", *[server.url if a == "URL" else a for a in args]]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        transcript = tmp / "run/transcript.jsonl"
        assert _wait_for(lambda: len(server.requests) == 1 and transcript.exists()
                         and b'"kind": "llm"' in transcript.read_bytes(), proc=proc)
        time.sleep(1.0)  # inside the 3 s check of the bomb
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(server.requests) == 1
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(x) for x in transcript.read_text().splitlines()]
    assert len(server.requests) == 2 == len([e for e in events if e["kind"] == "llm"])
    verdicts = [e["verdict"] for e in events if e["kind"] == "verdict"]
    assert verdicts == ["time_limit", "accepted"]
    summary = json.loads((tmp / "run/summary.json").read_text())
    assert summary["after"]["train"]["accuracy"] == 1.0 and summary["after"]["test"]["accuracy"] == 1.0
