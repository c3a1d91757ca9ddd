"""Write the GQA-format world in GQA's layout and file formats.

    summary = generate_gqa_dataset("gqa-synth", num_scenes=100, questions_per_scene=10, seed=0, split="train")

    gqa-synth/images/<imageId>.jpg
    gqa-synth/sceneGraphs/<split>_sceneGraphs.json               {imageId: {width, height, objects}}
    gqa-synth/questions1.2/<split>_balanced_questions.json       {questionId: {imageId, question, ...}}
    gqa-synth/questions1.2/<split>_choices.json                  {questionId: {valid, plausible}}

The files are read unchanged by `vqa.datasets.gqa` and `vqa evaluate --dataset gqa`.
Scene i draws from the same per-scene streams as the CLEVR-like world
(`vqa.datasets.synth.generate.scene_streams`), so the output depends only on (seed,
split, i), and files are written as they go (memory for one scene at a time).
Image ids are the scene index as a digit string; question ids are the image index
(6 digits) followed by the question's number (3 digits).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from ..synth.generate import _check_arguments, scene_streams
from .questions import ATTRIBUTE_TYPES, GQAQuestionGenerator
from .world import NAMES, scene_graph

ALL_NAMES = sorted(set(NAMES.values()))


def paths(out: str | Path, split: str) -> dict[str, Path]:
    out = Path(out)
    return {"images": out / "images", "scenes": out / "sceneGraphs" / f"{split}_sceneGraphs.json",
            "questions": out / "questions1.2" / f"{split}_balanced_questions.json",
            "choices": out / "questions1.2" / f"{split}_choices.json"}


def generate_gqa_dataset(out: str | Path, *, num_scenes: int, questions_per_scene: int, seed: int,
                         split: str = "train", image_size: tuple[int, int] = (320, 240), images: bool = True,
                         verify: bool = True, progress=None) -> dict:
    """Write `num_scenes` scene graphs (and rendered images when `images`) and up to
    `questions_per_scene` questions each. `verify` re-derives every answer with the
    reference executor. Out: a summary dict (paths, counts, seconds)."""
    _check_arguments(num_scenes, questions_per_scene, seed, split, image_size)
    from ..synth.scenes import generate_scene, generate_scene_record

    p = paths(out, split)
    for d in (p["scenes"].parent, p["questions"].parent) + ((p["images"],) if images else ()):
        d.mkdir(parents=True, exist_ok=True)
    gen = GQAQuestionGenerator(verify=verify)
    seconds = Counter()
    n_questions = 0
    indices = range(num_scenes)
    if progress is not None:
        indices = progress(indices, desc="scenes", total=num_scenes)
    with _DictWriter(p["scenes"]) as scenes_out, _DictWriter(p["questions"]) as questions_out, \
            _DictWriter(p["choices"]) as choices_out:
        for i in indices:
            scene_rng, question_rng = scene_streams(seed, split, i)
            image_id = str(i)
            t0 = time.perf_counter()
            if images:
                record, image = generate_scene(scene_rng, image_size=tuple(image_size), split=split, index=i)
                image.save(p["images"] / f"{image_id}.jpg", quality=95)
            else:
                record = generate_scene_record(scene_rng, image_size=tuple(image_size), split=split, index=i)
            sg = scene_graph(record, i)
            t1 = time.perf_counter()
            questions = gen.generate(image_id, sg, questions_per_scene, question_rng, qid_prefix=f"{i:06d}")
            seconds["scenes"] += t1 - t0
            seconds["questions"] += time.perf_counter() - t1
            scenes_out.write(image_id, sg)
            for qid, rec in questions.items():
                questions_out.write(qid, rec)
                choices_out.write(qid, choices(rec))
                n_questions += 1
    return {"out": str(out), "format": "gqa", "split": split, "scenes_file": str(p["scenes"]),
            "questions_file": str(p["questions"]), "choices_file": str(p["choices"]),
            "images_dir": str(p["images"]) if images else None, "num_scenes": num_scenes,
            "num_questions": n_questions, "questions_per_type": dict(sorted(gen.kind_counts.items())),
            "seconds_scenes": round(seconds["scenes"], 3), "seconds_questions": round(seconds["questions"], 3),
            "questions_per_second": round(n_questions / seconds["questions"], 1) if seconds["questions"] else None}


def choices(rec: dict) -> dict:
    """GQA's `valid` / `plausible` answers of one question of this world."""
    last = rec["semantic"][-1]
    op, arg = last["operation"], last["argument"]
    if rec["answer"] in ("yes", "no"):
        valid = ["yes", "no"]
    elif op == "query" and arg in ATTRIBUTE_TYPES:
        valid = list(ATTRIBUTE_TYPES[arg])
    elif op == "query":  # a name
        valid = ALL_NAMES
    elif op == "choose rel" or op.startswith("choose "):
        alts = arg.split(",")[1] if op == "choose rel" else arg
        valid = [a.replace("to the ", "").replace(" of", "") if a.startswith("to the") else a for a in alts.split("|")]
        if op in ("choose larger", "choose smaller"):
            valid = ALL_NAMES
    elif op == "common":
        valid = ["color", "material", "shape"]
    else:
        valid = [rec["answer"]]
    return {"valid": valid, "plausible": valid}


class _DictWriter:
    """Streams a JSON object `{key: record, ...}`, one entry per line."""

    def __init__(self, path: Path):
        self.path, self.first = path, True

    def __enter__(self):
        self.f = open(self.path, "w")
        self.f.write("{")
        return self

    def write(self, key: str, record: dict) -> None:
        self.f.write(("\n" if self.first else ",\n") + json.dumps(str(key)) + ": " + json.dumps(record, separators=(",", ":")))
        self.first = False

    def __exit__(self, *exc):
        self.f.write("\n}\n")
        self.f.close()
        return False
