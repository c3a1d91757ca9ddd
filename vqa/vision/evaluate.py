"""Scene-level and question-level evaluation of a scene parser on a CLEVR-layout split.

    scenes = predict_split(parser, "synth", "val")                 # {image_id: predicted SceneGraph}
    report = evaluate_split(parser, "synth", "val", questions=True)
    print(format_split_report(report))

`predict_split` is the hook for `vqa evaluate --scene-source predicted`: it returns
predicted graphs keyed by image id, the same keys as `vqa.datasets.clevr.load_scenes`.
The question part runs the reference executor (`vqa.executor`, the oracle) on the
questions file with gold and with predicted scenes, side by side.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..datasets.clevr import iter_questions, iter_scenes, load_scenes
from ..errors import DataError
from ..executor import execute
from ..scene import SceneGraph
from .core import HYSTERESIS_GRID, decoding_grid
from .metrics import SceneMetrics, format_scene_report


def predict_split(parser, root: str | Path, split: str, *, image_ids: list[str] | None = None,
                  batch_size: int = 32, progress=None) -> dict[str, SceneGraph]:
    """Predicted scene graphs of the images of `root/images/<split>/` named by the split's
    scenes file (or `image_ids`), keyed by image id (file name without extension)."""
    root = Path(root)
    if image_ids is None:
        scenes_file = root / "scenes" / f"CLEVR_{split}_scenes.json"
        if scenes_file.is_file():
            image_ids = list(load_scenes(scenes_file))
        else:
            image_ids = sorted(p.stem for p in (root / "images" / split).glob("*.png"))
    if not image_ids:
        raise DataError(f"no images for split {split!r}", file=root)
    out: dict[str, SceneGraph] = {}
    chunks = [image_ids[i:i + batch_size] for i in range(0, len(image_ids), batch_size)]
    for chunk in (progress(chunks, desc="parse images", total=len(chunks)) if progress else chunks):
        paths = [root / "images" / split / f"{i}.png" for i in chunk]
        for image_id, graph in zip(chunk, parser.parse_images(paths, image_ids=chunk)):
            out[image_id] = graph
    return out


def question_accuracy(questions_file: str | Path, scenes: dict[str, SceneGraph], *, limit: int | None = None) -> dict:
    """Accuracy of the reference executor on `scenes` over a CLEVR questions file."""
    right = total = failed = 0
    for q in iter_questions(questions_file):
        if limit is not None and total >= limit:
            break
        if q.answer is None or q.program is None or q.image_id not in scenes:
            continue
        r = execute(q.program, scenes[q.image_id])
        total += 1
        right += r.answer == q.answer
        failed += r.answer is None
    return {"questions": total, "correct": right, "failed": failed, "accuracy": right / total if total else None}


def evaluate_split(parser, root: str | Path, split: str, *, questions: bool = True, distance: float = 0.05,
                   limit: int | None = None, progress=None) -> dict:
    """Scene metrics (predicted vs gold scenes) and, when the split has a questions file,
    VQA accuracy with gold and with predicted scenes on the same questions."""
    root = Path(root)
    gold, hidden = _gold_and_hidden(root / "scenes" / f"CLEVR_{split}_scenes.json")
    ids = list(gold)[:limit] if limit else list(gold)
    t0 = time.perf_counter()
    pred = predict_split(parser, root, split, image_ids=ids, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = SceneMetrics(distance=distance)
    for i in ids:
        metrics.add(pred[i], gold[i], hidden.get(i))
    report = {"root": str(root), "split": split, "scene": metrics.summary(),
              "parse_images_per_s": round(len(ids) / seconds, 2) if seconds > 0 else None}
    qfile = root / "questions" / f"CLEVR_{split}_questions.json"
    if questions and qfile.is_file():
        report["vqa_gold"] = question_accuracy(qfile, {i: gold[i] for i in ids})
        report["vqa_predicted"] = question_accuracy(qfile, pred)
    return report


def _gold_and_hidden(scenes_file: Path) -> tuple[dict[str, SceneGraph], dict[str, list[float]]]:
    """The gold scene graphs of a scenes file by image id and, in the same pass, the hidden shares
    of their objects where the record tells them (the project's Blender renders:
    `vqa.vision.data.known_hidden_shares`)."""
    from .data import known_hidden_shares

    gold, hidden = {}, {}
    for rec, graph in iter_scenes(scenes_file):
        gold[graph.image_id] = graph
        shares = known_hidden_shares(rec)
        if shares is not None:
            hidden[graph.image_id] = shares
    return gold, hidden


def tune_decoding(parser, root: str | Path, split: str, *, limit: int | None = 200, distance: float = 0.05,
                  thresholds=(0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5), ious=(0.3, 0.45, 0.6, 0.7),
                  low=HYSTERESIS_GRID) -> dict:
    """Choose the decoding settings (`score_threshold`, `nms_iou`, hysteresis `low_threshold` /
    `low_iou`) with the best object F1 on a held-out split (ties: the more perfectly parsed
    scenes, then the first in grid order, which starts with hysteresis off), set them on
    `parser.cfg` and return them with "f1" and the "grid". The network runs once per image."""
    import torch

    from .scene_parser import decode, image_tensor, input_size, load_image

    root = Path(root)
    gold = load_scenes(root / "scenes" / f"CLEVR_{split}_scenes.json")
    ids = list(gold)[:limit] if limit else list(gold)
    parser.eval()
    maps, sizes = [], []
    with torch.no_grad():
        for k in range(0, len(ids), 32):
            pils = [load_image(root / "images" / split / f"{i}.png") for i in ids[k:k + 32]]
            for im in pils:
                x = image_tensor(im, input_size(im.size, parser.cfg))[None].to(parser.device)
                maps.append({n: m[0].float().cpu().numpy() for n, m in parser.predict_maps(x).items()})
                sizes.append(im.size)
    keys = ("score_threshold", "nms_iou", "low_threshold", "low_iou")
    old = {k: getattr(parser.cfg, k) for k in keys}
    grid, best = [], None
    for setting in decoding_grid(thresholds, ious, low, off_iou=old["low_iou"]):
        for k, v in setting.items():
            setattr(parser.cfg, k, v)
        metrics = SceneMetrics(distance=distance)
        for i, m, size in zip(ids, maps, sizes):
            metrics.add(decode(m, parser.cfg, image_size=size, image_id=i), gold[i])
        s = metrics.summary()
        grid.append({**setting, "f1": s["f1"], "perfect": s["perfect_scenes"]})
        key = (round(s["f1"], 6), s["perfect_scenes"] or 0.0)
        if best is None or key > best[0]:
            best = (key, setting, s["f1"])
    chosen = old if best is None else best[1]
    for k, v in chosen.items():
        setattr(parser.cfg, k, v)
    return {**chosen, "f1": None if best is None else best[2], "grid": grid}


def format_split_report(report: dict) -> str:
    lines = [f"{report['root']} split {report['split']}", format_scene_report(report["scene"])]
    if report.get("parse_images_per_s"):
        lines.append(f"parsing: {report['parse_images_per_s']} images/s (image loading and decoding included)")
    if "vqa_gold" in report:
        g, p = report["vqa_gold"], report["vqa_predicted"]

        def pct(x):
            return "-" if x is None else f"{100 * x:.2f}%"
        lines.append(f"VQA accuracy (reference executor, {p['questions']} questions): gold scenes {pct(g['accuracy'])}, "
                     f"predicted scenes {pct(p['accuracy'])}")
    return "\n".join(lines)
