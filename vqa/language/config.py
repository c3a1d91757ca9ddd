"""`Seq2SeqConfig`: the shape of the question parser's model (torch-free, shared by the torch
model and the numpy runtime)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Seq2SeqConfig:
    src_vocab: int
    tgt_vocab: int
    dim: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2
    variant: str = "gqa"
    enc_layers: int = 3
    dec_layers: int = 3
    mlp_ratio: int = 4
    dropout: float = 0.1
    max_src_len: int = 64
    max_tgt_len: int = 48
    pad_id: int = 0  # same id on both sides

    def to_dict(self) -> dict:
        return asdict(self)
