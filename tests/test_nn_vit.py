"""The ViT backbone: every registered size, variants, checkpoints, conversion."""
import io

import pytest
import torch

from vqa.nn.attention import VARIANTS
from vqa.nn.convert import convert_model, convert_vit_checkpoint
from vqa.nn.vit import (VIT_SIZES, ViT, ViTConfig, autocast, create_vit, vit_checkpoint, vit_config,
                        vit_from_checkpoint)

TINY = dict(image_size=32, patch_size=8, dim=32, depth=2, n_heads=4)


@pytest.mark.parametrize("name", sorted(VIT_SIZES))
def test_every_registered_size_runs_forward_and_backward(name):
    torch.manual_seed(0)
    cfg = vit_config(name)
    model = create_vit(name, image_size=cfg.patch_size * 2)          # 2x2 patches + CLS
    x = torch.randn(2, 3, cfg.patch_size * 2, cfg.patch_size * 2)
    y = model(x)
    assert y.shape == (2, cfg.dim)
    y.sum().backward()
    assert model.patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_attention_variant_in_a_vit(variant):
    model = ViT(ViTConfig(**TINY, attn_variant=variant, num_classes=5))
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    tokens, maps = model.eval().forward_features(x, return_attention=True)
    assert tokens.shape == (2, 1 + 16, 32) and len(maps) == 2
    assert maps[0].shape == (2, model.blocks[0].attn.n_q_heads, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(maps[0].shape[:-1]))
    torch.testing.assert_close(model.forward_features(x), tokens, rtol=1e-5, atol=1e-5)


def test_other_image_sizes_and_pooling():
    model = ViT(ViTConfig(**{**TINY, "image_size": (32, 48)}, pool="none", class_token=False))
    assert model(torch.randn(1, 3, 32, 48)).shape == (1, 24, 32)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4, 32)      # resampled position embedding
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError):
        vit_config("vit_huge_nonexistent")
    mean = ViT(ViTConfig(**TINY, pool="mean"))
    assert mean(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_checkpoint_round_trip_rebuilds_the_model():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**{**TINY, "image_size": (32, 40)}, attn_variant="dgqa")).eval()
    buf = io.BytesIO()
    torch.save(vit_checkpoint(model), buf)
    buf.seek(0)
    again = vit_from_checkpoint(torch.load(buf)).eval()
    assert again.cfg == model.cfg
    x = torch.randn(2, 3, 32, 40)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_converted_vit_checkpoint():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**TINY)).eval()
    x = torch.randn(2, 3, 32, 32)
    ckpt = vit_checkpoint(model)
    same = vit_from_checkpoint(convert_vit_checkpoint(ckpt, n_kv_heads=4, variant="gqa")).eval()
    torch.testing.assert_close(same(x), model(x), rtol=0, atol=1e-5)
    for variant, kv in [("gqa", 2), ("mqa", 1), ("kdgqa", 2), ("dgqa", 2), ("pgqa", 1)]:
        conv = convert_vit_checkpoint(ckpt, n_kv_heads=kv, variant=variant)
        small = vit_from_checkpoint(conv).eval()
        assert small.blocks[0].attn.n_kv_heads == kv and small(x).shape == (2, 32)
    via_model = convert_model(model, n_kv_heads=2, variant="gqa")
    torch.testing.assert_close(via_model(x), vit_from_checkpoint(convert_vit_checkpoint(ckpt, 2)).eval()(x))
    assert via_model.cfg.attn_variant == "gqa" and model.blocks[0].attn.n_kv_heads == 4


def test_autocast_is_device_agnostic():
    model = ViT(ViTConfig(**TINY)).eval()
    x = torch.randn(1, 3, 32, 32)
    with autocast("cpu"):                                     # no-op on CPU by default
        assert model(x).dtype == torch.float32
    with autocast("cpu", cpu_bf16=True):
        y = model(x)
    assert y.shape == (1, 32) and torch.isfinite(y.float()).all()
