"""Questions of the GQA-format world: text, GQA `semantic` program, answer, types.

    gen = GQAQuestionGenerator()
    records = gen.generate(image_id, scene_graph_record, k=10, rng=numpy_generator)

Each record has GQA's fields: `imageId`, `question`, `answer`, `fullAnswer`, `semantic`
(`operation`, `argument`, `dependencies`), `semanticStr`, `types` (structural, semantic,
detailed), `groups` (global, local), `annotations`, `isBalanced`, `equivalent`,
`entailed` (the questions of the same image about the same object and attribute type).

Every object a question refers to is named by a description that picks exactly that
object: its name or a category above it ("the container"), with up to two attribute
filters ("the large red box", "the box on the left", "the box that is not red"), or a
relation to another described object ("the box to the left of the red can"). Object ids
in arguments are those of the objects described ("(-)" when none). Yes/no answers are
drawn half and half.

Question kinds (structural / detailed type): query (queryAttr, categoryThat, relS, relO),
verify (verifyAttr, verifyRel, exist, existAttr, existRelS), choose (chooseAttr,
chooseObj, chooseRel, choosePos), logical (logicAnd, logicOr, verifyAttrs), compare
(sameAttr, diffAttr, sameAll, common, compare).

`annotations` are GQA's: for the question, the full answer and the answer, token index
(`gqa_tokens`) -> the id of the object that noun names (the head of each description and
of its anchor; a noun naming no object or several gets none).

Answers are worked out here from the world's own tables; with `verify=True` (default)
each one is re-derived by the independent reference executor
(`vqa.reason.gqa_reference`) and a disagreement raises RuntimeError.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .world import ATTRIBUTE_TYPES, CATEGORIES, NAMES, PLURALS, RELATIONS, categories_of

TYPE_OF = {v: t for t, vs in ATTRIBUTE_TYPES.items() for v in vs}
FILTER_TYPES = ("size", "color", "material")  # adjective order in text
ASKABLE = {"color": "What color is {d}?", "material": "What material is {d} made of?",
           "size": "What size is {d}?", "shape": "What shape is {d}?"}
VERIFY = {"color": "Is {d} {v}?", "material": "Is {d} made of {v}?", "size": "Is {d} {v}?", "shape": "Is {d} {v}?"}
CHOOSE = {"color": "Is {d} {a} or {b}?", "material": "Is {d} made of {a} or {b}?", "size": "Is {d} {a} or {b}?",
          "shape": "Is {d} {a} or {b}?"}
SAME = {"color": ("Do {a} and {b} have the same color?", "Are {a} and {b} different in color?"),
        "material": ("Are {a} and {b} made of the same material?", "Are {a} and {b} made of different materials?"),
        "size": ("Do {a} and {b} have the same size?", "Are {a} and {b} different in size?"),
        "shape": ("Do {a} and {b} have the same shape?", "Are {a} and {b} different in shape?")}
SAME_ALL = {"color": "Do all the {p} have the same color?", "material": "Are all the {p} made of the same material?"}
COMMON_TYPES = ("color", "material", "shape")  # GQA's, in the order `common` answers them
COMPARATIVES = {"larger": "large", "smaller": "small"}
KINDS = {"queryAttr": 3, "categoryThat": 1.5, "relS": 1, "relO": 1, "verifyAttr": 2, "verifyRel": 1.5,
         "exist": 1, "existAttr": 1, "existRelS": 1, "chooseAttr": 2, "chooseObj": 1, "chooseRel": 1.5,
         "choosePos": 1, "logicAnd": 1, "logicOr": 1, "verifyAttrs": 1, "sameAttr": 1, "diffAttr": 1,
         "sameAll": 0.5, "common": 1, "compare": 1}
STRUCTURAL = {"queryAttr": "query", "categoryThat": "query", "relS": "query", "relO": "query",
              "verifyAttr": "verify", "verifyRel": "verify", "exist": "verify", "existAttr": "verify",
              "existRelS": "verify", "chooseAttr": "choose", "chooseObj": "choose", "chooseRel": "choose",
              "choosePos": "choose", "logicAnd": "logical", "logicOr": "logical", "verifyAttrs": "logical",
              "sameAttr": "compare", "diffAttr": "compare", "sameAll": "compare", "common": "compare",
              "compare": "compare"}
SEMANTIC = {"queryAttr": "attr", "categoryThat": "cat", "relS": "rel", "relO": "rel", "verifyAttr": "attr",
            "verifyRel": "rel", "exist": "obj", "existAttr": "obj", "existRelS": "rel", "chooseAttr": "attr",
            "chooseObj": "cat", "chooseRel": "rel", "choosePos": "attr", "logicAnd": "obj", "logicOr": "obj",
            "verifyAttrs": "attr", "sameAttr": "attr", "diffAttr": "attr", "sameAll": "attr", "common": "attr",
            "compare": "attr"}
REL_SAY = {r: r for r in RELATIONS.values()}
REL_SAY["next to"] = "next to"
LEVEL_WEIGHTS = {0: 4.0, 1: 3.0, 2: 1.0, 3: 2.0}  # no filter, one, two, a relation
CHOICE_PAIRS = (("to the left of", "to the right of"), ("in front of", "behind"))


class _Skip(Exception):
    """This kind of question does not fit this scene (or this draw)."""


# ---- the scene as the generator sees it ------------------------------------------------------
@dataclass
class World:
    width: int
    height: int
    ids: list[str]
    name: dict[str, str]
    attrs: dict[str, dict[str, str]]  # id -> type -> value
    box: dict[str, tuple[int, int, int, int]]
    rels: set[tuple[str, str, str]]  # (subject, relation, object)

    @classmethod
    def from_record(cls, sg: dict) -> "World":
        objs = sg["objects"]
        ids = list(objs)
        attrs = {}
        for i, o in objs.items():
            attrs[i] = {TYPE_OF[a]: a for a in o["attributes"]}
        rels = {(i, r["name"], r["object"]) for i, o in objs.items() for r in o["relations"]}
        return cls(sg["width"], sg["height"], ids, {i: objs[i]["name"] for i in ids}, attrs,
                   {i: (objs[i]["x"], objs[i]["y"], objs[i]["w"], objs[i]["h"]) for i in ids}, rels)

    def is_a(self, oid: str, head: str) -> bool:
        return self.name[oid] == head or head in categories_of(self.name[oid])

    def hposition(self, oid: str) -> str:
        x, _, w, _ = self.box[oid]
        s = 3 * (2 * x + w)
        return "left" if s < 2 * self.width else "right" if s > 4 * self.width else "middle"

    def value(self, oid: str, typ: str) -> str | None:
        return self.hposition(oid) if typ == "hposition" else self.attrs[oid].get(typ)


# ---- descriptions ------------------------------------------------------------------------------
@dataclass
class Desc:
    """A noun phrase picking a set of objects: head [filters] or head <relation> anchor."""

    head: str
    filters: tuple[tuple[str, str, bool], ...] = ()  # (type, value, negated)
    relation: str | None = None
    anchor: "Desc | None" = None
    objects: tuple[str, ...] = ()  # what it picks

    def types(self) -> set[str]:
        return {t for t, _, _ in self.filters}

    def refs(self, plural: bool = False) -> list[tuple[str, tuple[str, ...]]]:
        """The nouns of the phrase in text order with the objects each names: the head's
        (its plural with `plural`), then the anchor's."""
        head = PLURALS.get(self.head, self.head) if plural else self.head
        return [(head, self.objects)] + (self.anchor.refs() if self.anchor else [])

    def phrase(self, article: str = "the") -> str:
        adj = [v for t, v, neg in self.filters if not neg and t in FILTER_TYPES]
        words = " ".join(adj + [self.head])
        if article == "a":
            article = "an" if words[0] in "aeiou" else "a"
        text = f"{article} {words}"
        for t, v, neg in self.filters:
            if neg:
                text += f" that is not {v}"
            elif t == "hposition":
                text += f" on the {v}"
        if self.relation:
            text += f" {REL_SAY[self.relation]} {self.anchor.phrase()}"
        return text


