"""ASP reasoner for CLEVR: all questions about one scene in one clingo ground+solve.

    reasoner = ASPReasoner()                                  # theory: rules/clevr/*.lp
    answers = reasoner.answer_batch(scene, [program, ...])    # one ASPAnswer per program
    answers[0].answer, answers[0].error, answers[0].trace, answers[0].top

Semantics (the same as `vqa.executor.execute` on gold scenes, checked by differential
tests): a question fails at its first erroneous step with the executor's message, and
one question's failure never affects another question of the batch.

Speed: each call gets only the theory files and facts it needs (the fast path of
`vqa.reason.asp_encode`, described in rules/README.md): programs that pass
`asp_encode.is_checked` skip the theory's structural checks (`checks.lp`), gold scenes
are written as their one reading (no `scene.lp`, `uncertain.lp`, no optimisation), the
checked questions about a gold scene share the steps they compute alike, and the step
values (`trace.lp`) are shown only when they are needed. A call whose scenes are all gold
and whose programs are all checked (`asp_encode.encode_gold`) hands its facts to the
grounder as terms (`GOLD_FACTS`), and without traces shows only the answers
(`rules/clevr/shared.lp`); see rules/README.md, "The fast path".

Uncertain scenes (any object score, attribute distribution or relation probability
below 1): every question reads its own copy of the scene (its "reading", chosen by
choice rules in `rules/clevr/uncertain.lp`, which is added to a call only when one of
its scenes has an uncertain fact), and the optimisation has two levels:

1. (priority 2) the question succeeds: a reading in which every step can be carried out
   is preferred to any reading in which it fails;
2. (priority 1) the reading is as probable as possible: each uncertain choice costs
   round(-1000 ln p), capped.

So the answer is that of the most probable *consistent* reading: when the most likely
colour of an object makes `unique` fail and the second most likely one makes the
question answerable, the question is answered under the second colour. A question
fails only when no reading lets it succeed. Because the readings of different questions
are separate copies and the costs add up, the joint optimum is the per-question optimum
for every question at once.

Why copies: with one shared reading, a question that fails under the most likely
reading would pull the shared choice towards a reading in which it succeeds, changing the
answers of every other question about that scene. Gold scenes have no choices, so all
their questions share one reading (and one grounding of the scene).

Search and budget (`ASPConfig.strategy`, `budget`, rules/README.md "Bounded, anytime
search"): by default ("mode-first") all questions about an uncertain scene run first on
its most probable reading (one gold call; a question that succeeds there has its best
reading, cost 0); each question that fails there is optimised alone, over the scene
restricted to the choices that fit under growing cost bounds (assumptions on one grounding)
and then over the whole scene. Every search stops at `budget` seconds per question: the
answer is then that of the best reading found so far with `proven=False`. Costs are written
relative to each choice's cheapest option (`relative_costs`), which usc proves far faster.
"joint" is the earlier search (`uncertain_chunk` questions per call over the whole scene).

Top answers: after the optimal model, the reasoner solves again on the same grounding
with each answer found so far blocked (`block(Q, V)` externals set true; a blocked
answer counts as a failure), so each round gives every question its next-best answer
and the cost of the best reading that yields it, up to `top_k` answers. `top` lists
(answer, probability) with probability = exp(-cost/1000) of that reading, normalised
over the returned answers (max-product scores, not marginals). Gold scenes take one
round and have `top == [(answer, 1.0)]`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import clingo
from clingo import ast

from ..executor import TraceStep
from ..ontology import CLEVR_FUNCTIONS, normalise_answer
from ..program import Program
from ..scene import SceneGraph
from .asp_encode import DEFAULT_COST_CAP, encode, encode_gold
from .readings import fixed_choices, mode_reading, options, restrict
from .relevance import Relevance
from .solver import LogCapture, SolverError, load_theory, make_control, term

DEFAULT_THEORY = Path(__file__).resolve().parents[2] / "rules" / "clevr"
UNCERTAIN_FILE = "uncertain.lp"  # added to a call only when one of its scenes is uncertain
# Files of the theory a call needs only for some inputs (the rest is always added):
# programs the encoder could not check need the checks; uncertain scenes need readings
# copied from scene facts, the guesses and the optimisation.
CHECK_FILES = ("catalogue.lp", "checks.lp", "trace.lp")
UNCERTAIN_FILES = ("catalogue.lp", "scene.lp", UNCERTAIN_FILE)
TRACE_FILES = ("trace.lp",)  # the step values: for traces and for the messages of checked steps
SHARED_FILES = ("shared.lp",)  # the answers of shared programs without the step values (explain=False)
# How the reasoner hands the facts of `encode_gold` to the grounder: one rule per
# predicate whose instances are the terms that `_Facts.facts` returns (the grounder
# instantiates a rule per fact statement, which costs several microseconds each; this
# takes a few hundred nanoseconds per fact).
# (a call adds the rules of the predicates it has facts of)
GOLD_RULES = {name: f"{name}({args}) :- {name}({args}) = @facts({name})." for name, args in (
    ("run", "P, I, F, V, In"), ("apply", "P, I, F, V, J, W"), ("world", "Q, W"), ("in", "W, O"), ("has", "W, O, C, V"),
    ("novalue", "W, O, C"), ("holds", "W, A, R, B"), ("level", "W, O, R, L, F"), ("final", "P, I"))}
GOLD_FACTS = "\n".join(GOLD_RULES.values())
OPT_ARGUMENTS = ("--opt-strategy=usc",)  # for calls with uncertain scenes
# for the restrictions solved one after the other on one grounding (`_levels`): each solve
# starts afresh (heuristics and lemmas learnt under one restriction's assumptions misled the
# next: a whole-scene solve after two restricted ones took 4.4 s instead of 0.18 s)
FORGET_ARGUMENTS = ("--forget-on-step=varScores,signs,lemmaScores,lemmas",)
DEFAULT_BUDGET = 2.0  # seconds of search per question about an uncertain scene (ASPConfig.budget)
DEFAULT_BOUNDS = (2000, 5000)  # cost bounds of the mode-first search before the whole scene
COST_SCALE = 1000.0  # a choice's cost is round(-COST_SCALE ln p): a reading of cost c has p ratio exp(-c / COST_SCALE)
# the least probability, relative to the scene's most probable reading, of a reading an answer
# may rest on (ASPConfig.min_reading): a question that can be carried out only on a less probable
# reading is refused, its presupposition failing on the most probable one (rules/README.md,
# "Honest answers"; chosen on generated ill-posed and well-posed questions)
DEFAULT_MIN_READING = 0.05
STRATEGIES = ("mode-first", "joint")
# the facts (of `encode`) whose function argument the rule pruning reads: predicate ->
# (arity, position of the function term): run(Q, I, F, V, In), step(Q, I, F)
FUNCTION_ARGUMENTS = {"run": (5, 2), "step": (3, 2)}

_KIND_WORDS = {"objects": "objects", "object": "object", "integer": "an integer", "value": "an attribute value"}


@dataclass
class ASPAnswer:
    """One question's result.

    `trace[i]` is a `vqa.executor.TraceStep` for each step that was carried out (object
    sets as tuples of object ids in scene order, one object as its id, integers, bools,
    attribute values); the failing step, if any, carries the error. `top` is
    [(answer, probability)] best first; `cost` is -1000 ln of the chosen reading's
    probability relative to the most probable reading (0 on gold scenes).
    """

    answer: str | None
    error: str | None = None
    error_step: int | None = None
    trace: list[TraceStep] = field(default_factory=list)
    top: list[tuple[str, float]] = field(default_factory=list)
    cost: int | None = None
    # whether the reading is proven to be the best one (False: the search stopped at its
    # budget; the answer is that of the best reading found so far, or the failure on the
    # most probable reading when none was found)
    proven: bool = True
    # refused: the question can be carried out only on a reading less probable than
    # `ASPConfig.min_reading` times the scene's best; `error`, `error_step` and `trace` are
    # then its failure on the most probable reading, `cost` that of the cheapest reading on
    # which it succeeds
    presupposition: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reading_probability(self) -> float | None:
        """The probability of the reading the answer rests on, relative to the scene's most
        probable reading (exp(-cost / 1000); 1.0 on gold scenes; None when unknown)."""
        return None if self.cost is None else math.exp(-self.cost / COST_SCALE)

    def to_dict(self) -> dict:
        return {"answer": self.answer, "error": self.error, "error_step": self.error_step,
                "trace": [t.to_dict() for t in self.trace], "top": [list(t) for t in self.top], "cost": self.cost,
                "proven": self.proven, "presupposition": self.presupposition,
                "reading_probability": self.reading_probability}


@dataclass
class ASPConfig:
    theory_dir: str | Path = DEFAULT_THEORY
    top_k: int = 3  # answers per question on uncertain scenes
    cost_cap: int = DEFAULT_COST_CAP
    explain: bool = True  # collect per-step traces
    # attribute values at or below this probability are left out of uncertain scenes (a
    # reading that needs one costs over 4,600 per value): keeps predicted scenes fast
    min_probability: float = 0.01
    uncertain_chunk: int = 8  # questions about an uncertain scene per clingo call
    # objectness calibration, as the NSM's (`NSMConfig.score_threshold`): an object's score
    # s < 1 (the scene parser's heat-map peak, not a probability: a real object can score 0.35)
    # is read as the probability sigmoid((s - threshold) / temperature) that it exists; None:
    # the score is that probability already. 0.4 / 0.05: chosen on the val split (seed 2) with
    # the shipped scene parser (ASP VQA accuracy with predicted scenes 97.43% raw, 98.30%).
    score_threshold: float | None = 0.4
    score_temperature: float = 0.05
    # a scene graph whose parser measured where its objectness means "as likely real as not"
    # (info["objectness_midpoint"], `SceneParserConfig.objectness_midpoint`) is read with that
    # threshold instead of `score_threshold` (the same temperature); False: always score_threshold
    scene_calibration: bool = True
    alternatives_conflicts: int = 1_000  # solve limit of each round that looks for the next-best answers
    # seconds of search per question about an uncertain scene (wall clock, grounding
    # included; None: no limit). When the best reading is not proven within it, the answer
    # is that of the best reading found so far, marked `proven=False`.
    budget: float | None = DEFAULT_BUDGET
    # how questions about uncertain scenes are searched: "mode-first" (each question on the
    # scene's most probable reading first, then a search of one question per call over the
    # choices that fit under growing cost bounds, `bounds`) or "joint" (the earlier search:
    # `uncertain_chunk` questions per call over the whole scene), see rules/README.md
    strategy: str = "mode-first"
    bounds: tuple[int, ...] = DEFAULT_BOUNDS
    # the next-best answers (top_k > 1) are looked for among the readings whose choices each
    # cost at most this much (6908: p ratio 1/1000) above their cheapest option, plus the
    # cost of the answer's reading
    alternatives_bound: int = 6908
    # costs above each choice's cheapest option (the most probable reading costs 0), which
    # spares the core-guided optimisation a core per choice; False: round(-1000 ln p) as is
    relative_costs: bool = True
    # a question about an uncertain scene that can be carried out only on a reading less
    # probable than this times the scene's most probable reading gets no answer: its
    # presupposition fails on the most probable reading (as on a gold scene). None or 0:
    # every question is answered on the best reading in which it succeeds, however improbable.
    min_reading: float | None = DEFAULT_MIN_READING

    @property
    def max_cost(self) -> float | None:
        """The largest reading cost an answer may rest on (from `min_reading`)."""
        if not self.min_reading:
            return None
        return -COST_SCALE * math.log(self.min_reading)


class ASPReasoner:
    """CLEVR programs over scene graphs with clingo; see the module docstring.

    `answer_batch(scene, programs)` solves all questions about one scene in one call;
    `answer_many([(scene, programs), ...])` puts several scenes into one call (facts of
    different scenes never meet: every object and question names its scene), which
    spreads clingo's fixed cost per call (about 3 ms for this theory) over more questions.
    """

    def __init__(self, theory_dir: str | Path | None = None, *, top_k: int = 3, cost_cap: int = DEFAULT_COST_CAP,
                 explain: bool = True, min_probability: float = ASPConfig.min_probability,
                 score_threshold: float | None = ASPConfig.score_threshold,
                 score_temperature: float = ASPConfig.score_temperature, budget: float | None = DEFAULT_BUDGET,
                 strategy: str = "mode-first", bounds: tuple[int, ...] = DEFAULT_BOUNDS, relative_costs: bool = True,
                 min_reading: float | None = DEFAULT_MIN_READING,
                 scene_calibration: bool = ASPConfig.scene_calibration):
        if not score_temperature > 0:
            raise ValueError(f"score_temperature must be positive, got {score_temperature}")
        if budget is not None and not budget > 0:
            raise ValueError(f"budget must be positive seconds (or None: no limit), got {budget}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
        if min_reading is not None and not 0 <= min_reading <= 1:
            raise ValueError(f"min_reading must be a probability ratio in [0, 1] (0 or None: no limit), got {min_reading}")
        self.config = ASPConfig(theory_dir or DEFAULT_THEORY, top_k, cost_cap, explain, min_probability,
                                score_threshold=score_threshold, score_temperature=score_temperature,
                                budget=budget, strategy=strategy, bounds=tuple(sorted(bounds)),
                                relative_costs=relative_costs, min_reading=min_reading,
                                scene_calibration=scene_calibration)
        # the complete theory (checked to exist), then the statements of each file
        self.theory = load_theory(self.config.theory_dir, exclude=("example_facts.lp",))
        self._files: dict[str, list] = {}
        for path in sorted(Path(self.config.theory_dir).glob("*.lp")):
            if path.name.startswith("example"):
                continue
            log, out = LogCapture(), []
            try:
                ast.parse_string(path.read_text(), out.append, logger=log)
            except RuntimeError:
                raise SolverError(f"theory {self.config.theory_dir} does not parse", log.messages) from None
            self._files[path.name] = out
        self._core = [n for n in self._files if n not in CHECK_FILES + UNCERTAIN_FILES + TRACE_FILES + SHARED_FILES]
        self._relevance: dict[tuple, Relevance] = {}  # per set of files (`_statements`' flags)
        self._gold_rules: dict[str, list] = {}
        for name, text in GOLD_RULES.items():
            ast.parse_string(text, (out := []).append)
            self._gold_rules[name] = out

    def _relevant(self, checks: bool, uncertain: bool, trace: bool, gold: bool) -> Relevance:
        """The `Relevance` of the statements `_statements` gives for these flags (made once):
        only the rules that can fire on a call's facts are grounded (clingo's grounder pays
        for every rule of a program, with instances or not)."""
        key = (checks, uncertain, trace, gold)
        rel = self._relevance.get(key)
        if rel is None:
            rel = self._relevance[key] = Relevance(self._statements(checks, uncertain, trace, gold=gold))
        return rel

    def _statements(self, checks: bool, uncertain: bool, trace: bool = True, *, gold: bool = False) -> list:
        """The parsed statements a call needs (the always-needed files, plus the checks,
        the uncertain-scene files and the trace output when asked for), each file once.
        `gold`: a call of `encode_gold` facts (the answers of the shared programs when
        there is no trace)."""
        names = list(self._core)
        for wanted, group in ((checks, CHECK_FILES), (uncertain, UNCERTAIN_FILES), (trace, TRACE_FILES),
                              (gold and not trace, SHARED_FILES)):
            if wanted:
                names += [n for n in group if n in self._files and n not in names]
        return [stm for n in names for stm in self._files[n]]

    # ---- public API -------------------------------------------------------
    def calibrated(self, scene: SceneGraph) -> SceneGraph:
        """`scene`, or a copy whose object scores below 1 are existence probabilities
        (`ASPConfig.score_threshold`, or the scene's declared `objectness_midpoint`, see
        `ASPConfig.scene_calibration`); the objects themselves are not changed."""
        t, temp = self.config.score_threshold, self.config.score_temperature
        declared = (scene.info or {}).get("objectness_midpoint")
        if t is not None and declared is not None and self.config.scene_calibration:
            t = float(declared)
        if t is None or all(o.score >= 1.0 for o in scene.objects):
            return scene

        def prob(s: float) -> float:
            z = (s - t) / temp
            return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

        objects = [o if o.score >= 1.0 else dataclasses.replace(o, score=prob(o.score)) for o in scene.objects]
        return dataclasses.replace(scene, objects=objects)

    def answer(self, scene: SceneGraph, program: Program) -> ASPAnswer:
        """One question (a batch of one)."""
        return self.answer_batch(scene, [program])[0]

    def answer_batch(self, scene: SceneGraph, programs: list[Program]) -> list[ASPAnswer]:
        """All `programs` about `scene` in one ground+solve (plus top-answer rounds on
        uncertain scenes). Returns one ASPAnswer per program, in order."""
        return self.answer_many([(scene, programs)])[0]

    def answer_many(self, batch: list[tuple[SceneGraph, list[Program]]]) -> list[list[ASPAnswer]]:
        """Several scenes with their questions; one list of answers per scene. Gold scenes
        go into one ground+solve. Questions about uncertain scenes (`ASPConfig.strategy`):
        "mode-first" answers them all on the scene's most probable reading in one gold call,
        and searches, one question per call under `budget`, only for those that fail there
        (`_search`); "joint" solves them in calls of at most `uncertain_chunk` questions over
        the whole scene (each question grounds its own copy of the scene, and the
        optimisation grows faster than linearly with the copies in one call)."""
        batch = [(self.calibrated(scene), programs) for scene, programs in batch]
        gold = encode_gold(batch, min_probability=self.config.min_probability)
        if gold is not None:  # every scene is gold (for the reasoner) and every program checked
            return self._answer_gold(batch, *gold, traced=self.config.explain)
        k = self.config.uncertain_chunk
        uncertain = [i for i, (scene, ps) in enumerate(batch) if ps and not scene.is_gold]
        if not uncertain:
            return self._answer_call(batch)
        out: list[list[ASPAnswer]] = [[] for _ in batch]
        skip = set(uncertain)
        gold = [i for i in range(len(batch)) if i not in skip]
        for i, answers in zip(gold, self._answer_call([batch[i] for i in gold]) if gold else []):
            out[i] = answers
        budget = self.config.budget
        for i in uncertain:
            scene, ps = batch[i]
            if self.config.strategy == "mode-first":
                out[i] = self._answer_uncertain(scene, ps)
                continue
            for s in range(0, len(ps), k):
                chunk = ps[s:s + k]
                deadline = None if budget is None else time.perf_counter() + budget * len(chunk)
                answers = self._answer_call([(scene, chunk)], deadline=deadline)
                out[i] += answers[0] if answers is not None else [self._unfound() for _ in chunk]
            dear = [j for j, a in enumerate(out[i]) if self._too_improbable(a)]
            if dear:  # their failures on the most probable reading
                mode = self._answer_call([(mode_reading(scene, self.config.min_probability), [ps[j] for j in dear])],
                                         retrace=False)[0]
                for j, failure in zip(dear, mode):
                    out[i][j] = self._refused(failure, out[i][j])
        return out

    def _too_improbable(self, a: ASPAnswer) -> bool:
        """Whether answer `a` (about an uncertain scene) rests on a reading too improbable
        against the scene's best (`ASPConfig.min_reading`)."""
        limit = self.config.max_cost
        return limit is not None and a.ok and a.cost is not None and a.cost > limit

    def _refused(self, failure: ASPAnswer, found: ASPAnswer) -> ASPAnswer:
        """No answer: the question presupposes what the most probable reading does not hold
        (`failure`, its failure there); the cheapest reading on which it succeeds (`found`)
        is too improbable. With the failure's step, message and trace, and `found`'s cost."""
        if failure.ok:  # cannot happen (a question that succeeds on the mode costs 0)
            return found
        step = failure.error_step
        ratio = math.exp(found.cost / COST_SCALE) if found.cost is not None else float("inf")
        where = f"step {step}: " if step is not None else ""
        message = (f"the question presupposes what the scene's most probable reading does not hold ({where}"
                   f"{failure.error}); carrying it out needs a reading {ratio:.3g} times less probable "
                   f"(limit {1 / self.config.min_reading:.3g})")
        return ASPAnswer(None, message, step, list(failure.trace), top=[], cost=found.cost, proven=found.proven,
                         presupposition=True)

    def _unfound(self, failure: ASPAnswer | None = None) -> ASPAnswer:
        """The answer of a question whose search ran out of budget before finding any
        reading in which it succeeds: the failure on the most probable reading when known."""
        if failure is not None:
            return dataclasses.replace(failure, proven=False, top=[])
        return ASPAnswer(None, f"no reading found within the budget of {self.config.budget} s", proven=False)

    # ---- mode-first search -------------------------------------------------------------
    def _answer_uncertain(self, scene: SceneGraph, programs: list[Program]) -> list[ASPAnswer]:
        """The questions about one uncertain (calibrated) scene, mode first: all of them on
        the most probable reading in one gold call (a question that succeeds there has its
        best reading: nothing is cheaper, cost 0, proven), then `_search` for each of the
        others, then the next-best answers (`top_k`)."""
        mp = self.config.min_probability
        first = self._answer_call([(mode_reading(scene, mp), programs)], retrace=False)[0]
        out = []
        for program, a in zip(programs, first):
            start = time.perf_counter()
            deadline = None if self.config.budget is None else start + self.config.budget
            if a.ok:
                a.cost, a.top, a.proven = 0, [(a.answer, 0)], True
            else:
                failure = a
                a = self._search(scene, program, a, deadline)
                if self._too_improbable(a):
                    out.append(self._refused(failure, a))
                    continue
            if self.config.top_k > 1 and a.ok:
                a.top += self._alternatives(scene, program, a.answer, a.cost or 0, deadline)
            a.top = _normalise(a.top)
            out.append(a)
        return out

    def _search(self, scene: SceneGraph, program: Program, failure: ASPAnswer, deadline: float | None) -> ASPAnswer:
        """The best reading of `scene` in which `program` succeeds (it fails on the most
        probable reading, with `failure`): optimisations of this one question over the scene
        restricted to the choices whose extra cost fits under each bound of `bounds` in turn,
        then over the whole scene, all on one grounding of the whole scene (a restriction is
        a set of assumptions: `readings.fixed_choices`). A reading found at cost c <= bound
        is the best of the whole scene (every reading outside the restriction costs more than
        the bound); one found at c > bound makes c the next bound. Stops at `deadline`: then
        the best reading found so far, not proven (or the failure, when none was found)."""
        probe = self._levels(scene, program, failure, deadline)
        answers = self._answer_call([(scene, [program])], deadline=deadline, alternatives=False, probe=probe)
        return answers[0][0]

    def _levels(self, scene: SceneGraph, program: Program, failure: ASPAnswer, deadline: float | None):
        """`_search`'s probe (see `_answer_call`): yields the assumptions of each restriction,
        receives (answers, proven), returns the answer."""
        mp, cap = self.config.min_probability, self.config.cost_cap
        asked = {st.args[0] for st in program.steps if st.op == "relate" and st.args}
        full = options(scene, mp, asked)
        searched = 0  # the options of the last restriction searched to the end (0: the most probable reading)
        best: ASPAnswer | None = None  # the best reading found, the best of the restriction `searched`
        levels = list(self.config.bounds)
        while True:
            bound = levels.pop(0) if levels else None
            if best is not None and (bound is None or best.cost < bound):
                bound = best.cost  # nothing cheaper needs a choice dearer than that
            n = full if bound is None else options(restrict(scene, bound, min_probability=mp, cap=cap), mp, asked)
            if n == full:
                bound = None
            if n == searched:  # the restriction searched already (0: the most probable reading)
                if best is not None and (bound is None or best.cost <= bound):
                    best.proven = True  # every reading outside it costs more than the bound
                    return best
                if bound is None:  # that was the whole scene: no reading lets the question succeed
                    return dataclasses.replace(failure, proven=True)
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                break
            got = yield ([] if bound is None else
                         _assumptions(fixed_choices(scene, bound, min_probability=mp, cap=cap), asked))
            if got is None:
                break  # no model within the budget
            (a,), proven = got
            if not proven:
                if a.ok and (best is None or a.cost < best.cost):
                    best = a
                break
            searched = n
            if a.ok:
                best = a
                if bound is None or a.cost <= bound:
                    return a  # the best reading of the whole scene
            elif bound is None:
                return a  # no reading lets the question succeed
        if best is None:
            return self._unfound(failure)
        best.proven = False
        return best

    def _alternatives(self, scene: SceneGraph, program: Program, answer: str, cost: int, deadline: float | None
                      ) -> list[tuple[str, int]]:
        """The next-best answers of one question (up to `top_k` - 1), with the costs of their
        best readings: rounds of optimisation over the scene restricted to `cost` (the
        answer's) + `alternatives_bound`, the answers found so far blocked; a round stops at
        `alternatives_conflicts` conflicts or at `deadline`, and a round that does not prove
        its optimum ends the list."""
        mp, cap = self.config.min_probability, self.config.cost_cap
        sub = restrict(scene, cost + self.config.alternatives_bound, min_probability=mp, cap=cap)
        if options(sub, mp) == 0:
            return []
        result = ASPAnswer(answer, top=[(answer, 0)])
        self._answer_call([(sub, [program])], deadline=deadline, alternatives=False, known=[result])
        return result.top[1:]

    def _answer_call(self, batch: list[tuple[SceneGraph, list[Program]]], *, deadline: float | None = None,
                     alternatives: bool = True, retrace: bool = True,
                     known: list[ASPAnswer] | None = None, probe=None) -> list[list[ASPAnswer]] | None:
        """One ground+solve (plus the top-answer rounds, unless `alternatives` is False) for
        the whole batch. `deadline` (time.perf_counter() seconds) stops the optimisation of a
        call with uncertain scenes: the answers are then those of the best model found, with
        `proven=False`, and None when no model was found. `retrace`: see `_answer_gold`.
        `known`: the answers of the batch's questions (uncertain scenes) are these: no first
        solve, only the rounds for the next-best answers, appended to their `top`.
        `probe`: a generator that yields the assumptions of each solve on this grounding and
        is sent (answers, proven) of each (None when the solve found no model); its return
        value, one ASPAnswer, is the call's answer."""
        programs = [p for _, ps in batch for p in ps]
        if not programs:
            return [[] for _ in batch]
        gold = encode_gold(batch, min_probability=self.config.min_probability)
        if gold is not None:
            return self._answer_gold(batch, *gold, traced=self.config.explain, retrace=retrace)
        encodings, facts = encode(batch, cap=self.config.cost_cap, fast=True,
                                  min_probability=self.config.min_probability, relative=self.config.relative_costs)
        ids = [i for enc in encodings for i in enc.ids]
        uncertain = any(enc.uncertain for enc in encodings)
        # core-guided optimisation: the costs are a sum of independent per-question terms,
        # which branch-and-bound improves one model at a time (hundreds of models for a
        # few questions about a predicted scene) while usc proves the optimum directly
        ctl = make_control((OPT_ARGUMENTS + (FORGET_ARGUMENTS if probe is not None else ())) if uncertain else ())
        checks = any(enc.unchecked for enc in encodings)
        shared = {q: (enc.shared_id, steps) for enc in encodings for q, steps in enc.shared.items()}
        values = self.config.explain or checks or bool(shared)  # step values in the model (trace.lp)
        relevance = self._relevant(checks, uncertain, values, False)
        statements = relevance.statements(relevance.text_shapes(facts, FUNCTION_ARGUMENTS))
        with ast.ProgramBuilder(ctl) as builder:
            for stm in statements:
                builder.add(stm)
        ctl.add("base", [], facts)
        ctl.ground([("base", [])])
        # per question: the mode cost of its scene (None for gold scenes)
        modes = [enc.mode_cost if enc.uncertain else None for enc, (_, ps) in zip(encodings, batch) for _ in ps]
        if known is not None:
            if self.config.top_k > 1:
                self._more_answers(ctl, known, modes, deadline)
            return None

        def results_of(atoms: str, proven: bool) -> list[ASPAnswer]:
            results = read_answers(programs, atoms, ids, explain=self.config.explain, values=values, shared=shared)
            costs = _world_costs(atoms)
            for q, r in enumerate(results):
                r.cost = 0 if modes[q] is None else costs.get(q, 0) - modes[q]
                r.proven = proven
                if r.answer is not None:
                    r.top = [(r.answer, r.cost)]
            return results

        if probe is not None:  # solves under the assumptions the probe asks for, until it returns
            try:
                assumptions = next(probe)
                while True:
                    atoms, proven = self._solve(ctl, assumptions, deadline=deadline)
                    assumptions = probe.send(None if atoms is None else (results_of(atoms, proven), proven))
            except StopIteration as stop:
                return [[stop.value]]
        atoms, proven = self._solve(ctl, [], deadline=deadline if uncertain else None)
        if atoms is None:
            return None
        # (a call without uncertain scenes does not optimise: its one model is the answer)
        results = results_of(atoms, proven or not uncertain)
        if alternatives and proven and self.config.top_k > 1 and any(m is not None for m in modes):
            self._more_answers(ctl, results, modes, deadline)
        if alternatives:
            for r in results:
                r.top = _normalise(r.top)
        out, k = [], 0
        for _, ps in batch:
            out.append(results[k:k + len(ps)])
            k += len(ps)
        return out

    def _answer_gold(self, batch, encodings, terms, shapes, *, traced: bool, retrace: bool = True
                     ) -> list[list[ASPAnswer]]:
        """One ground+solve of a batch of gold scenes and checked programs (`encode_gold`).
        Without `traced`, the model holds only the answers (rules/clevr/shared.lp) and the
        failed questions get their traces from a second call of their own (unless not
        `retrace`: then they have none)."""
        programs = [p for _, ps in batch for p in ps]
        if not programs:
            return [[] for _ in batch]
        ids = [i for enc in encodings for i in enc.ids]
        shared = {q: (enc.shared_id, steps) for enc in encodings for q, steps in enc.shared.items()}
        relevance = self._relevant(False, False, traced, True)
        ctl = make_control(())
        with ast.ProgramBuilder(ctl) as builder:
            # only the rules that can fire on these facts (the grounder's cost per rule
            # is paid even by a rule without instances)
            for stm in relevance.statements(shapes):
                builder.add(stm)
            for name, items in terms.items():
                if items:
                    for stm in self._gold_rules[name]:
                        builder.add(stm)
        ctl.ground([("base", [])], context=_Facts(terms))
        atoms, _ = self._solve(ctl, [])
        del ctl
        results = read_answers(programs, atoms, ids, explain=self.config.explain, values=traced, shared=shared)
        for r in results:
            r.cost = 0
            r.top = [] if r.answer is None else [(r.answer, 1.0)]
        out, k = [], 0
        for _, ps in batch:
            out.append(results[k:k + len(ps)])
            k += len(ps)
        if not traced and retrace:  # a failure keeps its trace (as with explain=True)
            failed = [[i for i, r in enumerate(rs) if r.answer is None] for rs in out]
            if any(failed):
                again = [(scene, [ps[i] for i in f]) for (scene, ps), f in zip(batch, failed) if f]
                redone = iter(self._answer_gold(again, *encode_gold(
                    again, min_probability=self.config.min_probability), traced=True))
                for rs, f in zip(out, failed):
                    if f:
                        for i, r in zip(f, next(redone)):
                            rs[i] = r
        return out

    # ---- solving ----------------------------------------------------------
    def _solve(self, ctl: clingo.Control, assumptions: list, *, limited: bool = False,
               deadline: float | None = None) -> tuple[str | None, bool]:
        """The shown atoms of the last (with optimisation: the best) model as clingo prints
        them (one string: reading it with regular expressions is several times faster than
        Symbol objects), and whether the search finished (the optimum is proven).
        `deadline` (time.perf_counter() seconds): the search runs asynchronously and is
        cancelled then. `limited`: the search may also stop at clingo's solve limit. A
        search that stops before its end gives the best model found so far (None when there
        is none), not proven."""
        if deadline is None:
            atoms = None
            with ctl.solve(assumptions=assumptions, yield_=True) as handle:
                for model in handle:
                    atoms = str(model)
                exhausted = handle.get().exhausted
        else:
            found: list[str] = []
            with ctl.solve(assumptions=assumptions, on_model=lambda m: found.append(str(m)), async_=True) as handle:
                if not handle.wait(max(0.0, deadline - time.perf_counter())):
                    handle.cancel()
                exhausted = handle.get().exhausted
            atoms = found[-1] if found else None
        if atoms is None and exhausted and not limited:
            # The theory never makes a program unsatisfiable; this would be a defect.
            raise SolverError("no model: the CLEVR theory should always have one")
        return atoms, exhausted

    def _more_answers(self, ctl, results: list[ASPAnswer], modes: list[int | None],
                      deadline: float | None = None) -> None:
        """The next-best answers, one round per rank. A round is a new optimisation (the best
        reading with the answers found so far blocked), which can be much harder than the
        first; each round stops at `alternatives_conflicts` conflicts (or at `deadline`), and
        a round that did not prove its optimum ends the list (the answer itself is never
        affected)."""
        blocked = {q: [r.answer] for q, r in enumerate(results) if r.answer is not None and modes[q] is not None}
        ctl.configuration.solve.solve_limit = str(self.config.alternatives_conflicts)
        for _ in range(self.config.top_k - 1):
            if not blocked:
                return
            for q, answers in blocked.items():
                ctl.assign_external(clingo.Function("block", [clingo.Number(q), _answer_symbol(answers[-1])]), True)
            atoms, proven = self._solve(ctl, [], limited=True, deadline=deadline)
            if atoms is None or not proven:
                return
            answers = {int(q): _term_value(v) for q, v in _ANS.findall(atoms)}
            failed = {int(q) for q, _, _ in _FAIL.findall(atoms)}
            costs = _world_costs(atoms)
            for q in list(blocked):
                v = answers.get(q)
                value = None if v is None or q in failed else normalise_answer(v)
                if value is None or value in blocked[q]:
                    del blocked[q]  # no other answer in any reading
                    continue
                blocked[q].append(value)
                results[q].top.append((value, costs.get(q, 0) - modes[q]))


