"""Side-by-side benchmark of the attention variants and of the whole ViT.

`run_bench(BenchConfig(...))` -> a JSON-ready dict; `format_tables(result)` -> text.

Attention: one layer per variant (same dim, baseline heads, input), for each sequence
length: forward (eval, no grad) and forward+backward (train) wall time, measured in
rounds that visit every variant in turn (the order rotates each round) after warm-up
rounds; the median over rounds is reported with its spread (min-max) so noise is visible.
Alongside: analytic forward FLOPs (multiply-add = 2), parameters, K/V bytes (the K and V
tensors a layer holds, B*M*H_kv*d_head*2 elements; mla: its latents, B*M*latent_dim, with
the up-projections' FLOPs added; mixsga: each token at its routed expert's K/V heads) and
speed-up over MHA.

The variable-group variants (kdgqa, dgqa) would fall back to the equal-group fast path
when the key norms happen to be balanced (as at random initialisation); so that the bench
measures their variable-group path, the first K head's projection is scaled up and dgqa's
norm average is set unbalanced. The table's `path` column says which path ran (for dgqa
"per group|gather": per-group calls in the forward-only timing, the K/V gather with autograd).

ViT: images/s of the whole forward (eval, no grad) for a registered size with a few
attention variants, and timm's VisionTransformer of the same shape when timm is installed
(optional, never required).
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from .attention import VARIANTS, Attention, resolve_heads
from .vit import create_vit, vit_config


@dataclass
class BenchConfig:
    dim: int = 512
    n_heads: int = 8
    batch: int = 1
    seq_lens: tuple[int, ...] = (256, 1024, 4096)
    variants: tuple[str, ...] = VARIANTS
    repeats: int = 3
    warmup: int = 1
    backward: bool = True
    vit: str | None = "vit_tiny"
    vit_batch: int = 8
    vit_repeats: int = 7
    vit_variants: tuple[str, ...] = ("mha", "gqa", "sqa")
    timm: bool = True
    threads: int | None = None
    seed: int = 0
    extra_heads: dict = field(default_factory=dict)   # variant -> (n_q_heads, n_kv_heads)


def attention_flops(n_tokens: int, dim: int, n_q_heads: int, n_kv_heads: int, d_head: int,
                    batch: int = 1) -> dict:
    """Forward FLOPs of one self-attention layer (multiply-add = 2): projections
    (Q, K, V, output) and attention proper (q k^T and attn v)."""
    N = n_tokens
    proj = 2 * N * dim * (n_q_heads + 2 * n_kv_heads) * d_head + 2 * N * n_q_heads * d_head * dim
    attn = 2 * 2 * N * N * n_q_heads * d_head
    return {"proj": batch * proj, "attn": batch * attn, "total": batch * (proj + attn)}


def _skew_keys(m: Attention) -> None:
    """Make the K/V heads' key norms unequal, so variable groups are really variable."""
    if m.variant not in ("kdgqa", "dgqa"):
        return
    with torch.no_grad():
        rows = slice(m.n_q_heads * m.d_head, (m.n_q_heads + 1) * m.d_head)   # K head 0
        m.qkv.weight[rows] *= 2.0
        if m.variant == "dgqa":
            m.key_norm_ema.copy_(torch.linspace(2.0, 1.0, m.n_kv_heads))


def _path(m: Attention, x: torch.Tensor) -> str:
    if m.variant == "mla":
        return "sdpa, latent K/V"
    if m.variant == "mixsga":
        return "sdpa, routed K/V"
    if m.variant not in ("kdgqa", "dgqa"):
        return "sdpa" + ("+gqa" if m.n_q_heads != m.n_kv_heads else "")
    with torch.no_grad():
        _, k, _ = m.project(x)
        training = m.training
        m.eval()
        counts = m.group_counts(k)
        m.train(training)
    if m._uniform(counts):
        return "sdpa+gqa (uniform)"
    return "per group|gather" if counts.dim() == 1 else "gather K/V"


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _median(xs):
    return statistics.median(xs) if xs else None


