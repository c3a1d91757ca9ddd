"""The GQA scene parser (issue 22): letterboxing, object/pair inputs (numpy vs torch),
targets, metrics, training on a tiny fixture in GQA's official layout (train, resume,
export, numpy runtime = torch), and a few steps at real GQA vocabulary sizes."""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vqa.errors import DataError
from vqa.scene import Relation, SceneGraph, SceneObject
from vqa.vision.gqa_core import (GQASceneParserConfig, box_geometry, letterbox_uint8, object_inputs, pair_index,
                                 pair_inputs)
from vqa.vision.gqa_data import GQASceneData, scan_vocabulary
from vqa.vision.gqa_metrics import gqa_scene_scores
from vqa.vision.gqa_scene_parser import GQASceneParser, object_inputs_t, pair_inputs_t
from vqa.vision.gqa_train import GQATrainConfig, gqa_loss, pair_targets, train_gqa_scene_parser

COLORS = {"red": (200, 30, 30), "blue": (30, 60, 210), "green": (30, 160, 40)}
SMALL = {"backbone": {"image_size": (64, 96), "stem_channels": (8, 16), "dim": 32, "depth": 1, "n_heads": 2,
                      "head_channels": 16, "up_channels": 4}, "embed_dim": 16, "rel_hidden": 16}


