"""Evaluation on CLEVR: answer a questions file over its scenes, score, break down.

    report = evaluate_clevr("CLEVR_val_questions.json", "CLEVR_val_scenes.json",
                            reasoner="asp", scene_source="gold", limit=1000,
                            out="report.json", predictions="predictions.json")
    print(format_report(report))

The report holds `accuracy`, `total`, `correct`, `failed` (questions the reasoner could
not answer: a step failed), `unscored` (no gold answer, e.g. the test split), and the
breakdowns `by_template` (CLEVR's nine template files, from `template_filename`;
"unknown" when a record does not name its template) and `by_function` (CLEVR's usual
report by final function: exist, count, compare_integer, query_attribute,
compare_attribute). Predictions are a JSON list of
`{"question_index", "image_filename", "prediction", "answer", "error"}`.

Reasoners: "asp" (`vqa.reason.asp.ASPReasoner`, several scenes per clingo call) and
"reference" (the reference executor `vqa.executor`, for comparison; "executor" is an alias). Scene source: "gold" (the scenes
file); predicted scenes come with the vision scene parser.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path

from .datasets import clevr
from .errors import DataError, VQAError
from .program import Program
from .question import Question

FINAL_FUNCTION_GROUPS = {
    "exist": "exist", "count": "count",
    "equal_integer": "compare_integer", "less_than": "compare_integer", "greater_than": "compare_integer",
    **{f"query_{c}": "query_attribute" for c in ("color", "size", "material", "shape")},
    **{f"equal_{c}": "compare_attribute" for c in ("color", "size", "material", "shape")},
}
TEMPLATE_GROUPS = ("zero_hop", "one_hop", "two_hop", "three_hop", "single_and", "single_or", "same_relate",
                   "comparison", "compare_integer")
REASONERS = ("asp", "reference")  # "executor" is accepted for "reference"
SCENE_SOURCES = ("gold",)


def final_function(program: Program | None) -> str:
    """CLEVR's report group of a program's last function ("other" for anything else)."""
    if program is None or not program.steps:
        return "other"
    return FINAL_FUNCTION_GROUPS.get(program.steps[-1].op, "other")


def template_group(question: Question) -> str:
    """The template file a question came from ("one_hop" for "one_hop.json"), or "unknown"."""
    name = question.meta.get("template_filename")
    if isinstance(name, str) and name:
        return Path(name).name.rsplit(".", 1)[0]
    return "unknown"


def _answer_fn(reasoner: str, theory_dir=None):
    """A function [(scene, [program])] -> [[(answer | None, error | None)]]."""
    if reasoner == "asp":
        from .reason.asp import ASPReasoner

        asp = ASPReasoner(theory_dir, explain=False)

        def run(batch):
            return [[(a.answer, a.error) for a in answers] for answers in asp.answer_many(batch)]
        return run
    if reasoner in ("reference", "executor"):
        from .executor import execute

        def run(batch):
            return [[(r.answer, r.error) for r in (execute(p, scene) for p in programs)] for scene, programs in batch]
        return run
    raise VQAError(f"unknown reasoner {reasoner!r} (expected one of {', '.join(REASONERS)})")


def evaluate_clevr(questions: str | Path, scenes: str | Path, *, reasoner: str = "asp", scene_source: str = "gold",
                   limit: int | None = None, out: str | Path | None = None, predictions: str | Path | None = None,
                   progress=None, theory_dir=None, scenes_per_call: int = 8) -> dict:
    """Answer every question of a CLEVR questions file (the first `limit`) on its scene and
    score it. `progress` is an optional wrapper for the scene loop (e.g. a tqdm bar).
    Writes the report to `out` and the predictions to `predictions` when given."""
    if scene_source not in SCENE_SOURCES:
        raise VQAError(f"scene source {scene_source!r} is not available here (expected one of "
                       f"{', '.join(SCENE_SOURCES)}; predicted scenes need the vision scene parser)")
    answer = _answer_fn(reasoner, theory_dir)
    scene_graphs = clevr.load_scenes(scenes)
    by_image: OrderedDict[str, list[Question]] = OrderedDict()
    n = 0
    for q in clevr.iter_questions(questions):
        if limit is not None and n >= limit:
            break
        if q.image_id not in scene_graphs:
            raise DataError(f"no scene for image {q.image_id!r} in {scenes}", file=questions, record=q.qid,
                            field="image_filename")
        by_image.setdefault(q.image_id, []).append(q)
        n += 1
    start = time.perf_counter()
    results: dict[int, tuple[str | None, str | None]] = {}
    images = list(by_image)
    chunks = [images[i:i + scenes_per_call] for i in range(0, len(images), scenes_per_call)]
    for chunk in (progress(chunks, desc="scenes", total=len(chunks)) if progress else chunks):
        batch, order = [], []
        for image_id in chunk:
            qs = [q for q in by_image[image_id] if q.program is not None]
            batch.append((scene_graphs[image_id], [q.program for q in qs]))
            order.extend(id(q) for q in qs)
        flat = [r for rs in answer(batch) for r in rs]
        results.update(zip(order, flat))
    seconds = time.perf_counter() - start
    report = _score([q for qs in by_image.values() for q in qs], results)
    report.update({"dataset": "clevr", "reasoner": reasoner, "scene_source": scene_source,
                   "questions_file": str(questions), "scenes_file": str(scenes), "seconds": round(seconds, 3),
                   "questions_per_second": round(n / seconds, 1) if seconds > 0 else None})
    if predictions:
        preds = []
        for qs in by_image.values():
            for q in qs:
                pred, err = results.get(id(q), (None, "no program"))
                preds.append({"question_index": q.meta.get("question_index", q.qid),
                              "image_filename": q.meta.get("image_filename", q.image_id),
                              "prediction": pred, "answer": q.answer, "error": err})
        Path(predictions).write_text(json.dumps(preds, indent=1))
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    return report


def _score(questions: list[Question], results: dict) -> dict:
    total = correct = failed = unscored = 0
    by_template: dict[str, list[int]] = {}
    by_function: dict[str, list[int]] = {}
    for q in questions:
        pred, err = results.get(id(q), (None, "no program"))
        if pred is None:
            failed += 1
        if q.answer is None:
            unscored += 1
            continue
        ok = int(pred == q.answer)
        total += 1
        correct += ok
        for table, key in ((by_template, template_group(q)), (by_function, final_function(q.program))):
            cell = table.setdefault(key, [0, 0])
            cell[0] += 1
            cell[1] += ok
    return {"accuracy": correct / total if total else None, "total": total, "correct": correct, "failed": failed,
            "unscored": unscored, "by_template": _table(by_template, TEMPLATE_GROUPS),
            "by_function": _table(by_function, ("exist", "count", "compare_integer", "query_attribute",
                                                "compare_attribute"))}


def _table(cells: dict[str, list[int]], order: tuple[str, ...]) -> dict:
    keys = [k for k in order if k in cells] + sorted(k for k in cells if k not in order)
    return {k: {"total": cells[k][0], "correct": cells[k][1], "accuracy": cells[k][1] / cells[k][0]} for k in keys}


def format_report(report: dict) -> str:
    """A few readable lines: overall accuracy, then each breakdown."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    lines = [f"CLEVR ({report.get('reasoner')}, {report.get('scene_source')} scenes): accuracy "
             f"{pct(report['accuracy'])} ({report['correct']}/{report['total']}); "
             f"no answer {report['failed']}; unscored {report['unscored']}"]
    for title, key in (("by template", "by_template"), ("by final function", "by_function")):
        lines.append(f"{title}:")
        for name, cell in report[key].items():
            lines.append(f"  {name:<18} {pct(cell['accuracy']):>8}  ({cell['correct']}/{cell['total']})")
    if report.get("questions_per_second"):
        lines.append(f"{report['questions_per_second']} questions/s ({report['seconds']} s)")
    return "\n".join(lines)
