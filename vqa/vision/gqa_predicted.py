"""Predicted scene graphs for GQA evaluation: the GQA scene parser over an images folder.

    graphs, stats = predicted_scene_graphs("gqa/images", {"2354786", ...}, gold="val_sceneGraphs.json",
                                           cache="pred.json.scenes.jsonl")

`vqa evaluate --dataset gqa --scene-source predicted --images DIR` answers on these graphs
instead of the gold ones. Each image `DIR/<imageId>.jpg` (or .png, .jpeg) is parsed once
(16 at a time, with a progress bar); with `cache`, each parsed graph is appended to that
JSONL file as it is made (after a settings line naming the checkpoint), and a rerun with
the same checkpoint takes the graphs already there (`scenes_resumed`), so a killed
evaluation resumes without parsing again. With `gold` (a GQA scene-graph file), the
parsed graphs are also scored against the gold ones (`vqa.vision.gqa_metrics`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import DataError
from ..scene import SceneGraph
from .gqa_data import find_image

BATCH = 16


def load_parser(checkpoint=None, *, backend: str = "auto", device: str = "cpu"):
    """The GQA scene parser of `checkpoint` (default: the shipped one): its numpy twin when
    the `.npz` export is there (backend "auto" on the CPU, or "numpy"), else torch."""
    from .gqa_scene_parser import DEFAULT_CHECKPOINT

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    npz = path if path.suffix == ".npz" else path.with_suffix(".npz")
    if backend == "numpy" or (backend == "auto" and str(device) == "cpu" and npz.is_file()):
        if path.suffix != ".npz" and path.is_file():
            from ..runtime.checkpoints import check_export

            check_export(npz, path)
        from ..runtime.gqa_scene_parser import NumpyGQASceneParser

        return NumpyGQASceneParser.load(npz), npz
    from .gqa_scene_parser import load_gqa_scene_parser

    return load_gqa_scene_parser(path, device=device), path


def _read_cache(path: Path, settings: dict) -> dict[str, SceneGraph]:
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: the graphs before it stand
            if n == 0:
                if rec.get("settings") != settings:
                    raise DataError(f"holds scene graphs of other settings ({rec.get('settings')}; now {settings}): "
                                    "remove it or write the predictions elsewhere", file=path)
                continue
            out[str(rec["image_id"])] = SceneGraph.from_dict(rec["graph"], file=path)
    return out


def predicted_scene_graphs(images_dir, image_ids, *, checkpoint=None, gold=None, cache=None, backend: str = "auto",
                           device: str = "cpu", progress=None, certain: float | None = 0.95
                           ) -> tuple[dict[str, SceneGraph], dict]:
    """{image id: predicted SceneGraph} for `image_ids` as the reasoners read them
    (`gqa_core.reasoning_view` with `certain`; None: the raw graphs), and stats (images
    parsed, resumed, seconds, and with `gold` the raw graphs' scores)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError("no such images folder", file=images_dir)
    ids = sorted({str(i) for i in image_ids})
    paths = {i: find_image(images_dir, i) for i in ids}  # every image there before anything is parsed
    parser, used = load_parser(checkpoint, backend=backend, device=device)
    settings = {"images": str(images_dir), "checkpoint": str(used)}
    graphs = _read_cache(Path(cache), settings) if cache else {}
    graphs = {i: g for i, g in graphs.items() if i in paths}
    resumed = len(graphs)
    todo = [i for i in ids if i not in graphs]
    out = None
    if cache:
        fresh = not Path(cache).is_file()
        out = open(cache, "a", encoding="utf-8")
        if fresh:
            out.write(json.dumps({"settings": settings}) + "\n")
    t0 = time.perf_counter()
    starts = range(0, len(todo), BATCH)
    bar = progress(desc="scene graphs", total=len(todo)) if progress else None
    try:
        for s in starts:
            chunk = todo[s:s + BATCH]
            for i, g in zip(chunk, parser.parse_images([paths[i] for i in chunk], image_ids=chunk)):
                graphs[i] = g
                if out is not None:
                    out.write(json.dumps({"image_id": i, "graph": g.to_dict()}) + "\n")
            if out is not None:
                out.flush()
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if out is not None:
            out.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    stats = {"scene_source": "predicted", "images_dir": str(images_dir), "scene_checkpoint": str(used),
             "scenes_parsed": len(todo), "scenes_resumed": resumed, "scene_seconds": round(seconds, 2),
             "scenes_per_second": round(len(todo) / seconds, 2) if todo and seconds > 0 else None}
    if gold is not None:
        from ..datasets.gqa import SceneGraphs
        from .gqa_metrics import gqa_scene_scores

        gold_graphs = SceneGraphs(gold, keep=ids)
        have = [i for i in ids if i in gold_graphs]
        if have:
            stats["scene_scores"] = gqa_scene_scores([graphs[i] for i in have], [gold_graphs[i] for i in have])
    if certain is not None:
        from .gqa_core import reasoning_view

        graphs = {i: reasoning_view(g, certain) for i, g in graphs.items()}
        stats["reasoning_view"] = certain
    return graphs, stats
