"""Attention family, part two: mixSGA routing, MLA/TransMLA conversion, head search."""
import copy
import math

import pytest
import torch

from vqa.nn.attention import Attention
from vqa.nn.mixsga import MixSGAttention, default_kv_heads, mixsga_aux_loss, route
from vqa.nn.mla import (MLAttention, collect_latents, compress_latent, greedy_latent_cache, kv_cache_bytes,
                        mla_from_gqa, replication_matrix, seq2seq_to_mla)
from vqa.nn.vit import ViT, ViTConfig

DIM, H = 32, 8


def head_attention(q, k, v, causal=False, mask=None):
    """One head, plain math: q (N, d), k, v (M, d); mask (M,) bool keys to keep."""
    s = q @ k.T / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), -math.inf)
    if mask is not None:
        s = s.masked_fill(~mask[None, :], -math.inf)
    return torch.softmax(s, -1) @ v


# -- mixSGA ---------------------------------------------------------------------------------
def test_mixsga_is_in_the_registry_and_builds_its_class():
    m = Attention(DIM, H, variant="mixsga")
    assert isinstance(m, MixSGAttention) and isinstance(m, Attention)
    assert (m.n_q_heads, m.n_kv_heads, m.kv_heads) == (8, 8, (8, 4, 2))
    assert default_kv_heads(4) == (4, 2, 1) and default_kv_heads(3) == (3, 1) and default_kv_heads(1) == (1,)
    assert type(copy.deepcopy(m)) is MixSGAttention
    assert type(Attention(DIM, H, variant="gqa")) is Attention
    with pytest.raises(ValueError):
        MixSGAttention(DIM, H, kv_heads=(8, 3))
    with pytest.raises(ValueError):
        MixSGAttention(DIM, H, capacity=(0.5, 0.2, 0.1))


def test_route_fills_capacities_in_order_of_importance():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    e = route(scores, (1 / 3, 1 / 3, 1 / 3))
    assert e[0].tolist() == [2, 0, 1, 1, 0, 2]
    assert e[1].tolist() == [0, 0, 1, 1, 2, 2]                   # ties: earlier tokens first
    e = route(scores, (0.5, 0.0, 0.5))
    assert e[0].tolist() == [2, 0, 0, 2, 0, 2]


