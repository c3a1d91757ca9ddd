"""The static rule pruning of `vqa.reason.relevance` and its use by the ASP reasoner's gold path."""
import random

import clingo
import pytest
from clingo import ast

from vqa.reason.asp import ASPReasoner, _Facts
from vqa.reason.asp_encode import encode_gold
from vqa.reason.random_programs import random_program, random_scene
from vqa.reason.relevance import Relevance


def _parse(text: str) -> list:
    out = []
    ast.parse_string(text, out.append)
    return out


def _rules(statements) -> set[str]:
    return {str(s) for s in statements if s.ast_type == ast.ASTType.Rule}


def W(name, arity):
    return name, arity, (None,) * arity


def test_rules_need_their_positive_body_and_constants_must_match():
    rel = Relevance(_parse("""
        a(X) :- p(X, f(Y)).
        b(X) :- p(X, g).
        c(X) :- q(X), not r(X).
        d :- #count { X : r(X) } = 0.
        % a comment
    """))
    kept = _rules(rel.statements({("p", 2, (None, ("f", 1)))}))
    assert kept == {"a(X) :- p(X,f(Y)).", "d :- 0 = #count { X: r(X) }."}
    assert _rules(rel.statements({W("p", 2), W("q", 1)})) == _rules(rel._statements)
    assert all(s.ast_type != ast.ASTType.Comment for s in rel.statements(set()))


def test_variables_carry_their_shape_from_body_to_head():
    # the rule deriving apply/2 from one-input run/2 gives only the functions of those facts
    rel = Relevance(_parse("""
        apply(F, J) :- run(F, (J,)).
        used_filter(J) :- apply(filter(_), J).
        used_exist(J) :- apply(exist, J).
        chain(J) :- used_exist(J).
    """))
    kept = _rules(rel.statements({("run", 2, (("exist", 0), ("", 1))), ("run", 2, (("count", 0), ("", 2)))}))
    assert kept == {"apply(F,J) :- run(F,(J,)).", "used_exist(J) :- apply(exist,J).", "chain(J) :- used_exist(J)."}


def test_pools_externals_and_unknown_atoms_are_kept_conservatively():
    rel = Relevance(_parse("""
        fn(a; b).
        x :- fn(a).
        y :- fn(c).
        #external e(1..3).
        z :- e(X).
        w :- @f(1) = 1, q.
    """))
    kept = _rules(rel.statements(set()))
    # pooled head atoms are expanded: fn(c) is never derived
    assert "x :- fn(a)." in kept and "y :- fn(c)." not in kept
    assert "z :- e(X)." in kept  # externals can be true
    assert not any(r.startswith("w") for r in kept)  # q has no facts
    # a pooled atom in a body keeps the rule; an @-term argument may be anything
    rel = Relevance(_parse("u :- p(1;2). v :- never. k(@f(1)) :- u. m :- k(g(3)). n :- k(3), v."))
    assert _rules(rel.statements(set())) == {"u :- p(1;2).", "k(@f(1)) :- u.", "m :- k(g(3))."}


def test_results_are_cached_by_shape_set():
    rel = Relevance(_parse("a :- p. b :- q."))
    first = rel.statements({W("p", 0)})
    assert rel.statements([W("p", 0)]) is first
    assert _rules(rel.statements({W("q", 0)})) == {"b :- q."}


def _model(statements, reasoner, terms) -> set[str]:
    ctl = clingo.Control(["--warn=none"])
    with ast.ProgramBuilder(ctl) as builder:
        for stm in statements:
            builder.add(stm)
        for name, items in terms.items():
            if items:
                for stm in reasoner._gold_rules[name]:
                    builder.add(stm)
    ctl.ground([("base", [])], context=_Facts(terms))
    with ctl.solve(yield_=True) as handle:
        models = [sorted(map(str, m.symbols(shown=True))) for m in handle]
    assert len(models) == 1
    return set(models[0])


