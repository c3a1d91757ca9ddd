"""`vqa bench attention`: the attention variants and the whole ViT, side by side."""
from __future__ import annotations

import json
import sys

from ..errors import VQAError


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.replace(",", " ").split())


def register(sub) -> None:
    p = sub.add_parser("attention", help="attention variants (time, FLOPs, params, K/V bytes) and ViT images/s")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--seq-lens", nargs="+", default=["256", "1024", "4096"], help="token counts (default 256 1024 4096)")
    p.add_argument("--variants", nargs="+", help="attention variants (default: all)")
    p.add_argument("--dim", type=int, default=512, help="model width (default 512)")
    p.add_argument("--heads", type=int, default=8, help="baseline head count H (default 8)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the attention bench (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="measured rounds; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--vit", default="vit_tiny", help="registered ViT size for images/s (default vit_tiny)")
    p.add_argument("--no-vit", action="store_true", help="skip the whole-ViT bench")
    p.add_argument("--vit-batch", type=int, default=8, help="images per ViT forward (default 8)")
    p.add_argument("--vit-repeats", type=int, default=7, help="measured ViT rounds (default 7)")
    p.add_argument("--vit-variants", nargs="+", default=["mha", "gqa", "sqa"], help="our ViT's attention variants")
    p.add_argument("--no-timm", action="store_true", help="do not compare with timm even if installed")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("head configuration search (--search; vqa.nn.head_search)")
    g.add_argument("--search", action="store_true",
                   help="search (width, H_q, H_kv, d_head) for the cheapest configuration reaching --target "
                        "on a synthetic retrieval task, instead of the side-by-side bench")
    g.add_argument("--tokens", type=int, default=64, help="tokens per sequence (default 64)")
    g.add_argument("--queries", type=int, default=16, help="query tokens among them (default 16)")
    g.add_argument("--target", type=float, default=0.9, help="accuracy to reach (default 0.9)")
    g.add_argument("--cost", choices=["flops", "time", "kv"], default="flops",
                   help="cost to minimise: FLOPs/token, measured us/token, K/V cache bytes/token (default flops)")
    g.add_argument("--budget", type=float, help="ceiling on that cost (default none)")
    g.add_argument("--widths", nargs="+", default=["32", "64"], help="model widths D (default 32 64)")
    g.add_argument("--q-heads", nargs="+", default=["1", "2", "4"], help="H_q values (default 1 2 4)")
    g.add_argument("--kv-heads", nargs="+", default=["1", "2", "4"], help="H_kv values, those dividing H_q (default 1 2 4)")
    g.add_argument("--head-dims", nargs="+", default=["8", "16"], help="head sizes, independent of D (default 8 16)")
    g.add_argument("--layers", type=int, default=1, help="transformer layers (default 1)")
    g.add_argument("--steps", type=int, default=150, help="training steps per configuration (default 150)")
    g.add_argument("--search-batch", type=int, default=32, help="training batch (default 32)")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run_search(args) -> int:
    from ..nn.head_search import SearchConfig, format_search, run_search as search
    from ._util import progress

    try:
        lists = {k: tuple(n for s in getattr(args, k) for n in _ints(s))
                 for k in ("widths", "q_heads", "kv_heads", "head_dims")}
    except ValueError:
        raise VQAError("--widths/--q-heads/--kv-heads/--head-dims: expected integers") from None
    if any(n < 1 for v in lists.values() for n in v) or min(args.tokens, args.queries, args.layers, args.steps,
                                                            args.search_batch) < 1:
        raise VQAError("head search: sizes, --tokens, --queries, --layers, --steps must be positive")
    if args.queries >= args.tokens:
        raise VQAError(f"--queries ({args.queries}) must be below --tokens ({args.tokens})")
    cfg = SearchConfig(tokens=args.tokens, queries=args.queries, n_keys=max(64, args.tokens - args.queries),
                       layers=args.layers, steps=args.steps, batch=args.search_batch, **lists)
    import torch
    old = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = search(cfg, args.target, args.cost, args.budget, progress=None if args.no_progress else progress)
    except ValueError as e:
        raise VQAError(str(e)) from None
    finally:
        torch.set_num_threads(old)
    return _emit(result, args, format_search)


def _emit(result: dict, args, formatter) -> int:
    """Write the result JSON to --out when given; print it (--json) or its tables."""
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text if args.json else formatter(result))
    return 0


def run(args) -> int:
    if args.search:
        return run_search(args)
    from ..nn.attention import VARIANTS
    from ..nn.bench import BenchConfig, format_tables, run_bench
    from ..nn.vit import VIT_SIZES
    from ._util import progress

    try:
        seq_lens = tuple(n for s in args.seq_lens for n in _ints(s))
    except ValueError:
        raise VQAError(f"--seq-lens: expected integers, got {' '.join(args.seq_lens)!r}") from None
    variants = tuple(args.variants or VARIANTS)
    for v in variants + tuple(args.vit_variants):
        if v not in VARIANTS:
            raise VQAError(f"variant {v!r}: expected one of {', '.join(VARIANTS)}")
    if not args.no_vit and args.vit not in VIT_SIZES:
        raise VQAError(f"--vit {args.vit!r}: expected one of {', '.join(VIT_SIZES)}")
    for name in ("dim", "heads", "batch", "repeats", "vit_batch", "vit_repeats"):
        if getattr(args, name) < 1:
            raise VQAError(f"--{name.replace('_', '-')}: expected a positive integer")
    if any(n < 1 for n in seq_lens) or args.dim % args.heads:
        raise VQAError(f"--seq-lens must be positive and --dim ({args.dim}) a multiple of --heads ({args.heads})")
    cfg = BenchConfig(dim=args.dim, n_heads=args.heads, batch=args.batch, seq_lens=seq_lens, variants=variants,
                      repeats=args.repeats, warmup=max(0, args.warmup), backward=not args.no_backward,
                      vit=None if args.no_vit else args.vit, vit_batch=args.vit_batch,
                      vit_repeats=args.vit_repeats,
                      vit_variants=tuple(args.vit_variants), timm=not args.no_timm, threads=args.threads)
    if cfg.warmup == 0:
        print("warning: --warmup 0: each first timed round carries one-time costs (allocation, kernel "
              "choice, lazy initialisation), so times and speed-ups are not steady-state figures; "
              "use --warmup 1 or more for figures to report", file=sys.stderr)
    try:
        result = run_bench(cfg, progress=None if args.no_progress else progress)
    except ValueError as e:          # a head layout that does not fit a variant
        raise VQAError(str(e)) from None
    return _emit(result, args, format_tables)
