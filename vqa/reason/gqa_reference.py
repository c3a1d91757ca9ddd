"""Reference executor of structured GQA programs over a gold SceneGraph (plain Python).

The same semantics as rules/gqa/*.lp, written independently so the two can be tested
against each other (tests/test_gqa_asp.py). Gold graphs only: every probability is read
as certain (values with p >= 0.5 hold). `run_gqa(scene, steps, ontology)` returns
(answer or None, index of the failing step or None).
"""
from __future__ import annotations

import re

from ..datasets.gqa_ontology import GQAOntology
from ..datasets.gqa_program import GQAStep
from ..scene import SceneGraph

SCENE = "scene"


class _Fail(Exception):
    def __init__(self, step: int):
        self.step = step


def _values(scene: SceneGraph, onto: GQAOntology) -> dict[str, dict[str, set[str]]]:
    """object id -> type -> values, including image-thirds positions."""
    out = {}
    for o in scene.objects:
        d: dict[str, set[str]] = {}
        for cat, dist in o.attributes.items():
            for v, p in dist.items():
                if p >= 0.5:
                    for t in ((onto.types_of(v) or ["other"]) if cat == "attribute" else [cat]):
                        d.setdefault(t, set()).add(v)
        cx, cy = o.bbox[0] + o.bbox[2] / 2, o.bbox[1] + o.bbox[3] / 2
        for t, c, size, names in (("hposition", cx, scene.width, ("left", "middle", "right")),
                                  ("vposition", cy, scene.height, ("top", "middle", "bottom"))):
            x, w = round(o.bbox[0 if t == "hposition" else 1]), round(o.bbox[2 if t == "hposition" else 3])
            s = 3 * (2 * x + w)
            size = round(size)
            d.setdefault(t, set()).add(names[0] if s < 2 * size else names[2] if s > 4 * size else names[1])
        out[o.id] = d
    return out


def _names(scene: SceneGraph, onto: GQAOntology) -> dict[str, set[str]]:
    """object id -> every name that denotes it (own name, hypernyms, plurals)."""
    up: dict[str, set[str]] = {}
    for h, below in onto.hypernyms.items():
        for n in below:
            up.setdefault(n, set()).add(h)
    out = {}
    for o in scene.objects:
        names, todo = {o.name}, [o.name]
        while todo:
            for h in up.get(todo.pop(), ()):
                if h not in names:
                    names.add(h)
                    todo.append(h)
        names |= {p for p, s in onto.plurals.items() if s in names}
        out[o.id] = names
    return out


def _pick(cands: list[str]) -> str | None:
    """Most frequent candidate, ties broken by the smallest value."""
    if not cands:
        return None
    counts = {v: cands.count(v) for v in set(cands)}
    return min(counts, key=lambda v: (-counts[v], v))


