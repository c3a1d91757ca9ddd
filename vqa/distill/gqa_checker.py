"""Checking candidate rules on GQA examples: one sandboxed child, one instance per image.

Example k's question id in the facts is the string "k". For a wrong answer, the
diagnosis is the first step whose derived objects (`out/3`) differ from the object ids
that GQA's own program annotates at that step (`select: man (1232)`; `(-)` = none).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from ..datasets import gqa
from ..datasets.gqa_ontology import GQAOntology, default_ontology
from ..datasets.gqa_program import parse_program
from ..question import Question
from ..reason.gqa_asp import encode_ontology, encode_question, encode_scene, step_kind
from ..reason.sandbox import SandboxLimits, run_rules
from ..scene import SceneGraph
from .loop import CheckResult
from .prompts import Example

_STR = r'"((?:[^"\\]|\\.)*)"'
_ANS = re.compile(rf'^ans\("(\d+)",{_STR}\)$')  # question ids are "0", "1", ...: a rule may derive others
_OUT = re.compile(rf'^out\("(\d+)",(\d+),{_STR}\)$')
CHUNK = 256  # examples per child process (bounds what one child sends back)
_STATUS = {"syntax_error": "syntax", "unsafe": "unsafe", "forbidden": "forbidden", "limit": "limit",
           "error": "syntax"}

ENCODING_DOC = """\
All ids and values are strings. Scene: image(W,H). scene_attr(Type,V). object(O). name(O,N).
box(O,X,Y,W,H). attr(O,Type,V) e.g. attr("1233","color","red"). rel(S,P,O): "S P O", e.g.
rel("1232","holding","1233"). Ontology: hyper(N,H) (an N is an H), plural(P,S).
Question Q, step I: question(Q). last(Q,I). step(Q,I,Kind) with Kind select, relate, filter,
query, verify, choose, exist, and, or, same, different, common, ... dep(Q,I,Pos,J): input Pos of
step I is step J. Arguments: arg_name(Q,I,N), arg_type(Q,I,T), arg_value(Q,I,V), arg_rel(Q,I,R),
arg_dir(Q,I,D) (s: the new objects are the subject; o: the object), negated(Q,I).
The theory derives out(Q,I,O) for the objects of step I, val(Q,I,V) for a value, fail(Q,I) for a
failing step, and the answer ans(Q,V)."""


def example_from_question(q: Question, scene: SceneGraph) -> Example:
    steps = parse_program(q.program)
    return Example(qid=q.qid, question=q.text, program_text=q.meta.get("semanticStr") or str(q.program), facts="",
                   expected=q.answer, meta={"op": steps[-1].family, "length": len(steps), "scene": scene,
                                            "steps": steps})


def load_examples(questions, scenes, limit: int | None = None) -> list[Example]:
    graphs = gqa.SceneGraphs(scenes)
    out = []
    for q in gqa.iter_questions(questions):
        if limit is not None and len(out) >= limit:
            break
        if q.program is None or q.answer is None or q.image_id not in graphs:
            continue
        out.append(example_from_question(q, graphs[q.image_id]))
    return out


@dataclass
class GQAChecker:
    limits: SandboxLimits = None  # type: ignore[assignment]
    ontology: GQAOntology = None  # type: ignore[assignment]

    def __post_init__(self):
        self.limits = self.limits or SandboxLimits(time_s=60.0, memory_mb=2048)
        self.ontology = self.ontology or default_ontology()

    def _instances(self, examples: list[Example]) -> tuple[list[str], list[list[int]]]:
        by_image: OrderedDict[str, list[int]] = OrderedDict()
        for k, ex in enumerate(examples):
            by_image.setdefault(ex.meta["scene"].image_id, []).append(k)
        facts_list = []
        for ks in by_image.values():
            scene = examples[ks[0]].meta["scene"]
            facts, _ = encode_scene(scene, self.ontology)
            facts += encode_ontology(self.ontology, {o.name for o in scene.objects})
            for k in ks:
                facts += encode_question(str(k), examples[k].meta["steps"])
            facts_list.append("\n".join(dict.fromkeys(facts)))
        return facts_list, list(by_image.values())

    def prompt_facts(self, examples: list[Example]) -> str:
        return "\n".join(self._instances(examples)[0])

    def run(self, base: str, rules: list[str], examples: list[Example]) -> CheckResult:
        if len(examples) > CHUNK:  # several children, so that no one's result grows past the sandbox's cap
            return CheckResult.merged([self.run(base, rules, examples[i:i + CHUNK])
                                       for i in range(0, len(examples), CHUNK)])
        facts_list, groups = self._instances(examples)
        res = run_rules("\n".join(rules), background=base, facts_list=facts_list, limits=self.limits,
                        arguments=("--opt-mode=opt",), show=("ans/2", "out/3"), answer_predicate="ans")
        if res.status in _STATUS:
            where = f" (line {res.line}, column {res.column})" if res.line else ""
            return CheckResult(_STATUS[res.status], res.message + where + (f"\nrule: {res.rule}" if res.rule else ""),
                               kind=res.kind)
        answers: dict[int, list[str]] = {}
        outs: dict[tuple[int, int], set[str]] = {}
        for atoms in res.atoms_list or []:
            for a in atoms or []:
                if m := _ANS.match(a):
                    answers.setdefault(int(m.group(1)), []).append(m.group(2))
                elif m := _OUT.match(a):
                    outs.setdefault((int(m.group(1)), int(m.group(2))), set()).add(m.group(3))
        result = CheckResult("ok")
        for k, ex in enumerate(examples):
            got = sorted(answers.get(k, []))
            result.answers[ex.qid] = got
            if got != [ex.expected]:
                result.diagnosis[ex.qid] = diagnose(ex, k, outs)
        return result


def diagnose(ex: Example, k: int, outs) -> dict | None:
    for i, st in enumerate(ex.meta["steps"]):
        if st.object_ids is None or step_kind(st) not in ("select", "relate", "filter"):
            continue
        want = sorted(st.object_ids)
        have = sorted(outs.get((k, i), set()))
        if want != have:
            return {"step": i, "op": st.raw()[0] + ": " + st.raw()[1], "expected": f"objects {want}",
                    "derived": f"objects {have}"}
    return None
