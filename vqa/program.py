"""Program: an ordered list of steps (`op`, `args`, `inputs`), for CLEVR and GQA alike.

    Program([Step("scene"), Step("filter_color", ("red",), (0,)), Step("count", (), (1,))])

Conversions are lossless: `Program.from_clevr(p).to_clevr(form)` gives back the released
(`function`/`value_inputs`) or generator (`type` with `value_inputs` or `side_inputs`, `_output`) records, and
`Program.from_gqa(s).to_gqa()` gives back GQA's `semantic` list; keys a converter does not
know are kept in `Step.extra`. A GQA step keeps its typed operation (`"filter color"`) as
`op` and its raw `argument` as the single arg; `vqa.datasets.gqa` parses those further.

Text forms: `str(program)` prints one step per line; `to_expr()`/`parse()` use a nested
functional form, `count(filter_color[red](scene()))`; `to_prefix()`/`from_prefix()` the
prefix token list of clevr-iep (`["count", "filter_color[red]", "scene"]`).

Core module: imports only `vqa.errors` and `vqa.ontology`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import DataError, Problem
from .ontology import CLEVR_FUNCTIONS, OBJECT, OBJECTS, arg_vocabulary

_BRACKET = re.compile(r"([\w]+)\[(.*)\]")
GQA_OPERATIONS = ("select", "relate", "filter", "query", "verify", "choose", "exist", "and", "or",
                  "same", "different", "common")


MAX_NESTING = 200  # Program.parse / from_prefix refuse deeper text (CLEVR's programs have < 30 steps)


@dataclass
class Step:
    op: str
    args: tuple[str, ...] = ()
    inputs: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        self.args = tuple(self.args)
        self.inputs = tuple(self.inputs)

    @property
    def token(self) -> str:
        """`op[arg1,arg2]` (or `op`), as in clevr-iep's prefix programs."""
        return f"{self.op}[{','.join(self.args)}]" if self.args else self.op

    def __str__(self) -> str:
        return f"{self.token}({', '.join(str(i) for i in self.inputs)})"


