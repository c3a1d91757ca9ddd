"""Multi-head latent attention (MLA) and the TransMLA conversion of GQA layers.

After Meng et al. (2025), "TransMLA: Multi-head latent attention is all you need", written
from the paper's description.

MLA caches one latent vector per token, c = W_down x + b_down (latent_dim numbers), and
rebuilds every query head's key and value from it with up-projections:
k_h = W_uk[h] c + b_uk[h], v_h = W_uv[h] c + b_uv[h] (H_q heads of d_head each).

TransMLA: a GQA layer *is* an MLA layer. Take the latent to be GQA's own K and V,
c = [K | V] (2 * H_kv * d_head numbers, the GQA K/V cache), and W_uk, W_uv the fixed
head-replication matrices (query head h reads K/V head h // (H_q / H_kv): an identity block
there, zeros elsewhere). `mla_from_gqa` builds that layer from a trained `Attention`; its
outputs equal the GQA layer's (up to float rounding), its K/V cache is the same size,
and from there the up-projections are ordinary trainable weights: each query head may
learn its own key/value mix of the latent, which GQA cannot express.

Smaller cache (TransMLA's compression step, here as PCA): `compress_latent(layer, latents,
rank)` projects the latent onto its top-`rank` principal directions measured on
calibration latents, c' = U^T (c - mean); the down-projection becomes U^T W_down and the
up-projections W_up U with the mean folded into their biases. `rank` = latent_dim is
exact; below it the error is what the discarded directions carried.

Inference on the cache (`attend_latent`): the up-projections are absorbed, the keys are
never expanded: scores_h = (W_uk[h]^T q_h) . c (the key bias adds the same q_h . b_uk[h] to
every score of a row and cancels in the softmax), out_h = W_uv[h] (sum_t a_t c_t) + b_uv[h]
(the weights sum to one). That is a single-K/V-head attention over the latents, run by
``F.scaled_dot_product_attention(..., enable_gqa=True)``.

In the registry: ``Attention(dim, n_heads, variant="mla", n_kv_heads=..., latent_dim=...)``
builds an `MLAttention` (a subclass of `Attention`, fused ``qkv`` rows [Q | latent]); with
the default latent_dim = 2 H_kv d_head it starts as the GQA layer of the same ``qkv``.

`seq2seq_to_mla(model)` converts the attention layers of a `vqa.language.seq2seq.Seq2Seq`
(decoder by default) from outside that package; `kv_cache_bytes` counts cache bytes per
token before and after; `greedy_latent_cache` decodes keeping only latents;
`finetune_up_projections` trains k_up/v_up alone to match the original after compression.
The report on the question parser lives with the parser, in `vqa.language.mla_report`
(``python -m vqa.language.mla_report QUESTIONS.json``): this module imports only torch.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .attention import FIXED_GROUP_VARIANTS, Attention, explicit_attention


class MLAttention(Attention):
    """Multi-head latent attention in the `Attention` registry: ``Attention(dim, n_heads,
    variant="mla", n_kv_heads=..., latent_dim=...)`` builds one. Same call signature
    (context, attn_mask, is_causal, return_attention).

    Heads: n_q_heads query heads of d_head = dim // n_heads (defaults as gqa); n_kv_heads
    only sets the default latent_dim = 2 n_kv_heads d_head (GQA's cache size), and then
    the up-projections start as GQA's head replication (a fresh "mla" layer computes what
    a "gqa" layer with the same ``qkv`` does, and can learn beyond it).

    Parameters: ``qkv`` Linear D -> H_q d + latent_dim, rows [Q | latent] (with the default
    latent the same shape as gqa's [Q | K | V]); ``k_up``, ``v_up`` Linear latent_dim -> H_q d;
    ``proj`` Linear H_q d -> D.
    """

    def __init__(self, dim: int, n_heads: int, *, variant: str = "mla", n_q_heads: int | None = None,
                 n_kv_heads: int | None = None, latent_dim: int | None = None, **kw):
        super().__init__(dim, n_heads, variant="mla", n_q_heads=n_q_heads, n_kv_heads=n_kv_heads, **kw)
        hq, hkv, d = self.n_q_heads, self.n_kv_heads, self.d_head
        r = self.latent_dim = latent_dim or 2 * hkv * d
        if r < 1:
            raise ValueError(f"mla: latent_dim={r}: expected at least 1")
        if r != 2 * hkv * d:
            self.qkv = nn.Linear(dim, hq * d + r, bias=self.qkv.bias is not None)
        self.k_up = nn.Linear(r, hq * d)
        self.v_up = nn.Linear(r, hq * d)
        nn.init.zeros_(self.k_up.bias)
        nn.init.zeros_(self.v_up.bias)
        if r == 2 * hkv * d and hq % hkv == 0:
            rep = replication_matrix(hq, hkv, d)
            with torch.no_grad():
                self.k_up.weight.copy_(torch.cat([rep, torch.zeros_like(rep)], 1))
                self.v_up.weight.copy_(torch.cat([torch.zeros_like(rep), rep], 1))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", latent_dim={self.latent_dim}"

    def _split(self):
        """(W_q, b_q, W_down, b_down): views of the fused qkv rows."""
        w, b, n = self.qkv.weight, self.qkv.bias, self.n_q_heads * self.d_head
        return w[:n], None if b is None else b[:n], w[n:], None if b is None else b[n:]

    def latent(self, context: torch.Tensor) -> torch.Tensor:
        """context (B, M, D) -> the cached latents (B, M, latent_dim)."""
        _, _, w, b = self._split()
        return F.linear(context, w, b)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, M, _ = t.shape
        return t.view(B, M, self.n_q_heads, self.d_head).transpose(1, 2)     # (B, H, M, d)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """x (B, N, D) -> q, k, v (B, H_q, ., d): K and V expanded from the latent."""
        wq, bq, _, _ = self._split()
        c = self.latent(x if context is None else context)
        return self._heads(F.linear(x, wq, bq)), self._heads(self.k_up(c)), self._heads(self.v_up(c))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                return_attention: bool = False):
        """Training form: K and V expanded from the latent, one per query head."""
        B, N, _ = x.shape
        q, k, v = self.project(x, context)
        if return_attention:
            out, attn = explicit_attention(q, k, v, attn_mask, is_causal, self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask, self.dropout if self.training else 0.0,
                                                 is_causal, scale=self.scale)
        out = self.proj(out.transpose(1, 2).reshape(B, N, self.n_q_heads * self.d_head))
        return (out, attn) if return_attention else out

    def attend_latent(self, x: torch.Tensor, cache: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                      is_causal: bool = False) -> torch.Tensor:
        """Inference form on a latent cache (B, M, latent_dim), up-projections absorbed
        (see module doc). x (B, N, D) -> (B, N, D); equals forward(x, context) when
        cache = latent(context)."""
        B, N, _ = x.shape
        H, d, r = self.n_q_heads, self.d_head, self.latent_dim
        wq, bq, _, _ = self._split()
        q = self._heads(F.linear(x, wq, bq))                                 # (B, H, N, d)
        w_uk = self.k_up.weight.view(H, d, r)
        w_uv = self.v_up.weight.view(H, d, r)
        q_lat = torch.einsum("bhnd,hdr->bhnr", q, w_uk)                      # (B, H, N, r)
        c = cache[:, None]                                                   # (B, 1, M, r): one shared head
        o_lat = F.scaled_dot_product_attention(q_lat, c, c, attn_mask, 0.0, is_causal, scale=self.scale,
                                               enable_gqa=H > 1)             # (B, H, N, r)
        out = torch.einsum("bhnr,hdr->bhnd", o_lat, w_uv) + self.v_up.bias.view(1, H, 1, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, H * d))

    def cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        return self.latent_dim * torch.empty((), dtype=dtype).element_size()


def replication_matrix(n_q_heads: int, n_kv_heads: int, d_head: int) -> torch.Tensor:
    """(H_q d, H_kv d): block (h, h // (H_q/H_kv)) is the d x d identity, the rest zeros."""
    g = n_q_heads // n_kv_heads
    sel = torch.zeros(n_q_heads, n_kv_heads)
    sel[torch.arange(n_q_heads), torch.arange(n_q_heads) // g] = 1.0
    return torch.kron(sel, torch.eye(d_head))


def mla_from_gqa(attn: Attention) -> MLAttention:
    """TransMLA: the MLA layer with the same outputs as the fixed-group `attn` (left unchanged).

    Latent = [K heads | V heads] (latent_dim = 2 H_kv d_head, the same ``qkv`` weights);
    k_up / v_up replicate the K/V heads to the query heads. pgqa converts to its eval
    behaviour (no noise)."""
    if attn.variant not in FIXED_GROUP_VARIANTS:
        raise ValueError(f"mla_from_gqa: {attn.variant} has no fixed K/V groups "
                         f"(expected one of {', '.join(FIXED_GROUP_VARIANTS)})")
    w = attn.qkv.weight
    mla = MLAttention(attn.dim, attn.n_heads, n_q_heads=attn.n_q_heads, n_kv_heads=attn.n_kv_heads,
                      qkv_bias=attn.qkv.bias is not None, dropout=attn.dropout)
    mla = mla.to(device=w.device, dtype=w.dtype)           # k_up / v_up: the replication matrices
    with torch.no_grad():
        mla.qkv.load_state_dict(attn.qkv.state_dict())
        mla.proj.load_state_dict(attn.proj.state_dict())
    mla.train(attn.training)
    return mla


def pca_basis(latents: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """latents (T, r) -> mean (r,), basis U (r, rank) (top principal directions), and the
    explained share of variance of each kept direction."""
    z = latents.detach().double().reshape(-1, latents.shape[-1])
    mean = z.mean(0)
    cov = (z - mean).T @ (z - mean) / max(1, z.shape[0] - 1)
    vals, vecs = torch.linalg.eigh(cov)
    order = torch.argsort(vals, descending=True)
    vals, vecs = vals[order], vecs[:, order]
    return mean, vecs[:, :rank], vals[:rank] / vals.sum().clamp_min(1e-30)


def compress_latent(layer: MLAttention, latents: torch.Tensor, rank: int) -> MLAttention:
    """A copy of `layer` whose latent is the top-`rank` PCA coordinates of `latents`
    (calibration latents of this layer, (..., latent_dim), e.g. from `layer.latent`)."""
    if not 1 <= rank <= layer.latent_dim:
        raise ValueError(f"rank={rank}: expected 1..{layer.latent_dim}")
    mean, U, _ = pca_basis(latents, rank)
    wq, bq, w, b = layer._split()
    mean, U = mean.to(w), U.to(w)
    new = MLAttention(layer.dim, layer.n_heads, n_q_heads=layer.n_q_heads, n_kv_heads=layer.n_kv_heads,
                      latent_dim=rank, qkv_bias=True, dropout=layer.dropout)
    new = new.to(device=w.device, dtype=w.dtype)
    n = layer.n_q_heads * layer.d_head
    with torch.no_grad():
        new.proj.load_state_dict(layer.proj.state_dict())
        new.qkv.weight[:n] = wq
        new.qkv.bias[:n] = bq if bq is not None else 0.0
        new.qkv.weight[n:] = U.T @ w                                     # c' = U^T (W x + b - mean)
        new.qkv.bias[n:] = U.T @ ((b if b is not None else 0.0) - mean)
        for old, up in ((layer.k_up, new.k_up), (layer.v_up, new.v_up)):
            up.weight.copy_(old.weight @ U)                              # W (mean + U c') + b
            up.bias.copy_(old.weight @ mean + old.bias)
    new.train(layer.training)
    return new


# -- whole models ------------------------------------------------------------------------
def convert_to_mla(model: nn.Module, names: tuple[str, ...] | None = None) -> nn.Module:
    """A deep copy of `model` with its fixed-group `Attention` children replaced by
    `mla_from_gqa` (all of them, or those whose qualified name starts with one of `names`)."""
    model = copy.deepcopy(model)
    for parent_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, Attention) and not isinstance(child, MLAttention) and (names is None or full.startswith(names)):
                setattr(module, child_name, mla_from_gqa(child))
    return model


def seq2seq_to_mla(model: nn.Module, *, encoder: bool = False) -> nn.Module:
    """A `Seq2Seq` (vqa.language.seq2seq) with its decoder attention layers (self and cross;
    the encoder too with encoder=True) in MLA form, same outputs."""
    return convert_to_mla(model, ("decoder",) + (("encoder",) if encoder else ()))


def mla_layers(model: nn.Module) -> dict[str, MLAttention]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MLAttention)}


def kv_cache_bytes(model: nn.Module, dtype: torch.dtype = torch.float32, prefix: str = "") -> dict:
    """K/V cache bytes per cached token of every attention layer under `prefix`:
    {name: bytes}; GQA 2 * H_kv * d_head * element size, MLA latent_dim * element size."""
    size = torch.empty((), dtype=dtype).element_size()
    out = {}
    for name, m in model.named_modules():
        if not name.startswith(prefix):
            continue
        if isinstance(m, MLAttention):
            out[name] = m.latent_dim * size
        elif isinstance(m, Attention):
            out[name] = 2 * m.n_kv_heads * m.d_head * size
    return out


@torch.no_grad()
def collect_latents(model: nn.Module, run, masks: dict | None = None) -> dict[str, torch.Tensor]:
    """Latents of every MLA layer while `run()` executes (forward hooks): {name: (T, r)}.

    masks: {name: bool tensor (B, M) True = keep} or a callable (name, context) -> mask,
    to leave out padding tokens; default: all tokens."""
    store: dict[str, list] = {}
    hooks = []
    for name, layer in mla_layers(model).items():
        def hook(mod, args, kwargs, out, name=name):
            x = args[0]
            context = args[1] if len(args) > 1 else kwargs.get("context")
            ctx = x if context is None else context
            c = mod.latent(ctx)
            keep = masks(name, ctx) if callable(masks) else (masks or {}).get(name)
            store.setdefault(name, []).append(c[keep] if keep is not None else c.reshape(-1, c.shape[-1]))
        hooks.append(layer.register_forward_hook(hook, with_kwargs=True))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v) for k, v in store.items()}


