"""SceneGraph: the one scene representation shared by CLEVR, GQA, vision and reasoners.

A scene graph is JSON-serialisable:

    {"image_id": str, "width": int, "height": int,
     "objects": [{"id": str, "name": str, "bbox": [x, y, w, h], "score": float,
                  "position": [..] | null, "attributes": {category: {value: p}},
                  "point": [x, y] (optional: CLEVR's pixel_coords next to a tight bbox)}],
     "relations": [{"subject": id, "predicate": str, "object": id, "probability": p}],
     "directions": {name: [x, y, z]} | null, "info": {...}}

A relation reads "subject predicate object": (j, "left", i) means j is left of i,
which is CLEVR's `relationships["left"][i]` containing j.

Core module: imports only `vqa.errors` and `vqa.ontology`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, require
from .ontology import CLEVR_ATTRIBUTES, CLEVR_RELATION_EPS, CLEVR_RELATIONS

# CLEVR's camera: 35 mm lens on a 32 mm sensor, 480 px wide renders.
_CLEVR_FOCAL_PX = 480 * 35 / 32
_CLEVR_SIZE_RADIUS = {"large": 0.7, "small": 0.35}
_NUMBER = (int, float)  # the types a GQA box coordinate may have (bool is not one)


@dataclass
class SceneObject:
    id: str
    name: str
    bbox: list[float]  # [x, y, w, h] in pixels
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    score: float = 1.0
    position: list[float] | None = None
    # The pixel where the record puts the object itself (CLEVR's `pixel_coords`: its 3-D centre
    # projected), which is not the centre of a tight box when the record also has one.
    point: list[float] | None = None

    def value(self, category: str) -> str | None:
        """Most likely value of an attribute category (None if the object has none)."""
        dist = self.attributes.get(category)
        if not dist:
            return None
        return max(dist.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def probability(self, category: str, value: str) -> float:
        return self.attributes.get(category, {}).get(value, 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return (x + w / 2, y + h / 2)

    @property
    def anchor(self) -> tuple[float, float]:
        """The object's pixel: `point` where the record gives one, else the box centre. Parsers
        predict CLEVR's `pixel_coords` as their box centre, so metrics compare against this."""
        return self.centre if self.point is None else (self.point[0], self.point[1])

    def to_dict(self) -> dict:
        d = {"id": self.id, "name": self.name, "bbox": list(self.bbox), "score": self.score,
             "position": None if self.position is None else list(self.position),
             "attributes": {c: dict(d) for c, d in self.attributes.items()}}
        if self.point is not None:
            d["point"] = list(self.point)
        return d


@dataclass
class Relation:
    subject: str
    predicate: str
    object: str
    probability: float = 1.0

    def to_dict(self) -> dict:
        return {"subject": self.subject, "predicate": self.predicate, "object": self.object,
                "probability": self.probability}