@dataclass
class Program:
    steps: list[Step]
    source: str | None = None  # "clevr" or "gqa": the dataset whose functions are used

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def __eq__(self, other) -> bool:
        return isinstance(other, Program) and self.steps == other.steps

    def __str__(self) -> str:
        """One line per step: index, token, inputs."""
        width = len(str(len(self.steps) - 1)) if self.steps else 1
        lines = []
        for i, s in enumerate(self.steps):
            ins = f"  <- {', '.join(str(k) for k in s.inputs)}" if s.inputs else ""
            lines.append(f"{i:>{width}}  {s.token}{ins}")
        return "\n".join(lines)

    # ---- CLEVR --------------------------------------------------------------
    @classmethod
    def from_clevr(cls, records: list, *, file=None, record=None) -> "Program":
        """From a CLEVR `program` list, released or generator form (detected per step)."""
        if not isinstance(records, list):
            raise DataError("expected a list of steps", file=file, record=record, field="program")
        steps = []
        for i, r in enumerate(records):
            def fail(msg, field=f"program[{i}]"):
                return DataError(msg, file=file, record=record, field=field)

            if not isinstance(r, dict):
                raise fail(f"expected a step object, got {type(r).__name__}")
            if "function" in r:
                op_key, arg_key = "function", "value_inputs"
            elif "type" in r:  # the generator writes value_inputs; older tools side_inputs
                op_key = "type"
                arg_key = "side_inputs" if "side_inputs" in r or "value_inputs" not in r else "value_inputs"
            else:
                raise fail("step has neither 'function' (released form) nor 'type' (generator form)")
            op = r[op_key]
            if type(op) is not str:
                raise fail(f"expected a function name string, got {op!r}")
            args = r.get(arg_key, [])
            extra = {k: v for k, v in r.items() if k != op_key and k != arg_key and k != "inputs"}
            extra["vqa:form"] = op_key
            if op_key == "type" and arg_key == "value_inputs":
                extra["vqa:args_key"] = arg_key
            if arg_key not in r:
                extra["vqa:no_args"] = True
            if op.endswith("]"):
                bracket = _BRACKET.fullmatch(op)
                if bracket:  # early CLEVR/iep files: "filter_color[red]"
                    op, args = bracket.group(1), [bracket.group(2)]
                    extra["vqa:bracket"] = True
            inputs = r.get("inputs", [])
            if type(args) is not list or any(type(a) is not str for a in args):
                if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                    raise fail(f"expected a list of strings, got {args!r}", f"program[{i}].{arg_key}")
            if type(inputs) is not list or any(type(k) is not int for k in inputs):
                if not isinstance(inputs, list) or not all(isinstance(k, int) and not isinstance(k, bool)
                                                           for k in inputs):
                    raise fail(f"expected a list of step indices, got {inputs!r}", f"program[{i}].inputs")
            if any(not 0 <= k < i for k in inputs):  # a forward or missing input (no cycles, no gaps)
                raise fail(f"input(s) {inputs} must refer to earlier steps (0..{i - 1})", f"program[{i}].inputs")
            steps.append(Step(op, tuple(args), tuple(inputs), extra))
        return cls(steps, source="clevr")

    def to_clevr(self, form: str | None = None) -> list[dict]:
        """Back to CLEVR records; `form` is "function" (released) or "type" (generator),
        by default the form each step was read in (released for new steps)."""
        out = []
        for s in self.steps:
            f = form or s.extra.get("vqa:form", "function")
            op_key, arg_key = (f, "value_inputs") if f == "function" else ("type", "side_inputs")
            if f == "type" and form is None and s.extra.get("vqa:args_key"):
                arg_key = s.extra["vqa:args_key"]
            rec = {k: v for k, v in s.extra.items() if not k.startswith("vqa:")}
            if s.extra.get("vqa:bracket") and form is None:
                rec[op_key] = s.token
                rec[arg_key] = []
            else:
                rec[op_key] = s.op
                if not (s.extra.get("vqa:no_args") and not s.args and form is None):
                    rec[arg_key] = list(s.args)
            rec["inputs"] = list(s.inputs)
            out.append(rec)
        return out

    # ---- GQA ----------------------------------------------------------------
    @classmethod
    def from_gqa(cls, semantic: list, *, file=None, record=None) -> "Program":
        """From a GQA `semantic` list (`operation`/`argument`/`dependencies`)."""
        if not isinstance(semantic, list):
            raise DataError("expected a list of operations", file=file, record=record, field="semantic")
        steps = []
        for i, r in enumerate(semantic):
            where = dict(file=file, record=record)
            if not isinstance(r, dict):
                raise DataError(f"expected an operation object, got {type(r).__name__}", **where,
                                field=f"semantic[{i}]")
            for key, typ in (("operation", str), ("argument", str), ("dependencies", list)):
                if key not in r:
                    raise DataError("missing", **where, field=f"semantic[{i}].{key}")
                if not isinstance(r[key], typ):
                    raise DataError(f"expected {typ.__name__}, got {type(r[key]).__name__}", **where,
                                    field=f"semantic[{i}].{key}")
            deps = r["dependencies"]
            if not all(isinstance(k, int) and not isinstance(k, bool) for k in deps):
                raise DataError(f"expected step indices, got {deps!r}", **where, field=f"semantic[{i}].dependencies")
            extra = {k: v for k, v in r.items() if k not in ("operation", "argument", "dependencies")}
            steps.append(Step(r["operation"], (r["argument"],), tuple(deps), extra))
        return cls(steps, source="gqa")

    def to_gqa(self) -> list[dict]:
        return [{"operation": s.op, "argument": ",".join(s.args), "dependencies": list(s.inputs), **s.extra}
                for s in self.steps]

    # ---- trees, prefix, expressions -----------------------------------------
    def to_tree(self, root: int | None = None) -> dict:
        """Nested `{"op", "args", "inputs": [subtree, ...]}` rooted at the last step."""
        i = len(self.steps) - 1 if root is None else root
        s = self.steps[i]
        return {"op": s.op, "args": list(s.args), "inputs": [self.to_tree(k) for k in s.inputs]}

    @classmethod
    def from_tree(cls, tree: dict, source: str | None = "clevr") -> "Program":
        steps: list[Step] = []

        def visit(node) -> int:
            inputs = tuple(visit(child) for child in node.get("inputs", []))
            steps.append(Step(node["op"], tuple(node.get("args", [])), inputs))
            return len(steps) - 1

        visit(tree)
        return cls(steps, source)

    def to_prefix(self) -> list[str]:
        out: list[str] = []

        def visit(i: int) -> None:
            out.append(self.steps[i].token)
            for k in self.steps[i].inputs:
                visit(k)

        if self.steps:
            visit(len(self.steps) - 1)
        return out

    @classmethod
    def from_prefix(cls, tokens: list[str], arity: dict[str, int] | None = None) -> "Program":
        """Inverse of `to_prefix`; arities default to CLEVR's function catalogue."""
        arity = arity or {name: spec.arity for name, spec in CLEVR_FUNCTIONS.items()}
        if len(tokens) > MAX_NESTING:  # the parser below recurses once per token at most
            raise DataError(f"prefix program of {len(tokens)} tokens (at most {MAX_NESTING})", field="program")
        pos = 0
        steps: list[Step] = []

        def parse() -> int:
            nonlocal pos
            if pos >= len(tokens):
                raise DataError("prefix program ends early", field="program")
            op, args = _split_token(tokens[pos])
            pos += 1
            if op not in arity:
                raise DataError(f"unknown function {op!r}", field="program")
            inputs = tuple(parse() for _ in range(arity[op]))
            steps.append(Step(op, args, inputs))
            return len(steps) - 1

        parse()
        if pos != len(tokens):
            raise DataError(f"{len(tokens) - pos} tokens left after a complete program", field="program")
        return cls(steps, "clevr")

    def to_expr(self, root: int | None = None) -> str:
        """`count(filter_color[red](scene()))`."""
        i = len(self.steps) - 1 if root is None else root
        s = self.steps[i]
        return f"{s.token}({', '.join(self.to_expr(k) for k in s.inputs)})"

    @classmethod
    def parse(cls, text: str) -> "Program":
        """Parse the functional form; `scene` may omit its parentheses."""
        tokens = re.findall(r"\s*([\w]+(?:\[[^\]]*\])?|[(),]|\S)", text)
        pos = 0
        steps: list[Step] = []

        def fail(msg):
            shown = text if len(text) <= 200 else text[:197] + "..."
            raise DataError(f"cannot parse program {shown!r}: {msg}", field="program")

        depth = deepest = 0
        for t in tokens:  # the parser below recurses: bound its depth first
            depth += (t == "(") - (t == ")")
            deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            fail(f"nested {deepest} levels deep (at most {MAX_NESTING})")

        def expr() -> int:
            nonlocal pos
            if pos >= len(tokens) or not re.match(r"\w", tokens[pos]):
                fail(f"expected a function at token {pos + 1}")
            op, args = _split_token(tokens[pos])
            pos += 1
            inputs = []
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                while pos < len(tokens) and tokens[pos] != ")":
                    inputs.append(expr())
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                if pos >= len(tokens):
                    fail("missing ')'")
                pos += 1
            steps.append(Step(op, args, tuple(inputs)))
            return len(steps) - 1

        expr()
        if pos != len(tokens):
            fail(f"unexpected {tokens[pos]!r}")
        return cls(steps, "clevr")

    # ---- validation ---------------------------------------------------------
    def problems(self, *, file=None, record=None, field_name: str | None = None) -> list[Problem]:
        """Every structural defect: inputs that do not refer to earlier steps, unknown
        functions or operations, wrong input counts, argument values outside the vocabulary."""
        out = []
        name = field_name or ("semantic" if self.source == "gqa" else "program")
        if not self.steps:
            return [Problem(file, record, name, "program is empty")]
        for i, s in enumerate(self.steps):
            f = f"{name}[{i}]"
            for k in s.inputs:
                if not 0 <= k < i:
                    out.append(Problem(file, record, f"{f}.inputs" if self.source != "gqa" else f"{f}.dependencies",
                                       f"input {k} does not refer to an earlier step (0..{i - 1})"))
            if self.source == "gqa":
                if s.op.split(" ")[0] not in GQA_OPERATIONS:
                    out.append(Problem(file, record, f"{f}.operation", f"unknown operation {s.op!r}"))
                continue
            spec = CLEVR_FUNCTIONS.get(s.op)
            if spec is None:
                out.append(Problem(file, record, f"{f}.function", f"unknown function {s.op!r}"))
                continue
            if len(s.inputs) != spec.arity:
                out.append(Problem(file, record, f"{f}.inputs",
                                   f"{s.op} takes {spec.arity} input(s), got {len(s.inputs)}"))
            want = 1 if spec.arg else 0
            if len(s.args) != want:
                out.append(Problem(file, record, f"{f}.value_inputs",
                                   f"{s.op} takes {want} value(s), got {list(s.args)}"))
            elif spec.arg and s.args[0] not in arg_vocabulary(spec.arg):
                out.append(Problem(file, record, f"{f}.value_inputs",
                                   f"{s.args[0]!r} is not a {spec.arg} "
                                   f"(expected one of {', '.join(arg_vocabulary(spec.arg))})"))
            for k, want_type in zip(s.inputs, spec.inputs):
                src = CLEVR_FUNCTIONS.get(self.steps[k].op) if 0 <= k < i else None
                if src is not None and src.output != want_type:
                    out.append(Problem(file, record, f"{f}.inputs",
                                       f"{s.op} expects {want_type} from step {k}, but {src.name} gives {src.output}"))
        if self.source != "gqa":
            last = CLEVR_FUNCTIONS.get(self.steps[-1].op)
            if last is not None and last.output in (OBJECTS, OBJECT):
                out.append(Problem(file, record, f"{name}[{len(self.steps) - 1}]",
                                   f"program ends in {last.output}, not an answer"))
        return out

    def validate(self, **kw) -> "Program":
        """Raise a DataError for the first problem; return self when well formed."""
        probs = self.problems(**kw)
        if probs:
            p = probs[0]
            raise DataError(p.message, file=p.file, record=p.record, field=p.field)
        return self


def _split_token(token: str) -> tuple[str, tuple[str, ...]]:
    m = re.fullmatch(r"(\w+)(?:\[(.*)\])?", token.strip())
    if not m:
        raise DataError(f"malformed step token {token!r}", field="program")
    args = tuple(a.strip() for a in m.group(2).split(",")) if m.group(2) else ()
    return m.group(1), args
