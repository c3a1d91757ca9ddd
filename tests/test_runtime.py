"""The numpy runtime (`vqa.runtime`) against the torch models it mirrors: layer by layer, on
the shipped checkpoints, and on other configurations exported for the test."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqa.errors import DataError
from vqa.language.parser import QuestionParser
from vqa.language.seq2seq import Seq2Seq, Seq2SeqConfig
from vqa.language.tokenizer import ProgramVocab, QuestionTokenizer
from vqa.nn.attention import Attention
from vqa.runtime import ops
from vqa.runtime.checkpoints import check_export, export_npz, load_npz
from vqa.runtime.scene_parser import NumpySceneParser
from vqa.vision.scene_parser import SceneParser, SceneParserConfig, checkpoint_dict, load_scene_parser

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "data" / "checkpoints"
SAMPLE = ROOT / "data" / "samples" / "sample.png"
QUESTIONS = ["How many cyan things are there?",
             "What color is the large metal cube left of the red sphere?",
             "Are there more rubber cylinders than small balls?",
             "Is the number of big spheres the same as the number of yellow things behind the gray cube?",
             "What is the shape of the thing that is the same size as the purple object?",
             "Does the small cylinder have the same material as the large green thing?",
             "There is a tiny brown thing; what is it made of?",
             "Are there any other things that have the same shape as the big red rubber object?"]


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def rand(*shape, seed=0, scale=1.0):
    return (np.random.RandomState(seed).randn(*shape) * scale).astype(np.float32)


# ---- layers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [7, 300, 5000])
def test_gelu_is_the_exact_erf_gelu(n):
    x = rand(n, scale=5.0)
    ref = F.gelu(torch.from_numpy(x).double()).numpy()
    assert np.abs(ops.gelu(x) - ref).max() < 1e-6
    assert np.abs(ops.erf(x) - torch.erf(torch.from_numpy(x).double()).numpy()).max() < 5e-7  # A&S 1.5e-7 plus float32 rounding


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 1), (3, 2, 1), (4, 4, 0), (1, 1, 0), (3, 1, 0), (5, 2, 2)])
def test_conv2d_channels_last_matches_torch(k, stride, pad):
    x, w, b = rand(2, 5, 16, 12, seed=1), rand(7, 5, k, k, seed=2), rand(7, seed=3)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, pad).numpy()
    got = ops.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, b, stride, pad).transpose(0, 3, 1, 2)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (8, 1)])
def test_grouped_attention_with_mask_matches_torch(hq, hkv):
    q, k, v = rand(2, hq, 5, 8, seed=1), rand(2, hkv, 6, 8, seed=2), rand(2, hkv, 6, 8, seed=3)
    mask = np.ones((2, 1, 1, 6), dtype=bool)
    mask[1, ..., 4:] = False
    ref = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
                                         torch.from_numpy(mask), enable_gqa=hq != hkv).numpy()
    assert np.abs(ops.attention(q, k, v, mask) - ref).max() < 1e-5


@pytest.mark.parametrize("n_in,n_out", [(8, 10), (12, 12), (12, 7), (3, 16)])
def test_bicubic_matrix_is_torch_bicubic(n_in, n_out):
    x = rand(1, 1, n_in, 4, seed=n_in)
    ref = F.interpolate(torch.from_numpy(x), size=(n_out, 4), mode="bicubic", align_corners=False).numpy()
    got = np.einsum("ih,bchw->bciw", ops.bicubic_matrix(n_in, n_out), x)
    assert np.abs(got - ref).max() < 1e-5


def test_layer_norm_and_batch_norm_folding():
    x = rand(3, 10, seed=4)
    w, b = rand(10, seed=5), rand(10, seed=6)
    ref = F.layer_norm(torch.from_numpy(x), (10,), torch.from_numpy(w), torch.from_numpy(b), 1e-6).numpy()
    assert np.abs(ops.layer_norm(x, w, b, 1e-6) - ref).max() < 1e-5
    conv, bn = torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4).eval()
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    img = rand(1, 3, 6, 6, seed=7)
    with torch.no_grad():
        ref = bn(conv(torch.from_numpy(img))).numpy()
    fw, fb = ops.fold_batch_norm(conv.weight.detach().numpy(), *(t.detach().numpy() for t in
                                 (bn.weight, bn.bias, bn.running_mean, bn.running_var)))
    got = ops.conv2d(img.transpose(0, 2, 3, 1), fw, fb).transpose(0, 3, 1, 2)
    assert np.abs(got - ref).max() < 1e-5


# ---- the scene parser ------------------------------------------------------------------------------
def _maps_close(torch_model, np_model, x, tol=1e-4):
    with torch.no_grad():
        ref = torch_model.predict_maps(torch.from_numpy(x))
    got = np_model.predict_maps(x)
    assert set(got) == set(ref)
    for name in ref:
        assert got[name].shape == tuple(ref[name].shape), name
        assert np.abs(got[name] - ref[name].numpy()).max() < tol, name


@pytest.mark.parametrize("hw", [(128, 192), (160, 192)])  # the training size, and a resampled position grid
def test_shipped_scene_parser_maps_match_torch(hw):
    _maps_close(load_scene_parser(), NumpySceneParser.load(CKPT / "scene_parser.npz"), rand(1, 3, *hw, seed=8))


def test_shipped_scene_parser_graph_matches_torch():
    a = load_scene_parser().parse_image(SAMPLE)
    b = NumpySceneParser.load(CKPT / "scene_parser.npz").parse_image(SAMPLE)
    assert len(a.objects) == len(b.objects) > 0
    for x, y in zip(a.objects, b.objects):
        assert x.attributes.keys() == y.attributes.keys()
        for cat in x.attributes:
            assert x.value(cat) == y.value(cat)
            assert max(abs(x.attributes[cat][v] - y.attributes[cat][v]) for v in x.attributes[cat]) < 1e-4
        assert abs(x.score - y.score) < 1e-4
        assert np.allclose(x.bbox, y.bbox, atol=1e-2) and np.allclose(x.position, y.position, atol=1e-2)
    assert a.relations == b.relations


@pytest.mark.parametrize("variant,overrides", [
    ("mha", {"stem_extra": 0, "fuse_kernel": 3, "flip_tta": False}),
    ("mqa", {"stem_extra": 2, "depth": 2}),
    ("sqa", {"n_heads": 8, "dim": 64, "patch_size": 2}),
])
def test_other_scene_parser_configs_export_and_match(tmp_path, variant, overrides):
    torch.manual_seed(0)
    model = SceneParser(SceneParserConfig(attn_variant=variant, image_size=(64, 96), **overrides)).eval()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    _maps_close(model, NumpySceneParser.load(tmp_path / "sp.npz"), rand(2, 3, 64, 96, seed=9))


def test_key_driven_variants_are_refused(tmp_path):
    model = SceneParser(SceneParserConfig(attn_variant="kdgqa", image_size=(64, 96)))
    torch.save(checkpoint_dict(model), tmp_path / "kd.pt")
    export_npz(tmp_path / "kd.pt")
    with pytest.raises(DataError, match="kdgqa"):
        NumpySceneParser.load(tmp_path / "kd.npz")


# ---- the question parser ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parsers():
    return (QuestionParser.from_checkpoint(CKPT / "question_parser.pt"),
            QuestionParser.from_checkpoint(CKPT / "question_parser.npz"))


def test_shipped_question_parser_numpy_equals_torch(parsers):
    tp, npp = parsers
    assert (tp.backend, npp.backend) == ("torch", "numpy")
    a, b = tp.parse_batch(QUESTIONS), npp.parse_batch(QUESTIONS)
    for x, y in zip(a, b):
        assert x.tokens == y.tokens
        assert abs(x.confidence - y.confidence) < 1e-4
        assert np.allclose(x.token_probs, y.token_probs, atol=1e-4)
    one = [npp.parse(q) for q in QUESTIONS]  # one at a time = batched (padding must not matter)
    assert [r.tokens for r in one] == [r.tokens for r in b]


def test_beam_search_numpy_equals_torch(parsers):
    tp, npp = parsers
    for q in QUESTIONS[:3]:
        a = tp._search(__import__("vqa.language.grammar", fromlist=["x"]).beam_search,
                       tp.stepper(tp.encode_batch([q])), tp.grammar, 3)
        b = npp._search(__import__("vqa.language.grammar", fromlist=["x"]).beam_search,
                        npp.stepper(npp.encode_batch([q])), npp.grammar, 3)
        assert [d.tokens for d in a] == [d.tokens for d in b]
        assert np.allclose([d.logprob for d in a], [d.logprob for d in b], atol=1e-4)


@pytest.mark.parametrize("cfg", [dict(n_heads=4, n_kv_heads=4, variant="mha", enc_layers=1, dec_layers=3),
                                 dict(n_heads=4, n_kv_heads=1, variant="mqa", dim=64, mlp_ratio=4)])
def test_random_seq2seq_configs_decode_the_same(tmp_path, cfg):
    torch.manual_seed(1)
    vocab = ProgramVocab.clevr()
    tok = QuestionTokenizer.build(QUESTIONS)
    model = Seq2Seq(Seq2SeqConfig(src_vocab=len(tok), tgt_vocab=len(vocab), **cfg))
    for p in model.parameters():  # larger weights: a sharper, less tie-prone distribution
        p.data.mul_(4)
    parser = QuestionParser(model, tok, vocab, 12)
    parser.save(tmp_path / "qp.pt")
    export_npz(tmp_path / "qp.pt")
    npp = QuestionParser.from_checkpoint(tmp_path / "qp.npz")
    a, b = parser.parse_batch(QUESTIONS), npp.parse_batch(QUESTIONS)
    assert [x.tokens for x in a] == [y.tokens for y in b]
    assert np.allclose([x.confidence for x in a], [y.confidence for y in b], atol=1e-4)


# ---- checkpoints and the pipeline ------------------------------------------------------------------
def test_shipped_exports_are_up_to_date():
    for name in ("scene_parser", "question_parser"):
        check_export(CKPT / f"{name}.npz", CKPT / f"{name}.pt")
        arrays, meta = load_npz(CKPT / f"{name}.npz")
        state = torch.load(CKPT / f"{name}.pt", weights_only=True)["state_dict"]
        assert set(arrays) == set(state)
        for k, t in state.items():
            assert np.array_equal(arrays[k], t.numpy()), k


def test_stale_or_bad_exports_are_refused(tmp_path):
    from vqa.pipeline import Pipeline

    ckpt = torch.load(CKPT / "question_parser.pt", weights_only=True)
    torch.save(ckpt, tmp_path / "question_parser.pt")
    export_npz(tmp_path / "question_parser.pt")
    pipe = Pipeline(parser_checkpoint=tmp_path / "question_parser.pt")
    assert pipe.checkpoint("parser") == tmp_path / "question_parser.npz"
    ckpt["meta"] = {"retrained": True}
    torch.save(ckpt, tmp_path / "question_parser.pt")  # retrained after the export
    with pytest.raises(DataError, match="stale export"):
        Pipeline(parser_checkpoint=tmp_path / "question_parser.pt").question_parser
    assert Pipeline(parser_checkpoint=tmp_path / "question_parser.pt", backend="torch").question_parser.backend == "torch"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")
    (tmp_path / "only.pt").write_bytes((tmp_path / "question_parser.pt").read_bytes())
    assert Pipeline(parser_checkpoint=tmp_path / "only.pt").checkpoint("parser").suffix == ".pt"  # auto: no export
    from vqa.errors import VQAError

    with pytest.raises(VQAError, match="export-numpy"):
        Pipeline(parser_checkpoint=tmp_path / "only.pt", backend="numpy").checkpoint("parser")


def test_pipeline_backends_agree_and_numpy_never_imports_torch():
    code = ("import sys, json; from vqa.pipeline import Pipeline; p = Pipeline.from_pretrained(); "
            f"rs = p.answer_many({str(SAMPLE)!r}, {QUESTIONS[:4]!r}); "
            "print(json.dumps([[str(r.answer), r.confidence] for r in rs])); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    from vqa.pipeline import Pipeline

    ref = Pipeline.from_pretrained(backend="torch").answer_many(SAMPLE, QUESTIONS[:4])
    assert [a for a, _ in got] == [str(r.answer) for r in ref]
    assert np.allclose([c for _, c in got], [r.confidence for r in ref], atol=1e-3)


def test_cli_export_numpy(tmp_path):
    from vqa.cli import main

    ckpt = torch.load(CKPT / "scene_parser.pt", weights_only=True)
    torch.save(ckpt, tmp_path / "scene_parser.pt")
    assert main(["export-numpy", "--check", str(tmp_path / "scene_parser.pt")]) == 1  # missing
    assert main(["export-numpy", str(tmp_path / "scene_parser.pt")]) == 0
    assert main(["export-numpy", "--check", str(tmp_path / "scene_parser.pt")]) == 0


@pytest.mark.parametrize("variant", ["mixsga", "mla"])
def test_routed_and_latent_variants_stay_on_torch(tmp_path, variant):
    from vqa.nn.convert import convert_attention

    model = SceneParser(SceneParserConfig(attn_variant=variant, image_size=(64, 96)))
    torch.save(checkpoint_dict(model), tmp_path / "m.pt")
    export_npz(tmp_path / "m.pt")
    with pytest.raises(DataError, match=variant):
        NumpySceneParser.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=variant):
        convert_attention(Attention(64, 4, variant=variant), 2)