def run_gqa(scene: SceneGraph, steps: list[GQAStep], onto: GQAOntology,
            trace: list | None = None, tables: dict | None = None) -> tuple[str | None, int | None]:
    """`trace`, when given, receives each step's result (object ids, "scene" or a value).
    An empty program fails at step 0. `tables`: a dict kept per (scene, ontology) by a
    caller that runs many programs on one scene (the scene's value and name tables are
    worked out once and stored in it)."""
    if not steps:
        return None, 0
    res: list = [] if trace is None else trace
    if tables is not None and "values" in tables:
        vals, names = tables["values"], tables["names"]
    else:
        vals = _values(scene, onto)
        names = _names(scene, onto)
        if tables is not None:
            tables.update(values=vals, names=names)
    ids = [o.id for o in scene.objects]
    obj_name = {o.id: o.name for o in scene.objects}
    box = {o.id: o.bbox for o in scene.objects}
    rels = {(r.subject, r.predicate, r.object) for r in scene.relations if r.probability >= 0.5}
    scene_vals = {scene.info[k] for k in ("location", "weather") if k in scene.info}
    scene_typed = {"place": scene.info.get("location"), "location": scene.info.get("location"),
                   "room": scene.info.get("location"),
                   "weather": scene.info.get("weather")}

    def has(o, v, typ=None):
        if typ == "name":
            return v in names[o]
        return any(v in vs for vs in vals[o].values())

    def holds_rel(x, r, y):  # x r y
        if r.startswith("same "):
            t = r[5:]
            return x != y and bool(vals[x].get(t, set()) & vals[y].get(t, set()))
        return (x, r, y) in rels

    def related(s: GQAStep, xs):
        out = []
        for r in s.values:
            for x in xs:
                for y in ids:
                    if s.name != "_" and s.name not in names[y]:
                        continue
                    if (s.direction in ("s", "_") and holds_rel(y, r, x)) or \
                            (s.direction in ("o", "_") and holds_rel(x, r, y)):
                        out.append((r, x, y))
        return out

    def tvals(o, t):
        return {obj_name[o]} if t == "name" else vals[o].get(t, set())

    for i, s in enumerate(steps):
        inp = res[s.inputs[0]] if s.inputs else None
        scene_in = inp == SCENE
        objs = [] if scene_in or not isinstance(inp, list) else inp
        if s.unparsed is not None:
            return None, i
        f = s.family
        try:
            if f == "select":
                res.append(SCENE if s.scene else [o for o in ids if s.name in names[o]])
            elif f == "relate":
                res.append(sorted({y for _, _, y in related(s, objs)}))
            elif f == "filter":
                keep = [o for o in objs if any(has(o, v, s.type) for v in s.values)]
                res.append([o for o in objs if o not in keep] if s.negated else keep)
            elif f == "exist":
                res.append("yes" if objs else "no")
            elif f in ("and", "or"):
                a, b = res[s.inputs[0]], res[s.inputs[1]]
                res.append(("yes" if a == b == "yes" else "no") if f == "and" else
                           ("no" if a == b == "no" else "yes"))
            elif f == "query":
                t = s.values[0] if s.values else "name"
                if scene_in:
                    cands = [scene_typed[t]] if scene_typed.get(t) else []
                else:
                    cands = [v for o in objs for v in sorted(tvals(o, t))]
                v = _pick(cands)
                if v is None:
                    raise _Fail(i)
                res.append(v)
            elif f in ("verify", "choose") and s.negated:
                raise _Fail(i)
            elif f == "verify" and s.type == "rel":
                if not objs:
                    raise _Fail(i)
                res.append("yes" if related(s, objs) else "no")
            elif f == "verify":
                if scene_in:
                    res.append("yes" if any(v in scene_vals for v in s.values) else "no")
                elif not objs:
                    raise _Fail(i)
                else:
                    res.append("yes" if any(has(o, v, s.type) for o in objs for v in s.values) else "no")
            elif f == "choose" and s.type == "rel":
                cands = [re.sub(r"^to the (\w+) of$", r"\1", r) for r, _, _ in
                         {(r, x, y) for r, x, y in related(s, objs)}]
                v = _pick(cands)
                if v is None:
                    raise _Fail(i)
                res.append(v)
            elif s.is_comparative:
                res.append(_compare(s, i, res, vals, box, obj_name, onto))
            elif f == "choose":
                if scene_in:
                    cands = [v for v in s.values if v in scene_vals]
                else:
                    cands = [v for o in objs for v in s.values if has(o, v, s.type)]
                    if not cands and s.type in ("hposition", "vposition"):
                        cands = [v for o in objs for v in s.values if v == _half(box[o], s.type, scene)]
                v = _pick(cands)
                if v is None:
                    raise _Fail(i)
                res.append(v)
            elif f in ("same", "different"):
                t = s.type or "name"
                if len(s.inputs) == 2:
                    a, b = res[s.inputs[0]], res[s.inputs[1]]
                    if not a or not b:
                        raise _Fail(i)
                    share = any(tvals(x, t) & tvals(y, t) for x in a for y in b)
                else:
                    if not objs:
                        raise _Fail(i)
                    share = bool(set.intersection(*[set(tvals(o, t)) for o in objs]))
                res.append("yes" if share == (f == "same") else "no")
            elif f == "common":
                a, b = res[s.inputs[0]], res[s.inputs[1]]
                shared = [t for t in onto.common_types
                          if any(vals[x].get(t, set()) & vals[y].get(t, set()) for x in a for y in b)]
                if not shared:
                    raise _Fail(i)
                res.append(shared[0])
            else:
                raise _Fail(i)
        except _Fail as e:
            return None, e.step
    return res[-1], None


def _half(bbox, typ, scene) -> str:
    if typ == "hposition":
        return "left" if 2 * round(bbox[0]) + round(bbox[2]) < round(scene.width) else "right"
    return "top" if 2 * round(bbox[1]) + round(bbox[3]) < round(scene.height) else "bottom"


def _compare(s, i, res, vals, box, obj_name, onto) -> str:
    pos, neg, measure = onto.comparatives.get(s.type, (None, None, None))
    sides = [res[k] for k in s.inputs]
    if not all(isinstance(x, list) and x for x in sides):
        raise _Fail(i)

    def level(objs):
        if any(pos in set().union(*vals[o].values()) for o in objs):
            return 1
        if any(neg in set().union(*vals[o].values()) for o in objs):
            return -1
        return 0

    def size(objs):
        if not measure:
            return None
        m, sign = measure.lstrip("-"), -1 if measure.startswith("-") else 1
        got = []
        for o in objs:
            x, y, w, h = (round(v) for v in box[o])
            got.append(sign * {"area": w * h, "height": h, "width": w, "top": y}[m])
        return max(got)

    ma, mb = size(sides[0]), size(sides[1])
    if ma != mb:
        win = sides[0] if ma > mb else sides[1]
    else:
        la, lb = level(sides[0]), level(sides[1])
        if la == lb:
            raise _Fail(i)
        win = sides[0] if la > lb else sides[1]
    return _pick([obj_name[o] for o in win])
