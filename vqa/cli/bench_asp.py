"""`vqa bench asp`: ASP reasoner throughput, batched vs one Control per question."""
from __future__ import annotations

import json

SCENES_PER_CALL = 32  # vqa evaluate's default (the bench module is imported only when run: it loads clingo)


def register(sub) -> None:
    p = sub.add_parser("asp", help="questions/s of batched ASP solving vs a Control per question vs the executor")
    p.add_argument("--scenes", type=int, help="generated scenes (default 320: ten calls of (a); --uncertain: 120)")
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
    u = p.add_argument_group("uncertain scenes (--uncertain)")
    u.add_argument("--uncertain", action="store_true",
                   help="instead: seconds per question on uncertain scenes (p50/p90/p99/max) and the share of proven "
                        "optima, today's search ('joint') against the default ('mode-first'), side by side; on the "
                        "project's generated world and, where the official CLEVR data is found, on its val scenes, "
                        "each made uncertain as issue 27 describes (default --scenes 120)")
    u.add_argument("--budget", type=float, default=2.0, help="the new search's budget per question (default 2.0 s)")
    u.add_argument("--cap", type=float, default=10.0,
                   help="seconds after which today's search (no budget of its own) is stopped (default 10)")
    u.add_argument("--strategies", default="joint,mode-first",
                   help="comma-separated, the first is the baseline (joint, mode-first, joint-relative, "
                        "mode-first-whole, mode-first-absolute)")
    u.add_argument("--official", metavar="DIR",
                   help="the official CLEVR data (default $VQA_CLEVR_OFFICIAL or ../shared/clevr-official)")
    u.add_argument("--worlds", default="synth,clevr", help="synth, clevr or both (default)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VQAError
    from ..reason.asp_bench import format_benchmark, run_benchmark

    if args.uncertain:
        return _uncertain(args)
    args.scenes = 320 if args.scenes is None else args.scenes
    if min(args.scenes, args.questions_per_scene, args.scenes_per_call, args.large_call or 1) < 1:
        raise VQAError("--scenes, --questions-per-scene, --scenes-per-call and --large-call must be >= 1")
    report = run_benchmark(args.scenes, args.questions_per_scene, seed=args.seed, source=args.source,
                           scenes_per_call=args.scenes_per_call, large_call=args.large_call, repeats=args.repeats,
                           explain=not args.no_explain)
    print(json.dumps(report, indent=1) if args.json else format_benchmark(report))
    return 0 if all(m["mismatches"] == 0 for m in report["methods"].values()) else 1


def _official_dir(given: str | None):
    import os
    from pathlib import Path

    if given:
        return Path(given)
    env = os.environ.get("VQA_CLEVR_OFFICIAL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "clevr-official"


def _uncertain(args) -> int:
    from ..errors import VQAError
    from ..reason.asp_bench import STRATEGIES, format_uncertain, run_uncertain_benchmark, uncertain_workload
    from ._util import progress

    scenes = 120 if args.scenes is None else args.scenes
    strategies = tuple(s for s in args.strategies.split(",") if s)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise VQAError(f"unknown strategies {unknown} (expected some of {', '.join(STRATEGIES)})")
    if min(scenes, args.questions_per_scene) < 1 or not args.budget > 0 or not args.cap > 0:
        raise VQAError("--scenes, --questions-per-scene, --budget and --cap must be positive")
    worlds = {}
    for world in args.worlds.split(","):
        if world == "clevr":
            official = _official_dir(args.official)
            if not (official / "questions" / "CLEVR_val_scenes.json").is_file():
                print(f"(no official CLEVR data at {official}: the clevr world is left out)")
                continue
            worlds[world] = uncertain_workload("clevr", scenes, args.questions_per_scene, seed=args.seed,
                                               official=str(official))
        elif world == "synth":
            worlds[world] = uncertain_workload("synth", scenes, args.questions_per_scene, seed=args.seed)
        else:
            raise VQAError(f"unknown world {world!r} (synth or clevr)")
    bar = None if args.json else progress(total=sum(len(ps) for w in worlds.values() for _, ps in w), desc="questions")
    report = run_uncertain_benchmark(worlds, budget=args.budget, cap=args.cap, strategies=strategies,
                                     progress=None if bar is None else bar.update)
    if bar is not None:
        bar.close()
    print(json.dumps(report, indent=1) if args.json else format_uncertain(report))
    return 0
