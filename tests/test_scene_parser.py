"""Scene parser: model shapes, targets, decoding, checkpoints, input robustness, metrics, training."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vqa.errors import DataError
from vqa.ontology import CLEVR_ATTRIBUTES
from vqa.scene import SceneGraph, SceneObject, clevr_relations
from vqa.vision.metrics import SceneMetrics, match_objects
from vqa.vision.scene_parser import (DEFAULT_CHECKPOINT, STRIDE, SceneParser, SceneParserConfig, back_project,
                                     checkpoint_dict, decode, load_image, load_scene_parser)
from vqa.vision.targets import build_targets, scene_parser_loss, collate

TINY = dict(image_size=(64, 96), stem_channels=(8, 16), dim=32, depth=1, n_heads=4, up_channels=8, head_channels=16)


def _scene(seed: int, size=(192, 128)):
    from vqa.datasets.synth.scenes import generate_scene
    return generate_scene(np.random.default_rng(seed), image_size=size)


@pytest.mark.parametrize("variant", ["mha", "gqa", "mqa", "kdgqa"])
def test_model_output_shapes(variant):
    model = SceneParser(SceneParserConfig(attn_variant=variant, **TINY))
    out = model(torch.randn(2, 3, 64, 96))
    h, w = 64 // STRIDE, 96 // STRIDE
    assert out["heat"].shape == (2, 1, h, w)
    assert out["offset"].shape == (2, 2, h, w) and out["box"].shape == (2, 2, h, w)
    for cat, values in CLEVR_ATTRIBUTES.items():
        assert out[f"attr:{cat}"].shape == (2, len(values), h, w)
    # another input size (a multiple of 16) goes through the resampled position embedding
    assert model(torch.randn(1, 3, 80, 96))["heat"].shape == (1, 1, 20, 24)


def _maps_with_objects(cfg, objects):
    """Hand-made maps: a heat peak, offset, box and one-hot-ish attribute logits per object."""
    h, w = cfg.image_size[0] // STRIDE, cfg.image_size[1] // STRIDE
    maps = {"heat": torch.full((1, h, w), -8.0), "offset": torch.zeros(2, h, w), "box": torch.zeros(2, h, w)}
    for cat, values in cfg.attributes.items():
        maps[f"attr:{cat}"] = torch.zeros(len(values), h, w)
    for (i, j, attrs) in objects:
        maps["heat"][0, i, j] = 4.0
        maps["offset"][:, i, j] = torch.tensor([0.25, -0.25])
        maps["box"][:, i, j] = math.log(3.0)
        for cat, v in attrs.items():
            maps[f"attr:{cat}"][cfg.attributes[cat].index(v), i, j] = 5.0
    return maps


def test_decode_declares_the_objectness_midpoint_and_drops_contained_weak_peaks():
    """cfg.objectness_midpoint goes into the graph's info (and its JSON); with hysteresis and
    low_ios, a weak peak whose box lies inside a strong object's box is dropped."""
    cfg = SceneParserConfig(score_threshold=0.4, nms_iou=0.45, low_threshold=0.3, low_iou=0.45)
    a = {"color": "red", "size": "large", "material": "metal", "shape": "cube"}
    maps = _maps_with_objects(cfg, [(10, 10, a), (10, 12, a)])
    maps["box"][:, 10, 10] = math.log(8.0)      # a large box around the first object
    maps["heat"][0, 10, 12] = _logit(0.35)      # a weak peak inside it (IoU 9/64)
    assert len(decode(maps, cfg, image_size=(192, 128)).objects) == 2
    cfg.low_ios, cfg.objectness_midpoint = 0.9, 0.3
    g = decode(maps, cfg, image_size=(192, 128))
    assert len(g.objects) == 1 and g.info["objectness_midpoint"] == 0.3
    assert SceneGraph.from_json(g.to_json()).info["objectness_midpoint"] == 0.3


