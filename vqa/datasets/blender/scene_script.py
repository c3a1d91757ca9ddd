"""The half of the Blender renderer that runs inside Blender (imports only bpy and the standard library).

Started by `vqa.datasets.blender.driver` as

    blender --background --factory-startup --python scene_script.py -- [--assets DIR]
    python scene_script.py [--assets DIR]          # a Python whose `import bpy` works (PyPI bpy)

it serves requests, one JSON object per line on stdin, and answers each with one line
`@@VQA {...}` on stdout (Blender's own messages go to stdout too and are ignored):

    {"cmd": "init", "width": W, "height": H, "samples": S, "threads": T, "device": "cpu"}
        -> {"ok": true, "blender": "3.4.1", "engine": "CYCLES", "device": "CPU"}
    {"cmd": "scene", "objects": [...], "camera_offset": [dx, dy, dz],
     "light_offsets": {"key": [..], "fill": [..], "back": [..]}, "mask": "path.png"}
        -> {"ok": true, "pixel_coords": [[x, y, depth], ...], "directions": {...},
            "world_to_camera": 4x4 rows, "focal_px": f, "mask_codes": [[r, g, b], ...]}
       builds the scene and renders the flat-shaded pre-render: every object an emission of its
       own colour (`mask_codes[k]`, 8-bit sRGB), everything else black, 1 sample, no filter;
    {"cmd": "render", "out": "path.png"}  -> {"ok": true, "seconds": s}   the Cycles render
    {"cmd": "quit"}

An error answers {"ok": false, "error": "one line"}; the process stays usable unless the
error came from `init`.

Two scene models: the project's own (default: ground with a curved backdrop, key/fill/back
area lights and a weak sun, camera with a 35 mm lens tracking the origin, bevelled cube,
bevelled cylinder, UV sphere, a velvety rubber and an anisotropic metal, all built here), and
CLEVR's official asset files with `--assets DIR` (base_scene.blend, shapes/*.blend,
materials/*.blend, as CLEVR's generator uses them).
"""
import json
import math
import os
import sys
import time
import traceback

import bpy  # noqa: E402  (only inside Blender or with PyPI bpy)
from mathutils import Vector  # noqa: E402

SHAPE_FILES = {"cube": "SmoothCube_v2", "sphere": "Sphere", "cylinder": "SmoothCylinder"}
MATERIAL_FILES = {"rubber": "Rubber", "metal": "MyMetal"}
COLORS = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
          "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51)}
