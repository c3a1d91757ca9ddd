"""The grouped-query attention family: shapes, equivalences, allocation, determinism."""
import math

import pytest
import torch

from vqa.nn.attention import VARIANTS, Attention, allocate_query_heads, head_index, resolve_heads
from vqa.nn.convert import convert_attention, pool_kv_heads

DIM, H = 32, 8


def make(variant, seed=0, **kw):
    torch.manual_seed(seed)
    return Attention(DIM, H, variant=variant, **kw)


def skew(m: Attention, factor=3.0):
    """Scale K head 0's projection so that key norms (hence allocations) are unequal."""
    with torch.no_grad():
        rows = slice(m.n_q_heads * m.d_head, (m.n_q_heads + 1) * m.d_head)
        m.qkv.weight[rows] *= factor
    return m


def manual_attention(m: Attention, x, kv_of_head):
    """Reference attention written from the module's weights, head by head.
    kv_of_head(b, h) -> the K/V head query head h of sample b reads."""
    B, N, _ = x.shape
    d, hq, hkv = m.d_head, m.n_q_heads, m.n_kv_heads
    w, bias = m.qkv.weight, m.qkv.bias
    Wq, Wk, Wv = w[:hq * d], w[hq * d:(hq + hkv) * d], w[(hq + hkv) * d:]
    bq, bk, bv = bias[:hq * d], bias[hq * d:(hq + hkv) * d], bias[(hq + hkv) * d:]
    outs, maps = [], []
    for b in range(B):
        heads, hmaps = [], []
        for h in range(hq):
            g = kv_of_head(b, h)
            q = x[b] @ Wq[h * d:(h + 1) * d].T + bq[h * d:(h + 1) * d]
            k = x[b] @ Wk[g * d:(g + 1) * d].T + bk[g * d:(g + 1) * d]
            v = x[b] @ Wv[g * d:(g + 1) * d].T + bv[g * d:(g + 1) * d]
            a = torch.softmax(q @ k.T / math.sqrt(d), dim=-1)
            heads.append(a @ v)
            hmaps.append(a)
        outs.append(torch.cat(heads, dim=-1) @ m.proj.weight.T + m.proj.bias)
        maps.append(torch.stack(hmaps))
    return torch.stack(outs), torch.stack(maps)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_forward_and_backward(variant):
    m = make(variant)
    x = torch.randn(3, 7, DIM, requires_grad=True)
    y = m(x)
    assert y.shape == (3, 7, DIM)
    y.square().sum().backward()
    assert x.grad.shape == x.shape
    assert m.qkv.weight.grad is not None and m.proj.weight.grad is not None
    assert m.qkv.weight.shape == ((m.n_q_heads + 2 * m.n_kv_heads) * m.d_head, DIM)
    assert m.proj.weight.shape == (DIM, m.n_q_heads * m.d_head)
    # cross-attention: keys/values from another sequence
    ctx = torch.randn(3, 5, DIM)
    out, attn = m.eval()(x, ctx, return_attention=True)
    assert out.shape == (3, 7, DIM) and attn.shape == (3, m.n_q_heads, 7, 5)


def test_head_counts_of_the_variants():
    assert resolve_heads("mha", 8) == (8, 8)
    assert resolve_heads("mqa", 8) == (8, 1)
    assert resolve_heads("gqa", 8) == (8, 2)
    assert resolve_heads("sqa", 8) == (4, 2)
    assert resolve_heads("ssqa", 8) == (4, 4)
    assert resolve_heads("xsqa", 8) == (2, 2)
    assert resolve_heads("xsqa", 16, n_q_heads=4, n_kv_heads=1) == (4, 1)
    for bad in [("xsqa", 8, 4, None), ("sqa", 8, 8, None), ("gqa", 8, 8, 3), ("ssqa", 8, 4, 2),
                ("mqa", 8, None, 2), ("mha", 8, None, 4), ("nope", 8, None, None), ("kdgqa", 8, 2, 4)]:
        with pytest.raises(ValueError):
            resolve_heads(*bad)


def test_sqa_output_projection_and_flops_shrink():
    m = make("sqa")
    assert m.proj.in_features == m.n_q_heads * m.d_head == DIM // 2


def test_gqa_with_all_kv_heads_equals_mha():
    mha, gqa = make("mha", seed=1), make("gqa", seed=2, n_kv_heads=H)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 9, DIM)
    torch.testing.assert_close(gqa(x), mha(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["mha", "gqa", "mqa", "sqa", "xsqa"])
def test_fixed_groups_match_a_manual_computation_and_maps(variant):
    m = make(variant).eval()
    x = torch.randn(2, 6, DIM)
    g = m.n_q_heads // m.n_kv_heads
    ref_out, ref_maps = manual_attention(m, x, lambda b, h: h // g)
    out, maps = m(x, return_attention=True)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m(x), ref_out, rtol=1e-5, atol=1e-5)    # fused default path


def test_allocation_is_proportional_and_sums_to_heads():
    counts = allocate_query_heads(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [9.0, 0.1, 0.1]]), 8)
    assert counts.tolist() == [[2, 3, 3], [3, 3, 2], [6, 1, 1]]
    assert head_index(counts[:1]).tolist() == [[0, 0, 1, 1, 1, 2, 2, 2]]
    torch.manual_seed(0)
    many = allocate_query_heads(torch.rand(50, 4) * 10, 12)
    assert (many.sum(-1) == 12).all() and (many >= 1).all()


