"""Scene-level scores of predicted against gold scene graphs.

    m = SceneMetrics(distance=0.05)
    for pred, gold in pairs:
        m.add(pred, gold)
    m.summary()   # {"precision", "recall", "f1", "attribute_accuracy", "attribute_accuracy_by_category",
                  #  "count_accuracy", "relation_accuracy", "scenes", ...}

Matching: greedy by centre distance, closest pairs first: a predicted box's centre against
the gold object's `anchor` (CLEVR's `pixel_coords`, the projected 3-D centre, where the record
also has a tight `bbox`, as the project's Blender renders do; otherwise the box centre); a pair
matches when the distance is at most `distance` times the gold image's width (default
5%). Attribute accuracy: the predicted most likely value equals the gold value, over
matched objects and categories. Count accuracy: scenes whose number of predicted
objects equals the gold number. Relation accuracy: over ordered pairs of matched gold
objects and the relations left/right/front/behind, whether the prediction holds the
relation between the matched predicted objects exactly when the gold graph does.
Centre error: the same distance for a matched pair (`centre_within_5px`: the share of
matched objects within 5 pixels of the gold image; `centre_error_median`).
"""
from __future__ import annotations

import math

from ..datasets.blender.driver import HIDDEN_FLOOR
from ..ontology import CLEVR_RELATIONS
from ..scene import SceneGraph


def match_objects(pred: SceneGraph, gold: SceneGraph, distance: float = 0.05) -> list[tuple[int, int]]:
    """[(pred index, gold index)] matched one-to-one, greedily by centre distance."""
    limit = distance * gold.width
    pairs = []
    for i, p in enumerate(pred.objects):
        pc = p.centre
        for j, g in enumerate(gold.objects):
            d = math.dist(pc, g.anchor)
            if d <= limit:
                pairs.append((d, i, j))
    pairs.sort()
    used_p, used_g, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            out.append((i, j))
    return out


