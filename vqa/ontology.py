"""CLEVR vocabulary and function catalogue (facts from the CLEVR v1.0 release).

Core module: imports nothing else of the project. Every other part (executor,
loaders, data check, generator, ASP encoder) reads its vocabulary from here.
"""
from __future__ import annotations

from dataclasses import dataclass

CLEVR_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
    "size": ("small", "large"),
    "material": ("rubber", "metal"),
    "shape": ("cube", "sphere", "cylinder"),
}
CLEVR_RELATIONS: tuple[str, ...] = ("left", "right", "front", "behind")
CLEVR_COUNTS: tuple[str, ...] = tuple(str(i) for i in range(11))
CLEVR_ANSWERS: tuple[str, ...] = (
    ("yes", "no") + CLEVR_COUNTS + tuple(v for vals in CLEVR_ATTRIBUTES.values() for v in vals)
)
# Words people use for a vocabulary value (FORMATS.md: "Common synonyms").
CLEVR_SYNONYMS: dict[str, str] = {
    "ball": "sphere", "balls": "sphere", "spheres": "sphere",
    "block": "cube", "blocks": "cube", "cubes": "cube", "cylinders": "cylinder",
    "big": "large", "tiny": "small",
    "shiny": "metal", "metallic": "metal", "matte": "rubber",
    "grey": "gray",
}
# The margin of CLEVR's generator for left/right/front/behind.
CLEVR_RELATION_EPS = 0.2

# Value types flowing between steps.
OBJECTS, OBJECT, VALUE, INTEGER, BOOL = "objects", "object", "value", "integer", "bool"


@dataclass(frozen=True)
class FunctionSpec:
    """Signature of one CLEVR function.

    `inputs` are the types of the step inputs, `arg` names what the single value
    argument ranges over (an attribute category, "relation"), or None.
    """

    name: str
    inputs: tuple[str, ...]
    output: str
    arg: str | None = None
    category: str | None = None  # attribute the function reads (query_color -> color)

    @property
    def arity(self) -> int:
        return len(self.inputs)


def _catalogue() -> dict[str, FunctionSpec]:
    specs = [
        FunctionSpec("scene", (), OBJECTS),
        FunctionSpec("unique", (OBJECTS,), OBJECT),
        FunctionSpec("relate", (OBJECT,), OBJECTS, arg="relation"),
        FunctionSpec("union", (OBJECTS, OBJECTS), OBJECTS),
        FunctionSpec("intersect", (OBJECTS, OBJECTS), OBJECTS),
        FunctionSpec("count", (OBJECTS,), INTEGER),
        FunctionSpec("exist", (OBJECTS,), BOOL),
        FunctionSpec("equal_integer", (INTEGER, INTEGER), BOOL),
        FunctionSpec("less_than", (INTEGER, INTEGER), BOOL),
        FunctionSpec("greater_than", (INTEGER, INTEGER), BOOL),
    ]
    for cat in CLEVR_ATTRIBUTES:
        specs += [
            FunctionSpec(f"filter_{cat}", (OBJECTS,), OBJECTS, arg=cat, category=cat),
            FunctionSpec(f"query_{cat}", (OBJECT,), VALUE, category=cat),
            FunctionSpec(f"same_{cat}", (OBJECT,), OBJECTS, category=cat),
            FunctionSpec(f"equal_{cat}", (VALUE, VALUE), BOOL, category=cat),
        ]
    return {s.name: s for s in specs}


CLEVR_FUNCTIONS: dict[str, FunctionSpec] = _catalogue()


def arg_vocabulary(arg: str) -> tuple[str, ...]:
    """Allowed values of a function argument kind ("color", "relation", ...)."""
    if arg == "relation":
        return CLEVR_RELATIONS
    return CLEVR_ATTRIBUTES[arg]


def normalise_answer(answer) -> str:
    """CLEVR answers as strings: True -> "yes", 3 -> "3"."""
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    return str(answer)
