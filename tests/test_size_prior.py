"""The size prior of the second stage: the box each object should have from its shape, size and
place in the image (`fit_size_prior`, `expected_box`), the second reading of boxes far from it
(`refine_detections`), its life in checkpoints and both runtimes, and `vqa scene --fit-size`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vqa.errors import VQAError
from vqa.runtime.checkpoints import export_npz
from vqa.runtime.scene_parser import NumpySceneParser
from vqa.vision.core import SceneParserConfig, crop_geometry, expected_box, n_attribute_logits, refine_detections
from vqa.vision.refine import SIZE_PRIOR_MIN, fit_size_prior
from vqa.vision.scene_parser import SceneParser, checkpoint_dict, load_scene_parser

TINY = dict(image_size=(64, 96), stem_channels=(8, 16), dim=32, depth=1, n_heads=4, up_channels=8, head_channels=16)
# per "shape/size": width and height / image width = c0 + c1 x / W + c2 y / H
TRUE = {"cube/large": [[0.10, 0.00, 0.20], [0.08, 0.01, 0.25]],
        "sphere/small": [[0.05, 0.00, 0.10], [0.05, 0.00, 0.10]]}


def _write_scenes(root, split="train", *, n_per_class=30, boxes=True, seed=0, W=480, H=320, extra=()):
    """A CLEVR-layout scenes file whose objects' amodal boxes follow `TRUE` exactly (plus `extra`
    objects: (shape, size) pairs with arbitrary boxes)."""
    rng = np.random.default_rng(seed)
    scenes = []
    classes = [k.split("/") for k in TRUE for _ in range(n_per_class)] + [list(e) for e in extra]
    for i in range(0, len(classes), 5):
        objects = []
        for shape, size in classes[i:i + 5]:
            x, y = rng.uniform(20, W - 20), rng.uniform(20, H - 20)
            coef = np.asarray(TRUE.get(f"{shape}/{size}", [[0.2, 0.1, 0.0], [0.2, 0.0, 0.1]]))
            w, h = coef @ np.array([1.0, x / W, y / H]) * W
            o = {"shape": shape, "size": size, "color": "red", "material": "rubber",
                 "pixel_coords": [round(x), round(y), 10.0], "3d_coords": [0.0, 0.0, 0.35], "rotation": 0.0}
            o["pixel_coords"][:2] = [x, y]  # sub-pixel, so that the fit is exact
            if boxes:
                o["bbox"] = [x - w / 2, y - h / 2, w, h]
            objects.append(o)
        scenes.append({"split": split, "image_index": i // 5, "image_filename": f"CLEVR_{split}_{i // 5:06d}.png",
                       "width": W, "height": H, "objects": objects, "relationships": {}, "directions": {}})
    (root / "scenes").mkdir(parents=True, exist_ok=True)
    (root / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"info": {}, "scenes": scenes}))
    return root


def test_fit_recovers_the_boxes_and_skips_rare_classes(tmp_path):
    root = _write_scenes(tmp_path / "r", extra=[("cylinder", "large")] * (SIZE_PRIOR_MIN - 1))
    out = fit_size_prior([root], "train")
    assert set(out["prior"]) == set(TRUE)  # 19 large cylinders are too few to fit
    for key, coef in TRUE.items():
        assert np.allclose(out["prior"][key], coef, atol=1e-9)
        assert out["classes"][key]["objects"] == 30 and out["classes"][key]["spread"] < 1e-9
    # a second folder adds its objects
    two = fit_size_prior([root, _write_scenes(tmp_path / "s", seed=1)], "train")
    assert two["classes"]["cube/large"]["objects"] == 60
    # values the parser does not know are left out
    only = fit_size_prior([root], "train", attributes={"shape": ["sphere", "cylinder"], "size": ["small", "large"]})
    assert set(only["prior"]) == {"sphere/small"}


def test_fit_refuses_scenes_without_amodal_boxes_and_missing_files(tmp_path):
    root = _write_scenes(tmp_path / "r", boxes=False)
    with pytest.raises(VQAError, match=r"object 0 has no amodal box \(bbox\) or pixel_coords"):
        fit_size_prior([root], "train")
    with pytest.raises(VQAError, match="no scenes file for split 'val'"):
        fit_size_prior([root], "val")
    few = _write_scenes(tmp_path / "few", n_per_class=3)
    with pytest.raises(VQAError, match=f"no shape and size with {SIZE_PRIOR_MIN} objects"):
        fit_size_prior([few], "train")


def _cfg(**kw):
    return SceneParserConfig(**{"refine_size": 8, "refine_centre": True, "refine_centre_weight": 1.0,
                                "refine_context": 1.5, "refine_weight": {"shape": 1.0, "size": 1.0},
                                "refine_size_prior": TRUE, **kw})


def test_expected_box_averages_the_prior_over_the_read_shapes_and_sizes():
    cfg = _cfg()
    shapes, sizes = cfg.attributes["shape"], cfg.attributes["size"]
    H, W = 80, 120
    centres = np.array([[60.0, 40.0]] * 4)
    shape = np.zeros((len(shapes), 4))
    size = np.zeros((len(sizes), 4))
    # 0: a sure large cube; 1: half large cube, half small sphere; 2: a large cylinder (unknown to
    # the prior); 3: a cube, large or small: the prior knows only the large one
    shape[shapes.index("cube"), [0, 3]] = 1
    shape[shapes.index("cube"), 1] = shape[shapes.index("sphere"), 1] = 0.5
    shape[shapes.index("cylinder"), 2] = 1
    size[sizes.index("large"), [0, 2]] = 1
    size[sizes.index("large"), 1] = size[sizes.index("small"), 1] = 0.5
    size[:, 3] = 0.5
    got = expected_box(cfg, shape, size, centres, (H, W))
    x = np.array([1.0, 0.5, 0.5])
    cube, sphere = (np.asarray(TRUE[k]) @ x * W for k in ("cube/large", "sphere/small"))
    assert np.allclose(got[0], cube)
    # half x half weights: the large cube and the small sphere weigh 0.25 each, renormalised
    assert np.allclose(got[1], (cube + sphere) / 2)
    assert np.isnan(got[2]).all()
    assert np.allclose(got[3], cube)


def _fake_refine(cfg, log):
    """A crop net reading "large cube" whose centre offset tells the crop's side: the offset's x
    is log(crop side / input width) / 100 (as a fraction of the crop side). Logs the crops' sides."""
    K = n_attribute_logits(cfg)
    shapes, sizes = cfg.attributes["shape"], cfg.attributes["size"]
    names = list(cfg.attributes)
    start = {c: sum(len(cfg.attributes[d]) for d in names[:names.index(c)]) for c in names}

    def refine(crops, geometry):
        out = np.zeros((len(crops), K + 2), np.float32)
        out[:, start["shape"] + shapes.index("cube")] = 20.0
        out[:, start["size"] + sizes.index("large")] = 20.0
        out[:, K] = geometry[:, 0] / 100.0
        log.append(np.exp(geometry[:, 0]))
        return out
    return refine


