"""Which rules of a theory can fire on a call's facts (static, before grounding).

clingo's grounder spends tens of microseconds on every rule of a program even when the rule
has no instance, and a call about one scene uses only some of the theory's functions. This
module keeps, of a list of parsed statements, the rules whose positive body atoms can all be
derived from the call's facts, by a fixpoint over atom *shapes*: an atom's name, its arity,
and the name and arity of each argument that is a constant or a function term (None for a
variable or anything else, which stands for any argument). A rule whose body needs, say,
`apply(Q, I, filter(C), V, J, W)` is dropped when no fact or kept rule gives an `apply` atom
with `filter/1` in third place. Variables carry the shape they are bound to from the body to
the head, so `apply(Q, I, F, V, J, W) :- run(Q, I, F, V, (J,)), ...` gives only the functions
of the one-input `run` facts.

The analysis over-approximates what can be derived (negative literals, aggregates and
conditions are not required, an unknown argument matches anything), so a dropped rule has no
ground instance and the answer set is unchanged. Statements other than rules (directives,
`#show`, weak constraints, `#external`, which defines atoms) are kept; comments are dropped.

    keep = Relevance(statements)
    for stm in keep.statements({("run", 5, (None, None, ("scene", 0), None, ("", 0))), ("in", 2, (None, None))}):
        builder.add(stm)
"""
from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from itertools import product

from clingo import SymbolType, ast

Shape = tuple  # (name, arity, (argument shape or None, ...)); argument shape: (name, arity)
_T = ast.ASTType


def argument_shape(term) -> tuple | None:
    """(name, arity) of a constant or function term of the AST (tuples have the name ""), else None."""
    if term.ast_type == _T.Function and not term.external:
        return term.name, len(term.arguments)
    if term.ast_type == _T.SymbolicTerm and term.symbol.type == SymbolType.Function:
        return term.symbol.name, len(term.symbol.arguments)
    return None


def _pattern(function) -> tuple:
    """(name, arity, argument shapes, variable names by argument (None where not a variable))."""
    args = function.arguments
    return (function.name, len(args), tuple(argument_shape(a) for a in args),
            tuple(a.name if a.ast_type == _T.Variable and a.name != "_" else None for a in args))


def _atom_functions(atom) -> list | None:
    """The Functions of a symbolic atom (the alternatives of a pool), or None for an atom
    of another form (an @-term, a theory atom)."""
    if atom.ast_type != _T.SymbolicAtom:
        return None
    s = atom.symbol
    alternatives = s.arguments if s.ast_type == _T.Pool else [s]
    out = []
    for f in alternatives:
        if f.ast_type == _T.Function and not f.external:
            out.append(f)
        elif f.ast_type == _T.SymbolicTerm and f.symbol.type == SymbolType.Function:
            out.append(f)  # a constant atom (arity 0)
        else:
            return None
    return out


def _head_functions(node, out: list) -> None:
    """The atoms a head can make true (walks aggregates, disjunctions and conditions;
    None for an atom of unknown form)."""
    if node.ast_type == _T.SymbolicAtom:
        fs = _atom_functions(node)
        out.extend(fs if fs is not None else [None])
        return
    for key in node.child_keys:
        child = getattr(node, key)
        if isinstance(child, ast.AST):
            _head_functions(child, out)
        elif isinstance(child, (list, ast.ASTSequence)):
            for c in child:
                if isinstance(c, ast.AST):
                    _head_functions(c, out)


def _function_pattern(f) -> tuple:
    if f.ast_type == _T.SymbolicTerm:  # a constant atom
        return f.symbol.name, 0, (), ()
    return _pattern(f)


_NAME = re.compile(r"\b([a-z_][A-Za-z0-9_']*)\(")


@lru_cache(maxsize=None)
def _function_argument(name: str, pos: int) -> tuple:
    """Regexes for the facts of `name` and for `name(n1, ..., n_pos, f(args)` (plain integers
    before the function term; groups: the function's name and its argument text)."""
    return (re.compile(r"\b" + name + r"\("),
            re.compile(r"\b" + name + r"\(" + r"-?\d+," * pos + r"([a-z_][A-Za-z0-9_']*)(?:\(([^()]*)\))?[,)]"))


class _Rule:
    """A rule as the analysis sees it: its required body patterns and its head patterns
    (None: a head atom of unknown form, which keeps every rule that needs that name)."""

    def __init__(self, index: int, stm):
        self.index = index
        self.body = []
        self.opaque = False
        for lit in stm.body:
            if lit.ast_type != _T.Literal or lit.sign != ast.Sign.NoSign:
                continue
            if lit.atom.ast_type != _T.SymbolicAtom:
                continue
            fs = _atom_functions(lit.atom)
            if fs is not None and len(fs) == 1:
                self.body.append(_function_pattern(fs[0]))
            else:
                self.opaque = True  # a pooled or @-atom in the body: the rule is always kept
        heads: list = []
        _head_functions(stm.head, heads)
        self.heads = [None if f is None else _function_pattern(f) for f in heads]
        self.heads_known = [h for h in self.heads if h is not None]
        self.heads_unknown = any(h is None for h in self.heads)
        head_vars = {v for h in self.heads_known for v in h[3] if v}
        # per body atom: its (name, arity), its constant arguments and the head variables it binds
        self.matchers = [((name, arity), tuple((i, p) for i, p in enumerate(pat) if p is not None),
                          tuple((i, v) for i, v in enumerate(names) if v in head_vars))
                         for name, arity, pat, names in self.body]


