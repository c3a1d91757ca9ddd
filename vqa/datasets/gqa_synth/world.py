"""The GQA-format world: a CLEVR-like scene record -> a GQA scene-graph record.

Names follow the shape and the material of an object, and every name sits under a
category of the shipped GQA ontology (data/gqa_ontology.json), so that `select` by a
category works ("container" selects boxes and cans, "food" apples and oranges through
"fruit"):

    cube:      rubber "box" (container)      metal "cabinet" (furniture)
    cylinder:  rubber "stool" (furniture)    metal "can" (container)
    sphere:    rubber "orange" (fruit)       metal "apple" (fruit)        fruit -> food

Attributes are bare strings of several types (the ontology gives their types): colour
(CLEVR's eight, cyan written "teal" as GQA has no cyan), material ("metal", "rubber"),
size ("large", "small"), shape ("square", "round") and texture ("shiny" for metal).
Relations use GQA's names: "to the left of", "to the right of", "in front of",
"behind" (CLEVR's rule over all pairs) and "next to" (ground gap below
`NEXT_TO_GAP`, both ways). Horizontal and vertical positions are not stored: GQA
derives them from the box (image thirds), as the reasoners here do.
"""
from __future__ import annotations

import math

from ...ontology import CLEVR_RELATIONS
from ...scene import clevr_relations
from ..synth.geometry import SIZE_RADIUS

NAMES = {("cube", "rubber"): "box", ("cube", "metal"): "cabinet",
         ("cylinder", "rubber"): "stool", ("cylinder", "metal"): "can",
         ("sphere", "rubber"): "orange", ("sphere", "metal"): "apple"}
# category -> names below it (one level; "food" is above "fruit")
CATEGORIES = {"container": ["box", "can"], "furniture": ["cabinet", "stool"], "fruit": ["apple", "orange"],
              "food": ["fruit"]}
PLURALS = {"box": "boxes", "cabinet": "cabinets", "stool": "stools", "can": "cans", "orange": "oranges",
           "apple": "apples", "container": "containers", "furniture": "furniture", "fruit": "fruits",
           "food": "food"}
COLORS = {"gray": "gray", "red": "red", "blue": "blue", "green": "green", "brown": "brown", "purple": "purple",
          "cyan": "teal", "yellow": "yellow"}
SHAPES = {"cube": "square", "cylinder": "round", "sphere": "round"}
ATTRIBUTE_TYPES = {"color": sorted(COLORS.values()), "material": ["metal", "rubber"], "size": ["large", "small"],
                   "shape": ["round", "square"], "texture": ["shiny"]}
RELATIONS = {"left": "to the left of", "right": "to the right of", "front": "in front of", "behind": "behind"}
NEXT_TO = "next to"
NEXT_TO_GAP = 0.6  # scene units between the bounding circles of two objects
assert set(RELATIONS) == set(CLEVR_RELATIONS)


def categories_of(name: str) -> list[str]:
    """Every category above `name`, nearest first ("apple" -> ["fruit", "food"])."""
    out, todo = [], [name]
    while todo:
        n = todo.pop(0)
        for c, below in CATEGORIES.items():
            if n in below and c not in out:
                out.append(c)
                todo.append(c)
    return out


def object_attributes(obj: dict) -> dict[str, str]:
    """type -> value of one CLEVR-like object (texture only for shiny objects)."""
    attrs = {"color": COLORS[obj["color"]], "material": obj["material"], "size": obj["size"],
             "shape": SHAPES[obj["shape"]]}
    if obj["material"] == "metal":
        attrs["texture"] = "shiny"
    return attrs


def object_ids(index: int, n: int) -> list[str]:
    """Object ids of scene `index`: digit strings unique over a file (GQA's are global)."""
    return [str((index + 1) * 100 + k) for k in range(n)]


def scene_graph(record: dict, index: int) -> dict:
    """A GQA scene-graph record {width, height, objects: {id: {...}}} of a CLEVR-like
    scene record (with `bbox`, `3d_coords`, `directions`)."""
    objs = record["objects"]
    ids = object_ids(index, len(objs))
    rels: dict[int, list[dict]] = {i: [] for i in range(len(objs))}
    for r in clevr_relations([o["3d_coords"] for o in objs], record["directions"]):
        rels[int(r.subject)].append({"name": RELATIONS[r.predicate], "object": ids[int(r.object)]})
    for i, a in enumerate(objs):
        for j, b in enumerate(objs):
            if i != j:
                gap = math.hypot(a["3d_coords"][0] - b["3d_coords"][0], a["3d_coords"][1] - b["3d_coords"][1]) \
                    - SIZE_RADIUS[a["size"]] - SIZE_RADIUS[b["size"]]
                if gap < NEXT_TO_GAP:
                    rels[i].append({"name": NEXT_TO, "object": ids[j]})
    out = {}
    for i, o in enumerate(objs):
        x, y, w, h = o["bbox"]
        out[ids[i]] = {"name": NAMES[(o["shape"], o["material"])],
                       "x": int(round(x)), "y": int(round(y)), "w": max(1, int(round(w))), "h": max(1, int(round(h))),
                       "attributes": list(object_attributes(o).values()),
                       "relations": sorted(rels[i], key=lambda r: (r["name"], int(r["object"])))}
    return {"width": int(record["width"]), "height": int(record["height"]), "objects": out}