class SceneMetrics:
    """Accumulates counts over scenes; `summary()` turns them into rates."""

    def __init__(self, distance: float = 0.05, categories=("color", "size", "material", "shape")):
        self.distance = distance
        self.categories = tuple(categories)
        self.n_pred = self.n_gold = self.n_match = 0
        self.attr_right = {c: 0 for c in self.categories}
        self.attr_total = {c: 0 for c in self.categories}
        self.scenes = self.count_right = self.perfect = 0
        self.rel_right = self.rel_total = 0
        self.centre_errors: list[float] = []  # pixels of the gold image, per matched object
        self.centre_hidden: list[float | None] = []  # the gold object's hidden share, where known

    def add(self, pred: SceneGraph, gold: SceneGraph, hidden: list[float] | None = None) -> dict:
        """Score one scene; returns its own counts. `hidden`: per gold object, the share of it
        hidden behind others (`vqa.vision.data.known_hidden_shares`), for `centre_by_hidden`."""
        pairs = match_objects(pred, gold, self.distance)
        self.scenes += 1
        self.n_pred += len(pred.objects)
        self.n_gold += len(gold.objects)
        self.n_match += len(pairs)
        self.count_right += len(pred.objects) == len(gold.objects)
        attr_wrong = 0
        for i, j in pairs:
            self.centre_errors.append(math.dist(pred.objects[i].centre, gold.objects[j].anchor))
            self.centre_hidden.append(None if hidden is None else float(hidden[j]))
            for c in self.categories:
                gv = gold.objects[j].value(c)
                if gv is None:
                    continue
                ok = pred.objects[i].value(c) == gv
                self.attr_right[c] += ok
                self.attr_total[c] += 1
                attr_wrong += not ok
        pred_rel = {(r.subject, r.predicate, r.object) for r in pred.relations}
        gold_rel = {(r.subject, r.predicate, r.object) for r in gold.relations}
        rel_wrong = 0
        for a, (pi, gi) in enumerate(pairs):
            for b, (pj, gj) in enumerate(pairs):
                if a == b:
                    continue
                for r in CLEVR_RELATIONS:
                    p = (pred.objects[pi].id, r, pred.objects[pj].id) in pred_rel
                    g = (gold.objects[gi].id, r, gold.objects[gj].id) in gold_rel
                    self.rel_right += p == g
                    self.rel_total += 1
                    rel_wrong += p != g
        perfect = (len(pairs) == len(pred.objects) == len(gold.objects) and not attr_wrong and not rel_wrong)
        self.perfect += perfect
        return {"matched": len(pairs), "predicted": len(pred.objects), "gold": len(gold.objects),
                "attribute_errors": attr_wrong, "relation_errors": rel_wrong, "perfect": perfect}

    def summary(self) -> dict:
        def rate(a, b):
            return a / b if b else None

        p, r = rate(self.n_match, self.n_pred), rate(self.n_match, self.n_gold)
        f1 = 2 * p * r / (p + r) if p and r else 0.0
        total = sum(self.attr_total.values())
        return {"scenes": self.scenes, "predicted_objects": self.n_pred, "gold_objects": self.n_gold,
                "matched_objects": self.n_match, "precision": p, "recall": r, "f1": f1,
                "attribute_accuracy": rate(sum(self.attr_right.values()), total),
                "attribute_accuracy_by_category": {c: rate(self.attr_right[c], self.attr_total[c])
                                                   for c in self.categories},
                "count_accuracy": rate(self.count_right, self.scenes),
                "relation_accuracy": rate(self.rel_right, self.rel_total),
                "perfect_scenes": rate(self.perfect, self.scenes), "distance": self.distance,
                "centre_within_5px": rate(sum(e <= 5.0 for e in self.centre_errors), len(self.centre_errors)),
                "centre_error_median": _median(self.centre_errors),
                "centre_by_hidden": self._centre_by_hidden()}

    def _centre_by_hidden(self) -> list[dict] | None:
        """Centres within 5 px per band of the gold objects' hidden share (`HIDDEN_BANDS`), over
        the matched objects whose share is known; None when none is."""
        known = [(e, h) for e, h in zip(self.centre_errors, self.centre_hidden) if h is not None]
        if not known:
            return None
        out = []
        for lo, hi in HIDDEN_BANDS:
            errs = [e for e, h in known if (lo < h <= hi) or (lo == 0 and h == 0)]
            out.append({"hidden": [lo, hi], "objects": len(errs),
                        "within_5px": sum(e <= 5.0 for e in errs) / len(errs) if errs else None,
                        "median_error": _median(errs)})
        return out


HIDDEN_BANDS = ((0.0, HIDDEN_FLOOR), (HIDDEN_FLOOR, 0.5), (0.5, 1.0))  # the first: ~visible (`HIDDEN_FLOOR`)


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def format_scene_report(s: dict) -> str:
    """A short text table of `SceneMetrics.summary()`."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    lines = [f"scenes {s['scenes']}  objects: gold {s['gold_objects']}, predicted {s['predicted_objects']}, "
             f"matched {s['matched_objects']} (centre within {100 * s['distance']:g}% of the width)",
             f"object precision {pct(s['precision'])}  recall {pct(s['recall'])}  F1 {pct(s['f1'])}",
             f"attribute accuracy {pct(s['attribute_accuracy'])}  (" + ", ".join(
                 f"{c} {pct(v)}" for c, v in s["attribute_accuracy_by_category"].items()) + ")",
             f"count accuracy {pct(s['count_accuracy'])}  relation accuracy {pct(s['relation_accuracy'])}  "
             f"perfect scenes {pct(s['perfect_scenes'])}"]
    if s.get("centre_within_5px") is not None:
        lines.append(f"box centres within 5 px of the gold centre {pct(s['centre_within_5px'])} of matched objects "
                     f"(median error {s['centre_error_median']:.2f} px)")
    if s.get("centre_by_hidden"):
        lines.append("  by the share of the object hidden behind others: " + ", ".join(
            f"{b['hidden'][0]:g}-{b['hidden'][1]:g}: {pct(b['within_5px'])} of {b['objects']}"
            for b in s["centre_by_hidden"]))
    return "\n".join(lines)
