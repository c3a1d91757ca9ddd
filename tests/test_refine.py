"""The scene parser's second stage: crops, the crop CNN (torch and numpy), mixing, training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vqa.runtime.checkpoints import export_npz
from vqa.runtime.scene_parser import NumpySceneParser
from vqa.vision.core import SceneParserConfig, crop_boxes, mix_logits, sample_crops
from vqa.vision.scene_parser import SceneParser, checkpoint_dict, load_scene_parser

TINY = dict(image_size=(64, 96), stem_channels=(8, 16), dim=32, depth=1, n_heads=4, up_channels=8, head_channels=16)
REFINE = dict(refine_size=16, refine_channels=(8, 12, 16))


def _images(n=2, h=20, w=30):
    """Images whose channel c at pixel (y, x) is a linear function: bilinear sampling is exact on them."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([np.stack([xx + 100 * k, yy + 10 * k, 2 * xx - yy + k]) for k in range(n)])


def test_crops_sample_the_right_pixels():
    images = _images()
    # an aligned crop is exactly the sub-image: pixel k spans [k, k+1)
    crop = sample_crops(images, np.array([1]), np.array([[10.0, 8.0]]), np.array([8.0]), 8)
    assert crop.shape == (1, 3, 8, 8) and crop.dtype == np.float32
    assert np.array_equal(crop[0], images[1, :, 4:12, 6:14])
    # sub-pixel centres and other scales: a linear image gives the sample point's value
    centres, sides = np.array([[12.3, 9.7], [5.5, 6.25]]), np.array([6.4, 3.0])
    crop = sample_crops(images, np.array([0, 1]), centres, sides, 5)
    t = (np.arange(5) + 0.5) / 5 - 0.5
    for n, k in enumerate([0, 1]):
        x = centres[n, 0] + t * sides[n] - 0.5
        y = centres[n, 1] + t * sides[n] - 0.5
        assert np.allclose(crop[n, 0], np.broadcast_to(x[None] + 100 * k, (5, 5)), atol=1e-4)
        assert np.allclose(crop[n, 1], np.broadcast_to(y[:, None] + 10 * k, (5, 5)), atol=1e-4)
    # outside the image the edge pixels repeat; no crops, no error
    edge = sample_crops(images, np.array([0]), np.array([[-50.0, -50.0]]), np.array([4.0]), 2)
    assert np.array_equal(edge[0, :, 0, 0], images[0, :, 0, 0])
    assert sample_crops(images, np.zeros(0, int), np.zeros((0, 2)), np.zeros(0), 4).shape == (0, 3, 4, 4)
    # uint8 images (training) give the same crops as their float copies
    u8 = (images % 256).astype(np.uint8)
    assert np.allclose(sample_crops(u8, np.array([0]), centres[:1], sides[:1], 7),
                       sample_crops(u8.astype(np.float32), np.array([0]), centres[:1], sides[:1], 7))


def test_crop_boxes_and_mixing():
    cfg = SceneParserConfig(refine_context=1.5, refine_weight={"shape": 1.0, "material": 0.5})
    centres, sides = crop_boxes(np.array([[10, 20, 8, 12], [0, 0, 1, 1]]), cfg)
    assert centres.tolist() == [[10, 20], [0, 0]] and sides.tolist() == [18.0, 6.0]  # at least 4 pixels x 1.5
    n = 3
    dense = {cat: np.random.default_rng(0).normal(size=(len(v), n)) for cat, v in cfg.attributes.items()}
    crop = np.random.default_rng(1).normal(size=(n, sum(len(v) for v in cfg.attributes.values())))
    mixed = mix_logits(dense, crop, cfg)
    offsets = np.cumsum([0] + [len(v) for v in cfg.attributes.values()])
    cats = list(cfg.attributes)
    assert mixed["color"] is dense["color"] and mixed["size"] is dense["size"]
    j = offsets[cats.index("shape")]
    assert np.allclose(mixed["shape"], crop[:, j:j + 3].T)
    j = offsets[cats.index("material")]
    assert np.allclose(mixed["material"], 0.5 * dense["material"] + 0.5 * crop[:, j:j + 2].T)


def _tiny_refined(tmp_path, weight):
    torch.manual_seed(0)
    model = SceneParser(SceneParserConfig(**TINY, **REFINE, refine_weight=weight)).eval()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
    with torch.no_grad():  # every detection: objectness peaks on a grid
        model.out.bias[0] = 0.0
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    return model


def test_crop_net_numpy_matches_torch_and_steers_the_attributes(tmp_path):
    from PIL import Image
    model = _tiny_refined(tmp_path, {"shape": 1.0})
    np_model = NumpySceneParser.load(tmp_path / "sp.npz")
    x = np.random.default_rng(3).normal(size=(4, 3, 16, 16)).astype(np.float32)
    assert np.abs(model.refine_logits(torch.from_numpy(x)).numpy() - np_model.crop_logits(x)).max() < 1e-4
    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    a, b = model.parse_image(image), np_model.parse_image(image)
    assert len(a.objects) == len(b.objects) > 0
    for x_, y_ in zip(a.objects, b.objects):
        for cat in x_.attributes:
            assert max(abs(x_.attributes[cat][v] - y_.attributes[cat][v]) for v in x_.attributes[cat]) < 1e-4
    # the crop net decides the shape when its weight is 1: a bias towards "sphere" wins everywhere
    shape_at = list(model.cfg.attributes).index("shape")
    j = sum(len(v) for v in list(model.cfg.attributes.values())[:shape_at])
    with torch.no_grad():
        model.refine.head.weight.zero_()
        model.refine.head.bias.zero_()
        model.refine.head.bias[j + model.cfg.attributes["shape"].index("sphere")] = 20.0
    steered = model.parse_image(image)
    assert {o.value("shape") for o in steered.objects} == {"sphere"}
    assert [o.attributes["color"] for o in steered.objects] == [o.attributes["color"] for o in a.objects]
    model.cfg.refine_weight = {}
    assert [o.attributes for o in model.parse_image(image).objects] != [o.attributes for o in steered.objects]


