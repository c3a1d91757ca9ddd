"""Dense training targets of the scene parser and its loss.

An object for the targets is `GoldObject(cx, cy, w, h, values)`: centre and box size in
the pixels of the network input, `values` the index of each attribute category's value;
`hidden` the share of its silhouette that other objects hide (0 where not known; read by
the second stage's centre loss, `RefineConfig.hidden_weight`).

    t = build_targets(objects, grid=(32, 48), attributes=cfg.attributes)
    loss, parts = scene_parser_loss(model(images), collate([t, ...]))

Targets on the (h, w) cell grid (a cell is `STRIDE` pixels):
    heat (1, h, w)   a Gaussian around each centre, exactly 1 at the centre cell
    weight (h, w)    regression/attribute weight: the heat of the owning object on the 3x3
                     cells around its centre (the nearest centre owns a cell), else 0
    offset (2, h, w) centre - cell centre, in cells, for owned cells
    box (2, h, w)    log(box w, h in cells)
    attr:<category> (h, w) value index, -1 where not owned
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .scene_parser import STRIDE


@dataclass
class GoldObject:
    cx: float
    cy: float
    w: float
    h: float
    values: dict[str, int]
    hidden: float = 0.0


def build_targets(objects: list[GoldObject], grid: tuple[int, int], attributes: dict[str, list[str]]
                  ) -> dict[str, torch.Tensor]:
    """Gold objects (network-input pixels) -> the dense targets of the module docstring."""
    gh, gw = grid
    labels = {f"attr:{cat}": torch.full((gh, gw), -1, dtype=torch.long) for cat in attributes}
    if not objects:
        z = torch.zeros(gh, gw)
        return {"heat": z[None].clone(), "weight": z, "offset": torch.zeros(2, gh, gw),
                "box": torch.zeros(2, gh, gw), **labels}
    n = len(objects)
    u = torch.tensor([o.cx / STRIDE for o in objects])                  # (n,) centre in cells
    v = torch.tensor([o.cy / STRIDE for o in objects])
    j = u.long().clamp(0, gw - 1)
    i = v.long().clamp(0, gh - 1)
    wh = torch.tensor([[max(o.w, 1.0), max(o.h, 1.0)] for o in objects])  # (n, 2) pixels
    sigma = (0.12 * wh.prod(1).sqrt() / STRIDE).clamp_min(0.6)          # (n,)
    yy = torch.arange(gh, dtype=torch.float32)[None, :, None] + 0.5      # (1, gh, 1)
    xx = torch.arange(gw, dtype=torch.float32)[None, None, :] + 0.5      # (1, 1, gw)
    cj, ci = (j.float() + 0.5)[:, None, None], (i.float() + 0.5)[:, None, None]
    g = torch.exp(-((xx - cj) ** 2 + (yy - ci) ** 2) / (2 * sigma[:, None, None] ** 2))  # (n, gh, gw)
    heat = g.max(0).values
    heat[i, j] = 1.0
    near = ((yy - ci).abs() <= 1.01) & ((xx - cj).abs() <= 1.01)       # 3x3 cells around the centre cell
    d = (xx - u[:, None, None]) ** 2 + (yy - v[:, None, None]) ** 2
    d = torch.where(near, d, torch.full_like(d, float("inf")))
    dmin, owner = d.min(0)                                               # (gh, gw)
    owned = torch.isfinite(dmin)
    weight = torch.where(owned, g.gather(0, owner[None])[0], torch.zeros(gh, gw))
    weight[i, j] = torch.where(owner[i, j] == torch.arange(n), 1.0, weight[i, j])
    offset = torch.stack([u[owner] - xx[0], v[owner] - yy[0]])           # (2, gh, gw)
    box = torch.log(wh / STRIDE)[owner].permute(2, 0, 1)                 # (2, gh, gw)
    offset = offset * owned
    box = box * owned
    for cat in attributes:
        vals = torch.tensor([o.values[cat] for o in objects])
        labels[f"attr:{cat}"] = torch.where(owned, vals[owner], torch.full((gh, gw), -1, dtype=torch.long))
    return {"heat": heat[None], "weight": weight, "offset": offset, "box": box, **labels}


def collate(targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([t[k] for t in targets]) for k in targets[0]}


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss; logits, heat (B, 1, h, w) -> scalar."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp_min(1.0)


def scene_parser_loss(out: dict[str, torch.Tensor], t: dict[str, torch.Tensor], attributes,
                      *, w_offset: float = 1.0, w_size: float = 0.5, w_attr: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """Model maps + collated targets -> (total loss, {part: value})."""
    heat = focal_loss(out["heat"].float(), t["heat"])
    w = t["weight"]                                                    # (B, h, w)
    norm = w.sum().clamp_min(1.0)
    offset = (F.l1_loss(out["offset"].float(), t["offset"], reduction="none").sum(1) * w).sum() / norm
    size = (F.l1_loss(out["box"].float(), t["box"], reduction="none").sum(1) * w).sum() / norm
    attr = heat.new_zeros(())  # (a tensor also when there are no attribute categories)
    for cat in attributes:
        ce = F.cross_entropy(out[f"attr:{cat}"].float(), t[f"attr:{cat}"], ignore_index=-1, reduction="none")
        attr = attr + (ce * w).sum() / norm
    total = heat + w_offset * offset + w_size * size + w_attr * attr
    return total, {"heat": float(heat.detach()), "offset": float(offset.detach()), "box": float(size.detach()), "attr": float(attr.detach())}