def manual_mixsga(m: MixSGAttention, x, expert):
    """Reference: key token t of sample b, query head h reads the mean of K/V heads of
    h's group under the expert of t."""
    B, N, _ = x.shape
    d, hq, hkv = m.d_head, m.n_q_heads, m.n_kv_heads
    W, bias = m.qkv.weight, m.qkv.bias
    outs = []
    for b in range(B):
        k_all = (x[b] @ W[hq * d:(hq + hkv) * d].T + bias[hq * d:(hq + hkv) * d]).view(N, hkv, d)
        v_all = (x[b] @ W[(hq + hkv) * d:].T + bias[(hq + hkv) * d:]).view(N, hkv, d)
        heads = []
        for h in range(hq):
            kv_head = h // (hq // hkv)
            ks, vs = [], []
            for t in range(N):
                g = hkv // m.kv_heads[int(expert[b, t])]
                group = slice(kv_head // g * g, kv_head // g * g + g)
                ks.append(k_all[t, group].mean(0))
                vs.append(v_all[t, group].mean(0))
            q = x[b] @ W[h * d:(h + 1) * d].T + bias[h * d:(h + 1) * d]
            heads.append(head_attention(q, torch.stack(ks), torch.stack(vs)))
        outs.append(torch.cat(heads, -1) @ m.proj.weight.T + m.proj.bias)
    return torch.stack(outs)


def test_mixsga_eval_matches_a_manual_computation_and_is_deterministic():
    torch.manual_seed(0)
    m = MixSGAttention(DIM, H, n_kv_heads=4).eval()                 # experts 4, 2, 1 K/V heads
    torch.nn.init.normal_(m.router.weight)
    x = torch.randn(3, 9, DIM)
    y = m(x)
    expert = m.routing
    assert sorted(torch.bincount(expert[0], minlength=3).tolist()) == [3, 3, 3]
    torch.testing.assert_close(y, manual_mixsga(m, x, expert), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m(x), y, rtol=0, atol=0)
    out, maps = m(x, return_attention=True)
    torch.testing.assert_close(out, y, rtol=1e-5, atol=1e-5)
    assert maps.shape == (3, H, 9, 9)
    for b in range(3):                                              # routing and output per sample
        torch.testing.assert_close(m(x[b:b + 1]), y[b:b + 1], rtol=1e-5, atol=1e-6)
    # the importance order decides: the finest expert holds the top-scored tokens
    gates = m.router(x).softmax(-1)
    imp = gates @ torch.tensor([1.0, 0.5, 0.0])
    top = imp[0].argsort(descending=True)[:3]
    assert (expert[0, top] == 0).all()


def test_mixsga_with_one_expert_is_plain_attention():
    torch.manual_seed(1)
    mix = MixSGAttention(DIM, H, kv_heads=(8,)).eval()
    mha = Attention(DIM, H, variant="mha").eval()
    mha.load_state_dict({k: v for k, v in mix.state_dict().items() if not k.startswith("router")})
    x = torch.randn(2, 7, DIM)
    torch.testing.assert_close(mix(x), mha(x), rtol=1e-5, atol=1e-6)


def test_mixsga_training_mixes_softly_and_the_aux_loss_measures_the_gap():
    torch.manual_seed(2)
    m = MixSGAttention(DIM, H, n_kv_heads=4)
    x = torch.randn(2, 6, DIM, requires_grad=True)
    y = m.train()(x)
    gates = m.router(x).softmax(-1)
    expert = m.routing
    ref_aux = -torch.log(gates.gather(-1, expert[..., None])).mean()
    torch.testing.assert_close(m.aux_loss, ref_aux)
    assert m.aux_loss.item() == pytest.approx(math.log(3), rel=1e-5)   # zero router: uniform gates
    (y.square().sum() + mixsga_aux_loss(m)).backward()
    assert m.router.weight.grad.abs().sum() > 0 and m.qkv.weight.grad is not None
    assert not torch.allclose(y, m.eval()(x))                          # soft != hard while gates are soft
    # one-hot gates that agree with the assignment: aux loss ~0 and train == eval
    m.capacity = (1.0, 0.0, 0.0)
    with torch.no_grad():
        m.router.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))
    y_train = m.train()(x)
    assert m.aux_loss.item() < 1e-9
    torch.testing.assert_close(y_train, m.eval()(x), rtol=1e-5, atol=1e-6)
    assert m.kv_cache_fraction() == 1.0
    m.capacity = (0.0, 0.0, 1.0)
    m(x)
    assert m.kv_cache_fraction() == 0.25


def test_mixsga_cross_attention_routes_the_context_tokens():
    torch.manual_seed(3)
    m = MixSGAttention(DIM, H).eval()
    x, ctx = torch.randn(2, 4, DIM), torch.randn(2, 7, DIM)
    assert m(x, ctx).shape == (2, 4, DIM) and m.routing.shape == (2, 7)


def test_mixsga_in_a_vit_trains_with_its_aux_loss():
    torch.manual_seed(4)
    model = ViT(ViTConfig(image_size=32, patch_size=8, dim=32, depth=2, n_heads=4, attn_variant="mixsga",
                          num_classes=3))
    x = torch.randn(2, 3, 32, 32)
    loss = model(x).sum() + 0.1 * mixsga_aux_loss(model)
    loss.backward()
    assert model.blocks[0].attn.router.weight.grad is not None
    model.eval()
    assert model.blocks[1].attn.routing.shape == (2, 17)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


# -- MLA / TransMLA -------------------------------------------------------------------------
def test_mla_is_in_the_registry_and_starts_as_gqa():
    torch.manual_seed(12)
    m = Attention(DIM, H, variant="mla", n_kv_heads=2)
    assert isinstance(m, MLAttention) and m.latent_dim == 2 * 2 * m.d_head
    gqa = Attention(DIM, H, variant="gqa", n_kv_heads=2)
    gqa.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith(("k_up", "v_up"))})
    x = torch.randn(2, 5, DIM)
    torch.testing.assert_close(m(x), gqa(x), rtol=1e-5, atol=1e-6)
    wide = Attention(DIM, H, variant="mla", latent_dim=10)
    assert wide.qkv.weight.shape == (H * wide.d_head + 10, DIM) and wide(x).shape == x.shape
    assert type(copy.deepcopy(wide)) is MLAttention


