"""`vqa train gqa-question-parser`: train the GQA question parser (text -> GQA `semantic`).

Registered by the `train` command group (`train.py` discovers `_train_*.py` modules).
"""
from __future__ import annotations

import json

from ._util import add_resume_flags, resume_mode


def register(sub) -> None:
    p = sub.add_parser("gqa-question-parser", help="train the GQA question parser (question -> GQA semantic program)")
    p.add_argument("--train", required=True, nargs="+", metavar="FILE",
                   help="GQA questions file(s) or folders of parts with `semantic` programs "
                        "(e.g. train_balanced_questions.json, or one from `vqa generate --format gqa`)")
    p.add_argument("--val", required=True, metavar="FILE", help="held-out GQA questions file")
    p.add_argument("--out", default="data/checkpoints/gqa_question_parser.pt", help="checkpoint to write")
    add_resume_flags(p, "OUT.state")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--limit", type=int, help="at most this many training questions (real GQA: 943,000)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-size", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--enc-layers", type=int, default=2)
    p.add_argument("--dec-layers", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    import sys

    from ..language.gqa_parser import GQATrainConfig, train_gqa_parser
    from ._util import progress

    cfg = GQATrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                         eval_every=args.eval_every, eval_size=args.eval_size, ckpt_every=args.ckpt_every,
                         limit=args.limit, model=dict(dim=args.dim, enc_layers=args.enc_layers,
                                                      dec_layers=args.dec_layers))
    summary = train_gqa_parser(args.train, args.val, args.out, cfg, resume=resume_mode(args), progress=progress,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        h = summary["held_out"]
        print(f"wrote {summary['out']} ({summary['size_bytes'] / 1e6:.1f} MB, {summary['parameters']:,} parameters) "
              f"after {summary['steps']} steps in {summary['train_seconds']:.0f} s")
        print(f"held-out exact program match: {h['exact_match']:.4f} ({h['exact']:,}/{h['questions']:,})")
    return 0
