"""Question generator of the synthetic CLEVR-like world.

    gen = QuestionGenerator(numpy.random.default_rng(0))
    records = gen.generate(scene, k=10)   # scene: a CLEVR scene record (dict) or a SceneGraph

Each record is a CLEVR question in the released format: `question`, `program` (a list of
`{"function", "inputs", "value_inputs"}`), `answer` (a string), `question_family_index`,
`template_filename`; the dataset writer adds split, image_index, image_filename and
question_index.

How a question is made (compare CLEVR's generator, which searches template parameters
depth first and rejects):
- a family's skeleton (templates.py) is filled bottom up with random choices on a bitmask
  index of the scene; every `unique` gets a *minimal* description of one object of its
  input set (a singleton, and no attribute could be dropped), every free filter is
  non-redundant (dropping any attribute changes the set, so every filter step changes
  its input), a queried or compared attribute never appears in the description
  (NULL constraints), chains never come back to an object already named, both sides of
  `and`/`or` must matter, compared objects differ, and compared counts may not be
  related by their descriptions alone ("more red cubes than cubes?");
- a few fillings are sampled per family and the one whose answer is rarest so far in
  that family is kept; an answer is refused when its count would exceed
  `max(floor, ratio * count of the most frequent other answer)` (BalanceConfig). Counts
  are kept over the generator's whole life, i.e. the whole dataset being written.

Branch order in programs follows the release: `intersect` takes the second-named branch
first (its steps come first as well), `union`, `equal_*` and the count comparisons take the
first-named one first (measured on the official-generator train file: every template).

Answers come from the bitmask index and (by default, `verify=True`) are re-derived by
the reference executor (`vqa.executor`); a mismatch raises RuntimeError.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ...ontology import CLEVR_ATTRIBUTES, CLEVR_RELATIONS
from ...scene import SceneGraph, clevr_relations
from .templates import CATEGORIES, FAMILIES, Family, Wording

_VALUES = [CLEVR_ATTRIBUTES[c] for c in CATEGORIES]
_SUBSETS = [tuple(k for k in range(4) if sid >> k & 1) for sid in range(16)]
_SUBSET_ORDER = sorted(range(16), key=lambda sid: len(_SUBSETS[sid]))
_FREE_P = (0.35, 0.5, 0.35, 0.5)  # chance that a free description names size, color, material, shape


@dataclass(frozen=True)
class BalanceConfig:
    """Answer balancing within a family (see the module docstring)."""

    ratio: float = 1.5
    floor: int = 8
    candidates: int = 4  # fillings sampled per family and question


class SceneIndex:
    """A scene as bitmasks (bit i = object i) for fast candidate checks.

    attr[k][value] -> objects with that value of category k (CATEGORIES order);
    rel[r][i] -> objects that are r of i; same[k][i] -> the others sharing i's category k;
    sub[i][sid] -> objects sharing every attribute of i in the category subset `sid`.
    """

    def __init__(self, scene: SceneGraph | dict):
        if isinstance(scene, SceneGraph):
            ids = scene.ids
            self.values = [tuple(o.value(c) for c in CATEGORIES) for o in scene.objects]
            pos = {oid: i for i, oid in enumerate(ids)}
            self.rel = {r: [_mask(pos[j] for j in scene.related(oid, r)) for oid in ids] for r in CLEVR_RELATIONS}
        else:
            objects = scene["objects"]
            self.values = [tuple(o[c] for c in CATEGORIES) for o in objects]
            rels = scene.get("relationships", scene.get("relations"))
            if rels is None:
                rels = {r: [[] for _ in objects] for r in CLEVR_RELATIONS}
                for rel in clevr_relations([o["3d_coords"] for o in objects], scene["directions"]):
                    rels[rel.predicate][int(rel.object)].append(int(rel.subject))
            self.rel = {r: [_mask(js) for js in rels[r]] for r in CLEVR_RELATIONS}
        n = self.n = len(self.values)
        self.full = (1 << n) - 1
        self.attr = [{v: 0 for v in vals} for vals in _VALUES]
        for i, vals in enumerate(self.values):
            for k, v in enumerate(vals):
                self.attr[k][v] |= 1 << i
        self.same = [[self.attr[k][self.values[i][k]] & ~(1 << i) for i in range(n)] for k in range(4)]
        self.sub = []
        for i in range(n):
            row = [self.full] * 16
            for sid in range(1, 16):
                low = sid & -sid
                row[sid] = row[sid ^ low] & self.attr[low.bit_length() - 1][self.values[i][low.bit_length() - 1]]
            self.sub.append(row)
        self._minimal: dict = {}

    def desc_mask(self, desc, within: int) -> int:
        m = within
        for k, v in enumerate(desc):
            if v is not None:
                m &= self.attr[k][v]
        return m

    def minimal_descriptions(self, t: int, within: int, banned: int) -> list[int]:
        """Category subsets (as bit sets) whose values of object t single it out within
        `within` and from which no category can be dropped; `banned` categories unused."""
        key = (t, within, banned)
        out = self._minimal.get(key)
        if out is None:
            bit, row, unique = 1 << t, self.sub[t], set()
            out = []
            for sid in _SUBSET_ORDER:
                if sid & banned or row[sid] & within != bit:
                    continue
                unique.add(sid)
                if not any((sid ^ (1 << k)) in unique for k in _SUBSETS[sid]):
                    out.append(sid)
            self._minimal[key] = out
        return out


def _mask(indices) -> int:
    m = 0
    for j in indices:
        m |= 1 << int(j)
    return m


class Filled:
    """A skeleton node filled for one scene: the objects it denotes (`mask`), the object
    of a `unique` (`obj`), the objects named upstream (`used`), its description (4-tuple)
    and argument (relation or category)."""

    __slots__ = ("kind", "arg", "desc", "children", "mask", "obj", "used")

    def __init__(self, kind, mask, children=(), desc=None, arg=None, obj=None, used=0):
        self.kind, self.mask, self.children, self.desc = kind, mask, children, desc
        self.arg, self.obj, self.used = arg, obj, used


class _Reject(Exception):
    pass


class _Filler:
    """Fills skeletons on one scene with one `random.Random`."""

    def __init__(self, index: SceneIndex, rand: random.Random):
        self.ix, self.rand = index, rand

    def fill(self, node) -> Filled:
        kind = node[0]
        if kind == "scene":
            return Filled("scene", self.ix.full)
        if kind == "filter":
            src = self.fill(node[1])
            desc, m = self.free_description(src.mask, _banned(node[2]))
            return Filled("filter", m, (src,), desc, used=src.used)
        if kind == "unique":
            return self.unique(self.fill(node[1]), _banned(node[2]))
        if kind == "relate":
            obj = self.fill(node[1])
            rels = [r for r in CLEVR_RELATIONS if self.ix.rel[r][obj.obj]] or list(CLEVR_RELATIONS)
            r = rels[int(self.rand.random() * len(rels))]
            return Filled("relate", self.ix.rel[r][obj.obj], (obj,), arg=r, used=obj.used)
        if kind == "same":
            obj = self.fill(node[2])
            m = self.ix.same[CATEGORIES.index(node[1])][obj.obj]
            return Filled("same", m, (obj,), arg=node[1], used=obj.used)
        a, b = self.fill(node[1]), self.fill(node[2])
        if kind == "and":
            m = a.mask & b.mask
            if m == a.mask or m == b.mask:  # one side would not matter
                raise _Reject
        else:
            m = a.mask | b.mask
            if not (a.mask & ~b.mask and b.mask & ~a.mask):
                raise _Reject
        return Filled(kind, m, (a, b), used=a.used | b.used)

    def unique(self, src: Filled, banned: int) -> Filled:
        candidates = [i for i in range(self.ix.n) if (src.mask & ~src.used) >> i & 1]
        self.rand.shuffle(candidates)
        for t in candidates:
            sids = self.ix.minimal_descriptions(t, src.mask, banned)
            if sids:
                sid = sids[int(self.rand.random() * len(sids))]
                vals = self.ix.values[t]
                desc = tuple(vals[k] if sid >> k & 1 else None for k in range(4))
                return Filled("unique", 1 << t, (src,), desc, obj=t, used=src.used | 1 << t)
        raise _Reject

    def free_description(self, within: int, banned: int, tries: int = 6):
        ix, rand = self.ix, self.rand
        members = [i for i in range(ix.n) if within >> i & 1]
        for _ in range(tries):
            like = ix.values[members[int(rand.random() * len(members))]] if members and rand.random() < 0.6 else None
            desc = []
            for k in range(4):
                if banned >> k & 1 or rand.random() >= _FREE_P[k]:
                    desc.append(None)
                else:
                    desc.append(like[k] if like else _VALUES[k][int(rand.random() * len(_VALUES[k]))])
            m = ix.desc_mask(desc, within)
            if all(ix.desc_mask([None if j == k else v for j, v in enumerate(desc)], within) != m
                   for k in range(4) if desc[k] is not None):
                return tuple(desc), m
        raise _Reject


def _banned(cats) -> int:
    return sum(1 << CATEGORIES.index(c) for c in cats)


def _answer(index: SceneIndex, skeleton: tuple, parts: list[Filled]) -> str:
    final = skeleton[0]
    if final == "count":
        return str(parts[0].mask.bit_count())
    if final == "exist":
        return "yes" if parts[0].mask else "no"
    if final == "query":
        return index.values[parts[0].obj][CATEGORIES.index(skeleton[1])]
    if final == "equal":
        a, b = parts
        if a.used & b.used:  # the two sides name one object twice
            raise _Reject
        k = CATEGORIES.index(skeleton[1])
        return "yes" if index.values[a.obj][k] == index.values[b.obj][k] else "no"
    a, b = parts  # compare
    if a.desc == b.desc and a.children[0].kind == b.children[0].kind == "scene":
        raise _Reject
    for x, y in ((a, b), (b, a)):  # x's description implies y's and y is over the whole scene
        if y.children[0].kind == "scene" and all(v is None or v == w for v, w in zip(y.desc, x.desc)):
            raise _Reject
    na, nb = a.mask.bit_count(), b.mask.bit_count()
    ok = {"equal_integer": na == nb, "less_than": na < nb, "greater_than": na > nb}[skeleton[1]]
    return "yes" if ok else "no"


def _final_inputs(skeleton: tuple) -> list:
    final = skeleton[0]
    if final in ("count", "exist"):
        return [skeleton[1]]
    if final == "query":
        return [skeleton[2]]
    return [skeleton[2], skeleton[3]]


# ---- program emission --------------------------------------------------------------
def _emit(node: Filled, steps: list) -> int:
    kind = node.kind
    if kind == "scene":
        steps.append({"function": "scene", "inputs": [], "value_inputs": []})
        return len(steps) - 1
    if kind in ("filter", "unique"):
        i = _emit(node.children[0], steps)
        for k, v in enumerate(node.desc):
            if v is not None:
                steps.append({"function": f"filter_{CATEGORIES[k]}", "inputs": [i], "value_inputs": [v]})
                i = len(steps) - 1
        if kind == "unique":
            steps.append({"function": "unique", "inputs": [i], "value_inputs": []})
            i = len(steps) - 1
        return i
    if kind == "relate":
        i = _emit(node.children[0], steps)
        steps.append({"function": "relate", "inputs": [i], "value_inputs": [node.arg]})
    elif kind == "same":
        i = _emit(node.children[0], steps)
        steps.append({"function": f"same_{node.arg}", "inputs": [i], "value_inputs": []})
    elif kind == "and":
        # CLEVR's released programs put the second-named branch of "... A and B" first (all
        # 5 single_and templates); the steps of the second-named branch come first too
        j = _emit(node.children[1], steps)
        i = _emit(node.children[0], steps)
        steps.append({"function": "intersect", "inputs": [j, i], "value_inputs": []})
    else:  # "or": the released programs keep the named order (single_or), as do comparisons
        i, j = _emit(node.children[0], steps), _emit(node.children[1], steps)
        steps.append({"function": "union", "inputs": [i, j], "value_inputs": []})
    return len(steps) - 1


def build_program(skeleton: tuple, parts: list[Filled]) -> list[dict]:
    """The released-format CLEVR program of a filled family skeleton."""
    steps: list[dict] = []
    final = skeleton[0]
    if final in ("count", "exist"):
        steps.append({"function": final, "inputs": [_emit(parts[0], steps)], "value_inputs": []})
    elif final == "query":
        steps.append({"function": f"query_{skeleton[1]}", "inputs": [_emit(parts[0], steps)], "value_inputs": []})
    elif final == "equal":
        ins = []
        for p in parts:
            i = _emit(p, steps)
            steps.append({"function": f"query_{skeleton[1]}", "inputs": [i], "value_inputs": []})
            ins.append(len(steps) - 1)
        steps.append({"function": f"equal_{skeleton[1]}", "inputs": ins, "value_inputs": []})
    else:
        ins = []
        for p in parts:
            i = _emit(p, steps)
            steps.append({"function": "count", "inputs": [i], "value_inputs": []})
            ins.append(len(steps) - 1)
        steps.append({"function": skeleton[1], "inputs": ins, "value_inputs": []})
    return steps


# ---- the generator ------------------------------------------------------------------
class QuestionGenerator:
    """Questions about scenes, balanced per family over the generator's lifetime.

    In: a numpy Generator (default randomness), the families to use (default: all of
    `templates.FAMILIES`), a BalanceConfig, `verify` (re-derive every answer with the
    reference executor; about half the generator's time). `generate(scene, k, rng=None)` returns up to k question records
    (fewer when the scene admits fewer well-posed questions); pass `rng` to draw this
    scene's questions from its own stream.
    """

    def __init__(self, rng: np.random.Generator | None = None, families: list[Family] | None = None,
                 balance: BalanceConfig | None = None, verify: bool = True):
        self.rng = rng if rng is not None else np.random.default_rng()
        self.families = list(families if families is not None else FAMILIES)
        self.balance = balance or BalanceConfig()
        self.verify = verify
        self.answer_counts: dict[int, Counter] = {f.index: Counter() for f in self.families}
        self.family_counts: Counter = Counter()

    def allowed(self, family: Family, answer: str) -> bool:
        """The balance cap: may `family` take one more question answered `answer`?"""
        counts = self.answer_counts[family.index]
        others = max((c for a, c in counts.items() if a != answer), default=0)
        return counts[answer] + 1 <= max(self.balance.floor, self.balance.ratio * others)

    def generate(self, scene: SceneGraph | dict, k: int, rng: np.random.Generator | None = None) -> list[dict]:
        rand = random.Random(int((rng if rng is not None else self.rng).integers(0, 2 ** 63)))
        index = SceneIndex(scene)
        filler, wording = _Filler(index, rand), Wording(rand)
        order = sorted(self.families, key=lambda f: (self.family_counts[f.index], rand.random()))
        graph = None
        if self.verify:
            graph = scene if isinstance(scene, SceneGraph) else SceneGraph.from_clevr(scene)
        out, seen = [], set()
        for family in order:
            if len(out) >= k:
                break
            chosen = self._choose(family, filler, index)
            if chosen is None:
                continue
            parts, answer = chosen
            program = build_program(family.skeleton, parts)
            key = tuple((s["function"], tuple(s["inputs"]), tuple(s["value_inputs"])) for s in program)
            if key in seen:
                continue
            seen.add(key)
            arg = family.skeleton[1] if family.final in ("query", "equal", "compare") else None
            record = {"question": wording.question(family.final, arg, parts), "program": program,
                      "answer": answer, "question_family_index": family.index,
                      "template_filename": family.template_filename}
            if self.verify:
                _check(record, graph)
            self.answer_counts[family.index][answer] += 1
            self.family_counts[family.index] += 1
            out.append(record)
        return out

    def _choose(self, family: Family, filler: _Filler, index: SceneIndex):
        counts = self.answer_counts[family.index]
        best, best_count = None, None
        for _ in range(self.balance.candidates):
            try:
                parts = [filler.fill(node) for node in _final_inputs(family.skeleton)]
                answer = _answer(index, family.skeleton, parts)
            except _Reject:
                continue
            if not self.allowed(family, answer):
                continue
            if best is None or counts[answer] < best_count:
                best, best_count = (parts, answer), counts[answer]
                if best_count == 0:
                    break
        return best



def _check(record: dict, graph: SceneGraph) -> None:
    from ...executor import execute
    from ...program import Program

    result = execute(Program.from_clevr(record["program"]), graph)
    if result.answer != record["answer"]:
        raise RuntimeError(f"generator answer {record['answer']!r} but the reference executor says "
                           f"{result.answer!r} ({result.error}) for {record['question']!r}")
