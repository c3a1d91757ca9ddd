"""Training the scene parser's second stage: an attribute classifier on object crops.

    summary = train_refiner(RefineConfig(data="synth", checkpoint="runs/sp/scene_parser.pt",
                                         out="runs/refine", epochs=4))

The dense head reads an object's attributes from the 4x4-pixel cell at its centre, through
features of stride 4; small objects (about 10 pixels wide at 192x128) lose the detail that
tells a small cylinder from a small cube. The second stage looks again: each detected
object's square crop (side `refine_context` x its longer box side, centred on its box)
is resampled to `refine_size` pixels and classified by a small CNN
(`vqa.vision.scene_parser.CropNet`). Parsing mixes the two heads' logits per category,
`(1 - a) * dense + a * crop`, with `a` chosen on the val split.

- Training crops come from the gold objects (centre and box in network-input pixels, as
  the dense head's targets), jittered in centre and side so that they look like crops
  of predicted boxes, and mirrored at random. The dense model is not changed.
- After each epoch: crop accuracy per category on the val split's gold objects.
- At the end: the mixing weight per category, the one with the best accuracy on the
  val objects the dense model detects (matched to gold as `SceneMetrics` does; ties: the
  lower negative log-likelihood), over `weights`.
- Checkpoints: `out/last.pt` (model with the second stage, optimiser, step, settings:
  the same command continues the run saved there, `train.open_run`) every `checkpoint_every` steps and after each epoch;
  `out/scene_parser.pt` (the whole parser, loadable by `vqa scene --checkpoint`) at the end;
  `out/log.jsonl` one JSON line per logged step and evaluation.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.blender.driver import HIDDEN_FLOOR
from ..errors import VQAError
from ..resume import check_size
from .core import (MEAN, STD, SceneParserConfig, crop_boxes, crop_geometry, detect, mirror_geometry,
                   n_attribute_logits, pyramid, sample_pyramid_crops, source_crops, to_graph, zoom_centres)
from .core import centre_weights as core_centre_weights
from .data import SceneParserData, adopt_cubes, load_training_data
from .metrics import match_objects
from .scene_parser import checkpoint_dict, load_scene_parser
from .train import _save, open_run


@dataclass
class RefineConfig:
    data: str
    checkpoint: str | None = None     # the scene parser to extend (default: the shipped one)
    out: str = "runs/scene_refiner"
    split: str = "train"
    val_split: str = "val"
    limit: int | None = None
    val_limit: int | None = None
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    size: int | None = None           # crop side in pixels (default 24; with `keep`, the checkpoint's)
    channels: tuple[int, int, int] = (24, 48, 96)
    context: float = 1.5              # crop side / the box's longer side
    jitter: float = 0.06              # centre jitter, std as a fraction of the crop side
    scale_jitter: float = 0.08        # std of the log of the side's jitter factor
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 20
    resume: bool | str = False  # "auto" (the command's default), True or False: `train.open_run`
    threads: int | None = None
    device: str = "auto"
    max_minutes: float | None = None
    keep: bool = False                # continue training the checkpoint's own second stage
    repeat: int = 1                   # `data` repeated this many times per epoch
    extra_data: tuple = ()            # more CLEVR-layout folders mixed in (their `split`)
    extra_limit: int | None = None    # first N scenes of each extra folder
    val_data: str | None = None       # folder of `val_split` (default: `data`)
    source: str | None = None         # crops from "input" (the network input) or "image" (full resolution);
                                      # default: the checkpoint's with `keep`, else "input"
    centre: bool | None = None        # also regress the centre (default: the checkpoint's with `keep`, else False)
    geometry: bool | None = None      # the attribute head reads the crop's geometry (default: as `centre`)
    centre_loss: float = 10.0         # weight of the centre's L1 loss (offsets as fractions of the crop side)
    centre_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    centre_by_side: bool = False      # also fit the centre weight by object size (`fit_centre_by_side`)
    hidden_weight: float = 0.0        # an object's centre loss counts 1 + this x (hidden - 0.2) / 0.8 times, hidden
                                      # its `GoldObject.hidden` share above 0.2 (`hidden_loss_weights`)
    detected: float = 0.0             # share of training crops placed on the dense head's own detection of
                                      # the object (where it has one) instead of the gold box: `detected_boxes`
    cubes: str | None = None          # the parser's cube half-extent for 3-D positions (default: the training
                                      # scenes' convention, `vqa.vision.data.cube_convention`, else the checkpoint's)


class GoldCrops:
    """Every gold object of a `SceneParserData` (or of each part of a `MixedData`, repeated) as
    (group, image, centre, box, values, hidden share) arrays; a group is one folder's images: the network
    input (source "input") or a `pyramid` of the images at full resolution (source "image",
    the data loaded with `full=True`). A value -1 is not a target (see `data.gold_objects`).
    `detected`: per part, `detected_boxes` of its objects (crops may be placed there instead)."""

    def __init__(self, data: SceneParserData, source: str = "input", detected: list[np.ndarray] | None = None):
        parts = getattr(data, "parts", None) or [data]
        repeats = getattr(data, "repeats", None) or [1] * len(parts)
        self.categories = list(data.attributes)
        self.input_hw = tuple(data.image_size)
        self.levels: list[list[np.ndarray]] = []   # per group: pyramid levels (N, 3, h, w) uint8
        self.scales: list[float] = []              # per group: image pixels per network-input pixel
        groups, index, boxes, labels, found, hidden = [], [], [], [], [], []
        for g, (part, r) in enumerate(zip(parts, repeats)):
            if source == "image":
                if part.full is None:
                    raise VQAError("crops from the full-resolution images need the data loaded with full=True")
                self.levels.append(pyramid(part.full))
                self.scales.append(part.full.shape[-1] / part.image_size[1])
            else:
                self.levels.append([part.images.numpy()])
                self.scales.append(1.0)
            rows = [(i, o.cx, o.cy, o.w, o.h) for i, objs in enumerate(part.objects) for o in objs]
            lab = [[o.values[c] for c in self.categories] for objs in part.objects for o in objs]
            hid = [o.hidden for objs in part.objects for o in objs]
            det = np.full((len(rows), 4), np.nan) if detected is None else np.asarray(detected[g], np.float64)
            if det.shape != (len(rows), 4):
                raise ValueError(f"detected boxes {det.shape} for {len(rows)} objects")
            for _ in range(r):
                groups += [g] * len(rows)
                index += [row[0] for row in rows]
                boxes += [row[1:] for row in rows]
                labels += lab
                hidden += hid
                found.append(det)
        self.group = np.array(groups, dtype=np.int64)
        self.index = np.array(index, dtype=np.int64)
        self.boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.array(labels, dtype=np.int64).reshape(-1, len(self.categories))
        self.detected = np.concatenate(found) if found else np.zeros((0, 4))
        self.hidden = np.array(hidden, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.index)

    def crops(self, rows: np.ndarray, cfg, rng: np.random.Generator | None = None, *, jitter: float = 0.0,
              scale_jitter: float = 0.0, detected: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised crops (n, 3, r, r) of objects `rows`, the gold centres' offsets from the
        crop centres (n, 2) as fractions of the crop side, and the crops' `crop_geometry` (n, 3);
        with `rng`, jittered and half mirrored, and a share `detected` of them (of the objects
        the dense head found) placed on the dense head's box instead of the gold one."""
        rows = np.asarray(rows, np.int64)
        centres, sides = crop_boxes(self.boxes[rows], cfg)
        gold = centres.copy()
        if rng is not None and detected > 0:
            own = (rng.random(len(rows)) < detected) & np.isfinite(self.detected[rows, 0])
            if own.any():
                c, s = crop_boxes(self.detected[rows[own]], cfg)
                centres[own], sides[own] = c, s
        if rng is not None:
            sides = sides * np.exp(rng.normal(0, scale_jitter, len(rows)))
            centres = centres + rng.normal(0, jitter, (len(rows), 2)) * sides[:, None]
        offsets = (gold - centres) / sides[:, None]
        geometry = torch.from_numpy(crop_geometry(centres, sides, self.input_hw))
        x = np.zeros((len(rows), 3, cfg.refine_size, cfg.refine_size), np.float32)
        for g in np.unique(self.group[rows]):
            sel = np.nonzero(self.group[rows] == g)[0]
            s = self.scales[g]
            x[sel] = sample_pyramid_crops(self.levels[g], self.index[rows[sel]], centres[sel] * s, sides[sel] * s,
                                          cfg.refine_size)
        x = (torch.from_numpy(x) / 255.0 - MEAN) / STD
        offsets = torch.from_numpy(offsets.astype(np.float32))
        if rng is not None:
            flip = torch.from_numpy(rng.random(len(rows)) < 0.5)
            x[flip] = x[flip].flip(-1)
            offsets[flip, 0] = -offsets[flip, 0]
            geometry[flip] = mirror_geometry(geometry[flip])
        return x, offsets, geometry


