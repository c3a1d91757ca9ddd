"""Ill-posed questions for measuring honest answers (issue 25): questions whose
presupposition fails on the gold scene, made from well-posed ones.

    from vqa.reason.presupposition import ill_posed_program, write_ill_posed
    bad = ill_posed_program(program, gold_scene, random.Random(0))   # or None
    write_ill_posed("questions.json", "scenes.json", "ill_posed.json", seed=0)

A program with a `unique` step is made ill-posed by changing the value of one `filter_*`
step on the way to a `unique` (another value of the same attribute) so that the `unique`
gets no object or several on the gold scene: checked with the reference executor
(`vqa.executor.execute`), whose first error must be that `unique`'s. The question text
has the old value's word replaced by the new one where the word occurs once (otherwise the
text is kept: the measurement uses the programs, `--program-source gold`). The records are
CLEVR question records without an answer (`vqa evaluate` counts them as unscored, and its
report's `answered` / `refused` say what the reasoner did with them).

`sweep(records)` turns the prediction records of one `vqa evaluate` run without a reading
limit (`--min-reading 0`, which writes each answer's reading cost) into the rates a
threshold would give, for choosing `vqa.reason.asp.DEFAULT_MIN_READING`.
"""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

from ..datasets import clevr
from ..executor import execute
from ..ontology import CLEVR_FUNCTIONS, arg_vocabulary
from ..program import Program, Step
from ..scene import SceneGraph

_UNIQUE_ERROR = re.compile(r"^unique expects exactly one object, got (\d+)$")
# words a question may use for a value (besides the value itself)
_WORDS = {"cube": ("cube", "cubes", "block", "blocks"), "sphere": ("sphere", "spheres", "ball", "balls"),
          "cylinder": ("cylinder", "cylinders"), "large": ("large", "big"), "small": ("small", "tiny"),
          "metal": ("metal", "metallic", "shiny"), "rubber": ("rubber", "matte")}


def _filters_before(program: Program, unique: int) -> list[int]:
    """The filter steps on the chain of single-input steps that feeds step `unique`."""
    out, i = [], program.steps[unique].inputs[0] if program.steps[unique].inputs else None
    while i is not None:
        s = program.steps[i]
        if s.op.startswith("filter_"):
            out.append(i)
        if len(s.inputs) != 1:
            break
        i = s.inputs[0]
    return out


def ill_posed_program(program: Program, scene: SceneGraph, rng: random.Random) -> tuple[Program, int, str, str] | None:
    """(program with one filter value changed, the failing `unique` step, old value, new value),
    such that the reference executor on `scene` fails first at that `unique` (0 or >= 2
    objects); None when no such change exists."""
    candidates = []
    for u, s in enumerate(program.steps):
        if s.op == "unique":
            for f in _filters_before(program, u):
                step = program.steps[f]
                cat = CLEVR_FUNCTIONS[step.op].arg
                candidates += [(u, f, v) for v in arg_vocabulary(cat) if step.args and v != step.args[0]]
    rng.shuffle(candidates)
    for u, f, v in candidates:
        steps = [Step(s.op, s.args, s.inputs) for s in program.steps]
        old = steps[f].args[0]
        steps[f] = Step(steps[f].op, (v,), steps[f].inputs)
        changed = Program(steps, source=program.source)
        result = execute(changed, scene)
        if result.error and _UNIQUE_ERROR.match(result.error) and _failing_step(result) == u:
            return changed, u, old, v
    return None


def _failing_step(result) -> int | None:
    for t in result.trace:
        if t.error:
            return t.index
    return None


def _retext(text: str, old: str, new: str) -> str:
    """`text` with the one word for `old` replaced by `new` (kept when not exactly one)."""
    hits = [m for w in _WORDS.get(old, (old,)) for m in re.finditer(rf"\b{re.escape(w)}\b", text)]
    if len(hits) != 1:
        return text
    m = hits[0]
    word = new + ("s" if m.group(0).endswith("s") and not old.endswith("s") and new in ("cube", "sphere", "cylinder")
                  else "")
    return text[:m.start()] + word + text[m.end():]


def write_ill_posed(questions: str | Path, scenes: str | Path, out: str | Path, *, seed: int = 0,
                    per_image: int = 2) -> dict:
    """Ill-posed questions (at most `per_image` per image) from a CLEVR questions file and its
    gold scenes, written to `out` as a CLEVR questions file (no answers). Returns counts."""
    rng = random.Random(seed)
    scene_recs = {clevr.clevr_image_id(rec): (i, rec) for i, rec in enumerate(clevr.iter_scene_records(scenes))}
    data = json.loads(Path(questions).read_text(encoding="utf-8"))
    made, seen, tried = [], {}, 0
    graphs: dict[str, SceneGraph] = {}
    for i, rec in enumerate(data["questions"]):
        image = clevr.clevr_image_id(rec)
        if seen.get(image, 0) >= per_image or not any(s.get("function", s.get("type")) == "unique"
                                                      for s in rec.get("program", [])):
            continue
        tried += 1
        if image not in graphs:
            k, srec = scene_recs[image]
            graphs[image] = SceneGraph.from_clevr(srec, file=scenes, record=k)
        program = Program.from_clevr(rec["program"], file=questions, record=i)
        got = ill_posed_program(program, graphs[image], rng)
        if got is None:
            continue
        changed, u, old, new = got
        seen[image] = seen.get(image, 0) + 1
        out_rec = {k: v for k, v in rec.items() if k not in ("answer", "program", "question")}
        out_rec.update(question=_retext(rec["question"], old, new), program=changed.to_clevr("function"),
                       question_index=len(made), ill_posed={"step": u, "from": old, "to": new,
                                                            "source_question_index": rec.get("question_index", i)})
        made.append(out_rec)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"info": {"ill_posed_from": str(questions), "seed": seed},
                                     "questions": made}), encoding="utf-8")
    return {"made": len(made), "tried": tried}


def sweep(well: list[dict], ill: list[dict], thresholds: list[float]) -> list[dict]:
    """Per threshold (least reading probability relative to the scene's best): the share of
    ill-posed questions without an answer and the accuracy of the well-posed ones, from
    prediction records of runs without a limit that carry the answer's `cost`."""
    rows = []
    for t in thresholds:
        limit = None if not t else -1000.0 * math.log(t)

        def answered(r):
            return r.get("prediction") is not None and (limit is None or (r.get("cost") or 0) <= limit)

        refused = sum(not answered(r) for r in ill)
        correct = sum(answered(r) and r["prediction"] == r["answer"] for r in well)
        rows.append({"min_reading": t, "ill_posed_no_answer": refused / len(ill) if ill else None,
                     "well_posed_accuracy": correct / len(well) if well else None,
                     "well_posed_refused": sum(r.get("prediction") is not None and not answered(r) for r in well)})
    return rows