def picks(w: World, d: Desc) -> tuple[str, ...]:
    """The objects a description picks, worked out on the world's tables."""
    if d.relation:
        anchors = picks(w, d.anchor)
        return tuple(o for o in w.ids if w.is_a(o, d.head) and any((o, d.relation, a) in w.rels for a in anchors))
    out = [o for o in w.ids if w.is_a(o, d.head)]
    for t, v, neg in d.filters:
        out = [o for o in out if (w.value(o, t) == v) != neg]
    return tuple(out)


def descriptions(w: World, oid: str, *, relations: bool = True, avoid: set[str] = frozenset()) -> list[Desc]:
    """Every description of the generator's forms that picks exactly `oid` and uses no
    filter of a type in `avoid`."""
    out = []
    heads = [w.name[oid]] + categories_of(w.name[oid])
    for head in heads:
        base = [o for o in w.ids if w.is_a(o, head)]
        singles = [(t, w.value(oid, t), False) for t in FILTER_TYPES + ("hposition",) if t not in avoid]
        singles = [f for f in singles if f[1] is not None and not (f[0] == "hposition" and f[1] == "middle")]
        if "color" not in avoid:
            singles += [("color", v, True) for v in sorted({w.attrs[o]["color"] for o in base}) if v != w.attrs[oid]["color"]]
        cands = [Desc(head)] + [Desc(head, (f,)) for f in singles]
        pos = [f for f in singles if not f[2] and f[0] in FILTER_TYPES]
        cands += [Desc(head, (a, b)) for i, a in enumerate(pos) for b in pos[i + 1:]]
        for d in cands:
            d.objects = picks(w, d)
            if d.objects == (oid,) and _minimal(w, d):
                out.append(d)
    if relations:
        for (s, r, a) in sorted(w.rels):  # sorted: a set's order changes with PYTHONHASHSEED
            if s != oid:
                continue
            for ad in descriptions(w, a, relations=False):
                if len(ad.filters) > 1:
                    continue
                for head in [w.name[oid]] + categories_of(w.name[oid]):
                    d = Desc(head, relation=r, anchor=ad)
                    d.objects = picks(w, d)
                    if d.objects == (oid,):
                        out.append(d)
    return out