def bench_attention(cfg: BenchConfig, progress=None) -> list[dict]:
    """One row per (variant, seq_len); times in ms (median over cfg.repeats rounds)."""
    torch.manual_seed(cfg.seed)
    d_head = cfg.dim // cfg.n_heads
    mods = {}
    for v in cfg.variants:
        q, kv = cfg.extra_heads.get(v, (None, None))
        mods[v] = Attention(cfg.dim, cfg.n_heads, variant=v, n_q_heads=q, n_kv_heads=kv)
        _skew_keys(mods[v])
    rows = []
    steps = len(cfg.seq_lens) * (cfg.warmup + cfg.repeats)
    bar = progress(range(steps), desc="attention", total=steps) if progress else None
    for n in cfg.seq_lens:
        x = torch.randn(cfg.batch, n, cfg.dim)
        fwd = {v: [] for v in cfg.variants}
        fb = {v: [] for v in cfg.variants}
        order = list(cfg.variants)
        for r in range(cfg.warmup + cfg.repeats):
            rot = order[r % len(order):] + order[:r % len(order)]
            for v in rot:
                m = mods[v]
                m.eval()
                with torch.no_grad():
                    t = _time(lambda: m(x))
                if r >= cfg.warmup:
                    fwd[v].append(t)
                if cfg.backward:
                    m.train()
                    m.zero_grad(set_to_none=True)
                    t = _time(lambda: m(x).sum().backward())
                    m.zero_grad(set_to_none=True)
                    if r >= cfg.warmup:
                        fb[v].append(t)
            if bar is not None:
                bar.update(1)
        for v in cfg.variants:
            m = mods[v]
            fl = attention_flops(n, cfg.dim, m.n_q_heads, m.n_kv_heads, d_head, cfg.batch)
            kv_bytes = 2 * cfg.batch * n * m.n_kv_heads * d_head * x.element_size()
            if m.variant == "mla":          # latent cache; K/V up-projections (latent -> H_q d, twice)
                kv_bytes = cfg.batch * n * m.latent_dim * x.element_size()
                up = 2 * 2 * n * m.latent_dim * m.n_q_heads * d_head * cfg.batch
                fl = {**fl, "proj": fl["proj"] + up, "total": fl["total"] + up}
            elif m.variant == "mixsga":     # per-token K/V heads of the routing (eval, this input)
                with torch.no_grad():
                    m.eval()(x)
                kv_bytes = round(kv_bytes * m.kv_cache_fraction())
            rows.append({
                "variant": v, "seq_len": n, "n_q_heads": m.n_q_heads, "n_kv_heads": m.n_kv_heads,
                "path": _path(m.eval(), x[:1]),
                "params": sum(p.numel() for p in m.parameters()),
                "kv_bytes": kv_bytes,
                "gflops_fwd": fl["total"] / 1e9, "gflops_attn_fwd": fl["attn"] / 1e9,
                "fwd_ms": 1e3 * _median(fwd[v]),
                "fwd_ms_range": [1e3 * min(fwd[v]), 1e3 * max(fwd[v])],
                "fwdbwd_ms": 1e3 * _median(fb[v]) if fb[v] else None,
                "fwdbwd_ms_range": [1e3 * min(fb[v]), 1e3 * max(fb[v])] if fb[v] else None,
            })
    if bar is not None:
        bar.close()
    for n in cfg.seq_lens:
        base = next((r for r in rows if r["variant"] == "mha" and r["seq_len"] == n), None)
        for r in rows:
            if r["seq_len"] != n:
                continue
            r["speedup_fwd"] = base["fwd_ms"] / r["fwd_ms"] if base else None
            r["speedup_fwdbwd"] = (base["fwdbwd_ms"] / r["fwdbwd_ms"]
                                   if base and r["fwdbwd_ms"] and base["fwdbwd_ms"] else None)
    return rows


