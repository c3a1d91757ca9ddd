"""A small encoder-decoder transformer for question -> prefix-program translation.

    model = Seq2Seq(Seq2SeqConfig(src_vocab=500, tgt_vocab=48))
    memory, src_mask = model.encode(src)          # src (B, S) long
    logits = model.decode(tgt, memory, src_mask)  # tgt (B, T) long -> (B, T, tgt_vocab)
    logits = model(src, tgt)                      # both at once (teacher forcing)

Pre-norm blocks. All attention is the project's grouped-query attention
(`vqa.nn.attention.Attention`, variant "gqa" by default: `n_heads` query heads sharing
`n_kv_heads` K/V heads): encoder self-attention with a key-padding mask, decoder
self-attention with `is_causal=True`, decoder cross-attention through the module's
`context=` argument (queries from the decoder, keys/values from the encoder memory) with
the same key-padding mask. Learned position embeddings; tied decoder input/output
embeddings. Imports only torch and `vqa.nn`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.attention import Attention
from .config import Seq2SeqConfig

__all__ = ["Seq2Seq", "Seq2SeqConfig"]


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: int, dropout: float):
        super().__init__(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn = Attention(c.dim, c.n_heads, variant=c.variant, n_kv_heads=c.n_kv_heads)
        self.mlp = MLP(c.dim, c.mlp_ratio, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), key_mask (B, 1, 1, S) bool (True = real token) -> (B, S, D)."""
        x = x + self.drop(self.attn(self.norm1(x), attn_mask=key_mask))
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.self_attn = Attention(c.dim, c.n_heads, variant=c.variant, n_kv_heads=c.n_kv_heads)
        self.cross_attn = Attention(c.dim, c.n_heads, variant=c.variant, n_kv_heads=c.n_kv_heads)
        self.mlp = MLP(c.dim, c.mlp_ratio, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """y (B, T, D), memory (B, S, D), key_mask (B, 1, 1, S) -> (B, T, D)."""
        y = y + self.drop(self.self_attn(self.norm1(y), is_causal=True))
        y = y + self.drop(self.cross_attn(self.norm2(y), memory, attn_mask=key_mask))
        return y + self.mlp(self.norm3(y))


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab, c.dim, padding_idx=c.pad_id)
        self.src_pos = nn.Embedding(c.max_src_len, c.dim)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.dim, padding_idx=c.pad_id)
        self.tgt_pos = nn.Embedding(c.max_tgt_len, c.dim)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.dec_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) long -> memory (B, S, D), key_mask (B, 1, 1, S) bool."""
        S = src.shape[1]
        if S > self.config.max_src_len:
            raise ValueError(f"question of {S} tokens is longer than max_src_len={self.config.max_src_len}")
        key_mask = (src != self.config.pad_id)[:, None, None, :]
        x = self.drop(self.src_embed(src) + self.src_pos(torch.arange(S, device=src.device)))
        for block in self.encoder:
            x = block(x, key_mask)
        return self.enc_norm(x), key_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """tgt (B, T) long (starting with BOS), memory (B, S, D) -> logits (B, T, tgt_vocab)."""
        T = tgt.shape[1]
        y = self.drop(self.tgt_embed(tgt) + self.tgt_pos(torch.arange(T, device=tgt.device)))
        for block in self.decoder:
            y = block(y, memory, key_mask)
        return self.dec_norm(y) @ self.tgt_embed.weight.T  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, key_mask = self.encode(src)
        return self.decode(tgt, memory, key_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
