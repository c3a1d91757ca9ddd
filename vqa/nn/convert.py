"""Convert a trained MHA checkpoint to grouped K/V heads (GQA, MQA, KDGQA, DGQA, PGQA).

As in Ainslie et al. (2023): the K and V projection heads of each group are replaced by
their mean, then the model is uptrained. Groups are consecutive heads, matching
`enable_gqa`: new K/V head j is the mean of old K/V heads j*G .. (j+1)*G - 1, and query
head h reads new head h // (H_q / H_kv_new). With G = 1 nothing changes.

Works at three levels: the `qkv` weights of one layer (`pool_kv_heads`), a whole model
(`convert_model`, replaces every `Attention`), or a ViT checkpoint dict
(`convert_vit_checkpoint`).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from .attention import Attention, resolve_heads


def pool_kv_heads(tensor: torch.Tensor, n_q_heads: int, n_kv_heads: int, new_kv_heads: int,
                  d_head: int) -> torch.Tensor:
    """A fused [Q | K | V] weight ((H_q + 2 H_kv) d, D) or bias ((H_q + 2 H_kv) d,) ->
    the same with K and V mean-pooled to `new_kv_heads` heads ((H_q + 2 H_kv') d, ...)."""
    if n_kv_heads % new_kv_heads:
        raise ValueError(f"cannot pool {n_kv_heads} K/V heads into {new_kv_heads} groups "
                         f"(must divide)")
    expected = (n_q_heads + 2 * n_kv_heads) * d_head
    if tensor.shape[0] != expected:
        raise ValueError(f"qkv tensor has {tensor.shape[0]} rows, expected {expected} "
                         f"= ({n_q_heads} + 2*{n_kv_heads}) heads * {d_head}")
    g = n_kv_heads // new_kv_heads
    rest = tensor.shape[1:]
    q, k, v = tensor.split([n_q_heads * d_head, n_kv_heads * d_head, n_kv_heads * d_head])
    pool = lambda t: t.reshape(new_kv_heads, g, d_head, *rest).mean(1).reshape(new_kv_heads * d_head, *rest)
    return torch.cat([q, pool(k), pool(v)])


def convert_attention(attn: Attention, n_kv_heads: int, variant: str = "gqa") -> Attention:
    """A new Attention of `variant` with K/V heads mean-pooled from `attn` (left unchanged).
    `attn` must be a plain grouped-query layer: a mixSGA router or MLA up-projections would be
    lost (ValueError)."""
    if attn.variant in ("mixsga", "mla"):
        raise ValueError(f"cannot pool the K/V heads of a {attn.variant} layer (its router or up-projections "
                         "would be lost); convert from the plain grouped-query model")
    new = Attention(attn.dim, attn.n_heads, variant=variant, n_q_heads=attn.n_q_heads, n_kv_heads=n_kv_heads,
                    qkv_bias=attn.qkv.bias is not None, dropout=attn.dropout, noise_std=attn.noise_std,
                    momentum=attn.momentum)
    new = new.to(device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype)
    args = (attn.n_q_heads, attn.n_kv_heads, new.n_kv_heads, attn.d_head)
    with torch.no_grad():
        new.qkv.weight.copy_(pool_kv_heads(attn.qkv.weight, *args))
        if attn.qkv.bias is not None:
            new.qkv.bias.copy_(pool_kv_heads(attn.qkv.bias, *args))
        new.proj.load_state_dict(attn.proj.state_dict())
    new.train(attn.training)
    return new


def convert_model(model: nn.Module, n_kv_heads: int, variant: str = "gqa") -> nn.Module:
    """A deep copy of `model` with every Attention converted (see `convert_attention`).
    A ViT's `cfg` is updated to match."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Attention):
                setattr(module, child_name, convert_attention(child, n_kv_heads, variant))
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "attn_variant"):
        model.cfg = dataclasses.replace(cfg, attn_variant=variant, n_kv_heads=n_kv_heads)
    return model


def convert_vit_checkpoint(checkpoint: dict, n_kv_heads: int, variant: str = "gqa") -> dict:
    """A ViT checkpoint {"config", "state_dict"} with MHA-like attention -> the same with
    K/V heads pooled to `n_kv_heads` and config attn_variant=`variant`."""
    cfg = dict(checkpoint["config"])
    d_head = cfg["dim"] // cfg["n_heads"]
    n_q, n_kv = resolve_heads(cfg.get("attn_variant", "mha"), cfg["n_heads"], cfg.get("n_q_heads"),
                              cfg.get("n_kv_heads"))
    new_cfg = {**cfg, "attn_variant": variant, "n_q_heads": cfg.get("n_q_heads"), "n_kv_heads": n_kv_heads}
    resolve_heads(variant, cfg["n_heads"], new_cfg["n_q_heads"], n_kv_heads)   # validate early
    state = {}
    for key, t in checkpoint["state_dict"].items():
        if key.endswith(".qkv.weight") or key.endswith(".qkv.bias"):
            t = pool_kv_heads(t, n_q, n_kv, n_kv_heads, d_head)
        elif key.endswith(".key_norm_ema"):
            continue                      # dgqa buffer of the old head layout
        state[key] = t
    if variant == "dgqa":
        for key in checkpoint["state_dict"]:
            if key.endswith(".qkv.weight"):
                state[key[:-len("qkv.weight")] + "key_norm_ema"] = torch.ones(n_kv_heads)
    return {**checkpoint, "config": new_cfg, "state_dict": state}