def write_gqa_layout(root: Path, n_images: int = 6, sizes=((120, 80), (80, 120), (150, 100))) -> tuple[Path, Path]:
    """A tiny GQA layout: images/<id>.jpg of different sizes with coloured boxes, and
    sceneGraphs/train_sceneGraphs.json with names, attributes and left/right relations."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "sceneGraphs").mkdir()
    graphs = {}
    for i in range(n_images):
        w, h = sizes[i % len(sizes)]
        im = Image.new("RGB", (w, h), (128, 128, 128))
        d = ImageDraw.Draw(im)
        objs = {}
        for k in range(2 + i % 2):
            bw, bh = int(rng.integers(12, 24)), int(rng.integers(12, 24))
            x, y = int(k * w / 3 + rng.integers(0, 8)), int(rng.integers(0, h - bh))
            color = list(COLORS)[(i + k) % 3]
            d.rectangle([x, y, x + bw - 1, y + bh - 1], fill=COLORS[color])
            objs[f"{i}{k}"] = {"name": "box" if color != "green" else "leaf", "x": x, "y": y, "w": bw, "h": bh,
                               "attributes": [color] + (["large"] if bw * bh > 300 else []), "relations": []}
        ids = list(objs)
        for a in ids:
            for b in ids:
                if a != b:
                    rel = "to the left of" if objs[a]["x"] < objs[b]["x"] else "to the right of"
                    objs[a]["relations"].append({"name": rel, "object": b})
        graphs[str(i)] = {"width": w, "height": h, "objects": objs}
        im.save(root / "images" / f"{i}.jpg", quality=95)
    scenes = root / "sceneGraphs" / "train_sceneGraphs.json"
    scenes.write_text(json.dumps(graphs))
    return root / "images", scenes


def test_letterbox_keeps_aspect_and_pads():
    from PIL import Image

    for size in ((200, 100), (100, 200), (96, 64)):
        a, s = letterbox_uint8(Image.new("RGB", size, (10, 20, 30)), (64, 96))
        assert a.shape == (3, 64, 96)
        w, h = round(size[0] * s), round(size[1] * s)
        assert w <= 96 and h <= 64 and (w == 96 or h == 64)
        assert (a[:, :h, :w] == np.array([10, 20, 30])[:, None, None]).all()
        assert (a[:, h:, :] == 128).all() and (a[:, :, w:] == 128).all()


def test_object_and_pair_inputs_numpy_equal_torch():
    rng = np.random.default_rng(1)
    fused = rng.standard_normal((16, 24, 5)).astype(np.float32)  # (h, w, C)
    boxes = np.array([[10, 12, 8, 6], [50, 30, 30, 40], [95, 63, 4, 4], [0, 0, 1, 1]], np.float32)
    a = object_inputs(fused, boxes, (96, 60))
    b = object_inputs_t(torch.from_numpy(fused).permute(2, 0, 1), torch.from_numpy(boxes),
                        torch.tensor([96.0, 60.0])).numpy()
    assert a.shape == (4, 2 * 5 + 7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # the box mean is the plain mean over the covered cells (box 1: x 35..65 -> cells 8..16, y 10..50 -> 2..13)
    np.testing.assert_allclose(a[1, 5:10], fused[2:13, 8:17].mean((0, 1)), rtol=1e-5)
    emb = rng.standard_normal((4, 3)).astype(np.float32)
    geom = box_geometry(boxes, (96, 60))
    pa = pair_inputs(emb, geom)
    pb = pair_inputs_t(torch.from_numpy(emb), torch.from_numpy(geom)).numpy()
    np.testing.assert_allclose(pa, pb)
    s, o = pair_index(4)
    assert len(s) == 12 and not (s == o).any()


def test_pair_targets_follow_the_pair_order():
    class G:
        def __init__(self, n, rels):
            self.boxes = np.zeros((n, 4))
            self.relations = np.array(rels, np.int64).reshape(-1, 3)
    t = pair_targets([G(3, [(0, 2, 1), (2, 1, 0)]), G(1, [])], 2, "cpu")
    s, o = pair_index(3)
    rows = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(s, o))}
    assert t.shape == (6, 2)
    assert t[rows[(0, 2)], 1] == 1 and t[rows[(2, 1)], 0] == 1 and t.sum() == 2


def test_metrics_on_hand_made_graphs():
    gold = SceneGraph("1", 100, 100, [
        SceneObject("a", "box", [0, 0, 10, 10], {"attribute": {"red": 1.0, "large": 1.0}}),
        SceneObject("b", "leaf", [50, 50, 10, 10], {"attribute": {"green": 1.0}})],
        [Relation("a", "to the left of", "b"), Relation("b", "to the right of", "a")])
    pred = SceneGraph("1", 100, 100, [
        SceneObject("0", "box", [1, 1, 10, 10], {"attribute": {"red": 0.9, "large": 0.2}}, score=0.9),
        SceneObject("1", "box", [80, 80, 10, 10], {"attribute": {"green": 0.9}}, score=0.8)],
        [Relation("0", "to the left of", "1", 0.9)])
    s = gqa_scene_scores([pred], [gold])
    assert s["matched"] == 1 and s["detection_f1"] == 50.0 and s["name_accuracy"] == 100.0
    assert s["attribute_precision"] == 100.0 and s["attribute_recall"] == 50.0
    assert s["relation_recall@50"] == 0.0  # its object is not matched
    perfect = gqa_scene_scores([gold], [gold])
    assert perfect["detection_f1"] == perfect["attribute_f1"] == perfect["relation_recall@50"] == 100.0


def test_vocabulary_and_targets_from_the_official_layout(tmp_path):
    images, scenes = write_gqa_layout(tmp_path / "gqa")
    v = scan_vocabulary(scenes)
    assert set(v["names"]) == {"box", "leaf"} and set(v["relations"]) == {"to the left of", "to the right of"}
    assert {"red", "blue", "green"} <= set(v["attributes"])
    data = GQASceneData(images, scenes, image_size=(64, 96), **v)
    g = data.gold[1]  # 80x120 image: s = 64/120
    rec = json.loads(scenes.read_text())["1"]
    o = next(iter(rec["objects"].values()))
    assert g.scale == pytest.approx(64 / 120)
    np.testing.assert_allclose(g.boxes[0], [(o["x"] + o["w"] / 2) * g.scale, (o["y"] + o["h"] / 2) * g.scale,
                                            o["w"] * g.scale, o["h"] * g.scale], rtol=1e-5)
    assert len(g.relations) == len(rec["objects"]) * (len(rec["objects"]) - 1)
    images_t, dense, gold = data.batch([0, 1])
    assert images_t.shape == (2, 3, 64, 96) and dense["heat"].shape == (2, 1, 16, 24)
    assert (dense["heat"] == 1).sum() == sum(len(x.boxes) for x in gold)


def test_missing_image_names_the_record(tmp_path):
    images, scenes = write_gqa_layout(tmp_path / "gqa", n_images=2)
    (images / "1.jpg").unlink()
    with pytest.raises(DataError, match="1"):
        GQASceneData(images, scenes, image_size=(64, 96), **scan_vocabulary(scenes))


def test_training_on_the_official_layout_resumes_exports_and_runs_on_numpy(tmp_path, capsys):
    from vqa.cli import main
    from vqa.runtime.gqa_scene_parser import NumpyGQASceneParser
    from vqa.vision.gqa_scene_parser import load_gqa_scene_parser

    images, scenes = write_gqa_layout(tmp_path / "gqa")
    out = tmp_path / "run"
    base = ["train", "scene-parser", "--dataset", "gqa", "--images", str(images), "--scenes", str(scenes),
            "--out", str(out), "--batch-size", "2", "--image-size", "96x64", "--dim", "32", "--depth", "1",
            "--heads", "2", "--threads", "1", "--val-scenes", str(scenes), "--val-limit", "2", "--json"]
    assert main(base + ["--epochs", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 3 and first["vocabulary"] == {"names": 2, "attributes": 4, "relations": 2}
    assert (out / "gqa_scene_parser.pt").is_file() and (out / "last.pt").is_file()
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 6 and second["decoding"]["score_threshold"] in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
    ckpt = torch.load(out / "gqa_scene_parser.pt", weights_only=True)
    assert ckpt["config"]["backbone"]["score_threshold"] == second["decoding"]["score_threshold"]
    assert ckpt["config"]["backbone"]["low_threshold"] == second["decoding"]["low_threshold"]
    # the tuner scores boxes alone; the full parse with the chosen decoding gives the same F1
    from vqa.vision.gqa_train import evaluate_gqa_parser
    full = evaluate_gqa_parser(load_gqa_scene_parser(out / "gqa_scene_parser.pt"), images, scenes, limit=2)
    assert (full["detection_f1"] or 0.0) == pytest.approx(second["decoding"]["f1"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["eval_epoch"] for r in log if "eval_epoch" in r] == [1, 2]
    # fine-tuning (--init): a new run from the trained checkpoint, its architecture and vocabulary
    tuned = tmp_path / "tuned"
    init = ["train", "scene-parser", "--dataset", "gqa", "--images", str(images), "--scenes", str(scenes),
            "--out", str(tuned), "--batch-size", "2", "--threads", "1", "--epochs", "1", "--lr", "1e-9",
            "--no-tune", "--init", str(out / "gqa_scene_parser.pt"), "--json"]
    assert main(init) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["steps"] == 3 and third["vocabulary"] == first["vocabulary"]
    a, b = (torch.load(f, weights_only=True)["state_dict"] for f in (out / "gqa_scene_parser.pt",
                                                                      tuned / "gqa_scene_parser.pt"))
    weights = [k for k in a if "running_" not in k and "num_batches" not in k]  # (batch-norm statistics move)
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in weights)
    # fine-tuning at another input size: the position embedding resampled, the size recorded
    resized = tmp_path / "resized"
    assert main(init[:init.index("--out") + 1] + [str(resized)] + init[init.index("--out") + 2:]
                + ["--image-size", "128x96"]) == 0
    capsys.readouterr()
    r = torch.load(resized / "gqa_scene_parser.pt", weights_only=True)
    assert tuple(r["config"]["backbone"]["image_size"]) == (96, 128)
    assert r["state_dict"]["backbone.vit.pos_embed"].shape[1] == (96 // 16) * (128 // 16) != \
        a["backbone.vit.pos_embed"].shape[1]
    assert load_gqa_scene_parser(resized / "gqa_scene_parser.pt").cfg.image_size == (96, 128)
    assert main(["export-numpy", str(out / "gqa_scene_parser.pt")]) == 0
    capsys.readouterr()
    model = load_gqa_scene_parser(out / "gqa_scene_parser.pt")
    model.cfg.backbone["score_threshold"] = 0.01  # untrained: let some detections through
    fast = NumpyGQASceneParser.load(out / "gqa_scene_parser.npz")
    fast.cfg.backbone["score_threshold"] = 0.01
    paths = sorted(images.glob("*.jpg"))[:3]
    for a, b in zip(model.parse_images(paths), fast.parse_images(paths)):
        assert (a.width, a.height) == (b.width, b.height) and len(a.objects) == len(b.objects) > 0
        for x, y in zip(a.objects, b.objects):
            assert x.name == y.name
            np.testing.assert_allclose(x.bbox, y.bbox, atol=1e-3)
            assert x.attributes["attribute"].keys() == y.attributes["attribute"].keys()
        assert [(r.subject, r.predicate, r.object) for r in a.relations] == \
            [(r.subject, r.predicate, r.object) for r in b.relations]
        np.testing.assert_allclose([r.probability for r in a.relations], [r.probability for r in b.relations],
                                   atol=1e-4)


def real_size_steps(steps: int = 3, batch: int = 4, objects: int = 20, image_size=(144, 192)) -> dict:
    """Training steps at real GQA vocabulary sizes (1,700 names, 600 attributes, 300
    relations) with `objects` objects per image: seconds per step and peak RSS growth."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = GQASceneParserConfig(names=[f"n{i}" for i in range(1700)], attributes=[f"a{i}" for i in range(600)],
                               relations=[f"r{i}" for i in range(300)], backbone={"image_size": image_size})
    model = GQASceneParser(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    H, W = image_size

    class Gold:
        def __init__(self):
            wh = rng.uniform(8, 40, (objects, 2))
            c = rng.uniform(20, [W - 20, H - 20], (objects, 2))
            self.boxes = np.concatenate([c, wh], 1).astype(np.float32)
            self.names = rng.integers(0, 1700, objects)
            self.attributes = (rng.random((objects, 600)) < 0.005).astype(np.float32)
            n_rel = 3 * objects
            self.relations = np.unique(np.stack([rng.integers(0, objects, n_rel), rng.integers(0, objects, n_rel),
                                                 rng.integers(0, 300, n_rel)], 1), axis=0)
            self.relations = self.relations[self.relations[:, 0] != self.relations[:, 1]]
    from vqa.vision.targets import GoldObject, build_targets, collate
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, losses = [], []
    for _ in range(steps):
        gold = [Gold() for _ in range(batch)]
        dense = collate([build_targets([GoldObject(*map(float, b), {}) for b in g.boxes], (H // 4, W // 4), {})
                         for g in gold])
        t0 = time.perf_counter()
        maps, logits = model(torch.randn(batch, 3, H, W), [torch.from_numpy(g.boxes) for g in gold],
                             torch.tensor([[W, H]] * batch, dtype=torch.float32))
        loss, _ = gqa_loss(maps, logits, dense, gold, "cpu")
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return {"seconds_per_step": sorted(times)[len(times) // 2], "losses": losses,
            "peak_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
            "parameters": sum(p.numel() for p in model.parameters())}


def test_a_few_steps_at_real_gqa_vocabulary_sizes_fit_on_cpu():
    torch.set_num_threads(1)
    r = real_size_steps(steps=2, batch=2, objects=20)
    assert all(np.isfinite(r["losses"]))
    assert r["peak_rss_growth_mb"] < 1500, r  # the heads are per object and per pair, not per cell


def test_reasoning_view_keeps_only_the_unsure_facts_uncertain():
    from vqa.vision.gqa_core import reasoning_view

    g = SceneGraph("1", 100, 100, [
        SceneObject("0", "box", [0, 0, 10, 10], {"attribute": {"red": 0.99, "large": 0.6, "blue": 0.01}}, score=0.4),
        SceneObject("1", "leaf", [50, 50, 10, 10], {"attribute": {"green": 0.97}}, score=0.9)],
        [Relation("0", "to the left of", "1", 0.999), Relation("1", "to the left of", "0", 0.02),
         Relation("0", "next to", "1", 0.5)], info={"source": "gqa_scene_parser"})
    v = reasoning_view(g, 0.95)
    assert [o.score for o in v.objects] == [1.0, 1.0]
    assert v.objects[0].attributes == {"attribute": {"red": 1.0, "large": 0.6}}
    assert [(r.predicate, r.subject, r.probability) for r in v.relations] == [("to the left of", "0", 1.0),
                                                                             ("next to", "0", 0.5)]
    assert g.objects[0].score == 0.4 and g.relations[0].probability == 0.999  # the raw graph is untouched
    assert "name_readings" not in v.info  # no name distributions given


def test_reasoning_view_names_below_certain_become_readings():
    from vqa.vision.gqa_core import reasoning_view

    objs = [SceneObject(str(k), n, [10 * k, 0, 10, 10], {"attribute": {}}) for k, n in enumerate(["cup", "box", "leaf"])]
    names = [{"cup": 0.6, "bowl": 0.38, "mug": 0.02}, {"box": 0.97, "crate": 0.03}, {"leaf": 0.5, "box": 0.01}]
    v = reasoning_view(SceneGraph("1", 100, 100, objs, [], info={"names": names}), 0.95)
    # object 0: two readings (mug is below 1 - certain); object 1: sure; object 2: one reading only: its name
    assert v.info["name_readings"] == {"0": {"cup": 0.6, "bowl": 0.38}}
    assert [o.name for o in v.objects] == ["cup", "box", "leaf"]
