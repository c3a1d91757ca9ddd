"""Training loop of the GQA scene parser, on GQA's official layout.

    summary = train_gqa_scene_parser(GQATrainConfig(images="gqa/images",
        scenes="gqa/sceneGraphs/train_sceneGraphs.json", out="runs/gqa_sp"))

- Vocabularies (names, attributes, relation names) come from the training scene graphs
  (`gqa_data.scan_vocabulary`, those seen at least `min_count` times); the heads' sizes follow.
- Loss: the CLEVR parser's detection loss on the dense maps (`targets.scene_parser_loss`,
  no attribute maps) + name cross-entropy + attribute and relation binary cross-entropy
  (summed over the vocabulary, averaged over objects / ordered pairs). The heads read the
  gold boxes, jittered by up to `box_jitter` of their size (inference reads detected boxes).
- Checkpoints, resume, `max_minutes`, logs and DDP as the CLEVR parser (`vqa.vision.train`,
  whose helpers this reuses): `out/last.pt` (with the optimiser), `out/gqa_scene_parser.pt`
  at the end; `out/log.jsonl`. Held-out scores (`gqa_metrics`) on `val_scenes` after each epoch,
  and at the end (`tune`) the objectness threshold, NMS IoU and hysteresis with the best
  detection F1 there (`tune_decoding`), stored in the checkpoint's config. A finished run resumed (`resume`, with
  `epochs` at most those done) only tunes and writes `gqa_scene_parser.pt` again.
  The order of examples is a function of (seed, epoch): a resumed run sees the same batches.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VQAError
from ..nn.vit import autocast
from .core import HYSTERESIS_GRID, decoding_grid
from .gqa_core import GQASceneParserConfig
from .gqa_data import GQASceneData, find_image, scan_vocabulary
from .gqa_scene_parser import GQASceneParser, checkpoint_dict, model_from_checkpoint
from .targets import scene_parser_loss
from .train import _lr, _save, distributed_env


@dataclass
class GQATrainConfig:
    images: str
    scenes: str
    out: str = "runs/gqa_scene_parser"
    val_images: str | None = None       # default: `images`
    val_scenes: str | None = None
    limit: int | None = None
    val_limit: int | None = 200
    min_count: int = 1                  # vocabulary: values seen at least this often in training
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    box_jitter: float = 0.05
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    resume: bool = False
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    max_minutes: float | None = None
    tune: bool = True                   # choose the objectness threshold / NMS IoU on val_scenes at the end
    model: dict = field(default_factory=dict)   # GQASceneParserConfig overrides ("backbone": {...} for the ViT)
    init: str | None = None             # fine-tune: start from this checkpoint (its architecture and vocabulary)


def pair_targets(gold, n_rel: int, device) -> torch.Tensor:
    """Multi-hot relation targets of all images' ordered pairs, concatenated as the model's."""
    rows = []
    for g in gold:
        n = len(g.boxes)
        t = torch.zeros(n * max(n - 1, 0), n_rel)
        if len(g.relations):
            s, o, p = (torch.from_numpy(g.relations[:, c]) for c in range(3))
            t[s * (n - 1) + torch.where(o < s, o, o - 1), p] = 1.0
        rows.append(t)
    return torch.cat(rows).to(device)


def gqa_loss(maps, logits, dense, gold, device) -> tuple[torch.Tensor, dict[str, float]]:
    det, parts = scene_parser_loss(maps, dense, {})
    names = torch.from_numpy(np.concatenate([g.names for g in gold])).to(device)
    attrs = torch.from_numpy(np.concatenate([g.attributes for g in gold])).to(device)
    n_obj = max(1, len(names))
    name_loss = F.cross_entropy(logits["names"].float(), names, ignore_index=-1) if (names >= 0).any() \
        else logits["names"].sum() * 0
    attr_loss = F.binary_cross_entropy_with_logits(logits["attributes"].float(), attrs, reduction="sum") / n_obj
    rel_t = pair_targets(gold, logits["relations"].shape[1], device)
    rel_loss = (F.binary_cross_entropy_with_logits(logits["relations"].float(), rel_t, reduction="sum")
                / max(1, len(rel_t)))
    total = det + name_loss + attr_loss + rel_loss
    parts = {k: v for k, v in parts.items() if k != "attr"}
    parts.update(name=float(name_loss.detach()), attributes=float(attr_loss.detach()), relations=float(rel_loss.detach()))
    return total, parts


def jittered(boxes, amount: float, g: torch.Generator) -> torch.Tensor:
    b = torch.from_numpy(boxes).float()
    if amount <= 0 or len(b) == 0:
        return b
    noise = (torch.rand(len(b), 4, generator=g) * 2 - 1) * amount
    wh = b[:, 2:].repeat(1, 2)
    return torch.cat([b[:, :2] + noise[:, :2] * wh[:, :2], b[:, 2:] * (1 + noise[:, 2:])], 1)


def evaluate_gqa_parser(model, images_dir, scenes_file, *, limit=None, progress=None) -> dict:
    """Parse the images of a scene-graph file and score them (`gqa_metrics.gqa_scene_scores`)."""
    from ..datasets.gqa import SceneGraphs
    from .gqa_metrics import gqa_scene_scores

    graphs = SceneGraphs(scenes_file)
    ids = list(graphs)[:limit] if limit else list(graphs)
    paths = [find_image(Path(images_dir), i) for i in ids]
    predicted = []
    it = range(0, len(ids), 16)
    if progress is not None:
        it = progress(it, desc="parse", total=len(it))
    for k in it:
        predicted += model.parse_images(paths[k:k + 16], image_ids=ids[k:k + 16])
    return gqa_scene_scores(predicted, [graphs[i] for i in ids])


THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
NMS_IOUS = (0.3, 0.4, 0.5, 0.7)


def tune_decoding(model, images_dir, scenes_file, *, limit=None, thresholds=THRESHOLDS, ious=NMS_IOUS,
                  low=HYSTERESIS_GRID) -> dict:
    """The decoding (objectness threshold, NMS IoU, hysteresis) with the best detection F1 on a
    held-out scene-graph file (ties: the first in grid order, which starts with hysteresis off).
    The network runs once per image and only the box decoding is repeated (detection F1 needs
    no heads). Sets the choice in `model.cfg.backbone`; returns it with the grid."""
    from ..datasets.gqa import SceneGraphs
    from ..scene import SceneGraph, SceneObject
    from .core import detect, load_image
    from .gqa_core import letterbox_uint8, normalise_uint8
    from .gqa_metrics import gqa_scene_scores

    graphs = SceneGraphs(scenes_file)
    ids = list(graphs)[:limit] if limit else list(graphs)
    gold = [graphs[i] for i in ids]
    model.eval()
    maps, scales = [], []
    for k in range(0, len(ids), 16):  # the network's dense maps, once
        pils = [load_image(find_image(Path(images_dir), i)) for i in ids[k:k + 16]]
        boxed = [letterbox_uint8(im, model.cfg.image_size) for im in pils]
        with torch.no_grad():
            out, _ = model(torch.from_numpy(normalise_uint8(np.stack([a for a, _ in boxed]))).to(model.device))
        out = {n: m.float().cpu().numpy() for n, m in out.items()}
        maps += [{n: m[j] for n, m in out.items()} for j in range(len(pils))]
        scales += [s for _, s in boxed]

    def boxes_only(det, s, g):
        objs = [SceneObject(id=str(j), name="object", score=float(sc),
                            bbox=[(cx - bw / 2) / s, (cy - bh / 2) / s, bw / s, bh / s])
                for j, ((cx, cy, bw, bh), sc) in enumerate(zip(det["boxes"].tolist(), det["scores"].tolist()))]
        return SceneGraph(g.image_id, g.width, g.height, objs)

    saved = dict(model.cfg.backbone)
    grid, best = [], None
    for setting in decoding_grid(thresholds, ious, low, off_iou=model.cfg.backbone_config().low_iou):
        model.cfg.backbone.update(setting)
        bcfg = model.cfg.backbone_config()
        pred = [boxes_only(detect(m, bcfg), s, g) for m, s, g in zip(maps, scales, gold)]
        grid.append({**setting, "f1": gqa_scene_scores(pred, gold)["detection_f1"] or 0.0})
        if best is None or grid[-1]["f1"] > best["f1"]:
            best = grid[-1]
    model.cfg.backbone.clear()
    model.cfg.backbone.update(saved, **{k: v for k, v in best.items() if k != "f1"})
    return {**best, "grid": grid, "images": len(ids)}


def train_gqa_scene_parser(cfg: GQATrainConfig, *, progress=None, log=print) -> dict:
    rank, world, local_rank = distributed_env()
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device if cfg.device != "cuda" else f"cuda:{local_rank}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VQAError("--device cuda: no CUDA device is available")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if world > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    state = None
    if cfg.resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model = model_from_checkpoint(state, file=last)
    elif cfg.init:
        from .gqa_scene_parser import load_gqa_scene_parser
        from .scene_parser import resize_for_fine_tuning

        torch.manual_seed(cfg.seed)
        model = load_gqa_scene_parser(cfg.init)  # its vocabulary: names, attributes, relations unseen there are no targets
        settings = dict((cfg.model or {}).get("backbone") or {})
        size = settings.pop("image_size", None)
        if settings or set(cfg.model or {}) - {"backbone"}:
            raise VQAError("fine-tuning (init) keeps the checkpoint's architecture: leave out model settings; "
                           "only the input size may change")
        resize_for_fine_tuning(model, size, log)
    else:
        vocab = scan_vocabulary(cfg.scenes, limit=cfg.limit, min_count=cfg.min_count)
        torch.manual_seed(cfg.seed)
        model = GQASceneParser(GQASceneParserConfig(**vocab, **cfg.model))
    mcfg = model.cfg
    model.to(device)
    data = GQASceneData(cfg.images, cfg.scenes, image_size=mcfg.image_size, names=mcfg.names,
                        attributes=mcfg.attributes, relations=mcfg.relations, limit=cfg.limit,
                        progress=progress if rank == 0 else None)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "pos_embed" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    per_rank = len(data) // world
    steps_per_epoch = max(1, per_rank // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    logf = open(out / "log.jsonl", "a") if rank == 0 else None
    report, seen, t_start = None, 0, time.perf_counter()

    def checkpoint(path: Path, full: bool) -> None:
        extra = {"train": asdict(cfg), "step": step, "epoch": step / steps_per_epoch}
        if full:
            extra["optimizer"] = opt.state_dict()
        _save(checkpoint_dict(model, **extra), path)

    def out_of_time() -> bool:
        if cfg.max_minutes is None:
            return False
        flag = torch.tensor([float(time.perf_counter() - t_start > 60 * cfg.max_minutes)], device=device)
        if world > 1:
            import torch.distributed as dist
            dist.broadcast(flag, 0)
        return bool(flag.item())

    stopped = False
    bar = progress(range(step, total), desc="train", total=total, initial=step) if progress and rank == 0 else None
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(data), generator=g)[:per_rank * world]
        mine = perm[rank::world]
        net.train()
        for k in range(k, steps_per_epoch):
            idx = mine[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()
            images, dense, gold = data.batch(idx)
            jg = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            boxes = [jittered(gd.boxes, cfg.box_jitter, jg).to(device) for gd in gold]
            contents = torch.tensor([gd.content for gd in gold], dtype=torch.float32, device=device)
            images = images.to(device, non_blocking=True)
            dense = {n: t.to(device, non_blocking=True) for n, t in dense.items()}
            for group in opt.param_groups:
                group["lr"] = _lr(step, total, cfg)
            with autocast(device, enabled=cfg.amp):
                maps, logits = net(images, boxes, contents)
            loss, parts = gqa_loss(maps, logits, dense, gold, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            seen += len(idx) * world
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if logf and step % cfg.log_every == 0:
                rate = seen / (time.perf_counter() - t_start)
                logf.write(json.dumps({"step": step, "epoch": round(step / steps_per_epoch, 3),
                                       "loss": float(loss.detach()), **parts, "lr": _lr(step, total, cfg),
                                       "images_per_s": round(rate, 2)}) + "\n")
                logf.flush()
            if rank == 0 and step % cfg.checkpoint_every == 0:
                checkpoint(last, full=True)
            if out_of_time():
                break
        if rank == 0:
            checkpoint(last, full=True)
            if cfg.val_scenes:
                report = evaluate_gqa_parser(model, cfg.val_images or cfg.images, cfg.val_scenes, limit=cfg.val_limit)
                logf.write(json.dumps({"eval_epoch": step // steps_per_epoch, "step": step, **report}) + "\n")
                logf.flush()
                from .gqa_metrics import format_scores
                log(f"epoch {step // steps_per_epoch}: {format_scores(report)}")
        if out_of_time():
            stopped = True
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    tuned = None
    if rank == 0:
        if cfg.val_scenes and cfg.tune:
            tuned = tune_decoding(model, cfg.val_images or cfg.images, cfg.val_scenes, limit=cfg.val_limit)
            logf.write(json.dumps({"tuned": tuned}) + "\n")
            low = (f", weaker peaks down to {tuned['low_threshold']} where IoU <= {tuned['low_iou']}"
                   if tuned["low_threshold"] else ", no hysteresis")
            log(f"decoding chosen on {cfg.val_scenes}: score threshold {tuned['score_threshold']}, "
                f"NMS IoU {tuned['nms_iou']}{low} (detection F1 {tuned['f1']:.2f})")
        checkpoint(out / "gqa_scene_parser.pt", full=False)
        logf.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return {"out": str(out), "steps": step, "seconds": round(seconds, 1), "stopped_by_time": stopped,
            "images_per_s": round(seen / seconds, 2) if seconds > 0 else None,
            "vocabulary": {"names": len(mcfg.names), "attributes": len(mcfg.attributes),
                           "relations": len(mcfg.relations)},
            "checkpoint": str(out / "gqa_scene_parser.pt"), "eval": report,
            "decoding": None if tuned is None else {k: v for k, v in tuned.items() if k != "grid"}}
