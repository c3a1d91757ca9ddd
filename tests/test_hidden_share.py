"""How much of an object other objects hide (`vqa.vision.data.hidden_shares`), and the second
stage's centre loss that weights the hidden objects up (`RefineConfig.hidden_weight`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqa.datasets.blender.driver import hidden_share, hull_area, project
from vqa.datasets.synth.geometry import Solid
from vqa.vision.data import hidden_shares
from vqa.vision.refine import HIDDEN_FLOOR, hidden_loss_weights

W, H = 160, 120


def _camera(location=(7.4, -6.9, 5.0), focal=260.0):
    """A Blender-style world_to_camera (the camera looks along its -z, y up) aimed at the origin."""
    c = np.asarray(location, float)
    forward = -c / np.linalg.norm(c)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    R = np.stack([right, up, -forward])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ c
    return M, focal


def _silhouette_pixels(solid: Solid, M: np.ndarray, focal: float) -> int:
    """Pixels whose centre ray hits the solid, by ray casting (independent of the hull)."""
    v, u = np.mgrid[0:H, 0:W].astype(float) + 0.5
    d_cam = np.stack([(u - W / 2) / focal, -(v - H / 2) / focal, -np.ones_like(u)], -1).reshape(-1, 3)
    R, t = M[:3, :3], M[:3, 3]
    dirs = d_cam @ R  # R^T d for each row
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = -R.T @ t
    hit = solid.intersect(np.broadcast_to(origin, dirs.shape).copy(), dirs)
    return int(np.isfinite(hit).sum())


def test_hull_area():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [0.5, 1.5], [2, 1]], float)
    assert hull_area(square) == pytest.approx(4.0)
    assert hull_area(np.array([[0, 0], [4, 0], [0, 3], [1, 1]], float)) == pytest.approx(6.0)
    assert hull_area(np.array([[0, 0], [1, 1], [2, 2]], float)) == pytest.approx(0.0)
    assert hull_area(np.array([[0, 0], [1, 1]], float)) == 0.0


@pytest.mark.parametrize("shape,xyz,rot", [("sphere", (0.5, -0.3, 0.7), 0.0), ("cylinder", (-1.0, 0.8, 0.7), 30.0),
                                           ("cube", (1.2, 1.0, 0.35), 40.0), ("cube", (-0.5, -1.5, 0.7), 10.0)])
def test_hidden_share_against_a_ray_cast_silhouette(shape, xyz, rot):
    """An object showing all of its ray-cast silhouette is hardly hidden; showing half, half hidden."""
    M, focal = _camera()
    s = 0.7 if xyz[2] == 0.7 else 0.35
    solid = Solid(shape, xyz, math.radians(rot), s)
    full = _silhouette_pixels(solid, M, focal)
    assert full > 200
    obj = {"shape": shape, "3d_coords": list(xyz), "rotation": rot, "half_extent": s, "visible_pixels": full}
    rec = {"width": W, "height": H, "objects": [obj, {**obj, "visible_pixels": full // 2}],
           "blender": {"world_to_camera": M.tolist(), "focal_px": focal}}
    shown, half = hidden_shares(rec)
    assert shown == pytest.approx(0.0, abs=0.04)
    assert half == pytest.approx(0.5, abs=0.03)
    # the hull is the projected solid's: its points project inside it
    px, py = project(solid.surface_points(), M, focal, W, H)
    assert hull_area(np.stack([px, py], 1)) == pytest.approx(full, rel=0.04)


def test_hidden_share_unknown_is_zero():
    M, focal = _camera()
    obj = {"shape": "sphere", "3d_coords": [0, 0, 0.7], "rotation": 0, "half_extent": 0.7, "visible_pixels": 10}
    with_cam = {"width": W, "height": H, "blender": {"world_to_camera": M.tolist(), "focal_px": focal}}
    assert hidden_shares({**with_cam, "objects": [obj]})[0] > 0.9
    assert hidden_shares({"width": W, "height": H, "objects": [obj, obj]}) == [0.0, 0.0]  # no camera
    no_count = {k: v for k, v in obj.items() if k != "visible_pixels"}
    assert hidden_shares({**with_cam, "objects": [obj, no_count]}) == [0.0, 0.0]  # one object lacks its count
    assert hidden_shares({**with_cam, "objects": [{**obj, "visible_pixels": 10 ** 6}]}) == [0.0]  # clipped at 0


def test_hidden_loss_weights():
    w = hidden_loss_weights(np.array([0.0, HIDDEN_FLOOR, 0.6, 1.0]), 10.0)
    assert np.allclose(w, [1.0, 1.0, 1.0 + 10 * (0.6 - HIDDEN_FLOOR) / (1 - HIDDEN_FLOOR), 11.0])
    assert np.allclose(hidden_loss_weights(np.array([0.3, 0.9]), 0.0), 1.0)


def test_refiner_weights_hidden_centres(tmp_path, monkeypatch):
    """With every object known to be mostly hidden the weighted centre loss trains the second
    stage differently; with none known (synthetic scenes) the weight changes nothing."""
    from vqa.datasets.synth.generate import generate_dataset
    from vqa.vision import data as data_mod
    from vqa.vision.refine import RefineConfig, train_refiner
    from vqa.vision.scene_parser import load_scene_parser
    root = tmp_path / "synth"
    generate_dataset(root, num_scenes=3, questions_per_scene=0, seed=5, image_size=(192, 128))

    def trained(name, weight):
        cfg = RefineConfig(data=str(root), out=str(tmp_path / name), epochs=1, batch_size=8, size=16,
                           channels=(8, 8, 8), warmup_steps=1, weights=(0.0, 1.0), centre=True, hidden_weight=weight)
        train_refiner(cfg, log=lambda *_: None)
        return load_scene_parser(tmp_path / name / "scene_parser.pt").refine.state_dict()

    base, unknown = trained("w0", 0.0), trained("w10", 10.0)
    assert all(torch.equal(v, unknown[k]) for k, v in base.items())
    monkeypatch.setattr(data_mod, "hidden_shares", lambda rec: [0.9] * len(rec["objects"]))
    hidden = trained("w10h", 10.0)
    assert not all(torch.equal(v, hidden[k]) for k, v in base.items())
    with pytest.raises(Exception, match="hidden weight"):
        train_refiner(RefineConfig(data=str(root), out=str(tmp_path / "bad"), epochs=1, hidden_weight=-1.0),
                      log=lambda *_: None)


def test_evaluation_reads_the_hidden_shares_of_the_records_that_tell_them(tmp_path):
    import json

    from vqa.vision.evaluate import _gold_and_hidden
    M, focal = _camera()
    obj = {"shape": "sphere", "size": "large", "material": "rubber", "color": "red", "3d_coords": [0, 0, 0.7],
           "rotation": 0, "pixel_coords": [80, 60, 10.0], "half_extent": 0.7, "visible_pixels": 10}
    told = {"image_filename": "CLEVR_val_000000.png", "width": W, "height": H, "objects": [obj],
            "blender": {"world_to_camera": M.tolist(), "focal_px": focal}}
    untold = {"image_filename": "CLEVR_val_000001.png", "objects": [obj]}
    f = tmp_path / "scenes.json"
    f.write_text(json.dumps({"scenes": [told, untold]}))
    gold, shares = _gold_and_hidden(f)
    assert list(gold) == ["CLEVR_val_000000", "CLEVR_val_000001"]
    assert list(shares) == ["CLEVR_val_000000"] and shares["CLEVR_val_000000"][0] > 0.9
