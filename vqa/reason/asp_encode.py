"""Encoder: SceneGraph + Programs -> ASP facts for the theory in `rules/clevr/`.

Scene facts (scene S of a batch; objects are numbered through the batch, scene by scene,
in `scene.objects` order):

    in_scene(O, S).
    obj(O).  attr(O, Category, Value).  rel(S, Relation, O).            certain (p = 1)
    pobj(O, CostIn, CostOut).  pattr(O, Category, Value, Cost).          uncertain
    prel(S, Relation, O, CostIn, CostOut).

with Cost = min(cap, round(-1000 ln p)). An attribute distribution with one value is
certain (an exactly-one choice over one value is that value); with several values of
probability > 0 it is uncertain. An object with score < 1 and a relation with probability
< 1 are uncertain. Relations come from `scene.relations` when there are any, otherwise
from object positions and `scene.directions` with CLEVR's rule (`clevr_relations`).

Question facts (Q = the question's index in the batch, I = step index):

    question(Q).  about(Q, S).  step(Q, I, F).  arg(Q, I, V).  input(Q, I, K, J).
    nargs(Q, I, N)    (only when a step has N > 1 values; arg/3 holds the first)

F is `scene`, `unique`, ..., `filter(color)`, `query(shape)`, `same(size)`,
`equal(material)` for the catalogue's functions and a quoted string for any other name
(the theory reports it as an unknown function).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ontology import CLEVR_FUNCTIONS
from ..program import Program
from ..scene import SceneGraph, clevr_relations
from .solver import term

DEFAULT_COST_CAP = 10_000  # p below e^-10 (4.5e-5) all cost the same


def cost(p: float, cap: int = DEFAULT_COST_CAP) -> int:
    """round(-1000 ln p), capped at `cap` (p = 0 costs `cap`)."""
    if p <= 0.0:
        return cap
    return min(cap, max(0, round(-1000.0 * math.log(p))))


@dataclass
class SceneEncoding:
    """Facts of one scene, the object ids by index, and whether any fact is uncertain.

    `mode_cost` is the cost of the most probable reading (the sum of the cheapest
    choice of every uncertain fact): a reading's probability relative to the most
    probable one is exp(-(cost - mode_cost) / 1000).
    """

    facts: str
    ids: list[str]
    uncertain: bool
    mode_cost: int


def encode_scene(scene: SceneGraph, s: int = 0, offset: int = 0, *, cap: int = DEFAULT_COST_CAP,
                 min_probability: float = 0.0, asked: set[str] | None = None) -> SceneEncoding:
    """Facts for `scene` as scene `s` of a batch, its objects numbered from `offset` (see
    the module docstring). Attribute values with probability <= `min_probability` are left
    out of an uncertain distribution. `asked`: the relations the questions read (only
    those count towards `mode_cost`, as the theory guesses only those)."""
    index = {o.id: offset + i for i, o in enumerate(scene.objects)}
    out: list[str] = []
    uncertain = False
    mode = 0
    for i, o in enumerate(scene.objects, offset):
        out.append(f"in_scene({i},{s}).")
        if o.score >= 1.0:
            out.append(f"obj({i}).")
        else:
            uncertain = True
            cin, cout = cost(o.score, cap), cost(1.0 - o.score, cap)
            mode += min(cin, cout)
            out.append(f"pobj({i},{cin},{cout}).")
        for cat, dist in o.attributes.items():
            support = [(v, p) for v, p in dist.items() if p > min_probability]
            c = term(cat)
            if len(support) == 1:
                out.append(f"attr({i},{c},{term(support[0][0])}).")
            elif support:
                uncertain = True
                costs = [cost(p, cap) for _, p in support]
                mode += min(costs)
                out.extend(f"pattr({i},{c},{term(v)},{k})." for (v, _), k in zip(support, costs))
    relations = scene.relations
    if not relations and scene.directions and scene.objects and all(o.position is not None for o in scene.objects):
        relations = clevr_relations([o.position for o in scene.objects], scene.directions)
    for r in relations:
        s, t, pred = index[r.subject], index[r.object], term(r.predicate)
        if r.probability >= 1.0:
            out.append(f"rel({s},{pred},{t}).")
        else:
            uncertain = True
            cin, cout = cost(r.probability, cap), cost(1.0 - r.probability, cap)
            if asked is None or r.predicate in asked:  # the theory only guesses asked relations
                mode += min(cin, cout)
            out.append(f"prel({s},{pred},{t},{cin},{cout}).")
    return SceneEncoding("\n".join(out), [o.id for o in scene.objects], uncertain, mode)


def function_term(op: str) -> str:
    """The theory's term for a CLEVR function name (`filter_color` -> `filter(color)`);
    names outside the catalogue become quoted strings."""
    spec = CLEVR_FUNCTIONS.get(op)
    if spec is None:
        return '"' + op.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if spec.category:
        return f"{op[: -len(spec.category) - 1]}({spec.category})"
    return op


_FUNCTION_TERMS = {name: function_term(name) for name in CLEVR_FUNCTIONS}


def encode_program(q: int, program: Program, s: int = 0) -> str:
    """Facts of one question with id `q` about scene `s` (see the module docstring)."""
    out = [f"question({q}). about({q},{s})."]
    for i, s in enumerate(program.steps):
        f = _FUNCTION_TERMS.get(s.op) or function_term(s.op)
        out.append(f"step({q},{i},{f}).")
        if s.args:
            out.append(f"arg({q},{i},{term(s.args[0])}).")
            if len(s.args) > 1:
                out.append(f"nargs({q},{i},{len(s.args)}).")
        for k, j in enumerate(s.inputs):
            out.append(f"input({q},{i},{k},{j}).")
    return "\n".join(out)


def encode(batch: list[tuple[SceneGraph, list[Program]]], *, cap: int = DEFAULT_COST_CAP
           ) -> tuple[list[SceneEncoding], str]:
    """Facts of a batch of (scene, programs): scenes are numbered 0.., questions 0.. through
    the batch in order. Returns the scene encodings and all facts as one text."""
    encodings, parts = [], []
    offset = q = 0
    for s, (scene, programs) in enumerate(batch):
        asked = {st.args[0] for p in programs for st in p.steps if st.op == "relate" and st.args}
        enc = encode_scene(scene, s, offset, cap=cap, asked=asked)
        offset += len(enc.ids)
        encodings.append(enc)
        parts.append(enc.facts)
        for p in programs:
            parts.append(encode_program(q, p, s))
            q += 1
    return encodings, "\n".join(parts)