_TERM = r'(-?\d+|"(?:[^"\\]|\\.)*"|[a-z_][A-Za-z0-9_\']*)'
_VAL = re.compile(r"\bval\((\d+),(\d+),(\d+)\)")
_OUT = re.compile(r"\bout\((\d+),(\d+)," + _TERM + r"\)")
_NONE = re.compile(r"\bnone\((\d+),(\d+)\)")
_ANS = re.compile(r"\bans\((\d+)," + _TERM + r"\)")
_FAIL = re.compile(r"\bfail\((\d+),(-?\d+),([^ ]*)\)(?= |$)")
_ERR = re.compile(r"\berr\((\d+),(\d+),([^ ]*)\)(?= |$)")
_PAY = re.compile(r"\bpay\((\d+),(\d+),")


class _Facts:
    """The grounding context of a call with `encode_gold` facts: `@facts(p)` is the list
    of p's facts (parsed as one term, which is much faster than fact statements)."""

    def __init__(self, terms: dict[str, list[str]]):
        self.terms = terms

    def facts(self, name: clingo.Symbol) -> list[clingo.Symbol]:
        items = self.terms.get(name.name)
        return clingo.parse_term("f(" + ",".join(items) + ")").arguments if items else []


def _term_value(text: str):
    """A printed term as a Python value: numbers -> int, strings unquoted, constants as is."""
    if text[0] == '"':
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text[1:-1])
    if text[0] == "-" or text.isdigit():
        return int(text)
    return text


