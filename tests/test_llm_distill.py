"""`vqa distill` against what real servers send, through the scripted endpoint: reasoning
blocks, prose and several code fences, a reply cut at max_tokens, an empty reply, 429/500
with back-off, a timeout on every call (the run stops, resumable), the run's call and token
budget (counts in summary.json), and `--check-endpoint`."""
import json
import time

from vqa.cli import main
from vqa.distill.prompts import extract_rules, strip_thinking
from test_distill import EXIST_RULES, GOOD, argv, task  # noqa: F401  (task is a fixture)
from fake_openai import FakeOpenAI, Reply, Slow, Status

YES, NO = EXIST_RULES
CHATTY = (f"<think>The theory lacks exist. Maybe ```asp\nwrong(X) :- x.\n``` would do? No.</think>\n"
          f"Sure! Here are the missing rules.\n\n```asp\n{YES}\n```\n\nAnd the negative case:\n\n"
          f"```clingo\n{NO}\n```\n\nTo test it:\n```python\nimport clingo\n```\nHope this helps.")


def events(run):
    return [json.loads(x) for x in (run / "transcript.jsonl").read_text().splitlines()]


def summary(run):
    return json.loads((run / "summary.json").read_text())


def test_extract_rules_from_real_model_habits():
    assert extract_rules(CHATTY) == f"{YES}\n\n{NO}"
    assert extract_rules("<think>only thinking, cut") == "" and strip_thinking("a</think>b") == "b"
    cut = f"```asp\n{YES}\nout(Q, I, no) :- run(Q, I, exist, _, (J,)), not nonem"
    assert extract_rules(cut, cut=True) == YES
    assert extract_rules(cut).endswith("nonem")  # not cut: the checker reports the syntax error
    assert extract_rules('```asp\np("x. y") :- q(1..2). % a. b\nr(X', cut=True) == 'p("x. y") :- q(1..2).'
    assert extract_rules(f"The rules you need:\n{YES}\n{NO}\nThis answers exist questions.") == f"{YES}\n{NO}"
    assert extract_rules("I am sorry, I cannot help with that.") == "I am sorry, I cannot help with that."


def test_reasoning_prose_and_several_fences_are_accepted(task):
    tmp, scenes = task
    with FakeOpenAI([CHATTY]) as server:
        assert main(argv(tmp, scenes, server.url)) == 0
    run = tmp / "run"
    s = summary(run)
    assert s["verdicts"] == {"accepted": 1} and s["after"]["train"]["accuracy"] == 1.0
    theory = (run / "theory.lp").read_text()
    assert YES in theory and NO in theory and "wrong(X)" not in theory and "import clingo" not in theory


def test_cut_and_empty_replies_get_feedback(task):
    tmp, scenes = task
    script = [Reply("```asp\nout(Q, I, yes) :- run(Q, I, exi", "length"),  # nothing whole: truncated
              "",                                                          # empty
              Reply(f"```asp\n{YES}\n{NO}\nextra(Q) :- ques", "length"),  # whole rules kept, the tail dropped
              ]
    with FakeOpenAI(script) as server:
        assert main(argv(tmp, scenes, server.url)) == 0
    run = tmp / "run"
    verdicts = [e["verdict"] for e in events(run) if e["kind"] == "verdict"]
    assert verdicts == ["truncated", "empty", "accepted"]
    asked = [r["messages"][-1]["content"] for r in server.requests]
    assert "cut off at the length limit" in asked[1] and "the reply is empty" in asked[2]
    s = summary(run)
    assert s["finish_reasons"] == {"length": 2, "stop": 1} and s["llm_calls"] == 3
    assert "extra(Q)" not in (run / "theory.lp").read_text()


def test_rate_limits_and_server_errors_are_retried_with_backoff(task):
    tmp, scenes = task
    with FakeOpenAI([Status(429, {"Retry-After": "1"}), Status(500), GOOD]) as server:
        assert main(argv(tmp, scenes, server.url) + ["--llm-retries", "2", "--backoff", "0.2"]) == 0
        gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert gaps[0] >= 0.95 and gaps[1] >= 0.19  # Retry-After, then the back-off
    s = summary(tmp / "run")
    assert s["llm_calls"] == 1 and s["llm_requests"] == 3 and s["accepted_rules"] == 1


