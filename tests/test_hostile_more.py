"""More hostile replies, written apart from test_hostile_proposals.py (issue 23: "re-measured
independently with other hostile texts"), through the same path an LLM reply takes
(`Distiller._judge`) on the CLEVR and the GQA checker: each ends as a verdict of the
expected kind with a message for the model, never an exception, and costs the parent
process little memory. Boundary cases sit on both sides of each cap (statements, answers,
nesting, reply size)."""
import os
from pathlib import Path

import pytest

DEEP = 3000


def _b(text: str) -> str:
    return "```asp\n" + text + "\n```"


CHEAP = "ans(Q, yes) :- question(Q)."
# (name, reply, verdict kinds accepted): the answer predicate and ids differ between the two
# theories (CLEVR: ans(Q, yes), GQA: ans("0", "yes")); these replies are wrong or refused in both
NEW_HOSTILE = [
    # nesting (refused by the depth cap, not by Python's recursion limit)
    # parentheses alone are no nesting (clingo reads ((1)) as 1): accepted, then judged
    ("deep_parentheses", _b("p(" + "(" * 15_000 + "1" + ")" * 15_000 + ") :- question(Q)."), {"wrong_answer"}),
    ("deep_parenthesised_minus", _b("p(X) :- question(Q), X = " + "-(" * DEEP + "1" + ")" * DEEP + "."),
     {"too_deep"}),
    ("deep_pool", _b("p(" + "f(1;" * 1500 + "1" + ")" * 1500 + ")."), {"too_deep"}),
    ("deep_abs", _b("p(X) :- question(Q), X = " + "|" * 1000 + "-1" + "|" * 1000 + "."),
     {"too_deep", "syntax_error"}),
    ("depth_150", _b("p(" + "f(" * 150 + "1" + ")" * 150 + ") :- question(Q)."), {"too_deep"}),
    ("depth_90_is_fine", _b("p(" + "f(" * 90 + "1" + ")" * 90 + ") :- question(Q)."), {"wrong_answer"}),
    # wide but shallow: accepted by the static checks, then judged on the answers
    ("wide_pool", _b("p(" + ";".join(str(i) for i in range(5000)) + ")."), {"wrong_answer"}),
    ("wide_arity", _b("p(" + ",".join(["1"] * 5000) + ")."), {"wrong_answer"}),
    ("long_identifier", _b("p(" + "a" * 30_000 + ") :- question(Q)."), {"wrong_answer"}),
    # arithmetic
    ("huge_integer", _b("p(99999999999999999999999999999) :- question(Q)."), {"syntax_error", "wrong_answer"}),
    ("division_by_zero", _b("p(X) :- question(Q), X = 1/0."), {"wrong_answer"}),
    ("sum_overflow", _b("p(S) :- S = #sum { 2147483647, 1 : question(_) ; 2147483647, 2 : question(_) }."),
     {"wrong_answer", "syntax_error"}),
    # cost bombs (time or memory cap of the child)
    ("interval_bomb", _b("p(X) :- X = 1..2147483647."), {"time_limit", "memory_limit"}),
    ("term_explosion", _b("p(f(X)) :- p(X). p(0)."), {"time_limit", "memory_limit"}),
    ("cross_product", _b("p(1..4000). q(X, Y) :- p(X), p(Y)."), {"time_limit", "memory_limit"}),
    # answers: over the per-question cap, just under it but huge in bytes
    ("answers_101", _b("ans(Q, V) :- question(Q), V = 1..101."), {"too_many_answers"}),
    ("answers_99_huge", _b('ans(Q, (V, "' + "y" * 20_000 + '")) :- question(Q), V = 1..99.'),
     {"result_too_large"}),
    # ids that do not exist: other questions, other objects, a question of its own
    ("answer_for_no_question", _b('ans(999999, yes). ans("999999", "yes").'), {"wrong_answer"}),
    ("question_of_its_own", _b('question(123456). question("123456").'), {"wrong_answer"}),
    ("objects_that_do_not_exist", _b('val(Q, I, 4242) :- step(Q, I, F). out(Q, I, "4242") :- step(Q, I, F).'
                                     ' val(Q, 0, -5) :- question(Q).'), {"wrong_answer"}),
    # statements the policy refuses
    ("minimize", _b("#minimize { 1, Q : question(Q) }."), {"weak_constraint", "directive"}),
    ("theory_atom", _b("&diff { a - b } <= 3 :- question(Q)."), {"theory_atom"}),
    ("conditional_head", _b("ans(Q, yes) : question(Q)."), {"disjunction", "choice", "directive", "syntax_error"}),
    ("defined", _b("#defined p/1."), {"directive"}),
    ("project", _b("#project p/1."), {"directive"}),
    ("lua_script", _b("#script (lua)\nfunction f() return 1 end\n#end."), {"script"}),
    ("include_spaced", _b('#   include "/etc/passwd".'), {"include"}),
    ("include_in_block_comment", _b('%* #include "x.lp". *%\n' + CHEAP), {"include"}),
    ("unsafe_negation", _b("ans(Q, yes) :- not question(Q)."), {"unsafe"}),
    ("no_stable_model", _b("a :- not a."), {"wrong_answer"}),
    ("unterminated_block_comment", _b("%* never closed\n" + CHEAP), {"syntax_error"}),
    # characters clingo's parser must not see
    ("fullwidth_hash_include", _b('\uff03include "/etc/passwd".'), {"bad_character"}),
    ("zero_width_space", _b("ans(Q,\u200byes) :- question(Q)."), {"bad_character"}),
    ("byte_order_mark", _b("\ufeff" + CHEAP), {"bad_character"}),
    ("form_feed", _b("ans(Q,\fyes) :- question(Q)."), {"bad_character"}),
    ("escape_char", _b(CHEAP + "\x1b[2J"), {"bad_character"}),
    ("surrogate_pair_halves", _b("p(\"\udbff\udfff\") :- question(Q)."), {"bad_character"}),
    ("rtl_override_in_comment", _b("% \u202e txet neddih\n" + "p :- question(Q)."), {"wrong_answer"}),
    # reply and rules sizes around the caps
    ("statements_200", _b("\n".join(f"p({i})." for i in range(200))), {"wrong_answer"}),
    ("statements_201", _b("\n".join(f"p({i})." for i in range(201))), {"too_many_rules"}),
    ("rules_32001_chars", _b("% " + "x" * 31_999 + "\np."), {"too_long"}),
    ("reply_100001_chars", "x" * 100_001, {"too_long"}),
    ("whitespace_flood", " " * 99_000 + _b("p :- question(Q)."), {"wrong_answer"}),
    ("many_code_blocks", "".join(_b(f"p({i}).") + "\n" for i in range(300)), {"too_many_rules", "too_long"}),
    ("json_reply", '{"rules": "ans(Q, yes) :- question(Q)."}', {"syntax_error"}),
    ("nested_fences", "```asp\n```asp\np :- question(Q).\n```\n```", {"wrong_answer", "syntax_error", "empty"}),
]
BY_NAME = {h[0]: h for h in NEW_HOSTILE}


