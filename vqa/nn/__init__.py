"""Neural building blocks shared by vision and language (imports only torch).

- `attention`: the grouped-query attention family (MHA, MQA, GQA, SQA, sSQA, xSQA, KDGQA,
  DGQA, PGQA) in one `Attention` module.
- `vit`: the ViT backbone, its config and registry of sizes.
- `convert`: MHA checkpoint -> grouped K/V heads by mean-pooling.
- `mixsga`: token-routed weight-shared GQA experts (variant "mixsga" of `Attention`).
- `mla`: multi-head latent attention and the TransMLA conversion of GQA layers.
- `head_search`: cost-optimal (width, H_q, H_kv, d_head) search (`vqa bench attention --search`).
- `bench`: the side-by-side benchmark behind `vqa bench attention`.
"""
from .attention import VARIANTS, Attention, allocate_query_heads, explicit_attention, resolve_heads
from .convert import convert_attention, convert_model, convert_vit_checkpoint, pool_kv_heads
from .vit import (VIT_SIZES, ViT, ViTConfig, autocast, create_vit, register_vit, vit_checkpoint,
                  vit_config, vit_from_checkpoint)

__all__ = ["VARIANTS", "Attention", "allocate_query_heads", "explicit_attention", "resolve_heads",
           "convert_attention", "convert_model", "convert_vit_checkpoint", "pool_kv_heads",
           "VIT_SIZES", "ViT", "ViTConfig", "autocast", "create_vit", "register_vit", "vit_checkpoint",
           "vit_config", "vit_from_checkpoint", "MixSGAttention", "mixsga_aux_loss", "MLAttention",
           "kv_cache_bytes", "mla_from_gqa", "seq2seq_to_mla"]


_LAZY = {"MixSGAttention": "mixsga", "mixsga_aux_loss": "mixsga", "MLAttention": "mla", "kv_cache_bytes": "mla",
         "mla_from_gqa": "mla", "seq2seq_to_mla": "mla"}


def __getattr__(name):  # lazy, so that `python -m vqa.nn.mla` / `-m vqa.nn.mixsga` run their module once
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
