"""ASP theories as text: statements with their source spans, predicate use, ablation.

The paper's experiments start from a complete theory with rules taken away:
`ablate_predicate` drops every rule that mentions a predicate, `ablate_fraction` drops a
fraction of the rules at random. LLM-written rules go into their own marked section of
`theory.lp` (`with_distilled`), so a diff shows what the model added.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import clingo.ast as ast

from ..errors import DataError

DISTILLED_BEGIN = "% ---- distilled rules (written by an LLM, accepted by the solver checks) ----"
DISTILLED_END = "% ---- end of distilled rules ----"


@dataclass
class Statement:
    kind: str  # "Rule", "ShowSignature", "Definition", ...
    text: str  # the exact source text
    start: int  # character offsets into the theory text
    end: int
    predicates: frozenset[str]  # names of the atoms it mentions (head and body)
    head_predicates: frozenset[str]


def statements(text: str, *, file: str | None = None) -> list[Statement]:
    """The statements of `text` (comments excluded) with their exact source spans."""
    line_starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            line_starts.append(i + 1)

    def offset(pos) -> int:
        return line_starts[pos.line - 1] + pos.column - 1

    out: list[Statement] = []
    messages: list[str] = []

    def collect(stm) -> None:
        kind = str(stm.ast_type).split(".")[-1]
        if kind in ("Comment", "Program") and (kind == "Comment" or stm.location.begin == stm.location.end):
            return
        start, end = offset(stm.location.begin), offset(stm.location.end)
        heads: set[str] = set()
        preds = _atom_names(stm, heads)
        out.append(Statement(kind, text[start:end], start, end, frozenset(preds), frozenset(heads)))

    try:
        ast.parse_string(text, collect, logger=lambda code, msg: messages.append(msg), message_limit=5)
    except RuntimeError:
        detail = messages[0].strip() if messages else "syntax error"
        raise DataError(f"theory does not parse: {detail}", file=file) from None
    return out


def _atom_names(node, heads: set[str], in_head: bool = False) -> set[str]:
    names: set[str] = set()
    if not isinstance(node, ast.AST):
        return names
    kind = str(node.ast_type).split(".")[-1]
    if kind == "SymbolicAtom":
        sym = node.symbol
        if str(sym.ast_type).endswith("Function"):
            names.add(sym.name)
            if in_head:
                heads.add(sym.name)
        return names
    for key in node.child_keys:
        child = getattr(node, key)
        children = child if isinstance(child, (list, tuple)) or type(child).__name__ == "ASTSequence" else [child]
        for c in children:
            names |= _atom_names(c, heads, in_head or key == "head")
    return names


def remove(text: str, drop: list[Statement]) -> str:
    """`text` without the given statements (comments and everything else kept)."""
    for s in sorted(drop, key=lambda s: s.start, reverse=True):
        end = s.end
        if text[end:end + 1] == "\n":
            end += 1
        text = text[: s.start] + text[end:]
    return text


def ablate_predicate(text: str, predicate: str) -> tuple[str, list[Statement]]:
    """Drop every rule that mentions `predicate` (in its head or body)."""
    drop = [s for s in statements(text) if s.kind == "Rule" and predicate in s.predicates]
    if not drop:
        raise DataError(f"no rule mentions predicate {predicate!r}", field="--ablate-predicate")
    return remove(text, drop), drop


def ablate_fraction(text: str, fraction: float, seed: int) -> tuple[str, list[Statement]]:
    """Drop `fraction` (0..1) of the rules, chosen at random with `seed`; facts stay."""
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"expected a fraction in [0, 1], got {fraction}", field="--ablate-fraction")
    rules = [s for s in statements(text) if s.kind == "Rule" and s.text.find(":-") >= 0]
    k = round(len(rules) * fraction)
    drop = random.Random(seed).sample(rules, k)
    return remove(text, drop), drop


def with_distilled(base: str, rules: list[str]) -> str:
    """The theory text with accepted LLM rules in their own marked section at the end."""
    base = strip_distilled(base).rstrip() + "\n"
    if not rules:
        return base
    body = "\n".join(r.strip() for r in rules)
    return f"{base}\n{DISTILLED_BEGIN}\n{body}\n{DISTILLED_END}\n"


def strip_distilled(text: str) -> str:
    i = text.find(DISTILLED_BEGIN)
    if i < 0:
        return text
    j = text.find(DISTILLED_END, i)
    return text[:i].rstrip() + "\n" + (text[j + len(DISTILLED_END):].lstrip("\n") if j >= 0 else "")


# The shipped starting theories rules/<dataset>/incomplete/{light,medium,heavy}.lp:
# dataset -> name -> (description, the equivalent `vqa distill` flags, how to make it).
_LIGHT = {"clevr": ("compare", "the comparison functions equal_*, equal_integer, less_than, greater_than"),
          "gqa": ("related", "the relate operations")}
STARTING_THEORIES = {
    dataset: {
        "light": (f"every rule that mentions {pred} removed ({what})", f"--ablate-predicate {pred}",
                  lambda t, pred=pred: ablate_predicate(t, pred)),
        "medium": ("20% of the rules with a body removed at random (seed 0)", "--ablate-fraction 0.2 --seed 0",
                   lambda t: ablate_fraction(t, 0.2, 0)),
        "heavy": ("50% of the rules with a body removed at random (seed 0)", "--ablate-fraction 0.5 --seed 0",
                  lambda t: ablate_fraction(t, 0.5, 0)),
    }
    for dataset, (pred, what) in _LIGHT.items()
}


def starting_theory_text(name: str, complete: str, dataset: str = "clevr") -> str:
    """The text of a shipped starting theory, made from the complete theory."""
    what, flags, make = STARTING_THEORIES[dataset][name]
    text, dropped = make(complete)
    return (f"% {'=' * 68}\n% {name.capitalize()} starting theory for rule distillation ({dataset.upper()}).\n"
            f"% The complete theory rules/{dataset}/*.lp with {what}:\n"
            f"% {len(dropped)} rules dropped. Made by vqa.distill.theory.starting_theory_text "
            f"(as `vqa distill {flags}`).\n% {'=' * 68}\n" + text)