def test_decode_gives_a_valid_probabilistic_scene_graph():
    cfg = SceneParserConfig()
    a = {"color": "red", "size": "large", "material": "metal", "shape": "cube"}
    b = {"color": "cyan", "size": "small", "material": "rubber", "shape": "sphere"}
    graph = decode(_maps_with_objects(cfg, [(10, 5, a), (20, 40, b)]), cfg, image_size=(192, 128), image_id="x")
    assert len(graph.objects) == 2
    again = SceneGraph.from_json(graph.to_json())
    assert again.to_dict() == graph.to_dict()
    for obj in graph.objects:
        for dist in obj.attributes.values():
            assert abs(sum(dist.values()) - 1.0) < 1e-5
        assert 0 < obj.score <= 1 and len(obj.position) == 3
    first = max(graph.objects, key=lambda o: o.score if o.value("color") == "red" else -1)
    assert [first.value(c) for c in ("color", "size", "material", "shape")] == ["red", "large", "metal", "cube"]
    x, y, bw, bh = first.bbox
    assert abs(x + bw / 2 - (5 + 0.5 + 0.25) * STRIDE) < 1e-4 and abs(bw - 3 * STRIDE) < 1e-4
    # object b is further right on the image and nearer the camera: right of and in front of a
    ia, ib = (o.id for o in sorted(graph.objects, key=lambda o: o.value("color") != "red"))
    rels = {(r.subject, r.predicate, r.object) for r in graph.relations}
    assert (ib, "right", ia) in rels and (ib, "front", ia) in rels and (ia, "left", ib) in rels


def test_back_projection_inverts_the_camera():
    from vqa.datasets.synth.camera import BASE_LOCATION, Camera
    cam = Camera.at(BASE_LOCATION, width=192, height=128)
    pts = np.array([[1.2, -0.7, 0.35], [-2.5, 2.9, 0.7], [0.0, 0.0, 0.4949]])
    px, py, _ = cam.project(pts)
    for k in range(3):
        assert np.allclose(back_project(cam, px[k], py[k], pts[k, 2]), pts[k], atol=1e-6)


