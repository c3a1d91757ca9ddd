"""Generic clingo helpers shared by the ASP reasoners and the distillation loop.

    text = load_theory("rules/clevr")                       # all *.lp files, in name order
    result = solve(text + facts)                             # ground + solve, optimal model
    result.atoms            # shown atoms of the optimal (last) model, as clingo Symbols
    grouped = by_name(result.atoms)                          # {"ans": [(0, "blue"), ...], ...}
    result.messages         # what clingo's logger said (syntax errors, unsafe variables, ...)

Only for trusted programs: grounding cannot be interrupted, so untrusted rule text goes
through `vqa.reason.sandbox`, which runs these helpers in a child process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import clingo

from ..errors import SOURCE_TREE_HINT, DataError, VQAError

# Arguments every Control gets: one thread, no printing of warnings we do not need.
DEFAULT_ARGUMENTS: tuple[str, ...] = ("--warn=none",)


class SolverError(VQAError, RuntimeError):
    """Grounding or solving failed (a syntax error, unsafe variables, ...); `messages`
    holds the logger's text."""

    def __init__(self, message: str, messages: Sequence[str] = ()):
        self.messages = list(messages)
        detail = "\n".join(self.messages)
        super().__init__(f"{message}: {detail}" if detail else message)


class LogCapture:
    """A `logger=` callback for clingo that keeps every message: `(code, text)`."""

    def __init__(self):
        self.records: list[tuple[clingo.MessageCode, str]] = []

    def __call__(self, code: clingo.MessageCode, message: str) -> None:
        self.records.append((code, message))

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.records]


@dataclass
class SolveResult:
    """Outcome of one ground+solve.

    `satisfiable` is None when the search was interrupted; `atoms` are the shown atoms
    of the last model found (the optimal one when `optimal`); `cost` its cost vector
    (highest priority first); `models` how many models were seen.
    """

    satisfiable: bool | None
    atoms: list[clingo.Symbol] = field(default_factory=list)
    optimal_models: list[list[clingo.Symbol]] = field(default_factory=list)  # with all_optimal=True
    cost: list[int] = field(default_factory=list)
    optimal: bool = False
    models: int = 0
    messages: list[str] = field(default_factory=list)


def make_control(arguments: Iterable[str] = (), log: LogCapture | None = None) -> clingo.Control:
    """A Control with `DEFAULT_ARGUMENTS` plus `arguments`; messages go to `log`."""
    args = [*DEFAULT_ARGUMENTS, *arguments]
    if log is None:
        return clingo.Control(args, logger=_silent)
    return clingo.Control(args, logger=log)


def _silent(code, message) -> None:
    return None


_RULES_ROOT = Path(__file__).resolve().parents[2] / "rules"  # the shipped theories' folder (source tree)


@lru_cache(maxsize=32)
def _read_theory(directory: str, names: tuple[str, ...], mtimes: tuple[float, ...]) -> str:
    parts = []
    for name in names:
        parts.append(f"% ---- {name}\n" + (Path(directory) / name).read_text())
    return "\n".join(parts)


def load_theory(directory: str | Path, exclude: Iterable[str] = ("example_facts.lp",)) -> str:
    """The text of every `*.lp` file of `directory` (in name order, cached until a file
    changes); files named in `exclude` (example instances) are left out."""
    d = Path(directory)
    skip = set(exclude)
    files = sorted(p for p in d.glob("*.lp") if p.name not in skip)
    if not files:
        if not d.exists():
            raise DataError("no such folder of ASP rule files"
                            + (f" ({SOURCE_TREE_HINT})" if d.resolve().parent == _RULES_ROOT else ""), file=d)
        raise DataError("no .lp files (expected a folder of ASP rule files)", file=d)
    return _read_theory(str(d), tuple(p.name for p in files), tuple(p.stat().st_mtime for p in files))


def ground(ctl: clingo.Control, program: str, log: LogCapture | None = None) -> None:
    """Add `program` to the base part and ground it; a SolverError carries the messages."""
    try:
        ctl.add("base", [], program)
        ctl.ground([("base", [])])
    except RuntimeError as e:
        raise SolverError(str(e) or "grounding failed", log.messages if log else ()) from None


def solve_control(ctl: clingo.Control, assumptions: Sequence = (), *, shown: bool = True) -> SolveResult:
    """Solve a grounded Control; keep the last (with optimisation: the optimal) model.
    With `--opt-mode=optN` among the Control's arguments, every optimal model is also
    collected in `optimal_models`."""
    res = SolveResult(satisfiable=None)
    with ctl.solve(assumptions=list(assumptions), yield_=True) as handle:
        for model in handle:
            res.models += 1
            atoms = model.symbols(shown=True) if shown else model.symbols(atoms=True)
            if model.optimality_proven:
                res.optimal_models.append(atoms)
            res.atoms = atoms
            res.cost = list(model.cost)
            res.optimal = model.optimality_proven or not res.cost
        status = handle.get()
    res.satisfiable = status.satisfiable
    if res.cost and status.exhausted:
        res.optimal = True
    return res


def solve(program: str, *, arguments: Iterable[str] = (), assumptions: Sequence = (),
          all_optimal: bool = False) -> SolveResult:
    """Ground and solve `program` (text) in a fresh Control; return the optimal model
    (and, with `all_optimal`, every optimal model in `optimal_models`)."""
    log = LogCapture()
    args = [*arguments, "--opt-mode=optN", "0"] if all_optimal else list(arguments)
    ctl = make_control(args, log)
    ground(ctl, program, log)
    res = solve_control(ctl, assumptions)
    res.messages = log.messages
    return res


def to_python(sym: clingo.Symbol):
    """A term as a Python value: numbers -> int, strings -> str, constants -> str,
    tuples/functions with arguments -> (name, *args) ("" for a tuple)."""
    t = sym.type
    if t == clingo.SymbolType.Number:
        return sym.number
    if t == clingo.SymbolType.String:
        return sym.string
    if t == clingo.SymbolType.Function:
        if not sym.arguments:
            return sym.name
        return (sym.name, *(to_python(a) for a in sym.arguments))
    return str(sym)


def by_name(atoms: Iterable[clingo.Symbol]) -> dict[str, list[tuple]]:
    """Group atoms by predicate name: {"ans": [(0, "blue"), ...]} (arguments via `to_python`)."""
    out: dict[str, list[tuple]] = {}
    for a in atoms:
        out.setdefault(a.name, []).append(tuple(to_python(x) for x in a.arguments))
    return out


_IDENT_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def term(value) -> str:
    """A Python value as ASP term text: ints stay numbers, lower-case identifiers stay
    constants, anything else becomes a quoted string (`to_python` reads both back)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    s = str(value)
    if s and "a" <= s[0] <= "z" and all(c in _IDENT_OK for c in s) and s not in ("not",):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
