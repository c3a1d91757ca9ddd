"""Synthetic CLEVR-like world: scene layout (CLEVR's placement rules) and the renderer."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vqa.datasets.synth.camera import Camera
from vqa.datasets.synth.geometry import half_extent
from vqa.datasets.synth.render import render_layers, render_scene
from vqa.datasets.synth.scenes import generate_scene, min_visible_pixels_for, object_bbox, sample_scene
from vqa.ontology import CLEVR_ATTRIBUTES
from vqa.scene import SceneGraph, clevr_relations, clevr_relationships

SIZE = (160, 120)  # small images keep the tests fast; geometry scales with the image


def _scenes(n=12, size=SIZE):
    rng = np.random.default_rng(123)
    return [sample_scene(rng, image_size=size) for _ in range(n)]


def _object_scene(shape, material, color, xy, size="large", rotation=30.0, image_size=SIZE):
    cam = Camera.at((7.36, -6.93, 4.96), width=image_size[0], height=image_size[1])
    o = {"3d_coords": [xy[0], xy[1], half_extent(shape, size)], "rotation": rotation, "size": size,
         "color": color, "material": material, "shape": shape}
    px, py, d = cam.project(np.array([o["3d_coords"]]))
    o["pixel_coords"] = [int(round(px[0])), int(round(py[0])), float(d[0])]
    o["bbox"] = object_bbox(o, cam)
    return {"objects": [o], "width": image_size[0], "height": image_size[1], "camera": cam.to_dict(),
            "directions": cam.directions()}


def test_same_seed_same_record_and_image_bytes():
    rec_a, img_a = generate_scene(np.random.default_rng(5), image_size=SIZE, split="val", index=42)
    rec_b, img_b = generate_scene(np.random.default_rng(5), image_size=SIZE, split="val", index=42)
    assert json.dumps(rec_a, sort_keys=True) == json.dumps(rec_b, sort_keys=True)
    assert img_a.tobytes() == img_b.tobytes()
    rec_c, img_c = generate_scene(np.random.default_rng(6), image_size=SIZE)
    assert img_c.tobytes() != img_a.tobytes()
    assert rec_a["image_filename"] == "CLEVR_val_000042.png"
    assert (rec_a["split"], rec_a["image_index"]) == ("val", 42)
    assert img_a.mode == "RGB" and img_a.size == SIZE


def test_records_have_clevr_fields_and_values():
    for rec in _scenes():
        assert 3 <= len(rec["objects"]) <= 10
        assert (rec["width"], rec["height"]) == SIZE
        assert set(rec["directions"]) == {"left", "right", "front", "behind", "above", "below"}
        json.dumps(rec)  # serialisable
        for o in rec["objects"]:
            for cat, values in CLEVR_ATTRIBUTES.items():
                assert o[cat] in values
            assert o["3d_coords"][2] == pytest.approx(half_extent(o["shape"], o["size"]), abs=1e-3)
            assert 0 <= o["rotation"] < 360
            px, py, depth = o["pixel_coords"]
            assert isinstance(px, int) and isinstance(py, int) and depth > 0
        sg = SceneGraph.from_clevr(rec)
        assert len(sg.objects) == len(rec["objects"])
        assert (sg.width, sg.height) == SIZE


def test_object_count_bounds():
    rng = np.random.default_rng(0)
    counts = [len(sample_scene(rng, image_size=SIZE)["objects"]) for _ in range(40)]
    assert min(counts) >= 3 and max(counts) <= 10 and len(set(counts)) > 3
    assert all(len(sample_scene(rng, image_size=SIZE, min_objects=5, max_objects=5)["objects"]) == 5
               for _ in range(5))


def test_directions_are_camera_aligned_ground_vectors():
    d = _scenes(1)[0]["directions"]
    for r in ("left", "right", "front", "behind"):
        assert d[r][2] == 0 and math.hypot(*d[r][:2]) == pytest.approx(1, abs=1e-5)
    assert np.allclose(d["left"], -np.asarray(d["right"])) and np.allclose(d["front"], -np.asarray(d["behind"]))
    assert abs(np.dot(d["left"], d["front"])) < 1e-5
    cam = Camera.at((7.36, -6.93, 4.96), width=SIZE[0], height=SIZE[1])
    # a point further "behind" is further from the camera and higher in the frame
    _, y_near, z_near = cam.project(np.array([[0, 0, 0]]))
    _, y_far, z_far = cam.project(np.array([d["behind"]]) * 2)
    assert z_far[0] > z_near[0] and y_far[0] < y_near[0]
    # a point to the "left" lands left in the image
    x_c, _, _ = cam.project(np.array([[0, 0, 0]]))
    x_l, _, _ = cam.project(np.array([d["left"]]))
    assert x_l[0] < x_c[0]


def test_relationships_follow_clevr_rule_and_margins():
    for rec in _scenes():
        pos = np.array([o["3d_coords"] for o in rec["objects"]])
        dirs = rec["directions"]
        expected = clevr_relationships(clevr_relations(pos.tolist(), dirs), len(pos))
        assert rec["relationships"] == expected
        for r in ("left", "right", "front", "behind"):
            v = np.asarray(dirs[r])
            for i in range(len(pos)):
                mine = {j for j in range(len(pos)) if j != i and (pos[j] - pos[i]) @ v > 0.2}
                assert set(rec["relationships"][r][i]) == mine
                for j in range(len(pos)):
                    if j != i:  # CLEVR's margin: never 0 < separation < 0.4 along a direction
                        assert not 0 < (pos[j] - pos[i]) @ v < 0.4
        # with the margin every pair is ordered both left/right and front/behind
        n = len(pos)
        for i in range(n):
            assert len(rec["relationships"]["left"][i]) + len(rec["relationships"]["right"][i]) == n - 1
            assert len(rec["relationships"]["front"][i]) + len(rec["relationships"]["behind"][i]) == n - 1


def test_minimum_distance():
    radius = {"large": 0.7, "small": 0.35}
    for rec in _scenes():
        objs = rec["objects"]
        for i, a in enumerate(objs):
            assert max(abs(a["3d_coords"][0]), abs(a["3d_coords"][1])) <= 3.0
            for b in objs[i + 1:]:
                gap = math.dist(a["3d_coords"][:2], b["3d_coords"][:2]) - radius[a["size"]] - radius[b["size"]]
                assert gap >= 0.25 - 1e-3


def test_perspective_far_objects_smaller_and_higher():
    near = _object_scene("sphere", "rubber", "red", (2.0, -2.0))["objects"][0]
    far = _object_scene("sphere", "rubber", "red", (-2.0, 2.0))["objects"][0]
    assert far["pixel_coords"][2] > near["pixel_coords"][2]
    assert far["bbox"][2] < near["bbox"][2] and far["bbox"][3] < near["bbox"][3]
    assert far["pixel_coords"][1] < near["pixel_coords"][1]


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder"])
def test_lone_object_pixels_are_where_its_box_says(shape):
    scene = _object_scene(shape, "rubber", "gray", (0.5, -0.5), rotation=20.0)
    empty = {**scene, "objects": []}
    lone = render_layers(scene, np.random.default_rng(1), shadows=False, noise=False)
    floor = render_layers(empty, np.random.default_rng(1), shadows=False, noise=False)
    diff = np.abs(lone.image.astype(int) - floor.image.astype(int)).max(axis=2)
    changed = np.argwhere(diff > 2)  # (row, col)
    x, y, w, h = scene["objects"][0]["bbox"]
    assert len(changed) > 100
    assert changed[:, 1].min() >= math.floor(x) - 1 and changed[:, 1].max() <= math.ceil(x + w)
    assert changed[:, 0].min() >= math.floor(y) - 1 and changed[:, 0].max() <= math.ceil(y + h)
    # the box is tight: the changed pixels span it (within two pixels)
    assert changed[:, 1].max() - changed[:, 1].min() + 1 >= w - 2
    assert changed[:, 0].max() - changed[:, 0].min() + 1 >= h - 2
    ids = lone.object_id
    assert (diff[ids == 0] > 2).mean() > 0.95
    # with shadows on, the floor darkens outside the box (the shadow) but not brighter
    shadowed = render_layers(scene, np.random.default_rng(1), noise=False)
    outside = np.ones_like(diff, bool)
    outside[max(int(y) - 1, 0):int(math.ceil(y + h)) + 1, max(int(x) - 1, 0):int(math.ceil(x + w)) + 1] = False
    delta = shadowed.image.astype(int) - floor.image.astype(int)
    assert (delta[outside] <= 0).all() and (delta[outside] < -10).any()


def test_objects_in_full_scene_cover_their_boxes_and_are_visible():
    rng = np.random.default_rng(11)
    need = min_visible_pixels_for(SIZE)
    for k in range(3):
        rec, img = generate_scene(rng, image_size=SIZE, index=k)
        layers = render_layers(rec, np.random.default_rng(k))
        ids = layers.object_id
        for i, o in enumerate(rec["objects"]):
            x, y, w, h = o["bbox"]
            assert x >= 0 and y >= 0 and x + w <= SIZE[0] + 1e-6 and y + h <= SIZE[1] + 1e-6
            rows, cols = np.nonzero(ids == i)
            assert len(rows) > 0
            assert cols.min() >= math.floor(x) - 1 and cols.max() <= math.ceil(x + w)
            assert rows.min() >= math.floor(y) - 1 and rows.max() <= math.ceil(y + h)
        assert min(layers.visible) >= need
        _, visible = render_scene(rec, np.random.default_rng(0))
        assert visible == layers.visible  # visibility depends on geometry only


def test_metal_and_rubber_look_different():
    rubber = render_layers(_object_scene("sphere", "rubber", "blue", (0, 0)), np.random.default_rng(2), noise=False)
    metal = render_layers(_object_scene("sphere", "metal", "blue", (0, 0)), np.random.default_rng(2), noise=False)
    m = rubber.object_id == 0
    assert (metal.object_id == 0).sum() == m.sum()
    r_px, m_px = rubber.image[m].astype(float), metal.image[m].astype(float)
    assert np.abs(r_px - m_px).mean() > 15
    # metal: sharper contrast (bright highlight, dark reflected floor); rubber: gentle shading
    assert m_px.sum(axis=1).std() > 1.3 * r_px.sum(axis=1).std()
    assert m_px.max() > 240


def test_renders_a_released_clevr_record():
    """A record as in CLEVR's scenes file (no width/height/camera/bbox) renders at 480x320."""
    record = {"objects": [{"3d_coords": [0.5, -1.0, 0.7], "rotation": 10.0, "size": "large", "color": "cyan",
                           "material": "metal", "shape": "sphere", "pixel_coords": [0, 0, 0.0]},
                          {"3d_coords": [-1.5, 1.5, 0.35], "rotation": 80.0, "size": "small", "color": "brown",
                           "material": "rubber", "shape": "cylinder", "pixel_coords": [0, 0, 0.0]}]}
    img, visible = render_scene(record, np.random.default_rng(0))
    assert img.size == (480, 320) and all(v > 200 for v in visible)
