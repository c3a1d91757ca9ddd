"""GQA `semantic` steps parsed into structured steps, losslessly.

The core `Program.from_gqa` keeps each step's raw `operation` (e.g. "filter color") as
`op` and its raw `argument` (e.g. "not(red)") as the single arg. `parse_step` turns one
such pair into a `GQAStep`; `GQAStep.raw()` formats it back to the exact strings.

Forms handled (operation: argument):

    select: man (1232)             select: people (12,13)       select: scene
    relate: _,holding,o (1233)     relate: fork,on,s (-)        relate: bag,same color,o (7)
    filter color: red              filter color: not(red)       filter: tall
    query: name | color | hposition | place ...
    verify color: red              verify rel: dog,on,s (5)
    choose color: red|blue         choose rel: dog,to the left of|to the right of,s (5)
    choose younger: (two inputs)   choose healthier: ...        choose name: cat|dog
    exist: ?                       and: / or: (two inputs)
    same color: / different color: / same: (one or two inputs)   common: (two inputs)

An argument the parser does not recognise is kept verbatim (`unparsed`) so that nothing
is lost and a reasoner can count the operation as unsupported; one understood but spaced
differently ("man(12)") keeps its structure and its exact text (`verbatim`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..program import Program

# operation families; "choose" with two inputs and a non-attribute type is a comparative
FAMILIES = ("select", "relate", "filter", "query", "verify", "choose", "exist", "and", "or",
            "same", "different", "common")
_IDS = re.compile(r"^(.*?)\s*\(([^()]*)\)$")


@dataclass
class GQAStep:
    """One structured GQA step.

    family:     "select", "relate", "filter", ... (the first word of the operation)
    type:       the typed suffix of the operation ("color", "rel", "younger"), or None
    name:       object name (select/relate/verify rel/choose rel; "_" = any), or None
    values:     filter/verify value(s), choose alternatives, the query attribute, or the
                relation alternatives of relate/verify rel/choose rel
    negated:    filter ... not(value)
    direction:  "s" (new target is the relation's subject), "o" (its object), "_" (either), or None
    object_ids: annotated object ids (empty for "(-)"); None when the argument has no ids
    absent:     the argument marks an object absent from the scene: "(-)"
    scene:      "select: scene"
    inputs:     dependencies (indices of earlier steps)
    """

    family: str
    type: str | None = None
    name: str | None = None
    values: tuple[str, ...] = ()
    negated: bool = False
    direction: str | None = None
    object_ids: tuple[str, ...] | None = None
    absent: bool = False
    scene: bool = False
    inputs: tuple[int, ...] = ()
    operation: str = ""  # the raw operation string
    unparsed: str | None = None  # the raw argument when its form was not recognised
    verbatim: str | None = None  # the raw argument when understood but not in canonical spacing
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_comparative(self) -> bool:
        """`choose younger` etc.: a choose over two object inputs answered by a name."""
        return self.family == "choose" and len(self.inputs) == 2 and self.type not in (None, "rel", "name")

    @property
    def is_relational(self) -> bool:
        return self.family == "relate" or (self.family in ("verify", "choose") and self.type == "rel")

    # ---- formatting back -----------------------------------------------------
    def argument(self) -> str:
        if self.unparsed is not None:
            return self.unparsed
        if self.verbatim is not None:
            return self.verbatim
        if self.scene:
            return "scene"
        ids = "" if self.object_ids is None else " (-)" if self.absent else f" ({','.join(self.object_ids)})"
        if self.family == "select":
            return f"{self.name}{ids}"
        if self.is_relational:
            return f"{self.name},{'|'.join(self.values)},{self.direction}{ids}"
        if self.family == "exist":
            return "?" if self.values == ("?",) else "|".join(self.values)
        text = "|".join(self.values)
        return f"not({text})" if self.negated else text

    def raw(self) -> tuple[str, str]:
        """(operation, argument) exactly as in the dataset."""
        return self.operation, self.argument()

    def to_record(self) -> dict:
        op, arg = self.raw()
        return {"operation": op, "argument": arg, "dependencies": list(self.inputs), **self.extra}

    def __str__(self) -> str:
        op, arg = self.raw()
        return f"{op}: {arg}" + (f" <- {list(self.inputs)}" if self.inputs else "")


def parse_step(operation: str, argument: str, inputs=()) -> GQAStep:
    """One GQA operation/argument pair -> GQAStep (never raises; see `unparsed`)."""
    words = operation.split(" ", 1)
    family = words[0]
    typ = words[1] if len(words) > 1 else None
    step = GQAStep(family=family, type=typ, inputs=tuple(inputs), operation=operation)
    arg = argument.strip()  # real files carry stray spaces ("verify size: small ")
    try:
        if family == "select":
            if arg == "scene":
                step.scene = True
            else:
                step.name, step.object_ids, step.absent = _split_ids(arg)
        elif step.is_relational:
            body, step.object_ids, step.absent = _split_ids(arg)
            parts = [p.strip() for p in body.split(",")]
            if len(parts) < 3 or parts[-1] not in ("s", "o", "_"):
                raise ValueError(arg)
            step.name, step.direction = parts[0], parts[-1]
            step.values = tuple(v.strip() for v in ",".join(parts[1:-1]).split("|"))
        elif family == "exist":
            step.values = tuple(arg.split("|")) if arg else ()
        else:
            m = re.fullmatch(r"not\((.*)\)", arg)
            if m:
                step.negated, arg = True, m.group(1)
            step.values = tuple(v.strip() for v in arg.split("|")) if arg else ()
        if family not in FAMILIES:
            raise ValueError(operation)
    except ValueError:
        step = GQAStep(family=family, type=typ, inputs=tuple(inputs), operation=operation, unparsed=argument)
    if step.argument() != argument:  # a spacing variant: keep the exact text too
        step.verbatim = argument
    return step


def _split_ids(arg: str) -> tuple[str, tuple[str, ...] | None, bool]:
    m = _IDS.match(arg)
    if not m:
        return arg, None, False
    ids = m.group(2).strip()
    if ids == "-":
        return m.group(1).strip(), (), True
    return m.group(1).strip(), tuple(i.strip() for i in ids.split(",")), False


def parse_program(program) -> list[GQAStep]:
    """A `Program` (from `Program.from_gqa`) or a raw `semantic` list -> [GQAStep]."""
    if isinstance(program, Program):
        out = []
        for s in program.steps:
            st = parse_step(s.op, ",".join(s.args), s.inputs)
            st.extra = dict(s.extra)
            out.append(st)
        return out
    out = []
    for r in program:
        st = parse_step(r["operation"], r["argument"], r["dependencies"])
        st.extra = {k: v for k, v in r.items() if k not in ("operation", "argument", "dependencies")}
        out.append(st)
    return out


def to_semantic(steps: list[GQAStep]) -> list[dict]:
    """Structured steps -> GQA `semantic` records (the inverse of `parse_program`)."""
    return [s.to_record() for s in steps]


def to_program(steps: list[GQAStep]) -> Program:
    """Structured steps -> a core `Program` in GQA form (raw op, one raw argument)."""
    return Program.from_gqa(to_semantic(steps))


def steps_number(semantic: list[dict]) -> int:
    """Program length as GQA's eval.py counts it: steps whose "op: arg" text contains
    none of "exist", "query: name", "choose name"."""
    return len([c for c in semantic
                if not any(o in f"{c['operation']}: {c['argument']}" for o in ("exist", "query: name", "choose name"))])


def check_operations(records: dict, file=None) -> None:
    """Bad input: a step whose operation is none of GQA's (`FAMILIES`, whatever its typed
    suffix) raises DataError naming the file, the record and the field. (GQA's own forms
    that a reasoner does not cover, e.g. an argument `parse_step` does not recognise, are
    not errors: reasoners count those as unsupported steps.) Malformed records are left to
    the readers' own checks."""
    from ..errors import DataError

    for qid, rec in records.items():
        sem = rec.get("semantic") if isinstance(rec, dict) else None
        for i, s in enumerate(sem if isinstance(sem, list) else ()):
            op = s.get("operation") if isinstance(s, dict) else None
            if isinstance(op, str) and op.split(" ")[0] not in FAMILIES:
                raise DataError(f"unknown operation {op!r} (GQA's are {', '.join(FAMILIES)})", file=file,
                                record=qid, field=f"semantic[{i}].operation")
