"""The scene parser: image -> probabilistic `SceneGraph`.

Architecture (a hybrid ViT, as in the original ViT paper's "hybrid" models):

    image (B, 3, H, W)
      -> conv stem: two 3x3 stride-2 convolutions, then `stem_extra` residual 3x3
         convolutions at stride 4 (local shape detail for small objects) -> features (B, C, H/4, W/4)
      -> ViT of `vqa.nn` (any attention variant) on 4x4 patches of the stem features
         (an effective 16x16-pixel patch)                   -> tokens (B, H/16 * W/16, D)
      -> head: each token -> a 4x4 block of cells (pixel shuffle), concatenated with the
         stem features, a `fuse_kernel` conv (1x1 by default), one 1x1 conv          -> per cell of 4x4 pixels:
             heat (1): objectness logit, peaked at the cell holding an object's centre
             offset (2): sub-cell position of the centre (cells)
             size (2): log of box width, height (cells)
             attributes: logits per category (color 8, size 2, material 2, shape 3)

Parsing with `flip_tta` (the default) averages the logits of the image and of its mirror image
(mapped back) before decoding: twice the compute, fewer shape errors and missed objects.
Decoding the maps into a SceneGraph (peaks, NMS, attribute distributions, 3-D positions
through CLEVR's camera, relations) is torch-free and lives in `vqa.vision.core`, shared with
the numpy runtime (`vqa.runtime.scene_parser`).

    parser = load_scene_parser("data/checkpoints/scene_parser.pt")
    graph = parser.parse_image("CLEVR_val_000000.png")      # SceneGraph
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import DataError, VQAError
from ..nn.vit import ViT
from .core import (MEAN, STD, STRIDE, SceneParserConfig, back_project, decode, image_array, input_size,
                   load_image, mirror_geometry, n_attribute_logits, parse_images, refine_grid, to_rgb,
                   with_positions)
from ..scene import SceneGraph

__all__ = ["DEFAULT_CHECKPOINT", "MEAN", "STD", "STRIDE", "SceneParser", "SceneParserConfig", "back_project",
           "decode", "image_tensor", "input_size", "load_image", "load_scene_parser", "normalise", "to_rgb",
           "with_positions"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "scene_parser.pt"
CHECKPOINT_FORMAT = "vqa.scene_parser/1"


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CropNet(nn.Module):
    """The second stage: object crops (n, 3, r, r) normalised -> attribute logits (n, K), the
    categories' values concatenated in `cfg.attributes` order, then with `cfg.refine_centre`
    the object centre's offset from the crop centre (dx, dy) as a fraction of the crop side.
    Five 3x3 convolutions (two of stride 2, two residual), global average pooling, one linear
    layer; the centre (`centre`) one linear layer on the final feature map (C, r/4, r/4) flattened."""

    def __init__(self, cfg: SceneParserConfig):
        super().__init__()
        c1, c2, c3 = cfg.refine_channels
        self.body = nn.Sequential(_conv_bn(3, c1, 1), _conv_bn(c1, c2, 2), _Residual(_conv_bn(c2, c2, 1)),
                                  _conv_bn(c2, c3, 2), _Residual(_conv_bn(c3, c3, 1)))
        self.head = nn.Linear(c3 + (3 if cfg.refine_geometry else 0), sum(len(v) for v in cfg.attributes.values()))
        self.geometry = cfg.refine_geometry
        # the centre from the final feature map itself (average pooling would discard where things are)
        self.centre = nn.Linear(c3 * refine_grid(cfg.refine_size) ** 2, 2) if cfg.refine_centre else None
        if self.centre is not None:
            nn.init.zeros_(self.centre.weight)
            nn.init.zeros_(self.centre.bias)

    def forward(self, crops: torch.Tensor, geometry: torch.Tensor | None = None) -> torch.Tensor:
        f = self.body(crops)
        pooled = f.mean((2, 3))
        if self.geometry:
            if geometry is None:
                raise ValueError("this second stage reads the crops' geometry: pass it")
            pooled = torch.cat([pooled, geometry.to(pooled.dtype)], dim=1)
        out = self.head(pooled)
        if self.centre is not None:
            out = torch.cat([out, self.centre(f.float().contiguous().flatten(1))], dim=1)
        return out


class SceneParser(nn.Module):
    """forward: images (B, 3, H, W) normalised -> dict of dense maps on the (H/4, W/4) cell grid:
    "heat" (B, 1, h, w) logits, "offset" (B, 2, h, w), "box" (B, 2, h, w) (log w, h in cells)
    and "attr:<category>" (B, n_values, h, w) logits per attribute category. H, W: multiples of 16."""

    def __init__(self, cfg: SceneParserConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SceneParserConfig()
        h, w = cfg.image_size
        if h % cfg.block or w % cfg.block:
            raise ValueError(f"image_size={cfg.image_size} must be a multiple of {cfg.block}")
        c1, c2 = cfg.stem_channels
        self.stem = nn.Sequential(_conv_bn(3, c1, 2), _conv_bn(c1, c2, 2),
                                  *[_Residual(_conv_bn(c2, c2, 1)) for _ in range(cfg.stem_extra)])
        self.vit = ViT(cfg.vit_config())
        self.up = nn.Linear(cfg.dim, cfg.patch_size ** 2 * cfg.up_channels)
        self.fuse = nn.Sequential(nn.Conv2d(cfg.up_channels + c2, cfg.head_channels, cfg.fuse_kernel, 1, cfg.fuse_kernel // 2), nn.GELU())
        self.n_values = [len(v) for v in cfg.attributes.values()]
        self.out = nn.Conv2d(cfg.head_channels, 5 + sum(self.n_values), 1)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = -2.19  # objectness prior 0.1 (CenterNet)
        self.refine = CropNet(cfg) if cfg.refine_size else None
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN)

    def resize_input(self, image_size: tuple[int, int]) -> "SceneParser":
        """Change the network input to `image_size` (height, width; multiples of `cfg.block`) in
        place: the convolutions and the head are size-free, the ViT's position embedding is
        resampled (bicubic, as `ViT.position_embedding` does on the fly) and stored at the new
        grid. For fine-tuning at another resolution (`vqa train scene-parser --init CKPT
        --image-size WxH`)."""
        h, w = (int(v) for v in image_size)
        if h % self.cfg.block or w % self.cfg.block:
            raise ValueError(f"image_size={(h, w)} must be a multiple of {self.cfg.block}")
        if (h, w) == tuple(self.cfg.image_size):
            return self
        vit = self.vit
        p = self.cfg.patch_size
        with torch.no_grad():
            pos = vit.position_embedding(h // STRIDE // p, w // STRIDE // p).detach().clone()
        self.cfg.image_size = (h, w)
        vit.cfg = self.cfg.vit_config()
        vit.pos_embed = nn.Parameter(pos)
        return self

    def add_refine(self) -> "SceneParser":
        """Attach a fresh second stage (`cfg.refine_size` must be set)."""
        if not self.cfg.refine_size:
            raise ValueError("cfg.refine_size is 0: no second stage to attach")
        self.refine = CropNet(self.cfg).to(self.device, memory_format=torch.channels_last)
        return self

    @torch.no_grad()
    def refine_logits(self, crops: torch.Tensor, geometry: torch.Tensor | None = None) -> torch.Tensor:
        """The second stage's logits in eval mode; with `flip_tta`, averaged with the mirrored
        crops' (their centre offset's x negated)."""
        self.refine.eval()
        out = self.refine(crops, geometry)
        if self.cfg.flip_tta:
            mirror = self.refine(crops.flip(-1), None if geometry is None else mirror_geometry(geometry))
            if self.cfg.refine_centre:
                K = n_attribute_logits(self.cfg)
                mirror = torch.cat([mirror[:, :K], -mirror[:, K:K + 1], mirror[:, K + 1:]], dim=1)
            out = (out + mirror) / 2
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.dense_maps(self.cell_features(images))

    def cell_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> the fused per-cell features the head reads (B, head_channels,
        H/4, W/4) (also what the GQA scene parser's object heads sample)."""
        B, _, H, W = images.shape
        p, blk = self.cfg.patch_size, self.cfg.block
        if H % blk or W % blk:
            raise ValueError(f"image {H}x{W} is not a multiple of {blk} pixels")
        feats = self.stem(images.contiguous(memory_format=torch.channels_last))  # (B, C, H/4, W/4)
        tokens = self.vit.forward_features(feats)                     # (B, H/16 * W/16, D)
        gh, gw = H // blk, W // blk
        up = self.up(tokens).reshape(B, gh, gw, p, p, -1)             # (B, gh, gw, p, p, Cu)
        up = up.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, gh * p, gw * p)  # (B, Cu, H/4, W/4)
        return self.fuse(torch.cat([up, feats.to(up.dtype)], dim=1))  # (B, Ch, H/4, W/4)

    def dense_maps(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """`cell_features` -> the maps of `forward`."""
        x = self.out(fused).float()                                   # (B, K, H/4, W/4)
        # one split (its backward is a single concatenation), not one slice per map (each slice's
        # backward fills a full-size zero gradient)
        parts = torch.split(x, [1, 2, 2, *self.n_values], dim=1)
        out = {"heat": parts[0], "offset": parts[1], "box": parts[2]}
        for cat, part in zip(self.cfg.attributes, parts[3:]):
            out[f"attr:{cat}"] = part
        return out

    # ---- inference -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps for parsing: `forward`, or with `cfg.flip_tta` the mean of the logits of the
        images and of their mirror images mapped back (cells mirrored, x offset negated)."""
        maps = self(images)
        if not self.cfg.flip_tta:
            return maps
        mirror = self(images.flip(-1))
        out = {}
        for name, m in maps.items():
            back = mirror[name].flip(-1)
            if name == "offset":
                back = torch.cat([-back[:, :1], back[:, 1:]], dim=1)
            out[name] = (m + back) / 2
        return out

    @torch.no_grad()
    def parse_images(self, images: list, *, image_ids: list[str] | None = None) -> list[SceneGraph]:
        """PIL images or paths -> one SceneGraph each (coordinates in each image's own pixels)."""
        self.eval()

        def predict(batch):
            maps = self.predict_maps(torch.from_numpy(batch).to(self.device))
            return {name: m.float().cpu().numpy() for name, m in maps.items()}

        def refine(crops, geometry):
            return self.refine_logits(torch.from_numpy(crops).to(self.device),
                                      torch.from_numpy(geometry).to(self.device)).float().cpu().numpy()

        return parse_images(images, self.cfg, predict, image_ids=image_ids,
                            refine=refine if self.refine is not None else None)

    def parse_image(self, image, image_id: str | None = None) -> SceneGraph:
        """One PIL image or path -> SceneGraph."""
        return self.parse_images([image], image_ids=None if image_id is None else [image_id])[0]


# ---- images ---------------------------------------------------------------------------------
def image_tensor(im, hw: tuple[int, int]) -> torch.Tensor:
    """PIL RGB -> normalised float tensor (3, h, w), resized when needed."""
    return torch.from_numpy(image_array(im, hw))


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float normalised."""
    return (images_uint8.float() / 255.0 - MEAN) / STD


# ---- checkpoints ---------------------------------------------------------------------------
def checkpoint_dict(model: SceneParser, **extra) -> dict:
    """{"format", "config", "vocab", "state_dict", ...extra}: the model rebuilt from this alone."""
    m = model.module if hasattr(model, "module") else model
    return {"format": CHECKPOINT_FORMAT, "config": m.cfg.to_dict(), "vocab": dict(m.cfg.attributes),
            "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}, **extra}


def model_from_checkpoint(ckpt: dict, *, file=None) -> SceneParser:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not a scene-parser checkpoint (expected format {CHECKPOINT_FORMAT!r})", file=file)
    model = SceneParser(SceneParserConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def resize_for_fine_tuning(model, size, log=print) -> None:
    """`model.resize_input(size)` (a CLEVR or GQA scene parser) when `size` (height, width) is
    given and differs from the checkpoint's input, with a logged line: `--init --image-size`."""
    if size is not None and tuple(size) != tuple(model.cfg.image_size):
        log(f"input size {size[1]}x{size[0]} (the checkpoint's {model.cfg.image_size[1]}x"
            f"{model.cfg.image_size[0]}): position embedding resampled")
        model.resize_input(tuple(size))


def load_scene_parser(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> SceneParser:
    """Rebuild a scene parser from a checkpoint file (default: the shipped one)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        hint = " (the shipped model: data/checkpoints/scene_parser.pt)" if path == DEFAULT_CHECKPOINT else ""
        raise VQAError(f"{path}: no such checkpoint{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling failure means a bad file)
        raise DataError(f"cannot read checkpoint ({type(e).__name__}: {e})", file=path) from None
    return model_from_checkpoint(ckpt, file=path).to(device)