def _timm_vit(cfg):
    """timm's VisionTransformer with our config's shape, or None if timm is not installed."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return None
    return VisionTransformer(img_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                             embed_dim=cfg.dim, depth=cfg.depth, num_heads=cfg.n_heads,
                             mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, num_classes=0)


def bench_vit(cfg: BenchConfig, progress=None) -> list[dict]:
    """Images/s of the whole ViT forward (eval, no grad), ours per variant and timm's."""
    torch.manual_seed(cfg.seed)
    vcfg = vit_config(cfg.vit)
    models = {f"vqa {v}": create_vit(cfg.vit, attn_variant=v).eval() for v in cfg.vit_variants}
    timm_model = _timm_vit(vcfg) if cfg.timm else None
    if timm_model is not None:
        models["timm mha"] = timm_model.eval()
    h, w = (vcfg.image_size, vcfg.image_size) if isinstance(vcfg.image_size, int) else vcfg.image_size
    x = torch.randn(cfg.vit_batch, vcfg.in_chans, h, w)
    times = {k: [] for k in models}
    names = list(models)
    steps = cfg.warmup + cfg.vit_repeats
    bar = progress(range(steps), desc="vit", total=steps) if progress else None
    for r in range(steps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            with torch.no_grad():
                t = _time(lambda: models[k](x))
            if r >= cfg.warmup:
                times[k].append(t)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rows = []
    for k, m in models.items():
        t = _median(times[k])
        rows.append({"model": k, "size": cfg.vit, "batch": cfg.vit_batch, "image": [h, w],
                     "params": sum(p.numel() for p in m.parameters()),
                     "ms_per_batch": 1e3 * t, "images_per_s": cfg.vit_batch / t,
                     "images_per_s_range": [cfg.vit_batch / max(times[k]), cfg.vit_batch / min(times[k])]})
    if timm_model is None and cfg.timm:
        rows.append({"model": "timm mha", "size": cfg.vit, "skipped": "timm is not installed"})
    return rows


def run_bench(cfg: BenchConfig, progress=None) -> dict:
    """The whole benchmark: {"config", "env", "attention": rows, "vit": rows}."""
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu",
               "cpus": os.cpu_count(), "load_before": _load()}
        result = {"config": asdict(cfg), "env": env,
                  "attention": bench_attention(cfg, progress) if cfg.seq_lens and cfg.variants else [],
                  "vit": bench_vit(cfg, progress) if cfg.vit else []}
        env["load_after"] = _load()
    finally:
        torch.set_num_threads(old_threads)
    return result


def _load() -> float | None:
    """1-minute load average (other processes on the machine add noise), if known."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f}M" if n >= 2**20 else f"{n / 2**10:.0f}K"


def format_tables(result: dict) -> str:
    """Plain-text tables of `run_bench`'s result."""
    lines = []
    c, env = result["config"], result["env"]
    if result["attention"]:
        lines.append(f"attention layer: dim {c['dim']}, baseline heads {c['n_heads']}, batch {c['batch']}, "
                     f"median of {c['repeats']} rounds, torch {env['torch']}, {env['threads']} threads, "
                     f"load {env.get('load_before')} -> {env.get('load_after')} on {env.get('cpus')} CPUs")
        hdr = (f"{'variant':<7} {'N':>5} {'Hq/Hkv':>6} {'path':<18} {'params':>8} {'KV':>7} {'GFLOP':>7} "
               f"{'fwd ms':>9} {'x MHA':>6} {'fwd+bwd ms':>11} {'x MHA':>6}")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for r in result["attention"]:
            fb = f"{r['fwdbwd_ms']:11.1f}" if r["fwdbwd_ms"] is not None else f"{'-':>11}"
            sfb = f"{r['speedup_fwdbwd']:6.2f}" if r.get("speedup_fwdbwd") else f"{'-':>6}"
            sf = f"{r['speedup_fwd']:6.2f}" if r.get("speedup_fwd") else f"{'-':>6}"
            lines.append(f"{r['variant']:<7} {r['seq_len']:>5} {str(r['n_q_heads']) + '/' + str(r['n_kv_heads']):>6} "
                         f"{r['path']:<18} {r['params']:>8} {_fmt_bytes(r['kv_bytes']):>7} {r['gflops_fwd']:7.2f} "
                         f"{r['fwd_ms']:9.1f} {sf} {fb} {sfb}")
    if result["vit"]:
        lines.append("")
        lines.append(f"whole ViT forward (eval, no grad), median of {c['vit_repeats']} rounds")
        for r in result["vit"]:
            if "skipped" in r:
                lines.append(f"  {r['model']:<10} {r['size']}: skipped ({r['skipped']})")
            else:
                lo, hi = r["images_per_s_range"]
                lines.append(f"  {r['model']:<10} {r['size']} {r['image'][0]}x{r['image'][1]} batch {r['batch']}: "
                             f"{r['images_per_s']:7.1f} images/s  (range {lo:.1f}-{hi:.1f}, {r['params'] / 1e6:.2f}M params)")
    return "\n".join(lines)