def test_a_dead_endpoint_stops_the_run_in_bounded_time_and_it_resumes(task, capsys):
    tmp, scenes = task
    args = argv(tmp, scenes, "URL") + ["--timeout", "1", "--llm-retries", "1", "--backoff", "0.1"]
    with FakeOpenAI([Slow(60)] * 2) as server:
        t0 = time.monotonic()
        assert main([server.url if a == "URL" else a for a in args]) == 2
        took = time.monotonic() - t0
    assert took < 60, took  # two attempts of 1 s (+1 s grace each), not the server's 60 s
    err = capsys.readouterr().err
    assert "no reply within 1 s after 2 attempts" in err
    s = summary(tmp / "run")
    assert s["final"] is False and s["stopped"]["reason"].startswith("endpoint error")
    assert not [e for e in events(tmp / "run") if e["kind"] == "llm"]
    with FakeOpenAI([GOOD]) as server:  # the same command resumes once the server answers
        assert main([server.url if a == "URL" else a for a in args]) == 0
    s = summary(tmp / "run")
    assert s["final"] is True and s["stopped"] is None and s["after"]["train"]["accuracy"] == 1.0


def test_the_call_budget_ends_the_run_and_a_rerun_asks_nothing(task):
    tmp, scenes = task
    bad = "```asp\nout(Q, I, yes) :- run(Q, I, exist, _, _).\n```"  # wrong on "no" questions
    args = argv(tmp, scenes, "URL") + ["--max-llm-calls", "3"]
    with FakeOpenAI([bad] * 10) as server:
        assert main([server.url if a == "URL" else a for a in args]) == 0
        assert len(server.requests) == 3
    s = summary(tmp / "run")
    assert s["final"] is True and s["llm_calls"] == 3 and s["budget"]["llm_calls"] == 3
    assert s["budget"]["max_llm_calls"] == 3 and "call budget spent" in s["stopped"]["reason"]
    assert s["after"]["train"] == s["before"]["train"]  # scored at the end all the same
    with FakeOpenAI([bad] * 10) as server:  # resume: replays, stops at the same call
        assert main([server.url if a == "URL" else a for a in args]) == 0
        assert server.requests == []
    assert summary(tmp / "run")["after"] == s["after"]


def test_the_token_budget(task):
    tmp, scenes = task
    bad = "```asp\nout(Q, I, yes) :- run(Q, I, exist, _, _).\n```"
    with FakeOpenAI([bad] * 10) as server:
        assert main(argv(tmp, scenes, server.url) + ["--max-llm-tokens", "1"]) == 0
        assert len(server.requests) == 1  # the first call is made; none after the budget is reached
    s = summary(tmp / "run")
    assert s["budget"]["llm_tokens"] == s["prompt_tokens"] + s["completion_tokens"] > 1
    assert "token budget spent" in s["stopped"]["reason"]


def test_check_endpoint(capsys):
    rule = "```asp\ngrandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n```"
    with FakeOpenAI([f"<think>easy</think>\n{rule}", "grandparent is when X"]) as server:
        assert main(["distill", "--check-endpoint", "--base-url", server.url, "--model", "fake", "--json"]) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r["parses"] and r["served_models"] == ["fake"] and r["reported_model"] == "fake"
        assert r["latency_s"] > 0 and r["rules"] == rule[7:-4]
        assert main(["distill", "--check-endpoint", "--base-url", server.url, "--model", "fake"]) == 1
        assert "parses: no (syntax_error" in capsys.readouterr().out
    assert main(["distill", "--check-endpoint", "--base-url", server.url, "--model", "fake", "--timeout", "2",
                 "--llm-retries", "0"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    assert main(["distill", "--base-url", server.url]) == 2
    assert "--questions, --scenes, --out required" in capsys.readouterr().err
