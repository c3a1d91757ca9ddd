"""Question families of the synthetic CLEVR-like world: program skeletons and wording.

A family is a program skeleton built from a few macros (below) plus a final function.
The generator (`questions.py`) fills the skeleton with descriptions, relations and
objects of one scene; this module turns a filled skeleton into an English question.
The wording is this project's own; several phrasings per family and the usual
synonyms (ball/sphere, block/cube, big/large, tiny/small, shiny/metallic/metal,
matte/rubber, thing/object) are drawn at random.

Skeleton nodes (nested tuples):

    ("scene",)                     all objects
    ("filter", SET, null)          a free description applied to SET (count/exist/compare)
    ("unique", SET, null)          the one object of SET fitting a minimal description
    ("relate", OBJ)                objects left/right/in front of/behind OBJ
    ("same", cat, OBJ)             the other objects sharing OBJ's `cat`
    ("and", SET, SET), ("or", SET, SET)
    final: ("count", SET), ("exist", SET), ("query", cat, OBJ), ("equal", cat, OBJ, OBJ),
           ("compare", "equal_integer" | "less_than" | "greater_than", SET, SET)

`null` is the set of attribute categories a description may not use (CLEVR's NULL
constraints): "what color is the red ball?" is answered without looking.
"""
from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("size", "color", "material", "shape")  # CLEVR's <Z> <C> <M> <S> order

SYNONYMS = {
    "large": ("large", "big"), "small": ("small", "tiny"),
    "metal": ("metal", "metallic", "shiny"), "rubber": ("rubber", "matte"),
    "cube": ("cube", "block"), "sphere": ("sphere", "ball"), "cylinder": ("cylinder",),
    None: ("thing", "object"),
}
RELATION_WORDS = {
    "left": ("left of", "to the left of", "on the left side of"),
    "right": ("right of", "to the right of", "on the right side of"),
    "front": ("in front of",),
    "behind": ("behind",),
}


@dataclass(frozen=True)
class Family:
    """One question family: `index` is CLEVR's `question_family_index` (stable)."""

    index: int
    group: str  # one of the nine CLEVR template groups
    name: str
    skeleton: tuple

    @property
    def template_filename(self) -> str:
        return f"{self.group}.json"

    @property
    def final(self) -> str:
        return self.skeleton[0]


SCENE = ("scene",)


def _filter(src, null=()):
    return ("filter", src, frozenset(null))


def _unique(src, null=()):
    return ("unique", src, frozenset(null))


def _hop(n: int, null=()):
    """An object reached by `n` relate hops from an object picked out of the scene."""
    obj = _unique(SCENE, null if n == 0 else ())
    for k in range(n):
        obj = _unique(("relate", obj), null if k == n - 1 else ())
    return obj


