"""Sandbox for untrusted ASP rule text (what an LLM wrote): static checks, then grounding
and solving in a child process with wall-clock and memory limits.

    r = check_rules(text)                       # in process: syntax and allowed statements
    r = run_rules(text, background=theory, facts=facts, limits=SandboxLimits(time_s=5))
    r = check_answers(text, background=theory, facts=facts, expected={"0": "yes"})
    r.status    # "ok", "syntax_error", "forbidden", "unsafe", "limit", "unsatisfiable",
                # "no_answer", "wrong_answer", "error"
    r.kind      # finer: e.g. "too_long", "too_many_rules", "too_deep", "bad_character",
                # "time_limit", "memory_limit", "too_many_answers", "result_too_large", "crashed"
    r.message, r.line, r.column, r.rule, r.variable, r.expected, r.got, r.atoms

Whatever its bytes, a text ends as a result, never as an exception: caps on what a text
may cost (`RulePolicy.max_chars`, `max_statements`, `max_depth`; `SandboxLimits.time_s`,
`memory_mb`, `max_answers`, `reply_bytes`) each refuse it with a message that says which
cap and by how much. Characters are checked before clingo sees the text: clingo's
parser aborts the whole process (a C++ "PANIC", not a Python exception) when its
error message would cut a multi-byte character, so outside string literals and `%`
line comments only printable ASCII is accepted, and control characters and lone
surrogates nowhere. Nesting is measured on the parsed statements without recursion.

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
(RLIMIT_AS) and CPU time (`time_s`, RLIMIT_CPU) before it imports clingo, and the parent
kills it after `wall_s` seconds of wall-clock time (default 3 * time_s + 10), a backstop.
The limit is CPU time so that a verdict does not depend on how busy the machine is: on a
shared machine a child may get a fraction of a core, and a wall-clock limit then could
refuse a cheap reply as a time bomb.
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
    max_chars: int = 32_000  # rule text size (clingo's parser itself crashes on ~200,000-deep nesting)
    max_statements: int = 200  # rules, facts and constraints
    max_depth: int = 100  # nesting of terms, expressions and literals in one statement


@dataclass
class SandboxLimits:
    time_s: float = 5.0  # CPU seconds of the child, start-up included (RLIMIT_CPU)
    memory_mb: int = 1024  # address space of the child
    # wall-clock backstop (None: 3 * time_s + 10 s): what a child may take on a busy machine,
    # where its CPU seconds come slowly; the verdict should not depend on the machine's load
    wall_s: float | None = None
    max_answers: int = 100  # values of the answer predicate per question (run_rules' answer_predicate)
    reply_bytes: int = 2_000_000  # what the child may send back (the parent reads no more)


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
    kind: str = ""  # finer than status (see the module docstring); status when not set

    def __post_init__(self):
        self.kind = self.kind or self.status

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
    """Static checks, in this process: size, characters, no `#include` anywhere in the
    text, a clean parse, statement count, nesting depth, only allowed statements (see the
    module docstring). Status ok, syntax_error, forbidden or limit; never an exception."""
    from clingo import ast

    policy = policy or RulePolicy()
    if not isinstance(text, str):
        return SandboxResult("forbidden", f"rules must be text, got {type(text).__name__}", kind="bad_character")
    if len(text) > policy.max_chars:
        return SandboxResult("limit", f"the rules are {len(text):,} characters long; at most {policy.max_chars:,} "
                             "are accepted", kind="too_long")
    lines = text.split("\n")  # clingo counts lines by \n only (not by U+2028 and the like)
    bad = _character_problem(text)
    if bad:
        line, col, msg = bad
        return SandboxResult("forbidden", msg, line, col, rule=_clip(lines[line - 1]), kind="bad_character")
    m = _INCLUDE.search(text)
    if m:
        n = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        return SandboxResult("forbidden", "#include is not allowed (the parser would read the file)",
                             n, col, rule=_clip(lines[n - 1]), kind="include")
    statements: list = []
    messages: list[str] = []
    try:
        ast.parse_string(text, statements.append, logger=lambda code, msg: messages.append(msg), message_limit=5)
    except RuntimeError as e:
        msg = "\n".join(messages) or str(e)
        line, col = _location(msg)
        return SandboxResult("syntax_error", msg.strip(), line, col,
                             rule=_clip(lines[line - 1]) if line and line <= len(lines) else None)
    real = [s for s in statements if not (s.ast_type.name == "Program" and s.location.begin == s.location.end)]
    if len(real) > policy.max_statements:
        return SandboxResult("limit", f"the text has {len(real)} statements; at most {policy.max_statements} are "
                             "accepted (write general rules with variables, not facts)", kind="too_many_rules")
    for k, stm in enumerate(statements):
        depth = _depth(stm, policy.max_depth)
        if depth > policy.max_depth:
            loc = stm.location.begin
            return SandboxResult("limit", f"a statement is nested more than {policy.max_depth} levels deep "
                                 "(terms, expressions or literals inside each other)", loc.line, loc.column,
                                 rule=_clip(_source(lines, stm)), kind="too_deep")
        problem = _statement_problem(stm, k, policy)
        if problem:
            loc = stm.location.begin
            return SandboxResult("forbidden", problem, loc.line, loc.column, rule=_clip(_source(lines, stm)),
                                 kind=_FORBIDDEN_KIND.get(problem.split()[0], "forbidden"))
    return SandboxResult("ok")


_FORBIDDEN_KIND = {"#script": "script", "#const": "directive", "#external": "directive", "#show": "directive",
                   "#program": "directive", "#heuristic": "directive", "#edge": "directive", "#project": "directive",
                   "#defined": "directive", "#theory": "directive", "@-functions": "script",
                   "choice": "choice", "disjunctive": "disjunction", "weak": "weak_constraint",
                   "theory": "theory_atom", "statement": "include"}


def _clip(text: str, n: int = 300) -> str:
    """A piece of rule text to show (and send back to an LLM): at most `n` characters,
    with control characters, line separators and lone surrogates written as escapes."""
    text = text.strip()
    text = text if len(text) <= n else text[: n - 3] + "..."
    return "".join(c if c.isprintable() or c == "\t" else f"\\u{ord(c):04x}" for c in text)


def _character_problem(text: str) -> tuple[int, int, str] | None:
    """(line, column, message) of the first character clingo must not see, or None.

    Outside string literals and `%` line comments: printable ASCII, tab, newline and
    carriage return only. Inside them any character but control characters and lone
    surrogates; a string must be closed on its own line."""
    line, col0 = 1, 0  # col0: index of the line's first character
    i, n = 0, len(text)
    state = "code"  # code, string, line_comment, block_comment
    str_start = (1, 1)
    while i < n:
        ch = text[i]
        o = ord(ch)
        where = (line, i - col0 + 1)
        if 0xD800 <= o <= 0xDFFF:
            return (*where, f"character U+{o:04X} (a lone surrogate, not valid Unicode) at line {where[0]}, "
                            f"column {where[1]}")
        if ch == "\n":
            if state == "string":
                return (*str_start, f"string not closed on its line (line {str_start[0]}, column {str_start[1]})")
            if state == "line_comment":
                state = "code"
            line, col0 = line + 1, i + 1
            i += 1
            continue
        if (o < 32 and ch not in "\t\r") or o == 127:
            return (*where, f"control character U+{o:04X} at line {where[0]}, column {where[1]} is not allowed")
        if state == "code":
            if o > 126:
                return (*where, f"character {ch!r} (U+{o:04X}) at line {where[0]}, column {where[1]} is not allowed "
                                "outside strings and comments (write rules in ASCII)")
            if ch == '"':
                state, str_start = "string", where
            elif ch == "%":
                state = "block_comment" if text.startswith("%*", i) else "line_comment"
                i += 1 if state == "line_comment" else 2
                continue
        elif state == "string":
            if ch == "\\":
                i += 2 if i + 1 < n and text[i + 1] != "\n" else 1
                continue
            if ch == '"':
                state = "code"
        elif state == "block_comment":
            if o > 126:  # block comments may nest: only ASCII there
                return (*where, f"character {ch!r} (U+{o:04X}) at line {where[0]}, column {where[1]} is not allowed "
                                "in a %* block comment *% (use % line comments)")
            if text.startswith("*%", i):
                state = "code"
                i += 2
                continue
        i += 1
    if state == "string":
        return (*str_start, f"string not closed (line {str_start[0]}, column {str_start[1]})")
    return None


def _depth(stm, limit: int) -> int:
    """Nesting depth of a statement's syntax tree, without recursion; stops past `limit`."""
    from clingo.ast import AST

    deepest = 0
    stack = [(stm, 1)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        for key in node.child_keys:
            child = getattr(node, key)
            if isinstance(child, AST):
                stack.append((child, d + 1))
            elif child is not None and not isinstance(child, (str, int)):
                stack.extend((c, d + 1) for c in child if isinstance(c, AST))
    return deepest


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

    stack = [node]  # no recursion: depth is bounded by check_rules, but stay iterative anyway
    while stack:
        node = stack.pop()
        t = node.ast_type
        if t in (ASTType.Function, ASTType.SymbolicTerm) and getattr(node, "external", 0):
            return f"@-functions are not allowed (@{node.name})"
        if t == ASTType.TheoryAtom:
            return "theory atoms are not allowed"
        if t == ASTType.Script:
            return "#script is not allowed"
        for key in reversed(node.child_keys):
            child = getattr(node, key)
            if isinstance(child, AST):
                stack.append(child)
            elif child is not None and not isinstance(child, (str, int)):
                stack.extend(c for c in reversed(list(child)) if isinstance(c, AST))
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
              facts_list: list[str] | None = None, show: tuple[str, ...] | None = None,
              answer_predicate: str | None = None) -> SandboxResult:
    """Check `rules`, then ground and solve background (trusted theory) + rules + facts in
    a child process under `limits`. Status ok (atoms of the optimal model in `atoms`),
    unsafe, limit, unsatisfiable, error, or a static status from `check_rules`.

    With `facts_list`, each facts text is a separate instance (its own ground+solve in the
    same child, all within `limits`); `atoms_list` then holds one list of atoms per
    instance (None for an unsatisfiable one). `show` ("name/arity", ...) keeps only those
    atoms of the model; with `answer_predicate`, a question (its first argument) with
    more than `limits.max_answers` values is refused (status limit, kind too_many_answers)."""
    static = check_rules(rules, policy)
    if not static.ok:
        return static
    limits = limits or SandboxLimits()
    payload = {"background": background, "rules": rules, "facts": facts, "arguments": list(arguments),
               "show": list(show) if show is not None else None, "answer_predicate": answer_predicate,
               "max_answers": limits.max_answers, "reply_bytes": limits.reply_bytes}
    if facts_list is not None:
        payload["facts_list"] = list(facts_list)
    import tempfile

    start = time.monotonic()
    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        inp.write(json.dumps(payload).encode())
        inp.seek(0)
        proc = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)], stdin=inp, stdout=out,
                                stderr=err, preexec_fn=_limiter(limits))
        wall = limits.wall_s if limits.wall_s is not None else 3 * limits.time_s + 10
        try:
            proc.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return SandboxResult("limit", f"grounding or solving did not end within {wall:g} s of wall-clock time "
                                 "(killed)", seconds=time.monotonic() - start, kind="time_limit")
        seconds = time.monotonic() - start
        size = out.seek(0, os.SEEK_END)
        if size > limits.reply_bytes:
            return SandboxResult("limit", f"the solver's result is larger than {limits.reply_bytes:,} bytes "
                                 "(the rules derive too many atoms)", seconds=seconds, kind="result_too_large")
        out.seek(0)
        stdout = out.read(limits.reply_bytes).decode("utf-8", "replace")
        err_size = err.seek(0, os.SEEK_END)
        err.seek(max(0, err_size - 65536))
        stderr = err.read().decode("utf-8", "replace")
    try:
        reply = json.loads(stdout.strip().splitlines()[-1])
        if not isinstance(reply, dict) or "status" not in reply:
            raise ValueError
    except (ValueError, IndexError):
        return _no_result(proc.returncode, stderr, limits, seconds)
    return _result_from_reply(reply, rules, seconds)


