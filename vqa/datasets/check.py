"""`vqa data check`: validate a dataset before a long run.

Each problem names the file, the record (question id, image) and the field, and says what
was expected. Nothing stops at the first problem: the whole dataset is read once.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem
from ..ontology import CLEVR_ANSWERS
from ..scene import SceneGraph, clevr_image_id
from . import clevr, gqa
from .jsonstream import stream_dict, stream_list

MAX_PROBLEMS = 10_000  # beyond this only the count grows


@dataclass
class CheckReport:
    dataset: str
    counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def add_error(self, err: DataError, **defaults) -> None:
        p = err.problem
        self.add(Problem(p.file or defaults.get("file"), p.record if p.record is not None else defaults.get("record"),
                         p.field, p.message))

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "ok": self.ok, "counts": dict(self.counts),
                "problem_count": self.problem_count, "problems": [p.to_dict() for p in self.problems]}

    def format(self) -> str:
        lines = [f"{self.dataset} dataset"]
        lines += [f"  {k:<24} {v:>10,}" for k, v in self.counts.items()]
        if self.ok:
            lines.append("no problems found")
        else:
            lines.append(f"{self.problem_count:,} problem(s):")
            lines += [f"  {p}" for p in self.problems]
            if self.problem_count > len(self.problems):
                lines.append(f"  ... and {self.problem_count - len(self.problems):,} more")
        return "\n".join(lines)


def check_clevr(questions: str | Path, scenes: str | Path, images: str | Path | None = None,
                progress=None) -> CheckReport:
    rep = CheckReport("clevr")
    images = Path(images) if images else None
    scene_ids: dict[str, int] = {}
    try:
        for i, rec in enumerate(_progress(stream_list(scenes, "scenes"), progress, "scenes")):
            rid = clevr._scene_record_id(rec, i)
            rep.counts["scenes"] += 1
            try:
                sg = SceneGraph.from_clevr(rec, file=scenes, record=rid)
            except DataError as e:
                rep.add_error(e, file=str(scenes), record=str(rid))
                if isinstance(rec, dict):
                    scene_ids[clevr_image_id(rec)] = 0
                continue
            scene_ids[sg.image_id] = len(sg.objects)
            rep.counts["objects"] += len(sg.objects)
            if not 3 <= len(sg.objects) <= 10:
                rep.counts["scenes outside 3-10 objects"] += 1
    except DataError as e:
        rep.add_error(e)
    missing_images = set()
    try:
        for i, rec in enumerate(_progress(stream_list(questions, "questions"), progress, "questions")):
            rep.counts["questions"] += 1
            try:
                q = clevr.question_from_record(rec, file=questions, index=i)
            except DataError as e:
                rep.add_error(e, file=str(questions), record=str(i))
                continue
            where = dict(file=str(questions), record=q.qid)
            if q.image_id not in scene_ids:
                rep.add(Problem(**where, field="image_filename" if "image_filename" in q.meta else "image_index",
                                message=f"no scene for image {q.image_id!r} in {scenes}"))
            if images is not None:
                img = images / f"{q.image_id}.png"
                if not img.exists():
                    rep.add(Problem(**where, field="image_filename", message=f"image file {img} does not exist"))
                    missing_images.add(q.image_id)
            if q.program is None:
                rep.counts["questions without program"] += 1
            else:
                for p in q.program.problems(file=str(questions), record=q.qid):
                    rep.add(p)
            if q.answer is None:
                rep.counts["questions without answer"] += 1
            elif q.answer not in CLEVR_ANSWERS:
                rep.add(Problem(**where, field="answer",
                                message=f"{q.answer!r} is not a CLEVR answer (yes/no, 0-10, or an attribute value)"))
    except DataError as e:
        rep.add_error(e)
    if images is not None:
        rep.counts["missing images"] = len(missing_images)
    return rep


def check_gqa(questions: str | Path, scenes: str | Path, images: str | Path | None = None,
              progress=None) -> CheckReport:
    rep = CheckReport("gqa")
    images = Path(images) if images else None
    scene_ids = set()
    try:
        for image_id, rec in _progress(stream_dict(scenes), progress, "scene graphs"):
            rep.counts["scene graphs"] += 1
            scene_ids.add(image_id)
            _check_gqa_scene(rep, str(scenes), image_id, rec)
    except DataError as e:
        rep.add_error(e)
    try:
        for f, qid, rec in _progress(gqa.iter_question_records(questions), progress, "questions"):
            rep.counts["questions"] += 1
            try:
                q = gqa.question_from_record(qid, rec, file=f)
            except DataError as e:
                rep.add_error(e, file=str(f), record=qid)
                continue
            if q.meta.get("isBalanced"):
                rep.counts["balanced questions"] += 1
            where = dict(file=str(f), record=qid)
            if q.image_id not in scene_ids:
                rep.add(Problem(**where, field="imageId", message=f"no scene graph for image {q.image_id!r} in {scenes}"))
            if images is not None and not (images / f"{q.image_id}.jpg").exists():
                rep.add(Problem(**where, field="imageId", message=f"image file {images / (q.image_id + '.jpg')} does not exist"))
            if q.program is None:
                rep.counts["questions without program"] += 1
            else:
                for p in q.program.problems(file=str(f), record=qid):
                    rep.add(p)
            for key in ("entailed", "equivalent"):
                if key in q.meta and not isinstance(q.meta[key], list):
                    rep.add(Problem(**where, field=key, message="expected a list of question ids"))
    except DataError as e:
        rep.add_error(e)
    return rep


def _check_gqa_scene(rep: CheckReport, file: str, image_id: str, rec) -> None:
    where = dict(file=file, record=image_id)
    if not isinstance(rec, dict):
        rep.add(Problem(**where, field=None, message="expected a scene-graph object"))
        return
    for key in ("width", "height"):
        if not isinstance(rec.get(key), (int, float)):
            rep.add(Problem(**where, field=key, message="expected a number"))
    objs = rec.get("objects")
    if not isinstance(objs, dict):
        rep.add(Problem(**where, field="objects", message="expected an object id -> object mapping"))
        return
    for oid, od in objs.items():
        f = f"objects.{oid}"
        if not isinstance(od, dict):
            rep.add(Problem(**where, field=f, message="expected an object"))
            continue
        rep.counts["objects"] += 1
        if not isinstance(od.get("name"), str):
            rep.add(Problem(**where, field=f"{f}.name", message="expected a string"))
        for k in ("x", "y", "w", "h"):
            if not isinstance(od.get(k), (int, float)):
                rep.add(Problem(**where, field=f"{f}.{k}", message="expected a number (pixels)"))
        if not isinstance(od.get("attributes", []), list):
            rep.add(Problem(**where, field=f"{f}.attributes", message="expected a list of strings"))
        for j, r in enumerate(od.get("relations", []) or []):
            rep.counts["relations"] += 1
            if not isinstance(r, dict) or not isinstance(r.get("name"), str):
                rep.add(Problem(**where, field=f"{f}.relations[{j}]", message="expected {name, object}"))
            elif str(r.get("object")) not in objs:
                rep.add(Problem(**where, field=f"{f}.relations[{j}].object",
                                message=f"refers to unknown object {r.get('object')!r}"))


def _progress(it, progress, desc):
    return progress(it, desc=desc) if progress else it