def _families() -> list[Family]:
    specs: list[tuple[str, str, tuple]] = []
    for group, hops in (("zero_hop", 0), ("one_hop", 1), ("two_hop", 2), ("three_hop", 3)):
        src = SCENE if hops == 0 else ("relate", _hop(hops - 1))
        specs += [(group, "count", ("count", _filter(src))), (group, "exist", ("exist", _filter(src)))]
        specs += [(group, f"query_{c}", ("query", c, _unique(src, {c}))) for c in CATEGORIES]
    both = ("and", ("relate", _hop(0)), ("relate", _hop(0)))
    specs += [("single_and", "count", ("count", _filter(both))), ("single_and", "exist", ("exist", _filter(both)))]
    specs += [("single_and", f"query_{c}", ("query", c, _unique(both, {c}))) for c in CATEGORIES]
    either = ("or", ("relate", _hop(0)), ("relate", _hop(0)))
    specs += [("single_or", "count_filters", ("count", ("or", _filter(SCENE), _filter(SCENE)))),
              ("single_or", "count", ("count", _filter(either))),
              ("single_or", "exist", ("exist", _filter(either)))]
    specs += [("same_relate", f"count_same_{c}", ("count", _filter(("same", c, _hop(0)), {c}))) for c in CATEGORIES]
    specs += [("same_relate", f"exist_same_{c}", ("exist", _filter(("same", c, _hop(0)), {c}))) for c in CATEGORIES]
    for c, q in (("size", "color"), ("color", "shape"), ("material", "size"), ("shape", "material")):
        specs.append(("same_relate", f"query_{q}_same_{c}", ("query", q, _unique(("same", c, _hop(0)), {c, q}))))
    specs += [("comparison", f"equal_{c}", ("equal", c, _hop(0, {c}), _hop(0, {c}))) for c in CATEGORIES]
    specs += [("comparison", f"equal_{c}_relate", ("equal", c, _hop(0, {c}), _hop(1, {c}))) for c in CATEGORIES]
    for op in ("equal_integer", "less_than", "greater_than"):
        specs.append(("compare_integer", op, ("compare", op, _filter(SCENE), _filter(SCENE))))
    for op in ("equal_integer", "less_than", "greater_than"):
        specs.append(("compare_integer", f"{op}_relate",
                      ("compare", op, _filter(("relate", _hop(0))), _filter(SCENE))))
    return [Family(i, g, f"{g}/{n}", s) for i, (g, n, s) in enumerate(specs)]


FAMILIES: list[Family] = _families()
GROUPS = ("zero_hop", "one_hop", "two_hop", "three_hop", "single_and", "single_or", "same_relate",
          "comparison", "compare_integer")


# ---- wording ----------------------------------------------------------------------
# A filled node (see questions.Filled) offers: kind, desc (4-tuple of values or None),
# arg (relation or category), children.

QUESTIONS = {
    "count": ("How many {set} are there?", "What number of {set} are there?", "How many {set} are visible?",
              "What is the number of {set}?"),
    "count_pred": ("How many {head} are {pred}?", "What number of {head} are {pred}?",
                   "How many {head} {that_are}{pred} are there?", "What is the number of {head} that are {pred}?"),
    "count_or": ("How many things are {a} or {b}?", "How many objects are either {a} or {b}?",
                 "What number of things are {a} or {b}?", "How many {a} or {b} are there?"),
    "exist": ("Are there any {set}?", "Is there {a_one}?", "Are any {set} visible?", "Does {a_one} exist?"),
    "exist_pred": ("Are there any {head} {pred}?", "Is there {a_one} {that_is}{pred}?", "Are any {head} {pred}?",
                   "Does {a_one} exist that is {pred}?"),
    "query_color": ("What color is {obj}?", "What is the color of {obj}?", "{Obj} is what color?",
                    "Which color does {obj} have?"),
    "query_size": ("What size is {obj}?", "How big is {obj}?", "What is the size of {obj}?", "{Obj} is what size?"),
    "query_material": ("What material is {obj}?", "What is {obj} made of?", "What is the material of {obj}?",
                       "{Obj} is made of what material?"),
    "query_shape": ("What shape is {obj}?", "What is the shape of {obj}?", "{Obj} has what shape?",
                    "What kind of shape does {obj} have?"),
    "equal": ("Is {a} the same {cat} as {b}?", "Does {a} have the same {cat} as {b}?",
              "Do {a} and {b} have the same {cat}?", "Are {a} and {b} the same {cat}?"),
    "equal_material": ("Is {a} made of the same material as {b}?", "Does {a} have the same material as {b}?",
                       "Are {a} and {b} made of the same material?", "Do {a} and {b} have the same material?"),
    "equal_integer": ("Are there the same number of {a} and {b}?", "Is the number of {a} the same as the number of {b}?",
                      "Are there as many {a} as {b}?", "Is the number of {a} equal to the number of {b}?"),
    "less_than": ("Are there fewer {a} than {b}?", "Is the number of {a} less than the number of {b}?",
                  "Is the number of {a} smaller than the number of {b}?", "Are there fewer {a} than there are {b}?"),
    "greater_than": ("Are there more {a} than {b}?", "Is the number of {a} greater than the number of {b}?",
                     "Is the number of {a} larger than the number of {b}?", "Are there more {a} than there are {b}?"),
}
SAME_PRED = {"size": "the same size as", "color": "the same color as", "shape": "the same shape as",
             "material": "made of the same material as"}