def test_replication_matrix_reads_the_group_head():
    R = replication_matrix(4, 2, 3)
    kv = torch.arange(6.0)                       # two K/V heads of 3
    assert (R @ kv).tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]


@pytest.mark.parametrize("variant,kv", [("gqa", 2), ("mqa", 1), ("mha", 8), ("sqa", None)])
def test_transmla_conversion_reproduces_a_random_gqa_layer(variant, kv):
    torch.manual_seed(5)
    gqa = Attention(DIM, H, variant=variant, n_kv_heads=kv).eval()
    mla = mla_from_gqa(gqa).eval()
    assert mla.latent_dim == 2 * gqa.n_kv_heads * gqa.d_head
    x, ctx = torch.randn(2, 9, DIM), torch.randn(2, 5, DIM)
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False
    assert (mla(x) - gqa(x)).abs().max() < 1e-5
    assert (mla(x, is_causal=True) - gqa(x, is_causal=True)).abs().max() < 1e-5
    assert (mla(x, ctx, attn_mask=mask) - gqa(x, ctx, attn_mask=mask)).abs().max() < 1e-5
    # absorbed inference on the latent cache
    assert (mla.attend_latent(x, mla.latent(ctx), attn_mask=mask) - gqa(x, ctx, attn_mask=mask)).abs().max() < 1e-5
    assert (mla.attend_latent(x, mla.latent(x), is_causal=True) - gqa(x, is_causal=True)).abs().max() < 1e-5


def test_mla_matches_explicit_math_after_training_the_up_projection():
    torch.manual_seed(6)
    gqa = Attention(DIM, H, variant="gqa", n_kv_heads=2)
    mla = mla_from_gqa(gqa)
    x = torch.randn(2, 6, DIM)
    loss = (mla(x) - torch.randn(2, 6, DIM)).square().mean()
    loss.backward()
    assert mla.k_up.weight.grad.abs().sum() > 0 and mla.v_up.weight.grad.abs().sum() > 0
    with torch.no_grad():                        # one SGD step: now every query head has its own K/V mix
        for p in mla.parameters():
            p -= 0.1 * p.grad
    mla.eval()
    assert (mla(x) - gqa.eval()(x)).abs().max() > 1e-4
    d = mla.d_head
    Wq, bq = mla.qkv.weight[:H * d], mla.qkv.bias[:H * d]
    c = x @ mla.qkv.weight[H * d:].T + mla.qkv.bias[H * d:]
    heads = []
    for h in range(H):
        rows = slice(h * d, (h + 1) * d)
        q = x[0] @ Wq[rows].T + bq[rows]
        k = c[0] @ mla.k_up.weight[rows].T + mla.k_up.bias[rows]
        v = c[0] @ mla.v_up.weight[rows].T + mla.v_up.bias[rows]
        heads.append(head_attention(q, k, v, causal=True))
    ref = torch.cat(heads, -1) @ mla.proj.weight.T + mla.proj.bias
    torch.testing.assert_close(mla(x, is_causal=True)[0], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mla.attend_latent(x, mla.latent(x), is_causal=True)[0], ref, rtol=1e-4, atol=1e-5)


def test_pca_compression_is_exact_at_full_rank_and_degrades_below():
    torch.manual_seed(7)
    mla = mla_from_gqa(Attention(DIM, H, variant="gqa", n_kv_heads=2)).eval()
    x = torch.randn(4, 12, DIM)
    lat = mla.latent(x).reshape(-1, mla.latent_dim)
    full = compress_latent(mla, lat, mla.latent_dim)
    assert (full(x) - mla(x)).abs().max() < 1e-5
    errs = [(compress_latent(mla, lat, r)(x) - mla(x)).abs().max().item() for r in (12, 4)]
    assert 0 < errs[0] < errs[1]
    # latents with only 3 directions of variance: rank 3 is exact
    with torch.no_grad():
        mla.qkv.weight[H * mla.d_head:] = torch.randn(mla.latent_dim, 3) @ torch.randn(3, DIM) * 0.3
    lat = mla.latent(x).reshape(-1, mla.latent_dim)
    small = compress_latent(mla, lat, 3)
    assert small.latent_dim == 3 and small.qkv.weight.shape == (H * mla.d_head + 3, DIM)
    assert (small(x) - mla(x)).abs().max() < 1e-4
    assert (small.attend_latent(x, small.latent(x)) - mla(x)).abs().max() < 1e-4


