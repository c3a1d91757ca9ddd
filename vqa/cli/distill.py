"""`vqa distill`: extend an incomplete ASP theory with an LLM, checked by the solver."""
from __future__ import annotations

import json
import os


def register(sub) -> None:
    p = sub.add_parser("distill", help="extend an incomplete ASP theory with LLM-written rules, checked by clingo")
    p.add_argument("--dataset", choices=["clevr", "gqa"], default="clevr")
    p.add_argument("--theory", help="incomplete theory (.lp); default: the complete rules/<dataset> theory, "
                                    "ablated with --ablate-predicate / --ablate-fraction")
    p.add_argument("--questions", required=True)
    p.add_argument("--scenes", required=True)
    p.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="model name (default: $OPENAI_MODEL, else gpt-4o-mini)")
    p.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY; local servers need none)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request")
    p.add_argument("--llm-retries", type=int, default=3, help="retries per LLM request (errors, 429, empty replies)")
    p.add_argument("--batch", type=int, default=1, help="b: examples per prompt")
    p.add_argument("--retries", type=int, default=3, help="r: prompts per batch")
    p.add_argument("--mends", type=int, default=3, help="m: mend rounds per candidate")
    p.add_argument("--candidates", type=int, default=1, help="n: candidates per prompt (best on validation kept)")
    p.add_argument("--order", choices=["length", "relevance", "random"], default="length")
    p.add_argument("--ablate-predicate", help="drop every rule that mentions this predicate")
    p.add_argument("--ablate-fraction", type=float, help="drop this fraction (0..1) of the rules at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use the first N questions")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--max-batches", type=int, help="stop after this many training batches")
    p.add_argument("--check-seconds", type=float, help="CPU-time limit of one solver check (default: 30 for "
                   "clevr, 60 for gqa; the wall clock stops it at 3x + 10 s)")
    p.add_argument("--check-memory-mb", type=int, default=2048, help="memory limit of one solver check")
    p.add_argument("--replay", help="run from a recorded transcript.jsonl instead of an endpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..distill.loop import DistillConfig
    from ..distill.run import DistillRun, distill
    from ..llm import LLMClient, LLMConfig
    from ._util import progress

    cfg = DistillConfig(batch=args.batch, retries=args.retries, mends=args.mends, candidates=args.candidates,
                        order=args.order, seed=args.seed, max_batches=args.max_batches)
    run_cfg = DistillRun(dataset=args.dataset, questions=args.questions, scenes=args.scenes, out=args.out,
                         theory=args.theory, ablate_predicate=args.ablate_predicate,
                         ablate_fraction=args.ablate_fraction, seed=args.seed, limit=args.limit,
                         test_fraction=args.test_fraction, val_fraction=args.val_fraction, config=cfg)
    client = None
    if not args.replay:
        client = LLMClient(LLMConfig.resolve(base_url=args.base_url, model=args.model, api_key=args.api_key,
                                             env=os.environ, timeout=args.timeout, max_retries=args.llm_retries))
    from ..reason.sandbox import SandboxLimits

    limits = SandboxLimits(time_s=args.check_seconds or (60.0 if args.dataset == "gqa" else 30.0),
                           memory_mb=args.check_memory_mb)
    summary = distill(run_cfg, client, replay=args.replay, progress=progress, limits=limits)
    b, a = summary["before"], summary["after"]
    for name in ("train", "test"):
        if b[name]:
            print(f"{name:<5} accuracy {b[name]['accuracy']:.1%} -> {a[name]['accuracy']:.1%} "
                  f"({a[name]['correct']}/{a[name]['total']})")
    print(f"accepted rules: {summary['accepted_rules']}; LLM calls: {summary['llm_calls']} "
          f"({summary['prompt_tokens']} prompt + {summary['completion_tokens']} completion tokens); "
          f"unsolved examples: {len(summary['unsolved'])}")
    if summary.get("verdicts"):
        print("verdicts: " + ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items()))
    print(f"theory: {args.out}/theory.lp  transcript: {args.out}/transcript.jsonl  summary: {args.out}/summary.json")
    if getattr(args, "json", False):
        print(json.dumps(summary))
    return 0
