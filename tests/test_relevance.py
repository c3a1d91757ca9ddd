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