class Wording:
    """Turns a filled skeleton into text; `rand` is a `random.Random` (synonyms, phrasings)."""

    def __init__(self, rand):
        self.pick = lambda options: options[int(rand.random() * len(options))]

    def question(self, final: str, arg, parts: list) -> str:
        """`final` is the skeleton's final function, `parts` its filled inputs."""
        pick = self.pick
        if final in ("count", "exist"):
            (node,) = parts
            if node.kind == "or":
                text = pick(QUESTIONS["count_or"]).format(a=self.plural(node.children[0].desc),
                                                          b=self.plural(node.children[1].desc))
            else:
                head, head_one, pred = self.set_parts(node)
                key = final + ("_pred" if pred else "")
                text = pick(QUESTIONS[key]).format(set=head, head=head, pred=pred, a_one=_article(head_one),
                                                   that_are=pick(("that are ", "which are ", "")),
                                                   that_is=pick(("that is ", "which is ", "")))
        elif final == "query":
            obj = self.object(parts[0])
            text = pick(QUESTIONS[f"query_{arg}"]).format(obj=obj, Obj=obj[0].upper() + obj[1:])
        elif final == "equal":
            a, b = self.object(parts[0]), self.object(parts[1])
            text = pick(QUESTIONS["equal_material" if arg == "material" else "equal"]).format(a=a, b=b, cat=arg)
        else:  # compare
            a, b = (self.full_set(p) for p in parts)
            text = pick(QUESTIONS[arg]).format(a=a, b=b)
        return text[0].upper() + text[1:]

    # ---- phrases --------------------------------------------------------------------
    def words(self, desc, plural: bool) -> str:
        size, color, material, shape = desc
        out = [self.pick(SYNONYMS[size])] if size else []
        if color:
            out.append(color)
        if material:
            out.append(self.pick(SYNONYMS[material]))
        noun = self.pick(SYNONYMS[shape])
        out.append(noun + "s" if plural else noun)
        return " ".join(out)

    def plural(self, desc, other: bool = False) -> str:
        return ("other " if other else "") + self.words(desc, True)

    def object(self, node) -> str:
        """'the red cube that is left of the big ball' for a filled `unique` node."""
        head = "the " + self.words(node.desc, False)
        src = node.children[0]
        if src.kind == "scene":
            return head
        if src.kind == "same":
            return f"the other {self.words(node.desc, False)} {self.pick(('that is ', 'which is ', ''))}{self.predicate(src)}"
        return f"{head} {self.pick(('that is ', 'which is ', ''))}{self.predicate(src)}"

    def predicate(self, src) -> str:
        """The relative clause of a relate / same / and / or set, without 'that is'."""
        if src.kind == "relate":
            return f"{self.pick(RELATION_WORDS[src.arg])} {self.object(src.children[0])}"
        if src.kind == "same":
            return f"{SAME_PRED[src.arg]} {self.object(src.children[0])}"
        joiner = " and " if src.kind == "and" else " or "
        return joiner.join(self.predicate(c) for c in src.children)

    def set_parts(self, node) -> tuple[str, str, str]:
        """(plural head, singular head, predicate or '') for a filled `filter` node."""
        src = node.children[0]
        other = src.kind == "same"
        head = self.plural(node.desc, other)
        one = ("another " if other else "") + self.words(node.desc, False)
        pred = "" if src.kind == "scene" else self.predicate(src)
        return head, one, pred

    def full_set(self, node) -> str:
        head, _, pred = self.set_parts(node)
        return f"{head} {self.pick(('that are ', 'which are ', ''))}{pred}" if pred else head


def _article(phrase: str) -> str:
    if phrase.startswith("another "):
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase
