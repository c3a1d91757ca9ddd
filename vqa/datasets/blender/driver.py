"""Render a CLEVR-layout dataset with Blender (Cycles): the part that runs in the project's Python.

    summary = render_dataset("clevr_blender", num_scenes=100, questions_per_scene=10, seed=0,
                             image_size=(480, 320), samples=64, workers=1)

Scenes come from the project's scene sampler (`vqa.datasets.synth.scenes.sample_scene`,
the same stream per image index as `vqa generate`), plus CLEVR's light jitter (1.0 per
coordinate of the key, fill and back lights) drawn from the same stream. Each image:

1. a Blender process (`scene_script.py`, one per worker, kept alive between images) builds
   the scene and renders a flat-shaded pre-render (every object in its own flat colour,
   1 sample); a scene where an object shows fewer than CLEVR's 200 pixels (scaled by image
   area) or two objects are closer than the margin along the Blender camera's directions is
   drawn again from the same stream;
2. Blender renders it with Cycles (`samples`, no denoising) to `images/<split>/CLEVR_<split>_<i>.png`;
3. its scene record (official fields: `3d_coords`, `pixel_coords` from the Blender camera,
   `rotation`, `directions`, `relationships`, plus `bbox` [x, y, w, h], the object's projected
   extent, and `half_extent`, its scale: see CUBES) is written to `scenes/CLEVR_<split>_scenes.parts/<i>.json`.

Files are written as each image finishes, so an interrupted run loses at most the images in
flight and a rerun renders only the missing ones. At the end the parts are gathered into
`scenes/CLEVR_<split>_scenes.json` and the questions are generated (as `vqa generate` does).
Every request to Blender runs under a timeout; a process that times out or dies is replaced
and the image tried once more.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

from ...errors import VQAError

SCRIPT = Path(__file__).with_name("scene_script.py")
INSTALL_HINT = ("install Blender (Debian/Ubuntu: `apt-get install -y blender`) or the PyPI build "
                "(`pip install -e \".[blender]\"`), or name the program with --blender PATH")
LIGHTS = ("key", "fill", "back")
LIGHT_JITTER = 1.0
# Cube half-extent. "clevr": the size's radius (0.7 / 0.35), as CLEVR's generator renders
# cubes: it shrinks an object by sqrt(2) only when its shape file is named 'Cube', and CLEVR's
# cube is 'SmoothCube_v2', so released CLEVR cubes are 1.4 / 0.7 wide and stand at z = 0.7 /
# 0.35 (the 3d_coords of the official val scenes show it). "synth": the radius / sqrt(2), the
# project's synthetic world (`vqa.datasets.synth.geometry.half_extent`; renders made before
# this option existed).
CUBES = ("clevr", "synth")


class BlenderError(VQAError):
    """Blender could not be started or answered with an error."""


class BlenderTimeout(BlenderError):
    pass


def blender_command(program: str | None = None) -> list[str]:
    """The command that runs `scene_script.py`: `program` (a path or name of a Blender binary,
    or "bpy" for this Python's `import bpy`), else $VQA_BLENDER, else `blender` on PATH, else bpy."""
    program = program or os.environ.get("VQA_BLENDER") or None
    if program == "bpy" or (program is None and not shutil.which("blender")):
        if importlib.util.find_spec("bpy") is None:
            what = "Python module bpy is not installed" if program == "bpy" else \
                "no Blender found (no `blender` on PATH, no Python module bpy)"
            raise BlenderError(f"{what}: {INSTALL_HINT}")
        return [sys.executable, str(SCRIPT)]
    path = shutil.which(program or "blender") or (program if program and Path(program).is_file() else None)
    if path is None:
        raise BlenderError(f"Blender program {program!r} not found: {INSTALL_HINT}")
    return [path, "--background", "--factory-startup", "--python", str(SCRIPT), "--"]


class BlenderProcess:
    """One Blender process serving `scene_script.py` requests, each under a timeout."""

    def __init__(self, command: list[str], *, assets: str | None, init: dict, timeout: float = 600.0,
                 init_timeout: float = 180.0):
        self.command = command + (["--assets", str(assets)] if assets else [])
        self.init_request = {"cmd": "init", **init}
        self.timeout, self.init_timeout = timeout, init_timeout
        self.proc = None
        self.info: dict = {}

    def start(self) -> dict:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                                         start_new_session=True)
        except OSError as e:
            raise BlenderError(f"could not start {self.command[0]}: {e}: {INSTALL_HINT}") from None
        self.answers: queue.Queue = queue.Queue()
        self.tail: deque = deque(maxlen=30)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.info = self.request(self.init_request, timeout=self.init_timeout)
        return self.info

    def _read(self, proc) -> None:
        for line in proc.stdout:
            if line.startswith("@@VQA "):
                try:
                    self.answers.put(json.loads(line[6:]))
                except json.JSONDecodeError:
                    self.tail.append(line.rstrip())
            else:
                self.tail.append(line.rstrip())
        self.answers.put(None)  # end of output: the process is gone

    def request(self, req: dict, *, timeout: float | None = None) -> dict:
        if self.proc is None:
            self.start()
        timeout = self.timeout if timeout is None else timeout
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader reports the exit
        try:
            ans = self.answers.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise BlenderTimeout(f"Blender did not answer {req.get('cmd')!r} within {timeout:.0f} s") from None
        if ans is None:
            code = self.proc.wait()
            self.proc = None
            tail = " | ".join(t for t in list(self.tail)[-4:] if t.strip())
            raise BlenderError(f"Blender exited (status {code}) during {req.get('cmd')!r}: {tail}")
        if not ans.get("ok"):
            raise BlenderError(ans.get("error", "unknown error"))
        return ans

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


