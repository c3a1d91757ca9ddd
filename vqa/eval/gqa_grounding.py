"""GQA's grounding score, re-implemented from the definition of the official `eval.py`.

An attentions file (any model's) is a JSON list of `{"questionId", "attention": [[x0, y0,
x1, y1, score], ...]}`: per question, attention mass over boxes given in pixels of the
image. The gold regions of a question are the boxes of the scene-graph objects its
`annotations` point to, those of the question text and those of the full answer (an
object named twice counts twice); every box is normalised by the image's width and height.
A question's score is, summed over the gold regions and the attention boxes,
`score * area(box & region) / area(box)`: the attention that falls on the regions. The
grounding figure is the mean over the scored questions, in percent (as the official script
prints it). Since an object named in both the question and the full answer counts twice,
the figure can pass 100; `grounding_distinct` counts each annotated object once (a share of
the attention, at most 100 for a distribution over disjoint boxes). A scored question without an entry in the file scores 0 (`grounding_missing`;
the official script stops on it). The official script also means to add the whole image as
a region when the question refers to the scene, but its test looks for "scene" among the
keys of the program steps, which never holds on GQA 1.2 files; this module gives the same
figures by leaving that region out.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..datasets.gqa import SceneGraphs, iter_question_records
from ..errors import DataError


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def gold_regions(question: dict, scene: dict, distinct: bool = False) -> list[tuple[float, float, float, float]]:
    """Normalised (x0, y0, x1, y1) of the objects the question's and full answer's
    annotations point to (a DataError for an id absent from the scene graph); `distinct`:
    each object once."""
    ann = question.get("annotations") or {}
    width, height = float(scene["width"]), float(scene["height"])
    out, seen = [], set()
    for part in ("question", "fullAnswer"):
        for span, oid in (ann.get(part) or {}).items():
            obj = (scene.get("objects") or {}).get(str(oid))
            if obj is None:
                raise DataError(f"annotation {part}[{span!r}] points to object {oid!r}, absent from the scene graph",
                                field=f"annotations.{part}")
            if distinct and str(oid) in seen:
                continue
            seen.add(str(oid))
            x, y = float(obj["x"]), float(obj["y"])
            out.append((x / width, y / height, (x + float(obj["w"])) / width, (y + float(obj["h"])) / height))
    return out


def grounding_score(question: dict, scene: dict, attention, distinct: bool = False) -> float:
    """One question's grounding: attention mass on its gold regions (a fraction; can pass 1
    where regions overlap or repeat, as in the official definition; `distinct`: each
    annotated object counted once)."""
    width, height = float(scene["width"]), float(scene["height"])
    regions = gold_regions(question, scene, distinct)
    total = 0.0
    for x0, y0, x1, y1, score in attention:
        box = (x0 / width, y0 / height, x1 / width, y1 / height)
        area = (box[2] - box[0]) * (box[3] - box[1])
        if area <= 0:
            continue
        total += score * sum(_overlap(box, r) for r in regions) / area
    return total


def official_entry(entry, i: int, key: str, path) -> tuple[str, object]:
    """(question id as a string, `entry[key]`) of record `i` of a file in GQA's official
    list-of-objects form ({"questionId", key}); a malformed record is a DataError naming it."""
    if not isinstance(entry, dict):
        raise DataError(f"expected an object, got {type(entry).__name__}", file=path, record=f"[{i}]")
    for k in ("questionId", key):
        if k not in entry:
            raise DataError("missing", file=path, record=f"[{i}]", field=k)
    qid = entry["questionId"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise DataError(f"expected a string, got {type(qid).__name__}", file=path, record=f"[{i}]",
                        field="questionId")
    return str(qid), entry[key]


def read_attentions(path) -> dict[str, list]:
    """questionId -> [[x0, y0, x1, y1, score], ...] of an attentions file (a DataError,
    one line, naming the entry and field of a malformed one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", file=path) from None
    except ValueError as e:
        raise DataError(f"malformed JSON: {e}", file=path) from None
    if not isinstance(data, list):
        raise DataError(f"expected a list of {{\"questionId\", \"attention\"}} objects, got {type(data).__name__}",
                        file=path)
    out = {}
    for i, entry in enumerate(data):
        qid, att = official_entry(entry, i, "attention", path)
        if not isinstance(att, list):
            raise DataError(f"expected a list of [x0, y0, x1, y1, score], got {type(att).__name__}", file=path,
                            record=f"[{i}]", field="attention")
        for j, box in enumerate(att):
            if (not isinstance(box, list) or len(box) != 5
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in box)):
                raise DataError("expected [x0, y0, x1, y1, score] (five finite numbers)", file=path,
                                record=f"[{i}]", field=f"attention[{j}]")
        out[qid] = [[float(v) for v in box] for box in att]
    return out


def write_attentions(path, attentions: dict[str, list]) -> int:
    """Write questionId -> boxes as an attentions file in the official format; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"questionId": q, "attention": a} for q, a in attentions.items()]))
    return len(attentions)


def graph_attention(scene, distribution: dict[str, float]) -> list[list[float]]:
    """[x0, y0, x1, y1, score] per object of a `SceneGraph` (boxes in pixels) from an
    {object id: probability} distribution (e.g. the NSM's final reasoning step)."""
    out = []
    for o in scene.objects:
        p = distribution.get(o.id)
        if p is None or o.bbox is None:
            continue
        x, y, w, h = o.bbox
        out.append([round(x, 3), round(y, 3), round(x + w, 3), round(y + h, 3), float(p)])
    return out


def score_grounding(questions, scenes, attentions, *, scored: set | None = None, all_questions: bool = False) -> dict:
    """`grounding` (percent), `grounding_distinct` (each object once), `grounding_questions` (scored) and `grounding_missing` (scored
    questions with no attention entry, counted 0) for a questions file, its gold scene-graph
    file and `attentions` (a file or questionId -> boxes). `scored`: the question ids scored
    (default: the balanced ones, all with `all_questions`)."""
    att = read_attentions(attentions) if isinstance(attentions, (str, Path)) else attentions
    picked = []
    for f, qid, rec in iter_question_records(questions):
        if scored is not None:
            if qid not in scored:
                continue
        elif not (all_questions or rec.get("isBalanced")):
            continue
        picked.append((f, qid, {"imageId": str(rec.get("imageId")), "annotations": rec.get("annotations") or {}}))
    graphs = SceneGraphs(scenes, keep={q["imageId"] for _, _, q in picked})
    scores, once, missing = [], [], 0
    for f, qid, q in picked:
        if qid not in att:
            missing += 1
            scores.append(0.0)
            once.append(0.0)
            continue
        if q["imageId"] not in graphs:
            raise DataError(f"no scene graph for image {q['imageId']!r}", file=scenes, record=qid, field="imageId")
        try:
            scene = graphs.record(q["imageId"])
            scores.append(grounding_score(q, scene, att[qid]))
            once.append(grounding_score(q, scene, att[qid], distinct=True))
        except DataError as e:
            raise e.located(file=f, record=qid) from None
    return {"grounding": 100.0 * sum(scores) / len(scores) if scores else None,
            "grounding_distinct": 100.0 * sum(once) / len(once) if once else None,
            "grounding_questions": len(scores), "grounding_missing": missing}
