"""The question parser's encoder-decoder in numpy, with a K/V cache for decoding.

`NumpySeq2Seq` computes what `vqa.language.seq2seq.Seq2Seq` computes in eval mode, from its
state_dict arrays; `stepper(src)` returns a `vqa.language.grammar.Stepper` that feeds one
token per row and step, keeping each decoder layer's self-attention keys/values (the torch
model re-runs the decoder over the whole prefix instead), so the constrained greedy and
beam searches of `vqa.language.grammar` run on it unchanged.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..language.config import Seq2SeqConfig
from .ops import FIXED_GROUPS, LayerNorm, Linear, attention, gelu

LN_EPS = 1e-5  # torch.nn.LayerNorm's default


class _Attention:
    """One `vqa.nn.attention.Attention` (fixed groups): Q, K/V and output projections."""

    def __init__(self, w: dict, name: str, hq: int, hkv: int, d: int):
        qkv, bias = w[name + ".qkv.weight"], w.get(name + ".qkv.bias")
        n = hq * d
        self.q = Linear(qkv[:n], None if bias is None else bias[:n])
        self.kv = Linear(qkv[n:], None if bias is None else bias[n:])
        self.proj = Linear(w[name + ".proj.weight"], w[name + ".proj.bias"])
        self.hq, self.hkv, self.d = hq, hkv, d

    def heads(self, x: np.ndarray, n: int) -> np.ndarray:
        """(B, T, n*d) -> (B, n, T, d)."""
        B, T, _ = x.shape
        return x.reshape(B, T, n, self.d).transpose(0, 2, 1, 3)

    def keys_values(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (B, M, D) -> k, v (B, Hkv, M, d)."""
        kv = self.heads(self.kv(x), 2 * self.hkv)
        return kv[:, :self.hkv], kv[:, self.hkv:]

    def __call__(self, x: np.ndarray, k: np.ndarray, v: np.ndarray, mask=None) -> np.ndarray:
        out = attention(self.heads(self.q(x), self.hq), k, v, mask)   # (B, Hq, N, d)
        B, H, N, d = out.shape
        return self.proj(out.transpose(0, 2, 1, 3).reshape(B, N, H * d))


class _MLP:
    def __init__(self, w: dict, p: str):
        self.fc1, self.fc2 = Linear(w[p + "mlp.0.weight"], w[p + "mlp.0.bias"]), Linear(w[p + "mlp.2.weight"], w[p + "mlp.2.bias"])

    def __call__(self, x):
        return self.fc2(gelu(self.fc1(x)))