@dataclass
class SceneGraph:
    image_id: str
    width: int
    height: int
    objects: list[SceneObject] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    directions: dict[str, list[float]] | None = None
    info: dict = field(default_factory=dict)

    # ---- access -------------------------------------------------------------
    def object(self, object_id: str) -> SceneObject:
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        raise KeyError(f"scene {self.image_id}: no object with id {object_id!r}")

    @property
    def ids(self) -> list[str]:
        return [o.id for o in self.objects]

    def related(self, object_id: str, predicate: str, min_probability: float = 0.5) -> list[str]:
        """Ids j with (j, predicate, object_id), e.g. the objects left of `object_id`."""
        return [r.subject for r in self.relations
                if r.object == object_id and r.predicate == predicate and r.probability >= min_probability]

    @property
    def is_gold(self) -> bool:
        """True when every attribute, object and relation is certain."""
        return (all(o.score >= 1.0 for o in self.objects)
                and all(max(d.values(), default=1.0) >= 1.0 and len(d) <= 1
                        for o in self.objects for d in o.attributes.values())
                and all(r.probability >= 1.0 for r in self.relations))

    # ---- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"image_id": self.image_id, "width": self.width, "height": self.height,
                "objects": [o.to_dict() for o in self.objects],
                "relations": [r.to_dict() for r in self.relations],
                "directions": self.directions, "info": self.info}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def from_dict(cls, d: dict, *, file=None) -> "SceneGraph":
        rid = d.get("image_id") if isinstance(d, dict) else None
        loc = dict(file=file, record_id=rid)
        image_id = str(require(d, "image_id", (str, int), **loc))
        objects = []
        for i, od in enumerate(require(d, "objects", list, **loc)):
            f = f"objects[{i}]"
            try:
                attrs = require(od, "attributes", dict, **loc) if "attributes" in od else {}
                for cat, dist in attrs.items():
                    if not isinstance(dist, dict) or not all(
                            isinstance(p, (int, float)) and 0.0 <= p <= 1.0 for p in dist.values()):
                        raise DataError("expected {value: probability in [0, 1]}", field=f"attributes.{cat}")
                bbox = require(od, "bbox", list, **loc, what="[x, y, w, h]")
                if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
                    raise DataError(f"expected [x, y, w, h] numbers, got {bbox!r}", field="bbox")
                objects.append(SceneObject(
                    id=str(require(od, "id", (str, int), **loc)),
                    name=require(od, "name", str, **loc),
                    bbox=[float(v) for v in bbox],
                    attributes={c: {str(v): float(p) for v, p in dist.items()} for c, dist in attrs.items()},
                    score=float(od.get("score", 1.0)),
                    position=None if od.get("position") is None else [float(v) for v in od["position"]],
                    point=_point(od.get("point")),
                ))
            except DataError as e:
                raise e.located(file=file, record=image_id, field=f) from None
        ids = {o.id for o in objects}
        relations = []
        for i, rd in enumerate(d.get("relations") or []):
            f = f"relations[{i}]"
            try:
                rel = Relation(str(require(rd, "subject", (str, int))), require(rd, "predicate", str),
                               str(require(rd, "object", (str, int))), float(rd.get("probability", 1.0)))
            except DataError as e:
                raise e.located(file=file, record=image_id, field=f) from None
            for end in (rel.subject, rel.object):
                if end not in ids:
                    raise DataError(f"refers to unknown object {end!r}", file=file, record=image_id, field=f)
            relations.append(rel)
        return cls(image_id=image_id, width=int(require(d, "width", (int, float), **loc)),
                   height=int(require(d, "height", (int, float), **loc)), objects=objects,
                   relations=relations, directions=d.get("directions"), info=dict(d.get("info") or {}))

    @classmethod
    def from_json(cls, text: str, *, file=None) -> "SceneGraph":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", file=file) from None
        return cls.from_dict(data, file=file)

    @classmethod
    def load(cls, path: str | Path) -> "SceneGraph":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror}", file=path) from None
        return cls.from_json(text, file=path)

    # ---- builders from dataset records ---------------------------------------
    @classmethod
    def from_clevr(cls, scene: dict, *, width: int = 480, height: int = 320, file=None,
                   record=None) -> "SceneGraph":
        """Gold graph from a CLEVR scene record.

        Relations come from `relationships` (or the README's `relations`); when neither
        is there, from `3d_coords` and `directions` with CLEVR's rule. Boxes come from an
        object's `bbox` field when present, otherwise they are estimated from
        `pixel_coords` (centre, depth) and the object size with CLEVR's camera.
        """
        rid = record if record is not None else scene.get("image_filename", scene.get("image_index"))
        loc = dict(file=file, record_id=rid)
        image_id = clevr_image_id(scene)
        width = int(scene.get("width", width))
        height = int(scene.get("height", height))
        objects = []
        for i, od in enumerate(require(scene, "objects", list, **loc)):
            try:
                attrs = {}
                for cat, values in CLEVR_ATTRIBUTES.items():
                    v = require(od, cat, str)
                    if v not in values:
                        raise DataError(f"unknown {cat} {v!r} (expected one of {', '.join(values)})", field=cat)
                    attrs[cat] = {v: 1.0}
                position = od.get("3d_coords")
                try:  # numbers that are not numbers (or NaN, or too few): a DataError naming the field
                    key = "3d_coords"
                    position = None if position is None else _finite_numbers(position, 3)
                    key = "bbox"
                    point = None
                    if "bbox" in od:
                        bbox = _finite_numbers(od["bbox"], 4)
                        pixel = od.get("pixel_coords")
                        if pixel is not None:  # a tight box and the projected centre: keep both
                            key = "pixel_coords"
                            point = _finite_numbers(list(pixel)[:2], 2)
                    else:
                        key = "pixel_coords"
                        pixel = require(od, "pixel_coords", list)
                        _finite_numbers(pixel[:3], min(len(pixel), 3))
                        bbox = _estimate_clevr_box(pixel, attrs["size"], width)
                except (TypeError, ValueError) as e:
                    if isinstance(e, DataError):
                        raise
                    raise DataError(f"expected a list of numbers ({_COUNTS.get(key, 'finite')}), got "
                                    f"{od.get(key)!r:.60}", field=key) from None
            except DataError as e:
                raise e.located(file=file, record=rid, field=f"objects[{i}]") from None
            objects.append(SceneObject(id=str(i), name=od["shape"], bbox=bbox, attributes=attrs, position=position,
                                       point=point))
        directions = scene.get("directions")
        rel_key = "relationships" if "relationships" in scene else "relations" if "relations" in scene else None
        if rel_key is not None:
            relations = _relations_from_clevr(scene[rel_key], len(objects), file=file, record=rid, key=rel_key)
        elif directions is not None and all(o.position is not None for o in objects):
            relations = clevr_relations([o.position for o in objects], directions)
        else:
            relations = []
        info = {k: scene[k] for k in ("split", "image_index", "image_filename") if k in scene}
        return cls(image_id, width, height, objects, relations, directions, info)

    @classmethod
    def from_gqa(cls, image_id: str, sg: dict, *, file=None, predicates=None) -> "SceneGraph":
        """Gold graph from one entry of a GQA `*_sceneGraphs.json` file.

        GQA attributes are bare strings; they are kept under the category "attribute"
        (one value each, probability 1) until an ontology assigns types. `predicates`
        (a set): only the relations with these predicates are kept (every one is checked).
        """
        loc = dict(file=file, record_id=image_id)
        objs = require(sg, "objects", dict, **loc)
        objects, relations = [], []
        for oid, od in objs.items():
            try:
                if (type(od) is dict and type(od.get("name")) is str and type(od.get("x")) in _NUMBER
                        and type(od.get("y")) in _NUMBER and type(od.get("w")) in _NUMBER
                        and type(od.get("h")) in _NUMBER and type(od.get("attributes", [])) is list):
                    bbox, name, names = [float(od["x"]), float(od["y"]), float(od["w"]), float(od["h"])], od["name"], \
                        od.get("attributes", ())  # (the checks below, quickly)
                else:
                    bbox = [float(require(od, k, (int, float))) for k in ("x", "y", "w", "h")]
                    names = require(od, "attributes", list) if "attributes" in od else []
                    name = require(od, "name", str)
                objects.append(SceneObject(id=str(oid), name=name, bbox=bbox,
                                           attributes={"attribute": {str(a): 1.0 for a in names}}))
                for j, rd in enumerate(od.get("relations") or []):
                    target, pred = (rd.get("object"), rd.get("name")) if type(rd) is dict else (None, None)
                    if type(pred) is not str or type(target) not in (str, int):  # (the checks, quickly)
                        try:
                            require(rd, "object", (str, int))
                            require(rd, "name", str)
                        except DataError as e:
                            raise e.located(field=f"relations[{j}]") from None
                    target = str(target)
                    if target not in objs:
                        raise DataError(f"refers to unknown object {target!r}", field=f"relations[{j}].object")
                    if predicates is None or pred in predicates:
                        relations.append(Relation(str(oid), pred, target))
            except DataError as e:
                raise e.located(file=file, record=image_id, field=f"objects.{oid}") from None
        info = {k: sg[k] for k in ("location", "weather") if k in sg}
        return cls(str(image_id), int(require(sg, "width", (int, float), **loc)),
                   int(require(sg, "height", (int, float), **loc)), objects, relations, None, info)