@pytest.fixture(scope="module")
def parser_model():
    from vqa.language.parser import load_question_parser
    return load_question_parser().model.eval()


def test_transmla_on_the_shipped_question_parser(parser_model):
    model = parser_model
    mla = seq2seq_to_mla(model).eval()
    torch.manual_seed(8)
    src = torch.randint(3, model.config.src_vocab, (3, 11))
    src[1, 8:] = model.config.pad_id
    tgt = torch.randint(3, model.config.tgt_vocab, (3, 9))
    tgt[:, 0] = 1
    with torch.no_grad():
        diff = (mla(src, tgt) - model(src, tgt)).abs().max().item()
    assert diff < 1e-5
    before, after = kv_cache_bytes(model, prefix="decoder"), kv_cache_bytes(mla, prefix="decoder")
    c = model.config
    gqa_bytes = 2 * c.n_kv_heads * (c.dim // c.n_heads) * 4
    assert set(before.values()) == {gqa_bytes} and before == after and len(before) == 2 * c.dec_layers
    assert not any(isinstance(mod, MLAttention) for mod in model.modules())   # original untouched
    # the latent-cache decoder (absorbed up-projections, one latent per token) gives the
    # same logits as the full decoder run on its own output
    out = greedy_latent_cache(mla, src, steps=6)
    with torch.no_grad():
        full = model(src, out["tokens"][:, :-1])
    torch.testing.assert_close(out["logits"], full, rtol=1e-4, atol=1e-4)
    # and the up-projections train
    mla.train()
    loss = mla(src, tgt).logsumexp(-1).mean()
    loss.backward()
    assert mla.decoder[0].self_attn.k_up.weight.grad.abs().sum() > 0
    assert mla.decoder[1].cross_attn.v_up.weight.grad.abs().sum() > 0


def test_collect_latents_keeps_the_masked_tokens():
    torch.manual_seed(9)
    mla = mla_from_gqa(Attention(DIM, H, variant="gqa", n_kv_heads=2)).eval()
    x = torch.randn(2, 5, DIM)
    keep = torch.tensor([[True] * 5, [True, True, False, False, False]])
    lat = collect_latents(mla, lambda: mla(x), masks={"": keep})
    assert lat[""].shape == (7, mla.latent_dim)
    torch.testing.assert_close(lat[""][5:], mla.latent(x)[1, :2])


# -- head configuration search --------------------------------------------------------------
def test_head_attention_with_decoupled_head_size_matches_explicit_math():
    from vqa.nn.head_search import HeadAttention

    torch.manual_seed(10)
    m = HeadAttention(16, n_q_heads=4, n_kv_heads=2, d_head=12)        # H_q * d = 48 != D = 16
    x = torch.randn(2, 5, 16)
    W, b, d = m.qkv.weight, m.qkv.bias, 12
    heads = []
    for h in range(4):
        g = 4 + h // 2                                                   # K head index in the fused rows
        q = x[1] @ W[h * d:(h + 1) * d].T + b[h * d:(h + 1) * d]
        k = x[1] @ W[g * d:(g + 1) * d].T + b[g * d:(g + 1) * d]
        v = x[1] @ W[(g + 2) * d:(g + 3) * d].T + b[(g + 2) * d:(g + 3) * d]
        heads.append(head_attention(q, k, v))
    ref = torch.cat(heads, -1) @ m.proj.weight.T + m.proj.bias
    torch.testing.assert_close(m(x)[1], ref, rtol=1e-5, atol=1e-5)
    # with H_q * d = D it is the registry's GQA layer
    gqa = Attention(32, 4, variant="gqa", n_kv_heads=2)
    same = HeadAttention(32, 4, 2, 8)
    same.load_state_dict(gqa.state_dict())
    y = torch.randn(2, 6, 32)
    torch.testing.assert_close(same(y), gqa(y), rtol=1e-5, atol=1e-6)


def test_retrieval_batches_answer_the_queried_keys():
    from vqa.nn.head_search import make_batch

    g = torch.Generator().manual_seed(0)
    keys, vals, ans = make_batch(4, 20, 5, 32, 8, g)
    assert keys.shape == vals.shape == (4, 20) and ans.shape == (4, 5)
    for b in range(4):
        ctx = dict(zip(keys[b, :15].tolist(), vals[b, :15].tolist()))
        assert len(ctx) == 15                                             # distinct keys
        assert [ctx[k] for k in keys[b, 15:].tolist()] == ans[b].tolist()
        assert (vals[b, 15:] == 8).all()
    with pytest.raises(ValueError):
        make_batch(1, 40, 4, 32, 8, g)                                    # 36 context keys > 32


def test_cost_formulas_agree_with_the_bench():
    from vqa.nn.bench import attention_flops
    from vqa.nn.head_search import flops_per_token, kv_bytes_per_token

    T, D, q, kv, d = 48, 32, 4, 2, 12
    f = flops_per_token(D, q, kv, d, T, layers=2)
    assert (f["proj"] + f["attn"]) * T == 2 * attention_flops(T, D, q, kv, d)["total"]
    assert f["mlp"] == 2 * 16 * D * D and kv_bytes_per_token(kv, d, 2) == 2 * 2 * 12 * 2 * 4


def test_choose_takes_the_cheapest_config_that_reaches_the_target():
    from vqa.nn.head_search import choose

    rows = [{"accuracy": 0.95, "flops_per_token": 300, "us_per_token": 1.0, "kv_bytes_per_token": 64},
            {"accuracy": 0.91, "flops_per_token": 200, "us_per_token": 3.0, "kv_bytes_per_token": 128},
            {"accuracy": 0.50, "flops_per_token": 100, "us_per_token": 0.5, "kv_bytes_per_token": 32}]
    assert choose(rows, 0.9) is rows[1]
    assert choose(rows, 0.9, cost="time") is rows[0] and choose(rows, 0.9, cost="kv") is rows[0]
    assert choose(rows, 0.9, budget=150) is None and choose(rows, 0.4, budget=150) is rows[2]
    assert choose(rows, 0.99) is None


def test_bench_cli_search(capsys):
    import json

    from vqa.cli import main

    assert main(["bench", "attention", "--search", "--json", "--steps", "3", "--widths", "16", "--q-heads", "1", "2",
                 "--kv-heads", "1", "2", "--head-dims", "8", "--tokens", "12", "--queries", "4", "--target", "0",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["n_q_heads"], r["n_kv_heads"]) for r in out["rows"]] == [(1, 1), (2, 1), (2, 2)]
    assert out["chosen"]["n_q_heads"] == 1 and out["chosen"]["flops_per_token"] == min(
        r["flops_per_token"] for r in out["rows"])
    assert all(0 <= r["accuracy"] <= 1 and r["us_per_token"] > 0 for r in out["rows"])
    assert main(["bench", "attention", "--search", "--tokens", "4", "--queries", "4"]) == 2


def test_mixsga_hard_mode_trains_on_the_eval_forward_with_router_gradients():
    torch.manual_seed(11)
    m = MixSGAttention(DIM, H, n_kv_heads=4, mode="hard")
    torch.nn.init.normal_(m.router.weight)
    x = torch.randn(2, 6, DIM)
    y = m.train()(x)
    torch.testing.assert_close(y, m.eval()(x), rtol=1e-5, atol=1e-6)
    m.train()
    (m(x).square().sum()).backward()
    assert m.router.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        MixSGAttention(DIM, H, mode="sometimes")


def test_finetuning_the_up_projections_after_compression_moves_only_them(parser_model):
    from vqa.nn.mla import compress_model, finetune_up_projections

    model = parser_model
    mla = seq2seq_to_mla(model).eval()
    torch.manual_seed(13)
    src = torch.randint(3, model.config.src_vocab, (16, 10))
    tgt = torch.randint(3, model.config.tgt_vocab, (16, 8))
    tgt[:, 0] = 1
    lat = collect_latents(mla, lambda: mla(src, tgt))
    small = compress_model(mla, lat, 8)
    assert {m.latent_dim for m in small.modules() if isinstance(m, MLAttention)} == {8}
    before = {k: v.clone() for k, v in small.state_dict().items()}
    losses = finetune_up_projections(small, model, src, tgt, steps=15, lr=3e-3, batch=16)
    assert losses[-1] < losses[0]
    changed = {k for k, v in small.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".k_up." in k or ".v_up." in k for k in changed)
    assert all(p.requires_grad for p in small.parameters())