# ---- one image ----------------------------------------------------------------------------

def count_mask_pixels(mask_path: str | Path, codes: list[list[int]], n: int) -> list[int]:
    """Pixels of each of the first `n` objects in a flat pre-render (object k drawn in codes[k])."""
    from PIL import Image

    with Image.open(mask_path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    return [int((np.abs(rgb - np.asarray(codes[k], np.int16)).max(-1) <= 3).sum()) for k in range(n)]


def mask_labels(mask_path: str | Path, codes: list[list[int]], n: int) -> np.ndarray:
    """(H, W) object index per pixel of a flat pre-render, -1 for the background."""
    from PIL import Image

    with Image.open(mask_path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    out = np.full(rgb.shape[:2], -1, np.int16)
    for k in range(n):
        out[(np.abs(rgb - np.asarray(codes[k], np.int16)).max(-1) <= 3)] = k
    return out


def project(points: np.ndarray, world_to_camera, focal_px: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixel x, y with a Blender camera (looking along its -z)."""
    M = np.asarray(world_to_camera, float)
    p = np.asarray(points, float) @ M[:3, :3].T + M[:3, 3]
    d = -p[:, 2]
    return width / 2 + focal_px * p[:, 0] / d, height / 2 - focal_px * p[:, 1] / d


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D points (n, 2) (Andrew's monotone chain, then the shoelace)."""
    pts = sorted(set(map(tuple, np.asarray(points, float).tolist())))
    if len(pts) < 3:
        return 0.0

    def half(seq):
        chain = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


HIDDEN_FLOOR = 0.2  # hidden shares up to this count as visible: a bevelled cube's silhouette is ~10% smaller than
                    # the hull of its corners, and a sliver of overlap does not move the centre


def silhouette_points(obj: dict, world_to_camera, focal_px: float, width: int, height: int):
    """Pixel x, y of the points bounding an object's silhouette (`Solid.surface_points`
    projected). `obj`: shape, 3d_coords, rotation (degrees), half_extent."""
    from ..synth.geometry import Solid

    solid = Solid(obj["shape"], tuple(float(v) for v in obj["3d_coords"]), np.radians(float(obj.get("rotation", 0.0))),
                  float(obj["half_extent"]))
    return project(solid.surface_points(), world_to_camera, focal_px, width, height)


def hidden_share(obj: dict, visible: int, world_to_camera, focal_px: float, width: int, height: int) -> float:
    """The share of an object's silhouette that others hide (or the frame cuts off): 1 - its
    `visible` pixels (counted on the flat-shaded pre-render at the image's size) / the area of the
    convex hull of its `silhouette_points` (the objects are convex: the hull is the whole
    silhouette), clipped to [0, 1]."""
    px, py = silhouette_points(obj, world_to_camera, focal_px, width, height)
    area = hull_area(np.stack([px, py], 1))
    return float(np.clip(1.0 - visible / area, 0.0, 1.0)) if area > 0 else 0.0


def _margin_ok(objects: list[dict], directions: dict, margin: float) -> bool:
    xy = np.array([o["3d_coords"][:2] for o in objects], float)
    for r in ("left", "front"):
        v = np.asarray(directions[r][:2], float)
        m = np.abs((xy[:, None, :] - xy[None, :, :]) @ v)
        np.fill_diagonal(m, np.inf)
        if (m < margin).any():
            return False
    return True


def render_one(proc: BlenderProcess, index: int, *, seed: int, split: str, image_size: tuple[int, int],
               image_path: Path, tmp_dir: Path, max_tries: int = 50, min_objects: int = 3,
               max_objects: int = 10, cubes: str = "clevr", min_hidden: float = 0.0) -> dict:
    """Sample (until visible and unambiguous, and with `min_hidden` > 0 until some object is at
    least that share hidden: `hidden_share`), pre-render, render image `index`; its scene record."""
    from ...scene import clevr_relations, clevr_relationships
    from ..synth.camera import BASE_LOCATION
    from ..synth.generate import scene_streams
    from ..synth.geometry import SIZE_RADIUS, half_extent
    from ..synth.scenes import LayoutConfig, min_visible_pixels_for, sample_scene

    W, H = image_size
    scene_rng, _ = scene_streams(seed, split, index)
    need = min_visible_pixels_for(image_size)
    margin = LayoutConfig().margin
    tmp_dir.mkdir(parents=True, exist_ok=True)
    mask = tmp_dir / f"mask_{os.getpid()}_{threading.get_ident()}.png"
    # the number of objects is drawn once per image and kept through the tries, as CLEVR's
    # generator does: drawn afresh per try, crowded scenes (which fail the visibility check
    # more often) were replaced by sparser ones (1,850 renders averaged 5.1 objects, 467 of
    # them 3 and 41 of them 10, against CLEVR's uniform 3-10, mean 6.5)
    n_objects = int(scene_rng.integers(min_objects, max_objects + 1))
    for attempt in range(max_tries):
        rec = sample_scene(scene_rng, image_size=(W, H), min_objects=n_objects, max_objects=n_objects)
        cam_offset = (np.asarray(rec["camera"]["location"]) - np.asarray(BASE_LOCATION)).round(6).tolist()
        lights = {k: scene_rng.uniform(-LIGHT_JITTER, LIGHT_JITTER, 3).round(6).tolist() for k in LIGHTS}
        if cubes == "clevr":  # full-size cubes standing on the ground (see CUBES)
            for o in rec["objects"]:
                if o["shape"] == "cube":
                    o["3d_coords"] = [o["3d_coords"][0], o["3d_coords"][1], SIZE_RADIUS[o["size"]]]
        objects = [{**{k: o[k] for k in ("shape", "size", "color", "material", "3d_coords", "rotation")},
                    "half_extent": (SIZE_RADIUS[o["size"]] if cubes == "clevr" else half_extent(o["shape"], o["size"]))}
                   for o in rec["objects"]]
        geo = proc.request({"cmd": "scene", "objects": objects, "camera_offset": cam_offset,
                            "light_offsets": lights, "mask": str(mask)})
        visible = count_mask_pixels(mask, geo["mask_codes"], len(objects))
        inside = all(0 <= x < W and 0 <= y < H for x, y, _ in geo["pixel_coords"])
        if (min(visible) >= need and inside and _margin_ok(objects, geo["directions"], margin)
                and (min_hidden <= 0 or max(hidden_share(o, v, geo["world_to_camera"], geo["focal_px"], W, H)
                                            for o, v in zip(objects, visible)) >= min_hidden)):
            break
    else:
        raise BlenderError(f"image {index}: no scene with every object showing >= {need} pixels "
                           + (f"and one at least {min_hidden:g} hidden " if min_hidden > 0 else "")
                           + f"in {max_tries} tries")
    tmp_png = tmp_dir / f"render_{os.getpid()}_{threading.get_ident()}.png"
    ans = proc.request({"cmd": "render", "out": str(tmp_png)})
    os.replace(tmp_png, image_path)
    out_objects = []
    for o, spec, pc, vis in zip(rec["objects"], objects, geo["pixel_coords"], visible):
        px, py = silhouette_points(spec, geo["world_to_camera"], geo["focal_px"], W, H)
        x0, x1 = max(float(px.min()), 0.0), min(float(px.max()), float(W))
        y0, y1 = max(float(py.min()), 0.0), min(float(py.max()), float(H))
        out_objects.append({"shape": o["shape"], "size": o["size"], "material": o["material"], "color": o["color"],
                            "3d_coords": o["3d_coords"], "rotation": o["rotation"],
                            "pixel_coords": [int(pc[0]), int(pc[1]), round(float(pc[2]), 4)],
                            "bbox": [round(x0, 2), round(y0, 2), round(max(x1 - x0, 0.0), 2), round(max(y1 - y0, 0.0), 2)],
                            "half_extent": round(float(spec["half_extent"]), 6), "visible_pixels": int(vis)})
    positions = [o["3d_coords"] for o in out_objects]
    relationships = clevr_relationships(clevr_relations(positions, geo["directions"]), len(out_objects))
    info = proc.info
    return {"split": split, "image_index": int(index), "image_filename": image_path.name,
            "directions": geo["directions"], "objects": out_objects, "relationships": relationships,
            "width": W, "height": H,
            "blender": {"version": info.get("blender"), "model": info.get("model"), "device": info.get("device"),
                        "samples": info.get("samples"), "camera_offset": cam_offset, "light_offsets": lights,
                        "world_to_camera": geo["world_to_camera"], "focal_px": geo["focal_px"],
                        "tries": attempt + 1, "render_seconds": round(float(ans["seconds"]), 3)}}


# ---- a dataset ----------------------------------------------------------------------------

def parts_dir(out: Path, split: str) -> Path:
    return out / "scenes" / f"CLEVR_{split}_scenes.parts"


def render_dataset(out: str | Path, *, num_scenes: int, questions_per_scene: int, seed: int, split: str = "train",
                   image_size: tuple[int, int] = (480, 320), samples: int = 64, workers: int = 1,
                   threads: int | None = None, blender: str | None = None, assets: str | Path | None = None,
                   device: str = "cpu", timeout: float = 600.0, verify: bool = True, progress=None,
                   min_objects: int = 3, max_objects: int = 10, cubes: str = "clevr", min_hidden: float = 0.0) -> dict:
    """Render images 0..num_scenes-1 that are not there yet, then gather the scenes file and
    generate the questions (see the module docstring). Out: a summary dict. `min_hidden` > 0:
    only scenes in which some object is at least that share hidden (training sets rich in the
    objects parsers place worst; not CLEVR's distribution)."""
    from ..synth.generate import _check_arguments

    _check_arguments(num_scenes, questions_per_scene, seed, split, image_size)
    if not isinstance(samples, int) or samples < 1:
        raise VQAError(f"samples must be an integer >= 1, got {samples!r}")
    if not isinstance(workers, int) or workers < 1:
        raise VQAError(f"workers must be an integer >= 1, got {workers!r}")
    if cubes not in CUBES:
        raise VQAError(f"cubes must be one of {', '.join(CUBES)}, got {cubes!r}")
    if not 0 <= min_hidden < 1:
        raise VQAError(f"min_hidden must be a share in [0, 1), got {min_hidden!r}")
    if assets is not None and not Path(assets).is_dir():
        raise VQAError(f"--blender-assets {assets}: no such folder (expected CLEVR's assets: base_scene.blend, "
                       f"shapes/, materials/)")
    command = blender_command(blender)
    out = Path(out)
    images_dir = out / "images" / split
    parts = parts_dir(out, split)
    for p in (images_dir, parts, out / "questions"):
        p.mkdir(parents=True, exist_ok=True)
    _check_settings(parts / "settings.json", {"seed": int(seed), "image_size": [int(v) for v in image_size],
                                              "samples": int(samples), "model": "official" if assets else "own",
                                              "objects": [int(min_objects), int(max_objects)], "cubes": cubes,
                                              "count": "per image", **({"min_hidden": float(min_hidden)}
                                                                       if min_hidden > 0 else {})})
    tmp_dir = images_dir / ".tmp"
    done = {i for i in range(num_scenes)
            if (parts / f"{i:06d}.json").is_file() and (images_dir / f"CLEVR_{split}_{i:06d}.png").is_file()}
    pending = [i for i in range(num_scenes) if i not in done]
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    init = {"width": image_size[0], "height": image_size[1], "samples": samples, "threads": threads, "device": device}
    t_start = time.perf_counter()
    failures: dict[int, str] = {}
    render_seconds: list[float] = []
    info: dict = {}
    if pending:
        info = _run_workers(pending, command=command, assets=assets, init=init, timeout=timeout, workers=min(workers, len(pending)),
                            seed=seed, split=split, image_size=image_size, images_dir=images_dir, parts=parts,
                            tmp_dir=tmp_dir, failures=failures, render_seconds=render_seconds, progress=progress,
                            min_objects=min_objects, max_objects=max_objects, cubes=cubes, min_hidden=min_hidden)
    wall = time.perf_counter() - t_start
    shutil.rmtree(tmp_dir, ignore_errors=True)
    summary = gather(out, split=split, num_scenes=num_scenes, questions_per_scene=questions_per_scene, seed=seed,
                     verify=verify, info={"renderer": "blender", "samples": samples, "image_size": list(image_size),
                                          "assets": str(assets) if assets else None, "cubes": cubes, **{k: info.get(k) for k in ("blender", "model")}})
    rendered = len(pending) - len(failures)
    summary.update({"rendered_now": rendered, "already_there": len(done), "failed": failures,
                    "seconds_wall": round(wall, 1),
                    "seconds_per_image": round(wall / rendered, 2) if rendered else None,
                    "render_seconds_per_image": round(float(np.mean(render_seconds)), 2) if render_seconds else None,
                    "blender": info.get("blender"), "model": info.get("model"), "device": info.get("device")})
    return summary


def _run_workers(pending, *, command, assets, init, timeout, workers, seed, split, image_size, images_dir, parts,
                 tmp_dir, failures, render_seconds, progress, min_objects, max_objects, cubes="clevr",
                 min_hidden: float = 0.0) -> dict:
    todo: queue.Queue = queue.Queue()
    for i in pending:
        todo.put(i)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    procs = [BlenderProcess(command, assets=str(assets) if assets else None, init=init, timeout=timeout)
             for _ in range(workers)]
    info: dict = {}

    def work(proc: BlenderProcess) -> None:
        try:
            proc.start()
            info.update(proc.info)
            proc.info["samples"] = init["samples"]
        except BlenderError as e:
            results.put(("fatal", None, str(e)))
            return
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                break
            error = None
            for attempt in range(2):
                try:
                    if proc.proc is None:
                        proc.start()
                        proc.info["samples"] = init["samples"]
                    rec = render_one(proc, i, seed=seed, split=split, image_size=image_size,
                                     image_path=images_dir / f"CLEVR_{split}_{i:06d}.png", tmp_dir=tmp_dir,
                                     min_objects=min_objects, max_objects=max_objects, cubes=cubes,
                                     min_hidden=min_hidden, max_tries=200 if min_hidden > 0 else 50)
                    _write_json(parts / f"{i:06d}.json", rec)
                    results.put(("ok", i, rec["blender"]["render_seconds"]))
                    error = None
                    break
                except BlenderError as e:
                    error = str(e)
                    proc.kill()  # a fresh process for the retry
            if error is not None:
                results.put(("failed", i, error))
        proc.close()

    threads = [threading.Thread(target=work, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()

    def events():
        remaining = len(pending)
        while remaining:
            kind, i, payload = results.get()
            if kind == "fatal":
                stop.set()
                raise BlenderError(f"{payload} ({' '.join(command[:1])})")
            remaining -= 1
            if kind == "ok":
                render_seconds.append(payload)
            else:
                failures[i] = payload
            yield i

    it = events()
    if progress is not None:
        it = progress(it, desc="render", total=len(pending))
    try:
        for _ in it:
            pass
    finally:
        stop.set()
        for p in procs:
            if any(t.is_alive() for t in threads):
                pass
        for t in threads:
            t.join(timeout=1.0)
        for p in procs:
            p.kill()
    return info


def _check_settings(path: Path, settings: dict) -> None:
    """The settings images of this folder were rendered with: a rerun must use the same ones."""
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if isinstance(old, dict) and "cubes" in settings:
            old.setdefault("cubes", "synth")  # folders rendered before the option: sqrt(2)-smaller cubes
        if isinstance(old, dict) and "count" in settings:
            old.setdefault("count", "per try")  # folders rendered before the fix: the count drawn per try
        if old != settings:
            diff = ", ".join(f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items()
                             if not isinstance(old, dict) or old.get(k) != v)
            raise VQAError(f"{path.parent.parent.parent} holds renders made with other settings: {diff}; "
                           f"rerun with the same settings or use another --out")
    else:
        _write_json(path, settings)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


def gather(out: str | Path, *, split: str, num_scenes: int, questions_per_scene: int, seed: int, verify: bool = True,
           info: dict | None = None) -> dict:
    """Write scenes/CLEVR_<split>_scenes.json from the rendered parts of images 0..num_scenes-1
    (missing ones are left out) and generate the questions as `vqa generate` does."""
    from ..synth.generate import _ListWriter, scene_streams
    from ..synth.questions import QuestionGenerator
    from ..synth.templates import FAMILIES

    out = Path(out)
    parts = parts_dir(out, split)
    scenes_file = out / "scenes" / f"CLEVR_{split}_scenes.json"
    questions_file = out / "questions" / f"CLEVR_{split}_questions.json"
    head = {"split": split, "version": "1.0", "license": "generated by vqa (Blender renders of the synthetic world)",
            "generator": "vqa.datasets.blender", "seed": int(seed), "num_scenes": int(num_scenes),
            "questions_per_scene": int(questions_per_scene), **(info or {})}
    generator = QuestionGenerator(np.random.default_rng(seed), verify=verify)
    n_scenes = n_questions = 0
    missing = []
    for p in (scenes_file.parent, questions_file.parent):
        p.mkdir(parents=True, exist_ok=True)
    tmp_s, tmp_q = scenes_file.with_suffix(".json.tmp"), questions_file.with_suffix(".json.tmp")
    with _ListWriter(tmp_s, head, "scenes") as scenes_out, _ListWriter(tmp_q, head, "questions") as questions_out:
        for i in range(num_scenes):
            part = parts / f"{i:06d}.json"
            if not part.is_file():
                missing.append(i)
                continue
            try:
                scene = json.loads(part.read_text())
            except json.JSONDecodeError as e:
                raise VQAError(f"{part}: not JSON ({e}); delete it and rerun to render image {i} again") from None
            scenes_out.write(scene)
            n_scenes += 1
            _, question_rng = scene_streams(seed, split, i)
            for rec in generator.generate(scene, questions_per_scene, rng=question_rng):
                questions_out.write({"split": split, "image_index": i, "image_filename": scene["image_filename"],
                                     "question_index": n_questions, **rec})
                n_questions += 1
    os.replace(tmp_s, scenes_file)
    os.replace(tmp_q, questions_file)
    by_group = Counter()
    for f in FAMILIES:
        by_group[f.group] += generator.family_counts[f.index]
    return {"out": str(out), "split": split, "scenes_file": str(scenes_file), "questions_file": str(questions_file),
            "images_dir": str(out / "images" / split), "num_scenes": n_scenes, "num_questions": n_questions,
            "missing": missing, "questions_per_group": dict(by_group)}
