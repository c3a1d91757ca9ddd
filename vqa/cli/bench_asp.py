"""`vqa bench asp`: ASP reasoner throughput, batched vs one Control per question."""
from __future__ import annotations

import json

SCENES_PER_CALL = 32  # vqa evaluate's default (the bench module is imported only when run: it loads clingo)


def register(sub) -> None:
    p = sub.add_parser("asp", help="questions/s of batched ASP solving vs a Control per question vs the executor")
    p.add_argument("--scenes", type=int, default=320, help="generated scenes (default 320: ten calls of (a))")
    p.add_argument("--questions-per-scene", type=int, default=10)
    p.add_argument("--source", choices=["generated", "random"], default="generated",
                   help="question generator (generated) or random-program fuzzer (random)")
    p.add_argument("--scenes-per-call", type=int, default=SCENES_PER_CALL,
                   help=f"scenes per clingo call for (a) (default {SCENES_PER_CALL}, as vqa evaluate)")
    p.add_argument("--large-call", type=int, metavar="N",
                   help="also measure (a''): all questions of N scenes in one clingo call (e.g. 100)")
    p.add_argument("--repeats", type=int, default=1, help="best of N timings per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-explain", action="store_true", help="leave the per-step traces out (as vqa evaluate does)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VQAError
    from ..reason.asp_bench import format_benchmark, run_benchmark

    if min(args.scenes, args.questions_per_scene, args.scenes_per_call, args.large_call or 1) < 1:
        raise VQAError("--scenes, --questions-per-scene, --scenes-per-call and --large-call must be >= 1")
    report = run_benchmark(args.scenes, args.questions_per_scene, seed=args.seed, source=args.source,
                           scenes_per_call=args.scenes_per_call, large_call=args.large_call, repeats=args.repeats,
                           explain=not args.no_explain)
    print(json.dumps(report, indent=1) if args.json else format_benchmark(report))
    return 0 if all(m["mismatches"] == 0 for m in report["methods"].values()) else 1
