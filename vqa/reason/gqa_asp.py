"""ASP reasoner for GQA: SceneGraph + structured GQA programs -> answers, by clingo.

    reasoner = GQAReasoner()                       # rules/gqa/*.lp, shipped ontology
    answers = reasoner.answer_image(scene, {qid: steps, ...})   # one ground+solve per image
    answers[qid].answer, answers[qid].trace, answers[qid].top

Encoding (see rules/gqa/README.md): scene facts are general (`attr(O,Type,Value)`,
`rel(S,P,O)`, `name(O,N)`, `box(O,X,Y,W,H)`); GQA attributes (bare strings in the
"attribute" category) get their types from the ontology (a value of unknown type gets
type "other"); typed categories of a predicted graph keep their category as the type.
Facts with probability < 1 become `unc(K, Wtrue, Wfalse)` choices weighted
round(-1000 ln p), capped; a typed category with several values is one exclusive
`group`. Question facts carry the question id; the answer atom is `ans(Q, V)`.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import clingo
import clingo.ast

from ..datasets.gqa_ontology import GQAOntology, default_ontology
from ..datasets.gqa_program import GQAStep
from ..scene import SceneGraph
from .solver import LogCapture, SolverError, ground, load_theory, make_control, solve_control

RULES_DIR = Path(__file__).resolve().parents[2] / "rules" / "gqa"
DEFAULT_BUDGET = 2.0  # seconds of search per question about an uncertain graph (GQAReasonerConfig.budget)
SCENE_TYPES = {"location": ("place", "location", "room"), "weather": ("weather",)}


@dataclass
class GQAReasonerConfig:
    rules_dir: Path = RULES_DIR
    ontology: GQAOntology | None = None  # None: the shipped default
    weight_cap: int = 13816  # = -1000 ln(1e-6)
    fail_weight: int = 6908  # cost of a failed question (= a fact of probability 0.001)
    top_k: int = 1  # answers listed per question (extra solves only for uncertain scenes)
    # seconds of search per question about an uncertain graph (one image's questions are one
    # search: it gets budget x their number; None: no limit). See `solve`.
    budget: float | None = DEFAULT_BUDGET
    # batched gold graphs: the facts reach the grounder as terms (`ground_terms`) rather than
    # as fact statements (False: as statements, the plain way, kept to compare)
    fact_terms: bool = True

    def __post_init__(self):
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"budget must be positive seconds (or None: no limit), got {self.budget}")


@dataclass
class GQAAnswer:
    """One question's result: the answer (None when it failed), the step that failed
    and its operation, a trace per step and the top answers with their costs."""

    qid: str
    answer: str | None
    failed_step: int | None = None
    failed_operation: str | None = None
    trace: list[dict] = field(default_factory=list)
    top: list[tuple[str, int]] = field(default_factory=list)
    cost: int = 0  # cost of the reading used: sum of weights of the uncertain facts
    reading: list[str] = field(default_factory=list)  # uncertain facts taken as true in that reading
    # whether that reading is proven the most probable one (False: the search stopped at its
    # budget with the best reading found so far; with no reading found at all the answer is
    # None and `failed_operation` is "budget")
    proven: bool = True

    def to_dict(self) -> dict:
        return {"qid": self.qid, "answer": self.answer, "failed_step": self.failed_step,
                "failed_operation": self.failed_operation, "trace": self.trace,
                "top": [list(t) for t in self.top], "cost": self.cost, "reading": self.reading,
                "proven": self.proven}


_Q_TERMS: dict = {}  # q()'s results (names, values and relations recur; emptied when large)


def q(text) -> str:
    """A clingo string term."""
    t = _Q_TERMS.get(text) if type(text) is str else None
    if t is None:
        if len(_Q_TERMS) > 100_000:
            _Q_TERMS.clear()
        t = _Q_TERMS[text] = '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
    return t


def weight(p: float, cap: int) -> int:
    return cap if p <= 0 else min(cap, round(-1000 * math.log(p)))


def step_kind(s: GQAStep) -> str:
    """The theory's name for a step's operation ("unsupported:..." when none fits)."""
    if s.unparsed is not None:
        return f"unsupported:{s.operation}"
    f = s.family
    if f == "select":
        return "select_scene" if s.scene else "select"
    if f in ("verify", "choose") and s.type == "rel":
        return f"{f}_rel"
    if s.is_comparative:
        return "compare"
    if f in ("verify", "choose") and s.negated:
        return f"unsupported:{s.operation} not()"
    return f


def rel_answer(relation: str) -> str:
    """How GQA answers a chosen relation: "to the left of" -> "left"."""
    m = re.fullmatch(r"to the (\w+) of", relation)
    return m.group(1) if m else relation


def encode_scene(scene: SceneGraph, ontology: GQAOntology, cap: int = 13816, *,
                 relations: set[str] | None = None, attributes: set[str] | None = None,
                 targets: tuple | None = None, scope: int | None = None, boxes: bool = True) -> tuple[list[str], dict]:
    """Scene facts; also returns the uncertain-fact table {K: (Wtrue, Wfalse, text)}.
    `relations`: only the certain relations with these predicates are stated (the theory
    reads a relation fact only through a step naming its predicate: `relation_predicates`).
    `attributes`: only the certain attributes whose type or value is in this set are stated
    (`attribute_words`). `targets`: ({predicate: [(direction, name)]} of `relation_targets`,
    called: name -> the names an object of that name answers to): a certain relation is
    stated only when a step naming its predicate can reach it (its target side called by
    the step's name, or the name "_").
    `scope`: the certain facts come scoped (`scope_fact`), for `answer_images`; the
    uncertain ones do not (an uncertain graph is answered by `answer_image`).
    An object with several name readings (`scene.info["name_readings"]`, {object id: {name:
    p}}, as `gqa_core.reasoning_view` writes them) gets one exclusive group of `unc_name`
    choices instead of its `name` fact."""
    S = "" if scope is None else f"{scope},"  # every scene fact's first argument is scoped
    facts = [f"image({S}{round(scene.width)},{round(scene.height)})."]
    names_of = {o.id: o.name for o in scene.objects} if targets is not None else None
    names = scene.info.get("name_readings") or {}  # {object id: {name: p}} (`gqa_core.reasoning_view`)
    unc: dict[int, tuple[int, int, str]] = {}

    def uncertain(p, atoms: list[str], group=None) -> None:
        """One choice K stating every atom in `atoms` ("unc_attr(K,...)" templates)."""
        k = len(unc)
        wt = weight(p, cap)
        wf = 0 if group is not None else weight(1 - p, cap)
        unc[k] = (wt, wf, " ".join(a.replace("unc_", "").replace("(K,", "(") for a in atoms))
        facts.append(f"unc({k},{wt},{wf}). " + " ".join(a.replace("(K,", f"({k},") for a in atoms))
        if group is not None:
            facts.append(f"group({q(group)},{k}).")

    for key, types in SCENE_TYPES.items():
        if key in scene.info:
            facts += [f"scene_attr({S}{q(t)},{q(scene.info[key])})." for t in types]
    for o in scene.objects:
        oid = S + q(o.id)
        if o.score >= 1.0:
            facts.append(f"object({oid}).")
        elif o.score > 0:
            uncertain(o.score, [f"unc_object(K,{oid})."])
        dist = names.get(o.id)
        if dist and len(dist) > 1:
            for n, p in dist.items():
                uncertain(p, [f"unc_name(K,{oid},{q(n)})."], group=f"{o.id}/name")
        else:
            facts.append(f"name({oid},{q(o.name)}).")
        if boxes:
            x, y, w, h = (round(v) for v in o.bbox)
            facts.append(f"box({oid},{x},{y},{w},{h}).")
        for cat, dist in o.attributes.items():
            exclusive = cat != "attribute" and len(dist) > 1
            for v, p in dist.items():
                if p <= 0:
                    continue
                types = (ontology.types_of(v) or ["other"]) if cat == "attribute" else [cat]
                if p >= 1.0:
                    if attributes is not None and v not in attributes:
                        types = [t for t in types if t in attributes]
                    facts += [f"attr({oid},{q(t)},{q(v)})." for t in types]
                else:
                    uncertain(p, [f"unc_attr(K,{oid},{q(t)},{q(v)})." for t in types],
                              group=f"{o.id}/{cat}" if exclusive else None)
    for r in scene.relations:
        if r.probability >= 1.0 and relations is not None and r.predicate not in relations:
            continue
        if r.probability >= 1.0 and targets is not None and not _reachable(r, targets, names_of):
            continue
        atom = f"{S}{q(r.subject)},{q(r.predicate)},{q(r.object)}"
        if r.probability >= 1.0:
            facts.append(f"rel({atom}).")
        elif r.probability > 0:
            uncertain(r.probability, [f"unc_rel(K,{atom})."])
    return facts, unc


def relation_predicates(programs) -> set[str]:
    """The relation predicates the steps of `programs` ({qid: steps}) name: the only ones
    whose `rel` facts the theory joins (relate, verify_rel, choose_rel through arg_rel)."""
    return {r for steps in programs.values() for st in steps if st.unparsed is None and st.is_relational
            for r in st.values}


def relation_targets(programs) -> dict[str, list[tuple]]:
    """{predicate: [(direction, name)]} of the relational steps of `programs` ({qid: steps}):
    operations.lp reads `rel(S,P,O)` only through a step with `arg_rel` P whose target (S for
    direction s, O for o, either for "_") is called by the step's name (any object for "_")."""
    out: dict[str, list[tuple]] = {}
    for steps in programs.values():
        for st in steps:
            if st.unparsed is None and st.is_relational:
                for r in st.values:
                    out.setdefault(r, []).append((st.direction, str(st.name)))
    return out


def _reachable(r, targets, names_of) -> bool:
    by, called = targets
    for d, n in by.get(r.predicate, ()):
        if n == "_":
            return True
        if d in ("s", "_") and n in called(names_of.get(r.subject)):
            return True
        if d in ("o", "_") and n in called(names_of.get(r.object)):
            return True
    return False


POSITION_WORDS = frozenset({"hposition", "vposition", "left", "right", "middle", "top", "bottom"})


def boxes_needed(programs, words: set[str]) -> bool:
    """Whether a step of `programs` ({qid: steps}) can read a `box` fact (world.lp): a
    position (type or value, among `words` of `attribute_words`) or a comparative (box measures)."""
    return bool(words & POSITION_WORDS) or any(st.unparsed is None and st.is_comparative
                                               for steps in programs.values() for st in steps)


def attribute_words(programs, ontology: GQAOntology) -> set[str]:
    """The attribute types and values the steps of `programs` ({qid: steps}) can read: an
    `attr(O,T,V)` fact with neither T nor V here joins no rule of the theory (operations.lp,
    world.lp: a tested value or comparative value, any type; a queried, compared or shared
    type, the type of a "same T" relation, the common types of a `common` step)."""
    words: set[str] = set()
    for steps in programs.values():
        for st in steps:
            if st.unparsed is not None:
                continue
            if st.type:
                words.add(st.type)
                c = ontology.comparatives.get(st.type)
                if c:
                    words.update(x for x in c[:2] if x)
            words.update(st.values)
            words.update(r[5:] for r in st.values if r.startswith("same "))
            if st.family == "common":
                words.update(ontology.common_types)
    return words


def encode_ontology(ontology: GQAOntology, names: set[str]) -> list[str]:
    """Hypernym, plural, comparative and common-type facts (hypernyms reachable from `names`)."""
    up: dict[str, set[str]] = {}
    for h, below in ontology.hypernyms.items():
        for n in below:
            up.setdefault(n, set()).add(h)
    facts, seen, todo = [], set(), sorted(names, reverse=True)  # sorted: the same text in every process
    while todo:
        n = todo.pop()
        for h in sorted(up.get(n, ())):
            facts.append(f"hyper({q(n)},{q(h)}).")
            if h not in seen:
                seen.add(h)
                todo.append(h)
    facts += [f"plural({q(p)},{q(s)})." for p, s in ontology.plurals.items()]
    for c, (pos, neg, measure) in ontology.comparatives.items():
        ms, sign = ("none", 1) if not measure else (measure.lstrip("-"), -1 if measure.startswith("-") else 1)
        facts.append(f"comparative({q(c)},{q(pos or '')},{q(neg or '')},{q(ms)},{sign}).")
    facts += [f"common_type({q(t)},{i})." for i, t in enumerate(ontology.common_types)]
    return facts


def encode_question(qid: str, steps: list[GQAStep], *, scope: int | None = None) -> list[str]:
    """Question facts for one structured program (every atom carries the question id);
    `scope`: scoped (`scope_fact`) for `answer_images`."""
    Q = q(qid) if scope is None else f"{scope},{q(qid)}"  # the first argument of every non-global fact
    facts = [f"question({Q}).", f"last({Q},{len(steps) - 1})."]
    for i, s in enumerate(steps):
        kind = step_kind(s)
        facts.append(f"step({Q},{i},{kind if ':' not in kind else q(kind)}).")
        facts += [f"dep({Q},{i},{p},{j})." for p, j in enumerate(s.inputs)]
        if s.unparsed is not None:
            continue
        if kind in ("select",) or s.is_relational:
            facts.append(f"arg_name({Q},{i},{q(s.name)}).")
        if s.is_relational:
            facts += [f"arg_rel({Q},{i},{q(r)})." for r in s.values]
            facts += [f"rel_answer({q(r)},{q(rel_answer(r))})." for r in s.values]
            facts.append(f"arg_dir({Q},{i},{q(s.direction) if s.direction == '_' else s.direction}).")
            facts += [f"same_relation({q(r)},{q(r[5:])})." for r in s.values if r.startswith("same ")]
        elif s.family == "query":
            facts.append(f"arg_type({Q},{i},{q(s.values[0] if s.values else 'name')}).")
        elif s.family in ("filter", "verify", "choose"):
            if s.type:
                facts.append(f"arg_type({Q},{i},{q(s.type)}).")
            if not s.is_comparative:
                facts += [f"arg_value({Q},{i},{q(v)})." for v in s.values]
            if s.negated:
                facts.append(f"negated({Q},{i}).")
        elif s.family in ("same", "different"):
            facts.append(f"arg_type({Q},{i},{q(s.type or 'name')}).")
    return facts


def theory_text(rules_dir: Path = RULES_DIR) -> str:
    """Every rules/gqa/*.lp file except example instances."""
    return load_theory(rules_dir, exclude=[p.name for p in Path(rules_dir).glob("example*.lp")])


def solve(program: str, *, consts: dict[str, int] | None = None,
          deadline: float | None = None) -> tuple[list[clingo.Symbol] | None, list[int], bool]:
    """Ground and solve `program`: the shown atoms of the best model found, its cost, and
    whether it is proven optimal. The search is core-guided (`--opt-strategy=usc`: with the
    default branch-and-bound an image with six unsure names took minutes; usc, 0.1 s).
    `deadline` (time.perf_counter() seconds) bounds the search, not the grounding: usc gets
    the first half of the time left; usc reports no model before its optimum, so if it found
    none, branch-and-bound (which finds models early and improves them) gets the rest. Then
    the best model so far, not proven; (None, [], False) when neither found one."""
    args = ["--opt-mode=opt", "--opt-strategy=usc"] + [f"-c{k}={v}" for k, v in (consts or {}).items()]
    log = LogCapture()
    ctl = make_control(args, log)
    ground(ctl, program, log)
    if deadline is None:
        res = solve_control(ctl)
        if not res.satisfiable:
            raise SolverError("the GQA theory has no model (it should always have one)", log.messages)
        return res.atoms, res.cost, True
    atoms, cost, proven = _solve_until(ctl, time.perf_counter() + max(0.0, deadline - time.perf_counter()) / 2)
    if atoms is None and not proven:
        ctl.configuration.solver.opt_strategy = "bb"
        atoms, cost, proven = _solve_until(ctl, deadline)
    if atoms is None and proven:
        raise SolverError("the GQA theory has no model (it should always have one)", log.messages)
    return atoms, cost, proven


def _solve_until(ctl: clingo.Control, until: float) -> tuple[list[clingo.Symbol] | None, list[int], bool]:
    """One asynchronous search of a grounded Control, cancelled at `until`: the last model's
    shown atoms and cost (None, [] without one) and whether the search ran to its end."""
    found: list = []

    def on_model(m) -> None:
        found.append((m.symbols(shown=True), list(m.cost)))

    with ctl.solve(on_model=on_model, async_=True) as handle:
        if not handle.wait(max(0.0, until - time.perf_counter())):
            handle.cancel()
        exhausted = handle.get().exhausted
    atoms, cost = found[-1] if found else (None, [])
    return atoms, cost, exhausted


class GQAReasoner:
    """Answers all questions about one image in one clingo call."""

    def __init__(self, config: GQAReasonerConfig | None = None):
        self.config = config or GQAReasonerConfig()
        self.ontology = self.config.ontology or default_ontology()
        self.theory = theory_text(self.config.rules_dir)
        self._scoped: dict[bool, list] = {}  # the theory scoped per image (`answer_images`), per trace flag
        self._names: dict[str, frozenset] = {}  # `_called`'s results
        self._up: dict[str, set] | None = None
        self._plural_of: dict[str, set] | None = None

    def _called(self, name) -> frozenset:
        """The names an object named `name` answers to (world.lp `is`): itself, its
        hypernyms (transitively) and their plurals."""
        got = self._names.get(name)
        if got is None:
            if self._up is None:
                self._up, self._plural_of = {}, {}
                for h, below in self.ontology.hypernyms.items():
                    for n in below:
                        self._up.setdefault(n, set()).add(h)
                for p, sg in self.ontology.plurals.items():
                    self._plural_of.setdefault(sg, set()).add(p)
            seen, todo = {name}, [name]
            while todo:
                for h in self._up.get(todo.pop(), ()):
                    if h not in seen:
                        seen.add(h)
                        todo.append(h)
            got = self._names[name] = frozenset(seen | {p for n in seen for p in self._plural_of.get(n, ())})
        return got

    def program_text(self, scene: SceneGraph, programs: dict[str, list[GQAStep]]) -> tuple[str, dict]:
        facts, unc = encode_scene(scene, self.ontology, self.config.weight_cap)
        names = {o.name for o in scene.objects} | {n for d in (scene.info.get("name_readings") or {}).values()
                                                   for n in d}
        facts += encode_ontology(self.ontology, names)
        for qid, steps in programs.items():
            facts += encode_question(qid, steps)
        return "\n".join(dict.fromkeys(facts)) + "\n" + self.theory, unc

    def answer_image(self, scene: SceneGraph, programs: dict[str, list[GQAStep]]) -> dict[str, GQAAnswer]:
        """{qid: GQAAnswer} for structured programs about `scene`. About an uncertain graph
        the search stops at `config.budget` x the number of questions (see `solve`)."""
        programs = {str(k): v for k, v in programs.items() if v}
        if not programs:
            return {}
        text, unc = self.program_text(scene, programs)
        consts = {"fail_weight": self.config.fail_weight}
        budget = self.config.budget
        deadline = None if budget is None or not unc else time.perf_counter() + budget * len(programs)
        symbols, _, proven = solve(text, consts=consts, deadline=deadline)
        if symbols is None:  # no reading found within the budget
            return {qid: GQAAnswer(qid, None, None, "budget", proven=False) for qid in programs}
        answers = self._read(_plain(symbols), programs, unc)
        for a in answers.values():
            a.proven = proven
        if self.config.top_k > 1 and unc and proven:
            bans: list[str] = []
            for _ in range(self.config.top_k - 1):
                bans += [f"ban({q(a.qid)},{q(t[0])})." for a in answers.values() for t in a.top[-1:]]
                symbols, _, proven = solve(text + "\n" + "\n".join(bans), consts=consts, deadline=deadline)
                if symbols is None or not proven:
                    break  # the list of alternatives ends where one is not proven within the budget
                more = self._read(_plain(symbols), programs, unc)
                for qid, a in answers.items():
                    b = more[qid]
                    if b.answer is not None and b.answer not in [t[0] for t in a.top]:
                        a.top.append((b.answer, b.cost))
        return answers

    def answer_images(self, batch: list[tuple[SceneGraph, dict[str, list[GQAStep]]]], *,
                      trace: bool = True) -> list[dict[str, GQAAnswer]]:
        """Several images with their questions; {qid: GQAAnswer} per image, the same as
        `answer_image` gives for each (`trace=False`: answers and failures only, no trace). Gold graphs (every object, attribute and relation
        certain) go into one ground+solve for the whole batch (the theory scoped per image,
        `scoped_theory`), which spreads clingo's cost per call over many images; uncertain
        graphs, or top_k > 1, are answered one image per call."""
        out: list[dict[str, GQAAnswer] | None] = [None] * len(batch)
        facts: list[str] = []
        names: set[str] = set()
        gold: dict[str, tuple[int, list[GQAStep]]] = {}
        for i, (scene, programs) in enumerate(batch):
            programs = {str(k): v for k, v in programs.items() if v}
            if not programs:
                out[i] = {}
                continue
            words = attribute_words(programs, self.ontology)
            scene_facts, unc = encode_scene(scene, self.ontology, self.config.weight_cap,
                                            relations=relation_predicates(programs), attributes=words,
                                            targets=(relation_targets(programs), self._called), scope=i,
                                            boxes=boxes_needed(programs, words))
            if unc or self.config.top_k > 1 or any(qid in gold for qid in programs):
                out[i] = self.answer_image(scene, programs)
                continue
            names.update(o.name for o in scene.objects)
            facts += scene_facts  # scoped already
            for qid, steps in programs.items():
                facts += encode_question(qid, steps, scope=i)
                gold[qid] = (i, steps)
        if gold:
            facts += encode_ontology(self.ontology, names)
            if trace not in self._scoped:
                self._scoped[trace] = scoped_theory(self.theory, trace=trace)
            ctl = make_control(["--opt-mode=opt", f"-cfail_weight={self.config.fail_weight}"])
            with clingo.ast.ProgramBuilder(ctl) as builder:
                for stm in self._scoped[trace]:
                    builder.add(stm)
            if self.config.fact_terms:
                ground_terms(ctl, facts)
            else:
                ground(ctl, "\n".join(dict.fromkeys(facts)) + "\n")
            res = solve_control(ctl)
            if not res.satisfiable:
                raise SolverError("the GQA theory has no model (it should always have one)", res.messages)
            per_image: dict[int, list] = {}
            for name, args in _plain(res.atoms):  # the scope dropped: the atoms `answer_image` reads
                per_image.setdefault(int(args[0]), []).append((name, args[1:]))
            programs_of: dict[int, dict] = {}
            for qid, (i, steps) in gold.items():
                programs_of.setdefault(i, {})[qid] = steps
            for i, progs in programs_of.items():
                out[i] = self._read(per_image.get(i, []), progs, {}, trace=trace)
        return out

    def _read(self, atoms, programs, unc, *, trace: bool = True) -> dict[str, GQAAnswer]:
        """Answers from the shown atoms as (name, [argument values]) pairs (`_plain`)."""
        per: dict[str, dict] = {qid: {"ans": None, "fail": [], "out": {}, "val": {}, "on": set()} for qid in programs}
        for name, a in atoms:
            rec = per.get(a[0])
            if rec is None:
                continue
            if name == "ans":
                rec["ans"] = a[1]
            elif name == "fail":
                rec["fail"].append(int(a[1]))
            elif name == "out":
                rec["out"].setdefault(int(a[1]), []).append(a[2])
            elif name == "val":
                rec["val"][int(a[1])] = a[2]
            elif name == "on":
                rec["on"].add(int(a[1]))
        out = {}
        for qid, rec in per.items():
            steps = programs[qid]
            steps_trace = []
            for i, st in enumerate(steps if trace else ()):
                t = {"step": i, "operation": st.operation, "argument": st.argument()}
                if i in rec["out"] or step_kind(st) in ("select", "relate", "filter"):
                    t["objects"] = sorted(rec["out"].get(i, []))
                if i in rec["val"]:
                    t["value"] = rec["val"][i]
                if i in rec["fail"]:
                    t["failed"] = True
                steps_trace.append(t)
            cost = sum(unc[k][0] for k in rec["on"]) + sum(w[1] for k, w in unc.items() if k not in rec["on"])
            first = min(rec["fail"]) if rec["fail"] else None
            out[qid] = GQAAnswer(qid, rec["ans"], first, None if first is None else steps[first].operation,
                                 steps_trace, [(rec["ans"], cost)] if rec["ans"] is not None else [], cost,
                                 [unc[k][2] for k in sorted(rec["on"])])
        return out


def _plain(symbols) -> list[tuple[str, list]]:
    """Shown atoms as (name, arguments): a string's text, anything else as written."""
    string = clingo.SymbolType.String
    return [(sym.name, [x.string if x.type == string else str(x) for x in sym.arguments]) for sym in symbols]


# ---- many gold images per clingo call ------------------------------------------------------
class _FactTerms:
    """Grounding context of `ground_terms`: `@facts(p)` is the list of p's facts."""

    def __init__(self, items: dict[str, list[str]]):
        self.items = items

    def facts(self, name: clingo.Symbol) -> list[clingo.Symbol]:
        got = self.items.get(name.name)
        return clingo.parse_term("f(" + ",".join(got) + ")").arguments if got else []


_TERM_RULES: dict[tuple[str, int], str] = {}  # (predicate, arity) -> its `@facts` rule


def ground_terms(ctl: clingo.Control, facts: list[str]) -> None:
    """Ground the base part with `facts` (fact statements `p(t1,...,tn).`, one atom each,
    every predicate of one arity) handed over as terms: one rule per predicate, `p(X1,...,Xn)
    :- p(X1,...,Xn) = @facts(p).`, whose `@facts` returns all of p's facts parsed as one term.
    clingo grounds each fact statement as a rule of its own (microseconds each) and parses
    their text; this takes a fraction of that (the CLEVR reasoner's gold path does the same,
    `vqa.reason.asp.GOLD_RULES`). A SolverError carries clingo's message when grounding fails."""
    items: dict[str, list[str]] = {}
    rules = []
    for f in dict.fromkeys(facts):
        i = f.find("(")
        if i < 0:  # an atom without arguments: as it is
            rules.append(f)
        else:
            items.setdefault(f[:i], []).append(f[:-1])
    for name, got in items.items():
        key = (name, len(clingo.parse_term(got[0]).arguments))
        rule = _TERM_RULES.get(key)
        if rule is None:
            xs = ",".join(f"X{i}" for i in range(key[1]))
            rule = _TERM_RULES[key] = f"{name}({xs}) :- {name}({xs}) = @facts({name})."
        rules.append(rule)
    try:
        ctl.add("base", [], "\n".join(rules))
        ctl.ground([("base", [])], context=_FactTerms(items))
    except RuntimeError as e:
        raise SolverError(str(e) or "grounding failed") from None


# Predicates that are the same in every image: the ontology's and the theory's constants.
GLOBAL_PREDICATES = frozenset({"hyper", "plural", "comparative", "common_type", "same_relation", "rel_answer",
                               "kind", "valued", "relational", "testing"})
SCOPE_VARIABLE = "Scope__"  # the image's index in a call, added to every other atom of the theory
_FACT_HEAD = re.compile(r"([a-z_]\w*)\(")


# The world of a question (world.lp): every atom carries the question, so that each question
# gets its own reading of an uncertain scene; on a gold graph every question's world is the
# same, and the batched call grounds it once per image (the question argument dropped).
WORLD_PREDICATES = frozenset({"obj", "has", "r", "is", "nm"})
UNCERTAIN_PREDICATES = frozenset({"unc", "unc_object", "unc_attr", "unc_rel", "unc_name", "group"})  # input only
# A question's reading of an object's name (world.lp `nm`) is, on a gold graph, its one name:
# the batched theory reads `name` there and leaves out the rule that copies it.
GOLD_RENAMED = {"nm": "name"}


class _Scoper(clingo.ast.Transformer):
    """For a batch of gold graphs: every atom whose predicate is not in GLOBAL_PREDICATES gets
    the image's index as a new first argument, the same variable throughout a rule, so that
    the rules of one call join only facts of one image (images never meet); the atoms of a
    question's world lose their question argument (one world per image), and those of
    GOLD_RENAMED read the gold graph's own predicate. Each image's answers
    are those of a call of its own (a differential test checks it)."""

    def visit_SymbolicAtom(self, node):
        sym = node.symbol
        if sym.ast_type == clingo.ast.ASTType.Function and sym.name not in GLOBAL_PREDICATES:
            args = list(sym.arguments[1:] if sym.name in WORLD_PREDICATES else sym.arguments)
            node = node.update(symbol=sym.update(name=GOLD_RENAMED.get(sym.name, sym.name),
                                                 arguments=[clingo.ast.Variable(sym.location, SCOPE_VARIABLE), *args]))
        return node

    def visit_Minimize(self, node):  # the scope among a weak constraint's terms (distinct tuples per image)
        node = node.update(**self.visit_children(node))
        return node.update(terms=[clingo.ast.Variable(node.location, SCOPE_VARIABLE), *node.terms])

    def visit_ShowSignature(self, node):
        if node.name in GLOBAL_PREDICATES:
            return node
        return node.update(arity=node.arity + 1 - (node.name in WORLD_PREDICATES))

    def visit_Defined(self, node):
        return self.visit_ShowSignature(node)


def _positive_names(body) -> set[str]:
    """Predicate names of a body's positive atoms (top-level literals only: an aggregate or a
    condition may hold with no atoms)."""
    names = set()
    for lit in body:
        if (lit.ast_type == clingo.ast.ASTType.Literal and lit.sign == clingo.ast.Sign.NoSign
                and lit.atom.ast_type == clingo.ast.ASTType.SymbolicAtom
                and lit.atom.symbol.ast_type == clingo.ast.ASTType.Function):
            names.add(lit.atom.symbol.name)
    return names


def _head_name(stm) -> str | None:
    """The predicate of a rule's head atom (None for other heads)."""
    head = getattr(stm, "head", None)
    atom = getattr(head, "atom", None) if head is not None and head.ast_type == clingo.ast.ASTType.Literal else None
    if atom is None or atom.ast_type != clingo.ast.ASTType.SymbolicAtom:
        return None
    sym = atom.symbol
    return sym.name if sym.ast_type == clingo.ast.ASTType.Function else None


def scoped_theory(theory: str, *, trace: bool = True) -> list:
    """The theory's statements (parsed) for a batch of gold graphs (see `_Scoper`); the rules
    of uncertain facts (a positive body atom of an input predicate that gold graphs never
    state) are left out. `trace=False`: only answers and failures are shown."""
    out: list = []
    scoper = _Scoper()

    def keep(stm):
        body = getattr(stm, "body", None)
        if body is not None and _positive_names(body) & UNCERTAIN_PREDICATES:
            return
        head = _head_name(stm)
        if body is not None and head in GOLD_RENAMED and GOLD_RENAMED[head] in _positive_names(body):
            return  # (the copy rule: after renaming, the head is one of its own body atoms)
        if not trace and stm.ast_type == clingo.ast.ASTType.ShowSignature and stm.name not in ("ans", "fail"):
            return
        out.append(scoper(stm))

    clingo.ast.parse_string(theory, keep)
    return out


def scope_fact(fact: str, scope: int) -> str:
    """`name(args).` -> `name(scope,args).` unless `name` is a global predicate."""
    name, paren, rest = fact.partition("(")
    if not paren or name in GLOBAL_PREDICATES or not _FACT_HEAD.match(fact):
        return fact
    return f"{name}({scope},{rest}"