def _no_result(returncode: int, stderr: str, limits: SandboxLimits, seconds: float) -> SandboxResult:
    """The child ended without a result: a resource limit (MemoryError, SIGXCPU, SIGKILL,
    SIGXFSZ) or a crash of the solver library."""
    import signal

    if "MemoryError" in stderr or "bad_alloc" in stderr:
        return SandboxResult("limit", f"memory limit of {limits.memory_mb} MB hit while grounding or solving",
                             seconds=seconds, kind="memory_limit")
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxResult("limit", f"grounding or solving did not end within {_cpu_seconds(limits)} s of CPU "
                             f"time (stopped; memory limit {limits.memory_mb} MB)", seconds=seconds,
                             kind="time_limit")
    if returncode == -signal.SIGXFSZ:
        return SandboxResult("limit", f"the solver's result is larger than {limits.reply_bytes:,} bytes "
                             "(the rules derive too many atoms)", seconds=seconds, kind="result_too_large")
    tail = " ".join(stderr.strip().splitlines()[-1:])[-300:]
    how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    return SandboxResult("limit", f"the solver process crashed without a result ({how}"
                         + (f": {tail}" if tail else "") + "); the rules may nest terms too deeply or be "
                         "too large", seconds=seconds, kind="crashed")


def _cpu_seconds(limits: SandboxLimits) -> int:
    import math

    return max(1, math.ceil(limits.time_s))


