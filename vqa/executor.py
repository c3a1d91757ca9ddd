"""Reference executor of CLEVR programs: plain Python, one function per CLEVR function.

It is the oracle every reasoner is tested against and the generator's answer source.
Errors are values: a failed step (a `unique` over a set that is not a singleton, a type
mismatch) yields `ExecutionResult(answer=None, error=..., error_step=i)`, never an
exception. Probabilistic scene graphs are read at their most likely values and
relations with probability >= 0.5.

    result = execute(program, scene)
    result.answer            # "yes", "3", "red", ... or None
    result.trace[i].value    # objects as a sorted tuple of ids, or the value of step i

Core module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ontology import CLEVR_FUNCTIONS, normalise_answer
from .program import Program
from .scene import SceneGraph


class StepError(Exception):
    """A program step that cannot be carried out on this scene."""


@dataclass
class TraceStep:
    index: int
    token: str
    inputs: tuple[int, ...]
    value: object = None  # tuple of ids (object sets), str id (one object), str, int or bool
    error: str | None = None

    def to_dict(self) -> dict:
        v = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"index": self.index, "step": self.token, "inputs": list(self.inputs), "value": v,
                "error": self.error}


@dataclass
class ExecutionResult:
    answer: str | None
    error: str | None = None
    error_step: int | None = None
    trace: list[TraceStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class _Objects(tuple):
    """A set of object ids (kept sorted by the scene's object order)."""


def _objects(scene: SceneGraph, ids) -> _Objects:
    keep = set(ids)
    return _Objects(o for o in scene.ids if o in keep)


def _need(value, kind, op):
    ok = {
        "objects": isinstance(value, _Objects),
        "object": isinstance(value, str) and not isinstance(value, _Objects) and getattr(value, "is_object", False),
    }
    if kind in ok and not ok[kind]:
        raise StepError(f"{op} expects {kind}, got {_describe(value)}")
    if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        raise StepError(f"{op} expects an integer, got {_describe(value)}")
    if kind == "value" and (not isinstance(value, str) or getattr(value, "is_object", False)):
        raise StepError(f"{op} expects an attribute value, got {_describe(value)}")
    return value


class _ObjectId(str):
    is_object = True


def _describe(v) -> str:
    if isinstance(v, _Objects):
        return f"a set of {len(v)} objects"
    if getattr(v, "is_object", False):
        return f"object {str(v)}"
    return repr(v)


# ---- one function per CLEVR function ------------------------------------------
def _scene(scene, args, ins):
    return _objects(scene, scene.ids)


def _unique(scene, args, ins):
    (objs,) = ins
    if len(objs) != 1:
        raise StepError(f"unique expects exactly one object, got {len(objs)}")
    return _ObjectId(objs[0])


def _relate(scene, args, ins):
    (obj,) = ins
    return _objects(scene, scene.related(obj, args[0]))


def _union(scene, args, ins):
    return _objects(scene, set(ins[0]) | set(ins[1]))


def _intersect(scene, args, ins):
    return _objects(scene, set(ins[0]) & set(ins[1]))


def _count(scene, args, ins):
    return len(ins[0])


def _exist(scene, args, ins):
    return len(ins[0]) > 0


def _equal_integer(scene, args, ins):
    return ins[0] == ins[1]


def _less_than(scene, args, ins):
    return ins[0] < ins[1]


def _greater_than(scene, args, ins):
    return ins[0] > ins[1]


def _filter(cat):
    def run(scene, args, ins):
        return _objects(scene, [o for o in ins[0] if scene.object(o).value(cat) == args[0]])
    return run


def _query(cat):
    def run(scene, args, ins):
        return scene.object(ins[0]).value(cat)
    return run


def _same(cat):
    def run(scene, args, ins):
        v = scene.object(ins[0]).value(cat)
        return _objects(scene, [o.id for o in scene.objects if o.id != ins[0] and o.value(cat) == v])
    return run


def _equal(cat):
    def run(scene, args, ins):
        return ins[0] == ins[1]
    return run


FUNCTIONS = {
    "scene": _scene, "unique": _unique, "relate": _relate, "union": _union, "intersect": _intersect,
    "count": _count, "exist": _exist, "equal_integer": _equal_integer, "less_than": _less_than,
    "greater_than": _greater_than,
}
for _cat in ("color", "size", "material", "shape"):
    FUNCTIONS[f"filter_{_cat}"] = _filter(_cat)
    FUNCTIONS[f"query_{_cat}"] = _query(_cat)
    FUNCTIONS[f"same_{_cat}"] = _same(_cat)
    FUNCTIONS[f"equal_{_cat}"] = _equal(_cat)


def execute(program: Program, scene: SceneGraph) -> ExecutionResult:
    """Run `program` on `scene`; the answer is the last step's value as a CLEVR answer string."""
    trace: list[TraceStep] = []
    values: list = []
    for i, step in enumerate(program.steps):
        ts = TraceStep(i, step.token, step.inputs)
        trace.append(ts)
        try:
            spec = CLEVR_FUNCTIONS.get(step.op)
            if spec is None:
                raise StepError(f"unknown function {step.op!r}")
            if len(step.inputs) != spec.arity or any(not 0 <= k < i for k in step.inputs):
                raise StepError(f"{step.op} needs {spec.arity} input(s) from earlier steps, got {list(step.inputs)}")
            if len(step.args) != (1 if spec.arg else 0):
                raise StepError(f"{step.op} needs {1 if spec.arg else 0} value(s), got {list(step.args)}")
            ins = [_need(values[k], kind, step.op) for k, kind in zip(step.inputs, spec.inputs)]
            value = FUNCTIONS[step.op](scene, step.args, ins)
        except StepError as e:
            ts.error = str(e)
            return ExecutionResult(None, str(e), i, trace)
        ts.value = value
        values.append(value)
    if not values:
        return ExecutionResult(None, "empty program", None, trace)
    last = values[-1]
    if isinstance(last, _Objects) or getattr(last, "is_object", False):
        return ExecutionResult(None, f"program ends in {_describe(last)}, not an answer", len(values) - 1, trace)
    if last is None:
        return ExecutionResult(None, "query on an object without that attribute", len(values) - 1, trace)
    return ExecutionResult(normalise_answer(last), None, None, trace)
