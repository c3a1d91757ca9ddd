"""Readings of an uncertain scene, in plain Python: the most probable one, the scene cut down
to the choices that can fit under a cost bound, and (for small scenes) every reading.

A *reading* of a scene fixes every uncertain fact: which objects exist, which value each
attribute takes, which uncertain relations hold. Its cost is the sum over the uncertain
facts of round(-1000 ln p) of the choice made (`vqa.reason.asp_encode.cost`, capped), as the
ASP theory counts it (rules/clevr/uncertain.lp); the reasoner reports a reading's cost
relative to the scene's most probable reading (`mode_cost`), so the best reading costs 0.

What counts as uncertain is what `asp_encode.encode_scene` writes: an object with score
< 1 (its score is read as the probability that it exists: the reasoner calibrates scores
first), an attribute with several values above `min_probability`, a relation with
probability < 1. Values at or below `min_probability` are left out.

    mode = mode_reading(scene, min_probability=0.01)      # a gold SceneGraph
    small = restrict(scene, bound=2000)                   # choices with extra cost <= 2000 only
    for reading, cost in enumerate_readings(scene):       # every reading (small scenes only)
        execute(program, reading)

`restrict` is what makes the reasoner's search cheap: a choice whose own extra cost (over
its cheapest option) exceeds the bound cannot be part of any reading cheaper than the
bound, so the restricted scene has the same readings of cost <= bound, with the same
relative costs, and far fewer choices.

Core-adjacent: imports only the scene module and `asp_encode.cost` (no clingo).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

from ..scene import Relation, SceneGraph, SceneObject, clevr_relations
from .asp_encode import DEFAULT_COST_CAP, cost


def _support(dist: dict[str, float], min_probability: float) -> list[tuple[str, float]]:
    return [(v, p) for v, p in dist.items() if p > min_probability]


def _best(support: list[tuple[str, float]]) -> str:
    """The most probable value (ties: the larger name, as `SceneObject.value`)."""
    return max(support, key=lambda kv: (kv[1], kv[0]))[0]


def _relations(scene: SceneGraph) -> list[Relation]:
    """The scene's relations as the encoder reads them (from positions when none are given)."""
    if scene.relations:
        return list(scene.relations)
    if scene.directions and scene.objects and all(o.position is not None for o in scene.objects):
        return clevr_relations([o.position for o in scene.objects], scene.directions)
    return []


def _gold_object(o: SceneObject, attributes: dict[str, dict[str, float]]) -> SceneObject:
    return dataclasses.replace(o, attributes=attributes, score=1.0)


def _with_objects(scene: SceneGraph, objects: list[SceneObject], relations: list[Relation]) -> SceneGraph:
    """`scene` with these objects and those of `relations` between them (relations are
    pairwise: dropping an object changes no other pair)."""
    keep = {o.id for o in objects}
    relations = [r for r in relations if r.subject in keep and r.object in keep]
    return dataclasses.replace(scene, objects=objects, relations=relations)


def mode_reading(scene: SceneGraph, min_probability: float = 0.0) -> SceneGraph:
    """The most probable reading as a gold scene: the objects with probability >= 0.5 (score
    1), each attribute at its most probable value above `min_probability` (none when no value
    is above it), the relations with probability >= 0.5 (probability 1). Ties (p = 0.5, equal
    values) are broken as `SceneObject.value` breaks them; the ASP reasoner counts every
    reading of the least cost as a best reading."""
    objects = []
    for o in scene.objects:
        if o.score < 0.5:
            continue
        attrs = {}
        for c, dist in o.attributes.items():
            sup = _support(dist, min_probability)
            if sup:
                attrs[c] = {_best(sup): 1.0}
        objects.append(_gold_object(o, attrs))
    rels = [dataclasses.replace(r, probability=1.0) for r in _relations(scene) if r.probability >= 0.5]
    return _with_objects(scene, objects, rels)


def restrict(scene: SceneGraph, bound: int, *, min_probability: float = 0.0, cap: int = DEFAULT_COST_CAP
             ) -> SceneGraph:
    """`scene` with every choice whose extra cost over its cheapest option exceeds `bound`
    fixed at that cheapest option: attribute values dropped, objects made certain (score 1)
    or removed, relations made certain or removed. Every reading of cost <= `bound` above
    the most probable one is a reading of the result, at the same cost above the result's
    most probable reading, and the result has no other readings."""
    objects = []
    for o in scene.objects:
        if o.score < 1.0:
            cin, cout = cost(o.score, cap), cost(1.0 - o.score, cap)
            if abs(cin - cout) > bound:
                if cin > cout:
                    continue  # certainly absent under the bound
                o = dataclasses.replace(o, score=1.0)
        attrs = {}
        for c, dist in o.attributes.items():
            sup = _support(dist, min_probability)
            if len(sup) > 1:
                costs = [cost(p, cap) for _, p in sup]
                low = min(costs)
                sup = [vp for vp, k in zip(sup, costs) if k - low <= bound]
            attrs[c] = dict(sup)
        objects.append(dataclasses.replace(o, attributes=attrs))
    rels = []
    for r in _relations(scene):
        if r.probability < 1.0:
            cin, cout = cost(r.probability, cap), cost(1.0 - r.probability, cap)
            if abs(cin - cout) > bound:
                if cin > cout:
                    continue
                r = dataclasses.replace(r, probability=1.0)
        rels.append(r)
    return _with_objects(scene, objects, rels)