def test_boxes_far_from_their_expected_size_are_read_again_from_a_crop_of_that_size():
    cfg = _cfg()
    H, W = 80, 120
    want = np.asarray(TRUE["cube/large"]) @ np.array([1.0, 0.5, 0.5]) * W  # expected (w, h) at the centre
    side = want.max()
    # longer sides: 0.5 x, 0.95 x, 1.0 x, 1.3 x the expected one (band 0.9-1.1: the first and last again)
    scale = np.array([0.5, 0.95, 1.0, 1.3])
    boxes = np.stack([np.full(4, 60.0), np.full(4, 40.0), side * scale, side * scale * 0.8], 1)
    logits = {c: np.zeros((len(v), 4), np.float32) for c, v in cfg.attributes.items()}
    det = {"boxes": boxes.copy(), "logits": logits}
    log = []
    refine_detections([det], np.zeros((1, 3, H, W), np.float32), cfg, _fake_refine(cfg, log))
    assert len(log) == 2 and np.allclose(log[0] * W, 1.5 * boxes[:, 2])  # first every box's own crop
    # then two at the side expected at their first-read centres (moved < 0.5 px: the same side within 0.01)
    assert np.allclose(log[1] * W, 1.5 * side, atol=0.01)
    crop = 1.5 * np.where((scale < 0.9) | (scale > 1.1), side, boxes[:, 2])
    moved = det["boxes"][:, 0] - boxes[:, 0]
    assert np.allclose(moved, np.log(crop / W) / 100 * crop, atol=1e-3)
    assert np.allclose(det["boxes"][:, 2:], boxes[:, 2:])  # the boxes keep their own size
    # without a prior, or with a band holding them all, nothing is read again
    for kw in ({"refine_size_prior": {}}, {"refine_size_band": (0.4, 1.4)}):
        det2, log2 = {"boxes": boxes.copy(), "logits": logits}, []
        refine_detections([det2], np.zeros((1, 3, H, W), np.float32), _cfg(**kw), _fake_refine(cfg, log2))
        assert len(log2) == 1
        assert np.allclose(det2["boxes"][:, 0] - boxes[:, 0], np.log(1.5 * boxes[:, 2] / W) / 100 * 1.5 * boxes[:, 2],
                           atol=1e-5)