def _minimal(w: World, d: Desc) -> bool:
    """No filter can be dropped (every filter narrows the set)."""
    for k in range(len(d.filters)):
        if picks(w, Desc(d.head, d.filters[:k] + d.filters[k + 1:])) == d.objects:
            return False
    return True


# ---- programs ----------------------------------------------------------------------------------
class Program:
    def __init__(self):
        self.steps: list[dict] = []

    def add(self, op: str, arg: str, *deps: int) -> int:
        self.steps.append({"operation": op, "argument": arg, "dependencies": list(deps)})
        return len(self.steps) - 1

    def describe(self, d: Desc) -> int:
        ids = _ids(d.objects)
        if d.relation:
            a = self.describe(d.anchor)
            return self.add("relate", f"{d.head},{d.relation},s {ids}", a)
        i = self.add("select", f"{d.head} {ids}")
        for t, v, neg in d.filters:
            i = self.add(f"filter {t}", f"not({v})" if neg else v, i)
        return i


def _ids(objects) -> str:
    return f"({','.join(objects)})" if objects else "(-)"


def semantic_str(steps: list[dict]) -> str:
    """GQA's `semanticStr`: "select: box (101)->filter color: red [0]->query: color [1]"."""
    return "->".join(f"{s['operation']}: {s['argument']}" + (f" {s['dependencies']}" if s["dependencies"] else "")
                     for s in steps)


@dataclass
class Made:
    kind: str
    text: str
    program: Program
    answer: str
    full: str
    key: tuple | None = None  # (objects, type) for entailment
    group: str | None = None
    # annotations: the nouns of the question / full answer in text order with the objects they
    # name (`Desc.refs`), and the object the answer names
    refs: list = field(default_factory=list)
    full_refs: list = field(default_factory=list)
    answer_object: str | None = None

    def noting(self, refs, full_refs=(), answer_object=None) -> "Made":
        self.refs, self.full_refs, self.answer_object = list(refs), list(full_refs), answer_object
        return self


