"""Training loop of the scene parser.

    summary = train_scene_parser(TrainConfig(data="synth", out="runs/sp", epochs=12))

- Data: `data/images/<split>/`, `data/scenes/CLEVR_<split>_scenes.json` (synthetic or the
  official CLEVR download); held-out evaluation on `val_split` after every epoch.
- Checkpoints: `out/last.pt` (model, optimiser, step, settings: the same command continues
  the run saved there, `resume` in `open_run`)
  every `checkpoint_every` steps and at each epoch's end; `out/scene_parser.pt` (model,
  config and vocabularies only: what `vqa scene --checkpoint` loads) at the end.
  `out/log.jsonl` holds one JSON line per logged step and per evaluation.
- Distributed: under `torchrun` (env WORLD_SIZE > 1) each process trains on its shard of
  every epoch with DistributedDataParallel, gloo on CPU and NCCL on CUDA; rank 0 writes
  files and evaluates.
- CUDA: bf16 autocast (`vqa.nn.autocast`) when `amp`.
- `max_minutes`: stop after that much training time (checkpoints as at an epoch's end).
- `tune`: at the end, the decoding settings (objectness threshold, NMS IoU) with the best
  object F1 on `val_split` are chosen (`evaluate.tune_decoding`) and stored in the config.
The order of examples is a function of (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import VQAError
from ..resume import check_size, continue_run, load_state, not_a_run
from ..nn.vit import autocast
from .data import adopt_cubes, load_training_data
from .scene_parser import (SceneParser, SceneParserConfig, checkpoint_dict, model_from_checkpoint,
                           resize_for_fine_tuning)
from .targets import scene_parser_loss


@dataclass
class TrainConfig:
    data: str
    out: str = "runs/scene_parser"
    split: str = "train"
    val_split: str = "val"
    limit: int | None = None          # first N training scenes
    val_limit: int | None = 200
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    flip: bool = True                 # random horizontal flips
    seed: int = 0
    checkpoint_every: int = 200       # steps
    log_every: int = 20
    resume: bool | str = False       # "auto" (the command's default), True or False: `open_run`
    device: str = "auto"              # auto | cpu | cuda
    amp: bool = True                  # bf16 autocast on CUDA
    threads: int | None = None        # torch CPU threads
    max_minutes: float | None = None  # stop (and save) once training has run this long
    tune: bool = True                 # choose score threshold / NMS IoU on val_split at the end
    model: dict = field(default_factory=dict)  # SceneParserConfig overrides, e.g. {"attn_variant": "mqa"}
    init: str | None = None           # start from this scene-parser checkpoint's weights (fine-tuning)
    repeat: int = 1                   # `data` repeated this many times per epoch
    extra_data: tuple = ()            # more CLEVR-layout folders mixed in (their `split`)
    extra_limit: int | None = None    # first N scenes of each extra folder
    val_data: str | None = None       # folder of `val_split` (default: `data`)


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _lr(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def open_run(out_dir: str | Path, resume, now: dict, key: str = "train"):
    """(run folder, created; its last.pt; the checkpoint resumed from and its model, or None, None).

    `resume` (`vqa.resume.continue_run`): "auto" continues the run in last.pt when it was
    started with the settings `now` (saved under `key` of the checkpoint) and refuses one
    with other settings; True continues it (`epochs` may differ); False starts over."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    state = None if resume is False else load_state(
        last, lambda p: torch.load(p, map_location="cpu", weights_only=True))
    if state is not None and ("optimizer" not in state or "step" not in state):
        raise not_a_run(last, "scene-parser checkpoint")
    if continue_run(resume, None if state is None else state.get(key) or {}, now, file=last, flags=FLAGS):
        return out, last, state, model_from_checkpoint(state, file=last)
    return out, last, None, None


# command-line flags of settings whose names differ (the resume check names them)
FLAGS = {"flip": "--no-flip", "amp": "--no-amp", "tune": "--no-tune", "model.attn_variant": "--attention",
         "model.n_kv_heads": "--kv-heads", "model.n_q_heads": "--q-heads", "model.n_heads": "--heads",
         "size": "--crop-size"}


