"""`vqa distill`: extend an incomplete ASP theory with an LLM, checked by the solver."""
from __future__ import annotations

import json
import os


def register(sub) -> None:
    p = sub.add_parser("distill", help="extend an incomplete ASP theory with LLM-written rules, checked by clingo")
    p.add_argument("--dataset", choices=["clevr", "gqa"], default="clevr")
    p.add_argument("--theory", help="incomplete theory (.lp); default: the complete rules/<dataset> theory, "
                                    "ablated with --ablate-predicate / --ablate-fraction")
    p.add_argument("--questions", help="questions file (required for a run, unless --replay demo)")
    p.add_argument("--scenes", help="scenes file (required for a run, unless --replay demo)")
    p.add_argument("--out", help="run directory (required for a run; rerun the same command to resume)")
    p.add_argument("--check-endpoint", action="store_true",
                   help="send one tiny request and report the model, the latency and whether the reply parses "
                        "(exit 0: it parses, 1: it does not, 2: no reply); no run")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="model name (default: $OPENAI_MODEL, else gpt-4o-mini)")
    p.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY; local servers need none)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request (the whole request)")
    p.add_argument("--llm-retries", type=int, default=3,
                   help="retries per LLM request (transport errors, timeouts, 429, 5xx), with back-off")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="seconds before the first retry, doubled for each further one (a Retry-After header wins)")
    p.add_argument("--max-wait", type=float, default=30.0, help="the longest wait between retries, in seconds")
    p.add_argument("--max-tokens", type=int, default=1024, help="completion tokens per reply")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--max-llm-calls", type=int, help="the run's budget of LLM calls (it ends, scored, when spent)")
    p.add_argument("--max-llm-tokens", type=int,
                   help="the run's budget of prompt + completion tokens (no call starts once it is reached)")
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
    p.add_argument("--replay", metavar="TRANSCRIPT", help="run from a recorded transcript.jsonl instead of an endpoint; "
                                                         "'demo': the shipped demo (its theory, questions, scenes and "
                                                         "settings; no endpoint, no other flags needed)")
    p.add_argument("--json", action="store_true", help="also print the summary (or the endpoint report) as JSON")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def _llm_config(args, **kw):
    from ..llm import LLMConfig

    return LLMConfig.resolve(base_url=args.base_url, model=args.model, api_key=args.api_key, env=os.environ,
                             timeout=args.timeout, max_retries=args.llm_retries, backoff_s=args.backoff,
                             max_wait_s=args.max_wait, max_tokens=args.max_tokens, temperature=args.temperature, **kw)


def check_endpoint(args) -> int:
    from ..distill.endpoint import check_endpoint as check
    from ..llm import LLMClient

    r = check(LLMClient(_llm_config(args)))
    if getattr(args, "json", False):
        print(json.dumps(r))
    else:
        served = ", ".join(r["served_models"]) if r["served_models"] else "(no model list)"
        print(f"endpoint: {r['endpoint']}  model: {r['model']} (server says: {r['reported_model'] or '?'}; "
              f"serves: {served})")
        print(f"latency: {r['latency_s']:.2f} s ({r['attempts']} request(s)); tokens: {r['prompt_tokens']} prompt + "
              f"{r['completion_tokens']} completion ({r['completion_tokens_per_second']} completion tokens/s); "
              f"finish: {r['finish_reason'] or '?'}")
        print("reply: " + " ".join(r["reply"].split())[:300])
        print("parses: yes" if r["parses"] else f"parses: no ({r['parse_message']})")
    return 0 if r["parses"] else 1


def run(args) -> int:
    from ..distill.loop import DistillConfig
    from ..distill.run import DistillRun, distill
    from ..errors import VQAError
    from ..llm import LLMClient
    from ._util import progress

    if args.check_endpoint:
        return check_endpoint(args)
    if args.replay == "demo":
        _demo_args(args)
    missing = [f"--{k}" for k in ("questions", "scenes", "out") if not getattr(args, k)]
    if missing:
        raise VQAError(f"{', '.join(missing)} required (or --replay demo, or --check-endpoint)")
    cfg = DistillConfig(batch=args.batch, retries=args.retries, mends=args.mends, candidates=args.candidates,
                        order=args.order, seed=args.seed, max_batches=args.max_batches,
                        max_llm_calls=args.max_llm_calls, max_llm_tokens=args.max_llm_tokens)
    run_cfg = DistillRun(dataset=args.dataset, questions=args.questions, scenes=args.scenes, out=args.out,
                         theory=args.theory, ablate_predicate=args.ablate_predicate,
                         ablate_fraction=args.ablate_fraction, seed=args.seed, limit=args.limit,
                         test_fraction=args.test_fraction, val_fraction=args.val_fraction, config=cfg)
    client = None
    if not args.replay:
        client = LLMClient(_llm_config(args, retry_empty=False))  # an empty reply gets the loop's feedback
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
    why = no_calls_reason(summary)
    if why:
        print(why)
    if summary.get("verdicts"):
        print("verdicts: " + ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items()))
    if summary["llm_calls"]:
        print(f"LLM: {summary['llm_requests']} requests, {summary['seconds_per_call']} s per call, "
              f"{summary['completion_tokens_per_second']} completion tokens/s; finish reasons: "
              + ", ".join(f"{k} {v}" for k, v in summary["finish_reasons"].items()))
    if summary.get("stopped"):
        print(f"stopped early: {summary['stopped']['reason']} (at batch {summary['stopped']['batch']} "
              f"of {summary['stopped']['batches']})")
    print(f"theory: {args.out}/theory.lp  transcript: {args.out}/transcript.jsonl  summary: {args.out}/summary.json")
    if getattr(args, "json", False):
        print(json.dumps(summary))
    return 0


DEMO_SETTINGS = ("batch", "retries", "mends", "order", "seed", "test_fraction", "val_fraction")


def _demo_args(args) -> None:
    """`--replay demo`: the shipped demo's files and the settings it was recorded with."""
    from ..distill.run import DEMO_DIR
    from ..errors import VQAError

    given = [f for f, v in (("--theory", args.theory), ("--questions", args.questions), ("--scenes", args.scenes),
                            ("--max-batches", args.max_batches), ("--limit", args.limit),
                            ("--ablate-predicate", args.ablate_predicate),
                            ("--ablate-fraction", args.ablate_fraction)) if v is not None]
    if given:
        raise VQAError(f"--replay demo replays the recorded run as it was; {', '.join(given)} do(es) not apply")
    settings = json.loads((DEMO_DIR / "settings.json").read_text(encoding="utf-8"))
    args.dataset, args.replay = "clevr", str(DEMO_DIR / "transcript.jsonl")
    args.theory, args.questions, args.scenes = (str(DEMO_DIR / "incomplete.lp"), str(DEMO_DIR / "questions.json"),
                                                str(DEMO_DIR / "scenes.json"))
    for key in DEMO_SETTINGS:
        setattr(args, key, settings[key])
    print(f"replaying the shipped demo ({DEMO_DIR}): an incomplete CLEVR theory without the rules for `exist`, "
          f"scripted LLM replies (a syntax error, an unsafe rule, a wrong rule, two hostile replies, the right rule)")


def no_calls_reason(summary: dict) -> str | None:
    """Why a run made no LLM calls (None when it made some)."""
    if summary.get("llm_calls"):
        return None
    b = summary.get("batches") or {}
    if not b:
        return None
    if not b.get("run"):
        return "no LLM calls: no training batch was run" + (
            f" (--max-batches {b['max_batches']})" if b.get("max_batches") is not None else "")
    cut = (f" of {b['total']} (--max-batches {b['max_batches']})" if b.get("max_batches") is not None
           and b["run"] < b["total"] else "")
    return (f"no LLM calls: the {b['run']} training batch(es) run{cut} were already answered right by the theory "
            f"({b['already_right']} of {b['run']}), so there was nothing to ask; the train accuracy is the theory's own")