def test_refiner_trains_resumes_and_chooses_weights(tmp_path):
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.refine import RefineConfig, train_refiner
    from vqa.vision.scene_parser import DEFAULT_CHECKPOINT
    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=6, questions_per_scene=0, seed=5, image_size=(192, 128))
    generate_dataset(data, num_scenes=3, questions_per_scene=2, seed=6, split="val", image_size=(192, 128))
    base = DEFAULT_CHECKPOINT  # a parser that finds the val objects, so that weights are chosen
    cfg = RefineConfig(data=str(data), checkpoint=None, out=str(tmp_path / "rf"), epochs=1, batch_size=8,
                       size=16, channels=(8, 8, 8), warmup_steps=1, log_every=1, weights=(0.0, 0.5, 1.0))
    s1 = train_refiner(cfg, log=lambda *_: None)
    n_steps = s1["steps"]
    assert n_steps >= 2 and set(s1["val_crop_accuracy"]) == {"color", "size", "material", "shape"}
    cfg.epochs, cfg.resume = 2, True
    s2 = train_refiner(cfg, log=lambda *_: None)
    assert s2["steps"] == 2 * n_steps
    lines = [json.loads(line) for line in (tmp_path / "rf" / "log.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if "loss" in d] == list(range(1, 2 * n_steps + 1))
    model = load_scene_parser(tmp_path / "rf" / "scene_parser.pt")
    saved = torch.load(tmp_path / "rf" / "scene_parser.pt", weights_only=True)
    assert saved["train"] == torch.load(base, weights_only=True)["train"] and saved["refine_train"]["epochs"] == 2
    assert model.refine is not None and model.cfg.refine_size == 16
    assert set(model.cfg.refine_weight) == {"color", "size", "material", "shape"}
    assert set(model.cfg.refine_weight.values()) <= {0.0, 0.5, 1.0}
    for cat, table in s2["weights"].items():  # the chosen weight has the best accuracy of its grid
        best = max(r["accuracy"] for r in table["grid"])
        assert [r["accuracy"] for r in table["grid"] if r["weight"] == table["chosen"]] == [best]
    # the dense part is the base model's, unchanged (a second stage it had is replaced)
    base_sd = {k: v for k, v in load_scene_parser(base).state_dict().items() if not k.startswith("refine.")}
    assert base_sd and all(torch.equal(v, model.state_dict()[k]) for k, v in base_sd.items())
    graph = model.parse_image(data / "images" / "val" / "CLEVR_val_000000.png")
    assert graph.width == 192 and graph.objects


def test_detected_crops_sit_on_the_dense_heads_boxes(tmp_path):
    """`detected_boxes` gives each gold object the box the dense head finds for it (NaN where it
    finds none); crops placed there carry the gold centre's offset from that box."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.data import SceneParserData
    from vqa.vision.refine import GoldCrops, RefineConfig, detected_boxes, train_refiner
    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=3, questions_per_scene=0, seed=11, split="val", image_size=(192, 128))
    model = load_scene_parser(None)
    cfg = model.cfg
    d = SceneParserData(data, "val", image_size=cfg.image_size, attributes=cfg.attributes)
    det = detected_boxes(model, d, batch_size=2)
    gold = np.array([[o.cx, o.cy, o.w, o.h] for objs in d.objects for o in objs])
    found = np.isfinite(det[:, 0])
    assert det.shape == gold.shape and found.mean() > 0.8
    # each found box is the dense head's (not the gold one) and near its object
    assert np.abs(det[found, :2] - gold[found, :2]).max() < 0.05 * cfg.image_size[1]
    assert np.abs(det[found, :2] - gold[found, :2]).max() > 0
    nothing = load_scene_parser(None)
    nothing.cfg.score_threshold, nothing.cfg.low_threshold = 1.01, 0.0
    assert np.isnan(detected_boxes(nothing, d)).all()
    cfg.refine_size, cfg.refine_context = 16, 1.5
    gc = GoldCrops(d, "input", [det])
    rows = np.arange(len(gc))
    _, off, geo = gc.crops(rows, cfg, np.random.default_rng(0), detected=1.0)
    off = off.numpy().copy()
    geo = geo.numpy().copy()
    sides = np.maximum(det[:, 2:].max(1), 4.0) * 1.5
    W = cfg.image_size[1]
    # crops are mirrored at random (x centre -> 1 - x, x offset negated): compare x up to that
    cx = np.where(np.isclose(geo[:, 1], det[:, 0] / W, atol=1e-5), geo[:, 1], 1 - geo[:, 1]) * W
    assert np.allclose(cx[found], det[found, 0], atol=1e-3)
    assert np.allclose(geo[found, 2], det[found, 1] / cfg.image_size[0], atol=1e-5)
    assert np.allclose(np.abs(off[found, 0]), np.abs(gold[found, 0] - det[found, 0]) / sides[found], atol=1e-4)
    assert np.allclose(off[found, 1], (gold[found, 1] - det[found, 1]) / sides[found], atol=1e-4)
    assert np.allclose(off[~found], 0)  # no detection: the gold box, unjittered here
    _, off0, _ = gc.crops(rows, cfg, np.random.default_rng(0))  # share 0: the gold boxes
    assert np.allclose(off0.numpy(), 0)
    # training with the share: the detections are computed and reported
    generate_dataset(data, num_scenes=4, questions_per_scene=0, seed=12, image_size=(192, 128))
    notes = []
    rc = RefineConfig(data=str(data), out=str(tmp_path / "rf"), epochs=1, batch_size=8, size=16, channels=(8, 8, 8),
                      warmup_steps=1, weights=(0.0, 1.0), centre=True, detected=0.5)
    train_refiner(rc, log=notes.append)
    assert any(n.startswith("dense detections: ") and "50% of their crops" in n for n in notes)
    with pytest.raises(Exception, match="detected crops"):
        train_refiner(RefineConfig(data=str(data), out=str(tmp_path / "rf2"), epochs=1, detected=1.5),
                      log=lambda *_: None)
    with pytest.raises(Exception, match="detected crops"):
        train_refiner(RefineConfig(data=str(data), out=str(tmp_path / "rf3"), epochs=1, detected=-0.5),
                      log=lambda *_: None)


def test_cli_refiner_rejects_bad_settings(tmp_path, capsys):
    from vqa.cli import main
    assert main(["train", "scene-refiner", "--data", str(tmp_path), "--channels", "8,8"]) == 2
    assert "--channels" in capsys.readouterr().err
    assert main(["train", "scene-refiner", "--data", str(tmp_path), "--context", "0"]) == 2
    assert "--context" in capsys.readouterr().err
    assert main(["train", "scene-refiner", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "scenes file" in capsys.readouterr().err


def test_numpy_runtime_passes_in_chunks_give_the_same_maps(tmp_path):
    import vqa.runtime.scene_parser as rs
    _tiny_refined(tmp_path, {"shape": 0.5})
    m = rs.NumpySceneParser.load(tmp_path / "sp.npz")
    x = np.random.default_rng(5).normal(size=(2 * rs.IMAGES_PER_PASS + 1, 3, 64, 96)).astype(np.float32)
    whole = m.predict_maps(x)
    for k in range(len(x)):
        one = m.predict_maps(x[k:k + 1])
        assert all(np.allclose(whole[name][k:k + 1], one[name], atol=1e-5) for name in one)
    crops = np.random.default_rng(6).normal(size=(2 * rs.CROPS_PER_PASS + 3, 3, 16, 16)).astype(np.float32)
    together = m.crop_logits(crops)
    assert together.shape[0] == len(crops)
    assert np.allclose(together, np.concatenate([m.crop_logits(crops[k:k + 1]) for k in range(len(crops))]), atol=1e-5)


def test_pyramid_crops_match_full_resolution_crops_on_linear_images():
    from vqa.vision.core import crop_level, pyramid, sample_pyramid_crops
    images = _images(n=2, h=64, w=96)
    levels = pyramid(images)
    assert [lv.shape[-2:] for lv in levels] == [(64, 96), (32, 48), (16, 24), (8, 12)]
    assert np.allclose(levels[1][0, :, 3, 5], images[0, :, 6:8, 10:12].mean((1, 2)))
    # each crop from the finest level with fewer than 2 level pixels per crop pixel
    assert crop_level(np.array([3.0, 8.0, 15.9, 16.0, 40.0, 500.0]), 8, 4).tolist() == [0, 0, 0, 1, 2, 3]
    centres, sides = np.array([[40.3, 30.2], [50.0, 33.0], [47.9, 31.1]]), np.array([7.0, 20.0, 40.0])
    index = np.array([0, 1, 1])
    got = sample_pyramid_crops(levels, index, centres, sides, 8)
    want = sample_crops(images, index, centres, sides, 8)  # a linear image: its means are its values
    assert got.shape == (3, 3, 8, 8) and np.allclose(got, want, atol=1e-3)
    u8 = pyramid((images % 200).astype(np.uint8))
    assert all(lv.dtype == np.uint8 for lv in u8)


def _centre_model(tmp_path, source="image"):
    torch.manual_seed(1)
    cfg = SceneParserConfig(**TINY, **REFINE, refine_weight={"shape": 0.5}, refine_source=source,
                            refine_centre=True, refine_centre_weight=1.0, refine_geometry=True)
    model = SceneParser(cfg).eval()
    with torch.no_grad():
        model.out.bias[0] = 0.0
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    return model


def test_centre_regression_moves_centres_and_numpy_matches_torch(tmp_path):
    from PIL import Image
    from vqa.vision.core import mirror_geometry, n_attribute_logits
    model = _centre_model(tmp_path)
    K = n_attribute_logits(model.cfg)
    assert model.refine.head.out_features == K and model.refine.centre.out_features == 2
    with torch.no_grad():  # a centre head that is not zero
        model.refine.centre.weight.normal_(0, 0.01)
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    # mirror averaging: the mirrored crop's x offset is negated
    with torch.no_grad():  # the head reads the geometry
        model.refine.head.weight[:, -3:].normal_(0, 1.0)
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    x = torch.from_numpy(np.random.default_rng(7).normal(size=(3, 3, 16, 16)).astype(np.float32))
    g = torch.tensor([[-2.0, 0.3, 0.6], [-1.5, 0.5, 0.5], [-3.0, 0.9, 0.2]])
    a, b = model.refine_logits(x, g), model.refine_logits(x.flip(-1), mirror_geometry(g))
    assert torch.allclose(a[:, K], -b[:, K], atol=1e-5) and torch.allclose(a[:, K + 1], b[:, K + 1], atol=1e-5)
    assert torch.allclose(a[:, :K], b[:, :K], atol=1e-5)
    assert not torch.allclose(a[:, :K], model.refine_logits(x, g + 0.5)[:, :K])  # the geometry counts
    with pytest.raises(ValueError, match="geometry"):
        model.refine_logits(x)
    np_model = NumpySceneParser.load(tmp_path / "sp.npz")
    assert np.abs(np_model.crop_logits(x.numpy(), g.numpy()) - a.numpy()).max() < 1e-4
    # a 144x96 image (1.5 x the 96x64 input): crops from the image at its own resolution
    image = Image.fromarray(np.random.default_rng(8).integers(0, 255, (96, 144, 3), dtype=np.uint8))
    g_t, g_n = model.parse_image(image), np_model.parse_image(image)
    assert len(g_t.objects) == len(g_n.objects) > 0
    for p, q in zip(g_t.objects, g_n.objects):
        assert np.allclose(p.bbox, q.bbox, atol=1e-3)
        assert max(abs(p.attributes["shape"][v] - q.attributes["shape"][v]) for v in p.attributes["shape"]) < 1e-4
    # a crop net that says "the centre is 0.25 of the crop side to the right" moves every centre so
    # (without mirror averaging, which cancels a constant x offset)
    model.cfg.flip_tta = False
    with torch.no_grad():
        model.refine.centre.weight.zero_()
        model.refine.centre.bias[:] = torch.tensor([0.25, 0.0])
    moved = model.parse_image(image)
    model.cfg.refine_centre_weight = 0.0
    still = model.parse_image(image)
    assert len(moved.objects) == len(still.objects)
    for p, q in zip(moved.objects, still.objects):
        side = max(q.bbox[2], q.bbox[3], 4.0 * 1.5) * model.cfg.refine_context  # image pixels (1.5 x input)
        assert abs((p.centre[0] - q.centre[0]) - 0.25 * side) < 0.05 * side + 1e-3
        assert abs(p.centre[1] - q.centre[1]) < 1e-3


def test_refiner_full_resolution_crops_and_centres(tmp_path):
    """Training from images at 1.5 x the input size with the centre head; a pre-fix Blender record
    (no half_extent) gives its cubes no size target."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.data import SceneParserData
    from vqa.vision.refine import GoldCrops, RefineConfig, train_refiner
    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=4, questions_per_scene=0, seed=5, image_size=(288, 192))
    generate_dataset(data, num_scenes=2, questions_per_scene=2, seed=6, split="val", image_size=(288, 192))
    cfg = RefineConfig(data=str(data), out=str(tmp_path / "rf"), epochs=1, batch_size=8, size=16,
                       channels=(8, 8, 8), warmup_steps=1, weights=(0.0, 1.0), source="image", centre=True, cubes="clevr")
    s = train_refiner(cfg, log=lambda *_: None)
    model = load_scene_parser(tmp_path / "rf" / "scene_parser.pt")
    assert model.cfg.refine_source == "image" and model.cfg.refine_centre and model.cfg.cubes == "clevr"
    assert s["weights"]["centre"]["chosen"] == model.cfg.refine_centre_weight
    # the tighter crop of large objects is chosen with it (off or one of the grid's thresholds)
    from vqa.vision.refine import ZOOM_FROM
    assert model.cfg.refine_zoom_from == s["weights"]["centre"]["zoom_from"] in (0.0, *ZOOM_FROM)
    assert {r["zoom_from"] for r in s["weights"]["centre"]["grid"]} == {0.0, *ZOOM_FROM}
    assert model.parse_image(data / "images" / "val" / "CLEVR_val_000000.png").objects
    # continued (keep) at another crop side: the centre head resampled to the new grid; on feature
    # maps constant per channel it gives what it gave (weights constant over the grid)
    from vqa.vision.refine import _resize_crops
    with torch.no_grad():
        C = model.refine.centre.in_features // 16  # 16-pixel crops: a 4x4 grid
        w = torch.randn(2, C, 1, 1).expand(2, C, 4, 4).reshape(2, -1).clone()
        model.refine.centre.weight.copy_(w)
        f = torch.randn(C)
        before = model.refine.centre(f[:, None, None].expand(C, 4, 4).reshape(1, -1))
        _resize_crops(model, 24)
        after = model.refine.centre(f[:, None, None].expand(C, 6, 6).reshape(1, -1))
    assert model.cfg.refine_size == 24 and model.refine.centre.in_features == C * 36
    assert torch.allclose(before, after, atol=1e-4)
    kept = RefineConfig(data=str(data), out=str(tmp_path / "rf24"), epochs=1, batch_size=8, size=24, keep=True,
                        checkpoint=str(tmp_path / "rf" / "scene_parser.pt"), warmup_steps=1, weights=(0.0, 1.0))
    notes = []
    train_refiner(kept, log=notes.append)
    k = load_scene_parser(tmp_path / "rf24" / "scene_parser.pt")
    assert k.cfg.refine_size == 24 and k.cfg.refine_centre and k.cfg.refine_channels == (8, 8, 8)
    assert any("crop side 24 (the checkpoint's 16)" in n for n in notes)
    assert k.parse_image(data / "images" / "val" / "CLEVR_val_000000.png").objects
    model = load_scene_parser(tmp_path / "rf" / "scene_parser.pt")
    # gold crops: centred crops have zero offsets; crops at full resolution see the image's pixels
    d = SceneParserData(data, "val", image_size=(128, 192), attributes=model.cfg.attributes, full=True)
    assert d.full.shape[-2:] == (192, 288)
    gc = GoldCrops(d, "image")
    assert model.cfg.refine_geometry and model.refine.head.in_features == 8 + 3
    x, off, geo = gc.crops(np.arange(len(gc)), model.cfg)
    assert x.shape == (len(gc), 3, 16, 16) and torch.allclose(off, torch.zeros_like(off))
    assert torch.allclose(geo[:, 1], torch.from_numpy(gc.boxes[:, 0] / 192).float())  # centre x / input width
    x, off, geo = gc.crops(np.arange(len(gc)), model.cfg, np.random.default_rng(0), jitter=0.1)
    assert off.abs().max() > 0
    # a Blender record from before the CLEVR-size cubes: cube size not a target
    scenes = data / "scenes" / "CLEVR_val_scenes.json"
    doc = json.loads(scenes.read_text())
    for sc in doc["scenes"]:
        sc["blender"] = {"version": "3.4.1"}
        sc["objects"][0]["shape"] = "cube"
    scenes.write_text(json.dumps(doc))
    d2 = SceneParserData(data, "val", image_size=(128, 192), attributes=model.cfg.attributes)
    assert all(objs[0].values["size"] == -1 for objs in d2.objects)
    cube = model.cfg.attributes["shape"].index("cube")
    assert all((o.values["size"] == -1) == (o.values["shape"] == cube) for objs in d2.objects for o in objs)
    for sc in doc["scenes"]:
        for o in sc["objects"]:
            o["half_extent"] = 0.7
    scenes.write_text(json.dumps(doc))
    d3 = SceneParserData(data, "val", image_size=(128, 192), attributes=model.cfg.attributes)
    assert all(o.values["size"] >= 0 for objs in d3.objects for o in objs)


def test_positions_use_the_configured_cube_size():
    from vqa.scene import SceneGraph, SceneObject
    from vqa.vision.core import with_positions

    def cube_z(cubes):
        obj = SceneObject(id="0", name="cube", score=1.0, bbox=[230, 150, 20, 20],
                          attributes={"shape": {"cube": 1.0}, "size": {"large": 1.0}})
        return with_positions(SceneGraph("x", 480, 320, [obj]), cubes=cubes).objects[0].position[2]
    assert abs(cube_z("clevr") - 0.7) < 1e-3 and abs(cube_z("synth") - 0.7 / 2 ** 0.5) < 1e-3


def test_cube_convention_is_read_from_the_scenes_and_given_to_the_parser(tmp_path):
    """Released CLEVR and the Blender renders stand cubes at the radius, the synthetic world at
    the radius / sqrt(2): the trainers set the parser's 3-D positions to what the training
    scenes show (a parser placing CLEVR's large cubes 0.2 too low puts them ~0.5 too far back,
    flipping front/behind), and an explicit setting wins with a note."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.data import SceneParserData, cube_convention
    from vqa.vision.refine import RefineConfig, train_refiner
    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=4, questions_per_scene=0, seed=5, image_size=(192, 128))
    scenes = data / "scenes" / "CLEVR_train_scenes.json"
    doc = json.loads(scenes.read_text())
    assert cube_convention(doc["scenes"]) == "synth"
    radius = {"large": 0.7, "small": 0.35}
    cubes = 0
    for sc in doc["scenes"]:
        sc["objects"][0]["shape"] = "cube"
        for o in sc["objects"]:
            if o["shape"] == "cube":
                o["3d_coords"][2] = radius[o["size"]]
                cubes += 1
    assert cube_convention(doc["scenes"]) == "clevr"
    mixed = json.loads(json.dumps(doc["scenes"]))
    mixed[0]["objects"][0]["3d_coords"][2] = radius[mixed[0]["objects"][0]["size"]] / 2 ** 0.5
    assert cube_convention(mixed) is None
    assert cube_convention([{"objects": [{"shape": "sphere", "size": "large", "3d_coords": [0, 0, 0.7]}]}]) is None
    scenes.write_text(json.dumps(doc))
    d = SceneParserData(data, "train", image_size=(128, 192), attributes=SceneParserConfig().attributes)
    assert d.cubes == "clevr"
    logs = []
    cfg = RefineConfig(data=str(data), out=str(tmp_path / "rf"), epochs=1, batch_size=8, size=16,
                       channels=(8, 8, 8), warmup_steps=1, weights=(1.0,))
    assert load_scene_parser().cfg.cubes == "synth"  # the shipped synthetic-world parser the stage is added to
    train_refiner(cfg, log=logs.append)
    assert load_scene_parser(tmp_path / "rf" / "scene_parser.pt").cfg.cubes == "clevr"
    assert any("place cubes as 'clevr'" in str(m) for m in logs)
    logs.clear()
    cfg = RefineConfig(data=str(data), out=str(tmp_path / "rf2"), epochs=1, batch_size=8, size=16,
                       channels=(8, 8, 8), warmup_steps=1, weights=(1.0,), cubes="synth")
    train_refiner(cfg, log=logs.append)
    assert load_scene_parser(tmp_path / "rf2" / "scene_parser.pt").cfg.cubes == "synth"
    assert any("note: cubes 'synth' as given" in str(m) for m in logs)
