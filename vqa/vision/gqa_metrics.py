"""Scores of predicted GQA scene graphs against gold ones (torch-free).

    scores = gqa_scene_scores(predicted_graphs, gold_graphs)

Objects are matched greedily, most confident prediction first, to the unmatched gold
object of highest IoU when that IoU is >= `iou` (0.5). Then:

- detection precision / recall / F1 over objects;
- name accuracy over matched objects (predicted name == gold name);
- attribute precision / recall / F1 (micro) over matched objects: predicted attributes
  are those with probability >= 0.5, gold ones GQA's list (category "attribute");
- relation recall@K (K = 20, 50, 100, 200): per image, the K most probable predicted
  triples (subject, predicate, object), mapped to gold ids through the matching, against the
  gold triples; the recall is summed over images (micro: gold triples found / gold triples).
  `relation_recall@gold` takes K = the image's number of gold triples (R-precision): unlike
  a fixed K it can reach 100 % on images with more than K gold triples (the GQA-format
  world has every pair of objects related left/right and most front/behind: ~2 triples per
  ordered pair, ~90 per image of 7 objects, so recall@50 is capped near 55 % there).
  `relation_recall_matched` separates the relation head from detection: of the gold triples
  whose two objects are both matched, the share predicted with probability >= 0.5.
"""
from __future__ import annotations

from ..scene import SceneGraph


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match(pred: SceneGraph, gold: SceneGraph, threshold: float = 0.5) -> dict[str, str]:
    """predicted object id -> gold object id (greedy by score, IoU >= threshold)."""
    out, used = {}, set()
    for p in sorted(pred.objects, key=lambda o: -o.score):
        best, best_iou = None, threshold
        for g in gold.objects:
            if g.id in used:
                continue
            v = iou(p.bbox, g.bbox)
            if v >= best_iou:
                best, best_iou = g.id, v
        if best is not None:
            out[p.id] = best
            used.add(best)
    return out


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float | None, float | None, float | None]:
    p = tp / n_pred if n_pred else None
    r = tp / n_gold if n_gold else None
    f = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else None
    return p, r, f


def gqa_scene_scores(predicted: list[SceneGraph], gold: list[SceneGraph], *, iou_threshold: float = 0.5,
                     ks: tuple[int, ...] = (20, 50, 100, 200)) -> dict:
    """Scores in percent (see the module docstring) over pairs of graphs of the same images."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted graphs for {len(gold)} gold ones")
    tp = n_pred = n_gold = names_ok = 0
    a_tp = a_pred = a_gold = 0
    rel_found = {k: 0 for k in ks}
    rel_found_gold = rel_between = rel_between_found = 0
    rel_gold = 0
    for pg, gg in zip(predicted, gold):
        m = match(pg, gg, iou_threshold)
        n_pred += len(pg.objects)
        n_gold += len(gg.objects)
        tp += len(m)
        gobj = {o.id: o for o in gg.objects}
        for o in pg.objects:
            if o.id not in m:
                continue
            g = gobj[m[o.id]]
            names_ok += o.name == g.name
            ps = {v for v, p in o.attributes.get("attribute", {}).items() if p >= 0.5}
            gs = set(g.attributes.get("attribute", {}))
            a_tp += len(ps & gs)
            a_pred += len(ps)
            a_gold += len(gs)
        gold_triples = {(r.subject, r.predicate, r.object) for r in gg.relations}
        rel_gold += len(gold_triples)
        ranked = sorted(pg.relations, key=lambda r: -r.probability)
        mapped = [(m.get(r.subject), r.predicate, m.get(r.object)) for r in ranked]
        pg_prob = {}
        for t, r in zip(mapped, ranked):
            pg_prob[t] = max(pg_prob.get(t, 0.0), r.probability)
        for k in ks:
            rel_found[k] += len(gold_triples & set(mapped[:k]))
        rel_found_gold += len(gold_triples & set(mapped[:len(gold_triples)]))
        matched_gold = set(m.values())
        between = {t for t in gold_triples if t[0] in matched_gold and t[2] in matched_gold}
        rel_between += len(between)
        rel_between_found += len(between & {t for t in mapped if t[0] is not None and t[2] is not None
                                           and pg_prob.get(t, 0) >= 0.5})
    _, _, f1 = _prf(tp, n_pred, n_gold)
    precision, recall, _ = _prf(tp, n_pred, n_gold)
    ap, ar, af = _prf(a_tp, a_pred, a_gold)

    def pct(x):
        return None if x is None else round(100 * x, 2)

    out = {"images": len(gold), "objects_gold": n_gold, "objects_predicted": n_pred, "matched": tp,
           "detection_precision": pct(precision), "detection_recall": pct(recall), "detection_f1": pct(f1),
           "name_accuracy": pct(names_ok / tp if tp else None),
           "attribute_precision": pct(ap), "attribute_recall": pct(ar), "attribute_f1": pct(af),
           "relations_gold": rel_gold}
    for k in ks:
        out[f"relation_recall@{k}"] = pct(rel_found[k] / rel_gold if rel_gold else None)
    out["relation_recall@gold"] = pct(rel_found_gold / rel_gold if rel_gold else None)
    # relations alone: gold triples between two matched objects predicted with probability >= 0.5
    out["relation_recall_matched"] = pct(rel_between_found / rel_between if rel_between else None)
    return out


def format_scores(s: dict) -> str:
    def f(x):
        return "-" if x is None else f"{x:.2f}"
    rec = " ".join(f"R@{k.split('@')[1]} {f(v)}" for k, v in s.items() if k.startswith("relation_recall@"))
    return (f"{s['images']} images, {s['objects_gold']} gold objects: detection F1 {f(s['detection_f1'])} "
            f"(P {f(s['detection_precision'])} R {f(s['detection_recall'])}), names {f(s['name_accuracy'])}, "
            f"attributes F1 {f(s['attribute_f1'])}, relations {rec}")
