"""`vqa bench gqa-eval`: `vqa evaluate --dataset gqa` on replicated official-layout files of
given sizes: seconds, questions/s and peak RSS per size, ASP and reference side by side."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("gqa-eval", help="GQA evaluation at given sizes: seconds, questions/s, peak RSS")
    p.add_argument("--questions", required=True, help="source GQA questions file (replicated)")
    p.add_argument("--scenes", required=True, help="its scene-graph file")
    p.add_argument("--sizes", required=True,
                   help="comma-separated QUESTIONS/IMAGES, e.g. 10000/4000,100000/40000")
    p.add_argument("--work", required=True, help="folder for the replicated files (kept; reused when present)")
    p.add_argument("--reasoners", default="asp,reference")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds after which a run is killed (the bench then stops with its error)")
    p.add_argument("--scenes-per-call", type=int, default=None,
                   help="passed to vqa evaluate (images per task; default: its own)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import VQAError
    from ..eval.gqa_scale import format_rows, replicate, run_scale_bench

    from ._util import Stages

    sizes, reasoners = args.sizes.split(","), tuple(args.reasoners.split(","))
    stage = Stages("vqa bench gqa-eval", len(sizes) * (1 + len(reasoners)))
    dirs = []
    for size in sizes:
        try:
            q, i = (int(x) for x in size.split("/"))
        except ValueError:
            raise VQAError(f"--sizes expects QUESTIONS/IMAGES pairs, got {size!r}") from None
        d = Path(args.work) / f"{q}_{i}"
        stage(f"{size}: replicating the files" if not (d / "q.json").exists() else f"{size}: files there ({d})")
        if not (d / "q.json").exists():
            replicate(args.questions, args.scenes, d, questions=q, images=i)
        dirs.append(d)
    rows = []
    for d in dirs:
        for reasoner in reasoners:
            stage(f"{d.name}: vqa evaluate --reasoner {reasoner} (a fresh process)")
            extra = () if args.scenes_per_call is None else ("--scenes-per-call", str(args.scenes_per_call))
            rows += run_scale_bench([d], reasoners=(reasoner,), workers=args.workers, timeout=args.timeout,
                                    extra=extra)
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0