def _reason(text: str):
    """`unique(2)` -> ("unique", 2); `type(0,objects)` -> ("type", 0, "objects"); `args` -> "args"."""
    if "(" not in text:
        return text
    name, rest = text[:-1].split("(", 1)
    return (name, *(_term_value(x) for x in rest.split(",")))


def _answer_symbol(answer: str) -> clingo.Symbol:
    if answer.lstrip("-").isdigit():
        return clingo.Number(int(answer))
    t = term(answer)
    return clingo.String(answer) if t.startswith('"') else clingo.Function(answer)


def _assumptions(fixed: list[tuple], asked: set[str]) -> list[tuple[clingo.Symbol, bool]]:
    """`readings.fixed_choices` as assumptions on the reading of question 0 of a call about
    one scene (its objects numbered from 0): in(0, O), has(0, O, C, V), holds(0, A, R, B)
    (the relations of `asked` predicates only: the theory guesses no others, and assuming an
    atom that does not exist true would make the call unsatisfiable)."""
    w = clingo.Number(0)
    out = []
    for f in fixed:
        if f[0] == "in":
            out.append((clingo.Function("in", [w, clingo.Number(f[1])]), f[2]))
        elif f[0] == "has":
            out.append((clingo.Function("has", [w, clingo.Number(f[1]), clingo.parse_term(term(f[2])),
                                                clingo.parse_term(term(f[3]))]), False))
        elif f[2] in asked:
            out.append((clingo.Function("holds", [w, clingo.Number(f[1]), clingo.parse_term(term(f[2])),
                                                  clingo.Number(f[3])]), f[4]))
    return out


