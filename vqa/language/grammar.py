"""Constrained decoding of prefix programs: only tokens that keep the program valid.

Torch-free: the search runs over any model that implements the two-method `Stepper`
protocol, so the torch model (`vqa.language.decode`) and the numpy runtime
(`vqa.runtime.question_parser`) share one decoding algorithm and give the same programs.

The decoder writes a CLEVR program in prefix order (`count filter_color[red] scene`).
`PrefixGrammar` tracks, for one partial program, the stack of input slots still to fill,
each with the type it needs (`objects`, `object`, `integer`, `bool`, `value:color`, ...;
the top level needs an answer: integer, bool or an attribute value). A token is allowed
when its output type fits the slot on top of the stack and the program can still be
completed within `max_len` tokens (every slot has a shortest completion: `scene`,
`unique scene`, `count scene`, `query_color unique scene`, ...). EOS is allowed exactly
when no slot is left, and then it is the only token allowed. So every decoded sequence is
a complete program whose `Program.problems()` is empty, whatever the model's weights.
`equal_color` is stricter than the catalogue: both inputs must come from `query_color`.

    grammar = PrefixGrammar(vocab, max_len=40)
    greedy_search(stepper, grammar)        -> [Decoded(ids, tokens, logprob, token_probs)] per row
    beam_search(stepper, grammar, beam=4)  -> [Decoded, ...] best first (one question)

Confidence: `Decoded.confidence` is the probability of the whole sequence under the
constrained distribution (the model's softmax renormalised over the allowed tokens at
every step), i.e. the product of the chosen tokens' probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..ontology import BOOL, CLEVR_FUNCTIONS, INTEGER, OBJECT, OBJECTS, VALUE
from .tokenizer import ProgramVocab

ANSWER = "answer"
_MIN_LEN = {OBJECTS: 1, OBJECT: 2, INTEGER: 2, BOOL: 2, ANSWER: 2}  # value:* -> 3


def _min_len(t: str) -> int:
    return _MIN_LEN.get(t, 3)


def _token_signature(token: str) -> tuple[str, tuple[str, ...]]:
    """(output type, input types) of a prefix token, with typed attribute values."""
    name = token.split("[", 1)[0]
    spec = CLEVR_FUNCTIONS[name]
    out = f"{VALUE}:{spec.category}" if spec.output == VALUE else spec.output
    ins = tuple(f"{VALUE}:{spec.category}" if t == VALUE else t for t in spec.inputs)
    return out, ins


def _fits(out: str, slot: str) -> bool:
    if slot == ANSWER:
        return out in (INTEGER, BOOL) or out.startswith(VALUE + ":")
    return out == slot


@dataclass
class GrammarState:
    stack: list[str] = field(default_factory=lambda: [ANSWER])
    length: int = 0  # program tokens written so far

    @property
    def done(self) -> bool:
        return not self.stack

    def copy(self) -> "GrammarState":
        return GrammarState(list(self.stack), self.length)


class PrefixGrammar:
    """The allowed-token masks of CLEVR prefix programs over a `ProgramVocab`."""

    def __init__(self, vocab: ProgramVocab, max_len: int = 40):
        if max_len < 2:
            raise ValueError("max_len must allow at least 2 program tokens")
        self.vocab, self.max_len = vocab, max_len
        self.signatures: dict[int, tuple[str, tuple[str, ...]]] = {}
        for i, tok in enumerate(vocab.tokens):
            if i >= 3:
                self.signatures[i] = _token_signature(tok)
        self._cache: dict[tuple, np.ndarray] = {}

    def start(self) -> GrammarState:
        return GrammarState()

    def allowed(self, state: GrammarState) -> np.ndarray:
        """Bool mask (V,) of the tokens allowed next (cached; do not modify it)."""
        key = (tuple(state.stack), state.length)
        mask = self._cache.get(key)
        if mask is None:
            mask = np.zeros(len(self.vocab), dtype=bool)
            if state.done:
                mask[self.vocab.eos_id] = True
            else:
                rest = sum(_min_len(t) for t in state.stack[:-1])
                top = state.stack[-1]
                for i, (out, ins) in self.signatures.items():
                    if _fits(out, top) and state.length + 1 + sum(_min_len(t) for t in ins) + rest <= self.max_len:
                        mask[i] = True
            mask.setflags(write=False)
            self._cache[key] = mask
        return mask

    def step(self, state: GrammarState, token_id: int) -> GrammarState:
        """The state after writing `token_id` (which must be allowed)."""
        if state.done:
            if token_id != self.vocab.eos_id:
                raise ValueError("only EOS may follow a complete program")
            return state
        out, ins = self.signatures[token_id]
        if not _fits(out, state.stack[-1]):
            raise ValueError(f"{self.vocab.tokens[token_id]} does not fit a {state.stack[-1]} slot")
        return GrammarState(state.stack[:-1] + list(reversed(ins)), state.length + 1)


@dataclass
class Decoded:
    ids: list[int]  # program token ids, without BOS/EOS
    tokens: list[str]
    logprob: float  # log of the sequence probability (EOS included)
    token_probs: list[float]

    @property
    def confidence(self) -> float:
        return math.exp(self.logprob)


class Stepper(Protocol):
    """A decoder positioned after the tokens fed so far, one row per hypothesis.

    `step(tokens)` appends one token id per row (int array (n,)) and returns the logits of
    the next token (float array (n, V)). `select(rows)` keeps the given rows, in that order
    (rows may repeat: a beam hypothesis that branches)."""

    rows: int

    def step(self, tokens: np.ndarray) -> np.ndarray: ...

    def select(self, rows: list[int]) -> None: ...


def masked_log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """logits (B, V), mask (B, V) bool -> log-probabilities renormalised over the mask (float64)."""
    x = np.where(mask, logits.astype(np.float64), -np.inf)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def greedy_search(stepper: Stepper, grammar: PrefixGrammar) -> list[Decoded]:
    """Greedy constrained decoding of every row of `stepper` (freshly encoded, nothing fed)."""
    vocab = grammar.vocab
    B = stepper.rows
    states = [grammar.start() for _ in range(B)]
    chosen: list[list[int]] = [[] for _ in range(B)]
    probs: list[list[float]] = [[] for _ in range(B)]
    logp = [0.0] * B
    finished = [False] * B
    logits = stepper.step(np.full(B, vocab.bos_id, dtype=np.int64))
    for _ in range(grammar.max_len + 1):
        lp = masked_log_softmax(logits, np.stack([grammar.allowed(s) for s in states]))
        best = lp.argmax(-1)
        nxt = np.full(B, vocab.pad_id, dtype=np.int64)
        for b in range(B):
            if finished[b]:
                continue
            t = int(best[b])
            logp[b] += float(lp[b, t])
            if t == vocab.eos_id:
                finished[b] = True
            else:
                chosen[b].append(t)
                probs[b].append(math.exp(float(lp[b, t])))
                states[b] = grammar.step(states[b], t)
            nxt[b] = t
        if all(f or s.done for f, s in zip(finished, states)):
            # every open program is complete: EOS is the only allowed token (probability 1,
            # log-probability 0), so the model need not run again
            break
        logits = stepper.step(nxt)
    return [Decoded(c, [vocab.tokens[i] for i in c], lq, p) for c, lq, p in zip(chosen, logp, probs)]


def beam_search(stepper: Stepper, grammar: PrefixGrammar, beam: int = 4) -> list[Decoded]:
    """Up to `beam` complete programs for the single row of `stepper`, most probable first."""
    vocab = grammar.vocab
    # a hypothesis: (logprob, ids, token probs, state); live[k] is the stepper's row k
    live = [(0.0, [], [], grammar.start())]
    done: list[Decoded] = []
    logits = stepper.step(np.array([vocab.bos_id], dtype=np.int64))
    for _ in range(grammar.max_len + 1):
        mask = np.stack([grammar.allowed(h[3]) for h in live])
        lp = masked_log_softmax(logits, mask)
        cands = []
        for k, (score, ids, tp, state) in enumerate(live):
            n_top = min(beam, int(mask[k].sum()))
            for t in np.argsort(-lp[k], kind="stable")[:n_top].tolist():
                cands.append((score + float(lp[k, t]), k, t, float(lp[k, t])))
        cands.sort(key=lambda c: -c[0])
        new_live, parents, tokens = [], [], []
        for score, k, t, v in cands:
            _, ids, tp, state = live[k]
            if t == vocab.eos_id:
                done.append(Decoded(ids, [vocab.tokens[i] for i in ids], score, tp))
            elif len(new_live) < beam:
                new_live.append((score, ids + [t], tp + [math.exp(v)], grammar.step(state, t)))
                parents.append(k)
                tokens.append(t)
            if len(new_live) >= beam and len(done) >= beam:
                break
        live = new_live
        if not live:
            break
        if len(done) >= beam and max(h[0] for h in live) < sorted(d.logprob for d in done)[-beam]:
            break
        stepper.select(parents)
        logits = stepper.step(np.array(tokens, dtype=np.int64))
    done.sort(key=lambda d: -d.logprob)
    return done[:beam]
