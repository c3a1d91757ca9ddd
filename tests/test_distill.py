"""The distillation loop end to end: the real openai client against a scripted local server."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vqa import Program
from vqa.datasets.clevr import load_scenes
from vqa.distill.theory import DISTILLED_BEGIN
from vqa.executor import execute
from vqa.reason.solver import load_theory
from conftest import FIXTURES, dump_json
from fake_openai import FakeOpenAI

EXIST_RULES = [
    "out(Q, I, yes) :- run(Q, I, exist, _, (J,)), nonempty(Q, J).",
    "out(Q, I, no)  :- run(Q, I, exist, _, (J,)), not nonempty(Q, J).",
]
GOOD = ("```asp\nout(Q, I, yes) :- run(Q, I, exist, _, (J,)), nonempty(Q, J).\n"
        "out(Q, I, no) :- run(Q, I, exist, _, (J,)), not nonempty(Q, J).\n```")
SCRIPT = [
    "```asp\nout(Q, I, yes) :- run(Q, I, exist, _, _) nonempty(Q, I).\n```",               # syntax error
    "```asp\nout(Q, I, V) :- run(Q, I, exist, _, _).\n```",                               # unsafe V
    "```asp\nout(Q, I, yes) :- run(Q, I, exist, _, _).\n```",                             # wrong on "no"
    "```asp\n#script (python)\nimport os\n#end.\nout(Q, I, yes) :- run(Q, I, exist, _, _).\n```",  # hostile
    '```asp\n#include "/etc/passwd".\n```',                                                  # try 2: hostile
    GOOD,                                                                                    # mended: correct
]


def write_exist_task(tmp: Path, colours=("red", "blue"), functions=("exist",)) -> Path:
    """The CLEVR theory without its `exist` rules (`tmp/incomplete.lp`) and one question per
    fixture scene, colour and function, `fn(filter_color[c](scene))` (`tmp/questions.json`,
    answers by the reference executor); returns the scenes file."""
    theory = load_theory(Path(__file__).parents[1] / "rules" / "clevr")
    for rule in EXIST_RULES:
        assert rule in theory
        theory = theory.replace(rule, "")
    (tmp / "incomplete.lp").write_text(theory)
    scenes_path = FIXTURES / "clevr/scenes/CLEVR_val_scenes.json"
    questions = []
    for sg in load_scenes(scenes_path).values():
        for c in colours:
            for fn in functions:
                p = Program.parse(f"{fn}(filter_color[{c}](scene))")
                questions.append({"question_index": len(questions), "image_filename": sg.image_id + ".png",
                                  "question": f"{fn} {c}?", "answer": execute(p, sg).answer,
                                  "program": p.to_clevr("function")})
    dump_json({"questions": questions}, tmp / "questions.json")
    return scenes_path


@pytest.fixture
def task(tmp_path):
    """An incomplete theory (no rules for `exist`) and exist/count questions on the fixture scenes."""
    return tmp_path, write_exist_task(tmp_path, ("red", "blue", "green", "yellow", "gray", "purple"),
                                      ("exist", "count"))


def argv(tmp_path, scenes, url, out="run"):
    return ["distill", "--dataset", "clevr", "--theory", str(tmp_path / "incomplete.lp"),
            "--questions", str(tmp_path / "questions.json"), "--scenes", str(scenes), "--out", str(tmp_path / out),
            "--base-url", url, "--model", "fake", "--timeout", "10", "--llm-retries", "0",
            "--batch", "2", "--retries", "2", "--mends", "3", "--order", "random", "--seed", "1",
            "--test-fraction", "0.25", "--val-fraction", "0"]


def test_loop_mends_rejects_and_converges(task):
    from vqa.cli import main

    tmp, scenes = task
    with FakeOpenAI(SCRIPT) as server:
        assert main(argv(tmp, scenes, server.url)) == 0
    run = tmp / "run"
    summary = json.loads((run / "summary.json").read_text())
    ops = summary["before"]["train"]["by_operation"]
    assert ops["count"]["accuracy"] == 1.0 and ops["exist"]["accuracy"] == 0.0  # the theory lacks exist
    assert summary["after"]["train"]["accuracy"] == 1.0 and summary["after"]["test"]["accuracy"] == 1.0
    assert summary["accepted_rules"] == 1 and summary["llm_calls"] == 6
    events = [json.loads(x) for x in (run / "transcript.jsonl").read_text().splitlines()]
    statuses = [e["status"] for e in events if e["kind"] == "check" and e["label"] == "candidate"]
    assert statuses[:5] == ["syntax", "unsafe", "ok", "forbidden", "forbidden"]
    prompts = [e["messages"][-1]["content"] for e in events if e["kind"] == "llm"]
    assert "could not parse" in prompts[1] and "unsafe" in prompts[2] and "expected no" in prompts[3]
    assert "first wrong step" in prompts[3]
    theory = (run / "theory.lp").read_text()
    assert theory.index(DISTILLED_BEGIN) < theory.index("run(Q, I, exist, _, (J,)), not nonempty(Q, J)")
    assert "#script" not in theory and "#include" not in theory
    # replay of the recorded transcript, with no endpoint at all
    from vqa.cli import main as again
    assert again(argv(tmp, scenes, "http://127.0.0.1:9/v1", out="replayed")
                 + ["--replay", str(run / "transcript.jsonl")]) == 0
    replayed = json.loads((tmp / "replayed/summary.json").read_text())
    assert replayed["after"] == summary["after"] and (tmp / "replayed/theory.lp").read_text() == theory


def test_kill_and_resume_loses_and_repeats_nothing(task):
    tmp, scenes = task
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    # the kill lands while the 4th request waits for its answer: three prompts answered (and
    # saved, since the 4th is only sent after the 3rd answer is handled), none half done
    with FakeOpenAI(SCRIPT, hold_after=3) as server:
        cmd = [sys.executable, "-m", "vqa", *argv(tmp, scenes, server.url)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        transcript = tmp / "run/transcript.jsonl"
        assert server.held.wait(60), "the run never reached its 4th request"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        asked_before = len(server.requests)
        assert asked_before == 3, "the kill should land in the middle of the run"
        server.release()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in transcript.read_text().splitlines()]
    llm = [e for e in events if e["kind"] == "llm"]
    assert len(server.requests) == len(llm) == 6  # every prompt sent once, none repeated
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    summary = json.loads((tmp / "run/summary.json").read_text())
    assert summary["after"]["train"]["accuracy"] == 1.0


def test_gqa_distillation_restores_relate(tmp_path):
    """The light GQA theory lacks the relate rules; the scripted LLM gives them back."""
    from vqa.cli import main
    from vqa.distill.theory import statements

    light = Path(__file__).parents[1] / "rules/gqa/incomplete/light.lp"
    complete = load_theory(Path(__file__).parents[1] / "rules/gqa", exclude=["example_facts.lp"])
    missing = [s.text for s in statements(complete) if s.kind == "Rule" and "related" in s.predicates]
    reply = "```asp\n" + "\n".join(missing) + "\n```"
    args = ["distill", "--dataset", "gqa", "--theory", str(light),
            "--questions", str(FIXTURES / "gqa/families_questions.json"),
            "--scenes", str(FIXTURES / "gqa/families_sceneGraphs.json"), "--out", str(tmp_path / "run"),
            "--model", "fake", "--timeout", "10", "--llm-retries", "0", "--batch", "4", "--retries", "1",
            "--mends", "0", "--test-fraction", "0.25", "--val-fraction", "0", "--order", "relevance"]
    with FakeOpenAI([reply] * 5) as server:
        assert main(args + ["--base-url", server.url]) == 0
    s = json.loads((tmp_path / "run/summary.json").read_text())
    before, after = s["before"], s["after"]
    assert after["train"]["correct"] > before["train"]["correct"] and after["test"]["correct"] > before["test"]["correct"]
    # the fixture holds two questions no theory answers (a query on an absent object, a count)
    assert after["train"]["correct"] + after["test"]["correct"] == 36
    assert s["accepted_rules"] == 1
    assert "rel(" in server.requests[0]["messages"][1]["content"]  # the facts of the examples are shown
