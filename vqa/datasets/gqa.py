"""GQA question and scene-graph files, read lazily.

    questions1.2/<split>_balanced_questions.json   {qid: {imageId, question, answer, semantic, ...}}
    questions1.2/train_all_questions/               a folder of parts, read in name order
    sceneGraphs/<split>_sceneGraphs.json            {imageId: {width, height, objects: {...}}}

Questions are streamed one at a time (`iter_questions`); scene graphs are held once, as
the parsed JSON records, and turned into `SceneGraph`s on access (`SceneGraphs`), so a
split is never held twice. `keep=` restricts the scene graphs held to a set of images.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DataError, require
from ..program import Program
from ..question import Question
from ..scene import SceneGraph
from .jsonstream import read_span, stream_dict, stream_spans

QUESTION_META = ("fullAnswer", "isBalanced", "types", "annotations", "entailed", "equivalent", "groups",
                 "semanticStr")


def question_files(path: str | Path) -> list[Path]:
    """A questions file, or the JSON parts in a folder (train_all_questions/)."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(path.glob("*.json"))
        if not parts:
            raise DataError("folder holds no .json question files", file=path)
        return parts
    return [path]


def question_from_record(qid: str, rec: dict, *, file=None) -> Question:
    loc = dict(file=file, record_id=qid)
    image_id = require(rec, "imageId", (str, int), **loc)
    text = require(rec, "question", str, **loc)
    program = Program.from_gqa(rec["semantic"], file=file, record=qid) if "semantic" in rec else None
    answer = rec.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise DataError(f"expected a string, got {type(answer).__name__}", file=file, record=qid, field="answer")
    meta = {k: rec[k] for k in QUESTION_META if k in rec}
    return Question(qid=str(qid), image_id=str(image_id), text=text, program=program, answer=answer,
                    dataset="gqa", meta=meta)


def iter_question_records(path: str | Path) -> Iterator[tuple[Path, str, dict]]:
    for f in question_files(path):
        for qid, rec in stream_dict(f):
            yield f, qid, rec


def iter_questions(path: str | Path) -> Iterator[Question]:
    for f, qid, rec in iter_question_records(path):
        yield question_from_record(qid, rec, file=f)


class SceneGraphs(Mapping):
    """Image id -> SceneGraph over a GQA scene-graph file, loaded on first access.

    Holds the parsed JSON records once; each lookup builds a fresh `SceneGraph`.
    """

    def __init__(self, path: str | Path, keep: Iterable[str] | None = None):
        self.path = Path(path)
        self.keep = None if keep is None else set(map(str, keep))
        self._records: dict[str, dict] | None = None

    def _load(self) -> dict[str, dict]:
        if self._records is None:
            records = {}
            for image_id, rec in stream_dict(self.path):
                if self.keep is None or image_id in self.keep:
                    records[image_id] = rec
            self._records = records
        return self._records

    def record(self, image_id: str) -> dict:
        return self._load()[str(image_id)]

    def __getitem__(self, image_id: str) -> SceneGraph:
        return SceneGraph.from_gqa(str(image_id), self._load()[str(image_id)], file=self.path)

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._load()


class SceneGraphIndex(Mapping):
    """Image id -> SceneGraph over a GQA scene-graph file, read from the file per image on
    access: one pass records where each image's record lies (about 100 bytes per image
    instead of its parsed record), so memory stays flat however large the file. Forked
    processes open the file themselves. `keep=` restricts the images indexed."""

    def __init__(self, path: str | Path, keep: Iterable[str] | None = None):
        self.path = Path(path)
        self.keep = None if keep is None else set(map(str, keep))
        self._spans: dict[str, tuple[int, int]] | None = None
        self._file, self._pid = None, None

    def _index(self) -> dict[str, tuple[int, int]]:
        if self._spans is None:
            self._spans = {k: (a, b) for k, a, b in stream_spans(self.path) if self.keep is None or k in self.keep}
        return self._spans

    def record(self, image_id: str) -> dict:
        import os

        start, end = self._index()[str(image_id)]
        if self._pid != os.getpid():  # (a forked process reads through its own file object)
            self._file, self._pid = open(self.path, "rb"), os.getpid()
        return read_span(self._file, start, end, self.path)

    def __getitem__(self, image_id: str) -> SceneGraph:
        return SceneGraph.from_gqa(str(image_id), self.record(image_id), file=self.path)

    def __iter__(self):
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._index()


def iter_with_scenes(questions_path: str | Path, scenes_path: str | Path) -> Iterator[tuple[Question, SceneGraph]]:
    """Questions joined with their scene graph by image id; a missing scene is a DataError."""
    scenes = SceneGraphs(scenes_path)
    for q in iter_questions(questions_path):
        if q.image_id not in scenes:
            raise DataError(f"no scene graph for image {q.image_id!r} in {scenes.path}",
                            record=q.qid, field="imageId")
        yield q, scenes[q.image_id]
