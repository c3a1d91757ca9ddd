"""TransMLA on the shipped question parser: conversion error, cache bytes per token and
PCA-compressed latents (`parser_cache_report`), built from the parser-independent pieces of
`vqa.nn.mla`. It lives here, beside the parser it loads, so that `vqa.nn` imports only torch.

    python -m vqa.language.mla_report QUESTIONS.json [--ranks 96 64 ...] [--finetune-steps N]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn.mla import (collect_latents, compress_model, finetune_up_projections, kv_cache_bytes, pca_basis,
                      seq2seq_to_mla)
from .parser import load_question_parser


def parser_cache_report(questions: list[str], ranks=(96, 64, 48, 32, 16), *, checkpoint=None,
                        calib_share: float = 0.5, finetune_steps: int = 0) -> dict:
    """TransMLA on the shipped question parser: conversion error, cache bytes per token,
    and PCA-compressed latents (calibrated on the first `calib_share` of `questions`,
    measured on the rest); with `finetune_steps`, each compressed model's up-projections
    are then trained to match the original on the calibration questions (the parser itself
    is only read)."""
    parser = load_question_parser(checkpoint)
    model = parser.model.eval()
    n_cal = max(1, int(len(questions) * calib_share))
    calib, held = questions[:n_cal], questions[n_cal:] or questions
    pad = model.config.pad_id

    def targets(results):
        rows = [parser.vocab.encode(r.tokens)[:-1] for r in results]       # BOS + tokens (teacher forcing)
        T = max(len(r) for r in rows)
        tgt = torch.full((len(rows), T), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            tgt[i, :len(r)] = torch.tensor(r)
        return tgt

    def encode(texts):                     # numpy or torch, depending on the parser's version
        return torch.as_tensor(parser.encode_batch(texts), dtype=torch.long)

    base = parser.parse_batch(held)
    src, tgt = encode(held), targets(base)
    keep = tgt != pad
    with torch.no_grad():
        ref = model(src, tgt)

    def measure(m):
        parser.model = m
        try:
            res = parser.parse_batch(held)
        finally:
            parser.model = model
        with torch.no_grad():
            out = m(src, tgt)
        agree = sum(a.tokens == b.tokens for a, b in zip(res, base)) / len(base)
        kl = F.kl_div(out[keep].log_softmax(-1), ref[keep].log_softmax(-1), log_target=True, reduction="batchmean")
        return {"max_abs_logit_diff": float((out - ref)[keep].abs().max()), "kl_per_token": float(kl),
                "program_agreement": agree}

    mla = seq2seq_to_mla(model).eval()
    before = kv_cache_bytes(model, prefix="decoder")
    rows = [{"form": "gqa (shipped)", "latent_dim": None, "bytes_per_token": before,
             "max_abs_logit_diff": 0.0, "kl_per_token": 0.0, "program_agreement": 1.0}]
    rows.append({"form": "mla (TransMLA, exact)", "latent_dim": mla.decoder[0].self_attn.latent_dim,
                 "bytes_per_token": kv_cache_bytes(mla, prefix="decoder"), **measure(mla)})
    c_src, c_base = encode(calib), parser.parse_batch(calib)
    c_tgt = targets(c_base)
    c_mem_mask, c_tgt_mask = c_src != pad, c_tgt != pad
    latents = collect_latents(mla, lambda: mla(c_src, c_tgt),
                              masks=lambda name, ctx: c_mem_mask if "cross" in name else c_tgt_mask)
    variance = {}
    for r in ranks:
        comp = compress_model(mla, latents, r).eval()
        rows.append({"form": f"mla pca rank {r}", "latent_dim": r,
                     "bytes_per_token": kv_cache_bytes(comp, prefix="decoder"), **measure(comp)})
        variance[r] = {n: float(pca_basis(z, r)[2].sum()) for n, z in latents.items()}
        if finetune_steps:
            losses = finetune_up_projections(comp, model, c_src, c_tgt, finetune_steps, pad_id=pad)
            rows.append({"form": f"  + up-proj {finetune_steps} st", "latent_dim": r,
                         "bytes_per_token": kv_cache_bytes(comp, prefix="decoder"),
                         "finetune_kl_first_last": [losses[0], losses[-1]], **measure(comp.eval())})
    return {"questions_calibration": len(calib), "questions_measured": len(held),
            "config": model.config.to_dict(), "rows": rows, "explained_variance": variance}


def format_cache_report(rep: dict) -> str:
    lines = [f"question parser decoder (2 self + 2 cross attention layers), calibration {rep['questions_calibration']} "
             f"questions, measured on {rep['questions_measured']}",
             f"{'form':<24} {'latent':>6} {'self B/tok':>10} {'cross B/src tok':>15} {'max|dlogit|':>12} "
             f"{'KL/token':>9} {'agree':>6}"]
    for r in rep["rows"]:
        b = r["bytes_per_token"]
        self_b = sum(v for k, v in b.items() if "self_attn" in k)
        cross_b = sum(v for k, v in b.items() if "cross_attn" in k)
        lines.append(f"{r['form']:<24} {str(r['latent_dim'] or '-'):>6} {self_b:>10} {cross_b:>15} "
                     f"{r['max_abs_logit_diff']:12.2e} {r['kl_per_token']:9.2e} {r['program_agreement']:6.3f}")
    return "\n".join(lines)


def _main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m vqa.language.mla_report",
                                 description="TransMLA on the question parser: cache bytes and error")
    ap.add_argument("questions", help="a CLEVR questions JSON file (e.g. from vqa generate)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[96, 64, 48, 32, 16])
    ap.add_argument("--limit", type=int, default=400, help="questions used (default 400)")
    ap.add_argument("--checkpoint", help="question parser checkpoint (default: the shipped one)")
    ap.add_argument("--finetune-steps", type=int, default=0,
                    help="then train the up-projections this many steps to match the original (default 0)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with open(a.questions) as f:
        qs = [q["question"] for q in json.load(f)["questions"]][:a.limit]
    torch.set_num_threads(1)
    rep = parser_cache_report(qs, tuple(a.ranks), checkpoint=a.checkpoint, finetune_steps=a.finetune_steps)
    print(json.dumps(rep, indent=1) if a.json else format_cache_report(rep))
    return 0


if __name__ == "__main__":          # run the package's module, not a second copy of it
    from importlib import import_module
    raise SystemExit(import_module(__spec__.name)._main())
