"""A GQA split on disk for evaluation at any size: questions, scene-graph spans, answers.

An evaluation streams the questions file (or folder of parts) once into an SQLite file of
its own (`QuestionStore`, a work file deleted at the end), one row per question: what
scoring needs (gold answer, types, global group, program length, words, entailed
questions), the program of each question it may answer, and the answer once given. Scene
graphs are indexed by byte span and read per image by whoever answers it. Answers are
written to the store as they arrive (and journaled beside the predictions file, for a
rerun to resume), and the metrics are computed from the store with SQL and small
per-group accumulators. Nothing in the process grows with the number of questions or
images: memory stays flat however large the files (SQLite keeps a bounded page cache).
"""
from __future__ import annotations

import json
import sqlite3
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

from ..datasets.gqa import iter_question_records
from ..datasets.gqa_program import parse_step, steps_number
from ..datasets.jsonstream import stream_dict, stream_spans
from ..errors import DataError

BATCH = 5000  # rows per insert / update
SCHEMA = """
CREATE TABLE q (pos INTEGER PRIMARY KEY, qid TEXT NOT NULL, img TEXT, scored INT NOT NULL DEFAULT 0,
                todo INT NOT NULL DEFAULT 0, gold TEXT, struct TEXT, sem TEXT, det TEXT, grp TEXT, steps INT,
                words INT, program TEXT, text TEXT, unsup TEXT, unknown TEXT, bad TEXT,
                pred TEXT, op TEXT, done INT NOT NULL DEFAULT 0, resumed INT NOT NULL DEFAULT 0);
CREATE TABLE ent (qid TEXT NOT NULL, e TEXT NOT NULL);
CREATE TABLE sg (img TEXT PRIMARY KEY, start INT NOT NULL, end INT NOT NULL);
"""


