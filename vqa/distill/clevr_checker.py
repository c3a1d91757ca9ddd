"""Checking candidate rules on CLEVR examples: sandboxed solving + step-level diagnosis.

`CLEVRChecker.run(base, rules, examples)` puts every example's scene and question into
one facts text (scenes and questions numbered through the batch), grounds and solves
the trusted base theory + the untrusted rules in the sandbox's child process, and
reads `ans(Q, V)` per question. For a wrong answer the diagnosis is the first program
step whose derived objects (`val/3`) or value (`out/3`) differ from the reference
executor's trace, with both sides.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..executor import execute
from ..ontology import CLEVR_FUNCTIONS, normalise_answer
from ..program import Program
from ..question import Question
from ..reason.asp_encode import encode
from ..reason.sandbox import SandboxLimits, run_rules
from ..scene import SceneGraph
from .loop import CheckResult
from .prompts import Example

_TERM = r"(\"(?:[^\"\\]|\\.)*\"|-?\d+|[a-z_]\w*)"
_ANS = re.compile(r"^ans\((\d+)," + _TERM + r"\)$")
_VAL = re.compile(r"^val\((\d+),(\d+),(\d+)\)$")
_OUT = re.compile(r"^out\((\d+),(\d+)," + _TERM + r"\)$")
_STATUS = {"syntax_error": "syntax", "unsafe": "unsafe", "forbidden": "forbidden", "limit": "limit"}
SHOW = ("ans/2", "val/3", "out/3")  # what the checker reads back from the solver
CHUNK = 256  # examples per child process (bounds what one child sends back)

ENCODING_DOC = """\
Scene S (objects numbered through all scenes of the facts):
  in_scene(O, S). obj(O). attr(O, Category, Value).     e.g. attr(3, color, red)
  rel(J, Relation, O).     J is Relation of O (Relation: left, right, front, behind)
Question Q about scene S, step I of its program:
  question(Q). about(Q, S). step(Q, I, F). arg(Q, I, V). input(Q, I, K, J).
  F is scene, unique, relate, union, intersect, count, exist, equal_integer, less_than,
  greater_than, filter(C), query(C), same(C) or equal(C) for an attribute category C;
  arg/3 is the step's value (filter(color) with arg red); input(Q, I, K, J) says that the
  K-th input (0, 1) of step I is the result of step J.
The theory derives val(Q, I, O) for each object O in the result of step I, out(Q, I, V)
for a value result (numbers, yes/no, attribute values), fail(Q, I, Reason) for the first
failing step, and the answer ans(Q, V)."""


def example_from_question(q: Question, scene: SceneGraph) -> Example:
    if q.program is None or q.answer is None:
        raise ValueError(f"question {q.qid} has no program or no answer")
    return Example(qid=q.qid, question=q.text, program_text=str(q.program), facts="", expected=q.answer,
                   meta={"op": _final_op(q.program), "length": len(q.program), "scene": scene, "program": q.program,
                         "family": q.family})


def _final_op(program: Program) -> str:
    op = program.steps[-1].op
    spec = CLEVR_FUNCTIONS.get(op)
    if spec and spec.category:
        return op.rsplit("_", 1)[0]  # query_color -> query, equal_size -> equal
    return op


def facts_for(examples: list[Example]) -> tuple[str, list[list[str]]]:
    """One facts text for the examples (question q = the q-th example) and object ids per
    global object index."""
    batch = [(ex.meta["scene"], [ex.meta["program"]]) for ex in examples]
    encodings, facts = encode(batch)
    ids = [i for enc in encodings for i in enc.ids]
    return facts, ids


@dataclass
class CLEVRChecker:
    limits: SandboxLimits = None  # type: ignore[assignment]

    def __post_init__(self):
        self.limits = self.limits or SandboxLimits(time_s=30.0, memory_mb=2048)

    def prompt_facts(self, examples: list[Example]) -> str:
        return facts_for(examples)[0]

    def run(self, base: str, rules: list[str], examples: list[Example]) -> CheckResult:
        if len(examples) > CHUNK:  # several children, so that no one's result grows past the sandbox's cap
            return CheckResult.merged([self.run(base, rules, examples[i:i + CHUNK])
                                       for i in range(0, len(examples), CHUNK)])
        facts, ids = facts_for(examples)
        res = run_rules("\n".join(rules), background=base, facts=facts, limits=self.limits, show=SHOW,
                        answer_predicate="ans")
        if res.status in _STATUS:
            where = f" (line {res.line}, column {res.column})" if res.line else ""
            msg = res.message + where
            if res.rule:
                msg += f"\nrule: {res.rule}"
            return CheckResult(_STATUS[res.status], msg, kind=res.kind)
        if res.status == "error":
            return CheckResult("syntax", res.message, kind="error")
        atoms = res.atoms if res.status == "ok" else []
        answers: dict[int, list[str]] = {}
        vals: dict[tuple[int, int], set[str]] = {}
        outs: dict[tuple[int, int], list[str]] = {}
        for a in atoms:
            if m := _ANS.match(a):
                answers.setdefault(int(m.group(1)), []).append(_text(m.group(2)))
            elif m := _VAL.match(a):
                o = int(m.group(3))  # a rule may derive an object that no scene has
                obj = ids[o] if 0 <= o < len(ids) else f"<no object {o}>"
                vals.setdefault((int(m.group(1)), int(m.group(2))), set()).add(obj)
            elif m := _OUT.match(a):
                outs.setdefault((int(m.group(1)), int(m.group(2))), []).append(_text(m.group(3)))
        out = CheckResult("ok")
        for q, ex in enumerate(examples):
            got = sorted(answers.get(q, []))
            out.answers[ex.qid] = got
            if got != [ex.expected]:
                out.diagnosis[ex.qid] = diagnose(ex, q, vals, outs)
        return out


def _text(term: str) -> str:
    return term[1:-1] if term.startswith('"') else normalise_answer(term)


def diagnose(ex: Example, q: int, vals, outs) -> dict | None:
    """The first step whose derived result differs from the reference executor's."""
    ref = execute(ex.meta["program"], ex.meta["scene"])
    for t in ref.trace:
        if t.error:
            return None
        spec = CLEVR_FUNCTIONS.get(ex.meta["program"].steps[t.index].op)
        if spec and spec.output in ("objects", "object"):
            want = sorted([t.value] if spec.output == "object" else t.value)
            have = sorted(vals.get((q, t.index), set()))
            if want != have:
                return {"step": t.index, "op": t.token, "expected": f"objects {want}", "derived": f"objects {have}"}
        else:
            want = [normalise_answer(t.value)]
            have = sorted(outs.get((q, t.index), []))
            if want != have:
                return {"step": t.index, "op": t.token, "expected": want[0] if want else "nothing",
                        "derived": ", ".join(have) if have else "nothing"}
    return None