def fixed_choices(scene: SceneGraph, bound: int, *, min_probability: float = 0.0, cap: int = DEFAULT_COST_CAP
                  ) -> list[tuple]:
    """The choices `restrict(scene, bound)` fixes, as the reading's atoms to assume (object
    indices in scene order): ("in", i, present), ("has", i, category, value) (the value is
    ruled out), ("holds", i, predicate, j, holds). Lets a search solve the restriction of a
    scene it has grounded whole (as assumptions) instead of grounding each restriction."""
    index = {o.id: i for i, o in enumerate(scene.objects)}
    out: list[tuple] = []
    for i, o in enumerate(scene.objects):
        if o.score < 1.0:
            cin, cout = cost(o.score, cap), cost(1.0 - o.score, cap)
            if abs(cin - cout) > bound:
                out.append(("in", i, cin <= cout))
        for c, dist in o.attributes.items():
            sup = _support(dist, min_probability)
            if len(sup) > 1:
                costs = [cost(p, cap) for _, p in sup]
                low = min(costs)
                out.extend(("has", i, c, v) for (v, _), k in zip(sup, costs) if k - low > bound)
    for r in _relations(scene):
        if r.probability < 1.0:
            cin, cout = cost(r.probability, cap), cost(1.0 - r.probability, cap)
            if abs(cin - cout) > bound:
                out.append(("holds", index[r.subject], r.predicate, index[r.object], cin <= cout))
    return out


def options(scene: SceneGraph, min_probability: float = 0.0, asked: set[str] | None = None) -> int:
    """How many options the uncertain choices of `scene` have in all (2 per uncertain object
    or relation (of an `asked` predicate, when given), the number of values above
    `min_probability` per uncertain attribute); 0 for a scene with one reading. `restrict`
    only removes options, so two restrictions of one scene with as many options are the same."""
    n = 2 * sum(o.score < 1.0 for o in scene.objects)
    for o in scene.objects:
        for d in o.attributes.values():
            k = len(_support(d, min_probability))
            n += k if k > 1 else 0
    n += 2 * sum(r.probability < 1.0 and (asked is None or r.predicate in asked) for r in _relations(scene))
    return n


# ---- the exact reference: every reading --------------------------------------------------
def reading_count(scene: SceneGraph, min_probability: float = 0.0, asked: set[str] | None = None) -> int:
    """How many readings `enumerate_readings` yields."""
    n = 1
    for o in scene.objects:
        n *= 2 if o.score < 1.0 else 1
        for d in o.attributes.values():
            n *= max(1, len(_support(d, min_probability)))
    for r in _relations(scene):
        if r.probability < 1.0 and (asked is None or r.predicate in asked):
            n *= 2
    return n


def enumerate_readings(scene: SceneGraph, *, min_probability: float = 0.0, cap: int = DEFAULT_COST_CAP,
                       asked: set[str] | None = None, limit: int = 1_000_000) -> Iterator[tuple[SceneGraph, int]]:
    """Every reading of `scene` as (gold SceneGraph, cost above the most probable reading),
    by brute force: each object present or absent (when its score is < 1), each attribute at
    each of its values above `min_probability`, each uncertain relation (of an `asked`
    predicate, when given: the others are read at their most probable value, as the ASP
    theory guesses only the relations a question reads) holding or not. Independent of
    the ASP theory: it is the reference the reasoner is tested against. Refuses scenes with
    more than `limit` readings."""
    total = reading_count(scene, min_probability, asked)
    if total > limit:
        raise ValueError(f"{total} readings (more than {limit}): too many to enumerate")
    axes: list[list[tuple[object, int]]] = []  # per choice: (option, cost above the cheapest option)
    keys: list[tuple] = []

    def axis(key, options: list[tuple[object, int]]):
        low = min(k for _, k in options)
        keys.append(key)
        axes.append([(v, k - low) for v, k in options])

    for o in scene.objects:
        if o.score < 1.0:
            axis(("in", o.id), [(True, cost(o.score, cap)), (False, cost(1.0 - o.score, cap))])
        for c, d in o.attributes.items():
            sup = _support(d, min_probability)
            if len(sup) > 1:
                axis(("has", o.id, c), [(v, cost(p, cap)) for v, p in sup])
    fixed_rels = []
    uncertain_rels = []
    for r in _relations(scene):
        if r.probability < 1.0 and (asked is None or r.predicate in asked):
            uncertain_rels.append(r)
            axis(("holds", len(uncertain_rels) - 1), [(True, cost(r.probability, cap)), (False, cost(1.0 - r.probability, cap))])
        elif r.probability >= 0.5:
            fixed_rels.append(dataclasses.replace(r, probability=1.0))
    for combo in itertools.product(*axes):
        pick = dict(zip(keys, (v for v, _ in combo)))
        objects = []
        for o in scene.objects:
            if o.score < 1.0 and not pick[("in", o.id)]:
                continue
            attrs = {}
            for c, d in o.attributes.items():
                sup = _support(d, min_probability)
                if len(sup) == 1:
                    attrs[c] = {sup[0][0]: 1.0}
                elif sup:
                    attrs[c] = {pick[("has", o.id, c)]: 1.0}
            objects.append(_gold_object(o, attrs))
        rels = fixed_rels + [dataclasses.replace(uncertain_rels[k[1]], probability=1.0) for k in keys
                             if k[0] == "holds" and pick[k]]
        yield _with_objects(scene, objects, rels), sum(k for _, k in combo)
