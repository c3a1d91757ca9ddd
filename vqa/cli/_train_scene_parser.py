"""`vqa train scene-parser`: train the image -> scene graph model (registered by `train.py`)."""
from __future__ import annotations

import argparse
import json
import sys

from ._util import add_resume_flags, resume_mode


def register(tsub) -> None:
    p = tsub.add_parser("scene-parser", help="train the scene parser (ViT + dense head) on a CLEVR-layout folder",
                        description="Train the scene parser on DIR/images/<split>/ and DIR/scenes/CLEVR_<split>_scenes.json "
                                    "(synthetic from `vqa generate`, or the official CLEVR_v1.0 download). "
                                    "Works under torchrun (DDP: gloo on CPU, NCCL on CUDA).")
    p.add_argument("--dataset", default="clevr", choices=("clevr", "gqa"),
                   help="clevr (default: --data, a CLEVR-layout folder) or gqa (GQA's official layout: --images, "
                        "--scenes; names, attributes and relations from the scene graphs)")
    p.add_argument("--data", help="CLEVR-layout folder (--dataset clevr)")
    p.add_argument("--images", metavar="DIR", help="--dataset gqa: the images folder (<imageId>.jpg)")
    p.add_argument("--scenes", metavar="FILE", help="--dataset gqa: train_sceneGraphs.json")
    p.add_argument("--val-images", metavar="DIR", help="--dataset gqa: images of --val-scenes (default: --images)")
    p.add_argument("--val-scenes", metavar="FILE", help="--dataset gqa: held-out scene graphs scored after each epoch")
    p.add_argument("--min-count", type=_positive, default=1,
                   help="--dataset gqa: vocabulary of the values seen at least N times in training (default 1)")
    p.add_argument("--out", default=None, help="output folder: last.pt, scene_parser.pt (gqa_scene_parser.pt), log.jsonl "
                                             "(default runs/scene_parser, runs/gqa_scene_parser)")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="held-out split evaluated after each epoch (skipped if absent)")
    p.add_argument("--limit", type=_positive, default=None, help="use the first N training scenes")
    p.add_argument("--val-limit", type=_positive, default=200)
    p.add_argument("--attention", default="gqa", help="attention variant of the ViT (mha, mqa, gqa, sqa, kdgqa, ...)")
    p.add_argument("--kv-heads", type=_positive, default=None, help="K/V heads (default: the variant's)")
    p.add_argument("--q-heads", type=_positive, default=None, help="query heads (sqa family)")
    p.add_argument("--dim", type=_positive, default=None, help="ViT width (default 96)")
    p.add_argument("--depth", type=_positive, default=None, help="ViT blocks (default 4)")
    p.add_argument("--heads", type=_positive, default=None, help="baseline heads (default 4)")
    p.add_argument("--stem-extra", type=_nonnegative, default=None,
                   help="extra residual 3x3 convolutions at stride 4 before the ViT (default 1)")
    p.add_argument("--image-size", default=None, metavar="WxH", type=_size, help="network input (default 192x128; with --init, fine-tune at this size: the position embedding is resampled)")
    p.add_argument("--epochs", type=_positive, default=None, help="default 12 (clevr), 20 (gqa)")
    p.add_argument("--batch-size", type=_positive, default=None, help="default 32 (clevr), 16 (gqa)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--checkpoint-every", type=_positive, default=200, metavar="STEPS")
    add_resume_flags(p, "OUT/last.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this many minutes (the checkpoints are written as usual)")
    p.add_argument("--no-tune", action="store_true",
                   help="keep the default score threshold / NMS IoU instead of choosing them on --val-split")
    p.add_argument("--repeat", type=_positive, default=1, help="--data's scenes repeated N times per epoch (default 1)")
    p.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                   help="another CLEVR-layout folder mixed into training (its --split); may be repeated")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps of the learning rate (default 100)")
    p.add_argument("--val-data", default=None, metavar="DIR", help="folder of --val-split (default: --data)")
    p.add_argument("--extra-limit", type=_positive, default=None, help="first N scenes of each --extra-data folder")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="fine-tune: start from this scene-parser checkpoint (its architecture; e.g. the shipped one)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    import os
    # OpenMP threads that sleep instead of spinning while they wait: on a CPU shared with other
    # work, spinning threads of a small model slow training several-fold (measured 6.5 vs 54
    # images/s on 2 threads with one core busy). Read when torch is first imported, i.e. here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..errors import VQAError
    from ._util import progress

    if args.dataset == "gqa":
        return _run_gqa(args)
    if not args.data:
        raise VQAError("give --data (a CLEVR-layout folder), or --dataset gqa with --images and --scenes")
    from ..vision.train import TrainConfig, train_scene_parser

    args.out, args.epochs, args.batch_size = args.out or "runs/scene_parser", args.epochs or 12, args.batch_size or 32
    model = {} if args.init else {"attn_variant": args.attention}
    for key, value in (("n_kv_heads", args.kv_heads), ("n_q_heads", args.q_heads), ("dim", args.dim),
                       ("depth", args.depth), ("n_heads", args.heads), ("image_size", args.image_size),
                       ("stem_extra", args.stem_extra)):
        if value is not None:
            model[key] = value
    cfg = TrainConfig(data=args.data, out=args.out, split=args.split, val_split=args.val_split, limit=args.limit,
                      val_limit=args.val_limit, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, flip=not args.no_flip, checkpoint_every=args.checkpoint_every,
                      resume=resume_mode(args), device=args.device, amp=not args.no_amp, threads=args.threads, model=model,
                      max_minutes=args.max_minutes, tune=not args.no_tune,
                      repeat=args.repeat, extra_data=tuple(args.extra_data), extra_limit=args.extra_limit, val_data=args.val_data, warmup_steps=args.warmup_steps, init=args.init)
    try:
        summary = train_scene_parser(cfg, progress=progress)
    except ValueError as e:  # a bad model setting (attention heads, sizes)
        from ..errors import VQAError
        raise VQAError(str(e)) from None
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"trained {summary['steps']} steps in {summary['seconds']} s ({summary['images_per_s']} images/s)")
        print(f"  checkpoint: {summary['checkpoint']}")
    return 0


