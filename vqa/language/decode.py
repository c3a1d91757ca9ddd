"""Constrained decoding of prefix programs: only tokens that keep the program valid.

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
    greedy_decode(model, src, grammar)  -> [Decoded(ids, tokens, logprob, token_probs)]
    beam_decode(model, src_row, grammar, beam=4) -> [Decoded, ...] best first

Confidence: `Decoded.confidence` is the probability of the whole sequence under the
constrained distribution (the model's softmax renormalised over the allowed tokens at
every step), i.e. the product of the chosen tokens' probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

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
        self._cache: dict[tuple, torch.Tensor] = {}

    def start(self) -> GrammarState:
        return GrammarState()

    def allowed(self, state: GrammarState) -> torch.Tensor:
        """Bool mask (V,) of the tokens allowed next."""
        key = (tuple(state.stack), state.length)
        mask = self._cache.get(key)
        if mask is None:
            mask = torch.zeros(len(self.vocab), dtype=torch.bool)
            if state.done:
                mask[self.vocab.eos_id] = True
            else:
                rest = sum(_min_len(t) for t in state.stack[:-1])
                top = state.stack[-1]
                for i, (out, ins) in self.signatures.items():
                    if _fits(out, top) and state.length + 1 + sum(_min_len(t) for t in ins) + rest <= self.max_len:
                        mask[i] = True
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


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits (B, V), mask (B, V) bool -> log-probabilities renormalised over the mask."""
    return logits.float().masked_fill(~mask, -math.inf).log_softmax(-1)


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, grammar: PrefixGrammar) -> list[Decoded]:
    """src (B, S) long (padded with the pad id) -> one `Decoded` per row."""
    B = src.shape[0]
    vocab = grammar.vocab
    memory, key_mask = model.encode(src)
    states = [grammar.start() for _ in range(B)]
    tgt = torch.full((B, 1), vocab.bos_id, dtype=torch.long, device=src.device)
    chosen: list[list[int]] = [[] for _ in range(B)]
    probs: list[list[float]] = [[] for _ in range(B)]
    logp = [0.0] * B
    finished = [False] * B
    for _ in range(grammar.max_len + 1):
        logits = model.decode(tgt, memory, key_mask)[:, -1]                 # (B, V)
        mask = torch.stack([grammar.allowed(s) for s in states]).to(logits.device)
        lp = _masked_log_softmax(logits, mask)
        best = lp.argmax(-1)
        nxt = []
        for b in range(B):
            t = int(best[b])
            if finished[b]:
                nxt.append(vocab.pad_id)
                continue
            logp[b] += float(lp[b, t])
            if t == vocab.eos_id:
                finished[b] = True
            else:
                chosen[b].append(t)
                probs[b].append(math.exp(float(lp[b, t])))
                states[b] = grammar.step(states[b], t)
            nxt.append(t)
        if all(finished):
            break
        tgt = torch.cat([tgt, torch.tensor(nxt, device=src.device)[:, None]], dim=1)
    return [Decoded(c, [vocab.tokens[i] for i in c], lq, p) for c, lq, p in zip(chosen, logp, probs)]


@torch.no_grad()
def beam_decode(model, src: torch.Tensor, grammar: PrefixGrammar, beam: int = 4) -> list[Decoded]:
    """src (1, S) -> up to `beam` complete programs, most probable first."""
    vocab = grammar.vocab
    memory, key_mask = model.encode(src)
    # a hypothesis: (logprob, ids, token probs, state)
    live = [(0.0, [], [], grammar.start())]
    done: list[Decoded] = []
    for _ in range(grammar.max_len + 1):
        if not live:
            break
        n = len(live)
        tgt = torch.tensor([[vocab.bos_id] + h[1] for h in live], dtype=torch.long, device=src.device)
        logits = model.decode(tgt, memory.expand(n, -1, -1), key_mask.expand(n, -1, -1, -1))[:, -1]
        mask = torch.stack([grammar.allowed(h[3]) for h in live]).to(logits.device)
        lp = _masked_log_softmax(logits, mask)
        cands = []
        for k, (score, ids, tp, state) in enumerate(live):
            top = torch.topk(lp[k], min(beam, int(mask[k].sum())))
            for v, t in zip(top.values.tolist(), top.indices.tolist()):
                cands.append((score + v, ids, tp, state, t, v))
        cands.sort(key=lambda c: -c[0])
        live = []
        for score, ids, tp, state, t, v in cands:
            if t == vocab.eos_id:
                done.append(Decoded(ids, [vocab.tokens[i] for i in ids], score, tp))
            elif len(live) < beam:
                live.append((score, ids + [t], tp + [math.exp(v)], grammar.step(state, t)))
            if len(live) >= beam and len(done) >= beam:
                break
        if len(done) >= beam and (not live or max(h[0] for h in live) < sorted(d.logprob for d in done)[-beam]):
            break
    done.sort(key=lambda d: -d.logprob)
    return done[:beam]