def train_scene_parser(cfg: TrainConfig, *, progress=None, log=print) -> dict:
    """Train (or resume) a scene parser; returns a summary with the last evaluation."""
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
    out, last, state, model = open_run(cfg.out, cfg.resume, asdict(cfg))
    if model is None and cfg.init:
        from .scene_parser import load_scene_parser
        torch.manual_seed(cfg.seed)
        model = load_scene_parser(cfg.init)
        settings = dict(cfg.model or {})
        size = settings.pop("image_size", None)
        if settings:
            raise VQAError("fine-tuning (init) keeps the checkpoint's architecture: leave out model settings "
                           f"({', '.join(sorted(settings))}); only the input size may change")
        resize_for_fine_tuning(model, size, log)
    if model is None:
        torch.manual_seed(cfg.seed)
        model = SceneParser(SceneParserConfig(**cfg.model))
    mcfg = model.cfg
    model.to(device)
    data = load_training_data(cfg.data, cfg.split, image_size=mcfg.image_size, attributes=mcfg.attributes,
                              limit=cfg.limit, repeat=cfg.repeat, extra=tuple(cfg.extra_data),
                              extra_limit=cfg.extra_limit, progress=progress if rank == 0 else None)
    if state is None:
        adopt_cubes(mcfg, data, (cfg.model or {}).get("cubes"), log=log if rank == 0 else (lambda *a: None))
    if state is not None:
        check_size(state.get("examples"), len(data), file=last, what="training images")
    val_root = Path(cfg.val_data or cfg.data)
    has_val = (val_root / "scenes" / f"CLEVR_{cfg.val_split}_scenes.json").is_file()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "pos_embed" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
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
        extra = {"train": asdict(cfg), "step": step, "epoch": step / steps_per_epoch, "examples": len(data)}
        if full:
            extra["optimizer"] = opt.state_dict()
            extra["torch_rng"] = torch.get_rng_state()  # (noise of the pgqa attention variant)
        _save(checkpoint_dict(model, **extra), path)

    def out_of_time() -> bool:
        """All ranks agree (rank 0's clock decides) whether `max_minutes` is spent."""
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
        flips = (torch.rand(len(data), generator=g) < 0.5) & cfg.flip
        mine = perm[rank::world]
        net.train()
        for k in range(k, steps_per_epoch):
            idx = mine[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()
            images, targets = data.batch(idx, [bool(flips[i]) for i in idx])
            images = images.to(device, non_blocking=True)
            targets = {n: t.to(device, non_blocking=True) for n, t in targets.items()}
            for group in opt.param_groups:
                group["lr"] = _lr(step, total, cfg)
            with autocast(device, enabled=cfg.amp):
                maps = net(images)
            loss, parts = scene_parser_loss(maps, targets, mcfg.attributes)
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
                logf.write(json.dumps({"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": float(loss.detach()),
                                       **parts, "lr": _lr(step, total, cfg), "images_per_s": round(rate, 2)}) + "\n")
                logf.flush()
            if rank == 0 and step % cfg.checkpoint_every == 0:
                checkpoint(last, full=True)
            if out_of_time():
                break
        if rank == 0:
            checkpoint(last, full=True)
            if has_val:
                from .evaluate import evaluate_split
                report = evaluate_split(model, val_root, cfg.val_split, questions=False, limit=cfg.val_limit)
                s = report["scene"]
                line = {"eval_epoch": step // steps_per_epoch, "step": step, **{
                    k2: s[k2] for k2 in ("f1", "attribute_accuracy", "count_accuracy", "relation_accuracy")}}
                logf.write(json.dumps(line) + "\n")
                logf.flush()
                log(f"epoch {line['eval_epoch']}: val F1 {s['f1']:.4f} attributes {s['attribute_accuracy'] or 0:.4f} "
                    f"count {s['count_accuracy']:.4f} relations {s['relation_accuracy'] or 0:.4f}")
        if out_of_time():
            stopped = True
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    tuned = None
    if rank == 0:
        if has_val and cfg.tune:
            from .evaluate import tune_decoding
            tuned = tune_decoding(model, val_root, cfg.val_split, limit=cfg.val_limit)
            tuned.pop("grid")
            logf.write(json.dumps({"tuned": tuned}) + "\n")
            log(f"decoding chosen on {cfg.val_split}: score threshold {tuned['score_threshold']}, "
                f"NMS IoU {tuned['nms_iou']} (val F1 {tuned['f1']:.4f})")
        checkpoint(out / "scene_parser.pt", full=False)
        logf.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return {"out": str(out), "steps": step, "seconds": round(seconds, 1), "stopped_by_time": stopped, "decoding": tuned,
            "images_per_s": round(seen / seconds, 2) if seconds > 0 else None,
            "checkpoint": str(out / "scene_parser.pt"), "eval": report}
