"""Sandbox for untrusted ASP rule text (what an LLM wrote): static checks, then grounding
and solving in a child process with wall-clock and memory limits.

    r = check_rules(text)                       # in process: syntax and allowed statements
    r = run_rules(text, background=theory, facts=facts, limits=SandboxLimits(time_s=5))
    r = check_answers(text, background=theory, facts=facts, expected={"0": "yes"})
    r.status    # "ok", "syntax_error", "forbidden", "unsafe", "limit", "unsatisfiable",
                # "no_answer", "wrong_answer", "error"
    r.message, r.line, r.column, r.rule, r.variable, r.expected, r.got, r.atoms

Allowed (`RulePolicy`): plain rules `head :- body.` with a single atom head, facts,
integrity constraints `:- body.` and body aggregates (a constraint can only remove answer
sets; the answer check then reports no answer). By default forbidden: choice rules,
disjunctive heads and weak constraints (they change which answer sets exist or which is
optimal, which an added rule of a question-answering theory never needs: switch them on in
the policy), `#show` (the harness decides what it reads), `#const` (it could override the
theory's parameters), `#script`, `#include` (the parser reads the file, so the text is
scanned for it before parsing — anywhere, even in a comment or a string — and every
statement must come from the text itself),
`#external`, `#program` (other than the implicit base part), `#heuristic`, `#project`,
`#edge`, `#defined`, theory atoms (`&...`) and `@`-functions (calls into a script).

Grounding cannot be interrupted from Python, so `run_rules` grounds and solves in a
fresh interpreter (`python -I this_file.py`): the child limits its address space
(RLIMIT_AS) and CPU time before it imports clingo, and the parent kills it after
`time_s` seconds of wall-clock time.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field


@dataclass
class RulePolicy:
    allow_constraints: bool = True
    allow_choice: bool = False
    allow_disjunction: bool = False
    allow_weak: bool = False


@dataclass
class SandboxLimits:
    time_s: float = 5.0  # wall clock for the child, start-up included
    memory_mb: int = 1024  # address space of the child


@dataclass
class SandboxResult:
    status: str
    message: str = ""
    line: int | None = None  # 1-based, in the rule text
    column: int | None = None
    rule: str | None = None  # the offending statement (source text)
    variable: str | None = None  # an unsafe variable
    atoms: list[str] = field(default_factory=list)  # shown atoms of the optimal model
    cost: list[int] = field(default_factory=list)
    atoms_list: list | None = None  # per instance, with facts_list
    expected: dict | None = None  # answers expected / got (wrong_answer, no_answer)
    got: dict | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


_INCLUDE = re.compile(r"#\s*include\b")
_LOCATION = re.compile(r"<(?:string|block)>:(\d+):(\d+)")
_UNSAFE_VAR = re.compile(r"'([A-Z_][A-Za-z0-9_']*)' is unsafe")

_FORBIDDEN_STATEMENTS = {
    "Script": "#script", "Definition": "#const", "External": "#external", "ShowSignature": "#show",
    "ShowTerm": "#show", "Defined": "#defined", "Edge": "#edge", "Heuristic": "#heuristic",
    "ProjectAtom": "#project", "ProjectSignature": "#project", "TheoryDefinition": "#theory",
}


def check_rules(text: str, policy: RulePolicy | None = None) -> SandboxResult:
    """Static checks, in this process: no `#include` anywhere in the text, a clean parse,
    only allowed statements (see the module docstring). Status ok, syntax_error or forbidden."""
    from clingo import ast

    policy = policy or RulePolicy()
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        m = _INCLUDE.search(line)
        if m:
            return SandboxResult("forbidden", "#include is not allowed (the parser would read the file)",
                                 n, m.start() + 1, rule=line.strip())
    statements: list = []
    messages: list[str] = []
    try:
        ast.parse_string(text, statements.append, logger=lambda code, msg: messages.append(msg))
    except RuntimeError as e:
        msg = "\n".join(messages) or str(e)
        line, col = _location(msg)
        return SandboxResult("syntax_error", msg.strip(), line, col,
                             rule=lines[line - 1].strip() if line and line <= len(lines) else None)
    for k, stm in enumerate(statements):
        problem = _statement_problem(stm, k, policy)
        if problem:
            loc = stm.location.begin
            return SandboxResult("forbidden", problem, loc.line, loc.column, rule=_source(lines, stm))
    return SandboxResult("ok")


def _statement_problem(stm, index: int, policy: RulePolicy) -> str | None:
    from clingo.ast import ASTType

    if stm.location.begin.filename not in ("<string>", "<block>"):
        return f"statement from another file ({stm.location.begin.filename}): #include is not allowed"
    t = stm.ast_type
    name = t.name
    if name in _FORBIDDEN_STATEMENTS:
        return f"{_FORBIDDEN_STATEMENTS[name]} is not allowed"
    if t == ASTType.Program:
        if stm.name != "base" or len(stm.parameters) or index != 0:
            return "#program is not allowed"
        return None
    if t == ASTType.Minimize and not policy.allow_weak:
        return "weak constraints are not allowed"
    if t not in (ASTType.Rule, ASTType.Minimize) and name != "Comment":
        return f"{name} statements are not allowed"
    if t == ASTType.Rule:
        head = stm.head
        ht = head.ast_type
        if ht == ASTType.Literal:
            if head.atom.ast_type == ASTType.BooleanConstant and not policy.allow_constraints:
                return "integrity constraints are not allowed"
        elif ht == ASTType.Disjunction and not policy.allow_disjunction:
            return "disjunctive heads are not allowed"
        elif ht in (ASTType.Aggregate, ASTType.HeadAggregate) and not policy.allow_choice:
            return "choice rules and head aggregates are not allowed"
        elif ht == ASTType.TheoryAtom:
            return "theory atoms are not allowed"
    return _node_problem(stm)


def _node_problem(node) -> str | None:
    from clingo.ast import AST, ASTType

    t = node.ast_type
    if t in (ASTType.Function, ASTType.SymbolicTerm) and getattr(node, "external", 0):
        return f"@-functions are not allowed (@{node.name})"
    if t == ASTType.TheoryAtom:
        return "theory atoms are not allowed"
    if t == ASTType.Script:
        return "#script is not allowed"
    for key in node.child_keys:
        child = getattr(node, key)
        children = [child] if isinstance(child, AST) else list(child) if child is not None and not isinstance(
            child, (str, int)) else []
        for c in children:
            if isinstance(c, AST):
                p = _node_problem(c)
                if p:
                    return p
    return None


def _source(lines: list[str], stm) -> str:
    b, e = stm.location.begin, stm.location.end
    if b.line == e.line and b.line <= len(lines):
        return lines[b.line - 1][b.column - 1:e.column - 1].strip() or lines[b.line - 1].strip()
    return "\n".join(lines[b.line - 1:e.line]).strip()


def _location(message: str) -> tuple[int | None, int | None]:
    m = _LOCATION.search(message)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


# ---- running in a child process -------------------------------------------------
def run_rules(rules: str, *, background: str = "", facts: str = "", limits: SandboxLimits | None = None,
              policy: RulePolicy | None = None, arguments: tuple[str, ...] = (),
              facts_list: list[str] | None = None) -> SandboxResult:
    """Check `rules`, then ground and solve background (trusted theory) + rules + facts in
    a child process under `limits`. Status ok (atoms of the optimal model in `atoms`),
    unsafe, limit, unsatisfiable, error, or a static status from `check_rules`.

    With `facts_list`, each facts text is a separate instance (its own ground+solve in the
    same child, all within `limits`); `atoms_list` then holds one list of atoms per
    instance (None for an unsatisfiable one)."""
    static = check_rules(rules, policy)
    if not static.ok:
        return static
    limits = limits or SandboxLimits()
    payload = {"background": background, "rules": rules, "facts": facts, "arguments": list(arguments)}
    if facts_list is not None:
        payload["facts_list"] = list(facts_list)
    request = json.dumps(payload)
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-I", os.path.abspath(__file__)], input=request,
                              capture_output=True, text=True, timeout=limits.time_s,
                              preexec_fn=_limiter(limits))
    except subprocess.TimeoutExpired:
        return SandboxResult("limit", f"grounding or solving did not end within {limits.time_s:g} s (killed)",
                             seconds=time.monotonic() - start)
    seconds = time.monotonic() - start
    try:
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        # killed by a resource limit (MemoryError, SIGXCPU, SIGKILL) before it could answer
        why = "memory" if "MemoryError" in proc.stderr or "bad_alloc" in proc.stderr else "time or memory"
        return SandboxResult("limit", f"the solver process ended without a result ({why} limit, exit {proc.returncode})",
                             seconds=seconds)
    return _result_from_reply(reply, rules, seconds)


def _limiter(limits: SandboxLimits):
    def apply():
        import resource

        mem = int(limits.memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(limits.time_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    return apply


def _result_from_reply(reply: dict, rules: str, seconds: float) -> SandboxResult:
    status, messages = reply["status"], "\n".join(reply.get("messages", []))
    if status == "error":
        if "unsafe" in messages:
            line, col = _location(messages)
            var = _UNSAFE_VAR.search(messages)
            lines = rules.splitlines()
            return SandboxResult("unsafe", messages.strip(), line, col,
                                 rule=lines[line - 1].strip() if line and line <= len(lines) else None,
                                 variable=var.group(1) if var else None, seconds=seconds)
        if "MemoryError" in messages or "bad_alloc" in messages or "std::bad_alloc" in messages:
            return SandboxResult("limit", "memory limit hit while grounding or solving", seconds=seconds)
        line, col = _location(messages)
        return SandboxResult("error", messages.strip() or reply.get("error", ""), line, col, seconds=seconds)
    if status == "unsatisfiable":
        return SandboxResult("unsatisfiable", "the program has no answer set", seconds=seconds)
    return SandboxResult("ok", atoms=reply["atoms"], cost=reply.get("cost", []), seconds=seconds,
                         atoms_list=reply.get("atoms_list"))


def check_answers(rules: str, *, background: str = "", facts: str = "", expected: dict[str, str],
                  answer_predicate: str = "ans", limits: SandboxLimits | None = None,
                  policy: RulePolicy | None = None) -> SandboxResult:
    """`run_rules`, then compare the `answer_predicate(Q, V)` atoms with `expected`
    ({question id: answer}, ids and answers as printed terms without quotes).
    Status no_answer when some question has no answer, wrong_answer when one differs."""
    r = run_rules(rules, background=background, facts=facts, limits=limits, policy=policy)
    if r.status not in ("ok", "unsatisfiable"):
        return r
    got: dict[str, str] = {}
    pat = re.compile(rf"^{re.escape(answer_predicate)}\((-?\d+|\"(?:[^\"\\\\]|\\\\.)*\"|[a-z_]\w*),(.*)\)$")
    for a in r.atoms:
        m = pat.match(a)
        if m:
            got[m.group(1).strip('"')] = m.group(2).strip('"')
    exp = {str(k): str(v) for k, v in expected.items()}
    missing = {k: v for k, v in exp.items() if k not in got}
    if r.status == "unsatisfiable" or missing:
        return SandboxResult("no_answer", f"no answer for question(s) {', '.join(sorted(missing or exp))}",
                             atoms=r.atoms, expected=exp, got={k: got[k] for k in exp if k in got}, seconds=r.seconds)
    wrong = {k for k, v in exp.items() if got[k] != v}
    if wrong:
        return SandboxResult("wrong_answer", "; ".join(f"question {k}: expected {exp[k]}, got {got[k]}" for k in sorted(wrong)),
                             atoms=r.atoms, expected={k: exp[k] for k in wrong}, got={k: got[k] for k in wrong},
                             seconds=r.seconds)
    return SandboxResult("ok", atoms=r.atoms, cost=r.cost, expected=exp, got={k: got[k] for k in exp},
                         seconds=r.seconds)


# ---- the child --------------------------------------------------------------------
def _child_main() -> None:
    """Read a request from stdin, ground and solve, print one JSON line."""
    request = json.loads(sys.stdin.read())
    messages: list[str] = []
    reply: dict = {"status": "error", "messages": messages}
    try:
        import clingo

        def solve_one(facts: str):
            ctl = clingo.Control(["--warn=none", *request.get("arguments", [])],
                                 logger=lambda code, msg: messages.append(msg))
            for part in (request.get("background"), request.get("rules"), facts):
                if part:
                    ctl.add("base", [], part)
            ctl.ground([("base", [])])
            atoms, cost = None, []
            with ctl.solve(yield_=True) as handle:
                for model in handle:
                    atoms = [str(s) for s in model.symbols(shown=True)]
                    cost = list(model.cost)
            return atoms, cost

        if "facts_list" in request:  # several instances, each grounded and solved on its own
            results = [solve_one(f) for f in request["facts_list"]]
            reply = {"status": "ok", "atoms": [], "atoms_list": [a for a, _ in results], "messages": messages}
        else:
            atoms, cost = solve_one(request.get("facts", ""))
            if atoms is None:
                reply = {"status": "unsatisfiable", "messages": messages}
            else:
                reply = {"status": "ok", "atoms": atoms, "cost": cost, "messages": messages}
    except MemoryError:
        messages.append("MemoryError")
    except RuntimeError as e:
        reply["error"] = str(e)
    sys.stdout.write("\n" + json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _child_main()