SIZES = {"large": 0.7, "small": 0.35}
# CLEVR's base camera (base_scene.blend), tracking the origin; lights of the modelled scene.
CAMERA_LOCATION = (7.4811, -6.5076, 5.3437)
LIGHTS = {  # name: location, power (W), colour, square size
    "key": ((6.4467, -2.9052, 4.2584), 100.0, (1.0, 0.932, 0.817), 0.5),
    "fill": ((-4.6711, -4.0136, 3.0112), 30.0, (0.762, 0.818, 1.0), 0.5),
    "back": ((-1.1685, 2.6460, 5.8157), 50.0, (1.0, 1.0, 1.0), 1.0),
}
LAMP_NAMES = {"key": "Lamp_Key", "fill": "Lamp_Fill", "back": "Lamp_Back"}
# The modelled scene's look (tuned by comparing renders of one scene with the official assets'
# renders: mean colour of each object and of the floor); `init` may override any of them.
OWN_LOOK = {
    "sun_direction": (-0.41, 0.19, -0.89), "sun_energy": 0.45,
    "ground_gray": 0.785,
    "rubber_roughness": 0.6, "rubber_specular": 0.3, "rubber_sheen": 0.75, "rubber_velvet": 0.15,
    "metal_roughness": 0.25, "metal_anisotropic": 0.25,
}
# Flat pre-render codes: channel levels 0, 0.5 (sRGB 188) and 1 (255); object k gets code k + 1.
_LEVELS = (0.0, 0.5, 1.0)
MASK_CODES = [(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS][1:]


class RequestError(Exception):
    pass


def answer(obj):
    sys.stdout.write("@@VQA " + json.dumps(obj) + "\n")
    sys.stdout.flush()


class Builder:
    def __init__(self, assets):
        self.assets = assets
        self.objects = []       # this scene's objects
        self.materials = []     # this scene's materials
        self.meshes = {}        # shape -> mesh data (loaded or built once)
        self.groups = {}        # material name -> node group (official) or None
        self.saved_materials = None

    # ---- set-up ----------------------------------------------------------------
    def init(self, req):
        _require_cycles()
        self.look = dict(OWN_LOOK)
        unknown = set(req.get("look") or {}) - set(OWN_LOOK)
        if unknown:
            raise RequestError(f"unknown look settings {sorted(unknown)} (known: {sorted(OWN_LOOK)})")
        self.look.update(req.get("look") or {})
        if self.assets:
            self._load_official()
        else:
            self._build_own()
        scene = bpy.context.scene
        r = scene.render
        r.engine = "CYCLES"
        r.resolution_x, r.resolution_y, r.resolution_percentage = int(req["width"]), int(req["height"]), 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGBA"
        r.image_settings.color_depth = "8"
        r.film_transparent = False
        threads = int(req.get("threads") or 0)
        r.threads_mode = "FIXED" if threads > 0 else "AUTO"
        if threads > 0:
            r.threads = threads
        c = scene.cycles
        self.samples = int(req["samples"])
        c.samples = self.samples
        if hasattr(c, "use_adaptive_sampling"):
            c.use_adaptive_sampling = False
        if hasattr(c, "use_denoising"):
            c.use_denoising = False
        c.blur_glossy = 2.0  # CLEVR's generator setting
        c.transparent_min_bounces = 8
        c.transparent_max_bounces = 8
        c.filter_width = 1.5
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        device = self._set_device(str(req.get("device") or "cpu"))
        self.camera = bpy.data.objects["Camera"]
        self.camera_base = Vector(self.camera.location)
        self.lamps = {k: bpy.data.objects[v] for k, v in LAMP_NAMES.items()}
        self.lamp_base = {k: Vector(o.location) for k, o in self.lamps.items()}
        for me in list(self.meshes.values()) + [o.data for o in scene.objects if o.type == "MESH"]:
            if len(me.materials) == 0:
                me.materials.append(None)  # one slot, so that objects can hold their own material
        return {"ok": True, "blender": bpy.app.version_string, "engine": r.engine, "device": device,
                "model": "official" if self.assets else "own"}

    def _set_device(self, device):
        scene = bpy.context.scene
        if device == "cpu":
            scene.cycles.device = "CPU"
            return "CPU"
        kind = device.upper()
        prefs = bpy.context.preferences.addons["cycles"].preferences
        try:
            prefs.compute_device_type = kind
        except TypeError:
            raise RequestError(f"this Blender's Cycles does not support {kind} devices")
        prefs.get_devices()
        found = [d for d in prefs.devices if d.type == kind]
        if not found:
            raise RequestError(f"Cycles found no {kind} device")
        for d in prefs.devices:
            d.use = d.type == kind
        scene.cycles.device = "GPU"
        return f"GPU ({kind}: {', '.join(d.name for d in found)})"

    def _load_official(self):
        base = os.path.join(self.assets, "base_scene.blend")
        _need_file(base)
        bpy.ops.wm.open_mainfile(filepath=base)
        for name in ("Camera", "Ground", *LAMP_NAMES.values()):
            if name not in bpy.data.objects:
                raise RequestError(f"{base} is not CLEVR's base scene: it has no object {name!r}")
        for shape, fname in SHAPE_FILES.items():
            path = os.path.join(self.assets, "shapes", fname + ".blend")
            _need_file(path)
            with bpy.data.libraries.load(path) as (src, dst):
                if fname not in src.objects:
                    raise RequestError(f"{path} has no object {fname!r} (expected CLEVR's {shape} shape file)")
                dst.objects = [fname]
            self.meshes[shape] = dst.objects[0].data
        for mat, gname in MATERIAL_FILES.items():
            path = os.path.join(self.assets, "materials", gname + ".blend")
            _need_file(path)
            with bpy.data.libraries.load(path) as (src, dst):
                if gname not in src.node_groups:
                    raise RequestError(f"{path} has no node group {gname!r} (expected CLEVR's {mat} material file)")
                dst.node_groups = [gname]
            group = dst.node_groups[0]
            if hasattr(group, "inputs"):  # Blender 3
                inputs = [sock.name for sock in group.inputs]
            else:                         # Blender 4: the group's interface
                inputs = [i.name for i in group.interface.items_tree if getattr(i, "in_out", None) == "INPUT"]
            if "Color" not in inputs:
                raise RequestError(f"{path}: node group {gname!r} has no 'Color' input")
            self.groups[mat] = group

    # ---- the project's own scene model ------------------------------------------
    def _build_own(self):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        world = bpy.data.worlds.new("World")
        world.use_nodes = True
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (0.05, 0.05, 0.05, 1.0)
        bg.inputs["Strength"].default_value = 0.0
        scene.world = world
        target = bpy.data.objects.new("Empty", None)
        scene.collection.objects.link(target)
        cam_data = bpy.data.cameras.new("Camera")
        cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = 35.0, 32.0, "AUTO"
        cam_data.clip_start, cam_data.clip_end = 0.1, 100.0
        cam = bpy.data.objects.new("Camera", cam_data)
        cam.location = CAMERA_LOCATION
        _track(cam, target)
        scene.collection.objects.link(cam)
        scene.camera = cam
        for key, (loc, power, colour, size) in LIGHTS.items():
            data = bpy.data.lights.new(LAMP_NAMES[key], "AREA")
            data.energy, data.color, data.shape, data.size = power, colour, "SQUARE", size
            lamp = bpy.data.objects.new(LAMP_NAMES[key], data)
            lamp.location = loc
            _track(lamp, target)
            scene.collection.objects.link(lamp)
        look = self.look
        sun_data = bpy.data.lights.new("Sun", "SUN")
        sun_data.energy = look["sun_energy"]
        sun_data.angle = math.radians(10.0)
        sun = bpy.data.objects.new("Sun", sun_data)
        sun.rotation_euler = Vector(look["sun_direction"]).to_track_quat("-Z", "Y").to_euler()
        scene.collection.objects.link(sun)
        ground = bpy.data.objects.new("Ground", _backdrop_mesh())
        scene.collection.objects.link(ground)
        gmat = bpy.data.materials.new("Ground")
        gmat.use_nodes = True
        nodes = gmat.node_tree.nodes
        nodes.remove(nodes["Principled BSDF"])
        diffuse = nodes.new("ShaderNodeBsdfDiffuse")
        g = look["ground_gray"]
        diffuse.inputs["Color"].default_value = (g, g, g, 1.0)
        gmat.node_tree.links.new(diffuse.outputs["BSDF"], nodes["Material Output"].inputs["Surface"])
        ground.data.materials.append(gmat)
        self.meshes = {"cube": _cube_mesh(), "cylinder": _cylinder_mesh(), "sphere": _sphere_mesh()}

    def _own_material(self, name, material, rgb):
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        p = nodes["Principled BSDF"]
        _set(p, ("Base Color",), (*rgb, 1.0))
        look = self.look
        if material == "metal":
            _set(p, ("Metallic",), 1.0)
            _set(p, ("Roughness",), look["metal_roughness"])
            _set(p, ("Anisotropic",), look["metal_anisotropic"])
        else:
            _set(p, ("Metallic",), 0.0)
            _set(p, ("Roughness",), look["rubber_roughness"])
            _set(p, ("Specular", "Specular IOR Level"), look["rubber_specular"])
            _set(p, ("Sheen", "Sheen Weight"), look["rubber_sheen"])
            if not isinstance(p.inputs.get("Sheen Tint").default_value, float):
                _set(p, ("Sheen Tint",), (*rgb, 1.0))   # Blender 4: a colour
            else:
                _set(p, ("Sheen Tint",), 0.5)
            # velvet: a little of a Velvet (Blender 4: Sheen) BSDF for the soft rim of CLEVR's rubber
            try:
                velvet = nodes.new("ShaderNodeBsdfVelvet")
            except RuntimeError:
                velvet = nodes.new("ShaderNodeBsdfSheen")
            velvet.inputs["Color"].default_value = (*rgb, 1.0)
            if "Sigma" in velvet.inputs:
                velvet.inputs["Sigma"].default_value = 0.6
            mix = nodes.new("ShaderNodeMixShader")
            mix.inputs["Fac"].default_value = look["rubber_velvet"]
            out = nodes["Material Output"]
            links.new(p.outputs["BSDF"], mix.inputs[1])
            links.new(velvet.outputs["BSDF"], mix.inputs[2])
            links.new(mix.outputs["Shader"], out.inputs["Surface"])
        return mat

    # ---- one scene ----------------------------------------------------------------
    def clear(self):
        for o in self.objects:
            bpy.data.objects.remove(o, do_unlink=True)
        for m in self.materials:
            bpy.data.materials.remove(m, do_unlink=True)
        self.objects, self.materials = [], []

    def build(self, req):
        self.clear()
        scene = bpy.context.scene
        self.camera.location = self.camera_base + Vector(req.get("camera_offset", (0, 0, 0)))
        offsets = req.get("light_offsets", {})
        for k, lamp in self.lamps.items():
            lamp.location = self.lamp_base[k] + Vector(offsets.get(k, (0, 0, 0)))
        for k, spec in enumerate(req["objects"]):
            shape, size = spec["shape"], spec["size"]
            if shape not in self.meshes or size not in SIZES or spec["color"] not in COLORS \
                    or spec["material"] not in ("rubber", "metal"):
                raise RequestError(f"object {k}: unknown shape/size/color/material {shape}/{size}/"
                                   f"{spec['color']}/{spec['material']}")
            r = float(spec.get("half_extent", SIZES[size] / (math.sqrt(2) if shape == "cube" else 1.0)))
            obj = bpy.data.objects.new(f"{shape}_{k}", self.meshes[shape])
            x, y, z = spec["3d_coords"]
            obj.location = (x, y, z)
            obj.scale = (r, r, r)
            obj.rotation_euler = (0.0, 0.0, math.radians(float(spec.get("rotation", 0.0))))
            scene.collection.objects.link(obj)
            rgb = tuple(c / 255.0 for c in COLORS[spec["color"]])
            if self.assets:
                mat = bpy.data.materials.new(f"mat_{k}")
                mat.use_nodes = True
                nodes = mat.node_tree.nodes
                for n in list(nodes):
                    if n.type != "OUTPUT_MATERIAL":
                        nodes.remove(n)
                g = nodes.new("ShaderNodeGroup")
                g.node_tree = self.groups[spec["material"]]
                g.inputs["Color"].default_value = (*rgb, 1.0)
                mat.node_tree.links.new(g.outputs[0], nodes["Material Output"].inputs["Surface"])
            else:
                mat = self._own_material(f"mat_{k}", spec["material"], rgb)
            # per-object material: the shared mesh has one empty slot, linked here to the object
            obj.material_slots[0].link = "OBJECT"
            obj.material_slots[0].material = mat
            self.objects.append(obj)
            self.materials.append(mat)
        bpy.context.view_layer.update()
        return self._geometry()

    def _geometry(self):
        from bpy_extras.object_utils import world_to_camera_view

        scene = bpy.context.scene
        cam = self.camera
        W, H = scene.render.resolution_x, scene.render.resolution_y
        coords = []
        for o in self.objects:
            p = world_to_camera_view(scene, cam, o.matrix_world.translation)
            coords.append([int(round(p.x * W)), int(round(H - p.y * H)), float(p.z)])
        M = cam.matrix_world
        right = Vector((M[0][0], M[1][0], 0.0)).normalized()
        behind = -Vector((M[0][2], M[1][2], 0.0)).normalized()
        rnd = lambda v: [round(float(c), 6) + 0.0 for c in v]  # noqa: E731
        directions = {"left": rnd(-right), "right": rnd(right), "front": rnd(-behind), "behind": rnd(behind),
                      "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}
        inv = M.inverted()
        data = cam.data
        sensor = data.sensor_width if (data.sensor_fit == "HORIZONTAL" or (data.sensor_fit == "AUTO" and W >= H)) \
            else data.sensor_height
        focal = (W if W >= H or data.sensor_fit == "HORIZONTAL" else H) * data.lens / sensor
        return {"pixel_coords": coords, "directions": directions,
                "world_to_camera": [[float(inv[i][j]) for j in range(4)] for i in range(4)],
                "focal_px": float(focal), "mask_codes": [[round(255 * _srgb(v)) for v in c] for c in MASK_CODES]}

    def mask(self, path):
        scene = bpy.context.scene
        if len(self.objects) > len(MASK_CODES):
            raise RequestError(f"at most {len(MASK_CODES)} objects per scene")
        flat = []
        black = _emission("_mask_black", (0.0, 0.0, 0.0))
        flat.append(black)
        saved = {}
        for o in scene.objects:
            if o.type == "MESH":
                if o in self.objects:
                    k = self.objects.index(o)
                    m = _emission(f"_mask_{k}", MASK_CODES[k])
                    flat.append(m)
                    saved[o.name] = [(s.link, s.material) for s in o.material_slots]
                    for s in o.material_slots:
                        s.material = m
                else:
                    saved[o.name] = [(s.link, s.material) for s in o.material_slots]
                    if len(o.material_slots) == 0:
                        o.data.materials.append(None)
                    for s in o.material_slots:
                        s.link = "OBJECT"
                        s.material = black
        c = scene.cycles
        keep = (c.samples, c.filter_width, c.max_bounces, scene.render.filepath, scene.view_settings.view_transform)
        c.samples, c.filter_width, c.max_bounces = 1, 0.01, 0
        scene.render.filepath = path
        try:
            bpy.ops.render.render(write_still=True)
        finally:
            c.samples, c.filter_width, c.max_bounces, scene.render.filepath, _ = keep
            for o in scene.objects:
                if o.name in saved:
                    for s, (link, mat) in zip(o.material_slots, saved[o.name]):
                        s.link = link
                        s.material = mat
            for m in flat:
                bpy.data.materials.remove(m, do_unlink=True)
        if not os.path.isfile(path):
            raise RequestError(f"Blender wrote no pre-render to {path}")

    def render(self, path):
        scene = bpy.context.scene
        scene.render.filepath = path
        t0 = time.time()
        bpy.ops.render.render(write_still=True)
        if not os.path.isfile(path):
            raise RequestError(f"Blender wrote no image to {path}")
        return time.time() - t0


def _set(node, names, value):
    """Set the first of `names` that the node has (input names changed between Blender 3 and 4)."""
    for n in names:
        if n in node.inputs:
            node.inputs[n].default_value = value
            return
    raise RequestError(f"node {node.name!r} has none of the inputs {names}")


def _require_cycles():
    try:
        bpy.context.scene.render.engine = "CYCLES"
    except TypeError:
        raise RequestError(f"this Blender ({bpy.app.version_string}) has no Cycles render engine: install a "
                           f"build with Cycles (Debian's `blender` package or PyPI `bpy`)") from None


def _srgb(v):
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def _emission(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for n in list(nodes):
        if n.type != "OUTPUT_MATERIAL":
            nodes.remove(n)
    e = nodes.new("ShaderNodeEmission")
    e.inputs["Color"].default_value = (*rgb, 1.0)
    e.inputs["Strength"].default_value = 1.0
    mat.node_tree.links.new(e.outputs[0], nodes["Material Output"].inputs["Surface"])
    return mat


def _need_file(path):
    if not os.path.isfile(path):
        raise RequestError(f"missing CLEVR asset file {path} (--blender-assets needs base_scene.blend, "
                           f"shapes/{{SmoothCube_v2,SmoothCylinder,Sphere}}.blend, materials/{{Rubber,MyMetal}}.blend)")
    with open(path, "rb") as f:
        head = f.read(7)
    if head != b"BLENDER" and head[:2] not in (b"\x1f\x8b", b"\x28\xb5"):  # plain, gzip or zstd .blend
        raise RequestError(f"{path} is not a .blend file")


def _track(obj, target):
    c = obj.constraints.new("TRACK_TO")
    c.target = target
    c.track_axis = "TRACK_NEGATIVE_Z"
    c.up_axis = "UP_Y"


def _mesh_from_bmesh(name, bm, smooth_angle=None):
    import bmesh  # noqa: F401

    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    for p in me.polygons:
        p.use_smooth = True
    if smooth_angle is not None and hasattr(me, "use_auto_smooth"):
        me.use_auto_smooth = True
        me.auto_smooth_angle = math.radians(smooth_angle)
    return me


def _cube_mesh():
    """A cube of half-side 1 with rounded (bevelled) edges."""
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=2.0)
    bmesh.ops.bevel(bm, geom=list(bm.edges) + list(bm.verts), offset=0.12, offset_type="OFFSET",
                    segments=4, profile=0.5, affect="EDGES", clamp_overlap=True)
    return _mesh_from_bmesh("own_cube", bm, smooth_angle=35.0)


def _cylinder_mesh():
    """A cylinder of radius 1 and half-height 1 with rounded rims."""
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments=64, radius1=1.0, radius2=1.0, depth=2.0)
    rims = [e for e in bm.edges if abs(e.verts[0].co.z - e.verts[1].co.z) < 1e-6 and e.is_boundary is False
            and len(e.link_faces) == 2 and any(len(f.verts) > 4 for f in e.link_faces)]
    bmesh.ops.bevel(bm, geom=rims, offset=0.1, offset_type="OFFSET", segments=4, profile=0.5,
                    affect="EDGES", clamp_overlap=True)
    return _mesh_from_bmesh("own_cylinder", bm, smooth_angle=35.0)


def _sphere_mesh():
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=64, v_segments=32, radius=1.0)
    return _mesh_from_bmesh("own_sphere", bm)


