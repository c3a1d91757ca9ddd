"""Hostile LLM replies: each ends as a verdict with a message (never an exception out of
the checker), costs the parent process little memory, and a `vqa distill` run that
meets them all goes on, survives kill -9, and resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_distill import GOOD, argv, task  # noqa: F401  (task is a fixture)
from fake_openai import FakeOpenAI

_BLOCK = "```asp\n{}\n```"
DEEP = 2000

# (name, reply, verdict kinds accepted, a piece of the message)
HOSTILE = [
    ("deep_term", "p(" + "f(" * DEEP + "1" + ")" * DEEP + ") :- question(Q).", {"too_deep"}, "nested more than"),
    ("deep_expr", "p(X) :- question(Q), X = " + "1+(" * DEEP + "1" + ")" * DEEP + ".", {"too_deep"},
     "nested more than"),
    ("deep_chain", "p(X) :- question(Q), X = " + "1+" * 5000 + "1.", {"too_deep"}, "nested more than"),
    ("deep_unary", "p(X) :- question(Q), X = " + "-" * 3000 + "1.", {"too_deep"},
     "nested more than"),
    ("extra_object", "val(Q, I, 999) :- step(Q, I, F).", {"wrong_answer"}, "no object 999"),
    ("lone_surrogate", "ans(Q, yes) :- question(Q), q(\ud800).", {"bad_character"}, "lone surrogate"),
    ("surrogate_in_string", 'ans(Q, "\udfff") :- question(Q).', {"bad_character"}, "lone surrogate"),
    ("u2028_include", '#\u2028include "/etc/passwd".', {"bad_character"}, "U+2028"),
    ("u2028_in_include_path", '#include "/etc/pa\u2028sswd".', {"include"}, "#include is not allowed"),
    ("u2028_line", "ans(Q, yes) :- question(Q).\u2028ans(Q, no) :- question(Q).", {"bad_character"}, "U+2028"),
    ("open_string_non_ascii", 'ans(Q, "caf\u00e9) :- question(Q).', {"bad_character"}, "string not closed"),
    ("nul_byte", "ans(Q, yes) :- question(Q).\x00#include \"/etc/passwd\".", {"bad_character"}, "U+0000"),
    ("non_ascii_code", "ans(Q, j\u00e4) :- question(Q).", {"bad_character"}, "write rules in ASCII"),
    ("many_answers", "ans(Q, V) :- question(Q), V = 1..100000.", {"too_many_answers"}, "answers ans(0, V)"),
    ("result_too_large", 'out(Q, 99, (V, "' + "x" * 20_000 + '")) :- question(Q), V = 1..100.', {"result_too_large"}, "bytes"),
    ("too_many_rules", "\n".join(f"p({i})." for i in range(300)), {"too_many_rules"}, "300 statements"),
    ("rules_too_long", "% " + "x" * 40_000 + "\nans(Q, yes) :- question(Q).", {"too_long"}, "40,"),
    ("script", "#script (python)\nimport os\n#end.\nans(Q, yes) :- question(Q).", {"script"}, "#script"),
    ("include", '#include "/etc/passwd".', {"include"}, "#include"),
    ("include_in_comment", '% #include "x.lp".\nans(Q, yes) :- question(Q).', {"include"}, "#include"),
    ("incmode", "#include <incmode>.", {"include"}, "#include"),
    ("at_term", "ans(Q, @f(Q)) :- question(Q).", {"script"}, "@-functions"),
    ("const", "#const n = 3.", {"directive"}, "#const"),
    ("show", "#show ans/2.", {"directive"}, "#show"),
    ("program", "#program step(k).", {"directive"}, "#program"),
    ("external", "#external q.", {"directive"}, "#external"),
    ("heuristic", "#heuristic ans(Q, yes) : question(Q). [1, level]", {"directive"}, "#heuristic"),
    ("edge", "#edge (a, b).", {"directive"}, "#edge"),
    ("choice", "{ ans(Q, yes) } :- question(Q).", {"choice"}, "choice rules"),
    ("disjunction", "ans(Q, yes) ; ans(Q, no) :- question(Q).", {"disjunction"}, "disjunctive"),
    ("weak", ":~ ans(Q, yes). [1@1, Q]", {"weak_constraint"}, "weak constraints"),
    ("unsatisfiable", ":- question(Q).", {"wrong_answer"}, "questions wrong"),
    ("prose", "I am sorry, I cannot help with that.", {"syntax_error"}, "syntax error"),
    ("empty_block", "```asp\n```", {"empty"}, "no rules"),
    ("time_bomb", "p(X+1) :- p(X). p(0).", {"time_limit"}, "did not end within"),
    ("memory_bomb", "big(X, Y) :- X = 1..100000, Y = 1..100000.", {"memory_limit", "time_limit"},
     ("memory limit", "did not end within")),
]
# CPU seconds (the sandbox's limit; its wall-clock backstop is 3x + 10 s): the verdicts do not
# depend on how busy the machine is; every reply but the bombs needs well under 1 s
CHECK = ["--check-seconds", "4", "--check-memory-mb", "1024"]
BOMBS = ("time_bomb", "memory_bomb")
BY_NAME = {h[0]: h for h in HOSTILE}


def _reply(text: str) -> str:
    return text if text.startswith("```") or text.startswith("I am") else _BLOCK.format(text)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def distiller(tmp_path_factory):
    """A Distiller on the exist-less theory, for judging single replies in this process."""
    from vqa.distill.clevr_checker import ENCODING_DOC, CLEVRChecker
    from vqa.distill.loop import DistillConfig, Distiller
    from vqa.distill.run import DistillRun, prepare
    from vqa.reason.sandbox import SandboxLimits

    tmp = tmp_path_factory.mktemp("hostile")
    # the task fixture, by hand (module scope)
    from test_distill import write_exist_task

    scenes_path = write_exist_task(tmp)
    run = DistillRun("clevr", str(tmp / "questions.json"), str(scenes_path), str(tmp / "run"),
                     theory=str(tmp / "incomplete.lp"), test_fraction=0, val_fraction=0)
    base, _, split = prepare(run)
    checker = CLEVRChecker(limits=SandboxLimits(time_s=4, memory_mb=1024))
    d = Distiller(base, split, checker, None, tmp / "run", DistillConfig(), encoding_doc=ENCODING_DOC,
                  example_facts="")
    d._judge(_BLOCK.format("ans(Q, yes) :- question(Q)."), split.train[:2])  # warm: imports, first child
    return d, split.train[:2]


@pytest.mark.parametrize("name", [h[0] for h in HOSTILE])
def test_each_hostile_reply_gets_a_verdict_and_costs_the_parent_little(distiller, name):
    d, batch = distiller
    _, text, kinds, piece = BY_NAME[name]
    d.checker.limits.time_s = 3 if name in BOMBS else 30  # bombs hit the limit; the rest must not
    measurable = os.access("/proc/self/clear_refs", os.W_OK)
    if measurable:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident size (VmHWM)
    base_kb = _status_kb("VmRSS")
    cpu = time.process_time()
    rules, kind, message, mend = d._judge(_reply(text), batch)  # an exception here fails the test
    cpu = time.process_time() - cpu  # the parent's CPU time (the solver's is the child's)
    peak_mb = (_status_kb("VmHWM") - base_kb) / 1024
    assert cpu <= 2, f"{name}: {cpu:.2f} s of the parent's CPU time"
    assert rules is None and kind in kinds, (kind, message)
    pieces = piece if isinstance(piece, tuple) else (piece,)
    assert any(p in message or p in mend for p in pieces), (message, mend[:500])
    assert mend and "```asp" in mend  # the model is told what to do next
    mend.encode("utf-8")  # what goes back to the model is valid text
    if measurable:
        assert peak_mb <= 50, f"{name}: the parent's peak grew by {peak_mb:.1f} MB"
        print(f"{name}: {kind}; parent peak +{peak_mb:.1f} MB")


def test_the_peak_measure_sees_an_allocation():
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("cannot reset the peak resident size here")
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kb("VmRSS")
    block = bytearray(80 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    del block
    assert (_status_kb("VmHWM") - base) / 1024 > 70


def test_a_long_reply_is_refused_unread(distiller):
    d, batch = distiller
    rules, kind, message, _ = d._judge("ans(Q, yes) :- question(Q).\n" + "%" * 150_000, batch)
    assert rules is None and kind == "too_long" and "150,0" in message


def test_gqa_checker_ignores_answers_for_unknown_questions():
    from vqa.distill.gqa_checker import GQAChecker, load_examples
    from vqa.distill.theory import statements  # noqa: F401
    from vqa.reason.solver import load_theory
    from conftest import FIXTURES

    exs = load_examples(FIXTURES / "gqa/families_questions.json", FIXTURES / "gqa/families_sceneGraphs.json", 3)
    base = load_theory(Path(__file__).parents[1] / "rules/gqa", exclude=["example_facts.lp"])
    res = GQAChecker().run(base, ['ans("nine", "x") :- question(Q).\nout("q", 1, "o") :- question(Q).'], exs)
    assert res.status == "ok" and set(res.answers) == {e.qid for e in exs}
    many = GQAChecker().run(base, ['ans(Q, V) :- question(Q), V = 1..500.'], exs)
    assert many.status == "limit" and many.kind == "too_many_answers"


def test_distill_meets_every_hostile_reply_goes_on_and_resumes_after_kill(task):  # noqa: F811
    """One `vqa distill` run whose model answers with every hostile reply (as mends of one
    candidate) and then a correct one; killed -9 midway, then the same command again."""
    tmp, scenes = task
    hostile = [h for h in HOSTILE if h[0] != "memory_bomb"]  # as the time bomb here, but slower: judged above
    replies = [_reply(h[1]) for h in hostile] + [GOOD]
    args = argv(tmp, scenes, "URL")
    args[args.index("--retries") + 1] = "1"
    args[args.index("--mends") + 1] = str(len(hostile) + 1)
    args += CHECK
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)]))
    half = len(hostile) // 2
    with FakeOpenAI(replies, hold_after=half) as server:
        cmd = [sys.executable, "-m", "vqa", *[server.url if a == "URL" else a for a in args]]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert server.held.wait(120), "the run never got halfway"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(server.requests) == half
        server.release()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
    events = [json.loads(x) for x in (tmp / "run/transcript.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    llm = [e for e in events if e["kind"] == "llm"]
    assert len(server.requests) == len(llm) == len(replies)  # every reply asked for once
    verdicts = [e for e in events if e["kind"] == "verdict"]
    assert not [e for e in events if e["kind"] == "checker_error"]
    assert len(verdicts) == len(replies)
    for (name, _, kinds, piece), v in zip(hostile, verdicts):
        assert v["verdict"] in kinds, (name, v)
    assert verdicts[-1]["verdict"] == "accepted"
    # the model was told each refusal (the mend prompts are the next requests' last message)
    for (name, _, _, piece), req in zip(hostile, server.requests[1:]):
        pieces = piece if isinstance(piece, tuple) else (piece,)
        if name not in ("unsatisfiable", "extra_object"):
            assert any(p in req["messages"][-1]["content"] for p in pieces), (name, req["messages"][-1]["content"][:300])
    summary = json.loads((tmp / "run/summary.json").read_text())
    assert summary["after"]["train"]["accuracy"] == 1.0 and summary["accepted_rules"] == 1
    assert sum(summary["verdicts"].values()) == len(replies) and "verdicts:" in r.stdout
    theory = (tmp / "run/theory.lp").read_text()
    assert "#script" not in theory and "#include" not in theory and "999" not in theory


FUZZ = r'''
import random, sys
from vqa.reason.sandbox import check_rules
pieces = ['p(', ')', 'X', '"', '\\', '%', '%*', '*%', '\n', '\u2028', '\u00e9', '\ud800', '\x00', '#include', '#',
          ':-', '.', ',', ';', '1..3', '@f', '{', '}', ' ', 'not ', '"\u00e9"', '\u00e9\u00e9', '\U0001F600', '\r']
weights = [1 if any(ord(c) > 126 or ord(c) < 32 for c in x) and x not in ("\n", '"\u00e9"') else 8 for x in pieces]
rng = random.Random(int(sys.argv[1]))
kinds = {}
for _ in range(int(sys.argv[2])):
    text = "".join(rng.choices(pieces, weights, k=rng.randint(1, 40)))
    r = check_rules(text)
    kinds[r.kind] = kinds.get(r.kind, 0) + 1
print(sorted(kinds.items()))
'''


def test_random_texts_never_crash_the_checker_process():
    """clingo's parser aborts the process (no Python exception) on some non-ASCII text; the
    character check must stop every such text first. Run in a child so that an abort shows."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", FUZZ, "7", "5000"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ok" in r.stdout and "bad_character" in r.stdout and "syntax_error" in r.stdout, r.stdout
