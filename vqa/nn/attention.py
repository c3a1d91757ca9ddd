"""The grouped-query attention family in one module.

`Attention(dim, n_heads, variant=..., n_q_heads=..., n_kv_heads=...)` maps tokens
x (B, N, dim) -> (B, N, dim). `n_heads` is the baseline head count H; the head width is
d_head = dim // H for every variant. Variants:

- ``mha``   H query heads, H K/V heads (Vaswani et al.).
- ``mqa``   H query heads, one K/V head (Shazeer 2019).
- ``gqa``   H query heads in groups sharing n_kv_heads K/V heads (Ainslie et al. 2023).
- ``sqa``   sparse query attention (Filipek 2025): H_q < H query heads, H_kv <= H_q K/V
            heads, output projection H_q*d_head -> dim, so score/value FLOPs fall by H/H_q.
            Default H_q = H/2, H_kv = H_q/2.
- ``ssqa``  symmetric SQA: H_q = H_kv = H/2.
- ``xsqa``  extreme SQA: H_q <= H/4 (default H/4), H_kv <= H_q (default H_q).
- ``kdgqa`` key-driven GQA (Khan et al. 2024): query heads are allocated to K/V heads in
            proportion to the key-head norms at every forward pass.
- ``dgqa``  dynamic GQA: the allocation comes from an exponential moving average of the
            key-head norms, updated in training and frozen in eval (a buffer, so it is
            saved with the checkpoint).
- ``pgqa``  perturbed GQA: Gaussian noise (std `noise_std`) is subtracted from the grouped
            attention outputs in training only; eval is deterministic.
- ``mixsga`` token-routed mixture of weight-shared GQA experts (Song et al. 2025): every key
            token gets one K/V group size, important tokens finer ones. Defaults H_q = H,
            H_kv = H_q (the finest expert). `Attention(..., variant="mixsga")` returns a
            `vqa.nn.mixsga.MixSGAttention` (module doc there).
- ``mla``   multi-head latent attention (TransMLA, Meng et al. 2025): one cached latent per
            token, per-query-head K/V up-projections; heads default as gqa, latent_dim
            2 H_kv d_head. Builds a `vqa.nn.mla.MLAttention` (module doc there).

Fixed groups (mha, mqa, gqa, sqa, ssqa, xsqa, pgqa) call
``F.scaled_dot_product_attention(..., enable_gqa=True)``: query head h reads K/V head
h // (H_q / H_kv) and no K/V copy is made. One exception, measured: a single K/V head
trained on CPU with batch below the thread count passes K/V as a stride-0 expand view
(still no copy in the forward), see `Attention._expand_single_kv`.

Variable groups (kdgqa, dgqa). Query heads are assigned to K/V heads in order: with counts
(c_0, ..., c_{H_kv-1}) summing to H_q, the first c_0 query heads read K/V head 0, the next
c_1 head 1, and so on; every K/V head gets at least one query head (so H_kv <= H_q).
Counts come from largest-remainder rounding of H_q * norm_g / sum(norms), where norm_g is
the Frobenius norm of K/V head g's keys (over tokens and channels;
padded key tokens count too, so with padding the allocation depends on it).
- kdgqa computes the norms and counts *per sample*, from that sample's own keys: a sample's
  output never depends on the other samples of the batch (no batch statistics). Samples
  with different counts cannot share one `enable_gqa` call, so K and V are gathered to one
  head per query head, k[b, idx[b, h]] -> (B, H_q, M, d_head): a gather costing as much
  memory and traffic as MHA's K/V (2*B*H_q*M*d_head elements), not a K/V projection. When
  every sample's counts are the uniform H_q/H_kv, the no-copy `enable_gqa` call is used.
- dgqa's counts are shared by the whole batch (one buffer), so without autograd it runs one
  `enable_gqa` call per K/V group on contiguous slices of the query heads: H_kv calls, no
  copies. With autograd it uses the gather above (index_select on the head axis): measured
  on CPU (torch 2.14, 2 threads, batch 1, 4,096 tokens), the backward of an SDPA call with a
  single K/V head parallelises poorly (B*H_kv work units) and the per-group calls made a
  training step 1.3x slower than MHA, the gather about as fast as MHA.

Attention maps for explanations: ``forward(..., return_attention=True)`` returns
(out, attn) with attn (B, H_q, N, M) computed by an explicit softmax; only that call pays
for the N x M matrix (and the K/V expansion), the default path is the fused kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("mha", "mqa", "gqa", "sqa", "ssqa", "xsqa", "kdgqa", "dgqa", "pgqa", "mixsga", "mla")
FIXED_GROUP_VARIANTS = ("mha", "mqa", "gqa", "sqa", "ssqa", "xsqa", "pgqa")
DYNAMIC_GROUP_VARIANTS = ("kdgqa", "dgqa")


def _largest_divisor_at_most(n: int, limit: int) -> int:
    limit = max(1, min(n, limit))
    return next(d for d in range(limit, 0, -1) if n % d == 0)


def resolve_heads(variant: str, n_heads: int, n_q_heads: int | None = None,
                  n_kv_heads: int | None = None) -> tuple[int, int]:
    """(n_q_heads, n_kv_heads) of `variant` with baseline `n_heads`, filling in defaults.

    Raises ValueError naming the setting at fault when the heads do not fit the variant.
    """
    H = n_heads
    if variant not in VARIANTS:
        raise ValueError(f"attention variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if H < 1:
        raise ValueError(f"n_heads={H}: expected at least 1")
    q, kv = n_q_heads, n_kv_heads
    if variant == "mha":
        q, kv = q or H, kv or H
        if q != H or kv != H:
            raise ValueError(f"mha: n_q_heads and n_kv_heads must equal n_heads={H} (got {q}, {kv})")
    elif variant == "mqa":
        q, kv = q or H, kv or 1
        if kv != 1:
            raise ValueError(f"mqa: n_kv_heads must be 1 (got {kv}); use gqa for more K/V heads")
    elif variant in ("gqa", "kdgqa", "dgqa", "pgqa", "mla"):
        q = q or H
        kv = kv or _largest_divisor_at_most(q, q // 4)
    elif variant == "sqa":
        q = q or max(1, H // 2)
        kv = kv or _largest_divisor_at_most(q, q // 2)
        if q >= H:
            raise ValueError(f"sqa: n_q_heads={q} must be below n_heads={H} (fewer query heads)")
    elif variant == "ssqa":
        if H % 2:
            raise ValueError(f"ssqa: n_heads={H} must be even (H_q = H_kv = H/2)")
        q, kv = q or H // 2, kv or H // 2
        if q != H // 2 or kv != H // 2:
            raise ValueError(f"ssqa: n_q_heads = n_kv_heads = n_heads/2 = {H // 2} (got {q}, {kv})")
    elif variant == "mixsga":
        q = q or H
        kv = kv or q
        if q % kv:
            raise ValueError(f"mixsga: n_q_heads={q} must be a multiple of n_kv_heads={kv}")
    elif variant == "xsqa":
        q = q or max(1, H // 4)
        kv = kv or q
        if 4 * q > H:
            raise ValueError(f"xsqa: n_q_heads={q} must be at most n_heads/4 = {H / 4:g}")
    if not 1 <= q <= H:
        raise ValueError(f"{variant}: n_q_heads={q}: expected 1..n_heads={H}")
    if not 1 <= kv <= q:
        raise ValueError(f"{variant}: n_kv_heads={kv}: expected 1..n_q_heads={q}")
    if variant in FIXED_GROUP_VARIANTS and q % kv:
        raise ValueError(f"{variant}: n_q_heads={q} must be a multiple of n_kv_heads={kv}")
    return q, kv


def allocate_query_heads(norms: torch.Tensor, n_q_heads: int) -> torch.Tensor:
    """Query heads per K/V head, proportional to `norms`, at least one each.

    norms (..., H_kv) non-negative -> counts (..., H_kv) long, summing to `n_q_heads` along
    the last axis. Largest-remainder rounding; ties go to the lower K/V head index. Each
    row is computed from that row alone.
    """
    n_kv = norms.shape[-1]
    extra = n_q_heads - n_kv
    if extra < 0:
        raise ValueError(f"n_q_heads={n_q_heads} is below the {n_kv} K/V heads")
    w = norms.float().clamp_min(0)
    w = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    ideal = w * extra
    base = ideal.floor()
    left = extra - base.sum(-1, keepdim=True)                      # (..., 1) heads still to hand out
    order = torch.argsort(base - ideal, dim=-1, stable=True)       # largest remainder first
    rank = torch.argsort(order, dim=-1, stable=True)
    return (1 + base + (rank < left).float()).long()


def head_index(counts: torch.Tensor) -> torch.Tensor:
    """counts (..., H_kv) -> idx (..., H_q): the K/V head each query head reads."""
    n_q = int(counts.sum(-1).flatten()[0])
    ends = counts.cumsum(-1)
    heads = torch.arange(n_q, device=counts.device).expand(*counts.shape[:-1], n_q).contiguous()
    return torch.searchsorted(ends.contiguous(), heads, right=True)


class Attention(nn.Module):
    """Multi-head self- or cross-attention of the grouped-query family (see module doc).

    Args:
        dim: model width D. n_heads: baseline head count H (d_head = D // H).
        variant: one of VARIANTS. n_q_heads / n_kv_heads: override the variant's defaults.
        qkv_bias: bias on the Q/K/V projection. dropout: attention dropout (training only;
            note that dropout > 0 sends CPU SDPA to its slow math path).
        noise_std: pgqa's training noise. momentum: dgqa's moving-average rate.

    Parameters: ``qkv`` Linear D -> (H_q + 2 H_kv) d_head, rows ordered [Q | K | V] with heads
    consecutive inside each; ``proj`` Linear H_q d_head -> D.
    """

    def __new__(cls, *args, variant: str = "mha", **kwargs):
        if cls is Attention and variant == "mixsga":       # the variants with their own class
            from .mixsga import MixSGAttention
            cls = MixSGAttention
        elif cls is Attention and variant == "mla":
            from .mla import MLAttention
            cls = MLAttention
        return super().__new__(cls)

    def __init__(self, dim: int, n_heads: int, *, variant: str = "mha", n_q_heads: int | None = None,
                 n_kv_heads: int | None = None, qkv_bias: bool = True, dropout: float = 0.0,
                 noise_std: float = 0.02, momentum: float = 0.1):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} must be a multiple of n_heads={n_heads}")
        self.n_q_heads, self.n_kv_heads = resolve_heads(variant, n_heads, n_q_heads, n_kv_heads)
        self.dim, self.n_heads, self.variant = dim, n_heads, variant
        self.d_head = dim // n_heads
        self.scale = self.d_head ** -0.5
        self.dropout, self.noise_std, self.momentum = dropout, noise_std, momentum
        self.qkv = nn.Linear(dim, (self.n_q_heads + 2 * self.n_kv_heads) * self.d_head, bias=qkv_bias)
        self.proj = nn.Linear(self.n_q_heads * self.d_head, dim)
        if variant == "dgqa":
            self.register_buffer("key_norm_ema", torch.ones(self.n_kv_heads))

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, dim={self.dim}, n_heads={self.n_heads}, "
                f"n_q_heads={self.n_q_heads}, n_kv_heads={self.n_kv_heads}, d_head={self.d_head}")

    # -- projections -------------------------------------------------------------------
    def project(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """x (B, N, D), context (B, M, D) or None -> q (B, H_q, N, d), k, v (B, H_kv, M, d)."""
        B, N, _ = x.shape
        hq, hkv, d = self.n_q_heads, self.n_kv_heads, self.d_head
        if context is None:
            qkv = self.qkv(x).view(B, N, hq + 2 * hkv, d).transpose(1, 2)   # (B, hq+2hkv, N, d)
            return qkv[:, :hq], qkv[:, hq:hq + hkv], qkv[:, hq + hkv:]
        M = context.shape[1]
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x, w[:hq * d], None if b is None else b[:hq * d])
        kv = F.linear(context, w[hq * d:], None if b is None else b[hq * d:])
        q = q.view(B, N, hq, d).transpose(1, 2)
        kv = kv.view(B, M, 2 * hkv, d).transpose(1, 2)
        return q, kv[:, :hkv], kv[:, hkv:]

    # -- group allocation (kdgqa, dgqa) --------------------------------------------------
    @staticmethod
    def key_norms(k: torch.Tensor) -> torch.Tensor:
        """k (B, H_kv, M, d) -> per-sample Frobenius norm of each key head (B, H_kv), float32."""
        return k.detach().float().pow(2).sum(dim=(-2, -1)).sqrt()

    def group_counts(self, k: torch.Tensor) -> torch.Tensor:
        """Query heads per K/V head: (B, H_kv) for kdgqa (per sample), (H_kv,) for dgqa."""
        if self.variant == "kdgqa":
            return allocate_query_heads(self.key_norms(k), self.n_q_heads)
        if self.variant == "dgqa":
            if self.training:
                with torch.no_grad():
                    batch = self.key_norms(k).mean(0).to(self.key_norm_ema.dtype)
                    self.key_norm_ema.lerp_(batch, self.momentum)
            return allocate_query_heads(self.key_norm_ema, self.n_q_heads)
        raise ValueError(f"{self.variant} has fixed groups")

    def _uniform(self, counts: torch.Tensor) -> bool:
        g = self.n_q_heads // self.n_kv_heads
        return self.n_q_heads % self.n_kv_heads == 0 and bool((counts == g).all())

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                return_attention: bool = False):
        """x (B, N, D) -> out (B, N, D); with return_attention, (out, attn (B, H_q, N, M)).

        context (B, M, D): keys/values come from it (cross-attention); default x.
        attn_mask: bool (True = attend) or float additive, broadcastable to (B, H_q, N, M).
        """
        B, N, _ = x.shape
        q, k, v = self.project(x, context)
        dropout = self.dropout if self.training else 0.0
        attn = None
        counts = self.group_counts(k) if self.variant in DYNAMIC_GROUP_VARIANTS else None
        if return_attention:
            k_full, v_full = self.expand_kv(k, v, counts)
            out, attn = explicit_attention(q, k_full, v_full, attn_mask, is_causal, self.scale)
        elif counts is None or self._uniform(counts):
            if self._expand_single_kv(q, k):
                k, v = k.expand(B, self.n_q_heads, -1, -1), v.expand(B, self.n_q_heads, -1, -1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout, is_causal,
                                                 enable_gqa=k.shape[1] != self.n_q_heads)
        elif counts.dim() == 1 and not (torch.is_grad_enabled() and q.requires_grad):
            # dgqa inference: one allocation for the batch, one no-copy call per group
            out, start = [], 0
            for g, c in enumerate(counts.tolist()):
                out.append(F.scaled_dot_product_attention(
                    q[:, start:start + c], k[:, g:g + 1], v[:, g:g + 1], _head_slice(attn_mask, start, c),
                    dropout, is_causal, enable_gqa=c > 1))
                start += c
            out = torch.cat(out, dim=1)
        else:   # kdgqa (per-sample allocation) and dgqa training: gather K/V per query head
            k_full, v_full = self.expand_kv(k, v, counts)
            out = F.scaled_dot_product_attention(q, k_full, v_full, attn_mask, dropout, is_causal)
        if self.variant == "pgqa" and self.training and self.noise_std > 0:
            out = out - self.noise_std * torch.randn_like(out)
        out = out.transpose(1, 2).reshape(B, N, self.n_q_heads * self.d_head)   # (B, N, H_q*d)
        out = self.proj(out)
        return (out, attn) if return_attention else out

    @staticmethod
    def _expand_single_kv(q: torch.Tensor, k: torch.Tensor) -> bool:
        """One K/V head, CPU autograd, and B * H_kv below the thread count: pass K/V as a
        stride-0 `expand` view (no copy) instead of `enable_gqa`. Measured (torch 2.14 CPU,
        2 threads, batch 1, 8 query heads, 1,024 tokens, loaded machine): fwd+bwd 1,650 ms
        with enable_gqa, 295 ms with the view, MHA 324 ms; the CPU backward of a single K/V
        head parallelises over B * H_kv. Autograd then sums the K/V gradient of the H_q views
        (a transient buffer the size of MHA's K/V gradient)."""
        return (k.shape[1] == 1 and q.shape[1] > 1 and q.device.type == "cpu" and q.requires_grad
                and torch.is_grad_enabled() and k.shape[0] < torch.get_num_threads())

    def expand_kv(self, k: torch.Tensor, v: torch.Tensor, counts: torch.Tensor | None = None):
        """k, v (B, H_kv, M, d) -> one head per query head (B, H_q, M, d) (a copy)."""
        B, _, M, d = k.shape
        if counts is None:
            g = self.n_q_heads // self.n_kv_heads
            return k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        idx = head_index(counts)                                      # (B, H_q) or (H_q,)
        if idx.dim() == 1:
            return k.index_select(1, idx), v.index_select(1, idx)
        idx = idx[:, :, None, None].expand(B, self.n_q_heads, M, d)
        return k.gather(1, idx), v.gather(1, idx)


def _head_slice(mask: torch.Tensor | None, start: int, n: int):
    """The query heads [start, start+n) of a mask broadcastable to (B, H_q, N, M)."""
    if mask is None or mask.dim() < 3 or mask.shape[-3] == 1:
        return mask
    return mask[..., start:start + n, :, :]


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                       scale: float | None = None):
    """softmax(q k^T * scale + mask) v with the weights returned.

    q (B, H, N, d), k, v (B, H, M, d) -> out (B, H, N, d), attn (B, H, N, M).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale                       # (B, H, N, M)
    if is_causal:
        N, M = scores.shape[-2:]
        keep = torch.ones(N, M, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    attn = scores.softmax(dim=-1)
    return attn @ v, attn
