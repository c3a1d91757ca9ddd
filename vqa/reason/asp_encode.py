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

`fast=True` (what `ASPReasoner` uses) writes the theory's fast path, with the same
answers and far less for clingo to parse and ground:

- a program that passes `is_checked` is given as the steps to run, one fact per step,
  `run(Q, I, F, V, In)` (V the value or `()`, In the tuple of input steps: `()`, `(J,)`
  or `(J0,J1)`), and its last step, `last(Q, I)`, instead of `question(Q)`, `step/3`,
  `arg/3` and `input/4` (the theory runs them without its structural and type checks);
- a scene without uncertain facts is written as its one reading g(S): `in(g(S), O).
  has(g(S), O, C, V). holds(g(S), A, R, B). novalue(g(S), O, C).`, and its questions
  say `world(Q, g(S))` instead of `about(Q, S)`;
- the checked programs about a gold scene are written as one shared program
  (`encode_shared`), in which a step that several programs compute alike (`scene`
  above all) is one step, run once;
- only the relations some question of the scene reads are written;
- the scene's facts share statements, with pools: `has(g(0),(1;4),color,red).`
  (clingo parses a pool several times faster than the separate facts).

The default is the plain form above (the distillation prompts show it).

`encode_gold` writes a batch whose scenes are all gold and whose programs all pass
`is_checked` (the common case) in the fast form, as lists of ground terms per predicate
(`run`, or `apply(P, I, F, V, J, W)` for a step on one input but exist, `world`, `in`, `has`,
`novalue`, relations as `level/5` where they are nested as CLEVR's are, otherwise
`holds/4` (`_relation_facts`), plus `final(P, I)`: step I of shared program P is the last
step of a question) that the reasoner hands to the grounder directly (no parsing of fact
statements; see `vqa.reason.asp`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from ..ontology import CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS, OBJECT, OBJECTS
from ..program import Program
from ..scene import SceneGraph, clevr_relations
from .solver import term as _plain_term

term = lru_cache(maxsize=65536)(_plain_term)  # the same values recur in every scene and program
DEFAULT_COST_CAP = 10_000  # p below e^-10 (4.5e-5) all cost the same
RELATIVE_COSTS = True  # the fast path's costs: above each choice's cheapest option (`encode_scene`)


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
    unchecked: int = 0  # how many of the scene's programs are not `checked` (set by `encode`)
    # the fast path on a gold scene: the id P of the scene's shared program and, per
    # question q (its index in the batch), the step of P that each of its steps is
    shared_id: int | None = None
    shared: dict[int, list[int]] = field(default_factory=dict)


def encode_scene(scene: SceneGraph, s: int = 0, offset: int = 0, *, cap: int = DEFAULT_COST_CAP,
                 min_probability: float = 0.0, asked: set[str] | None = None, fast: bool = False,
                 relative: bool = RELATIVE_COSTS) -> SceneEncoding:
    """Facts for `scene` as scene `s` of a batch, its objects numbered from `offset` (see
    the module docstring). Attribute values with probability <= `min_probability` are left
    out of an uncertain distribution. `asked`: the relations the questions read (only
    those count towards `mode_cost`, as the theory guesses only those; with `fast`, only
    those are written). With `fast`, a scene without uncertain facts is written as its
    reading g(s)."""
    index = {o.id: offset + i for i, o in enumerate(scene.objects)}
    relations = scene.relations
    if not relations and scene.directions and scene.objects and all(o.position is not None for o in scene.objects):
        relations = clevr_relations([o.position for o in scene.objects], scene.directions)
    if fast and asked is not None:
        relations = [r for r in relations if r.predicate in asked]
    supports = [[(term(cat), [(v, p) for v, p in dist.items() if p > min_probability])
                 for cat, dist in o.attributes.items()] for o in scene.objects]
    uncertain = (any(o.score < 1.0 for o in scene.objects) or any(r.probability < 1.0 for r in relations)
                 or any(len(sup) > 1 for attrs in supports for _, sup in attrs))
    if fast and not uncertain:
        return SceneEncoding(_gold_reading(scene, s, offset, index, supports, relations),
                             [o.id for o in scene.objects], False, 0)
    out: list[str] = []
    mode = 0
    # relative: each choice's cheapest option costs 0 (the others the difference), so the
    # most probable reading costs 0 and the optimisation has no constant part to prove
    rel = relative and fast
    for (i, o), attrs in zip(enumerate(scene.objects, offset), supports):
        out.append(f"in_scene({i},{s}).")
        if o.score >= 1.0:
            out.append(f"obj({i}).")
        else:
            cin, cout = cost(o.score, cap), cost(1.0 - o.score, cap)
            low = min(cin, cout)
            if rel:
                cin, cout = cin - low, cout - low
            else:
                mode += low
            out.append(f"pobj({i},{cin},{cout}).")
        for c, support in attrs:
            if len(support) == 1:
                out.append(f"attr({i},{c},{term(support[0][0])}).")
            elif support:
                costs = [cost(p, cap) for _, p in support]
                low = min(costs)
                if rel:
                    costs = [k - low for k in costs]
                else:
                    mode += low
                out.extend(f"pattr({i},{c},{term(v)},{k})." for (v, _), k in zip(support, costs))
    for r in relations:
        a, b, pred = index[r.subject], index[r.object], term(r.predicate)
        if r.probability >= 1.0:
            out.append(f"rel({a},{pred},{b}).")
        else:
            cin, cout = cost(r.probability, cap), cost(1.0 - r.probability, cap)
            low = min(cin, cout)
            if rel:
                cin, cout = cin - low, cout - low
            elif asked is None or r.predicate in asked:  # the theory only guesses asked relations
                mode += low
            out.append(f"prel({a},{pred},{b},{cin},{cout}).")
    return SceneEncoding("\n".join(out), [o.id for o in scene.objects], uncertain, mode)


_CATEGORIES = tuple(term(c) for c in CLEVR_ATTRIBUTES)
_EMPTY: frozenset = frozenset()


def _pooled(predicate: str, groups: dict[str, list]) -> list[str]:
    """Facts of `predicate` with the last argument pooled: {"g(0),1,left": [2, 5]} ->
    `predicate(g(0),1,left,(2;5)).` (clingo parses a pool several times faster than
    the separate facts)."""
    return [f"{predicate}({head},{members[0]})." if len(members) == 1 else
            f"{predicate}({head},({';'.join(map(str, members))}))." for head, members in groups.items()]


def _gold_reading(scene: SceneGraph, s: int, offset: int, index: dict[str, int], supports, relations) -> str:
    """The one reading g(s) of a scene without uncertain facts (the theory's fast path;
    rules/clevr/scene.lp derives the same atoms from plain facts)."""
    w = f"g({s})"
    has: dict[str, list[int]] = {}
    novalue: list[str] = []
    for i, attrs in enumerate(supports, offset):
        valued = set()
        for c, support in attrs:
            if support:
                valued.add(c)
                has.setdefault(f"{c},{term(support[0][0])}", []).append(i)
        novalue.extend(f"novalue({w},{i},{c})." for c in _CATEGORIES if c not in valued)
    holds: dict[str, list[int]] = {}
    for r in relations:
        holds.setdefault(f"{w},{index[r.subject]},{term(r.predicate)}", []).append(index[r.object])
    objects = ";".join(str(i) for i in range(offset, offset + len(supports)))
    out = [f"in({w},({objects}))."] if supports else []
    out += [f"has({w},{os[0]},{cv})." if len(os) == 1 else f"has({w},({';'.join(map(str, os))}),{cv})."
            for cv, os in has.items()]
    return "\n".join(out + novalue + _pooled("holds", holds))


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


def is_checked(program: Program) -> bool:
    """Whether `program` passes every check the theory makes before running a step
    (rules/clevr/program.lp): it is not empty; each function is in the catalogue with its
    number of inputs, all from earlier steps, and of values; each input has the kind the
    function expects; the last step does not give objects. Such a program can fail only
    on the scene (a `unique` over a set that is not one object, a query on an object
    without that attribute). Unlike `Program.problems`, values outside the vocabulary
    are fine (they match nothing, as in the reference executor)."""
    kinds: list[str] = []
    for i, s in enumerate(program.steps):
        spec = CLEVR_FUNCTIONS.get(s.op)
        if spec is None or len(s.inputs) != spec.arity or len(s.args) != (1 if spec.arg else 0):
            return False
        for j, want in zip(s.inputs, spec.inputs):
            if not 0 <= j < i or kinds[j] != want:
                return False
        kinds.append(spec.output)
    return bool(kinds) and kinds[-1] not in (OBJECTS, OBJECT)


def encode_program(q: int, program: Program, s: int = 0, *, fast: bool = False, checked: bool = False,
                   gold: bool = False) -> str:
    """Facts of one question with id `q` about scene `s` (see the module docstring).
    The fast path (`fast`): `checked` (the caller has made sure that the program passes
    `is_checked`) gives its steps as run/5 with last/2 instead of question/1, step/3,
    arg/3 and input/4;
    `gold` says that the scene is written as its reading g(s)."""
    where = f"world({q},g({s}))." if fast and gold else f"about({q},{s})."
    functions = [_FUNCTION_TERMS.get(st.op) or function_term(st.op) for st in program.steps]
    if fast and checked:
        out = [f"last({q},{len(functions) - 1}). {where}"]
        out.extend(_step_fact(q, i, f, st, st.inputs) for i, (st, f) in enumerate(zip(program.steps, functions)))
        return "\n".join(out)
    out = [f"question({q}). {where}"]
    for i, (st, f) in enumerate(zip(program.steps, functions)):
        out.append(f"step({q},{i},{f}).")
        if st.args:
            out.append(f"arg({q},{i},{term(st.args[0])}).")
            if len(st.args) > 1:
                out.append(f"nargs({q},{i},{len(st.args)}).")
        for k, j in enumerate(st.inputs):
            out.append(f"input({q},{i},{k},{j}).")
    return "\n".join(out)


def _step_fact(q, i: int, f: str, st, inputs) -> str:
    value = term(st.args[0]) if st.args else "()"
    ins = "()" if not inputs else f"({inputs[0]},)" if len(inputs) == 1 else f"({inputs[0]},{inputs[1]})"
    return f"run({q},{i},{f},{value},{ins})."


def encode_shared(pid: int, programs: list[Program], s: int) -> tuple[str, list[list[int]]]:
    """The checked `programs` about gold scene `s` as one shared program `pid` (the fast
    path): a step that several programs compute alike (the same function and value on the
    same inputs, `scene` above all) is one step of the shared program, run once. Returns
    the facts and, per program, the shared step of each of its steps."""
    nodes: dict[tuple, int] = {}
    out = [f"world({pid},g({s}))."]
    maps = []
    for program in programs:
        ids: list[int] = []
        for st in program.steps:
            f = _FUNCTION_TERMS[st.op]
            key = (f, st.args, tuple(ids[j] for j in st.inputs))
            n = nodes.get(key)
            if n is None:
                n = nodes[key] = len(nodes)
                out.append(_step_fact(pid, n, f, st, key[2]))
            ids.append(n)
        maps.append(ids)
    return "\n".join(out), maps


def encode(batch: list[tuple[SceneGraph, list[Program]]], *, cap: int = DEFAULT_COST_CAP, fast: bool = False,
           min_probability: float = 0.0, relative: bool = RELATIVE_COSTS) -> tuple[list[SceneEncoding], str]:
    """Facts of a batch of (scene, programs): scenes are numbered 0.., questions 0.. through
    the batch in order (`fast`: see the module docstring; the checked programs about a
    gold scene S become one shared program numbered n + S, n the number of questions:
    `encode_shared`). Returns the scene encodings and all facts as one text."""
    encodings, parts = [], []
    offset = q = 0
    n = sum(len(ps) for _, ps in batch)
    for s, (scene, programs) in enumerate(batch):
        asked = {st.args[0] for p in programs for st in p.steps if st.op == "relate" and st.args}
        enc = encode_scene(scene, s, offset, cap=cap, asked=asked, fast=fast, min_probability=min_probability,
                           relative=relative)
        offset += len(enc.ids)
        encodings.append(enc)
        parts.append(enc.facts)
        shared: list[tuple[int, Program]] = []
        for p in programs:
            checked = fast and is_checked(p)
            enc.unchecked += not checked
            if checked and not enc.uncertain:
                shared.append((q, p))
            else:
                parts.append(encode_program(q, p, s, fast=fast, checked=checked, gold=not enc.uncertain))
            q += 1
        if shared:
            enc.shared_id = n + s
            facts, maps = encode_shared(n + s, [p for _, p in shared], s)
            parts.append(facts)
            enc.shared = {k: m for (k, _), m in zip(shared, maps)}
    return encodings, "\n".join(parts)


def encode_gold(batch: list[tuple[SceneGraph, list[Program]]], *, min_probability: float = 0.0
                ) -> tuple[list[SceneEncoding], dict[str, list[str]], set] | None:
    """The fast path's facts of a batch in which every scene is gold and every program
    passes `is_checked`, as {predicate: [its facts as terms, e.g. "run(3,0,scene,(),())"]}
    (no pools), numbered as `encode(batch, fast=True)` numbers them (the programs about
    scene S are shared program n + S), with `final(P, I)` for the last step of every
    question, and the set of the facts' shapes (for `vqa.reason.relevance`). None when a
    scene has an uncertain fact or a program is not checked (then `encode` writes the call)."""
    n = sum(len(ps) for _, ps in batch)
    encodings: list[SceneEncoding] = []
    terms: dict[str, list[str]] = {"run": [], "apply": [], "world": [], "in": [], "has": [], "novalue": [],
                                   "holds": [], "level": [], "final": []}
    runs, has, novalue = terms["run"], terms["has"], terms["novalue"]
    shapes: set = set()
    offset = q = 0
    for s, (scene, programs) in enumerate(batch):
        objects = scene.objects
        if any(o.score < 1.0 for o in objects):
            return None
        # the programs first (one shared program; None when one is not checked)
        pid = n + s
        w = f"g({s})"
        nodes: dict[tuple, int] = {}
        facts: list[str] = []
        applies: list[str] = []
        maps: list[list[int]] = []
        asked = set()
        for program in programs:
            ids = _shared_steps(program, pid, w, nodes, facts, applies, asked, shapes)
            if ids is None:
                return None
            maps.append(ids)
        # the scene's one reading (as _gold_reading, without pools)
        for i, o in enumerate(objects, offset):
            terms["in"].append(f"in({w},{i})")
            valued = 0
            for cat, dist in o.attributes.items():
                if len(dist) == 1:
                    (v, p), = dist.items()
                    if p <= min_probability:
                        continue
                else:
                    support = [v for v, p in dist.items() if p > min_probability]
                    if len(support) > 1:
                        return None
                    if not support:
                        continue
                    v = support[0]
                valued += 1
                has.append(f"has({w},{i},{term(cat)},{term(v)})")
            if valued < len(_CATEGORIES):
                cats = {term(c) for c, d in o.attributes.items() if any(p > min_probability for p in d.values())}
                novalue.extend(f"novalue({w},{i},{c})" for c in _CATEGORIES if c not in cats)
        if asked:
            relations = scene.relations
            if not relations and scene.directions and objects and all(o.position is not None for o in objects):
                relations = clevr_relations([o.position for o in objects], scene.directions)
            index = {o.id: i for i, o in enumerate(objects, offset)}
            pairs: dict[str, dict[int, set[int]]] = {r: {} for r in asked}
            for r in relations:
                below = pairs.get(r.predicate)
                if below is not None:
                    if r.probability < 1.0:
                        return None
                    a = index[r.subject]
                    if a in below:
                        below[a].add(index[r.object])
                    else:
                        below[a] = {index[r.object]}
            for r, below in pairs.items():
                if below:
                    _relation_facts(w, term(r), below, range(offset, offset + len(objects)), terms)
        enc = SceneEncoding("", [o.id for o in objects], False, 0)
        offset += len(objects)
        encodings.append(enc)
        if programs:
            enc.shared_id = pid
            terms["world"].append(f"world({pid},{w})")
            runs.extend(facts)
            terms["apply"].extend(applies)
            enc.shared = dict(enumerate(maps, q))
            terms["final"].extend(f"final({pid},{m})" for m in {ids[-1] for ids in maps})
            q += len(programs)
    for name, items in terms.items():
        if items and name not in ("run", "apply"):
            shapes.add((name, _GOLD_ARITY[name], (None,) * _GOLD_ARITY[name]))
    return encodings, terms, shapes


_GOLD_ARITY = {"world": 2, "in": 2, "has": 4, "novalue": 3, "holds": 4, "level": 5, "final": 2}


def _relation_facts(w: str, r: str, below: dict[int, set[int]], objects, terms: dict[str, list[str]]) -> None:
    """Relation r of reading w, below[a] = {b: a is r of b}, as facts: as levels,
    `level(w, O, r, L, F)` (O is at level L, and exactly the objects at level F or above
    are r of O), when the sets below[a] are nested, as they are under CLEVR's rule (a is r
    of b when a's position along r exceeds b's by a margin); otherwise as the pairs,
    `holds(w, a, r, b)`. Levels take two facts per object instead of one per pair."""
    objects = list(objects)
    sets = [below.get(o, _EMPTY) for o in objects]
    level = [0] * len(sets)
    first: dict[int, int] = {}
    lv, prev = 0, _EMPTY
    for k in sorted(range(len(sets)), key=lambda k: len(sets[k])):  # smallest set first
        cur = sets[k]
        if len(cur) == len(prev):
            if cur != prev:  # two different sets of one size: not nested
                break
        elif prev <= cur:
            lv += 1
            for o in cur - prev:
                first[o] = lv
        else:
            break
        level[k] = lv
        prev = cur
    else:
        n = lv + 1  # the levels 0..lv (level 0 holds the objects that are r of none)
        terms["level"].extend(f"level({w},{o},{r},{level[k]},{first.get(o, n)})" for k, o in enumerate(objects))
        return
    terms["holds"].extend(f"holds({w},{a},{r},{b})" for a, bs in below.items() for b in sorted(bs))


def _term_shape(text: str) -> tuple[str, int]:
    """(name, arity) of a function term written as "name" or "name(a)" (no nested commas)."""
    name, _, rest = text.partition("(")
    return name, (rest.count(",") + 1) if rest else 0


# per function: (number of inputs, number of values, input kinds, output kind, term, shape
# of the run/5 or apply/6 facts of its steps (vqa.reason.relevance))
_SPECS = {name: (spec.arity, 1 if spec.arg else 0, spec.inputs, spec.output, _FUNCTION_TERMS[name],
                 ("apply", 6, (None, None, _term_shape(_FUNCTION_TERMS[name]), None, None, None))
                 if spec.arity == 1 and name != "exist" else
                 ("run", 5, (None, None, _term_shape(_FUNCTION_TERMS[name]), None, ("", spec.arity))))
          for name, spec in CLEVR_FUNCTIONS.items()}


def _shared_steps(program: Program, pid: int, w: str, nodes: dict[tuple, int], facts: list[str],
                  applies: list[str], asked: set[str], shapes: set) -> list[int] | None:
    """`program` as part of shared program `pid` about reading `w` (`encode_shared`, in
    one pass with `is_checked`): the shared step of each of its steps, the new steps
    appended as terms to `facts` (run/5) or, for the steps on one input but exist, to
    `applies` (apply/6, which rules/clevr/program.lp derives from run/5 otherwise), the relations it
    reads added to `asked` and the shapes of its facts to `shapes`; None when the program
    does not pass `is_checked`."""
    kinds: list[str] = []
    ids: list[int] = []
    i = 0
    for st in program.steps:
        spec = _SPECS.get(st.op)
        if spec is None:
            return None
        arity, nargs, wants, output, f, shape = spec
        inputs, args = st.inputs, st.args
        if len(inputs) != arity or len(args) != nargs:
            return None
        if arity == 0:
            key = (f, args)
        elif arity == 1:
            j = inputs[0]
            if not 0 <= j < i or kinds[j] != wants[0]:
                return None
            key = (f, args, ids[j])
        else:
            j, k = inputs
            if not (0 <= j < i and 0 <= k < i) or kinds[j] != wants[0] or kinds[k] != wants[1]:
                return None
            key = (f, args, ids[j], ids[k])
        kinds.append(output)
        m = nodes.get(key)
        if m is None:
            m = nodes[key] = len(nodes)
            if f == "relate":
                asked.add(args[0])
            shapes.add(shape)
            value = term(args[0]) if args else "()"
            if arity == 1 and f != "exist":  # (the rules of exist read run/5)
                applies.append(f"apply({pid},{m},{f},{value},{key[2]},{w})")
            else:
                ins = "()" if arity == 0 else f"({key[2]},)" if arity == 1 else f"({key[2]},{key[3]})"
                facts.append(f"run({pid},{m},{f},{value},{ins})")
        ids.append(m)
        i += 1
    if not kinds or kinds[-1] in (OBJECTS, OBJECT):
        return None
    return ids