class Relevance:
    """The rules of `statements` that can fire on given fact shapes (see the module doc).
    Results are cached by the set of shapes (`cache` entries, least recently used first out)."""

    def __init__(self, statements, *, cache: int = 512):
        self._statements = [s for s in statements if s.ast_type != _T.Comment]
        self._rules = [_Rule(i, s) for i, s in enumerate(self._statements) if s.ast_type == _T.Rule]
        self._always = [i for i, s in enumerate(self._statements) if s.ast_type != _T.Rule]
        self._users: dict[tuple, list[_Rule]] = {}  # (name, arity) -> the rules whose body needs it
        for rule in self._rules:
            for name, arity, _, _ in rule.body:
                users = self._users.setdefault((name, arity), [])
                if rule not in users:
                    users.append(rule)
        self._externals: list[Shape] = []
        for s in self._statements:
            if s.ast_type == _T.External:
                fs = _atom_functions(s.atom)
                if fs is None:  # an external atom of unknown form could be anything
                    self._externals.append(None)
                for f in fs or ():
                    name, arity, _, _ = _function_pattern(f)
                    self._externals.append((name, arity, (None,) * arity))
        self._arities: dict[str, set[int]] = {}  # every predicate the rules read or give
        for rule in self._rules:
            for name, arity, _, _ in rule.body + rule.heads_known:
                self._arities.setdefault(name, set()).add(arity)
        for name, arity, _ in (e for e in self._externals if e is not None):
            self._arities.setdefault(name, set()).add(arity)
        self._cache: OrderedDict = OrderedDict()
        self._size = cache

    def text_shapes(self, facts: str, functions: dict[str, tuple[int, int]] | None = None) -> set:
        """Shapes of the facts in a program text (as `vqa.reason.asp_encode.encode` writes them),
        over-approximated cheaply: every name followed by "(" in the text counts as a
        predicate (with each arity the theory uses it with, arguments unknown; a nested
        function name adds a shape that nothing may use, which is safe), and so does every
        predicate of arity 0. `functions` {predicate: (arity, position)}: the facts whose
        argument at `position` is a function term, read after plain numbers (`run(3,0,
        filter(color),...)`); if one such fact cannot be read, that predicate's shape is left
        unknown."""
        shapes = set()
        names = set(_NAME.findall(facts))
        for name in names:
            for arity in self._arities.get(name, ()):
                if not functions or name not in functions or functions[name][0] != arity:
                    shapes.add((name, arity, (None,) * arity))
        shapes.update((name, 0, ()) for name in self._arities if 0 in self._arities[name])
        for name, (arity, pos) in (functions or {}).items():
            if name not in names or arity not in self._arities.get(name, ()):
                continue
            every, readable = _function_argument(name, pos)
            found = readable.findall(facts)
            if len(found) != len(every.findall(facts)):
                shapes.add((name, arity, (None,) * arity))
            for f, arg in set(found):
                args = [None] * arity
                args[pos] = (f, arg.count(",") + 1 if arg else 0)
                shapes.add((name, arity, tuple(args)))
        return shapes

    def statements(self, shapes) -> list:
        """The statements to ground for facts of `shapes` (an iterable of (name, arity, args))."""
        key = frozenset(shapes)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        keep = set(self._always) | {r.index for r in self._fire(key)}
        out = [s for i, s in enumerate(self._statements) if i in keep]
        self._cache[key] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out

    def _fire(self, shapes) -> list[_Rule]:
        if None in self._externals:  # an external atom of unknown form: no pruning
            return list(self._rules)
        known: dict[tuple, set] = {}   # (name, arity) -> argument shape tuples
        for name, arity, args in list(shapes) + self._externals:
            known.setdefault((name, arity), set()).add(tuple(args))
        fired: dict[int, _Rule] = {}
        # a worklist: a rule is looked at again only when an atom its body needs takes a new shape
        todo = list(self._rules)
        queued = {r.index for r in todo}
        while todo:
            rule = todo.pop()
            queued.discard(rule.index)
            heads = _derive(rule, known)
            if heads is None:
                continue
            fired[rule.index] = rule
            for h in heads:
                if h is None:  # a head atom of unknown form: no pruning
                    return list(self._rules)
                args = known.setdefault(h[:2], set())
                if h[2] not in args:
                    args.add(h[2])
                    for user in self._users.get(h[:2], ()):
                        if user.index not in queued:
                            queued.add(user.index)
                            todo.append(user)
        return list(fired.values())


def _derive(rule: _Rule, known: dict):
    """The head shapes of `rule` given the known shapes, or None when its body cannot hold.
    Each body atom is matched on its own; a head variable takes the shapes its body atoms
    allow it (the intersection over the atoms it occurs in). This over-approximates a
    match of the whole body, which is what keeps the analysis safe."""
    values: dict = {}  # head variable -> set of shapes ({None}: any)
    if not rule.opaque:
        for key, consts, bind in rule.matchers:
            found = [args for args in known.get(key, ()) if all(args[p] is None or args[p] == v for p, v in consts)]
            if not found:
                return None
            for pos, var in bind:
                vals = {args[pos] for args in found}
                if None in vals:
                    continue
                old = values.get(var)
                new = vals if old is None else old & vals
                if not new:
                    return None
                values[var] = new
    heads = set()
    for name, arity, pat, names in rule.heads_known:
        options = [(p,) if p is not None else tuple(values.get(v, (None,))) if v else (None,)
                   for p, v in zip(pat, names)]
        for args in product(*options):
            heads.add((name, arity, args))
    if rule.heads_unknown:
        heads.add(None)
    return heads