def make_distiller(dataset: str, tmp: Path):
    """A Distiller on a small task of `dataset` (CLEVR: the theory without `exist`; GQA: the
    light theory, without relate) and a batch of its examples, one of which the starting
    theory gets wrong, so that a reply adding nothing useful is judged wrong, not accepted."""
    from vqa.distill.loop import DistillConfig, Distiller
    from vqa.distill.run import DistillRun, prepare
    from vqa.reason.sandbox import SandboxLimits
    from conftest import FIXTURES

    limits = SandboxLimits(time_s=5, memory_mb=1024)
    if dataset == "clevr":
        from test_distill import write_exist_task
        from vqa.distill.clevr_checker import ENCODING_DOC, CLEVRChecker

        scenes = write_exist_task(tmp)
        run = DistillRun("clevr", str(tmp / "questions.json"), str(scenes), str(tmp / "run"),
                         theory=str(tmp / "incomplete.lp"), test_fraction=0, val_fraction=0)
        checker = CLEVRChecker(limits=limits)
    else:
        from vqa.distill.gqa_checker import ENCODING_DOC, GQAChecker

        # the light theory (no relate rules), so that nothing cheap is accepted
        run = DistillRun("gqa", str(FIXTURES / "gqa/families_questions.json"),
                         str(FIXTURES / "gqa/families_sceneGraphs.json"), str(tmp / "run"),
                         theory=str(Path(__file__).parents[1] / "rules/gqa/incomplete/light.lp"), test_fraction=0,
                         val_fraction=0)
        checker = GQAChecker(limits=limits)
    base, _, split = prepare(run)
    d = Distiller(base, split, checker, None, tmp / "run", DistillConfig(), encoding_doc=ENCODING_DOC,
                  example_facts="")
    # a batch of three with one question the starting theory gets wrong; warms imports, first child
    res = d._check([], split.train, "warm")
    wrong = [e for e in split.train if not res.correct(e)]
    assert wrong, f"{dataset}: the starting theory answers every question; the replies would be accepted"
    batch = [wrong[0]] + [e for e in split.train if e is not wrong[0]][:2]
    return d, batch


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module", params=["clevr", "gqa"])
def judge(request, tmp_path_factory):
    return request.param, make_distiller(request.param, tmp_path_factory.mktemp(f"more_{request.param}"))