def _run_gqa(args) -> int:
    """`--dataset gqa`: the GQA scene parser (`vqa.vision.gqa_train`) on GQA's official layout."""
    from ..errors import VQAError
    from ..vision.gqa_train import GQATrainConfig, train_gqa_scene_parser
    from ._util import progress

    if not args.images or not args.scenes:
        raise VQAError("--dataset gqa needs --images DIR and --scenes FILE (e.g. sceneGraphs/train_sceneGraphs.json)")
    if args.data or args.extra_data:
        raise VQAError("--data and --extra-data are for --dataset clevr")
    backbone = {"attn_variant": args.attention}
    for key, value in (("n_kv_heads", args.kv_heads), ("n_q_heads", args.q_heads), ("dim", args.dim),
                       ("depth", args.depth), ("n_heads", args.heads), ("image_size", args.image_size),
                       ("stem_extra", args.stem_extra)):
        if value is not None:
            backbone[key] = value
    cfg = GQATrainConfig(images=args.images, scenes=args.scenes, out=args.out or "runs/gqa_scene_parser",
                         val_images=args.val_images, val_scenes=args.val_scenes, limit=args.limit,
                         val_limit=args.val_limit, min_count=args.min_count, epochs=args.epochs or 20,
                         batch_size=args.batch_size or 16, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, resume=args.resume, device=args.device,
                         amp=not args.no_amp, threads=args.threads, max_minutes=args.max_minutes,
                         tune=not args.no_tune, init=args.init,
                         model=({"backbone": {"image_size": args.image_size}} if args.image_size else {}) if args.init
                         else {"backbone": backbone})
    try:
        summary = train_gqa_scene_parser(cfg, progress=progress, log=lambda line: print(line, file=sys.stderr))
    except ValueError as e:  # a bad model setting (attention heads, sizes)
        raise VQAError(str(e)) from None
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        v = summary["vocabulary"]
        print(f"trained {summary['steps']} steps in {summary['seconds']} s ({summary['images_per_s']} images/s); "
              f"{v['names']} names, {v['attributes']} attributes, {v['relations']} relations")
        print(f"  checkpoint: {summary['checkpoint']}")
    return 0


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 192x128, got {text!r}") from None
    if w % 16 or h % 16:
        raise argparse.ArgumentTypeError(f"width and height must be multiples of 16, got {text!r}")
    return (h, w)
