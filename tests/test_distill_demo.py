"""The shipped distillation demo (package data) replays with no endpoint, and a run that
makes no LLM calls says why (issue 25)."""
import json

from vqa.cli import main
from vqa.distill.run import DEMO_DIR


def test_replay_demo_runs_with_no_endpoint(tmp_path, capsys):
    assert (DEMO_DIR / "transcript.jsonl").is_file() and "vqa/data" in DEMO_DIR.as_posix()
    assert main(["distill", "--replay", "demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "replaying the shipped demo" in out and "LLM calls: 6" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["before"]["train"]["by_operation"]["exist"]["accuracy"] == 0.0
    assert summary["after"]["train"]["accuracy"] == 1.0 and summary["after"]["test"]["accuracy"] == 1.0
    assert summary["accepted_rules"] == 1 and summary["batches"]["run"] == summary["batches"]["total"]
    assert "nonempty(Q, J)" in (tmp_path / "demo" / "theory.lp").read_text()


def test_replay_demo_refuses_flags_that_change_the_run(tmp_path, capsys):
    assert main(["distill", "--replay", "demo", "--out", str(tmp_path / "d"), "--max-batches", "1"]) == 2
    assert "--max-batches do(es) not apply" in capsys.readouterr().err


def test_no_llm_calls_is_explained(tmp_path, capsys):
    """The complete theory answers the first batch: --max-batches 1 asks nothing, and says so."""
    assert main(["distill", "--questions", str(DEMO_DIR / "questions.json"), "--scenes", str(DEMO_DIR / "scenes.json"),
                 "--out", str(tmp_path / "run"), "--max-batches", "1", "--base-url", "http://127.0.0.1:9/v1",
                 "--model", "none", "--llm-retries", "0"]) == 0
    out = capsys.readouterr().out
    assert "LLM calls: 0" in out
    assert "no LLM calls: the 1 training batch(es) run of" in out and "(--max-batches 1)" in out
    assert "already answered right by the theory (1 of 1)" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["batches"] == {"total": summary["batches"]["total"], "max_batches": 1, "run": 1,
                                  "already_right": 1}
