"""The Blender renderer (`vqa generate --renderer blender`): tiny renders, skipped without Blender."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from vqa.datasets.blender import driver
from vqa.datasets.blender.driver import BlenderError, BlenderProcess, blender_command, count_mask_pixels, mask_labels, project


def _command_or_skip():
    try:
        return blender_command()
    except BlenderError:
        pytest.skip("no Blender (no `blender` on PATH, no Python module bpy)")


def test_mask_pixels_are_counted_per_code(tmp_path):
    codes = [[255, 0, 0], [0, 188, 0], [0, 0, 255]]
    a = np.zeros((10, 20, 3), np.uint8)
    a[0:2, 0:5] = codes[0]            # 10 pixels
    a[5:8, 10:14] = codes[1]          # 12 pixels
    a[9, 19] = [0, 186, 1]            # within the tolerance of code 1
    p = tmp_path / "m.png"
    Image.fromarray(a).save(p)
    assert count_mask_pixels(p, codes, 3) == [10, 13, 0]
    lab = mask_labels(p, codes, 3)
    assert lab[0, 0] == 0 and lab[6, 11] == 1 and lab[3, 3] == -1


def test_missing_blender_program_is_one_clear_error():
    with pytest.raises(BlenderError, match="apt-get install -y blender"):
        blender_command("/nonexistent/blender")


def test_cli_reports_missing_blender(tmp_path, capsys):
    from vqa.cli import main

    code = main(["generate", "--renderer", "blender", "--blender", "/nonexistent/blender", "--out", str(tmp_path),
                 "--num-scenes", "1", "--questions-per-scene", "0", "--seed", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_render(tmp_path_factory):
    _command_or_skip()
    out = tmp_path_factory.mktemp("blender")
    summary = driver.render_dataset(out, num_scenes=2, questions_per_scene=3, seed=4, split="val",
                                    image_size=(96, 64), samples=2, workers=1, timeout=120)
    return out, summary


def test_tiny_render_writes_the_clevr_tree(tiny_render):
    from vqa.datasets.clevr import CLEVRDataset

    out, s = tiny_render
    assert s["rendered_now"] == 2 and not s["failed"] and s["num_scenes"] == 2
    scenes = json.loads((out / "scenes" / "CLEVR_val_scenes.json").read_text())["scenes"]
    assert [sc["image_index"] for sc in scenes] == [0, 1]
    for sc in scenes:
        im = Image.open(out / "images" / "val" / sc["image_filename"])
        assert im.size == (96, 64)
        assert set(sc["directions"]) == {"left", "right", "front", "behind", "above", "below"}
        assert 3 <= len(sc["objects"]) <= 10
        for o in sc["objects"]:
            assert {"3d_coords", "pixel_coords", "rotation", "size", "color", "material", "shape"} <= set(o)
            assert o["visible_pixels"] >= 8  # CLEVR's 200 at 480x320, scaled to 96x64
        # relationships follow the directions (CLEVR's rule: dot > 0.2)
        xyz = np.array([o["3d_coords"] for o in sc["objects"]])
        for r in ("left", "right", "front", "behind"):
            v = np.array(sc["directions"][r])
            for i in range(len(xyz)):
                want = [j for j in range(len(xyz)) if j != i and float((xyz[j] - xyz[i]) @ v) > 0.2]
                assert sorted(sc["relationships"][r][i]) == want
    # cubes as released CLEVR's: half-extent = the size's radius, standing on the ground
    objs = [o for sc in scenes for o in sc["objects"]]
    radius = {"large": 0.7, "small": 0.35}
    assert any(o["shape"] == "cube" for o in objs)
    for o in objs:
        assert o["half_extent"] == radius[o["size"]] and abs(o["3d_coords"][2] - radius[o["size"]]) < 1e-9
    ds = CLEVRDataset(out, "val")  # the project's reader takes the tree as it is
    assert len(list(ds.questions())) > 0 and len(list(ds.scenes())) == 2


def test_pixel_coords_land_on_the_objects(tiny_render):
    """Blender's projection of each centre (pixel_coords) against an independent numpy projection
    with the recorded camera matrix, and against the flat pre-render of the same scene."""
    out, _ = tiny_render
    scenes = json.loads((out / "scenes" / "CLEVR_val_scenes.json").read_text())["scenes"]
    proc = BlenderProcess(blender_command(), assets=None,
                          init={"width": 96, "height": 64, "samples": 1, "threads": 1, "device": "cpu"}, timeout=120)
    try:
        proc.start()
        hits = total = 0
        for sc in scenes:
            b = sc["blender"]
            xyz = np.array([o["3d_coords"] for o in sc["objects"]])
            px, py = project(xyz, b["world_to_camera"], b["focal_px"], 96, 64)
            pc = np.array([o["pixel_coords"][:2] for o in sc["objects"]], float)
            assert np.abs(np.stack([px, py], 1) - pc).max() <= 0.51
            mask = out / f"mask_{sc['image_index']}.png"
            objects = [{k: o[k] for k in ("shape", "size", "color", "material", "3d_coords", "rotation", "half_extent")}
                       for o in sc["objects"]]
            geo = proc.request({"cmd": "scene", "objects": objects, "camera_offset": b["camera_offset"],
                                "light_offsets": b["light_offsets"], "mask": str(mask)})
            assert [p[:2] for p in geo["pixel_coords"]] == [o["pixel_coords"][:2] for o in sc["objects"]]
            lab = mask_labels(mask, geo["mask_codes"], len(objects))
            depth = [o["pixel_coords"][2] for o in sc["objects"]]
            for k, o in enumerate(sc["objects"]):
                x, y = min(o["pixel_coords"][0], 95), min(o["pixel_coords"][1], 63)
                win = lab[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
                total += 1
                if (win == k).any():
                    hits += 1
                else:  # hidden at its centre: then by a nearer object
                    assert all(depth[j] < depth[k] for j in set(win.ravel().tolist()) - {-1})
                x0, y0, w, h = o["bbox"]
                assert x0 - 1 <= o["pixel_coords"][0] <= x0 + w + 1 and y0 - 1 <= o["pixel_coords"][1] <= y0 + h + 1
                ys, xs = np.nonzero(lab == k)
                assert xs.min() >= x0 - 1.5 and xs.max() <= x0 + w + 1.5 and ys.min() >= y0 - 1.5 and ys.max() <= y0 + h + 1.5
        assert hits >= total - 1
    finally:
        proc.close()


def test_rerun_resumes(tiny_render):
    out, _ = tiny_render
    img0 = out / "images" / "val" / "CLEVR_val_000000.png"
    before = img0.stat().st_mtime_ns
    s = driver.render_dataset(out, num_scenes=3, questions_per_scene=3, seed=4, split="val",
                              image_size=(96, 64), samples=2, workers=2, threads=1, timeout=120)
    assert s["already_there"] == 2 and s["rendered_now"] == 1 and s["num_scenes"] == 3
    assert img0.stat().st_mtime_ns == before
    scenes = json.loads((out / "scenes" / "CLEVR_val_scenes.json").read_text())["scenes"]
    assert [sc["image_index"] for sc in scenes] == [0, 1, 2]


@pytest.mark.slow
def test_official_asset_path(tmp_path, clevr_official):
    _command_or_skip()
    s = driver.render_dataset(tmp_path, num_scenes=1, questions_per_scene=0, seed=1, split="train",
                              image_size=(96, 64), samples=2, assets=clevr_official / "assets", timeout=120)
    assert s["rendered_now"] == 1 and s["model"] == "official"


def test_wrong_asset_file_is_one_clear_error(tmp_path):
    _command_or_skip()
    assets = tmp_path / "assets"
    (assets / "shapes").mkdir(parents=True)
    (assets / "materials").mkdir()
    (assets / "base_scene.blend").write_text("not a blend file")
    with pytest.raises(BlenderError, match="base_scene.blend is not a .blend file"):
        driver.render_dataset(tmp_path / "out", num_scenes=1, questions_per_scene=0, seed=0,
                              image_size=(96, 64), samples=1, assets=assets, timeout=60)
    os.remove(assets / "base_scene.blend")
    with pytest.raises(BlenderError, match="missing CLEVR asset file .*base_scene.blend"):
        driver.render_dataset(tmp_path / "out", num_scenes=1, questions_per_scene=0, seed=0,
                              image_size=(96, 64), samples=1, assets=assets, timeout=60)


def test_rerun_with_other_settings_is_refused(tiny_render):
    from vqa.errors import VQAError

    out, _ = tiny_render
    with pytest.raises(VQAError, match="other settings: samples 2 \\(now 3\\)"):
        driver.render_dataset(out, num_scenes=3, questions_per_scene=3, seed=4, split="val",
                              image_size=(96, 64), samples=3, timeout=60)


@pytest.mark.slow
def test_bench_render_reports_seconds_per_image():
    from vqa.datasets.blender.bench import bench_render

    _command_or_skip()
    rows = bench_render(images=1, image_size=(48, 32), samples=(1, 2), log=lambda *_: None)
    assert [r["samples"] for r in rows] == [1, 2] and all(r["s_per_image"] > 0 for r in rows)


def test_folder_of_other_cubes_is_refused(tiny_render, tmp_path):
    """Renders made before the cube option (settings without "cubes") had sqrt(2)-smaller cubes:
    a default (CLEVR-cube) rerun into such a folder is refused, a --blender-cubes synth one is not."""
    from vqa.errors import VQAError

    out, _ = tiny_render
    with pytest.raises(VQAError, match="cubes 'clevr' \\(now 'synth'\\)"):
        driver.render_dataset(out, num_scenes=2, questions_per_scene=3, seed=4, split="val",
                              image_size=(96, 64), samples=2, timeout=60, cubes="synth")
    old = tmp_path / "old"
    parts = driver.parts_dir(old, "val")
    parts.mkdir(parents=True)
    (parts / "settings.json").write_text(json.dumps({"seed": 4, "image_size": [96, 64], "samples": 2, "model": "own",
                                                     "objects": [3, 10]}))
    with pytest.raises(VQAError, match="cubes 'synth' \\(now 'clevr'\\)"):
        driver.render_dataset(old, num_scenes=1, questions_per_scene=0, seed=4, split="val",
                              image_size=(96, 64), samples=2, timeout=60)


def test_bench_render_prints_a_progress_line_per_image(monkeypatch, capsys):
    """`vqa bench render` runs for minutes: one stderr line per image, numbered over the run
    (a stand-in Blender process; no Blender needed)."""
    from vqa.cli import main

    class FakeProcess:
        def __init__(self, command, **kw):
            self.info = {}

        def start(self):
            return {"device": "CPU", "blender": "fake"}

        def close(self):
            pass

    monkeypatch.setattr(driver, "blender_command", lambda blender=None: ["fake"])
    monkeypatch.setattr(driver, "BlenderProcess", FakeProcess)
    monkeypatch.setattr(driver, "render_one", lambda proc, i, **kw: {"blender": {"render_seconds": 0.01}})
    assert main(["bench", "render", "--images", "2", "--samples", "1,4"]) == 0
    steps = [x for x in capsys.readouterr().err.splitlines() if x.startswith("vqa bench render: [")]
    assert len(steps) == 2 * 3 and steps[0].startswith("vqa bench render: [1/6] own scene model, 1 samples, cpu: warm-up")
    assert "[6/6] own scene model, 4 samples, cpu: image 2/2" in steps[-1]
    assert main(["bench", "render", "--images", "0"]) == 2
    assert "--images: at least 1" in capsys.readouterr().err


def test_object_count_is_drawn_once_per_image(monkeypatch, tmp_path):
    """CLEVR's generator keeps an image's number of objects through its retries; drawing it
    afresh per try skews the data to sparse scenes (crowded ones fail the visibility check
    more often). A stand-in Blender whose pre-render never shows every object: each try of an
    image samples the same count (no Blender needed)."""
    import vqa.datasets.synth.scenes as scenes
    from vqa.datasets.synth.camera import BASE_LOCATION

    class Stop(Exception):
        pass

    calls = []

    def fake_sample(rng, image_size, min_objects, max_objects):
        calls.append((min_objects, max_objects))
        if len(calls) % 4 == 0:
            raise Stop
        obj = {"shape": "cube", "size": "small", "color": "red", "material": "rubber",
               "3d_coords": [0.0, 0.0, 0.35], "rotation": 0.0}
        return {"camera": {"location": list(BASE_LOCATION)}, "objects": [dict(obj) for _ in range(min_objects)]}

    class Hidden:  # every object hidden in the pre-render: the try fails
        def request(self, msg):
            return {"mask_codes": [], "pixel_coords": [[1, 1, 1.0]] * len(msg["objects"])}

    monkeypatch.setattr(scenes, "sample_scene", fake_sample)
    monkeypatch.setattr(driver, "count_mask_pixels", lambda mask, codes, n: [0] * n)
    counts = []
    for index in range(16):
        del calls[:]
        with pytest.raises(Stop):
            driver.render_one(Hidden(), index, seed=5, split="train", image_size=(96, 64),
                              image_path=tmp_path / "x.png", tmp_dir=tmp_path / "tmp")
        assert len(set(calls)) == 1 and calls[0][0] == calls[0][1], calls  # one count, kept through the tries
        counts.append(calls[0][0])
    assert min(counts) >= 3 and max(counts) <= 10 and len(set(counts)) >= 4, counts


def test_min_hidden_keeps_scenes_with_a_hidden_object(tmp_path):
    """`min_hidden`: every scene has an object at least that share hidden (as the evaluation
    measures it from the record), and the folder remembers the setting."""
    from vqa.errors import VQAError
    from vqa.vision.data import known_hidden_shares

    with pytest.raises(VQAError, match="min_hidden must be a share"):
        driver.render_dataset(tmp_path / "bad", num_scenes=1, questions_per_scene=0, seed=0, min_hidden=1.5)
    _command_or_skip()
    out = tmp_path / "hidden"
    s = driver.render_dataset(out, num_scenes=2, questions_per_scene=0, seed=6, split="train", image_size=(96, 64),
                              samples=1, timeout=120, min_hidden=0.4)
    assert s["rendered_now"] == 2 and not s["failed"]
    scenes = json.loads((out / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    assert all(max(known_hidden_shares(sc)) >= 0.4 for sc in scenes)
    with pytest.raises(VQAError, match="min_hidden"):
        driver.render_dataset(out, num_scenes=2, questions_per_scene=0, seed=6, split="train", image_size=(96, 64),
                              samples=1, timeout=60)
