"""Constrained decoding with the torch model: `greedy_decode` and `beam_decode`.

The algorithm and the grammar live in the torch-free `vqa.language.grammar` (shared with the
numpy runtime, `vqa.runtime`); this module only adapts a `Seq2Seq` to its `Stepper`
protocol. The torch stepper re-runs the decoder over the whole prefix at every step.

    grammar = PrefixGrammar(vocab, max_len=40)
    greedy_decode(model, src, grammar)  -> [Decoded(ids, tokens, logprob, token_probs)]
    beam_decode(model, src_row, grammar, beam=4) -> [Decoded, ...] best first
"""
from __future__ import annotations

import numpy as np
import torch

from .grammar import Decoded, GrammarState, PrefixGrammar, beam_search, greedy_search

__all__ = ["Decoded", "GrammarState", "PrefixGrammar", "TorchStepper", "beam_decode", "greedy_decode"]


class TorchStepper:
    """`Stepper` over a torch `Seq2Seq`: rows start as the rows of `src` (B, S) (a tensor or array)."""

    def __init__(self, model, src):
        self.model = model
        if not isinstance(src, torch.Tensor):
            src = torch.as_tensor(src, dtype=torch.long, device=next(model.parameters()).device)
        self.memory, self.key_mask = model.encode(src)
        self.source = torch.arange(src.shape[0], device=src.device)  # row -> row of src
        self.tgt = torch.zeros(src.shape[0], 0, dtype=torch.long, device=src.device)

    @property
    def rows(self) -> int:
        return len(self.source)

    @torch.no_grad()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.tgt.device)
        self.tgt = torch.cat([self.tgt, t[:, None]], dim=1)
        logits = self.model.decode(self.tgt, self.memory[self.source], self.key_mask[self.source])[:, -1]
        return logits.float().cpu().numpy()

    def select(self, rows: list[int]) -> None:
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.tgt.device)
        self.tgt, self.source = self.tgt[idx], self.source[idx]


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, grammar: PrefixGrammar) -> list[Decoded]:
    """src (B, S) long (padded with the pad id) -> one `Decoded` per row."""
    return greedy_search(TorchStepper(model, src), grammar)


@torch.no_grad()
def beam_decode(model, src: torch.Tensor, grammar: PrefixGrammar, beam: int = 4) -> list[Decoded]:
    """src (1, S) -> up to `beam` complete programs, most probable first."""
    return beam_search(TorchStepper(model, src), grammar, beam)
