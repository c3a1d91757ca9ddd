"""Measuring when a question is reported as not understood (issue 25, item 2).

    from vqa.honest import out_of_domain_rates
    for row in out_of_domain_rates("heldout/questions/CLEVR_test_questions.json",
                                   "heldout/scenes/CLEVR_test_scenes.json", [None, 0.5, 0.3]):
        print(row)

Per `max_unknown` limit (`vqa.pipeline.Pipeline(max_unknown=...)`): how many of the
hand-written out-of-domain questions (`vqa/data/out_of_domain.json`) are not
understood (with `fallback`, e.g. the LLM parser: how many of them it parsed instead), and
how many in-domain questions are refused and answered right: the
hand-written CLEVR questions (`vqa/data/human_questions.json`, on their two
scenes) and a generated CLEVR questions file on its gold scenes (question parser + ASP).
"""
from __future__ import annotations

import json
from pathlib import Path

from .datasets import clevr
from .ontology import normalise_answer
from .scene import SceneGraph

DATA = Path(__file__).resolve().parent / "data"  # package data (ships with the wheel)


def _answer_file(pipe, questions: list[dict], scenes: dict[str, dict]) -> list[tuple[bool, bool]]:
    """(understood, answered right) per question record, questions about one image in one batch."""
    by: dict[str, list[dict]] = {}
    for q in questions:
        by.setdefault(clevr.clevr_image_id(q), []).append(q)
    out = []
    for image, qs in by.items():
        scene = SceneGraph.from_clevr(scenes[image])
        for q, r in zip(qs, pipe.answer_many(scene, [q["question"] for q in qs])):
            out.append((r.understood, r.understood and r.answer == normalise_answer(q["answer"])))
    return out


def out_of_domain_rates(questions: str | Path, scenes: str | Path, limits: list[float | None], *,
                        out_of_domain: str | Path = DATA / "out_of_domain.json",
                        hand_written: str | Path = DATA / "human_questions.json", fallback=None) -> list[dict]:
    from .pipeline import Pipeline

    ood = json.loads(Path(out_of_domain).read_text(encoding="utf-8"))["questions"]
    hum = json.loads(Path(hand_written).read_text(encoding="utf-8"))
    hum_scenes = {clevr.clevr_image_id(r): r for r in hum["scenes"]}
    gen = json.loads(Path(questions).read_text(encoding="utf-8"))["questions"]
    gen_scenes = {clevr.clevr_image_id(r): r for r in clevr.iter_scene_records(scenes)}
    any_scene = SceneGraph.from_clevr(hum["scenes"][0])
    rows = []
    for limit in limits:
        pipe = Pipeline(max_unknown=limit, fallback=fallback)
        h = _answer_file(pipe, hum["questions"], hum_scenes)
        g = _answer_file(pipe, gen, gen_scenes)
        o = pipe.answer_many(any_scene, ood)
        rows.append({"max_unknown": limit,
                     "out_of_domain_not_understood": sum(not r.understood for r in o),
                     "out_of_domain_fallback_parsed": sum(r.parser == "llm" for r in o),
                     "out_of_domain": len(ood),
                     "hand_written_not_understood": sum(not u for u, _ in h), "hand_written_right": sum(ok for _, ok in h),
                     "hand_written": len(h),
                     "generated_not_understood": sum(not u for u, _ in g), "generated_right": sum(ok for _, ok in g),
                     "generated": len(g)})
    return rows