def _backdrop_mesh():
    """A seamless floor bending up into a backdrop behind the scene (as seen from the camera).

    Profile along u (towards the backdrop, world direction about (-0.90, 0.43)): flat until
    u = 8, then a quarter circle of radius 7 and a vertical wall to z = 30; 60 units wide.
    """
    prof = [(-30.0, 0.0), (0.0, 0.0), (8.0, 0.0)]
    R = 7.0
    for k in range(1, 25):
        a = math.radians(90.0 * k / 24)
        prof.append((8.0 + R * math.sin(a), R * (1 - math.cos(a))))
    prof.append((15.0, 30.0))
    ang = math.radians(154.6)
    du = (math.cos(ang), math.sin(ang))     # towards the backdrop
    dv = (-du[1], du[0])
    verts, faces = [], []
    widths = (-30.0, 30.0)
    for u, z in prof:
        for v in widths:
            verts.append((u * du[0] + v * dv[0], u * du[1] + v * dv[1], z))
    for i in range(len(prof) - 1):
        a, b = 2 * i, 2 * i + 2
        faces.append((a, a + 1, b + 1, b))
    me = bpy.data.meshes.new("own_ground")
    me.from_pydata(verts, [], faces)
    me.validate()
    for p in me.polygons:
        p.use_smooth = True
    return me


def main(argv):
    assets = None
    if "--assets" in argv:
        assets = argv[argv.index("--assets") + 1]
    builder = Builder(assets)
    ready = False
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                answer({"ok": True})
                break
            if cmd == "init":
                answer(builder.init(req))
                ready = True
            elif not ready:
                raise RequestError("not initialised")
            elif cmd == "scene":
                geo = builder.build(req)
                if req.get("mask"):
                    builder.mask(req["mask"])
                answer({"ok": True, **geo})
            elif cmd == "render":
                answer({"ok": True, "seconds": builder.render(req["out"])})
            else:
                raise RequestError(f"unknown command {cmd!r}")
        except RequestError as e:
            answer({"ok": False, "error": str(e)})
            if not ready:
                break
        except Exception as e:  # noqa: BLE001 (reported as one line; the driver decides)
            tb = traceback.format_exc().strip().splitlines()
            answer({"ok": False, "error": f"{type(e).__name__}: {e}", "where": tb[-3:] if tb else []})
            if not ready:
                break


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    main(args)
