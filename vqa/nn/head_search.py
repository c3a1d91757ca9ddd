"""Cost-optimal attention head configuration: a small measured search.

After Chen et al. (2025), "Cost-optimal grouped-query attention for long-context LLMs":
the head count and head size need not follow the model width (H_q * d_head != D is allowed),
and at a given context length the cheapest configuration that reaches a quality target is
found by measuring quality and cost over (width D, H_q, H_kv, d_head) together.

Quality proxy: a fixed synthetic key-value retrieval task that needs attention. Each
sequence has `tokens` positions: ``tokens - queries`` context tokens, each a distinct key
(from `n_keys`) with a value (from `n_values`), embedded as E_key[k] + E_val[v]; then
`queries` query tokens E_query[k] for keys drawn from the context. The model must output
the value of each queried key (chance = 1/n_values). A config is trained for `steps`
Adam steps on freshly drawn batches (same seed for every config) and scored on a fixed
held-out set: accuracy and cross-entropy at the query positions.

Model: `layers` pre-norm blocks of `HeadAttention` (GQA with decoupled head size,
``F.scaled_dot_product_attention(..., enable_gqa=True)``) and a GELU MLP (4 D), a
LayerNorm and a linear read-out.

Cost per token at the given token count T (per sequence of T tokens, all layers):
- FLOPs (forward, multiply-add = 2): projections 2 D (H_q + 2 H_kv) d + 2 H_q d D,
  attention 4 T H_q d (q k^T and a v, full attention over T), MLP 16 D^2;
- K/V cache bytes: 2 H_kv d * layers * 4 (float32);
- measured time: forward (eval, no grad) of a batch, in microseconds per token; the
  fastest of `time_repeats` runs (the least disturbed by other processes on the machine).

`search(SearchConfig(...))` -> rows; `choose(rows, target, cost, budget)` -> the cheapest
row whose accuracy reaches `target` (and whose cost is within `budget` if given).
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


class HeadAttention(nn.Module):
    """Grouped-query self-attention with head size decoupled from the width:
    x (B, N, D) -> (B, N, D) with H_q query heads and H_kv K/V heads of d_head each."""

    def __init__(self, dim: int, n_q_heads: int, n_kv_heads: int, d_head: int):
        super().__init__()
        if n_q_heads % n_kv_heads:
            raise ValueError(f"n_q_heads={n_q_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        self.dim, self.n_q_heads, self.n_kv_heads, self.d_head = dim, n_q_heads, n_kv_heads, d_head
        self.qkv = nn.Linear(dim, (n_q_heads + 2 * n_kv_heads) * d_head)
        self.proj = nn.Linear(n_q_heads * d_head, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        hq, hkv, d = self.n_q_heads, self.n_kv_heads, self.d_head
        qkv = self.qkv(x).view(B, N, hq + 2 * hkv, d).transpose(1, 2)
        q, k, v = qkv[:, :hq], qkv[:, hq:hq + hkv], qkv[:, hq + hkv:]
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=hq != hkv)
        return self.proj(out.transpose(1, 2).reshape(B, N, hq * d))


class Block(nn.Module):
    def __init__(self, dim: int, n_q_heads: int, n_kv_heads: int, d_head: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = HeadAttention(dim, n_q_heads, n_kv_heads, d_head)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RetrievalModel(nn.Module):
    def __init__(self, n_keys: int, n_values: int, dim: int, n_q_heads: int, n_kv_heads: int, d_head: int,
                 layers: int = 1):
        super().__init__()
        self.key = nn.Embedding(n_keys, dim)
        self.value = nn.Embedding(n_values + 1, dim)      # last row: "this is a query"
        self.blocks = nn.ModuleList(Block(dim, n_q_heads, n_kv_heads, d_head) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, n_values)

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """keys, values (B, T) long (values = n_values at query positions) -> logits (B, T, n_values)."""
        x = self.key(keys) + self.value(values)
        for b in self.blocks:
            x = b(x)
        return self.out(self.norm(x))


def make_batch(batch: int, tokens: int, queries: int, n_keys: int, n_values: int, generator: torch.Generator):
    """-> keys (B, T), values (B, T) (n_values marks a query), answers (B, queries)."""
    ctx = tokens - queries
    if not 1 <= queries < tokens or ctx > n_keys:
        raise ValueError(f"tokens={tokens}, queries={queries}: need 1 <= queries < tokens and "
                         f"tokens - queries <= n_keys={n_keys}")
    keys = torch.rand(batch, n_keys, generator=generator).argsort(-1)[:, :ctx]       # distinct keys
    vals = torch.randint(0, n_values, (batch, ctx), generator=generator)
    pick = torch.randint(0, ctx, (batch, queries), generator=generator)
    q_keys = keys.gather(1, pick)
    answers = vals.gather(1, pick)
    all_keys = torch.cat([keys, q_keys], 1)
    all_vals = torch.cat([vals, torch.full((batch, queries), n_values)], 1)
    return all_keys, all_vals, answers


@dataclass
class SearchConfig:
    tokens: int = 64
    queries: int = 16
    n_keys: int = 64
    n_values: int = 8
    widths: tuple[int, ...] = (32, 64)
    q_heads: tuple[int, ...] = (1, 2, 4)
    kv_heads: tuple[int, ...] = (1, 2, 4)       # those dividing H_q are used
    head_dims: tuple[int, ...] = (8, 16)
    layers: int = 1
    steps: int = 150
    batch: int = 32
    lr: float = 3e-3
    eval_batches: int = 4
    time_batch: int = 8
    time_repeats: int = 7
    seed: int = 0


def grid(cfg: SearchConfig) -> list[tuple[int, int, int, int]]:
    """(D, H_q, H_kv, d_head) of the search, H_kv dividing H_q."""
    return [(D, q, kv, d) for D, q, kv, d in itertools.product(cfg.widths, cfg.q_heads, cfg.kv_heads, cfg.head_dims)
            if kv <= q and q % kv == 0]


def flops_per_token(dim: int, n_q: int, n_kv: int, d_head: int, tokens: int, layers: int = 1) -> dict:
    proj = 2 * dim * (n_q + 2 * n_kv) * d_head + 2 * n_q * d_head * dim
    attn = 4 * tokens * n_q * d_head
    mlp = 16 * dim * dim
    return {"proj": layers * proj, "attn": layers * attn, "mlp": layers * mlp,
            "total": layers * (proj + attn + mlp)}


def kv_bytes_per_token(n_kv: int, d_head: int, layers: int = 1, element_size: int = 4) -> int:
    return 2 * n_kv * d_head * layers * element_size


def evaluate_config(cfg: SearchConfig, dim: int, n_q: int, n_kv: int, d_head: int) -> dict:
    """Train one configuration on the retrieval task; measure quality and cost."""
    torch.manual_seed(cfg.seed)
    model = RetrievalModel(cfg.n_keys, cfg.n_values, dim, n_q, n_kv, d_head, cfg.layers)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(cfg.steps):
        k, v, a = make_batch(cfg.batch, cfg.tokens, cfg.queries, cfg.n_keys, cfg.n_values, g)
        logits = model(k, v)[:, -cfg.queries:]
        loss = F.cross_entropy(logits.reshape(-1, cfg.n_values), a.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    ge = torch.Generator().manual_seed(cfg.seed + 10_000)       # the same held-out set for every config
    correct = total = 0
    ce = 0.0
    with torch.no_grad():
        for _ in range(cfg.eval_batches):
            k, v, a = make_batch(cfg.batch, cfg.tokens, cfg.queries, cfg.n_keys, cfg.n_values, ge)
            logits = model(k, v)[:, -cfg.queries:]
            ce += F.cross_entropy(logits.reshape(-1, cfg.n_values), a.reshape(-1), reduction="sum").item()
            correct += (logits.argmax(-1) == a).sum().item()
            total += a.numel()
        k, v, _ = make_batch(cfg.time_batch, cfg.tokens, cfg.queries, cfg.n_keys, cfg.n_values, ge)
        model(k, v)                                            # warm-up
        times = []
        for _ in range(cfg.time_repeats):
            t = time.perf_counter()
            model(k, v)
            times.append(time.perf_counter() - t)
    fl = flops_per_token(dim, n_q, n_kv, d_head, cfg.tokens, cfg.layers)
    return {"width": dim, "n_q_heads": n_q, "n_kv_heads": n_kv, "d_head": d_head,
            "head_total": n_q * d_head, "params": sum(p.numel() for p in model.parameters()),
            "accuracy": correct / total, "loss": ce / total,
            "flops_per_token": fl["total"], "attn_flops_per_token": fl["attn"],
            "kv_bytes_per_token": kv_bytes_per_token(n_kv, d_head, cfg.layers),
            "us_per_token": 1e6 * min(times) / (cfg.time_batch * cfg.tokens),
            "train_s": train_s}


COSTS = {"flops": "flops_per_token", "time": "us_per_token", "kv": "kv_bytes_per_token"}


def search(cfg: SearchConfig, progress=None) -> list[dict]:
    configs = grid(cfg)
    it = progress(configs, desc="head search", total=len(configs)) if progress else configs
    return [evaluate_config(cfg, *c) for c in it]


def choose(rows: list[dict], target: float, cost: str = "flops", budget: float | None = None) -> dict | None:
    """The cheapest row (by `cost`: flops, time or kv) with accuracy >= target and cost <= budget;
    ties broken by the other two costs, then by accuracy (higher first)."""
    key = COSTS[cost]
    others = [c for c in COSTS.values() if c != key]
    ok = [r for r in rows if r["accuracy"] >= target and (budget is None or r[key] <= budget)]
    if not ok:
        return None
    return min(ok, key=lambda r: (r[key], *(r[o] for o in others), -r["accuracy"]))


def run_search(cfg: SearchConfig, target: float, cost: str = "flops", budget: float | None = None,
               progress=None) -> dict:
    if cost not in COSTS:
        raise ValueError(f"cost {cost!r}: expected one of {', '.join(COSTS)}")
    t = time.perf_counter()
    rows = search(cfg, progress)
    best = choose(rows, target, cost, budget)
    best_under_budget = max((r for r in rows if budget is None or r[COSTS[cost]] <= budget),
                            key=lambda r: r["accuracy"], default=None)
    return {"config": asdict(cfg), "target": target, "cost": cost, "budget": budget,
            "env": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
            "seconds": time.perf_counter() - t, "rows": rows, "chosen": best,
            "most_accurate_within_budget": best_under_budget}


def format_search(result: dict) -> str:
    c = result["config"]
    key = COSTS[result["cost"]]
    lines = [f"head search: key-value retrieval, {c['tokens']} tokens ({c['tokens'] - c['queries']} context + "
             f"{c['queries']} queries, {c['n_keys']} keys, {c['n_values']} values, chance {1 / c['n_values']:.3f}), "
             f"{c['layers']} layer(s), {c['steps']} steps x batch {c['batch']}, torch {result['env']['torch']}, "
             f"{result['env']['threads']} thread(s), {result['seconds']:.0f} s",
             f"{'D':>4} {'Hq':>3} {'Hkv':>3} {'d':>3} {'Hq*d':>5} {'params':>7} {'acc':>6} {'loss':>6} "
             f"{'kFLOP/tok':>10} {'KV B/tok':>8} {'us/tok':>7} {'train s':>7}"]
    lines.append("-" * len(lines[-1]))
    chosen = result["chosen"]
    for r in sorted(result["rows"], key=lambda r: r[key]):
        mark = " <= chosen" if r is chosen or r == chosen else ""
        lines.append(f"{r['width']:>4} {r['n_q_heads']:>3} {r['n_kv_heads']:>3} {r['d_head']:>3} {r['head_total']:>5} "
                     f"{r['params']:>7} {r['accuracy']:6.3f} {r['loss']:6.3f} {r['flops_per_token'] / 1e3:10.1f} "
                     f"{r['kv_bytes_per_token']:>8} {r['us_per_token']:7.2f} {r['train_s']:7.1f}{mark}")
    budget = f", {result['cost']} <= {result['budget']:g}" if result["budget"] is not None else ""
    if chosen:
        lines.append(f"cheapest by {result['cost']} with accuracy >= {result['target']}{budget}: D={chosen['width']} "
                     f"H_q={chosen['n_q_heads']} H_kv={chosen['n_kv_heads']} d_head={chosen['d_head']} "
                     f"(accuracy {chosen['accuracy']:.3f}, {chosen['flops_per_token'] / 1e3:.1f} kFLOP/token, "
                     f"{chosen['kv_bytes_per_token']} K/V bytes/token, {chosen['us_per_token']:.2f} us/token)")
    else:
        b = result["most_accurate_within_budget"]
        lines.append(f"no configuration reaches accuracy {result['target']}{budget}"
                     + (f"; most accurate: D={b['width']} H_q={b['n_q_heads']} H_kv={b['n_kv_heads']} "
                        f"d_head={b['d_head']} ({b['accuracy']:.3f})" if b else ""))
    return "\n".join(lines)