def test_prior_survives_checkpoints_and_both_runtimes_read_alike(tmp_path):
    from PIL import Image
    torch.manual_seed(1)
    cfg = SceneParserConfig(**TINY, refine_size=16, refine_channels=(8, 12, 16), refine_source="image",
                            refine_centre=True, refine_centre_weight=1.0, refine_geometry=True,
                            refine_weight={"shape": 0.5, "size": 0.5})
    model = SceneParser(cfg).eval()
    with torch.no_grad():
        model.out.bias[0] = 0.0  # objectness peaks everywhere: detections to read
        model.refine.centre.weight.normal_(0, 0.02)
    # every shape and size expects a box far larger than any detection: all are read again
    model.cfg.refine_size_prior = {f"{a}/{b}": [[0.5, 0.0, 0.0], [0.4, 0.0, 0.0]]
                                   for a in cfg.attributes["shape"] for b in cfg.attributes["size"]}
    model.cfg.refine_size_band = (0.8, 1.2)
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    export_npz(tmp_path / "sp.pt")
    t, n = load_scene_parser(tmp_path / "sp.pt"), NumpySceneParser.load(tmp_path / "sp.npz")
    assert t.cfg.refine_size_prior == n.cfg.refine_size_prior == model.cfg.refine_size_prior
    assert t.cfg.refine_size_band == n.cfg.refine_size_band == (0.8, 1.2)
    assert SceneParserConfig.from_dict(json.loads(json.dumps(t.cfg.to_dict()))) == t.cfg
    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (96, 144, 3), dtype=np.uint8))
    g_t, g_n = t.parse_image(image), n.parse_image(image)
    assert len(g_t.objects) == len(g_n.objects) > 0
    for p, q in zip(g_t.objects, g_n.objects):
        assert np.allclose(p.bbox, q.bbox, atol=1e-3)
    n.cfg.refine_size_prior = {}
    off = n.parse_image(image)
    assert max(abs(p.bbox[0] - q.bbox[0]) + abs(p.bbox[1] - q.bbox[1]) for p, q in zip(g_n.objects, off.objects)) > 1e-3
    assert all(np.allclose(p.bbox[2:], q.bbox[2:], atol=1e-3) for p, q in zip(g_n.objects, off.objects))


def test_cli_fit_size_saves_the_prior(tmp_path, capsys):
    from vqa.cli import main
    torch.manual_seed(0)
    model = SceneParser(SceneParserConfig(**TINY, refine_size=16, refine_channels=(8, 12, 16), refine_centre=True,
                                          refine_centre_weight=0.75)).eval()
    torch.save(checkpoint_dict(model), tmp_path / "sp.pt")
    root = _write_scenes(tmp_path / "r")
    rc = main(["scene", "--fit-size", str(root), "--split", "train", "--size-band", "0.85", "1.15",
               "--checkpoint", str(tmp_path / "sp.pt"), "--save", str(tmp_path / "out.pt")])
    out = capsys.readouterr().out
    assert rc == 0 and "cube/large: 30 objects" in out and "under 0.85 or over 1.15" in out and "saved:" in out
    fitted = load_scene_parser(tmp_path / "out.pt")
    assert set(fitted.cfg.refine_size_prior) == set(TRUE) and fitted.cfg.refine_size_band == (0.85, 1.15)
    assert math.isclose(fitted.cfg.refine_size_prior["sphere/small"][1][2], 0.10, abs_tol=1e-9)
    rec = torch.load(tmp_path / "out.pt", map_location="cpu", weights_only=True)["fitted_size"]
    assert rec["data"] == [str(root)] and rec["split"] == "train" and rec["band"] == [0.85, 1.15]
    for a, b in zip(fitted.state_dict().values(), model.state_dict().values()):  # the weights are the same
        assert torch.equal(a, b)
    # bad input: one clear line each, exit code 2
    capsys.readouterr()
    assert main(["scene", "--fit-size", str(root), "--split", "train", "--size-band", "1.1", "1.2",
                 "--checkpoint", str(tmp_path / "sp.pt")]) == 2
    assert "--size-band: expected 0 < LO <= 1 <= HI, got 1.1 1.2" in capsys.readouterr().err
    bare = SceneParser(SceneParserConfig(**TINY)).eval()
    torch.save(checkpoint_dict(bare), tmp_path / "bare.pt")
    assert main(["scene", "--fit-size", str(root), "--split", "train", "--checkpoint", str(tmp_path / "bare.pt")]) == 2
    assert "no second stage regressing centres" in capsys.readouterr().err
    assert main(["scene", "--fit-size", str(_write_scenes(tmp_path / "nb", boxes=False)), "--split", "train",
                 "--checkpoint", str(tmp_path / "sp.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no amodal box (bbox)" in err[0]