def clevr_image_id(scene: dict) -> str:
    """A CLEVR image's id: its file name without extension (unique across splits)."""
    name = scene.get("image_filename")
    if isinstance(name, str):
        return name.rsplit(".", 1)[0]
    return f"CLEVR_{scene.get('split', 'unknown')}_{int(scene.get('image_index', 0)):06d}"


def clevr_relations(positions: list[list[float]], directions: dict[str, list[float]],
                    eps: float = CLEVR_RELATION_EPS) -> list[Relation]:
    """CLEVR's rule: j is r of i when dot(p_j - p_i, directions[r]) > eps."""
    rels = []
    for r in CLEVR_RELATIONS:
        d = directions[r]
        for i, pi in enumerate(positions):
            for j, pj in enumerate(positions):
                if i != j and sum((a - b) * c for a, b, c in zip(pj, pi, d)) > eps:
                    rels.append(Relation(str(j), r, str(i)))
    return rels


def clevr_relationships(relations: list[Relation], n_objects: int) -> dict[str, list[list[int]]]:
    """The inverse of reading `relationships`: {r: [[j, ...] for each i]}."""
    out = {r: [[] for _ in range(n_objects)] for r in CLEVR_RELATIONS}
    for rel in relations:
        if rel.predicate in out:
            out[rel.predicate][int(rel.object)].append(int(rel.subject))
    for lists in out.values():
        for js in lists:
            js.sort()
    return out


