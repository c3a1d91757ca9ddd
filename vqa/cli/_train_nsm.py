"""`vqa train nsm`: train the Neural State Machine on a CLEVR-layout folder."""
from __future__ import annotations

import json

from ._util import add_resume_flags, resume_mode


def register(tsub) -> None:
    p = tsub.add_parser("nsm", help="train the Neural State Machine reasoner on gold (and predicted) scene graphs")
    p.add_argument("--dataset", choices=["clevr", "gqa"], default="clevr",
                   help="clevr (--data folder) or gqa (--questions/--scenes files in GQA's format)")
    p.add_argument("--data", help="CLEVR: a CLEVR-layout folder (scenes/, questions/), e.g. from `vqa generate`")
    p.add_argument("--questions", help="GQA: training questions file (e.g. train_balanced_questions.json)")
    p.add_argument("--scenes", help="GQA: training scene-graph file (train_sceneGraphs.json)")
    p.add_argument("--val-questions", help="GQA: held-out questions file, evaluated after every epoch")
    p.add_argument("--val-scenes", help="GQA: held-out scene-graph file")
    p.add_argument("--split", default="train", help="training split (default: train)")
    p.add_argument("--val-split", default="val", help="held-out split evaluated after every epoch ('' for none)")
    p.add_argument("--out", default="nsm.pt", help="checkpoint file, written after every epoch (default: nsm.pt)")
    add_resume_flags(p, "--out")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--trace-weight", type=float, default=1.0,
                   help="weight of the auxiliary step losses from program traces (0: answers only)")
    p.add_argument("--attention-weight", type=float, default=1.0,
                   help="weight of the loss that points each step's instruction attention at the words naming "
                   "its concepts (part of the trace losses; 0: off, as in the first two training stages)")
    p.add_argument("--shift-weight", type=float,
                   help="weight of the loss on each traced shift's own set (relation / property shift, before the "
                   "gates mix them; part of the trace losses); default: 1 for --dataset gqa, 0 for clevr")
    p.add_argument("--dim", type=int, default=64, help="concept/hidden size")
    p.add_argument("--steps", type=int, default=8, help="reasoning steps (instructions)")
    p.add_argument("--limit", type=int, help="only the first N training questions")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time (the checkpoint is kept; "
                   "--resume with a larger --max-minutes continues it)")
    p.add_argument("--ckpt-every", type=int, default=0, metavar="N",
                   help="also write a resumable checkpoint every N batches inside an epoch (default: per epoch only)")
    p.add_argument("--init", help="start from this checkpoint's weights and vocabulary (a warm start; "
                   "parameters it lacks start fresh, the optimizer and schedule start anew)")
    p.add_argument("--extend-vocab", action="store_true",
                   help="with --init: add the training questions' words the checkpoint lacks (fresh embeddings)")
    p.add_argument("--predicted-data", action="append", default=[], metavar="DIR",
                   help="also train on the questions of this CLEVR-layout folder (with images) over the "
                   "scenes the scene parser predicts from its images (parsed once, cached in DIR/scenes/); "
                   "repeatable")
    p.add_argument("--predicted-split", default="train", help="split of the --predicted-data folders (default: train)")
    p.add_argument("--predicted-limit", type=int, help="only the first N questions of each --predicted-data folder")
    p.add_argument("--scene-source", choices=("gold", "predicted"), default="gold",
                   help="scenes of the held-out split (--val-split, --eval-only): the gold scenes file or "
                   "the scenes the scene parser predicts from the split's images")
    p.add_argument("--scene-checkpoint", help="scene parser checkpoint for predicted scenes (default: the shipped one)")
    p.add_argument("--score-threshold", type=float,
                   help="objectness calibration: an object scored s starts with mass "
                   "sigmoid((s - threshold) / temperature) (default: the raw score)")
    p.add_argument("--score-temperature", type=float, default=0.05)
    p.add_argument("--edge-control", choices=("on", "off"),
                   help="relation shifts also read the step's control state, so that one relation word can be "
                   "walked either way (\"the box to the left of the can\" / \"what is the box to the left of?\"); "
                   "default: on for --dataset gqa, off for clevr (the shipped CLEVR checkpoints)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--load-workers", type=int, default=1, metavar="N",
                   help="GQA: processes that encode the training examples before training (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--ship", help="also write a copy without optimizer state here (a shippable checkpoint)")
    p.add_argument("--report", help="write the final report (JSON) here")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate the checkpoint --out on --val-split (accuracy by group, function, family)")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.set_defaults(func=run, output_paths=("out", "ship", "report"))  # output folders made by `vqa`