# the slow ones (the bombs run to the 5 s CPU limit; the GQA child grounds the whole theory)
SLOW = {"interval_bomb", "term_explosion", "cross_product"}


@pytest.mark.parametrize("name", [pytest.param(h[0], marks=pytest.mark.slow) if h[0] in SLOW else h[0]
                                  for h in NEW_HOSTILE])
def test_new_hostile_reply_gets_its_verdict(judge, name):
    dataset, (d, batch) = judge
    _, text, kinds = BY_NAME[name]
    r = measure(d, batch, text)  # an exception here fails the test
    kind, message, mend = r["verdict"], r["message"], r["mend"]
    assert kind in kinds, (dataset, name, kind, message[:300])
    assert message and mend and "```asp" in mend
    mend.encode("utf-8")
    if r["parent_peak_mb"] is not None:
        assert r["parent_peak_mb"] <= 50, f"{dataset} {name}: the parent's peak grew by {r['parent_peak_mb']:.1f} MB"
    # CPU time, not wall-clock: the machine may be busy; the solver's work is the child's
    assert r["parent_cpu_s"] <= 2, f"{dataset} {name}: {r['parent_cpu_s']:.2f} s of the parent's CPU time"


def measure(d, batch, text: str) -> dict:
    """One reply judged in this process: its verdict, the parent's peak memory above the
    resident size before it (MB; None where the peak cannot be reset), the parent's CPU
    seconds, the sandbox child's CPU seconds and the wall-clock seconds."""
    import resource
    import time

    measurable = os.access("/proc/self/clear_refs", os.W_OK)
    if measurable:
        Path("/proc/self/clear_refs").write_text("5")
    base_kb = _status_kb("VmRSS")
    me, kids, t = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), \
        time.perf_counter()
    rules, kind, message, mend = d._judge(text, batch)
    wall = time.perf_counter() - t
    me2, kids2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"verdict": "accepted" if rules is not None else kind, "message": message, "mend": mend,
            "parent_peak_mb": (_status_kb("VmHWM") - base_kb) / 1024 if measurable else None,
            "parent_cpu_s": me2.ru_utime + me2.ru_stime - me.ru_utime - me.ru_stime,
            "child_cpu_s": max(0.0, kids2.ru_utime + kids2.ru_stime - kids.ru_utime - kids.ru_stime), "wall_s": wall}


def bench(datasets=("clevr", "gqa")) -> None:
    """`PYTHONPATH=. python tests/test_hostile_more.py [clevr|gqa ...]`: every hostile reply
    of this file and of test_hostile_proposals.py judged once, with what it cost."""
    import tempfile

    from test_hostile_proposals import HOSTILE, _reply

    replies = [(f"p:{n}", _reply(t)) for n, t, *_ in HOSTILE] + [(f"m:{n}", t) for n, t, _ in NEW_HOSTILE]
    for dataset in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            d, batch = make_distiller(dataset, Path(tmp))
            print(f"{dataset}: parent RSS after warm-up {_status_kb('VmRSS') / 1024:.1f} MB; "
                  f"CPU limit {d.checker.limits.time_s} s, memory limit {d.checker.limits.memory_mb} MB")
            print(f"{'reply':34} {'verdict':18} {'peak+MB':>8} {'parentCPU':>9} {'childCPU':>8} {'wall':>6}")
            rows = []
            for name, text in replies:
                r = measure(d, batch, text)
                rows.append(r)
                peak = "n/a" if r["parent_peak_mb"] is None else f"{r['parent_peak_mb']:.1f}"
                print(f"{name:34} {r['verdict']:18} {peak:>8} {r['parent_cpu_s']:9.2f} {r['child_cpu_s']:8.2f} "
                      f"{r['wall_s']:6.2f}", flush=True)
            peaks = [r["parent_peak_mb"] for r in rows if r["parent_peak_mb"] is not None]
            print(f"{dataset}: {len(rows)} replies; max parent peak +{max(peaks, default=float('nan')):.1f} MB, "
                  f"max parent CPU {max(r['parent_cpu_s'] for r in rows):.2f} s, "
                  f"max wall {max(r['wall_s'] for r in rows):.2f} s\n")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    bench(tuple(sys.argv[1:]) or ("clevr", "gqa"))