# ---- the generator ------------------------------------------------------------------------------
@dataclass
class GQAQuestionGenerator:
    verify: bool = True
    kind_counts: Counter = field(default_factory=Counter)
    answer_counts: dict = field(default_factory=lambda: defaultdict(Counter))

    def generate(self, image_id: str, sg: dict, k: int, rng: np.random.Generator, qid_prefix: str = "") -> dict:
        """Up to `k` distinct questions about one scene graph record -> {qid: record}."""
        w = World.from_record(sg)
        kinds = list(KINDS)
        p = np.array([KINDS[x] for x in kinds], float)
        p /= p.sum()
        made: list[Made] = []
        seen = set()
        for _ in range(12 * k):
            if len(made) >= k:
                break
            kind = kinds[int(rng.choice(len(kinds), p=p))]
            try:
                m = getattr(self, "_" + kind)(w, rng)
            except _Skip:
                continue
            if m.text in seen:
                continue
            seen.add(m.text)
            m.kind = kind
            made.append(m)
        scene = None
        out = {}
        for n, m in enumerate(made):
            if self.verify:
                scene = scene or _scene_graph(image_id, sg)
                _check(scene, m, image_id)
            qid = f"{qid_prefix}{n:03d}"
            out[qid] = _record(image_id, m)
            self.kind_counts[m.kind] += 1
            self.answer_counts[m.kind][m.answer] += 1
        by_key = defaultdict(list)
        for qid, m in zip(out, made):
            if m.key is not None:
                by_key[m.key].append(qid)
        for qid, m in zip(out, made):
            out[qid]["equivalent"] = [qid]
            out[qid]["entailed"] = [e for e in by_key.get(m.key, []) if e != qid] if m.key is not None else []
        return out

    # -- helpers --
    @staticmethod
    def _pick(rng, xs):
        if not xs:
            raise _Skip
        return xs[int(rng.integers(len(xs)))]

    def _desc(self, w, rng, oid=None, **kw) -> Desc:
        """A random description of `oid` (a random object when None), simpler ones more often."""
        oid = oid or self._pick(rng, w.ids)
        return self._choose_desc(rng, descriptions(w, oid, **kw))

    def _choose_desc(self, rng, ds: list[Desc]) -> Desc:
        levels: dict[int, list[Desc]] = defaultdict(list)
        for d in ds:
            levels[3 if d.relation else len(d.filters)].append(d)
        if not levels:
            raise _Skip
        keys = sorted(levels)
        p = np.array([LEVEL_WEIGHTS[k] for k in keys], float)
        return self._pick(rng, levels[keys[int(rng.choice(len(keys), p=p / p.sum()))]])

    @staticmethod
    def _yes(rng) -> bool:
        return bool(rng.random() < 0.5)

    # -- query --
    def _queryAttr(self, w, rng):
        t = self._pick(rng, list(ASKABLE))
        d = self._desc(w, rng, avoid={t})
        p = Program()
        p.add("query", t, p.describe(d))
        a = w.value(d.objects[0], t)
        return Made("", ASKABLE[t].format(d=d.phrase()), p, a, f"{_cap(d.phrase())} is {a}.",
                    (d.objects, t), t).noting(d.refs(), d.refs())

    def _categoryThat(self, w, rng):
        oid = self._pick(rng, w.ids)
        cats = categories_of(w.name[oid])
        ds = [d for d in descriptions(w, oid) if d.head in cats and (d.filters or d.relation)
              and len(d.filters) <= 1 and not any(neg for _, _, neg in d.filters)]
        d = self._choose_desc(rng, ds)
        rest = d.phrase()[len(f"the {d.head}"):] if not d.filters or d.filters[0][0] == "hposition" else None
        if rest is None:
            rest = " " + d.filters[0][1]
        p = Program()
        p.add("query", "name", p.describe(d))
        return Made("", f"What kind of {d.head} is{rest}?", p, w.name[oid],
                    f"The {d.head} is {_a(w.name[oid])}.", (d.objects, "name"), d.head).noting(
                        d.refs(), [(d.head, d.objects)], oid)

    def _rel_target(self, w, rng, direction):
        anchor = self._pick(rng, w.ids)
        ad = self._desc(w, rng, anchor, relations=False)
        r = self._pick(rng, sorted({r for s, r, o in w.rels if (o if direction == "s" else s) == anchor}))
        targets = sorted({s for s, rr, o in w.rels if rr == r and o == anchor}) if direction == "s" else \
            sorted({o for s, rr, o in w.rels if rr == r and s == anchor})
        if len(targets) != 1:
            raise _Skip
        return ad, r, targets[0]

    def _relS(self, w, rng):
        ad, r, t = self._rel_target(w, rng, "s")
        p = Program()
        i = p.add("relate", f"_,{r},s ({t})", p.describe(ad))
        p.add("query", "name", i)
        return Made("", f"What is {REL_SAY[r]} {ad.phrase()}?", p, w.name[t],
                    f"{_cap(_a(w.name[t]))} is {REL_SAY[r]} {ad.phrase()}.", ((t,), "name"), "name").noting(
                        ad.refs(), [(w.name[t], (t,))] + ad.refs(), t)

    def _relO(self, w, rng):
        ad, r, t = self._rel_target(w, rng, "o")
        p = Program()
        i = p.add("relate", f"_,{r},o ({t})", p.describe(ad))
        p.add("query", "name", i)
        return Made("", f"What is {ad.phrase()} {REL_SAY[r]}?", p, w.name[t],
                    f"{_cap(ad.phrase())} is {REL_SAY[r]} {_a(w.name[t])}.", ((t,), "name"), "name").noting(
                        ad.refs(), ad.refs() + [(w.name[t], (t,))], t)

    # -- verify --
    def _verifyAttr(self, w, rng):
        t = self._pick(rng, list(VERIFY))
        d = self._desc(w, rng, avoid={t})
        true = w.value(d.objects[0], t)
        yes = self._yes(rng)
        v = true if yes else self._pick(rng, [x for x in ATTRIBUTE_TYPES[t] if x != true])
        p = Program()
        p.add(f"verify {t}", v, p.describe(d))
        a = "yes" if yes else "no"
        return Made("", VERIFY[t].format(d=d.phrase(), v=v), p, a,
                    f"{'Yes' if yes else 'No'}, {d.phrase()} is {true}.", (d.objects, t)).noting(d.refs(), d.refs())

    def _unique_by_name(self, w):
        return [o for o in w.ids if sum(w.name[x] == w.name[o] for x in w.ids) == 1]

    def _verifyRel(self, w, rng):
        s = self._pick(rng, self._unique_by_name(w))
        yes = self._yes(rng)
        pairs = [(r, o) for o in w.ids if o != s for r in REL_SAY if ((s, r, o) in w.rels) == yes]
        r, o = self._pick(rng, pairs)
        ad = self._desc(w, rng, o, relations=False)
        p = Program()
        p.add("verify rel", f"{w.name[s]},{r},s ({s})", p.describe(ad))
        refs = [(w.name[s], (s,))] + ad.refs()
        return Made("", f"Is the {w.name[s]} {REL_SAY[r]} {ad.phrase()}?", p, "yes" if yes else "no",
                    f"{'Yes' if yes else 'No'}, the {w.name[s]} is {'' if yes else 'not '}{REL_SAY[r]} {ad.phrase()}."
                    ).noting(refs, refs)

    def _exist(self, w, rng):
        yes = self._yes(rng)
        heads = sorted(set(NAMES.values()) | set(CATEGORIES))
        there = [h for h in heads if any(w.is_a(o, h) for o in w.ids) == yes]
        h = self._pick(rng, there)
        d = Desc(h)
        d.objects = picks(w, d)
        return self._exist_of(d, yes)

    def _exist_of(self, d: Desc, yes: bool) -> Made:
        p = Program()
        p.add("exist", "?", p.describe(d))
        some = d.phrase("a")
        full = f"Yes, there is {some}." if yes else f"No, there is no {some.split(' ', 1)[1]}."
        return Made("", f"Is there {some}?", p, "yes" if yes else "no", full).noting(d.refs(), d.refs())

    def _attr_desc(self, w, rng, yes: bool) -> Desc:
        heads = sorted(set(NAMES.values()) | set(CATEGORIES))
        h = self._pick(rng, heads)
        t = self._pick(rng, list(FILTER_TYPES))
        have = {w.value(o, t) for o in w.ids if w.is_a(o, h)}
        if yes:
            if not have:
                raise _Skip
            v = self._pick(rng, sorted(have))
        else:
            v = self._pick(rng, [x for x in ATTRIBUTE_TYPES[t] if x not in have])
        d = Desc(h, ((t, v, False),))
        d.objects = picks(w, d)
        if bool(d.objects) != yes:
            raise _Skip
        return d

    def _existAttr(self, w, rng):
        yes = self._yes(rng)
        return self._exist_of(self._attr_desc(w, rng, yes), yes)

    def _existRelS(self, w, rng):
        anchor = self._pick(rng, w.ids)
        ad = self._desc(w, rng, anchor, relations=False)
        r = self._pick(rng, sorted(REL_SAY))
        yes = self._yes(rng)
        names = sorted(set(NAMES.values()))
        hs = [h for h in names if any(w.name[o] == h and (o, r, anchor) in w.rels for o in w.ids) == yes]
        h = self._pick(rng, hs)
        d = Desc(h, relation=r, anchor=ad)
        d.objects = picks(w, d)
        return self._exist_of(d, yes)

    # -- choose --
    def _chooseAttr(self, w, rng):
        t = self._pick(rng, [x for x in CHOOSE if len(ATTRIBUTE_TYPES[x]) > 1])
        d = self._desc(w, rng, avoid={t})
        true = w.value(d.objects[0], t)
        other = self._pick(rng, [x for x in ATTRIBUTE_TYPES[t] if x != true])
        a, b = (true, other) if self._yes(rng) else (other, true)
        p = Program()
        p.add(f"choose {t}", f"{a}|{b}", p.describe(d))
        return Made("", CHOOSE[t].format(d=d.phrase(), a=a, b=b), p, true, f"{_cap(d.phrase())} is {true}.",
                    (d.objects, t), t).noting(d.refs(), d.refs())

    def _chooseObj(self, w, rng):
        oid = self._pick(rng, w.ids)
        cat = categories_of(w.name[oid])[0]
        d = self._choose_desc(rng, [d for d in descriptions(w, oid) if d.head == cat])
        other = self._pick(rng, [n for n in CATEGORIES[cat] if n != w.name[oid]])
        a, b = (w.name[oid], other) if self._yes(rng) else (other, w.name[oid])
        p = Program()
        p.add("choose name", f"{a}|{b}", p.describe(d))
        return Made("", f"Is {d.phrase()} {_a(a)} or {_a(b)}?", p, w.name[oid],
                    f"{_cap(d.phrase())} is {_a(w.name[oid])}.", (d.objects, "name"), "name").noting(
                        d.refs(), d.refs(), oid)

    def _chooseRel(self, w, rng):
        s = self._pick(rng, self._unique_by_name(w))
        pair = CHOICE_PAIRS[int(rng.integers(2))]
        hits = [(r, o) for o in w.ids for r in pair if (s, r, o) in w.rels]
        r, o = self._pick(rng, hits)
        ad = self._desc(w, rng, o, relations=False)
        a, b = pair if self._yes(rng) else pair[::-1]
        p = Program()
        p.add("choose rel", f"{w.name[s]},{a}|{b},s ({s})", p.describe(ad))
        short = {"to the left of": "left", "to the right of": "right"}
        if a.startswith("to the"):
            text = f"Is the {w.name[s]} to the {short[a]} or to the {short[b]} of {ad.phrase()}?"
        else:
            text = f"Is the {w.name[s]} {a} or {b} {ad.phrase()}?"
        ans = short.get(r, r)
        refs = [(w.name[s], (s,))] + ad.refs()
        return Made("", text, p, ans, f"The {w.name[s]} is {r} {ad.phrase()}.", ((s,), "rel:" + ad.objects[0]),
                    "rel").noting(refs, refs)

    def _choosePos(self, w, rng):
        oid = self._pick(rng, [o for o in w.ids if w.hposition(o) != "middle"])
        d = self._desc(w, rng, oid, avoid={"hposition"})
        a, b = ("left", "right") if self._yes(rng) else ("right", "left")
        p = Program()
        p.add("choose hposition", f"{a}|{b}", p.describe(d))
        v = w.hposition(oid)
        return Made("", f"Is {d.phrase()} on the {a} or on the {b} of the image?", p, v,
                    f"{_cap(d.phrase())} is on the {v} of the image.", (d.objects, "hposition"), "hposition").noting(
                        d.refs(), d.refs())

    # -- logical --
    def _logic(self, w, rng, op):
        ya, yb = self._yes(rng), self._yes(rng)
        da = self._attr_desc(w, rng, ya)
        db = self._attr_desc(w, rng, yb)
        if da.head == db.head:
            raise _Skip
        p = Program()
        i = p.add("exist", "?", p.describe(da))
        j = p.add("exist", "?", p.describe(db))
        p.add(op, "", i, j)
        yes = (ya and yb) if op == "and" else (ya or yb)
        text = f"Are there both {_pl(da)} and {_pl(db)}?" if op == "and" else f"Are there {_pl(da)} or {_pl(db)}?"
        return Made("", text, p, "yes" if yes else "no", "Yes." if yes else "No.").noting(
            da.refs(plural=True) + db.refs(plural=True))

    def _logicAnd(self, w, rng):
        return self._logic(w, rng, "and")

    def _logicOr(self, w, rng):
        return self._logic(w, rng, "or")

    def _verifyAttrs(self, w, rng):
        ta, tb = sorted(rng.choice(list(VERIFY), 2, replace=False), key=list(VERIFY).index)
        d = self._desc(w, rng, avoid={ta, tb})
        o = d.objects[0]
        vals = []
        for t in (ta, tb):
            true = w.value(o, t)
            vals.append(true if self._yes(rng) else self._pick(rng, [x for x in ATTRIBUTE_TYPES[t] if x != true]))
        p = Program()
        i = p.describe(d)
        a = p.add(f"verify {ta}", vals[0], i)
        b = p.add(f"verify {tb}", vals[1], i)
        p.add("and", "", a, b)
        yes = w.value(o, ta) == vals[0] and w.value(o, tb) == vals[1]
        return Made("", f"Is {d.phrase()} both {_say(ta, vals[0])} and {_say(tb, vals[1])}?", p,
                    "yes" if yes else "no", "Yes, it is." if yes else "No, it is not.").noting(
                        d.refs(), [("it", d.objects)])

    # -- compare --
    def _two(self, w, rng, avoid=frozenset()):
        if len(w.ids) < 2:
            raise _Skip
        a, b = rng.choice(w.ids, 2, replace=False)
        return self._desc(w, rng, str(a), avoid=avoid), self._desc(w, rng, str(b), avoid=avoid)

    def _same_or_diff(self, w, rng, op):
        t = self._pick(rng, list(SAME))
        da, db = self._two(w, rng, avoid={t})
        p = Program()
        i, j = p.describe(da), p.describe(db)
        p.add(f"{op} {t}", "", i, j)
        share = w.value(da.objects[0], t) == w.value(db.objects[0], t)
        yes = share == (op == "same")
        text = SAME[t][0 if op == "same" else 1].format(a=da.phrase(), b=db.phrase())
        return Made("", text, p, "yes" if yes else "no", "Yes." if yes else "No.").noting(da.refs() + db.refs())

    def _sameAttr(self, w, rng):
        return self._same_or_diff(w, rng, "same")

    def _diffAttr(self, w, rng):
        return self._same_or_diff(w, rng, "different")

    def _sameAll(self, w, rng):
        t = self._pick(rng, list(SAME_ALL))
        h = self._pick(rng, [n for n in sorted(set(NAMES.values())) if sum(w.name[o] == n for o in w.ids) >= 2])
        d = Desc(h)
        d.objects = picks(w, d)
        p = Program()
        p.add(f"same {t}", "", p.describe(d))
        yes = len({w.value(o, t) for o in d.objects}) == 1
        return Made("", SAME_ALL[t].format(p=PLURALS[h]), p, "yes" if yes else "no", "Yes." if yes else "No.").noting(
            d.refs(plural=True))

    def _common(self, w, rng):
        da, db = self._two(w, rng, avoid=set(COMMON_TYPES))
        a, b = da.objects[0], db.objects[0]
        shared = [t for t in COMMON_TYPES if w.value(a, t) is not None and w.value(a, t) == w.value(b, t)]
        if not shared:
            raise _Skip
        p = Program()
        i, j = p.describe(da), p.describe(db)
        p.add("common", "", i, j)
        return Made("", f"What do {da.phrase()} and {db.phrase()} have in common?", p, shared[0],
                    f"They have the same {shared[0]}.", None, "common").noting(
                        da.refs() + db.refs(), [("they", da.objects + db.objects)])

    def _compare(self, w, rng):
        da, db = self._two(w, rng, avoid={"size"})
        a, b = da.objects[0], db.objects[0]
        if da.head == db.head or w.name[a] == w.name[b] or w.value(a, "size") == w.value(b, "size"):
            raise _Skip
        area = {o: w.box[o][2] * w.box[o][3] for o in (a, b)}
        big = a if w.value(a, "size") == "large" else b
        if area[big] <= area[b if big == a else a]:
            raise _Skip  # the box would contradict the size: not asked
        comp = self._pick(rng, list(COMPARATIVES))
        win = big if comp == "larger" else (b if big == a else a)
        p = Program()
        i, j = p.describe(da), p.describe(db)
        p.add(f"choose {comp}", "", i, j)
        return Made("", f"Which is {comp}, {da.phrase()} or {db.phrase()}?", p, w.name[win],
                    f"The {w.name[win]} is {comp}.", None, comp).noting(
                        da.refs() + db.refs(), [(w.name[win], (win,))], win)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _say(t: str, v: str) -> str:
    return f"made of {v}" if t == "material" else v