def run(args) -> int:
    from ..errors import VQAError
    from ._util import progress

    for name in ("epochs", "batch_size", "dim", "steps", "threads"):
        if getattr(args, name) < 1:
            raise VQAError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if getattr(args, "dataset", "clevr") == "gqa":
        return run_gqa(args)
    if not args.data:
        raise VQAError("--data is required for --dataset clevr")
    if getattr(args, "shift_weight", None):
        raise VQAError("--shift-weight is a --dataset gqa setting")
    from ..datasets.clevr import CLEVRDataset

    CLEVRDataset(args.data)  # a file or a missing folder: one line now, not after torch is imported (~10 s)
    from ..reason.nsm import NSMConfig
    from ..reason.nsm_train import TrainConfig, strip_checkpoint, train_nsm

    if args.eval_only:
        from ..reason.nsm_train import evaluate_checkpoint

        if not args.val_split:
            raise VQAError("--eval-only needs a --val-split")
        import torch

        torch.set_num_threads(args.threads)
        report = evaluate_checkpoint(args.out, args.data, args.val_split, limit=args.limit, device=args.device,
                                     scene_source=args.scene_source, scene_checkpoint=args.scene_checkpoint,
                                     score_threshold=args.score_threshold,
                                     score_temperature=args.score_temperature if args.score_threshold else None)
        _write(report, args)
        print(json.dumps(report, indent=1) if args.json else format_accuracy(report, families=True))
        return 0
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, trace_weight=args.trace_weight,
                      attention_weight=args.attention_weight,
                      seed=args.seed, threads=args.threads, limit=args.limit, max_minutes=args.max_minutes,
                      init=args.init, extend_vocab=args.extend_vocab, predicted=tuple(args.predicted_data),
                      predicted_split=args.predicted_split,
                      predicted_limit=args.predicted_limit, val_scene_source=args.scene_source,
                      scene_checkpoint=args.scene_checkpoint, ckpt_every=max(0, getattr(args, "ckpt_every", 0)))
    report = train_nsm(args.data, split=args.split, val_split=args.val_split or None, out=args.out, config=cfg,
                       model_config=NSMConfig(dim=args.dim, steps=args.steps, score_threshold=args.score_threshold,
                                              score_temperature=args.score_temperature,
                                              edge_control=getattr(args, "edge_control", None) == "on"),
                       resume=resume_mode(args),
                       progress=progress, device=args.device)
    if args.ship:
        strip_checkpoint(args.out, args.ship)
        report["shipped"] = args.ship
    _write(report, args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"trained {report['epochs']} epoch(s) on {report['questions']:,} questions "
              f"in {report['train_seconds']} s; checkpoint: {report['checkpoint']}")
        if "val" in report:
            print(format_accuracy(report["val"]))
    return 0


def run_gqa(args) -> int:
    import sys

    from ..errors import VQAError
    from ..reason.nsm import NSMConfig
    from ..reason.nsm_gqa import GQANSMTrainConfig, strip_gqa_checkpoint, train_nsm_gqa
    from ._util import progress

    if not (args.questions and args.scenes):
        raise VQAError("--dataset gqa needs --questions and --scenes")
    if bool(args.val_questions) != bool(args.val_scenes):
        raise VQAError("--val-questions and --val-scenes go together")
    cfg = GQANSMTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, trace_weight=args.trace_weight,
                            attention_weight=args.attention_weight, seed=args.seed, threads=args.threads,
                            limit=args.limit, max_minutes=args.max_minutes,
                            ckpt_every=max(0, getattr(args, "ckpt_every", 0)),
                            workers=max(1, getattr(args, "load_workers", 1)),
                            **({} if getattr(args, "shift_weight", None) is None else {"shift_weight": args.shift_weight}))
    report = train_nsm_gqa(args.questions, args.scenes, out=args.out, val_questions=args.val_questions,
                           val_scenes=args.val_scenes, config=cfg,
                           model_config=NSMConfig(dim=args.dim, steps=args.steps,
                                                  edge_control=getattr(args, "edge_control", None) != "off"),
                           resume=resume_mode(args),
                           progress=progress, device=args.device, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.ship:
        strip_gqa_checkpoint(args.out, args.ship)
        report["shipped"] = args.ship
    _write(report, args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"trained {report['epochs']} epoch(s) on {report['questions']:,} GQA questions "
              f"in {report['train_seconds']} s; checkpoint: {report['checkpoint']}")
        if "val" in report:
            print(format_accuracy(report["val"]))
    return 0


def _write(report: dict, args) -> None:
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)


def format_accuracy(val: dict, families: bool = False) -> str:
    lines = [f"held-out accuracy: {100 * val['accuracy']:.2f}% of {val['questions']:,} questions"]
    for key in ("by_group", "by_function") + (("by_family",) if families else ()):
        lines.append(f"  {key[3:]}:")
        for name, v in val[key].items():
            lines.append(f"    {name or '-':<18} {100 * v['accuracy']:6.2f}%  ({v['questions']})")
    return "\n".join(lines)