def _world_costs(atoms: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for w, k in _PAY.findall(atoms):
        out[int(w)] = out.get(int(w), 0) + int(k)
    return out


def _normalise(top: list[tuple[str, float]]) -> list[tuple[str, float]]:
    if not top:
        return []
    best = min(c for _, c in top)
    weights = [(a, math.exp(-(c - best) / 1000.0)) for a, c in top]
    total = sum(w for _, w in weights)
    return [(a, w / total) for a, w in weights]


# ---- reading a model ----------------------------------------------------------
def read_answers(programs: list[Program], atoms: str, ids: list[str], *, explain: bool = True,
                 values: bool = True, shared: dict[int, tuple[int, list[int]]] | None = None) -> list[ASPAnswer]:
    """ASPAnswers from the shown atoms of a model as clingo prints them (`ans`, `fail`,
    `none`, `val`, `out`, `err`); question q is `programs[q]`, object o is `ids[o]`.
    `explain`: every answer gets its trace; otherwise only a failed question does, when
    the model holds the step values (`values`: rules/clevr/trace.lp was part of the call).
    `shared`: {q: (P, steps)} for the questions encoded as part of a shared program P
    (`asp_encode.encode_shared`): step i of q is step steps[i] of P, and q fails at its
    first step whose shared step has an error (as answer.lp decides for the others)."""
    shared = shared or {}
    answers = {int(q): _term_value(v) for q, v in _ANS.findall(atoms)}
    fails = {int(q): (int(i), _reason(r)) for q, i, r in _FAIL.findall(atoms)}
    nones = {(int(q), int(i)) for q, i in _NONE.findall(atoms)}
    vals: dict[tuple[int, int], list[int]] = {}
    outs: dict[tuple[int, int], object] = {}
    if explain or fails or shared:
        for q, i, o in _VAL.findall(atoms):
            vals.setdefault((int(q), int(i)), []).append(int(o))
        outs = {(int(q), int(i)): _term_value(v) for q, i, v in _OUT.findall(atoms)}
    if shared:
        errs = {(int(q), int(i)): _reason(r) for q, i, r in _ERR.findall(atoms)}
        erred = {p for p, _ in errs}
        for q, (pid, steps) in shared.items():
            fail = None
            if pid in erred:
                fail = next(((i, errs[pid, n]) for i, n in enumerate(steps) if (pid, n) in errs), None)
            if fail is None and (pid, steps[-1]) in nones:
                fail = (len(steps) - 1, ("ends", "none"))
            if fail is None:
                answers[q] = outs.get((pid, steps[-1]))
            else:
                fails[q] = fail
    results = []
    for q, program in enumerate(programs):
        fail = fails.get(q)
        n = len(program.steps) if fail is None else fail[0] + 1
        pid, steps = shared.get(q, (q, range(n)))
        trace: list[TraceStep] = []
        if explain or fail is not None:
            for i in range(max(n, 0)):
                s = program.steps[i]
                spec = CLEVR_FUNCTIONS.get(s.op)
                key = (pid, steps[i])
                kind = "none" if key in nones else spec.output if spec else None
                trace.append(TraceStep(i, s.token, s.inputs, _value(kind, vals.get(key), outs.get(key), ids)))
        if fail is None:
            v = answers.get(q)
            if v is None:
                raise SolverError(f"question {q}: neither an answer nor a failure in the model")
            results.append(ASPAnswer(normalise_answer(v), trace=trace))
            continue
        i, reason = fail
        if i < 0:
            results.append(ASPAnswer(None, "empty program", None, trace))
            continue
        message = _message(program, i, reason, trace)
        if not (isinstance(reason, tuple) and reason[0] == "ends"):  # as the executor: the value stays
            trace[i].value = None
            trace[i].error = message
        results.append(ASPAnswer(None, message, i, trace if explain or values else []))
    return results


def _value(kind, members, out, ids):
    if kind == "objects":
        return tuple(ids[o] for o in sorted(members or ()))
    if kind == "object":
        return ids[members[0]] if members and len(members) == 1 else None
    if kind == "bool":
        return out == "yes"
    if kind == "none":
        return None
    return out


def _describe(step: TraceStep, is_object: bool) -> str:
    v = step.value
    if is_object:
        return f"object {v}"
    if isinstance(v, tuple):
        return f"a set of {len(v)} objects"
    return repr(v)


def _message(program: Program, i: int, reason, trace: list[TraceStep]) -> str:
    """The reference executor's message for a failure atom's reason."""
    s = program.steps[i]
    spec = CLEVR_FUNCTIONS.get(s.op)
    if reason == "unknown":
        return f"unknown function {s.op!r}"
    if reason == "inputs":
        return f"{s.op} needs {spec.arity} input(s) from earlier steps, got {list(s.inputs)}"
    if reason == "args":
        return f"{s.op} needs {1 if spec.arg else 0} value(s), got {list(s.args)}"
    tag = reason[0]
    if tag == "type":
        _, k, expected = reason
        j = s.inputs[k]
        return f"{s.op} expects {_KIND_WORDS[expected]}, got {_describe(trace[j], program.steps[j].op == 'unique')}"
    if tag == "unique":
        return f"unique expects exactly one object, got {reason[1]}"
    if tag == "ends":
        if reason[1] == "none":
            return "query on an object without that attribute"
        return f"program ends in {_describe(trace[i], reason[1] == 'object')}, not an answer"
    return f"step {i} failed: {reason}"
