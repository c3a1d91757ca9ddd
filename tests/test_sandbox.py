"""Sandbox for untrusted rules: static checks and a child process with limits."""
import time

import pytest

from vqa.reason.sandbox import RulePolicy, SandboxLimits, check_answers, check_rules, run_rules


@pytest.mark.parametrize("text, what", [
    ('#script (python)\nimport os\ndef f(): os.system("touch /tmp/pwned")\n#end.', "#script"),
    ('#script (lua)\nfunction f() end\n#end.', "#script"),
    ('#include "/etc/passwd".', "#include"),
    ('% harmless comment\n  # include "x.lp".', "#include"),
    ("p(@f(1)).", "@-functions"),
    ("q :- p(X), X = @g(X).", "@-functions"),
    ("#const n = 3.", "#const"),
    ("#external q.", "#external"),
    ("#show p/1.", "#show"),
    ("a :- b.\n#program step(k).", "#program"),
    ("&diff{ x } :- p.", "theory atoms"),
    ("{ p; q }.", "choice rules"),
    ("p ; q.", "disjunctive"),
    (":~ p. [1@1]", "weak constraints"),
    ("#heuristic p. [1, level]", "#heuristic"),
])
def test_forbidden_statements(text, what):
    r = check_rules(text)
    assert r.status == "forbidden" and what in r.message, r
    assert r.line is not None and r.rule


def test_plain_rules_constraints_and_aggregates_pass():
    assert check_rules("p(X) :- q(X), not r(X).\n:- p(1).\nc(N) :- N = #count { X : q(X) }.\nq(1..3).").ok
    assert check_rules("{ p }.", RulePolicy(allow_choice=True)).ok
    assert check_rules(":~ p. [1@1]", RulePolicy(allow_weak=True)).ok
    assert check_rules(":- p.", RulePolicy(allow_constraints=False)).status == "forbidden"


def test_syntax_error_has_message_and_location():
    r = check_rules("p(1).\nq(X :- p(X).")
    assert r.status == "syntax_error" and r.line == 2 and r.column == 5
    assert "unexpected" in r.message and r.rule == "q(X :- p(X)."


def test_unsafe_variable_is_named():
    r = run_rules("ok.\np :- q(X), not r(Y).", facts="q(1).")
    assert r.status == "unsafe" and r.variable == "Y" and r.line == 2
    assert r.rule == "p :- q(X), not r(Y)."


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def test_endless_grounding_is_stopped_at_the_cpu_limit():
    """The limit is the child's CPU time (how long it runs on a busy machine varies)."""
    cpu = _children_cpu()
    r = run_rules("p(X+1) :- p(X). p(0).", limits=SandboxLimits(time_s=2.0))
    assert r.status == "limit" and r.kind == "time_limit" and "2 s of CPU time" in r.message
    assert _children_cpu() - cpu < 3.5  # the soft limit (SIGXCPU) at 2 s, SIGKILL at 3 s


def test_a_starved_child_is_killed_at_the_wall_clock_backstop(monkeypatch):
    """A child that gets no CPU (here: stopped as it starts) is killed at `wall_s`."""
    import os
    import signal
    import subprocess

    real = subprocess.Popen

    def stopped(*a, **k):
        proc = real(*a, **k)
        os.kill(proc.pid, signal.SIGSTOP)
        return proc

    monkeypatch.setattr(subprocess, "Popen", stopped)
    start = time.monotonic()
    r = run_rules("p.", limits=SandboxLimits(time_s=1.0, wall_s=1.5))
    assert r.kind == "time_limit" and "1.5 s of wall-clock time" in r.message
    assert time.monotonic() - start < 30


def test_memory_limit():
    """The memory cap itself stops it (~3 s of CPU here), not the 20 s CPU limit."""
    r = run_rules("p(X, Y) :- X = 1..100000, Y = 1..100000.", limits=SandboxLimits(time_s=20, memory_mb=300))
    assert r.status == "limit" and r.kind == "memory_limit" and "memory limit" in r.message, (r.kind, r.message)


def test_script_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f'#script (python)\nimport pathlib\npathlib.Path("{marker}").write_text("x")\n#end.\np.'
    assert run_rules(text).status == "forbidden"
    assert not marker.exists()


def test_answers_checked():
    background = "color(a, red). color(b, blue).\n#show ans/2."
    facts = "question(0). asks(0, a). question(1). asks(1, b)."
    good = "ans(Q, C) :- asks(Q, O), color(O, C)."
    r = check_answers(good, background=background, facts=facts, expected={"0": "red", "1": "blue"})
    assert r.ok and r.got == {"0": "red", "1": "blue"}
    r = check_answers(good, background=background, facts=facts, expected={"0": "red", "1": "red"})
    assert r.status == "wrong_answer" and r.expected == {"1": "red"} and r.got == {"1": "blue"}
    r = check_answers("ans(0, red).", background=background, facts=facts, expected={"0": "red", "1": "blue"})
    assert r.status == "no_answer" and "1" in r.message
    r = check_answers(good + "\n:- question(0).", background=background, facts=facts, expected={"0": "red"})
    assert r.status == "no_answer"
    assert run_rules(":- question(0).", facts=facts).status == "unsatisfiable"