@pytest.mark.slow  # ~1 min on a busy machine: a GQA check per reply
def test_gqa_distill_meets_the_new_replies_goes_on_and_resumes_after_kill(tmp_path):
    """`vqa distill --dataset gqa` itself (the fake endpoint) meets every reply of this file but
    the bombs, as mends of one candidate, then the relate rules the light theory lacks; it is
    killed -9 halfway and the same command finishes the run: every reply asked for once, each
    verdict of its kind in the transcript, the model told each refusal, the rules accepted."""
    import json
    import signal
    import subprocess
    import sys

    from conftest import FIXTURES
    from fake_openai import FakeOpenAI
    from vqa.distill.theory import statements
    from vqa.reason.solver import load_theory

    root = Path(__file__).parents[1]
    complete = load_theory(root / "rules/gqa", exclude=["example_facts.lp"])
    good = _b("\n".join(s.text for s in statements(complete) if s.kind == "Rule" and "related" in s.predicates))
    hostile = [h for h in NEW_HOSTILE if h[0] not in SLOW]
    replies = [h[1] for h in hostile] + [good]
    cmd = [sys.executable, "-m", "vqa", "distill", "--dataset", "gqa",
           "--theory", str(root / "rules/gqa/incomplete/light.lp"),
           "--questions", str(FIXTURES / "gqa/families_questions.json"),
           "--scenes", str(FIXTURES / "gqa/families_sceneGraphs.json"), "--out", str(tmp_path / "run"),
           "--model", "fake", "--timeout", "10", "--llm-retries", "0", "--batch", "4", "--retries", "1",
           "--mends", str(len(hostile) + 1), "--test-fraction", "0", "--val-fraction", "0", "--order", "length",
           "--max-batches", "1", "--check-seconds", "4", "--check-memory-mb", "1024"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(Path(__file__).parent)]))
    half = len(hostile) // 2
    with FakeOpenAI(replies, hold_after=half) as server:
        cmd += ["--base-url", server.url]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert server.held.wait(300), "the run never got halfway"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(server.requests) == half
        server.release()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    events = [json.loads(x) for x in (tmp_path / "run/transcript.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert not [e for e in events if e["kind"] == "checker_error"]
    assert len(server.requests) == len([e for e in events if e["kind"] == "llm"]) == len(replies)
    verdicts = [e for e in events if e["kind"] == "verdict"]
    assert len(verdicts) == len(replies)
    for (name, _, kinds), v in zip(hostile, verdicts):
        if name == "surrogate_pair_halves":  # sent as JSON, the two halves arrive as one character (U+10FFFF)
            kinds = kinds | {"wrong_answer"}
        assert v["verdict"] in kinds, (name, v)
        assert v["message"], name
    assert verdicts[-1]["verdict"] == "accepted"
    for (name, _, _), v, req in zip(hostile, verdicts, server.requests[1:]):
        told = req["messages"][-1]["content"]
        assert "```asp" in told, name
        if v["verdict"] != "wrong_answer":  # a wrong answer is told as the questions and answers
            assert v["message"][:60] in told, (name, v["message"][:200], told[:300])
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["accepted_rules"] == 1 and sum(summary["verdicts"].values()) == len(replies)
    theory = (tmp_path / "run/theory.lp").read_text()
    assert "#include" not in theory and "4242" not in theory and "123456" not in theory


def test_gqa_prompt_facts_are_the_same_in_every_process():
    """A distill run resumed after kill -9 replays its transcript only if each prompt is the
    same text as before; the GQA facts once listed hypernyms in set order, which changes with
    the process's string-hash seed (found by the test above: "the prompt of LLM call at event
    5 differs from the recorded one")."""
    import subprocess
    import sys

    from conftest import FIXTURES

    code = ("import sys; from vqa.distill.gqa_checker import GQAChecker, load_examples\n"
            "exs = load_examples(sys.argv[1], sys.argv[2])\n"
            "sys.stdout.write(GQAChecker().prompt_facts(exs))")
    outs = []
    for seed in ("1", "2", "3"):
        r = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "gqa/families_questions.json"),
                            str(FIXTURES / "gqa/families_sceneGraphs.json")], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), PYTHONHASHSEED=seed),
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(r.stdout)
    assert "hyper(" in outs[0] and outs[0] == outs[1] == outs[2]
