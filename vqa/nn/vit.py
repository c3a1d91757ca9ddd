"""A Vision Transformer backbone over the grouped-query attention family.

images (B, C, H, W) -> patch embedding (B, T, D) -> [CLS] + learned position embedding
-> `depth` pre-norm blocks (attention of `attn_variant`, GELU MLP) -> LayerNorm.

`create_vit("vit_tiny", attn_variant="gqa", n_kv_heads=1)` builds a registered size with
overrides; `register_vit(name, **config)` adds a size. A checkpoint is a dict
{"config": ViTConfig as dict, "state_dict": ...}, so a model is rebuilt from the file alone
(`vit_checkpoint`, `vit_from_checkpoint`).

Device-agnostic: nothing here names a device. On CUDA run under `autocast(device)`
(bf16); on CPU `autocast` is a no-op unless asked for.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention


@dataclass
class ViTConfig:
    """Shape of a ViT. image_size is an int (square) or (height, width)."""

    image_size: int | tuple[int, int] = 224
    patch_size: int = 16
    in_chans: int = 3
    dim: int = 192
    depth: int = 12
    n_heads: int = 3
    attn_variant: str = "mha"
    n_q_heads: int | None = None
    n_kv_heads: int | None = None
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    pool: str = "cls"            # "cls" | "mean" | "none" (forward returns all tokens)
    num_classes: int = 0         # > 0 adds a linear head after pooling
    dropout: float = 0.0
    attn_dropout: float = 0.0
    noise_std: float = 0.02      # pgqa
    momentum: float = 0.1        # dgqa

    @property
    def grid(self) -> tuple[int, int]:
        h, w = _pair(self.image_size)
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["image_size"], tuple):
            d["image_size"] = list(d["image_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ViT config: unknown field(s) {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("image_size"), list):
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class MLP(nn.Module):
    """x (B, T, D) -> (B, T, D): Linear D -> hidden, GELU, Linear hidden -> D."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)). (B, T, D) -> same."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg.dim, cfg.n_heads, variant=cfg.attn_variant, n_q_heads=cfg.n_q_heads,
                              n_kv_heads=cfg.n_kv_heads, qkv_bias=cfg.qkv_bias, dropout=cfg.attn_dropout,
                              noise_std=cfg.noise_std, momentum=cfg.momentum)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, return_attention: bool = False):
        if return_attention:
            a, attn = self.attn(self.norm1(x), return_attention=True)
        else:
            a, attn = self.attn(self.norm1(x)), None
        x = x + self.drop(a)
        x = x + self.mlp(self.norm2(x))
        return (x, attn) if return_attention else x


class PatchEmbed(nn.Module):
    """images (B, C, H, W) -> patch tokens (B, H/p * W/p, D) by a stride-p convolution."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"image {tuple(x.shape[-2:])} is not a multiple of patch_size={p}")
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """Vision Transformer. forward: images (B, C, H, W) -> logits (B, num_classes) when
    num_classes > 0, else pooled features (B, D) ("cls"/"mean") or tokens (B, T, D) ("none").

    Images of another size than `cfg.image_size` (multiples of the patch) are accepted: the
    position embedding is resampled bicubically to the new grid.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.pool not in ("cls", "mean", "none"):
            raise ValueError(f"ViT pool={cfg.pool!r}: expected cls, mean or none")
        if cfg.pool == "cls" and not cfg.class_token:
            raise ValueError("ViT pool='cls' needs class_token=True")
        self.cfg = cfg
        gh, gw = cfg.grid
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.dim, cfg.patch_size)
        self.n_prefix = 1 if cfg.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_prefix + gh * gw, cfg.dim))
        self.pos_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.num_classes) if cfg.num_classes > 0 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """(1, n_prefix + gh*gw, D), resampled when (gh, gw) differs from the config's grid."""
        h0, w0 = self.cfg.grid
        if (gh, gw) == (h0, w0):
            return self.pos_embed
        prefix, grid = self.pos_embed[:, :self.n_prefix], self.pos_embed[:, self.n_prefix:]
        grid = grid.reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)

    def forward_features(self, images: torch.Tensor, return_attention: bool = False):
        """images (B, C, H, W) -> tokens (B, n_prefix + H/p * W/p, D) after the final norm;
        with return_attention, (tokens, [attn (B, H_q, T, T) per block])."""
        x = self.patch_embed(images)                                  # (B, gh*gw, D)
        p = self.cfg.patch_size
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pos_drop(x + self.position_embedding(images.shape[-2] // p, images.shape[-1] // p))
        maps = []
        for blk in self.blocks:
            if return_attention:
                x, attn = blk(x, return_attention=True)
                maps.append(attn)
            else:
                x = blk(x)
        x = self.norm(x)
        return (x, maps) if return_attention else x

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, D) -> (B, D) by cfg.pool (tokens unchanged for "none")."""
        if self.cfg.pool == "cls":
            return tokens[:, 0]
        if self.cfg.pool == "mean":
            return tokens[:, self.n_prefix:].mean(1)
        return tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.forward_features(images))
        return self.head(out) if self.head is not None else out


# -- registry ------------------------------------------------------------------------------
VIT_SIZES: dict[str, dict] = {}


def register_vit(name: str, **config) -> None:
    """Register a named size: keyword arguments of ViTConfig."""
    ViTConfig(**config)          # fail early on a bad field
    VIT_SIZES[name] = config


register_vit("vit_micro", image_size=128, patch_size=16, dim=128, depth=4, n_heads=4)   # CPU scene parser
register_vit("vit_tiny", image_size=224, patch_size=16, dim=192, depth=12, n_heads=3)
register_vit("vit_small", image_size=224, patch_size=16, dim=384, depth=12, n_heads=6)
register_vit("vit_base", image_size=224, patch_size=16, dim=768, depth=12, n_heads=12)


def vit_config(name: str, **overrides) -> ViTConfig:
    """The ViTConfig of a registered size, with overrides."""
    if name not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {name!r}: expected one of {', '.join(VIT_SIZES)}")
    return ViTConfig(**{**VIT_SIZES[name], **overrides})


def create_vit(name: str, **overrides) -> ViT:
    """Build a registered ViT size, e.g. create_vit("vit_tiny", attn_variant="sqa")."""
    return ViT(vit_config(name, **overrides))


def vit_checkpoint(model: ViT) -> dict:
    """{"config": dict, "state_dict": ...}: enough to rebuild the model (torch.save it)."""
    return {"config": model.cfg.to_dict(), "state_dict": model.state_dict()}


def vit_from_checkpoint(checkpoint: dict) -> ViT:
    """Rebuild a ViT from `vit_checkpoint`'s dict (strict state-dict load)."""
    model = ViT(ViTConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model


def autocast(device: torch.device | str, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA (and on CPU when cpu_bf16), else a no-op context."""
    kind = torch.device(device).type
    if enabled and (kind == "cuda" or (kind == "cpu" and cpu_bf16)):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()