def _pl(d: Desc) -> str:
    adj = [v for t, v, neg in d.filters if not neg and t in FILTER_TYPES]
    return " ".join(adj + [PLURALS[d.head]])


def _record(image_id: str, m: Made) -> dict:
    steps = m.program.steps
    return {"imageId": image_id, "question": m.text, "answer": m.answer, "fullAnswer": m.full,
            "isBalanced": True,
            "types": {"structural": STRUCTURAL[m.kind], "semantic": SEMANTIC[m.kind], "detailed": m.kind},
            "groups": {"global": m.group, "local": f"{m.kind}-{m.group or m.answer}"},
            "semantic": steps, "semanticStr": semantic_str(steps),
            "annotations": {"question": annotate(m.text, m.refs), "fullAnswer": annotate(m.full, m.full_refs),
                            "answer": {"0": m.answer_object} if m.answer_object else {}},
            "equivalent": [], "entailed": []}


def gqa_tokens(text: str) -> list[str]:
    """GQA's tokens of a question or full answer: words, and punctuation on its own
    ("Is the box red?" -> Is, the, box, red, ?); annotation keys index these."""
    return re.findall(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']", text)


def annotate(text: str, refs) -> dict[str, str]:
    """GQA's `annotations` of one text: token index (as a string; "i:j" for a span of
    several tokens) -> the id of the object the word names. `refs`: (word, objects) in text
    order; each is matched to the next token equal to `word` (case-insensitive) after the
    previous match; a word naming no object ("there is no box") or several ("the boxes",
    "they") is matched but gets no entry: GQA's values are single ids."""
    toks = [t.lower() for t in gqa_tokens(text)]
    out, at = {}, 0
    for word, objects in refs:
        try:
            k = toks.index(word.lower(), at)
        except ValueError:
            raise RuntimeError(f"annotation: no {word!r} after token {at} of {text!r}") from None
        at = k + 1
        if len(objects) == 1:
            out[str(k)] = objects[0]
    return out


def _scene_graph(image_id, sg):
    from ...scene import SceneGraph
    return SceneGraph.from_gqa(image_id, sg)


def _check(scene, m: Made, image_id: str) -> None:
    from ...reason.gqa_reference import run_gqa
    from ..gqa_ontology import default_ontology
    from ..gqa_program import parse_program

    got, failed = run_gqa(scene, parse_program(m.program.steps), default_ontology())
    if got != m.answer:
        raise RuntimeError(f"image {image_id}: {m.text!r} ({semantic_str(m.program.steps)}): the generator says "
                           f"{m.answer!r}, the reference executor {got!r} (failed step {failed})")
