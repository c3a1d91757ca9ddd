"""CLEVR v1.0 files in the official layout (and the project's generated copies of it).

    CLEVR_v1.0/images/<split>/CLEVR_<split>_000000.png
    CLEVR_v1.0/scenes/CLEVR_<split>_scenes.json        {"info": ..., "scenes": [...]}
    CLEVR_v1.0/questions/CLEVR_<split>_questions.json  {"info": ..., "questions": [...]}

    ds = CLEVRDataset("CLEVR_v1.0", "val")
    scenes = ds.scenes()                      # {image_id: SceneGraph}
    for question, scene in ds.iter_with_scenes():
        ...

Files are streamed; malformed records raise `DataError` naming file, record and field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import DataError, require
from ..ontology import normalise_answer
from ..program import Program
from ..question import Question
from ..scene import SceneGraph, clevr_image_id  # noqa: F401 (re-exported)
from .jsonstream import stream_list

DEFAULT_SIZE = (480, 320)


def iter_scene_records(path: str | Path) -> Iterator[dict]:
    yield from stream_list(path, "scenes")


def iter_scenes(path: str | Path) -> Iterator[tuple[dict, SceneGraph]]:
    """Each record of a scenes file with its gold scene graph."""
    for i, rec in enumerate(iter_scene_records(path)):
        yield rec, SceneGraph.from_clevr(rec, file=path, record=_scene_record_id(rec, i))


def load_scenes(path: str | Path) -> dict[str, SceneGraph]:
    """All scenes of a scenes file as gold scene graphs, keyed by image id."""
    return {sg.image_id: sg for _, sg in iter_scenes(path)}


def question_from_record(rec: dict, *, file=None, index: int = 0, parse_program: bool = True) -> Question:
    """A checked `Question`; with parse_program=False the program is left unparsed (None)."""
    rid = rec.get("question_index", index) if isinstance(rec, dict) else index
    loc = dict(file=file, record_id=rid)
    require(rec, "question", str, **loc)
    if "image_filename" not in rec:
        require(rec, "image_index", int, **loc, what="an integer (or an 'image_filename')")
    program = None
    if "program" in rec and parse_program:
        program = Program.from_clevr(rec["program"], file=file, record=rid)
    answer = rec.get("answer")
    meta = {k: rec[k] for k in ("split", "image_index", "image_filename", "question_family_index",
                                "template_filename", "question_index") if k in rec}
    return Question(qid=str(rid), image_id=clevr_image_id(rec), text=rec["question"], program=program,
                    answer=None if answer is None else normalise_answer(answer), dataset="clevr", meta=meta)


def iter_questions(path: str | Path) -> Iterator[Question]:
    for i, rec in enumerate(stream_list(path, "questions")):
        yield question_from_record(rec, file=path, index=i)


def _scene_record_id(rec, i: int):
    if isinstance(rec, dict):
        return rec.get("image_filename", rec.get("image_index", i))
    return i


class CLEVRDataset:
    """One split of a CLEVR-layout folder. `root` is the folder holding images/, scenes/, questions/."""

    def __init__(self, root: str | Path, split: str = "val"):
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DataError("not a folder (expected CLEVR_v1.0/ with images/, scenes/, questions/)", file=self.root)

    @property
    def scenes_path(self) -> Path:
        return self.root / "scenes" / f"CLEVR_{self.split}_scenes.json"

    @property
    def questions_path(self) -> Path:
        return self.root / "questions" / f"CLEVR_{self.split}_questions.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images" / self.split

    def image_path(self, image_id_or_filename: str) -> Path:
        name = image_id_or_filename
        return self.images_dir / (name if name.endswith(".png") else f"{name}.png")

    def scenes(self) -> dict[str, SceneGraph]:
        return load_scenes(self.scenes_path)

    def questions(self) -> Iterator[Question]:
        return iter_questions(self.questions_path)

    def iter_with_scenes(self) -> Iterator[tuple[Question, SceneGraph]]:
        yield from join_questions(self.questions(), self.scenes(), file=self.questions_path)


def join_questions(questions, scenes: dict[str, SceneGraph], *, file=None) -> Iterator[tuple[Question, SceneGraph]]:
    """(question, scene) pairs; a question whose scene is missing is a DataError."""
    for q in questions:
        sg = scenes.get(q.image_id)
        if sg is None:
            raise DataError(f"no scene for image {q.image_id!r}", file=file, record=q.qid, field="image_filename")
        yield q, sg
