"""The scene parser in numpy: the same maps as `vqa.vision.scene_parser.SceneParser` in eval
mode, from an exported `.npz` checkpoint, without importing torch.

    parser = NumpySceneParser.load("data/checkpoints/scene_parser.npz")
    graph = parser.parse_image("scene.png")          # SceneGraph, as the torch model's

Supported: the fixed-group attention variants (mha, mqa, gqa, sqa, ssqa, xsqa, pgqa, whose
eval forward is plain grouped-query attention). The key-driven variants (kdgqa, dgqa) pick
their groups at run time and stay with the torch backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..scene import SceneGraph
from ..vision.core import SceneParserConfig, mirror_geometry, n_attribute_logits, parse_images
from . import ops
from .ops import FIXED_GROUPS
from .checkpoints import load_npz

SCENE_FORMAT = "vqa.scene_parser/1"
IMAGES_PER_PASS = 2   # images per forward pass (twice as many with mirror averaging)
CROPS_PER_PASS = 16   # object crops per pass of the second stage


class NumpySceneParser:
    def __init__(self, arrays: dict[str, np.ndarray], cfg: SceneParserConfig):
        if cfg.attn_variant not in FIXED_GROUPS:
            raise DataError(f"the numpy runtime does not run attention variant {cfg.attn_variant!r} "
                            f"(supported: {', '.join(FIXED_GROUPS)}); use the torch backend")
        self.cfg = cfg
        self.w = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
        self.stem = []  # (weight, bias, stride, residual) with the batch norms folded in
        for i, stride in enumerate([2, 2] + [1] * cfg.stem_extra):
            pre = f"stem.{i}.0" if i < 2 else f"stem.{i}.body.0"
            bn = f"stem.{i}.1" if i < 2 else f"stem.{i}.body.1"
            w, b = ops.fold_batch_norm(self.w[f"{pre}.weight"], self.w[f"{bn}.weight"], self.w[f"{bn}.bias"],
                                       self.w[f"{bn}.running_mean"], self.w[f"{bn}.running_var"])
            self.stem.append((w, b, stride, i >= 2))
        d_head = cfg.dim // cfg.n_heads
        self.d_head = d_head
        self.n_q_heads = self.w["vit.blocks.0.attn.proj.weight"].shape[1] // d_head
        self.n_kv_heads = (self.w["vit.blocks.0.attn.qkv.weight"].shape[0] // d_head - self.n_q_heads) // 2
        self._pos_cache: dict[tuple[int, int], np.ndarray] = {}
        self.refine = []  # the second stage's convolutions: (weight, bias, stride, residual), BN folded
        if cfg.refine_size:
            for i, (stride, residual) in enumerate([(1, False), (2, False), (1, True), (2, False), (1, True)]):
                pre = f"refine.body.{i}.body." if residual else f"refine.body.{i}."
                w, b = ops.fold_batch_norm(self.w[pre + "0.weight"], self.w[pre + "1.weight"], self.w[pre + "1.bias"],
                                           self.w[pre + "1.running_mean"], self.w[pre + "1.running_var"])
                self.refine.append((w, b, stride, residual))

    @classmethod
    def load(cls, path: str | Path) -> "NumpySceneParser":
        arrays, meta = load_npz(path)
        if meta.get("format") != SCENE_FORMAT:
            raise DataError(f"not a scene-parser checkpoint (format {meta.get('format')!r}, "
                            f"expected {SCENE_FORMAT!r})", file=path)
        return cls(arrays, SceneParserConfig.from_dict(meta["config"]))

    # ---- the network -------------------------------------------------------------------
    def position_embedding(self, gh: int, gw: int) -> np.ndarray:
        """(gh*gw, D); resampled bicubically (as the torch ViT) for another grid."""
        key = (gh, gw)
        if key not in self._pos_cache:
            h0, w0 = self.cfg.image_size[0] // self.cfg.block, self.cfg.image_size[1] // self.cfg.block
            pos = self.w["vit.pos_embed"][0].reshape(h0, w0, -1)
            if (gh, gw) != (h0, w0):
                mh, mw = ops.bicubic_matrix(h0, gh), ops.bicubic_matrix(w0, gw)
                pos = np.einsum("ih,jw,hwd->ijd", mh, mw, pos.astype(np.float64)).astype(np.float32)
            self._pos_cache[key] = pos.reshape(gh * gw, -1)
        return self._pos_cache[key]

    def _block(self, x: np.ndarray, i: int) -> np.ndarray:
        w, p = self.w, f"vit.blocks.{i}."
        B, T, D = x.shape
        hq, hkv, d = self.n_q_heads, self.n_kv_heads, self.d_head
        h = ops.layer_norm(x, w[p + "norm1.weight"], w[p + "norm1.bias"], 1e-6)
        qkv = ops.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"] if p + "attn.qkv.bias" in w else None)
        qkv = qkv.reshape(B, T, hq + 2 * hkv, d).transpose(0, 2, 1, 3)     # (B, heads, T, d)
        a = ops.attention(qkv[:, :hq], qkv[:, hq:hq + hkv], qkv[:, hq + hkv:])
        a = a.transpose(0, 2, 1, 3).reshape(B, T, hq * d)
        x = x + ops.linear(a, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = ops.layer_norm(x, w[p + "norm2.weight"], w[p + "norm2.bias"], 1e-6)
        h = ops.gelu(ops.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
        return x + ops.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images (B, 3, H, W) normalised float32 -> maps as `SceneParser.forward` (B, K, H/4, W/4)."""
        return self.dense_maps(self.cell_features(images))

    def cell_features(self, images: np.ndarray) -> np.ndarray:
        """images (B, 3, H, W) -> the fused per-cell features (B, H/4, W/4, Ch), channels last
        (as `SceneParser.cell_features`, which is channels first)."""
        cfg, w = self.cfg, self.w
        B, _, H, W = images.shape
        p, blk = cfg.patch_size, cfg.block
        if H % blk or W % blk:
            raise ValueError(f"image {H}x{W} is not a multiple of {blk} pixels")
        x = np.ascontiguousarray(images.transpose(0, 2, 3, 1))           # (B, H, W, 3)
        for wt, b, stride, residual in self.stem:
            y = ops.gelu(ops.conv2d(x, wt, b, stride, 1))
            x = x + y if residual else y
        feats = x                                                          # (B, H/4, W/4, C)
        t = ops.conv2d(feats, w["vit.patch_embed.proj.weight"], w["vit.patch_embed.proj.bias"], p)
        gh, gw = t.shape[1], t.shape[2]
        t = t.reshape(B, gh * gw, -1) + self.position_embedding(gh, gw)   # (B, T, D)
        for i in range(cfg.depth):
            t = self._block(t, i)
        t = ops.layer_norm(t, w["vit.norm.weight"], w["vit.norm.bias"], 1e-6)
        up = ops.linear(t, w["up.weight"], w["up.bias"]).reshape(B, gh, gw, p, p, -1)
        up = up.transpose(0, 1, 3, 2, 4, 5).reshape(B, gh * p, gw * p, -1)  # (B, H/4, W/4, Cu)
        k = cfg.fuse_kernel
        return ops.gelu(ops.conv2d(np.concatenate([up, feats], -1), w["fuse.0.weight"], w["fuse.0.bias"], 1, k // 2))

    def dense_maps(self, fused: np.ndarray) -> dict[str, np.ndarray]:
        """`cell_features` (B, H/4, W/4, Ch) -> the maps of `forward`."""
        cfg, w = self.cfg, self.w
        x = ops.conv2d(fused, w["out.weight"], w["out.bias"]).transpose(0, 3, 1, 2)  # (B, K, H/4, W/4)
        sizes = [1, 2, 2, *(len(v) for v in cfg.attributes.values())]
        parts = np.split(x, np.cumsum(sizes)[:-1], axis=1)
        out = {"heat": parts[0], "offset": parts[1], "box": parts[2]}
        for cat, part in zip(cfg.attributes, parts[3:]):
            out[f"attr:{cat}"] = part
        return out

    def predict_maps(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """As `SceneParser.predict_maps`: with `flip_tta`, the image and its mirror image in one
        batch, the mirror's maps mapped back (cells mirrored, x offset negated) and averaged.
        Runs `IMAGES_PER_PASS` images at a time (im2col buffers of larger batches outgrow the
        caches: 32 images at once parsed at about half the rate of 2 at a time, measured)."""
        if images.shape[0] > IMAGES_PER_PASS:
            parts = [self.predict_maps(images[k:k + IMAGES_PER_PASS]) for k in range(0, images.shape[0], IMAGES_PER_PASS)]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        if not self.cfg.flip_tta:
            return self.forward(images)
        B = images.shape[0]
        both = self.forward(np.concatenate([images, images[..., ::-1]], 0))
        out = {}
        for name, m in both.items():
            back = m[B:, :, :, ::-1]
            if name == "offset":
                back = np.concatenate([-back[:, :1], back[:, 1:]], 1)
            out[name] = (m[:B] + back) / 2
        return out

    def crop_logits(self, crops: np.ndarray, geometry: np.ndarray | None = None) -> np.ndarray:
        """As `CropNet` in eval mode: crops (n, 3, r, r) -> (n, K) (+ 2 centre offsets with
        `refine_centre`); with `flip_tta`, averaged with the mirrored crops' outputs."""
        n = crops.shape[0]
        if n > CROPS_PER_PASS:
            return np.concatenate([self.crop_logits(crops[k:k + CROPS_PER_PASS],
                                                    None if geometry is None else geometry[k:k + CROPS_PER_PASS])
                                   for k in range(0, n, CROPS_PER_PASS)])
        x = np.ascontiguousarray(crops.transpose(0, 2, 3, 1))             # (n, r, r, 3)
        if self.cfg.flip_tta:
            x = np.concatenate([x, x[:, :, ::-1]], 0)
        for wt, b, stride, residual in self.refine:
            y = ops.gelu(ops.conv2d(x, wt, b, stride, 1))
            x = x + y if residual else y
        pooled = x.mean((1, 2))
        if self.cfg.refine_geometry:
            if geometry is None:
                raise ValueError("this second stage reads the crops' geometry: pass it")
            g = np.asarray(geometry, np.float32)
            if self.cfg.flip_tta:
                g = np.concatenate([g, mirror_geometry(g)], 0)
            pooled = np.concatenate([pooled, g], 1)
        out = ops.linear(pooled, self.w["refine.head.weight"], self.w["refine.head.bias"])
        if self.cfg.refine_centre:  # torch flattens (C, h, w)
            flat = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape[0], -1)
            out = np.concatenate([out, ops.linear(flat, self.w["refine.centre.weight"], self.w["refine.centre.bias"])], 1)
        if not self.cfg.flip_tta:
            return out
        mirror = out[n:].copy()
        if self.cfg.refine_centre:  # the mirrored crop's centre offset: x negated
            K = n_attribute_logits(self.cfg)
            mirror[:, K] = -mirror[:, K]
        return (out[:n] + mirror) / 2

    # ---- parsing -------------------------------------------------------------------------
    def parse_images(self, images: list, *, image_ids: list[str] | None = None) -> list[SceneGraph]:
        """PIL images or paths -> one SceneGraph each (coordinates in each image's own pixels)."""
        return parse_images(images, self.cfg, self.predict_maps, image_ids=image_ids,
                            refine=self.crop_logits if self.refine else None)

    def parse_image(self, image, image_id: str | None = None) -> SceneGraph:
        """One PIL image or path -> SceneGraph."""
        return self.parse_images([image], image_ids=None if image_id is None else [image_id])[0]


__all__ = ["NumpySceneParser"]


def bench_parsing(checkpoints: list[str | Path], images: list[str | Path], *, repeats: int = 3) -> list[dict]:
    """Images/s of the numpy scene parser, image loading and decoding included: each checkpoint
    parses all `images` one at a time and in one call, `repeats` times, the checkpoints
    alternating; medians per checkpoint and mode."""
    import statistics
    import time

    parsers = [NumpySceneParser.load(c) for c in checkpoints]
    for p in parsers:  # warm-up (position-embedding caches, first allocations)
        p.parse_images(images[:2])
    times = [{"single": [], "batch": []} for _ in parsers]
    for _ in range(repeats):
        for p, t in zip(parsers, times):
            t0 = time.perf_counter()
            for im in images:
                p.parse_image(im)
            t["single"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            p.parse_images(list(images))
            t["batch"].append(time.perf_counter() - t0)
    return [{"checkpoint": str(c), "images": len(images), "single_images_per_s": round(len(images) / statistics.median(t["single"]), 2),
             "batch_images_per_s": round(len(images) / statistics.median(t["batch"]), 2)} for c, t in zip(checkpoints, times)]
