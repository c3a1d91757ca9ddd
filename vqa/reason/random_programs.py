"""Random CLEVR scenes and programs for differential tests and benchmarks.

Independent of the question generator: programs are drawn from the function catalogue
(`vqa.ontology.CLEVR_FUNCTIONS`) by a typed grammar, guided by the scene so that `unique`
often succeeds, and a share of them is then broken on purpose (unknown functions, wrong
inputs, wrong value counts, type errors, programs that end in objects) so that every error
path of a reasoner is exercised.

    rng = random.Random(0)
    scene = random_scene(rng)                      # 3..10 objects, CLEVR relations
    programs = [random_program(rng, scene) for _ in range(10)]
"""
from __future__ import annotations

import random

from ..executor import execute
from ..ontology import CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS, CLEVR_RELATIONS
from ..program import Program, Step
from ..scene import SceneGraph, SceneObject, clevr_relations

# CLEVR's usual camera: the directions of one released scene, rounded.
DIRECTIONS = {"left": [-0.655, 0.756, 0.0], "right": [0.655, -0.756, 0.0],
              "front": [0.756, 0.655, 0.0], "behind": [-0.756, -0.655, 0.0],
              "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}
CATEGORIES = tuple(CLEVR_ATTRIBUTES)


def random_scene(rng: random.Random, n_objects: tuple[int, int] = (3, 10), image_id: str = "rand") -> SceneGraph:
    """A gold scene: random attributes, positions in [-3, 3]^2, relations by CLEVR's rule."""
    n = rng.randint(*n_objects)
    objects, positions = [], []
    for i in range(n):
        attrs = {c: {rng.choice(vals): 1.0} for c, vals in CLEVR_ATTRIBUTES.items()}
        pos = [rng.uniform(-3, 3), rng.uniform(-3, 3), 0.35]
        positions.append(pos)
        objects.append(SceneObject(str(i), next(iter(attrs["shape"])), [10.0 * i, 10.0, 20.0, 20.0], attrs,
                                   position=pos))
    return SceneGraph(image_id, 480, 320, objects, clevr_relations(positions, DIRECTIONS), DIRECTIONS)


class _Builder:
    def __init__(self, rng: random.Random, scene: SceneGraph):
        self.rng, self.scene, self.steps = rng, scene, []

    def add(self, op: str, args=(), inputs=()) -> int:
        self.steps.append(Step(op, tuple(args), tuple(inputs)))
        return len(self.steps) - 1

    def value(self, i: int):
        """The executor's value of step i (None when the partial program fails)."""
        trace = execute(Program(self.steps[: i + 1]), self.scene).trace
        return trace[-1].value if trace and trace[-1].error is None else None

    def objects(self, depth: int) -> int:
        r = self.rng.random()
        if depth <= 0 or r < 0.35:
            i = self.add("scene")
        elif r < 0.55:
            i = self.add("relate", [self.rng.choice(CLEVR_RELATIONS)], [self.object(depth - 1)])
        elif r < 0.7:
            op = self.rng.choice(["union", "intersect"])
            a = self.objects(depth - 1)
            i = self.add(op, [], [a, self.objects(depth - 1)])
        elif r < 0.8:
            i = self.add(f"same_{self.rng.choice(CATEGORIES)}", [], [self.object(depth - 1)])
        else:
            i = self.objects(depth - 1)
        for _ in range(self.rng.choice([0, 1, 1, 2])):
            i = self.filter(i)
        return i

    def filter(self, i: int) -> int:
        cat = self.rng.choice(CATEGORIES)
        members = self.value(i) or ()
        if members and self.rng.random() < 0.85:
            v = self.scene.object(self.rng.choice(members)).value(cat)
        else:
            v = self.rng.choice(CLEVR_ATTRIBUTES[cat])
        return self.add(f"filter_{cat}", [v], [i])

    def object(self, depth: int) -> int:
        i = self.objects(depth)
        for _ in range(4):  # narrow down towards one object, most of the time
            members = self.value(i)
            if members is None or len(members) <= 1 or self.rng.random() < 0.15:
                break
            i = self.filter(i)
        return self.add("unique", [], [i])

    def answer(self, depth: int) -> int:
        kind = self.rng.choice(["count", "exist", "query", "compare_integer", "compare_attribute"])
        if kind in ("count", "exist"):
            return self.add(kind, [], [self.objects(depth)])
        if kind == "query":
            return self.add(f"query_{self.rng.choice(CATEGORIES)}", [], [self.object(depth)])
        if kind == "compare_integer":
            a = self.add("count", [], [self.objects(depth - 1)])
            b = self.add("count", [], [self.objects(depth - 1)])
            return self.add(self.rng.choice(["equal_integer", "less_than", "greater_than"]), [], [a, b])
        cat = self.rng.choice(CATEGORIES)
        a = self.add(f"query_{cat}", [], [self.object(depth - 1)])
        b = self.add(f"query_{cat}", [], [self.object(depth - 1)])
        return self.add(f"equal_{cat}", [], [a, b])


def random_program(rng: random.Random, scene: SceneGraph, *, depth: int = 3, p_broken: float = 0.15) -> Program:
    """A program over `scene`: well formed most of the time (it may still fail, e.g. a
    `unique` over two objects), broken on purpose with probability `p_broken`."""
    b = _Builder(rng, scene)
    b.answer(rng.randint(1, depth))
    program = Program(b.steps, source="clevr")
    if rng.random() < p_broken:
        program = break_program(rng, program)
    return program


def break_program(rng: random.Random, program: Program) -> Program:
    """A copy of `program` with one defect (every error path of the executor)."""
    steps = [Step(s.op, s.args, s.inputs) for s in program.steps]
    i = rng.randrange(len(steps))
    s = steps[i]
    how = rng.choice(["unknown", "inputs", "forward", "args", "type", "truncate", "empty_args"])
    if how == "unknown":
        s.op = rng.choice(["filter_colour", "count_all", "Query", "relate_to"])
    elif how == "inputs":
        s.inputs = s.inputs + (0,) if rng.random() < 0.5 or not s.inputs else s.inputs[:-1]
    elif how == "forward" and s.inputs:
        s.inputs = (i + rng.randint(0, 2),) + s.inputs[1:]
    elif how == "args":
        s.args = s.args + ("red",)
    elif how == "empty_args":
        s.args = ()
    elif how == "type":
        same_arity = [n for n, f in CLEVR_FUNCTIONS.items() if f.arity == len(s.inputs) and n != s.op]
        if same_arity:
            s.op = rng.choice(same_arity)
            spec = CLEVR_FUNCTIONS[s.op]
            s.args = (rng.choice(_arg_values(spec.arg)),) if spec.arg else ()
    else:  # truncate: the program ends in whatever step i yields
        steps = steps[: i + 1]
    return Program(steps, source="clevr")


def _arg_values(kind: str) -> tuple[str, ...]:
    return CLEVR_RELATIONS if kind == "relation" else CLEVR_ATTRIBUTES[kind]
