"""`vqa train question-parser`: train the seq2seq question parser on generated questions.

Registered by the `train` command group (`train.py` discovers `_train_*.py` modules).
"""
from __future__ import annotations

import json

from ._util import add_resume_flags, resume_mode


def register(sub) -> None:
    p = sub.add_parser("question-parser", help="train the seq2seq question parser (question -> program)")
    p.add_argument("--train", required=True, nargs="+", metavar="FILE",
                   help="CLEVR questions file(s) with programs, e.g. from `vqa generate`")
    p.add_argument("--val", required=True, metavar="FILE",
                   help="held-out questions file (generated with a seed not used for --train)")
    p.add_argument("--out", default="data/checkpoints/question_parser.pt", help="checkpoint to write")
    add_resume_flags(p, "OUT.state")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300, help="linear warm-up steps before the cosine decay")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune this parser checkpoint (its vocabulary and architecture; the model flags "
                   "below are then not used) with a fresh optimizer")
    p.add_argument("--max-minutes", type=float,
                   help="stop after this many minutes with the run saved; the same command continues it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a busy machine one thread is much faster)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-size", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4, help="query heads")
    p.add_argument("--kv-heads", type=int, default=2, help="K/V heads (grouped-query attention)")
    p.add_argument("--attention", default="gqa", help="attention variant of vqa.nn.attention (default gqa)")
    p.add_argument("--enc-layers", type=int, default=2)
    p.add_argument("--dec-layers", type=int, default=2)
    p.add_argument("--mlp-ratio", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    import sys

    from ..language.pairs import load_training_data

    data = load_training_data(args.train, args.val)  # a bad file: one line now, before torch is imported (~10 s)
    from ..language.train import TrainConfig, train_parser
    from ._util import progress

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, init=args.init,
                      seed=args.seed, threads=args.threads,
                      eval_every=args.eval_every, eval_size=args.eval_size, ckpt_every=args.ckpt_every,
                      model=dict(dim=args.dim, n_heads=args.heads, n_kv_heads=args.kv_heads, variant=args.attention,
                                 enc_layers=args.enc_layers, dec_layers=args.dec_layers, mlp_ratio=args.mlp_ratio,
                                 dropout=args.dropout))
    summary = train_parser(args.train, args.val, args.out, cfg, resume=resume_mode(args), max_minutes=args.max_minutes,
                           progress=progress, log=lambda m: print(m, file=sys.stderr, flush=True), data=data)
    if args.json:
        print(json.dumps(summary, indent=1))
    elif summary.get("stopped"):
        print(f"stopped at step {summary['steps']} of {args.steps} after --max-minutes; wrote {summary['out']}; "
              "rerun the same command to continue")
    else:
        h = summary["held_out"]
        print(f"wrote {summary['out']} ({summary['size_bytes'] / 1e6:.1f} MB, {summary['parameters']:,} parameters) "
              f"after {summary['steps']} steps in {summary['train_seconds']:.0f} s")
        print(f"held-out exact program match: {h['exact_match']:.4f} ({h['exact']:,}/{h['questions']:,})")
    return 0