def in_shard(image_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether an image belongs to shard (i, n): crc32 of its id modulo n is i (the same in
    every process and run, whatever the file order)."""
    return shard is None or zlib.crc32(image_id.encode("utf-8")) % shard[1] == shard[0]


def inspect_program(semantic) -> tuple[str | None, str | None, str | None, str | None]:
    """(program JSON, unsupported operations joined by "|", the first unknown operation as
    JSON {field, message}, the first defect as JSON {field, message}) of a `semantic` list."""
    from ..program import GQA_OPERATIONS
    from ..reason.gqa_asp import step_kind

    if not isinstance(semantic, list):
        return None, None, None, json.dumps({"field": "semantic", "message": "missing program (expected a 'semantic' list)"})
    try:
        steps = [parse_step(r["operation"], r["argument"], r["dependencies"]) for r in semantic]
    except (KeyError, TypeError, AttributeError):
        return None, None, None, json.dumps({"field": "semantic", "message": "expected operation/argument/dependencies steps"})
    for i, s in enumerate(steps):
        if not all(isinstance(k, int) and 0 <= k < i for k in s.inputs):
            return None, None, None, json.dumps({"field": f"semantic[{i}].dependencies",
                                                 "message": f"dependencies {list(s.inputs)} must refer to earlier "
                                                            f"steps (0..{i - 1})"})
    unknown = None
    for i, s in enumerate(steps):  # not a GQA operation at all: answered as a failure, and named
        if str(s.operation).split(" ")[0] not in GQA_OPERATIONS:
            unknown = json.dumps({"field": f"semantic[{i}].operation",
                                  "message": f"unknown operation {s.operation!r} (GQA's are {', '.join(GQA_OPERATIONS)})"})
            break
    unsup = [s.operation for s in steps if step_kind(s).startswith("unsupported")]
    program = json.dumps([[r["operation"], r["argument"], r["dependencies"]] for r in semantic])
    return program, "|".join(unsup) if unsup else None, unknown, None


def program_steps(program: str) -> list:
    """The GQAStep list of a stored program."""
    return [parse_step(op, arg, deps) for op, arg, deps in json.loads(program)]


class QuestionStore:
    """The SQLite work file of one evaluation (see the module's docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "temp_store=FILE", "cache_size=-8000"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(SCHEMA)
        self.info: dict = {}

    def close(self) -> None:
        self.db.close()

    # ---- loading ---------------------------------------------------------------------------
    def load_questions(self, path, *, all_questions: bool = False, limit: int | None = None,
                       shard: tuple[int, int] | None = None, texts: bool = False) -> None:
        """One pass over the questions file(s): a row per question (the program and scoring
        fields for those of the shard's images), `scored` for the first `limit` balanced
        questions (all with `all_questions`) of the shard's images, then `todo` for them and
        for their entailed questions present. `info`: entailed_missing (entailed questions
        of the scored ones absent from the file)."""
        rows, ents = [], []
        n_scored = 0
        db = self.db
        db.execute("BEGIN")
        for pos, (f, qid, rec) in enumerate(iter_question_records(path)):
            if not isinstance(rec, dict):
                raise DataError("expected a question object", file=f, record=qid)
            img = rec.get("imageId")
            img = None if img is None else str(img)
            if not in_shard(img or "", shard):
                rows.append((pos, qid, img, 0) + (None,) * 13)
            else:
                scored = (all_questions or bool(rec.get("isBalanced"))) and (limit is None or n_scored < limit)
                n_scored += scored
                types = rec.get("types") or {}
                sem = rec.get("semantic")
                program, unsup, unknown, bad = inspect_program(sem)
                group = (rec.get("groups") or {}).get("global")
                text = rec.get("question", "")
                rows.append((pos, qid, img, int(scored), _s(rec.get("answer")), _s(types.get("structural")),
                             _s(types.get("semantic")), _s(types.get("detailed")),
                             None if group is None else str(group),
                             steps_number(sem) if isinstance(sem, list) and bad is None else None,
                             len(text.split()) if isinstance(text, str) else 0, program,
                             text if texts else None, unsup, unknown, bad, None))
                if scored:
                    ents += [(qid, str(e)) for e in rec.get("entailed") or []]
            if len(rows) >= BATCH:
                self._insert(rows, ents, f)
                rows, ents = [], []
        self._insert(rows, ents, path)
        db.execute("UPDATE q SET todo = 1 WHERE scored = 1")
        db.execute("CREATE INDEX ent_qid ON ent(qid)")
        db.execute("CREATE INDEX ent_e ON ent(e)")
        # the entailed questions of the scored ones, answered for consistency (those present)
        db.execute("UPDATE q SET todo = 1 WHERE todo = 0 AND qid IN (SELECT e FROM ent)")
        self.info["entailed_missing"] = db.execute(
            "SELECT COUNT(DISTINCT e) FROM ent WHERE e NOT IN (SELECT qid FROM q)").fetchone()[0]
        db.execute("CREATE INDEX q_todo ON q(img, pos) WHERE todo = 1")
        db.execute("COMMIT")

    def _has_index(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (name,)).fetchone() is not None

    def _insert(self, rows, ents, file) -> None:
        if not self._has_index("q_qid"):  # (made at once: a duplicate id is named as it comes)
            self.db.execute("CREATE UNIQUE INDEX q_qid ON q(qid)")
        try:
            self.db.executemany("INSERT INTO q (pos, qid, img, scored, gold, struct, sem, det, grp, steps, words, "
                                "program, text, unsup, unknown, bad, pred) VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.IntegrityError:
            seen = set()
            for r in rows:
                dup = r[1] in seen or self.db.execute("SELECT 1 FROM q WHERE qid = ?", (r[1],)).fetchone()
                if dup:
                    raise DataError("question id appears twice", file=file, record=r[1]) from None
                seen.add(r[1])
            raise
        self.db.executemany("INSERT INTO ent VALUES (?,?)", ents)

    def first_defect(self) -> tuple[str, dict] | None:
        """(qid, {field, message}) of the first question to answer whose program is unusable."""
        row = self.db.execute("SELECT qid, bad FROM q WHERE todo = 1 AND bad IS NOT NULL ORDER BY pos LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def load_scene_spans(self, path) -> None:
        """Where each image's scene graph lies in the scene-graph file (byte spans)."""
        self.db.execute("BEGIN")
        rows = []
        for image_id, start, end in stream_spans(path):
            rows.append((image_id, start, end))
            if len(rows) >= BATCH:
                self.db.executemany("INSERT OR REPLACE INTO sg VALUES (?,?,?)", rows)
                rows = []
        self.db.executemany("INSERT OR REPLACE INTO sg VALUES (?,?,?)", rows)
        self.db.execute("COMMIT")

    def set_scene_ids(self, image_ids) -> None:
        """Scene graphs held in memory (predicted ones): each image id with an empty span."""
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO sg VALUES (?,?,?)", [(str(i), 0, 0) for i in image_ids])
        self.db.execute("COMMIT")

    def image_ids(self) -> set[str]:
        """The images of the questions to answer."""
        return {row[0] for row in self.db.execute("SELECT DISTINCT img FROM q WHERE todo = 1")}

    def first_unknown(self) -> tuple[str, dict] | None:
        """(qid, {field, message}) of the first question to answer with an operation outside GQA's."""
        row = self.db.execute("SELECT qid, unknown FROM q WHERE todo = 1 AND unknown IS NOT NULL "
                              "ORDER BY pos LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def missing_scene(self) -> tuple[str, str] | None:
        """(qid, image) of the first question to answer whose image has no scene graph."""
        return self.db.execute("SELECT q.qid, q.img FROM q LEFT JOIN sg ON sg.img = q.img "
                               "WHERE q.todo = 1 AND sg.img IS NULL ORDER BY q.pos LIMIT 1").fetchone()

    # ---- answers -------------------------------------------------------------------------------
    def resume(self, records: Iterator[dict]) -> int:
        """Take the answers of an earlier run (journal records {qid, prediction, operation});
        returns how many questions to answer they cover."""
        self.db.execute("BEGIN")
        batch = []
        for rec in records:
            batch.append((rec.get("prediction") or "", rec.get("operation"), rec["qid"]))
            if len(batch) >= BATCH:
                self._resume(batch)
                batch = []
        self._resume(batch)
        self.db.execute("COMMIT")
        return self.db.execute("SELECT COUNT(*) FROM q WHERE todo = 1 AND resumed = 1").fetchone()[0]

    def _resume(self, batch) -> None:
        self.db.executemany("UPDATE q SET pred = ?, op = ?, done = 1, resumed = 1 WHERE qid = ? AND todo = 1", batch)

    def record(self, answers: list[tuple[str, str | None, str | None]]) -> None:
        """Answers [(qid, answer or None when failed, failed operation)] as they arrive."""
        self.db.executemany("UPDATE q SET pred = ?, op = ?, done = 1 WHERE qid = ?",
                            [(a if a is not None else "", op, qid) for qid, a, op in answers])

    def set_predictions(self, preds: Iterator[tuple[str, str]]) -> None:
        """Predictions of a predictions file (qid, answer string), for scoring only."""
        self.db.execute("BEGIN")
        batch = []
        for qid, p in preds:
            batch.append((p, qid))
            if len(batch) >= BATCH:
                self.db.executemany("UPDATE q SET pred = ?, done = 1 WHERE qid = ?", batch)
                batch = []
        self.db.executemany("UPDATE q SET pred = ?, done = 1 WHERE qid = ?", batch)
        self.db.execute("COMMIT")

    def count(self, where: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM q WHERE {where}").fetchone()[0]

    def todo_images(self) -> int:
        return self.db.execute("SELECT COUNT(DISTINCT img) FROM q WHERE todo = 1 AND done = 0").fetchone()[0]

    def tasks(self, images_per_task: int, questions_per_task: int | None = None
              ) -> Iterator[list[tuple[str, int, int, list[tuple[str, str]]]]]:
        """The questions still to answer, image by image (images in sorted order, questions in
        file order), in tasks of `images_per_task` images, or fewer where their questions reach
        `questions_per_task` first: [(image id, span start, span end, [(qid, program JSON)])].
        Read through a connection of its own (a snapshot: answers recorded meanwhile do not
        disturb it)."""
        reader = sqlite3.connect(self.path)
        try:
            cur = reader.execute("SELECT q.img, sg.start, sg.end, q.qid, q.program FROM q JOIN sg ON sg.img = q.img "
                                 "WHERE q.todo = 1 AND q.done = 0 ORDER BY q.img, q.pos")
            task, image, asked = [], None, 0
            for img, start, end, qid, program in cur:
                if image is None or img != image[0]:
                    if image is not None:
                        task.append(image)
                        asked += len(image[3])
                        if len(task) >= images_per_task or (questions_per_task and asked >= questions_per_task):
                            yield task
                            task, asked = [], 0
                    image = (img, start, end, [])
                image[3].append((qid, program))
            if image is not None:
                task.append(image)
            if task:
                yield task
        finally:
            reader.close()

    # ---- statistics and metrics ------------------------------------------------------------
    def answer_stats(self, failed_listed: int) -> dict:
        """Failures by operation, the first failed questions (answering order), unsupported
        steps and unknown operations of the questions answered, images."""
        db = self.db
        failures = dict(db.execute("SELECT op, COUNT(*) AS n FROM q WHERE todo = 1 AND done = 1 AND op IS NOT NULL "
                                   "GROUP BY op ORDER BY n DESC, MIN(pos)"))
        first = [{"questionId": qid, "imageId": img, "operation": op} for qid, img, op in db.execute(
            "SELECT qid, img, op FROM q WHERE todo = 1 AND done = 1 AND op IS NOT NULL ORDER BY img, pos LIMIT ?",
            (failed_listed,))]
        unsupported = Counter()
        for (ops,) in db.execute("SELECT unsup FROM q WHERE todo = 1 AND unsup IS NOT NULL ORDER BY pos"):
            unsupported.update(ops.split("|"))
        unknown: dict = {"questions": self.count("todo = 1 AND unknown IS NOT NULL")}
        row = db.execute("SELECT qid, unknown FROM q WHERE todo = 1 AND unknown IS NOT NULL ORDER BY pos LIMIT 1").fetchone()
        if row is not None:
            unknown["first"] = {"record": row[0], **json.loads(row[1])}
        return {"failed": sum(failures.values()), "failures_by_operation": failures, "failed_questions": first,
                "unsupported_by_operation": dict(unsupported.most_common()),
                "images": db.execute("SELECT COUNT(DISTINCT img) FROM q WHERE todo = 1").fetchone()[0],
                "unknown_operations": unknown}

    def metrics(self, choices=None) -> dict:
        """GQA's metrics over the scored questions (see `vqa.eval.gqa`: the same definitions
        as `gqa_metrics`, which works on dicts); a scored question without an answer counts
        as wrong. `choices`: a {split}_choices.json file, streamed."""
        from .gqa import _avg, _table, chi_square

        db = self.db
        acc, binary, open_ = [0, 0], [0, 0], [0, 0]
        per = {k: defaultdict(lambda: [0, 0]) for k in ("structural", "semantic", "detailed", "steps", "words")}
        cols = {"structural": "struct", "semantic": "sem", "detailed": "det", "steps": "steps", "words": "words"}
        for key, col in cols.items():
            where = "scored = 1" + (" AND steps IS NOT NULL" if key == "steps" else "")
            for value, n, right in db.execute(f"SELECT {col}, COUNT(*), TOTAL(pred IS gold) FROM q WHERE {where} "
                                              f"GROUP BY {col}"):
                per[key][value] = [int(right), n]
        for struct, (right, n) in per["structural"].items():
            acc[0] += right
            acc[1] += n
            part = open_ if struct == "query" else binary
            part[0] += right
            part[1] += n
        gold_dist, pred_dist = defaultdict(Counter), defaultdict(Counter)
        for grp, gold, n in db.execute("SELECT grp, gold, COUNT(*) FROM q WHERE scored = 1 AND grp IS NOT NULL "
                                       "GROUP BY grp, gold"):
            gold_dist[grp][gold] = n
        for grp, pred, n in db.execute("SELECT grp, pred, COUNT(*) FROM q WHERE scored = 1 AND grp IS NOT NULL "
                                       "GROUP BY grp, pred"):
            pred_dist[grp][pred] = n
        cons = []
        for right, n in db.execute(
                "SELECT TOTAL(b.pred IS b.gold), COUNT(*) FROM q a JOIN ent ON ent.qid = a.qid "
                "JOIN q b ON b.qid = ent.e WHERE a.scored = 1 AND a.pred IS a.gold AND b.todo = 1 AND b.done = 1 "
                "AND ent.e != a.qid GROUP BY a.pos ORDER BY a.pos"):
            cons.append(right / n)
        valid, plaus, missing_choices = [0, 0], [0, 0], None
        if choices is not None:
            valid, plaus, matched = self._choices(choices)
            missing_choices = self.count("scored = 1") - matched
        chi = chi_square(gold_dist, pred_dist)

        def pct(x):
            return 100.0 * x[0] / x[1] if x[1] else None
        return {
            "scored": acc[1],
            "accuracy": pct(acc), "binary": pct(binary), "open": pct(open_),
            "validity": pct(valid), "plausibility": pct(plaus), "consistency": _avg(cons),
            "consistency_questions": len(cons),
            "distribution": None if chi is None else chi / 100,
            "missing_choices": missing_choices or 0,
            **{f"per_{k}": _table_counts(per[k]) for k in ("structural", "semantic", "detailed", "steps", "words")},
        }

    def _choices(self, path) -> tuple[list, list, int]:
        valid, plaus, matched = [0, 0], [0, 0], 0
        batch: dict = {}

        def flush():
            nonlocal matched
            marks = ",".join("?" * len(batch))
            for qid, pred, det in self.db.execute(f"SELECT qid, pred, det FROM q WHERE scored = 1 AND qid IN ({marks})",
                                                  list(batch)):
                c = batch[qid]
                common = "Common" in (det or "")
                if not isinstance(c, dict):
                    raise DataError("expected an object with 'valid' and 'plausible' lists", file=path, record=qid)
                vset = ["color", "material", "shape"] if common else c.get("valid", [])
                pset = ["color", "material", "shape"] if common else c.get("plausible", [])
                valid[0] += pred in vset
                plaus[0] += pred in pset
                valid[1] += 1
                plaus[1] += 1
                matched += 1
            batch.clear()
        for qid, c in stream_dict(path):
            batch[qid] = c
            if len(batch) >= 500:
                flush()
        if batch:
            flush()
        return valid, plaus, matched

    # ---- output ----------------------------------------------------------------------------
    def predictions(self, *, only_todo: bool = False) -> Iterator[tuple[str, str]]:
        """(qid, prediction) in file order: every question ("" where none), or with
        `only_todo` those this run had to answer (a shard's)."""
        where = "WHERE todo = 1 " if only_todo else ""
        for qid, pred in self.db.execute(f"SELECT qid, pred FROM q {where}ORDER BY pos"):
            yield qid, pred or ""


def _s(x) -> str | None:
    return None if x is None else str(x)


def _table_counts(d: dict) -> dict:
    return {str(k): {"accuracy": 100.0 * v[0] / v[1] if v[1] else None, "n": v[1]}
            for k, v in sorted(d.items(), key=lambda kv: str(kv[0]))}


def write_predictions_file(path, preds: Iterator[tuple[str, str]]) -> int:
    """The official predictions file `[{"questionId", "prediction"}]` from (qid, prediction)
    pairs, written to a temporary file beside `path` and renamed over it. Returns how many."""
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[")
        for qid, pred in preds:
            f.write(("," if n else "") + json.dumps({"questionId": qid, "prediction": pred}))
            n += 1
        f.write("]\n")
    os.replace(tmp, path)
    return n