def _relations_from_clevr(rels, n: int, *, file, record, key) -> list[Relation]:
    if not isinstance(rels, dict):
        raise DataError("expected {relation: [[object index, ...] per object]}", file=file, record=record, field=key)
    out = []
    for r, lists in rels.items():
        if not isinstance(lists, list) or len(lists) != n:
            raise DataError(f"expected one list per object ({n})", file=file, record=record, field=f"{key}.{r}")
        for i, js in enumerate(lists):
            for j in js if isinstance(js, list) else [js]:
                if not isinstance(j, int) or not 0 <= j < n:
                    raise DataError(f"refers to unknown object {j!r} (scene has {n})",
                                    file=file, record=record, field=f"{key}.{r}[{i}]")
                out.append(Relation(str(j), r, str(i)))
    return out


_COUNTS = {"3d_coords": "3, finite", "bbox": "4, finite"}


def _point(value) -> list[float] | None:
    """A graph file's optional object `point` ([x, y] pixels) or None; DataError if malformed."""
    if value is None:
        return None
    try:
        return _finite_numbers(value, 2)
    except (TypeError, ValueError):
        raise DataError(f"expected [x, y] finite numbers, got {value!r:.60}", field="point") from None


def _finite_numbers(values, n: int) -> list[float]:
    """`values` as n finite floats; ValueError (or TypeError) otherwise."""
    out = [float(v) for v in values]
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(values)
    return out


def _estimate_clevr_box(pixel_coords: list, size: dict[str, float], width: int) -> list[float]:
    if len(pixel_coords) < 2:
        raise DataError(f"expected [x, y, depth], got {pixel_coords!r}", field="pixel_coords")
    x, y = float(pixel_coords[0]), float(pixel_coords[1])
    depth = float(pixel_coords[2]) if len(pixel_coords) > 2 and pixel_coords[2] else 10.0
    radius = _CLEVR_SIZE_RADIUS.get(next(iter(size)), 0.5)
    r = _CLEVR_FOCAL_PX * (width / 480) * radius / max(depth, 1e-3)
    return [x - r, y - r, 2 * r, 2 * r]


def entropy(dist: dict[str, float]) -> float:
    """Shannon entropy (nats) of an attribute distribution."""
    return -sum(p * math.log(p) for p in dist.values() if p > 0)