def compress_model(model: nn.Module, latents: dict[str, torch.Tensor], rank: int) -> nn.Module:
    """A deep copy of `model` with every MLA layer named in `latents` compressed to `rank`."""
    model = copy.deepcopy(model)
    for parent_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, MLAttention) and full in latents:
                setattr(module, child_name, compress_latent(child, latents[full], min(rank, child.latent_dim)))
    return model


# -- latent-cache decoding of a Seq2Seq --------------------------------------------------
@torch.no_grad()
def greedy_latent_cache(model: nn.Module, src: torch.Tensor, steps: int, bos_id: int = 1) -> dict:
    """Greedy token-by-token decoding of a `Seq2Seq` whose decoder layers are MLA, keeping
    only the latents as cache (self-attention: one latent per generated token and layer;
    cross-attention: the memory's latents, computed once). No grammar; it shows the
    cache at work and is checked against the full (uncached) decoder in the tests.

    -> {"tokens" (B, steps+1) long starting with BOS, "logits" (B, steps, V),
        "cache_numbers_per_token": latent numbers cached per generated token}."""
    memory, key_mask = model.encode(src)
    B = src.shape[0]
    blocks = list(model.decoder)
    for blk in blocks:
        if not isinstance(blk.self_attn, MLAttention) or not isinstance(blk.cross_attn, MLAttention):
            raise ValueError("greedy_latent_cache: convert the decoder first (seq2seq_to_mla)")
    cross = [blk.cross_attn.latent(memory) for blk in blocks]
    self_cache = [memory.new_zeros(B, 0, blk.self_attn.latent_dim) for blk in blocks]
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    logits = []
    for t in range(steps):
        y = model.tgt_embed(tokens[:, -1:]) + model.tgt_pos.weight[t]
        for i, blk in enumerate(blocks):
            h = blk.norm1(y)
            self_cache[i] = torch.cat([self_cache[i], blk.self_attn.latent(h)], 1)
            y = y + blk.self_attn.attend_latent(h, self_cache[i])
            y = y + blk.cross_attn.attend_latent(blk.norm2(y), cross[i], attn_mask=key_mask)
            y = y + blk.mlp(blk.norm3(y))
        step = model.dec_norm(y) @ model.tgt_embed.weight.T
        logits.append(step[:, 0])
        tokens = torch.cat([tokens, step[:, 0].argmax(-1, keepdim=True)], 1)
    return {"tokens": tokens, "logits": torch.stack(logits, 1),
            "cache_numbers_per_token": sum(blk.self_attn.latent_dim for blk in blocks)}


# -- distillation of the up-projections ------------------------------------------------------
def finetune_up_projections(model: nn.Module, teacher: nn.Module, src: torch.Tensor, tgt: torch.Tensor,
                            steps: int = 100, lr: float = 1e-3, pad_id: int = 0, batch: int = 32,
                            seed: int = 0) -> list[float]:
    """Train only the MLA layers' k_up / v_up of `model` (in place) to match `teacher`'s
    next-token distributions (KL at the non-pad target positions, teacher forcing).
    Returns the loss per step."""
    params = [p for m in mla_layers(model).values() for p in (*m.k_up.parameters(), *m.v_up.parameters())]
    if not params:
        return []
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        target = teacher.eval()(src, tgt).log_softmax(-1)
    model.eval()                                        # no dropout: match the deterministic teacher
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(src), (min(batch, len(src)),), generator=g)
            logp = model(src[idx], tgt[idx]).log_softmax(-1)
            keep = tgt[idx] != pad_id
            loss = F.kl_div(logp[keep], target[idx][keep], log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return losses