def _limiter(limits: SandboxLimits):
    def apply():
        import resource

        mem = int(limits.memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = _cpu_seconds(limits)  # SIGXCPU at the soft limit, SIGKILL a second later
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        out = int(limits.reply_bytes) + 65536  # stdout and stderr are files: writing past this stops the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (out, out))
    return apply


def _result_from_reply(reply: dict, rules: str, seconds: float) -> SandboxResult:
    status, messages = reply["status"], "\n".join(reply.get("messages", []))
    if status == "error":
        if "unsafe" in messages:
            line, col = _location(messages)
            var = _UNSAFE_VAR.search(messages)
            lines = rules.split("\n")
            return SandboxResult("unsafe", messages.strip(), line, col,
                                 rule=_clip(lines[line - 1]) if line and line <= len(lines) else None,
                                 variable=var.group(1) if var else None, seconds=seconds)
        if "MemoryError" in messages or "bad_alloc" in messages or "std::bad_alloc" in messages:
            return SandboxResult("limit", "memory limit hit while grounding or solving", seconds=seconds,
                                 kind="memory_limit")
        line, col = _location(messages)
        return SandboxResult("error", messages.strip() or reply.get("error", ""), line, col, seconds=seconds)
    if status == "unsatisfiable":
        return SandboxResult("unsatisfiable", "the program has no answer set", seconds=seconds)
    if status == "too_many_answers":
        return SandboxResult("limit", f"the rules derive {reply['count']:,} or more answers {reply['predicate']}"
                             f"({reply['question']}, V) for one question; at most {reply['limit']} are accepted "
                             "(a question has one answer)", seconds=seconds, kind="too_many_answers")
    if status == "too_large":
        return SandboxResult("limit", f"the solver's result would be over {reply['bytes']:,} bytes, more than the "
                             f"{reply['limit']:,} accepted (the rules derive too many atoms)", seconds=seconds,
                             kind="result_too_large")
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
    show = None
    if request.get("show") is not None:  # {name: [arities]}
        show = {}
        for sig in request["show"]:
            name, _, arity = sig.rpartition("/")
            show.setdefault(name, []).append(int(arity))
    answer = request.get("answer_predicate")
    max_answers = request.get("max_answers") or 100
    reply_limit = request.get("reply_bytes") or 2_000_000
    try:
        import clingo

        class TooMany(Exception):
            pass

        class TooLarge(Exception):
            pass

        def solve_one(facts: str):
            ctl = clingo.Control(["--warn=none", *request.get("arguments", [])],
                                 logger=lambda code, msg: messages.append(msg[:2000]) if len(messages) < 20 else None)
            for part in (request.get("background"), request.get("rules"), facts):
                if part:
                    ctl.add("base", [], part)
            ctl.ground([("base", [])])
            atoms, cost = None, []
            with ctl.solve(yield_=True) as handle:
                for model in handle:
                    atoms, size, counts = [], 0, {}
                    for s in model.symbols(shown=True):  # one pass, stopping at the first cap hit
                        name = s.name if s.type == clingo.SymbolType.Function else ""
                        if show is not None:
                            arities = show.get(name)
                            if arities is None or not any(s.match(name, k) for k in arities):
                                continue
                        if name == answer and s.arguments:
                            q = str(s.arguments[0])
                            counts[q] = counts.get(q, 0) + 1
                            if counts[q] > max_answers:
                                raise TooMany(q, counts[q])
                        atoms.append(str(s))
                        size += len(atoms[-1]) + 4
                        if size > reply_limit:  # stop as soon as the result outgrows what may be sent back
                            raise TooLarge(size)
                    cost = list(model.cost)
            return atoms, cost

        try:
            if "facts_list" in request:  # several instances, each grounded and solved on its own
                results = [solve_one(f) for f in request["facts_list"]]
                reply = {"status": "ok", "atoms": [], "atoms_list": [a for a, _ in results], "messages": messages}
            else:
                atoms, cost = solve_one(request.get("facts", ""))
                if atoms is None:
                    reply = {"status": "unsatisfiable", "messages": messages}
                else:
                    reply = {"status": "ok", "atoms": atoms, "cost": cost, "messages": messages}
        except TooLarge as e:
            reply = {"status": "too_large", "bytes": e.args[0], "limit": reply_limit, "messages": messages}
        except TooMany as e:
            reply = {"status": "too_many_answers", "question": e.args[0], "count": e.args[1],
                     "predicate": answer, "limit": max_answers, "messages": messages}
    except MemoryError:
        messages.append("MemoryError")
    except RuntimeError as e:
        reply["error"] = str(e)[:2000]
    text = json.dumps(reply)
    limit = request.get("reply_bytes") or 2_000_000
    if len(text) > limit - 2:
        text = json.dumps({"status": "too_large", "bytes": len(text), "limit": limit})
    sys.stdout.write("\n" + text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _child_main()