def _matched_detections(model, data: SceneParserData, batch_size: int = 32, progress=None):
    """Per image i of `data`: (i, the dense head's detections (`detect`), [(detection, gold
    object)] matched as `SceneMetrics` matches, the image's normalised network input (1, 3, h, w))."""
    cfg = model.cfg
    model.eval()
    starts = range(0, len(data), batch_size)
    for k in (progress(starts, desc="dense detections", total=len(starts)) if progress else starts):
        idx = list(range(k, min(k + batch_size, len(data))))
        images = ((data.images[idx].float() / 255.0 - MEAN) / STD).to(model.device)
        with torch.no_grad():
            maps = {n: m.float().cpu().numpy() for n, m in model.predict_maps(images).items()}
        batch = images.cpu().numpy()
        for b, i in enumerate(idx):
            det = detect({n: m[b] for n, m in maps.items()}, cfg)
            g = data.graphs[i]
            yield i, det, match_objects(to_graph(det, cfg, image_size=(g.width, g.height)), g), batch[b:b + 1]


def detected_boxes(model, data: SceneParserData, batch_size: int = 32, progress=None) -> np.ndarray:
    """(objects of `data` in `GoldCrops` order, 4): each gold object's box (cx, cy, w, h) in
    network-input pixels as the dense head detects it (matched as `SceneMetrics` matches), NaN
    where it finds none. At parse time the second stage's crops sit on these boxes, which miss
    the gold ones most where an object is partly hidden; training on them shows it those crops."""
    rows = []
    for i, det, pairs, _ in _matched_detections(model, data, batch_size, progress):
        out = np.full((len(data.objects[i]), 4), np.nan)
        for p, j in pairs:
            out[j] = det["boxes"][p]
        rows.append(out)
    return np.concatenate(rows) if rows else np.zeros((0, 4))