class NumpySeq2Seq:
    def __init__(self, arrays: dict[str, np.ndarray], config: Seq2SeqConfig):
        self.config = c = config
        if c.variant not in FIXED_GROUPS:
            raise DataError(f"the numpy runtime does not run attention variant {c.variant!r} "
                            f"(supported: {', '.join(FIXED_GROUPS)}); use the torch backend")
        w = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
        d = c.dim // c.n_heads
        hq = w["encoder.0.attn.proj.weight"].shape[1] // d
        hkv = (w["encoder.0.attn.qkv.weight"].shape[0] // d - hq) // 2
        if hkv < 1 or hq % hkv:
            raise DataError(f"the numpy runtime needs query heads ({hq}) in equal groups per K/V head "
                            f"({hkv}); attention variant {c.variant!r} is not supported")

        def ln(name):
            return LayerNorm(w[name + ".weight"], w[name + ".bias"], LN_EPS)

        self.src_embed, self.src_pos = w["src_embed.weight"], w["src_pos.weight"]
        self.tgt_embed, self.tgt_pos = w["tgt_embed.weight"], w["tgt_pos.weight"]
        self.out = np.ascontiguousarray(self.tgt_embed.T)   # tied output projection (D, V)
        self.encoder = [(ln(f"encoder.{i}.norm1"), _Attention(w, f"encoder.{i}.attn", hq, hkv, d),
                         ln(f"encoder.{i}.norm2"), _MLP(w, f"encoder.{i}."))
                        for i in range(c.enc_layers)]
        self.decoder = [(ln(f"decoder.{i}.norm1"), _Attention(w, f"decoder.{i}.self_attn", hq, hkv, d),
                         ln(f"decoder.{i}.norm2"), _Attention(w, f"decoder.{i}.cross_attn", hq, hkv, d),
                         ln(f"decoder.{i}.norm3"), _MLP(w, f"decoder.{i}."))
                        for i in range(c.dec_layers)]
        self.enc_norm, self.dec_norm = ln("enc_norm"), ln("dec_norm")
        self.step_layers = [_StepLayer(layer, c.dim) for layer in self.decoder]

    def eval(self) -> "NumpySeq2Seq":  # the torch model's API (always in eval mode)
        return self

    def encode(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """src (B, S) int -> memory (B, S, D), key_mask (B, 1, 1, S) bool."""
        src = np.asarray(src, dtype=np.int64)
        S = src.shape[1]
        if S > self.config.max_src_len:
            raise ValueError(f"question of {S} tokens is longer than max_src_len={self.config.max_src_len}")
        key_mask = (src != self.config.pad_id)[:, None, None, :]
        x = self.src_embed[src] + self.src_pos[:S]
        for norm1, attn, norm2, mlp in self.encoder:
            h = norm1(x)
            x = x + attn(h, *attn.keys_values(h), key_mask)
            x = x + mlp(norm2(x))
        return self.enc_norm(x), key_mask

    def stepper(self, src: np.ndarray) -> "NumpyStepper":
        return NumpyStepper(self, np.asarray(src, dtype=np.int64))


def _softmax_(s: np.ndarray) -> np.ndarray:
    s -= s.max(-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(-1, keepdims=True)
    return s


class _FastLayerNorm:
    """Normalisation only: the LayerNorm's scale and shift are folded into the next linear."""

    def __init__(self, dim: int, eps: float):
        self.inv_d, self.eps = np.float32(1 / dim), np.float32(eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xc = x - np.add.reduce(x, -1, keepdims=True) * self.inv_d
        xc /= np.sqrt(np.add.reduce(xc * xc, -1, keepdims=True) * self.inv_d + self.eps)
        return xc


def _fold(ln: LayerNorm, lin: Linear, scale: float = 1.0) -> Linear:
    """lin(ln(x)) = lin'(normalise(x)): W' = diag(g) W, b' = beta W + b; times `scale`."""
    out = Linear(np.zeros((1, 1), np.float32))
    out.wt = np.ascontiguousarray(ln.w[:, None] * lin.wt * scale, dtype=np.float32)
    b = ln.b @ lin.wt + (0 if lin.b is None else lin.b)
    out.b = np.asarray(b * scale, dtype=np.float32)
    return out


class _StepLayer:
    """One decoder layer for one-token steps: (n, D) rows, LayerNorms folded, 1/sqrt(d) in the queries."""

    def __init__(self, layer: tuple, dim: int):
        norm1, self_attn, norm2, cross_attn, norm3, mlp = layer
        hq, hkv, d = self_attn.hq, self_attn.hkv, self_attn.d
        self.hq, self.hkv, self.g, self.d = hq, hkv, hq // hkv, d
        self.norm = _FastLayerNorm(dim, LN_EPS)
        scale = d ** -0.5
        qkv = Linear(np.zeros((1, 1), np.float32))
        qkv.wt = np.concatenate([self_attn.q.wt * scale, self_attn.kv.wt], 1)
        qkv.b = np.concatenate([self_attn.q.b * scale, self_attn.kv.b])
        self.qkv = _fold(norm1, qkv)
        self.proj1 = self_attn.proj
        self.q2 = _fold(norm2, cross_attn.q, scale)
        self.cross = cross_attn
        self.proj2 = cross_attn.proj
        self.fc1 = _fold(norm3, mlp.fc1)
        self.fc2 = mlp.fc2

    def cross_kv(self, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoder memory (B, S, D) -> K^T (B, Hkv, d, S), V (B, Hkv, S, d)."""
        k, v = self.cross.keys_values(memory)
        return np.ascontiguousarray(k.transpose(0, 1, 3, 2)), np.ascontiguousarray(v)

    def __call__(self, y: np.ndarray, K: np.ndarray, V: np.ndarray, t: int, ckt: np.ndarray, cv: np.ndarray,
                 bias: np.ndarray) -> np.ndarray:
        """y (n, D); K, V (n, Hkv, T, d) caches written at position t; cross K^T, V; additive mask
        bias (n, 1, 1, S) -> y (n, D)."""
        n = y.shape[0]
        hq, hkv, g, d = self.hq, self.hkv, self.g, self.d
        qkv = self.qkv(self.norm(y))                                       # (n, (Hq + 2 Hkv) d)
        K[:, :, t] = qkv[:, hq * d:(hq + hkv) * d].reshape(n, hkv, d)
        V[:, :, t] = qkv[:, (hq + hkv) * d:].reshape(n, hkv, d)
        q = qkv[:, :hq * d].reshape(n, hkv, g, d)
        p = _softmax_(q @ K[:, :, :t + 1].transpose(0, 1, 3, 2))           # (n, Hkv, g, t+1)
        y = y + self.proj1((p @ V[:, :, :t + 1]).reshape(n, hq * d))
        q = self.q2(self.norm(y)).reshape(n, hkv, g, d)
        s = q @ ckt                                                        # (n, Hkv, g, S)
        s += bias
        y = y + self.proj2((_softmax_(s) @ cv).reshape(n, hq * d))
        return y + self.fc2(gelu(self.fc1(self.norm(y))))


class NumpyStepper:
    """`vqa.language.grammar.Stepper` over `NumpySeq2Seq`: preallocated per-layer K/V caches,
    one token per row and step."""

    def __init__(self, model: NumpySeq2Seq, src: np.ndarray):
        self.m = model
        memory, key_mask = model.encode(src)
        n, c = src.shape[0], model.config
        self.layers = model.step_layers
        self.cross = [layer.cross_kv(memory) for layer in self.layers]
        self.bias = np.where(key_mask, np.float32(0), np.float32(-np.inf)).astype(np.float32)  # (n, 1, 1, S)
        first = self.layers[0]
        self.cache = [(np.zeros((n, first.hkv, c.max_tgt_len, first.d), np.float32),
                       np.zeros((n, first.hkv, c.max_tgt_len, first.d), np.float32)) for _ in self.layers]
        self.t = 0

    @property
    def rows(self) -> int:
        return self.bias.shape[0]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        m, t = self.m, self.t
        if t >= m.config.max_tgt_len:
            raise ValueError(f"decoding past max_tgt_len={m.config.max_tgt_len}")
        y = m.tgt_embed[np.asarray(tokens, dtype=np.int64)] + m.tgt_pos[t]            # (n, D)
        for layer, (K, V), (ckt, cv) in zip(self.layers, self.cache, self.cross):
            y = layer(y, K, V, t, ckt, cv, self.bias)
        self.t += 1
        return m.dec_norm(y) @ m.out                                                # (n, V)

    def select(self, rows: list[int]) -> None:
        idx = np.asarray(rows, dtype=np.int64)
        self.bias = self.bias[idx]
        self.cross = [(k[idx], v[idx]) for k, v in self.cross]
        self.cache = [(K[idx], V[idx]) for K, V in self.cache]