def test_kdgqa_allocation_is_per_sample_and_batch_independent():
    m = skew(make("kdgqa")).eval()
    torch.manual_seed(3)
    x = torch.randn(4, 6, DIM)
    x[2] *= 0.1                                       # a sample unlike the others
    _, k, _ = m.project(x)
    counts = m.group_counts(k)
    assert counts.shape == (4, m.n_kv_heads) and (counts.sum(-1) == H).all()
    assert not (counts == H // m.n_kv_heads).all()    # the variable-group path really runs
    batch_out = m(x)
    for b in range(4):
        torch.testing.assert_close(m(x[b:b + 1]), batch_out[b:b + 1], rtol=1e-5, atol=1e-6)
    # and it computes what the allocation says
    ref, ref_maps = manual_attention(m, x, lambda b, h: int(head_index(counts)[b, h]))
    torch.testing.assert_close(batch_out, ref, rtol=1e-5, atol=1e-5)
    out, maps = m(x, return_attention=True)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-5, atol=1e-6)


def test_dgqa_learns_allocation_in_training_and_freezes_it_in_eval():
    m = skew(make("dgqa", momentum=0.5))
    x = torch.randn(2, 6, DIM)
    before = m.key_norm_ema.clone()
    m.train()
    m(x)
    assert not torch.equal(m.key_norm_ema, before)
    for _ in range(10):
        m(x)
    counts = allocate_query_heads(m.key_norm_ema, H)
    assert counts[0] > counts[1] and counts.sum() == H
    m.eval()
    frozen = m.key_norm_ema.clone()
    y1, y2 = m(x), m(x)
    assert torch.equal(m.key_norm_ema, frozen) and torch.equal(y1, y2)
    idx = head_index(counts)
    ref, _ = manual_attention(m, x, lambda b, h: int(idx[h]))
    torch.testing.assert_close(y1, ref, rtol=1e-5, atol=1e-5)             # gather path (autograd)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)       # one call per group
    torch.testing.assert_close(m(x[1:]), y1[1:], rtol=1e-5, atol=1e-6)   # eval: batch-independent


def test_pgqa_is_noisy_in_training_and_deterministic_in_eval():
    m = make("pgqa", noise_std=0.1)
    gqa = make("gqa")
    gqa.load_state_dict(m.state_dict())
    x = torch.randn(2, 6, DIM)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
    torch.testing.assert_close(m(x), gqa.eval()(x), rtol=0, atol=1e-6)


def test_attention_mask_and_causal_match_the_explicit_path():
    m = make("gqa").eval()
    x = torch.randn(2, 5, DIM)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, ..., 3:] = False                           # padded keys of sample 0
    for kw in ({"attn_mask": mask}, {"is_causal": True}):
        fused = m(x, **kw)
        explicit, maps = m(x, return_attention=True, **kw)
        torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    assert (maps[0].triu(1) == 0).all()


def test_converted_groups_of_one_reproduce_the_original():
    mha = make("mha").eval()
    x = torch.randn(2, 6, DIM)
    same = convert_attention(mha, n_kv_heads=H, variant="gqa")
    torch.testing.assert_close(same(x), mha(x), rtol=0, atol=1e-6)
    mqa = convert_attention(mha, n_kv_heads=1, variant="mqa")
    assert mqa.n_kv_heads == 1 and mqa(x).shape == x.shape
    # the pooled K head is the mean of the original K heads
    d = mha.d_head
    k_rows = mha.qkv.weight[H * d:2 * H * d].reshape(H, d, DIM)
    torch.testing.assert_close(mqa.qkv.weight[H * d:(H + 1) * d], k_rows.mean(0))
    with pytest.raises(ValueError):
        pool_kv_heads(mha.qkv.weight, H, H, 3, d)


def test_bench_cli_runs_side_by_side(capsys):
    import json

    from vqa.cli import main

    assert main(["bench", "attention", "--json", "--seq-lens", "16", "32", "--dim", "32", "--heads", "4",
                 "--repeats", "1", "--warmup", "0", "--vit", "vit_micro", "--vit-batch", "1",
                 "--vit-variants", "mha", "--vit-repeats", "1", "--no-timm", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "warning: --warmup 0" in captured.err  # first-call costs are not a speed-up
    out = json.loads(captured.out)
    rows = out["attention"]
    assert {r["variant"] for r in rows} == set(VARIANTS) and {r["seq_len"] for r in rows} == {16, 32}
    mha = next(r for r in rows if r["variant"] == "mha" and r["seq_len"] == 32)
    xsqa = next(r for r in rows if r["variant"] == "xsqa" and r["seq_len"] == 32)
    assert mha["speedup_fwd"] == 1.0 and xsqa["gflops_attn_fwd"] * 4 == pytest.approx(mha["gflops_attn_fwd"])
    assert xsqa["kv_bytes"] * 4 == mha["kv_bytes"] and xsqa["params"] < mha["params"]
    assert out["vit"][0]["images_per_s"] > 0
    assert main(["bench", "attention", "--variants", "nope", "--no-vit"]) == 2


def test_mqa_small_batch_training_path_matches_enable_gqa():
    m = make("mqa")
    x = torch.randn(1, 6, DIM)
    old = torch.get_num_threads()
    grads = []
    try:
        for threads in (1, 2):        # B=1: enable_gqa with 1 thread, expand view with 2
            torch.set_num_threads(threads)
            assert m._expand_single_kv(torch.zeros(1, H, 1, 1, requires_grad=True),
                                       torch.zeros(1, 1, 1, 1)) == (threads == 2)
            m.zero_grad()
            y = m(x)
            y.square().sum().backward()
            grads.append((y.detach(), m.qkv.weight.grad.clone()))
    finally:
        torch.set_num_threads(old)
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)