def hidden_loss_weights(hidden: np.ndarray, weight: float) -> np.ndarray:
    """Per object, how many times its centre loss counts: 1 + `weight` x (hidden - F) / (1 - F), F = `HIDDEN_FLOOR`,
    for a hidden share above F, else 1. The second stage's centres are worst on
    objects mostly hidden behind others (the crop shows the visible part; the centre is the
    whole object's), and those are few: weighting them is how training looks at them more."""
    h = np.clip((np.asarray(hidden, np.float64) - HIDDEN_FLOOR) / (1 - HIDDEN_FLOOR), 0.0, 1.0)
    return 1.0 + weight * h


def _lr(step: int, total: int, cfg: RefineConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _split_logits(logits: torch.Tensor, attributes: dict) -> list[torch.Tensor]:
    sizes = [len(v) for v in attributes.values()]
    return list(torch.split(logits[:, :sum(sizes)], sizes, dim=1))


@torch.no_grad()
def gold_crop_accuracy(model, crops: GoldCrops, batch_size: int = 512) -> dict[str, float]:
    """Accuracy per category of the second stage alone on gold objects' (unjittered) crops."""
    cfg = model.cfg
    right = np.zeros(len(crops.categories))
    for k in range(0, len(crops), batch_size):
        rows = np.arange(k, min(k + batch_size, len(crops)))
        x, _, geometry = crops.crops(rows, cfg)
        logits = model.refine_logits(x.to(model.device), geometry.to(model.device)).cpu()
        for c, part in enumerate(_split_logits(logits, cfg.attributes)):
            right[c] += (part.argmax(1).numpy() == crops.labels[rows, c]).sum()
    known = (crops.labels >= 0).sum(0)
    return {cat: float(right[c] / max(1, known[c])) for c, cat in enumerate(crops.categories)}


@torch.no_grad()
def _resize_crops(model, size: int, log=None) -> None:
    """Continue a second stage at another crop side: its convolutions and attribute head read
    any size (mean-pooled); the centre head's weights over the final (g x g) grid are resampled
    bilinearly to the new grid and scaled by the cell-count ratio, so it starts where it was."""
    from .core import refine_grid
    old_g, new_g = refine_grid(model.cfg.refine_size), refine_grid(size)
    if log is not None:
        log(f"crop side {size} (the checkpoint's {model.cfg.refine_size})"
            + (": the centre head resampled to the new grid" if model.cfg.refine_centre else ""))
    if model.cfg.refine_centre and new_g != old_g:
        old = model.refine.centre
        C = old.in_features // (old_g * old_g)
        w = old.weight.reshape(2 * C, 1, old_g, old_g)
        w = torch.nn.functional.interpolate(w, size=(new_g, new_g), mode="bilinear", align_corners=True)
        new = torch.nn.Linear(C * new_g * new_g, 2).to(old.weight.device)
        new.weight.copy_(w.reshape(2, C * new_g * new_g) * (old_g * old_g) / (new_g * new_g))
        new.bias.copy_(old.bias)
        model.refine.centre = new
    model.cfg.refine_size = size


def _sources(model, data: SceneParserData, i: int) -> list | None:
    """`source_crops`' sources for image i of `data` (None where crops come from the network input)."""
    if model.cfg.refine_source != "image":
        return None
    return [pyramid(((data.full[i].astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32))]


def _numpy_refine(model):
    """The torch second stage as `parse_images`' `refine`: numpy crops and geometry -> numpy outputs."""
    def refine(crops, geometry):
        with torch.no_grad():
            return model.refine_logits(torch.from_numpy(crops).to(model.device),
                                       torch.from_numpy(geometry).to(model.device)).cpu().numpy()
    return refine


def _crop_logits(model, boxes: np.ndarray, batch: np.ndarray, sources: list | None) -> torch.Tensor:
    """The second stage's outputs (n, K [+ 2]) for boxes (n, 4) in network-input pixels of the image
    `batch` (1, 3, h, w) and `sources` (`_sources`)."""
    x, centres, sides = source_crops(boxes, np.zeros(len(boxes), np.int64), model.cfg, batch=batch,
                                     sources=sources, input_hw=batch.shape[-2:])
    return torch.from_numpy(_numpy_refine(model)(x, crop_geometry(centres, sides, batch.shape[-2:])))


class CentreRows:
    """Detected objects' centres for choosing the centre weight: the dense head's and the crop
    net's (gold-image pixels), the gold centre (`SceneObject.anchor`), the box's longer side
    as a fraction of the input width and, where measured, the crop net's centre from the
    tighter crop (`SceneParserConfig.refine_zoom_context`)."""

    def __init__(self):
        self.dense, self.crop, self.gold, self.side, self.zoom = [], [], [], [], []

    @property
    def n(self) -> int:
        return len(self.gold)

    def add(self, cfg, graph, boxes: np.ndarray, offsets: np.ndarray, gold_index, batch: np.ndarray,
            zoom: np.ndarray | None = None) -> None:
        """Boxes (n, 4) in network-input pixels of one image, the crop net's centre offsets (n, 2),
        the matched gold objects' indices in `graph`, the image's network input (1, 3, h, w), and
        the tighter crops' centres (n, 2) in network-input pixels (`zoom_centres`)."""
        h, w = batch.shape[-2:]
        centres, sides = crop_boxes(boxes, cfg)
        scale = np.array([graph.width / w, graph.height / h])
        self.dense += list(np.asarray(boxes, np.float64)[:, :2] * scale)
        self.crop += list((centres + sides[:, None] * offsets) * scale)
        self.gold += [np.asarray(graph.objects[j].anchor, float) for j in gold_index]
        self.side += list(np.asarray(boxes, np.float64)[:, 2:].max(1) / w)
        if zoom is not None:
            self.zoom += list(np.asarray(zoom, np.float64) * scale)

    def crops(self, zoom_from: float = 0.0) -> np.ndarray:
        """(n, 2) the crop net's centres, averaged with the tighter crop's from `zoom_from` up."""
        c = np.array(self.crop).reshape(-1, 2)
        if zoom_from:
            if len(self.zoom) != self.n:
                raise ValueError("these rows hold no tighter crops' centres")
            big = np.array(self.side) >= zoom_from
            c[big] = (c[big] + np.array(self.zoom)[big]) / 2
        return c

    def errors(self, weights, zoom_from: float = 0.0) -> np.ndarray:
        """Centre errors (n,) in gold-image pixels with per-object (n,) or one centre weight."""
        d, c, g = np.array(self.dense), self.crops(zoom_from), np.array(self.gold)
        a = np.broadcast_to(np.asarray(weights, np.float64), (len(g),))[:, None]
        return np.linalg.norm(d + a * (c - d) - g, axis=1)


def _add_centre_rows(rows: CentreRows, model, graph, boxes: np.ndarray, gold_index, logits: torch.Tensor,
                     batch: np.ndarray, sources: list | None, zoom: bool) -> None:
    """Add an image's matched detections (boxes (n, 4) in network-input pixels, their gold objects'
    indices in `graph`, the second stage's outputs (n, K + 2) for them) to `rows`, with the tighter
    crops' centres where `zoom`."""
    cfg = model.cfg
    K = n_attribute_logits(cfg)
    tight = (zoom_centres(cfg, boxes, np.zeros(len(boxes), np.int64), _numpy_refine(model), batch=batch,
                          sources=sources) if zoom else None)
    rows.add(cfg, graph, boxes, logits[:, K:K + 2].numpy(), gold_index, batch, tight)


def _centre_row(weight, err: np.ndarray, zoom_from: float = 0.0) -> dict:
    return {"weight": weight, "zoom_from": zoom_from, "within_5px": float((err <= 5.0).mean()),
            "mean_error": float(err.mean()), "median_error": float(np.median(err))}


# the knots of `fit_centre_by_side`: box sides of 1/16 and 5/16 of the image width (CLEVR's
# small far objects to its large near ones), and the weights tried at each
SIDE_KNOTS = (0.0625, 0.3125)
SIDE_WEIGHTS = tuple(round(0.2 + 0.05 * k, 2) for k in range(23))  # 0.2 ... 1.3
# `refine_zoom_from` tried by `choose_centre`: box sides of 12/48 ... 6/48 of the input width
ZOOM_FROM = tuple(round(k / 48, 4) for k in range(12, 5, -1))


def fit_centre_by_side(rows: CentreRows, knots=SIDE_KNOTS, grid=SIDE_WEIGHTS, zoom_from: float = 0.0
                       ) -> tuple[tuple[tuple[float, float], ...], dict]:
    """The centre weight by object size (`SceneParserConfig.refine_centre_by_side`, knots at box
    sides `knots` as fractions of the input width) with the lowest mean centre error on `rows`
    (ties: the first in grid order); returns it and its row of the table."""
    cfg = SceneParserConfig(refine_centre_weight=0.0)
    boxes = np.zeros((rows.n, 4))
    boxes[:, 2] = rows.side
    best = None
    for a in grid:
        for b in grid:
            cfg.refine_centre_by_side = ((knots[0], a), (knots[1], b))
            err = rows.errors(core_centre_weights(cfg, boxes, 1), zoom_from)
            if best is None or err.mean() < best[1].mean() - 1e-12:
                best = (cfg.refine_centre_by_side, err)
    return best[0], _centre_row([list(k) for k in best[0]], best[1], zoom_from)


def choose_centre(cfg: SceneParserConfig, rows: CentreRows, weights, *, by_side: bool = False,
                  zoom=()) -> dict:
    """Set `cfg.refine_centre_weight` (of `weights`) and `cfg.refine_zoom_from` (off or one of
    `zoom`; the rows need the tighter crops' centres) to the pair with the most centres of `rows`
    within 5 pixels (ties: the lower mean error, then the first: no zoom, then the larger boxes
    only) and clear `cfg.refine_centre_by_side`; with `by_side`, set the weight by object size of
    `fit_centre_by_side` instead where it has as many centres within 5 pixels and a lower mean
    error. Returns the table."""
    grid = [_centre_row(a, rows.errors(a, z), z) for z in (0.0, *zoom) for a in weights]
    best = max(grid, key=lambda r: (round(r["within_5px"], 9), -round(r["mean_error"], 9)))
    cfg.refine_centre_weight, cfg.refine_zoom_from, cfg.refine_centre_by_side = best["weight"], best["zoom_from"], ()
    table = {"chosen": best["weight"], "zoom_from": best["zoom_from"], "objects": rows.n, "grid": grid}
    if by_side:
        knots, row = fit_centre_by_side(rows, zoom_from=best["zoom_from"])
        table["by_side"] = row
        if round(row["within_5px"], 9) >= round(best["within_5px"], 9) and row["mean_error"] < best["mean_error"]:
            cfg.refine_centre_by_side = knots
            table["chosen"] = row["weight"]
    return table


SIZE_PRIOR_MIN = 20  # objects of a shape and size the prior needs to fit them


def fit_size_prior(roots, split: str = "train", *, attributes: dict | None = None) -> dict:
    """Fit `SceneParserConfig.refine_size_prior` on the scenes files of CLEVR-layout folders
    whose objects carry amodal boxes (`bbox`, the project's renders; released CLEVR's scenes have
    none): per "shape/size" with at least `SIZE_PRIOR_MIN` objects, least squares of the box's
    width and height (fractions of the image width) on (1, x / width, y / height) of its
    `pixel_coords`. -> {"prior": {key: [[3 coefficients of w], [of h]]}, "classes": {key:
    {"objects", "spread"}}} (spread: the std of the longer side's relative error)."""
    from ..datasets.clevr import iter_scene_records

    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    rows: dict[str, list] = {}
    for root in roots:
        path = Path(root) / "scenes" / f"CLEVR_{split}_scenes.json"
        if not path.is_file():
            raise VQAError(f"{root}: no scenes file for split {split!r} (expected {path})")
        for i, rec in enumerate(iter_scene_records(path)):
            W, H = rec.get("width"), rec.get("height")
            for k, o in enumerate(rec.get("objects") or []):
                box, pc = o.get("bbox"), o.get("pixel_coords")
                if box is None or pc is None or not W or not H:
                    raise VQAError(f"{path}: scene {i} object {k} has no amodal box (bbox) or pixel_coords, or "
                                   "the scene no width/height: fit the size prior on the project's renders (`vqa generate "
                                   "--renderer blender`), not released CLEVR's scenes")
                if attributes and (o.get("shape") not in attributes.get("shape", [o.get("shape")])
                                   or o.get("size") not in attributes.get("size", [o.get("size")])):
                    continue
                rows.setdefault(f"{o['shape']}/{o['size']}", []).append(
                    (pc[0] / W, pc[1] / H, box[2] / W, box[3] / W))
    prior, classes = {}, {}
    for key, r in sorted(rows.items()):
        if len(r) < SIZE_PRIOR_MIN:
            continue
        a = np.asarray(r, np.float64)
        X = np.c_[np.ones(len(a)), a[:, 0], a[:, 1]]
        coef = np.linalg.lstsq(X, a[:, 2:], rcond=None)[0].T  # (2, 3)
        fit = X @ coef.T
        spread = float(np.std(a[:, 2:].max(1) / fit.max(1) - 1))
        prior[key] = [[float(c) for c in row] for row in coef]
        classes[key] = {"objects": len(r), "spread": spread}
    if not prior:
        raise VQAError(f"no shape and size with {SIZE_PRIOR_MIN} objects or more in {', '.join(map(str, roots))}")
    return {"prior": prior, "classes": classes}


def tune_centre(model, roots, split: str = "val", *, limit: int | None = None, weights=(0.0, 0.25, 0.5, 0.75, 1.0),
                by_side: bool = False, zoom=ZOOM_FROM, batch_size: int = 32, progress=None) -> dict:
    """Choose the centre weight and the tighter second crop of large objects of a parser with a
    second stage that regresses centres (`choose_centre`) on the detected objects of one or more
    CLEVR-layout folders' `split` (first `limit` scenes of each), set them on `model.cfg` and
    return the table (with "folders")."""
    cfg = model.cfg
    if not (cfg.refine_size and cfg.refine_centre):
        raise VQAError("this scene parser's second stage does not regress centres: nothing to tune "
                       "(train one with `vqa train scene-refiner --centre`)")
    rows = CentreRows()
    counts = {}
    for root in roots:
        data = SceneParserData(root, split, image_size=cfg.image_size, attributes=cfg.attributes, limit=limit,
                               progress=progress, full=cfg.refine_source == "image")
        before = rows.n
        for i, det, pairs, batch in _matched_detections(model, data, batch_size, progress=progress):
            if pairs:
                boxes = det["boxes"][[p for p, _ in pairs]]
                sources = _sources(model, data, i)
                _add_centre_rows(rows, model, data.graphs[i], boxes, [j for _, j in pairs],
                                 _crop_logits(model, boxes, batch, sources), batch, sources, bool(zoom))
        counts[str(root)] = rows.n - before
    if not rows.n:
        raise VQAError(f"no detected object matched a gold one in {', '.join(map(str, roots))} (split {split})")
    return {**choose_centre(cfg, rows, weights, by_side=by_side, zoom=zoom), "folders": counts}


@torch.no_grad()
def choose_weights(model, data: SceneParserData, weights, batch_size: int = 32, centre_weights=(0.0,),
                   centre_by_side: bool = False) -> dict:
    """The mixing weight per category with the best accuracy on the detected val objects
    (ties: the lower NLL), set in `model.cfg.refine_weight`; with `cfg.refine_centre`, the
    centre weight (`cfg.refine_centre_weight`) and the tighter crop of large objects
    (`cfg.refine_zoom_from`) with the most centres within 5 pixels of the gold image (ties: the
    lower mean error; `choose_centre`), and with `centre_by_side` a weight by object size
    (`fit_centre_by_side`) where it does better still; returns the table."""
    cfg = model.cfg
    dense = {c: [] for c in cfg.attributes}
    crop_parts = {c: [] for c in cfg.attributes}
    gold = {c: [] for c in cfg.attributes}
    rows = CentreRows()
    for i, det, pairs, batch in _matched_detections(model, data, batch_size):
        if not pairs:
            continue
        p_idx = np.array([p for p, _ in pairs])
        sources = _sources(model, data, i)  # one pyramid per image for both crops
        logits = _crop_logits(model, det["boxes"][p_idx], batch, sources)
        for cat, part in zip(cfg.attributes, _split_logits(logits, cfg.attributes)):
            dense[cat].append(torch.from_numpy(det["logits"][cat][:, p_idx].T.copy()))
            crop_parts[cat].append(part)
            gold[cat].append(torch.tensor([data.objects[i][j].values[cat] for _, j in pairs]))
        if cfg.refine_centre:
            _add_centre_rows(rows, model, data.graphs[i], det["boxes"][p_idx], [j for _, j in pairs], logits, batch,
                             sources, True)
    table = {}
    if cfg.refine_centre and rows.n:
        table["centre"] = choose_centre(cfg, rows, centre_weights, by_side=centre_by_side, zoom=ZOOM_FROM)
    for cat in cfg.attributes:
        if not gold[cat]:
            continue
        d, c, y = torch.cat(dense[cat]), torch.cat(crop_parts[cat]), torch.cat(gold[cat])
        known = y >= 0
        d, c, y = d[known], c[known], y[known]
        grid = []
        for a in weights:
            mixed = (1 - a) * d + a * c
            grid.append({"weight": a, "accuracy": float((mixed.argmax(1) == y).float().mean()),
                         "nll": float(F.cross_entropy(mixed, y))})
        best = max(grid, key=lambda r: (round(r["accuracy"], 9), -r["nll"]))
        cfg.refine_weight[cat] = best["weight"]
        table[cat] = {"chosen": best["weight"], "objects": int(len(y)), "grid": grid}
    return table


def _base_train(path) -> dict | None:
    """The `train` record (the dense part's training settings) of a scene-parser checkpoint."""
    from .scene_parser import DEFAULT_CHECKPOINT
    ckpt = torch.load(path or DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    return ckpt.get("train") if isinstance(ckpt, dict) else None


def _settings(cfg: RefineConfig) -> dict:
    return {**asdict(cfg), "channels": list(cfg.channels), "weights": list(cfg.weights),
            "centre_weights": list(cfg.centre_weights)}


def train_refiner(cfg: RefineConfig, *, progress=None, log=print) -> dict:
    """Train (or resume) the second stage of a scene parser; returns a summary."""
    if not 0 <= cfg.detected <= 1:  # before any data is loaded
        raise VQAError(f"detected crops: expected a share in [0, 1], got {cfg.detected}")
    if not cfg.hidden_weight >= 0:
        raise VQAError(f"hidden weight: expected a number >= 0, got {cfg.hidden_weight}")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VQAError("--device cuda: no CUDA device is available")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out, last, state, model = open_run(cfg.out, cfg.resume, _settings(cfg), key="refine_train")
    if model is not None:
        if model.refine is None:
            raise VQAError(f"{last}: has no second stage to resume")
        base_train = state.get("train")
    else:
        torch.manual_seed(cfg.seed)
        model = load_scene_parser(cfg.checkpoint)
        base_train = _base_train(cfg.checkpoint)
        if cfg.keep:
            if model.refine is None:
                raise VQAError(f"{cfg.checkpoint}: has no second stage to continue training")
            if cfg.source is not None:
                model.cfg.refine_source = cfg.source
            if cfg.size is not None and cfg.size != model.cfg.refine_size:
                _resize_crops(model, cfg.size, log)
            if cfg.centre and not model.cfg.refine_centre:  # a centre head, starting at 0
                from .core import refine_grid
                model.refine.centre = torch.nn.Linear(model.refine.head.in_features * refine_grid(model.cfg.refine_size) ** 2, 2)
                torch.nn.init.zeros_(model.refine.centre.weight)
                torch.nn.init.zeros_(model.refine.centre.bias)
                model.cfg.refine_centre, model.cfg.refine_centre_weight = True, 0.0
            geometry = cfg.centre if cfg.geometry is None else cfg.geometry
            if geometry and not model.cfg.refine_geometry:  # three more head inputs, weights starting at 0
                head = model.refine.head
                new = torch.nn.Linear(head.in_features + 3, head.out_features)
                with torch.no_grad():
                    new.weight.zero_()
                    new.weight[:, :head.in_features] = head.weight
                    new.bias.copy_(head.bias)
                model.refine.head, model.refine.geometry = new, True
                model.cfg.refine_geometry = True
        else:
            model.cfg.refine_size, model.cfg.refine_channels = cfg.size or 24, tuple(cfg.channels)
            model.cfg.refine_context, model.cfg.refine_weight = cfg.context, {}
            model.cfg.refine_source = cfg.source or "input"
            model.cfg.refine_centre, model.cfg.refine_centre_weight = bool(cfg.centre), 0.0
            model.cfg.refine_geometry = bool(cfg.centre if cfg.geometry is None else cfg.geometry)
            model.add_refine()
    if cfg.cubes is not None:
        if cfg.cubes not in ("synth", "clevr"):
            raise VQAError(f"cubes must be 'synth' or 'clevr', got {cfg.cubes!r}")
        model.cfg.cubes = cfg.cubes
    if model.cfg.refine_source not in ("input", "image"):
        raise VQAError(f"crop source must be 'input' or 'image', got {model.cfg.refine_source!r}")
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.refine.parameters():
        p.requires_grad_(True)
    mcfg = model.cfg
    full = mcfg.refine_source == "image"
    data = load_training_data(cfg.data, cfg.split, image_size=mcfg.image_size, attributes=mcfg.attributes,
                              limit=cfg.limit, repeat=cfg.repeat, extra=tuple(cfg.extra_data),
                              extra_limit=cfg.extra_limit, progress=progress, full=full)
    if state is None:
        adopt_cubes(mcfg, data, cfg.cubes, log=log)
    detected = None
    if cfg.detected > 0:
        detected = [detected_boxes(model, part, progress=progress) for part in getattr(data, "parts", None) or [data]]
        n_found = sum(int(np.isfinite(d[:, 0]).sum()) for d in detected)
        log(f"dense detections: {n_found} of {sum(len(d) for d in detected)} training objects found; "
            f"{100 * cfg.detected:g}% of their crops sit on them")
    crops = GoldCrops(data, mcfg.refine_source, detected)
    if state is not None:
        check_size(state.get("examples"), len(crops), file=last, what="training crops")
    val_root = Path(cfg.val_data or cfg.data)
    has_val = (val_root / "scenes" / f"CLEVR_{cfg.val_split}_scenes.json").is_file()
    val = (SceneParserData(val_root, cfg.val_split, image_size=mcfg.image_size, attributes=mcfg.attributes,
                           limit=cfg.val_limit, full=full) if has_val else None)
    params = list(model.refine.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    steps_per_epoch = max(1, len(crops) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    logf = open(out / "log.jsonl", "a")
    t_start, seen, stopped, accuracy = time.perf_counter(), 0, False, None

    def checkpoint(path: Path, full: bool) -> None:
        extra = {"refine_train": _settings(cfg), "step": step, "epoch": step / steps_per_epoch,
                 "examples": len(crops)}
        if base_train is not None:  # how the dense part was trained
            extra["train"] = base_train
        if full:
            extra["optimizer"] = opt.state_dict()
        _save(checkpoint_dict(model, **extra), path)

    def out_of_time() -> bool:
        return cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes

    bar = progress(range(step, total), desc="train refiner", total=total, initial=step) if progress else None
    model.eval()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = rng.permutation(len(crops))
        model.refine.train()
        for k in range(k, steps_per_epoch):
            rows = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            brng = np.random.default_rng([cfg.seed, epoch, k])
            x, offsets, geometry = crops.crops(rows, mcfg, brng, jitter=cfg.jitter, scale_jitter=cfg.scale_jitter,
                                               detected=cfg.detected)
            x, offsets, geometry = x.to(device), offsets.to(device), geometry.to(device)
            y = torch.from_numpy(crops.labels[rows]).to(device)
            for group in opt.param_groups:
                group["lr"] = _lr(step, total, cfg)
            logits = model.refine(x.contiguous(memory_format=torch.channels_last), geometry)
            loss = sum(F.cross_entropy(part, y[:, c], ignore_index=-1)
                       for c, part in enumerate(_split_logits(logits, mcfg.attributes)))
            if mcfg.refine_centre:
                K = n_attribute_logits(mcfg)
                err = (logits[:, K:K + 2] - offsets).abs().mean(1)
                if cfg.hidden_weight > 0:
                    err = err * torch.from_numpy(hidden_loss_weights(crops.hidden[rows], cfg.hidden_weight)).to(err)
                loss = loss + cfg.centre_loss * err.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(rows)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if step % cfg.log_every == 0:
                logf.write(json.dumps({"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": float(loss.detach()),
                                       "lr": _lr(step, total, cfg),
                                       "crops_per_s": round(seen / (time.perf_counter() - t_start), 1)}) + "\n")
                logf.flush()
            if step % cfg.checkpoint_every == 0:
                checkpoint(last, full=True)
            if out_of_time():
                stopped = True
                break
        checkpoint(last, full=True)
        if val is not None:
            accuracy = gold_crop_accuracy(model, GoldCrops(val, mcfg.refine_source))
            logf.write(json.dumps({"eval_epoch": step // steps_per_epoch, "step": step, "gold_crop_accuracy": accuracy}) + "\n")
            logf.flush()
            log(f"epoch {step // steps_per_epoch}: val crop accuracy " +
                ", ".join(f"{c} {100 * a:.2f}%" for c, a in accuracy.items()))
        if stopped:
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    table = None
    if val is not None:
        table = choose_weights(model, val, cfg.weights, centre_weights=cfg.centre_weights,
                               centre_by_side=cfg.centre_by_side)
        logf.write(json.dumps({"refine_weight": table}) + "\n")
        log("mixing weights chosen on " + cfg.val_split + ": " + ", ".join(
            f"{c} {t['chosen']} ({100 * max(r['accuracy'] for r in t['grid']):.2f}% of {t['objects']})"
            for c, t in table.items() if c != "centre"))
        if "centre" in table:
            t = table["centre"]
            zoom = (f"a tighter crop from {100 * t['zoom_from']:.2f}% of the width" if t["zoom_from"]
                    else "no tighter crop")
            log(f"centre weight chosen on {cfg.val_split}: {t['chosen']}, {zoom} (without it: " + ", ".join(
                f"{r['weight']}: {100 * r['within_5px']:.2f}% within 5 px, mean {r['mean_error']:.2f} px"
                for r in t["grid"] if not r["zoom_from"]) + f"; {t['objects']} objects)")
    else:
        log(f"no {cfg.val_split} split: the second stage is attached with weight 0 (no effect) for every category")
    checkpoint(out / "scene_parser.pt", full=False)
    logf.close()
    return {"out": str(out), "steps": step, "seconds": round(seconds, 1), "stopped_by_time": stopped,
            "crops_per_s": round(seen / seconds, 1) if seconds > 0 else None, "val_crop_accuracy": accuracy,
            "refine_weight": dict(mcfg.refine_weight), "refine_centre_weight": mcfg.refine_centre_weight,
            "refine_centre_by_side": [list(k) for k in mcfg.refine_centre_by_side],
            "refine_zoom_from": mcfg.refine_zoom_from,
            "weights": table, "checkpoint": str(out / "scene_parser.pt")}
