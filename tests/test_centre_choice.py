"""How the second stage moves centres: the centre weight by object size (the schedule, its use
when parsing, fitting and choosing it), the tighter second crop of large objects, and
`vqa scene --tune-centre`."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqa.errors import VQAError
from vqa.runtime.checkpoints import export_npz
from vqa.runtime.scene_parser import NumpySceneParser
from vqa.vision.core import SceneParserConfig, centre_weights, n_attribute_logits, refine_detections, zoomed
from vqa.vision.refine import ZOOM_FROM, CentreRows, choose_centre, fit_centre_by_side
from vqa.vision.scene_parser import SceneParser, checkpoint_dict, load_scene_parser

TINY = dict(image_size=(64, 96), stem_channels=(8, 16), dim=32, depth=1, n_heads=4, up_channels=8, head_channels=16)
REFINE = dict(refine_size=16, refine_channels=(8, 12, 16))
SCHEDULE = ((0.1, 1.0), (0.4, 0.0))  # small boxes: the crop net's centre; large ones: the dense head's


def _boxes(sides, w=100.0):
    """Boxes (n, 4) in network-input pixels of an input `w` wide, longer sides `sides` x w."""
    sides = np.asarray(sides, float)
    return np.stack([np.full_like(sides, 50.0), np.full_like(sides, 40.0), sides * w, sides * w / 2], 1)


def test_centre_weight_schedule_interpolates_in_log_side_and_is_flat_beyond_its_knots():
    cfg = SceneParserConfig(refine_centre_weight=0.75)
    assert np.allclose(centre_weights(cfg, _boxes([0.01, 0.2, 0.9]), 100), 0.75)  # no schedule: the constant
    cfg.refine_centre_by_side = SCHEDULE
    mid = math.sqrt(0.1 * 0.4)  # halfway in log side
    got = centre_weights(cfg, _boxes([0.01, 0.1, mid, 0.4, 0.9]), 100)
    assert np.allclose(got, [1.0, 1.0, 0.5, 0.0, 0.0])
    # the longer side counts, as a fraction of the input width: a tall box of width 0.05
    tall = np.array([[50.0, 40.0, 5.0, 40.0]])
    assert np.allclose(centre_weights(cfg, tall, 100), 1.0 - math.log(4) / math.log(4))  # 40 / 100 = 0.4
    assert np.allclose(centre_weights(cfg, tall, 400), 1.0)  # 40 / 400 = 0.1
    # knots in any order
    cfg.refine_centre_by_side = tuple(reversed(SCHEDULE))
    assert np.allclose(centre_weights(cfg, _boxes([0.01, mid, 0.9]), 100), [1.0, 0.5, 0.0])


def test_refine_detections_moves_each_centre_by_its_sizes_weight():
    cfg = SceneParserConfig(refine_size=8, refine_centre=True, refine_centre_weight=0.0,
                            refine_centre_by_side=SCHEDULE, refine_context=1.5)
    K = n_attribute_logits(cfg)
    sides = [0.05, math.sqrt(0.1 * 0.4), 0.6]
    boxes = _boxes(sides)
    det = {"boxes": boxes.copy(), "logits": {c: np.zeros((len(v), 3), np.float32) for c, v in cfg.attributes.items()}}

    def refine(crops, geometry):  # the crop net: "the centre is 0.2 of the crop side right, 0.1 down"
        out = np.zeros((len(crops), K + 2), np.float32)
        out[:, K:] = [0.2, 0.1]
        return out
    batch = np.zeros((1, 3, 80, 100), np.float32)
    refine_detections([det], batch, cfg, refine)
    crop_side = boxes[:, 2] * cfg.refine_context
    moved = det["boxes"][:, :2] - boxes[:, :2]
    for w, m, s in zip([1.0, 0.5, 0.0], moved, crop_side):
        assert np.allclose(m, [w * 0.2 * s, w * 0.1 * s], atol=1e-6)
    # the schedule alone switches the centre head on (the constant weight is 0 here)
    cfg.refine_centre_by_side = ()
    det2 = {"boxes": boxes.copy(), "logits": det["logits"]}
    refine_detections([det2], batch, cfg, refine)
    assert np.allclose(det2["boxes"], boxes)


def _centre_model(tmp_path):
    torch.manual_seed(1)
    cfg = SceneParserConfig(**TINY, **REFINE, refine_source="image", refine_centre=True, refine_centre_weight=1.0,
                            refine_geometry=True)
    model = SceneParser(cfg).eval()
    with torch.no_grad():
        model.out.bias[0] = 0.0  # objectness peaks everywhere: detections to match
        model.refine.centre.weight.zero_()
        model.refine.centre.bias[:] = torch.tensor([0.0, 0.25])  # "the centre is a quarter of the crop lower"
    return model


def test_schedule_survives_checkpoints_and_both_runtimes_apply_it(tmp_path):
    from PIL import Image
    model = _centre_model(tmp_path)
    model.cfg.refine_centre_by_side = ((0.0625, 1.05), (0.3125, 0.4))
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    t, n = load_scene_parser(tmp_path / "sp.pt"), NumpySceneParser.load(tmp_path / "sp.npz")
    assert t.cfg.refine_centre_by_side == n.cfg.refine_centre_by_side == ((0.0625, 1.05), (0.3125, 0.4))
    assert SceneParserConfig.from_dict(t.cfg.to_dict()) == t.cfg
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (96, 144, 3), dtype=np.uint8))
    g_t, g_n = t.parse_image(image), n.parse_image(image)
    assert len(g_t.objects) == len(g_n.objects) > 0
    for p, q in zip(g_t.objects, g_n.objects):
        assert np.allclose(p.bbox, q.bbox, atol=1e-3)
    # each object moved down by its own weight x a quarter of its crop side
    t.cfg.refine_centre_by_side, t.cfg.refine_centre_weight = (), 0.0
    still = t.parse_image(image)
    w_in = model.cfg.image_size[1]
    for p, q in zip(g_t.objects, still.objects):
        side_in = max(q.bbox[2], q.bbox[3]) / 1.5  # input pixels (the image is 1.5 x the input)
        a = centre_weights(n.cfg, np.array([[0, 0, side_in, 0]]), w_in)[0]
        crop = max(side_in, 4.0) * model.cfg.refine_context * 1.5
        assert abs((p.centre[1] - q.centre[1]) - a * 0.25 * crop) < 1e-3 + 1e-3 * crop
        assert abs(p.centre[0] - q.centre[0]) < 1e-3


def _rows(rng, n=400, noise=3.0):
    """Small objects whose crop-net centre is right and dense centre `noise` px off, and large
    objects the other way round."""
    rows = CentreRows()
    for k in range(n):
        small = k % 2 == 0
        gold = rng.uniform(50, 400, 2)
        off = rng.normal(0, noise, 2)
        rows.gold.append(gold)
        rows.dense.append(gold + (off if small else 0.1 * off))
        rows.crop.append(gold + (0.1 * off if small else off))
        rows.side.append(0.05 if small else 0.4)
    return rows


def test_fit_and_choice_of_the_centre_weight_by_size():
    rows = _rows(np.random.default_rng(0))
    knots, row = fit_centre_by_side(rows)
    (s0, a), (s1, b) = knots
    assert (s0, s1) == (0.0625, 0.3125) and a >= 0.95 and b <= 0.25
    cfg = SceneParserConfig(refine_centre=True, refine_centre_weight=0.5, refine_centre_by_side=((0.1, 0.3), (0.2, 0.6)))
    table = choose_centre(cfg, rows, (0.0, 0.5, 1.0))  # without by_side: a constant, a stale schedule cleared
    assert cfg.refine_centre_by_side == () and cfg.refine_centre_weight == table["chosen"] in (0.0, 0.5, 1.0)
    table = choose_centre(cfg, rows, (0.0, 0.5, 1.0), by_side=True)
    assert cfg.refine_centre_by_side == knots and table["chosen"] == [list(k) for k in knots]
    assert table["by_side"]["mean_error"] < min(r["mean_error"] for r in table["grid"])
    # where one weight suits every size the schedule is not kept (it is no better)
    even = CentreRows()
    for k in range(200):
        g = np.array([100.0 + k, 200.0])
        even.gold.append(g), even.dense.append(g + [2.0, 0.0]), even.crop.append(g - [2.0, 0.0])
        even.side.append(0.05 if k % 2 else 0.4)
    cfg.refine_centre_by_side = ()
    table = choose_centre(cfg, even, (0.0, 0.25, 0.5, 0.75, 1.0), by_side=True)
    assert cfg.refine_centre_by_side == () and cfg.refine_centre_weight == 0.5 == table["chosen"]


def test_cli_tune_centre_on_folders_saves_the_choice(tmp_path, capsys):
    from vqa.cli import main
    from vqa.datasets.synth.generate import generate_dataset
    model = _centre_model(tmp_path)
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    for name, seed in (("a", 5), ("b", 6)):
        generate_dataset(tmp_path / name, num_scenes=2, questions_per_scene=0, seed=seed, split="val",
                         image_size=(144, 96), verify=False)
    rc = main(["scene", "--tune-centre", str(tmp_path / "a"), "--tune-centre", str(tmp_path / "b"), "--by-side",
               "--checkpoint", str(tmp_path / "sp.pt"), "--save", str(tmp_path / "tuned.pt")])
    out = capsys.readouterr().out
    assert rc == 0 and "weight 0.0, no tighter crop:" in out and "by size" in out and "saved:" in out
    ck = torch.load(tmp_path / "tuned.pt", map_location="cpu", weights_only=True)
    rec = ck["tuned_centre"]
    assert rec["data"] == [str(tmp_path / "a"), str(tmp_path / "b")] and rec["objects"] > 0
    tuned = load_scene_parser(tmp_path / "tuned.pt")
    chosen = [list(k) for k in tuned.cfg.refine_centre_by_side] or tuned.cfg.refine_centre_weight
    assert chosen == rec["chosen"] and tuned.cfg.refine_zoom_from == rec["zoom_from"] in (0.0, *ZOOM_FROM)
    assert f"tighter crop from {100 * ZOOM_FROM[0]:.2f}% of the width" in out  # the grid is printed
    for a, b in zip(tuned.state_dict().values(), model.state_dict().values()):  # the weights are the same
        assert torch.equal(a, b)
    # a parser whose second stage has no centre head: one clear error
    model.cfg.refine_centre = False
    model.refine.centre = None
    torch.save(checkpoint_dict(model), tmp_path / "nocentre.pt")
    with pytest.raises(VQAError, match="does not regress centres"):
        from vqa.vision.refine import tune_centre
        tune_centre(load_scene_parser(tmp_path / "nocentre.pt"), [tmp_path / "a"])


def test_large_boxes_get_a_tighter_second_crop_whose_centre_is_averaged_in():
    cfg = SceneParserConfig(refine_size=8, refine_centre=True, refine_centre_weight=1.0, refine_context=1.5,
                            refine_zoom_from=0.3, refine_zoom_context=1.3)
    K = n_attribute_logits(cfg)
    boxes = _boxes([0.1, 0.29, 0.31, 0.6])
    assert zoomed(cfg, boxes, 100).tolist() == [False, False, True, True]
    assert not zoomed(SceneParserConfig(), boxes, 100).any()
    det = {"boxes": boxes.copy(), "logits": {c: np.zeros((len(v), 4), np.float32) for c, v in cfg.attributes.items()}}
    seen = []

    def refine(crops, geometry):  # "the centre is 0.2 of the crop side right"; crop sides recorded
        seen.append(np.exp(geometry[:, 0]) * 100)
        out = np.zeros((len(crops), K + 2), np.float32)
        out[:, K] = 0.2
        return out
    refine_detections([det], np.zeros((1, 3, 80, 100), np.float32), cfg, refine)
    assert len(seen) == 2 and np.allclose(seen[0], boxes[:, 2] * 1.5, rtol=1e-4)
    assert np.allclose(seen[1], boxes[2:, 2] * 1.3, rtol=1e-4)  # only the large ones, at the tighter context
    moved = det["boxes"][:, 0] - boxes[:, 0]
    assert np.allclose(moved, 0.2 * boxes[:, 2] * np.array([1.5, 1.5, 1.4, 1.4]), rtol=1e-4)
    assert np.allclose(det["boxes"][:, 1:], boxes[:, 1:])
    # no centre move (weight 0): no second crop either
    seen.clear()
    cfg.refine_centre_weight = 0.0
    refine_detections([{"boxes": boxes.copy(), "logits": det["logits"]}], np.zeros((1, 3, 80, 100), np.float32),
                      cfg, refine)
    assert len(seen) == 1


def test_choice_of_the_tighter_crop():
    rng = np.random.default_rng(1)
    rows = CentreRows()
    for k in range(300):  # large objects: both crops off by independent noise, so their mean is better
        big = k % 3 == 0
        g = rng.uniform(50, 400, 2)
        rows.gold.append(g), rows.dense.append(g + rng.normal(0, 4.0, 2))
        rows.crop.append(g + rng.normal(0, 3.0 if big else 0.3, 2))
        rows.zoom.append(g + rng.normal(0, 3.0 if big else 20.0, 2))  # small ones: the tight crop is useless
        rows.side.append(0.3 if big else 0.1)
    assert np.allclose(rows.crops(0.0), rows.crop)
    both = rows.crops(0.2)
    assert np.allclose(both[0], (rows.crop[0] + rows.zoom[0]) / 2) and np.allclose(both[1], rows.crop[1])
    cfg = SceneParserConfig(refine_centre=True)
    table = choose_centre(cfg, rows, (0.5, 1.0), zoom=ZOOM_FROM)
    assert cfg.refine_zoom_from == table["zoom_from"] and 0.1 < cfg.refine_zoom_from <= 0.3
    assert cfg.refine_centre_weight == 1.0
    assert len(table["grid"]) == 2 * (1 + len(ZOOM_FROM))
    # without the tighter crops' centres the zoom is not chosen (and a stale one is cleared)
    table = choose_centre(cfg, rows, (0.5, 1.0))
    assert cfg.refine_zoom_from == 0.0 == table["zoom_from"]
    # where the tight crop is no better, off wins the tie-break
    rows.zoom = list(rows.crop)
    choose_centre(cfg, rows, (0.5, 1.0), zoom=ZOOM_FROM)
    assert cfg.refine_zoom_from == 0.0
    with pytest.raises(ValueError, match="no tighter"):
        _no_zoom_rows().crops(0.2)


def _no_zoom_rows():
    rows = CentreRows()
    rows.gold, rows.dense, rows.crop, rows.side = [np.zeros(2)], [np.zeros(2)], [np.zeros(2)], [0.5]
    return rows


def test_both_runtimes_read_the_tighter_crop_alike(tmp_path):
    from PIL import Image
    model = _centre_model(tmp_path)
    with torch.no_grad():  # a centre head that reads the crop
        model.refine.centre.weight.normal_(0, 0.02)
    model.cfg.refine_zoom_from = 0.001  # every box
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    t, n = load_scene_parser(tmp_path / "sp.pt"), NumpySceneParser.load(tmp_path / "sp.npz")
    assert t.cfg.refine_zoom_from == n.cfg.refine_zoom_from == 0.001 and n.cfg.refine_zoom_context == 1.3
    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (96, 144, 3), dtype=np.uint8))
    g_t, g_n = t.parse_image(image), n.parse_image(image)
    assert len(g_t.objects) == len(g_n.objects) > 0
    for p, q in zip(g_t.objects, g_n.objects):
        assert np.allclose(p.bbox, q.bbox, atol=1e-3)
    n.cfg.refine_zoom_from = 0.0
    off = n.parse_image(image)
    assert max(abs(p.bbox[0] - q.bbox[0]) + abs(p.bbox[1] - q.bbox[1]) for p, q in zip(g_n.objects, off.objects)) > 1e-3