@pytest.mark.parametrize("traced", [False, True])
def test_pruned_theory_gives_the_full_theorys_model(traced):
    """Differential: on random scenes and random (checked) programs, the pruned theory
    and the complete one give the same shown atoms, call by call, and prune something."""
    rng = random.Random(7)
    reasoner = ASPReasoner(explain=traced)
    full = reasoner._statements(False, uncertain=False, trace=traced, gold=True)
    rel = Relevance(full)
    calls = pruned_some = 0
    for k in range(40):
        batch = []
        for s in range(1 + k % 3):
            scene = random_scene(rng, image_id=f"r{k}_{s}")
            batch.append((scene, [random_program(rng, scene, p_broken=0.0) for _ in range(1 + k % 4)]))
        gold = encode_gold(batch)
        if gold is None:
            continue
        _, terms, shapes = gold
        kept = rel.statements(shapes)
        pruned_some += len(_rules(kept)) < len(_rules(full))
        assert _model(kept, reasoner, terms) == _model(full, reasoner, terms)
        calls += 1
    assert calls >= 20 and pruned_some >= calls // 2


class _Everything:
    """A stand-in for Relevance that keeps every statement (the reasoner before pruning)."""

    def __init__(self, rel):
        self.rel = rel

    def statements(self, shapes):
        return self.rel._statements

    def text_shapes(self, facts, functions=None):
        return set()


def _uncertain(scene, rng):
    """`scene` with a few objects made doubtful and some attributes spread over two values."""
    from vqa.ontology import CLEVR_ATTRIBUTES

    for o in scene.objects:
        if rng.random() < 0.3:
            o.score = rng.choice([0.35, 0.6, 0.9])
        for cat, vals in CLEVR_ATTRIBUTES.items():
            if rng.random() < 0.25:
                (v, _), = o.attributes[cat].items()
                other = rng.choice([x for x in vals if x != v])
                p = rng.choice([0.55, 0.7, 0.85])
                o.attributes[cat] = {v: p, other: 1 - p}
    return scene


def test_pruned_uncertain_calls_answer_as_the_full_theory():
    """Differential, for calls with uncertain scenes and unchecked (broken) programs (facts as
    text, `Relevance.text_shapes`): the same answers, errors and costs as the whole theory."""
    rng = random.Random(11)
    pruned, full = ASPReasoner(top_k=2), ASPReasoner(top_k=2)
    real = full._relevant
    full._relevant = lambda *flags: _Everything(real(*flags))
    compared = 0
    for k in range(14):
        scene = _uncertain(random_scene(rng, n_objects=(3, 5), image_id=f"u{k}"), rng)
        programs = [random_program(rng, scene, depth=2, p_broken=0.3) for _ in range(1 + k % 3)]
        for a, b in zip(pruned.answer_batch(scene, programs), full.answer_batch(scene, programs)):
            assert (a.answer, a.error, a.error_step, a.cost) == (b.answer, b.error, b.error_step, b.cost)
            assert dict(a.top) == pytest.approx(dict(b.top))
            compared += 1
    assert compared >= 20


def test_text_shapes_read_function_arguments_and_fall_back_when_unreadable():
    rel = Relevance(_parse('a(X) :- run(X, filter(C)). b(X) :- run(X, count). c :- d. e(X) :- step(X, "q").'))
    fns = {"run": (2, 1)}
    # (predicates of arity 0 cannot be told from the text cheaply: they count as given)
    assert _rules(rel.statements(rel.text_shapes("run(1,filter(color)).\nrun(2,filter(size)).", fns))) == {
        "a(X) :- run(X,filter(C)).", "c :- d."}
    # a run fact whose function the pattern cannot read: any function
    shapes = rel.text_shapes('run(1,filter(color)). run(-, "x").', fns)
    assert ("run", 2, (None, None)) in shapes
    assert "b(X) :- run(X,count)." in _rules(rel.statements(shapes))
    assert "e(X) :- step(X,\"q\")." not in _rules(rel.statements(shapes))