def test_targets_match_a_generated_scene():
    from vqa.vision.data import gold_objects
    record, image = _scene(7)
    graph = SceneGraph.from_clevr(record)
    objs = gold_objects(record, graph, scale=(1.0, 1.0), attributes=CLEVR_ATTRIBUTES)
    assert len(objs) == len(record["objects"])
    t = build_targets(objs, (128 // STRIDE, 192 // STRIDE), CLEVR_ATTRIBUTES)
    centres = {(int(o.cy // STRIDE), int(o.cx // STRIDE)) for o in objs}
    assert int((t["heat"] == 1).sum()) == len(centres)
    for o, rec in zip(objs, record["objects"]):
        assert abs(o.cx - rec["pixel_coords"][0]) <= 0.51 and abs(o.cy - rec["pixel_coords"][1]) <= 0.51
        i, j = int(o.cy // STRIDE), int(o.cx // STRIDE)
        assert t["weight"][i, j] == 1.0
        for cat, values in CLEVR_ATTRIBUTES.items():
            assert values[int(t[f"attr:{cat}"][i, j])] == rec[cat]
        assert abs((j + 0.5 + float(t["offset"][0, i, j])) * STRIDE - o.cx) < 1e-3
        assert abs((i + 0.5 + float(t["offset"][1, i, j])) * STRIDE - o.cy) < 1e-3
        assert abs(math.exp(float(t["box"][0, i, j])) * STRIDE - rec["bbox"][2]) < 1e-3
    # the loss runs and is finite on these targets
    cfg = SceneParserConfig(**{**TINY, "image_size": (128, 192)})
    model = SceneParser(cfg)
    loss, parts = scene_parser_loss(model(torch.randn(1, 3, 128, 192)), collate([t]), cfg.attributes)
    assert torch.isfinite(loss) and set(parts) == {"heat", "offset", "box", "attr"}


def test_flipped_examples_mirror_images_and_targets(tmp_path):
    """A horizontal flip mirrors the image, the heat map and the attribute labels, and negates
    the x offset: the centre cell of a flipped object is the mirrored cell."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.data import SceneParserData
    generate_dataset(tmp_path, num_scenes=2, questions_per_scene=0, seed=8, image_size=(192, 128))
    data = SceneParserData(tmp_path, "train", image_size=(128, 192), attributes=CLEVR_ATTRIBUTES)
    (im, t), (imf, tf) = data.batch([0, 1]), data.batch([0, 1], flip=[True, True])
    assert torch.equal(imf, im.flip(-1))
    assert torch.allclose(tf["heat"], t["heat"].flip(-1)) and torch.allclose(tf["weight"], t["weight"].flip(-1))
    owned = t["weight"].flip(-1) > 0
    assert owned.any()
    assert torch.allclose(tf["offset"][:, 0][owned], -t["offset"][:, 0].flip(-1)[owned], atol=1e-5)
    assert torch.allclose(tf["offset"][:, 1][owned], t["offset"][:, 1].flip(-1)[owned], atol=1e-5)
    assert torch.allclose(tf["box"], t["box"].flip(-1))
    for cat in CLEVR_ATTRIBUTES:
        assert torch.equal(tf[f"attr:{cat}"], t[f"attr:{cat}"].flip(-1))
    # the centre cells hold the scene's objects, with their labels
    assert int((t["heat"][0] == 1).sum()) == len(data.objects[0])


def test_checkpoints_without_newer_options_still_load(tmp_path):
    model = SceneParser(SceneParserConfig(**{**TINY, "stem_extra": 0})).eval()
    ckpt = checkpoint_dict(model)
    del ckpt["config"]["stem_extra"], ckpt["config"]["flip_tta"]  # written before the options existed
    torch.save(ckpt, tmp_path / "old.pt")
    old = load_scene_parser(tmp_path / "old.pt")
    assert old.cfg.stem_extra == 0 and not old.cfg.flip_tta


def test_mirror_averaging_is_mirror_symmetric():
    """With flip_tta the maps of a mirrored image are the mirrored maps (x offset negated): the
    mirror image's maps are mapped back correctly."""
    torch.manual_seed(0)
    model = SceneParser(SceneParserConfig(**TINY)).eval()
    assert model.cfg.flip_tta
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = model.predict_maps(x), model.predict_maps(x.flip(-1))
        plain = model(x)
    for name in a:
        back = b[name].flip(-1)
        if name == "offset":
            back = torch.cat([-back[:, :1], back[:, 1:]], 1)
        assert torch.allclose(a[name], back, atol=1e-5), name
    assert not torch.allclose(a["heat"], plain["heat"])  # averaging changed something
    model.cfg.flip_tta = False
    with torch.no_grad():
        assert torch.equal(model.predict_maps(x)["heat"], plain["heat"])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SceneParser(SceneParserConfig(attn_variant="dgqa", **TINY)).eval()
    x = torch.randn(2, 3, 64, 96)
    path = tmp_path / "sp.pt"
    torch.save(checkpoint_dict(model, step=3), path)
    again = load_scene_parser(path)
    assert again.cfg == model.cfg
    with torch.no_grad():
        a, b = model(x), again(x)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_checkpoint_and_bad_images_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        load_scene_parser(bad)
    text = tmp_path / "notes.png"
    text.write_text("hello, I am not an image")
    with pytest.raises(DataError, match="notes.png.*not a readable image"):
        load_image(text)
    record, image = _scene(3)
    png = tmp_path / "cut.png"
    image.save(png)
    png.write_bytes(png.read_bytes()[:200])  # truncated file
    with pytest.raises(DataError, match="cut.png"):
        load_image(png)
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_input_robustness_sizes_and_modes(tmp_path):
    model = SceneParser(SceneParserConfig(**TINY)).eval()
    _, image = _scene(11, size=(160, 120))           # 4:3, not the model's 3:2
    for mode in ("RGB", "L", "RGBA", "P"):
        path = tmp_path / f"im_{mode}.png"
        image.convert(mode).save(path)
        graph = model.parse_image(path)
        assert (graph.width, graph.height) == (160, 120)
        SceneGraph.from_json(graph.to_json())
    rgba = image.convert("RGBA")
    rgba.putalpha(0)                                  # fully transparent: composited over gray
    assert model.parse_image(rgba).width == 160
    graphs = model.parse_images([image, image.resize((480, 320)), image.resize((50, 40))])
    assert [(g.width, g.height) for g in graphs] == [(160, 120), (480, 320), (50, 40)]


def _gold(objs, width=100):
    out = []
    for k, (x, y, color) in enumerate(objs):
        out.append(SceneObject(str(k), "cube", [x - 5, y - 5, 10, 10], score=1.0, position=[x / 10, -y / 10, 0.35],
                               attributes={"color": {color: 1.0}, "size": {"small": 1.0},
                                           "material": {"rubber": 1.0}, "shape": {"cube": 1.0}}))
    dirs = {"left": [-1, 0, 0], "right": [1, 0, 0], "front": [0, -1, 0], "behind": [0, 1, 0]}
    return SceneGraph("s", width, 80, out, clevr_relations([o.position for o in out], dirs), dirs)


def test_metrics_on_hand_made_graphs():
    gold = _gold([(10, 10, "red"), (50, 40, "blue"), (90, 70, "green")])
    # prediction: first object slightly off (matched), second with a wrong colour, third missed, one spurious
    pred = _gold([(12, 11, "red"), (49, 41, "gray"), (20, 70, "cyan")])
    assert sorted(match_objects(pred, gold, distance=0.05)) == [(0, 0), (1, 1)]
    m = SceneMetrics(distance=0.05)
    one = m.add(pred, gold)
    assert one["matched"] == 2 and not one["perfect"]
    s = m.summary()
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["attribute_accuracy"] == pytest.approx(7 / 8)
    assert s["attribute_accuracy_by_category"]["color"] == pytest.approx(1 / 2)
    assert s["count_accuracy"] == 1.0 and s["relation_accuracy"] == 1.0
    m.add(gold, gold)
    s = m.summary()
    assert s["perfect_scenes"] == 0.5 and s["scenes"] == 2
    # a prediction that swaps the two objects' positions gets relations wrong
    swapped = _gold([(10, 10, "red"), (50, 40, "blue")])
    swapped.relations = clevr_relations([[5.0, -4.0, 0.35], [1.0, -1.0, 0.35]], swapped.directions)
    m2 = SceneMetrics()
    m2.add(swapped, _gold([(10, 10, "red"), (50, 40, "blue")]))
    assert m2.summary()["relation_accuracy"] == 0.0


def test_centres_by_hidden_share():
    """Where the gold objects' hidden shares are known, centres within 5 px are also given per band
    of them (over the objects whose share is known); where none is, no bands."""
    from vqa.vision.metrics import format_scene_report
    gold = _gold([(10, 10, "red"), (50, 40, "blue"), (90, 70, "green")], width=400)
    pred = _gold([(10, 10, "red"), (50, 47, "blue"), (90, 72, "green")], width=400)  # errors 0, 7, 2 px
    m = SceneMetrics()
    m.add(pred, gold)
    assert m.summary()["centre_by_hidden"] is None
    m.add(pred, gold, hidden=[0.0, 0.6, 0.3])
    s = m.summary()
    assert s["centre_within_5px"] == pytest.approx(4 / 6)
    bands = {tuple(b["hidden"]): b for b in s["centre_by_hidden"]}
    assert [(b["objects"], b["within_5px"]) for b in bands.values()] == [(1, 1.0), (1, 1.0), (1, 0.0)]
    assert bands[(0.5, 1.0)]["median_error"] == pytest.approx(7.0)
    assert "0.5-1: 0.00% of 1" in format_scene_report(s)


def test_centres_are_measured_against_pixel_coords_when_a_record_also_has_a_tight_box():
    """The project's Blender renders record a tight `bbox` and CLEVR's `pixel_coords` (the
    projected 3-D centre, which a parser predicts as its box centre); they differ by pixels
    for a large cube seen from above. The gold point is `pixel_coords`, as on released CLEVR."""
    rec = {"image_filename": "CLEVR_val_000000.png", "objects": [
        {"shape": "cube", "size": "large", "material": "metal", "color": "red", "3d_coords": [0.0, 0.0, 0.7],
         "pixel_coords": [200, 150, 10.0], "bbox": [170.0, 110.0, 60.0, 70.0]}]}  # box centre (200, 145)
    gold = SceneGraph.from_clevr(rec)
    assert gold.objects[0].centre == (200.0, 145.0) and gold.objects[0].anchor == (200.0, 150.0)
    assert SceneGraph.from_dict(json.loads(json.dumps(gold.to_dict()))).objects[0].point == [200.0, 150.0]
    pred = SceneGraph.from_dict(json.loads(json.dumps(gold.to_dict())))
    pred.objects[0].point, pred.objects[0].bbox = None, [170.0, 115.0, 60.0, 70.0]  # centred on pixel_coords
    m = SceneMetrics()
    m.add(pred, gold)
    assert m.centre_errors == [0.0] and m.summary()["centre_within_5px"] == 1.0
    no_box = SceneGraph.from_clevr({**rec, "objects": [{k: v for k, v in rec["objects"][0].items() if k != "bbox"}]})
    assert no_box.objects[0].point is None and no_box.objects[0].anchor == (200.0, 150.0)
    bad = {**rec, "objects": [{**rec["objects"][0], "pixel_coords": ["x", 1]}]}
    with pytest.raises(DataError, match="pixel_coords"):
        SceneGraph.from_clevr(bad)


def test_training_runs_and_resumes(tmp_path):
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.train import TrainConfig, train_scene_parser
    data = tmp_path / "synth"
    generate_dataset(data, num_scenes=4, questions_per_scene=0, seed=5, image_size=(96, 64))
    generate_dataset(data, num_scenes=2, questions_per_scene=2, seed=6, split="val", image_size=(96, 64))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, batch_size=2, warmup_steps=1,
                      model=dict(TINY), log_every=1)
    s1 = train_scene_parser(cfg, log=lambda *_: None)
    assert s1["steps"] == 2 and s1["eval"]["scene"]["scenes"] == 2
    cfg.epochs, cfg.resume = 2, True
    s2 = train_scene_parser(cfg, log=lambda *_: None)
    assert s2["steps"] == 4
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if "loss" in d] == [1, 2, 3, 4]
    model = load_scene_parser(tmp_path / "run" / "scene_parser.pt")
    assert model.cfg.dim == TINY["dim"]
    ckpt = torch.load(tmp_path / "run" / "scene_parser.pt", weights_only=True)
    assert ckpt["vocab"] == {k: list(v) for k, v in CLEVR_ATTRIBUTES.items()} and "optimizer" not in ckpt
    # the decoding settings were chosen on the val split and travel in the checkpoint
    assert s2["decoding"]["score_threshold"] == ckpt["config"]["score_threshold"]
    assert s2["decoding"]["nms_iou"] == ckpt["config"]["nms_iou"]


def _logit(p):
    return math.log(p / (1 - p))


def test_hysteresis_keeps_faint_isolated_objects_not_second_peaks():
    """A strong object, a faint second peak two cells beside it (boxes 3 cells wide: IoU 0.2)
    and a faint object far away: off, only the strong one; low_threshold 0.3 with low_iou 0.1
    adds the isolated one; with low_iou 0.25 the second peak is kept as well."""
    cfg = SceneParserConfig(score_threshold=0.5, nms_iou=0.5)
    a = {"color": "red", "size": "large", "material": "metal", "shape": "cube"}
    maps = _maps_with_objects(cfg, [(10, 5, a), (10, 7, a), (20, 40, a)])
    maps["heat"][0, 10, 7] = _logit(0.4)
    maps["heat"][0, 20, 40] = _logit(0.35)
    counts = []
    for low, low_iou in ((0.0, 0.1), (0.3, 0.1), (0.3, 0.25), (0.38, 0.25)):
        cfg.low_threshold, cfg.low_iou = low, low_iou
        counts.append(len(decode(maps, cfg, image_size=(192, 128)).objects))
    assert counts == [1, 2, 3, 2]


@pytest.mark.parametrize("second", [0.6, 0.35])
def test_decoding_is_tuned_on_a_split(tmp_path, second):
    """tune_decoding picks the grid point with the best F1. A fake network: objectness 0.6 at one
    true object and `second` at another (the other gold objects it never finds). Both at 0.6, with a spurious peak of 0.48 in a corner:
    0.5 beats 0.3 and 0.45, and hysteresis (which would take the isolated spurious peak) stays
    off. The second at 0.35, with a second peak of 0.4 two cells beside the first object (box
    IoU 0.2): only hysteresis finds both objects without the extra peak (threshold above 0.4, weaker
    peaks down to 0.3 that overlap no kept box by more than 0.1)."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision.evaluate import tune_decoding
    generate_dataset(tmp_path, num_scenes=2, questions_per_scene=0, seed=9, split="val", image_size=(192, 128))
    gold = [SceneGraph.from_clevr(r) for r in json.loads(
        (tmp_path / "scenes" / "CLEVR_val_scenes.json").read_text())["scenes"]]

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = SceneParserConfig()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.k = 0

        @property
        def device(self):
            return torch.device("cpu")

        def forward(self, x):
            g = gold[self.k]
            self.k += 1
            objs = [(int(o.centre[1] // STRIDE), int(o.centre[0] // STRIDE), {c: o.value(c) for c in CLEVR_ATTRIBUTES})
                    for o in g.objects[:2]]
            maps = _maps_with_objects(self.cfg, objs)
            maps["heat"][maps["heat"] > 0] = _logit(0.6)
            maps["heat"][0, objs[1][0], objs[1][1]] = _logit(second)
            maps["offset"].zero_()
            if second == 0.6:
                maps["heat"][0, 0, 0] = _logit(0.48)  # a spurious object in the corner
            else:
                i, j = objs[0][0], objs[0][1] + 2     # a second peak beside the first object
                maps["heat"][0, i, j], maps["box"][:, i, j] = _logit(0.4), math.log(3.0)
            return {k: v[None] for k, v in maps.items()}

        def predict_maps(self, x):
            return self(x)

    fake = Fake()
    out = tune_decoding(fake, tmp_path, "val", thresholds=(0.3, 0.45, 0.5), ious=(0.5,), low=((0.0, None),))
    assert len(out["grid"]) == 3
    if second == 0.6:
        assert out["score_threshold"] == 0.5 and fake.cfg.score_threshold == 0.5
        assert out["grid"][0]["f1"] < out["grid"][2]["f1"]
    fake.k = 0
    out = tune_decoding(fake, tmp_path, "val", thresholds=(0.3, 0.45, 0.5), ious=(0.5,),
                        low=((0.0, None), (0.3, 0.1)))
    assert len(out["grid"]) == 5  # (0.3, 0.1) is no hysteresis under a threshold of 0.3: skipped
    if second == 0.6:
        assert (out["score_threshold"], out["low_threshold"]) == (0.5, 0.0)
    else:
        assert out["score_threshold"] > 0.4 and (out["low_threshold"], out["low_iou"]) == (0.3, 0.1)
        assert fake.cfg.low_threshold == 0.3
        assert max(g["f1"] for g in out["grid"] if not g["low_threshold"]) < out["f1"]


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped scene-parser checkpoint")
def test_cli_hysteresis_flags_reach_the_decoder(capsys):
    """`vqa scene --low-threshold/--low-iou`: very permissive hysteresis keeps more boxes on the
    sample image than the checkpoint's decoding; --low-threshold 0 is the checkpoint's."""
    from pathlib import Path

    from vqa.cli import main
    sample = str(Path(__file__).resolve().parents[1] / "data" / "samples" / "sample.png")

    def count(*flags):
        assert main(["scene", "--image", sample, "--json", *flags]) == 0
        return len(json.loads(capsys.readouterr().out)["objects"])
    base = count()
    assert count("--low-threshold", "0.02", "--low-iou", "0.9") > base
    assert count("--low-threshold", "0") == base


def test_cli_tune_saves_the_chosen_settings(tmp_path, capsys):
    from vqa.cli import main
    from vqa.datasets.synth.generate import generate_dataset
    generate_dataset(tmp_path / "d", num_scenes=2, questions_per_scene=0, seed=9, split="val", image_size=(96, 64))
    torch.save(checkpoint_dict(SceneParser(SceneParserConfig(**TINY)), step=7), tmp_path / "a.pt")
    main(["scene", "--tune", str(tmp_path / "d"), "--split", "val", "--checkpoint", str(tmp_path / "a.pt"),
          "--no-tta", "--save", str(tmp_path / "b.pt")])
    assert "score threshold" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    assert ckpt["step"] == 7 and ckpt["tuned"]["flip_tta"] is False and ckpt["config"]["flip_tta"] is False
    assert ckpt["config"]["score_threshold"] == ckpt["tuned"]["score_threshold"]
    assert load_scene_parser(tmp_path / "b.pt").cfg.dim == TINY["dim"]


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped scene-parser checkpoint")
def test_shipped_checkpoint_finds_most_objects_on_unseen_scenes():
    parser = load_scene_parser()
    m = SceneMetrics()
    for seed in (90001, 90002, 90003):
        record, image = _scene(seed)
        m.add(parser.parse_image(image), SceneGraph.from_clevr(record))
    s = m.summary()
    assert s["recall"] >= 0.9 and s["precision"] >= 0.9, s
    assert s["attribute_accuracy"] >= 0.9, s
