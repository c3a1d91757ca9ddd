"""Evaluation on CLEVR at scale: workers, resume, shards; scoring in `vqa.eval.report`.

    report = evaluate_clevr("CLEVR_val_questions.json", "CLEVR_val_scenes.json",
                            reasoner="asp", workers=2, predictions="pred.jsonl", out="report.json")
    print(format_report(report))

Questions are grouped by image and answered in chunks of `scenes_per_call` images (one
clingo call each for the ASP reasoner), by `workers` processes; the questions file is
streamed, so the workers start on the first chunks while the rest is read. Predictions are appended
to a JSONL file as chunks finish: its first line records the settings, each further line
one question (`qid`, `image`, `prediction`, `answer`, `error`, `template`, `function`,
`family`). Rerunning the same command skips the questions already there (a run killed at
any point loses at most the chunks in flight); a file made with other settings is refused.
`shard=(i, n)` answers every n-th image starting at i, so a cluster launcher can spread a
split over machines; `vqa report --predictions shard*.jsonl` merges and scores them.

Reasoners: "asp" (`vqa.reason.asp.ASPReasoner`), "reference" (the Python executor; alias
"executor"). Scene source: "gold" (the scenes file) or "predicted" (the vision scene
parser on the images). Program source: "gold" (the questions' programs) or "parsed" (the
question parser on the question text).
"""
from __future__ import annotations

import functools
import gc
import json
import multiprocessing as mp
import time
from contextlib import contextmanager
from pathlib import Path

from ..datasets import clevr
from ..datasets.jsonstream import stream_list
from ..errors import DataError, VQAError
from ..program import Program
from ..question import Question
from ..scene import SceneGraph, clevr_image_id
from .loop import Journal, drain, iter_journal, lock_predictions
from .report import FINAL_FUNCTION_GROUPS, format_report, score_records, write_reports  # noqa: F401 (re-exported)

REASONERS = ("asp", "reference")  # "executor" is accepted for "reference"
SCENE_SOURCES = ("gold", "predicted")
PROGRAM_SOURCES = ("gold", "parsed")


def final_function(program: Program | None) -> str:
    """CLEVR's report group of a program's last function ("other" for anything else)."""
    if program is None or not program.steps:
        return "other"
    return FINAL_FUNCTION_GROUPS.get(program.steps[-1].op, "other")


def template_group(question: Question) -> str:
    """The template file a question came from ("one_hop" for "one_hop.json"), or "unknown".
    Without a `template_filename` (the released CLEVR files), a `question_family_index` of
    0..89 names the official file (`clevr_templates.family_file`)."""
    name = question.meta.get("template_filename")
    if isinstance(name, str) and name:
        return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # (string operations: called per question)
    family = question.meta.get("question_family_index")
    if isinstance(family, int) and not isinstance(family, bool):
        from ..datasets.clevr_templates import family_file

        name = family_file(family)
        if name:
            return name.rsplit(".", 1)[0]
    return "unknown"


# ---- the work done per chunk of images (in a worker process or in this one) --------------
class _Answerer:
    """Builds the reasoner, scene source and program source once per process."""

    def __init__(self, settings: dict):
        self.s = settings
        reasoner = settings["reasoner"]
        # one compute thread per process: the models are small, parallelism comes from
        # --workers, and oversubscribed threads make every small operation wait
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        if reasoner == "nsm" or _uses_torch(settings):
            import torch

            torch.set_num_threads(1)
        if reasoner == "asp":
            from ..reason.asp import ASPReasoner

            budget = {"budget": settings["budget"] or None} if "budget" in settings else {}  # 0: no limit
            if "min_reading" in settings:  # 0: every question answered on its best reading
                budget["min_reading"] = settings["min_reading"] or None
            # answers only; with "confidence", the next-best answers too (the pipeline's top 3)
            self.asp = ASPReasoner(settings.get("theory_dir"), explain=False, top_k=3 if settings.get("confidence") else 1,
                                   **budget)
        elif reasoner == "nsm":
            from ..reason.nsm import NSMReasoner

            self.nsm = NSMReasoner.from_checkpoint(settings.get("nsm_checkpoint"))
        pipe = _pipeline(settings)
        self.scene_parser = pipe.scene_parser if settings["scene_source"] == "predicted" else None
        self.question_parser = pipe.question_parser if settings["program_source"] == "parsed" else None

    def __call__(self, chunk: list[tuple]) -> list[dict]:
        """chunk: [(image_id, gold scene or None, image path or None, [question record dicts])]."""
        batch, order = [], []
        for image_id, scene, image_path, questions in chunk:
            if scene is None and _FORKED_SCENES is not None:
                scene = _FORKED_SCENES[image_id]
            if self.scene_parser is not None:
                scene = self.scene_parser.parse_image(image_path)
            elif scene is not None:
                index, rec = scene
                scene = SceneGraph.from_clevr(rec, file=self.s["scenes"], record=clevr._scene_record_id(rec, index))
            for q in questions:
                raw = q.pop("raw_program", None)
                q["program"] = None if raw is None else Program.from_clevr(raw, file=self.s["questions"],
                                                                           record=q["qid"])
                if q["program"] is not None:  # unknown functions, input counts: bad input, named
                    _check_functions(q["program"], self.s["questions"], q["qid"])
                q["function"] = final_function(q["program"])
            programs = []
            parsed = self.question_parser.parse_batch([q["text"] for q in questions]) if self.question_parser else None
            for k, q in enumerate(questions):
                prog = q["program"]
                if parsed is not None:
                    # the same program tree (released files order the steps of two branches
                    # in other ways than the parser's post-order; `vqa parse` compares so too)
                    q["program_match"] = prog is not None and parsed[k].program.to_prefix() == prog.to_prefix()
                    prog = parsed[k].program
                    q["parse_confidence"] = float(parsed[k].confidence)
                q["program"] = prog
                if prog is not None:
                    programs.append(prog)
                    order.append(q)
            batch.append((scene, programs, [q["text"] for q in questions if q["program"] is not None]))
        results = self._answer(batch)
        out = []
        answered = dict(zip(map(id, order), results))
        for _, _, _, questions in chunk:
            for q in questions:
                pred, err, *flags = answered.get(id(q), (None, "no program"))
                rec = {k: q[k] for k in ("qid", "image", "answer", "template", "function", "family")}
                rec.update(prediction=pred, error=err)
                if flags and not flags[0]:  # ASP: the best reading was not proven within the budget
                    rec["proven"] = False
                if len(flags) > 1 and flags[1]:  # ASP: refused, the reading it needs too improbable
                    rec["refused"] = True
                if len(flags) > 2 and flags[2]:  # ASP: the cost of the (needed) reading above the scene's best
                    rec["cost"] = flags[2]
                if len(flags) > 3 and self.s.get("confidence"):  # the pipeline's confidence
                    from ..pipeline import asp_confidence

                    rec["confidence"] = round(asp_confidence(flags[3], q.get("parse_confidence", 1.0)), 6)
                if "program_match" in q:
                    rec["program_match"] = q["program_match"]
                out.append(rec)
        return out

    def _answer(self, batch) -> list[tuple]:
        reasoner = self.s["reasoner"]
        if reasoner == "asp":
            answers = self.asp.answer_many([(scene, progs) for scene, progs, _ in batch])
            return [(a.answer, a.error, a.proven, a.presupposition, a.cost, a) for ans in answers for a in ans]
        if reasoner == "nsm":
            out = []
            for scene, _, texts in batch:
                out += [(r.answer, None) for r in self.nsm.answer_batch([scene] * len(texts), texts)]
            return out
        from ..executor import execute

        return [(r.answer, r.error) for scene, progs, _ in batch for r in (execute(p, scene) for p in progs)]


def _check_functions(program: Program, file, qid) -> None:
    """A DataError naming the step of a gold program whose function is unknown, whose
    input count is wrong, or whose value is not one of its category's (a 'dodecahedron'
    filter would silently select nothing: bad input, as `vqa data check` reports it)."""
    from ..ontology import CLEVR_FUNCTIONS, arg_vocabulary

    if not program.steps:
        raise DataError("program is empty", file=file, record=qid, field="program")
    for i, s in enumerate(program.steps):
        spec = CLEVR_FUNCTIONS.get(s.op)
        if spec is None:
            raise DataError(f"unknown function {s.op!r}", file=file, record=qid, field=f"program[{i}].function")
        if len(s.inputs) != spec.arity:
            raise DataError(f"{s.op} takes {spec.arity} input(s), got {len(s.inputs)}", file=file, record=qid,
                            field=f"program[{i}].inputs")
        if spec.arg and (len(s.args) != 1 or s.args[0] not in arg_vocabulary(spec.arg)):
            got = repr(s.args[0]) if len(s.args) == 1 else f"{len(s.args)} values {list(s.args)!r:.60}"
            raise DataError(f"{got} is not a {spec.arg} (expected one of {', '.join(arg_vocabulary(spec.arg))})",
                            file=file, record=qid, field=f"program[{i}].value_inputs")


_WORKER: _Answerer | None = None
_FORKED_SCENES: dict | None = None  # gold scenes forked workers inherit instead of receiving pickled


def _init_worker(settings: dict) -> None:
    global _WORKER
    gc.set_threshold(*GC_THRESHOLD)
    _WORKER = _Answerer(settings)


# Python's cyclic garbage collector, at its default thresholds, runs every 700 new
# containers and now and then walks every object alive (the scene records above all); an
# evaluation makes millions of short-lived dicts and lists, and spent a third of its time
# in the collector (10,000 questions: reading 0.6 s -> 0.23 s, answering 2.6 s -> 2.1 s).
GC_THRESHOLD = (10_000, 50, 100)


@contextmanager
def _fewer_collections():
    """The collector's thresholds raised to at least GC_THRESHOLD, restored afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(old, GC_THRESHOLD)))
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _run_chunk(chunk):
    return _WORKER(chunk)


# ---- the driver ---------------------------------------------------------------------------
def _settings(reasoner, scene_source, program_source, questions, scenes, images, theory_dir, checkpoints,
              budget=None, min_reading=None, confidence=False) -> dict:
    reasoner = "reference" if reasoner == "executor" else reasoner
    if confidence and reasoner != "asp":
        raise VQAError("--confidence applies to the asp reasoner")
    if reasoner not in (*REASONERS, "nsm"):
        raise VQAError(f"unknown reasoner {reasoner!r} (expected one of asp, reference, nsm)")
    if scene_source not in SCENE_SOURCES:
        raise VQAError(f"unknown scene source {scene_source!r} (expected one of {', '.join(SCENE_SOURCES)})")
    if program_source not in PROGRAM_SOURCES:
        raise VQAError(f"unknown program source {program_source!r} (expected one of {', '.join(PROGRAM_SOURCES)})")
    if scene_source == "predicted" and not images:
        raise VQAError("--scene-source predicted needs --images (the folder of the split's images)")
    return {"dataset": "clevr", "reasoner": reasoner, "scene_source": scene_source, "program_source": program_source,
            "questions": str(questions), "scenes": str(scenes), "images": str(images) if images else None,
            "theory_dir": str(theory_dir) if theory_dir else None, **(checkpoints or {}),
            **({"budget": budget} if budget is not None else {}),
            **({"min_reading": min_reading} if min_reading is not None else {}),
            **({"confidence": True} if confidence else {})}


def _read_predictions(path: Path, settings: dict, keys: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Records already in a predictions file made with the same settings (`keys`: the
    settings that must match; CLEVR's by default), by qid (`journal.iter_journal`)."""
    keys = keys or ("reasoner", "scene_source", "program_source", "questions", "scenes", "theory_dir")
    return {rec["qid"]: rec for rec in iter_journal(path, settings, keys)}


def evaluate_clevr(questions: str | Path, scenes: str | Path, *, reasoner: str = "asp", scene_source: str = "gold",
                   program_source: str = "gold", limit: int | None = None, out: str | Path | None = None,
                   predictions: str | Path | None = None, progress=None, theory_dir=None, scenes_per_call: int = 32,
                   workers: int = 1, shard: tuple[int, int] | None = None, images: str | Path | None = None,
                   checkpoints: dict | None = None, budget: float | None = None,
                   min_reading: float | None = None, confidence: bool = False) -> dict:
    """Answer the questions (the first `limit`) of a CLEVR questions file and score them.

    `budget`: the ASP reasoner's seconds of search per question on uncertain scenes
    (None: its default, `vqa.reason.asp.DEFAULT_BUDGET`; 0: no limit); the report counts
    the answers whose best reading was not proven within it (`not_proven`). `min_reading`:
    the ASP reasoner's least reading probability relative to the scene's best (None: its
    default, `vqa.reason.asp.DEFAULT_MIN_READING`; 0: no limit); the report counts the
    questions refused for it (`refused`). `confidence` (ASP): each record gets the
    pipeline's `confidence` (`vqa.pipeline.asp_confidence`: the next-best answers are searched
    as `Pipeline` does, top 3, several times slower on predicted scenes), and the report its
    calibration (ECE, `REPORT.reliability.png`).

    Writes the report to `out` (JSON, plus `.md` and `.png` beside it) and the predictions
    to `predictions` (JSONL, resumable) when given. Returns the report dict."""
    with _fewer_collections():
        return _evaluate_clevr(questions, scenes, reasoner=reasoner, scene_source=scene_source,
                               program_source=program_source, limit=limit, out=out, predictions=predictions,
                               progress=progress, theory_dir=theory_dir, scenes_per_call=scenes_per_call,
                               workers=workers, shard=shard, images=images, checkpoints=checkpoints, budget=budget,
                               min_reading=min_reading, confidence=confidence)


def _evaluate_clevr(questions, scenes, *, reasoner, scene_source, program_source, limit, out, predictions,
                    progress, theory_dir, scenes_per_call, workers, shard, images, checkpoints, budget=None,
                    min_reading=None, confidence=False) -> dict:
    if budget is not None and budget < 0:
        raise VQAError(f"budget must be >= 0 seconds (0: no limit), got {budget}")
    if min_reading is not None and not 0 <= min_reading <= 1:
        raise VQAError(f"min_reading must be in [0, 1] (0: no limit), got {min_reading}")
    settings = _settings(reasoner, scene_source, program_source, questions, scenes, images, theory_dir, checkpoints,
                         budget, min_reading, confidence)
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise VQAError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    # the main process only reads records (programs and scene graphs are built by the workers),
    # and streams them: the workers answer the first chunks while the rest is being read
    scene_records = None
    if scene_source == "gold":
        scene_records = {clevr_image_id(rec): (i, rec) for i, rec in enumerate(clevr.iter_scene_records(scenes))}
    pred_path = Path(predictions) if predictions else None
    held = lock_predictions(pred_path)  # noqa: F841 (held for the run: released when this returns)
    done = _read_predictions(pred_path, settings) if pred_path else {}
    stream_kw = dict(done=done, limit=limit, shard=shard, images=images, scenes_per_call=scenes_per_call)
    if progress is not None:  # a bar with a total (and a time left): the questions counted first
        progress = functools.partial(progress, total=_count_todo(questions, limit, shard, done))
    if workers > 1 and not _uses_torch(settings) and "fork" in mp.get_all_start_methods():
        run = _ForkedParts(questions, scenes, scene_records, stream_kw, settings, workers, progress)
    else:
        run = _Streamed(_ChunkStream(questions, scenes, scene_records, **stream_kw), settings, workers, progress,
                        scene_records)
    start = time.perf_counter()
    records = dict(done)
    with Journal(pred_path, settings) as journal:
        drain(run, take=lambda result: records.update((rec["qid"], rec) for rec in result), journal=journal)
    seconds = time.perf_counter() - start
    if run.error is not None:  # bad input met while streaming: the chunks before it are saved
        raise run.error
    todo = run.todo
    report = score_records([records[qid] for qid in run.wanted if qid in records])
    report.update({**{k: settings[k] for k in ("dataset", "reasoner", "scene_source", "program_source")},
                   "questions_file": str(questions), "scenes_file": str(scenes), "workers": workers,
                   "shard": f"{shard[0]}/{shard[1]}" if shard else None, "answered_now": todo,
                   "resumed": len(done), "seconds": round(seconds, 3),
                   "questions_per_second": round(todo / seconds, 1) if seconds > 0 and todo else None})
    if out:
        write_reports(report, out)
    return report


def _count_todo(questions, limit, shard, done) -> int | None:
    """How many questions of the file an evaluation will answer (in `limit` and `shard`,
    not in `done`), in one quick pass (0.1 s per 10,000 questions); None when the file
    has a bad record (the answering pass reports it after answering what comes before)."""
    order: dict[str, int] = {}
    n = 0
    try:
        for i, rec in enumerate(stream_list(questions, "questions")):
            if limit is not None and i >= limit:
                break
            k = order.setdefault(clevr_image_id(rec), len(order))
            if shard is not None and k % shard[1] != shard[0]:
                continue
            n += str(rec.get("question_index", i)) not in done
    except Exception:  # noqa: BLE001 (reported by the answering pass)
        return None
    return n


def _record(rec, file, index: int) -> dict:
    """A question record for the workers: checked and normalised like `clevr.question_from_record`,
    the program kept raw (`raw_program`; the worker builds the `Program`)."""
    q = clevr.question_from_record(rec, file=file, index=index, parse_program=False)
    return {"qid": q.qid, "image": q.image_id, "text": q.text, "raw_program": rec.get("program"),
            "answer": q.answer, "template": template_group(q), "family": q.family}


def _pipeline(settings: dict):
    """A `Pipeline` that resolves the scene/question parser checkpoints and backend as `vqa answer` does."""
    from ..pipeline import Pipeline

    return Pipeline(scene_checkpoint=settings.get("scene_checkpoint"),
                    parser_checkpoint=settings.get("parser_checkpoint"), threads=None)


def _uses_torch(settings: dict) -> bool:
    """Whether answering needs torch (the NSM, or a parser without a numpy export)."""
    if settings["reasoner"] == "nsm":
        return True
    pipe = _pipeline(settings)
    return ((settings["scene_source"] == "predicted" and pipe.checkpoint("scene").suffix != ".npz")
            or (settings["program_source"] == "parsed" and pipe.checkpoint("parser").suffix != ".npz"))


class _ChunkStream:
    """Chunks of up to `scenes_per_call` images with their questions, read from the questions
    file as they are consumed. Consecutive questions about one image form one group (CLEVR
    files list each image's questions together; an image met again later forms another
    group). `shard=(i, n)`: the images whose order of first appearance is i modulo n.
    Afterwards: `wanted` (the qids in scope, in file order), `todo` (questions chunked),
    `error` (a DataError met while reading, re-raised by the caller)."""

    def __init__(self, questions, scenes, scene_records, *, done, limit, shard, images, scenes_per_call,
                 part: tuple[int, int] | None = None):
        self.questions, self.scenes, self.scene_records = questions, scenes, scene_records
        self.done, self.limit, self.shard, self.images = done, limit, shard, images
        self.part = part  # (k, n): of the images in scope, the k-th of every n (a forked worker's share)
        self.per_call = scenes_per_call
        self.wanted: list[str] = []
        self.todo = 0
        self.error: Exception | None = None

    def _groups(self):
        order: dict[str, int] = {}
        kept: dict[str, int] = {}
        image, group = None, []
        try:
            for i, rec in enumerate(stream_list(self.questions, "questions")):
                if self.limit is not None and i >= self.limit:
                    break
                # the image first (cheap), so that a shard or a forked worker checks and
                # normalises only its own records (each record is some worker's: none goes unchecked)
                try:
                    key = clevr_image_id(rec)
                except Exception:  # noqa: BLE001 (not a record: _record names what is wrong)
                    key = _record(rec, self.questions, i)["image"]
                k = order.setdefault(key, len(order))
                if self.shard is not None and k % self.shard[1] != self.shard[0]:
                    continue
                if self.part is not None:
                    j = kept.setdefault(key, len(kept))
                    if j % self.part[1] != self.part[0]:
                        continue
                q = _record(rec, self.questions, i)
                if self.scene_records is not None and q["image"] not in self.scene_records:
                    raise DataError(f"no scene for image {q['image']!r} in {self.scenes}", file=self.questions,
                                    record=q["qid"], field="image_filename")
                self.wanted.append(q["qid"])
                if q["image"] != image and group:
                    yield image, group
                    group = []
                image = q["image"]
                if q["qid"] not in self.done:
                    group.append(q)
        except (DataError, VQAError):  # the questions read before a bad record are still answered
            if group:
                yield image, group
            raise
        if group:
            yield image, group

    def __iter__(self):
        chunk = []
        try:
            for image_id, qs in self._groups():
                image_path = Path(self.images) / f"{image_id}.png" if self.images else None
                chunk.append((image_id, None, image_path, qs))
                self.todo += len(qs)
                if len(chunk) == self.per_call:
                    yield chunk
                    chunk = []
        except (DataError, VQAError) as e:  # raised by the caller once the questions before it are answered
            self.error = e
        if chunk:
            yield chunk


class _Streamed:
    """The main process streams the chunks; answered here (one worker) or by a pool (chunks
    pickled to spawned workers when torch models are involved). Iterates over the answered
    records of each chunk; afterwards `wanted`, `todo`, `error` as `_ChunkStream`."""

    def __init__(self, stream, settings, workers, progress, scene_records):
        self.stream, self.args = stream, (settings, workers, progress, scene_records)

    def __iter__(self):
        yield from _map(self.stream, *self.args)

    def __getattr__(self, name):  # wanted, todo, error
        return getattr(self.stream, name)


_PART_JOB: tuple | None = None  # what forked part workers inherit: (questions, scenes, stream kwargs, settings, n)


class _ForkedParts:
    """`workers` forked processes, each streaming the questions file itself and answering its
    part (every n-th image in scope); only the answered records travel back, through a queue,
    as each chunk finishes. Nothing is pickled on the way in (the gold scene records are
    inherited), and the main process only writes the predictions."""

    def __init__(self, questions, scenes, scene_records, stream_kw, settings, workers, progress):
        self.job = (questions, scenes, stream_kw, settings, workers)
        self.scene_records, self.workers, self.progress = scene_records, workers, progress
        self.wanted: list[str] = []
        self.todo = 0
        self.error: Exception | None = None

    def __iter__(self):
        import queue as queue_mod

        global _FORKED_SCENES, _PART_JOB
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        _FORKED_SCENES, _PART_JOB = self.scene_records, self.job
        procs = [ctx.Process(target=_part_worker, args=(k, q), daemon=True) for k in range(self.workers)]
        bar = self.progress(desc="questions") if self.progress else None
        ends: dict[int, tuple] = {}
        # what the workers inherit (the scene records) leaves the collector's care, so that
        # no collection in a worker walks it (and copies its pages)
        frozen = gc.get_freeze_count() == 0
        if frozen:
            gc.freeze()
        try:
            for p in procs:
                p.start()
            while len(ends) < len(procs):
                try:
                    kind, k, payload = q.get(timeout=1.0)
                except queue_mod.Empty:
                    dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise VQAError(f"an evaluation worker died (exit code {dead[0]})") from None
                    continue
                if kind == "chunk":
                    if bar is not None:
                        bar.update(len(payload))
                    yield payload
                elif kind == "end":
                    ends[k] = payload
                else:  # "fail": an exception while answering
                    raise payload
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
            _FORKED_SCENES = _PART_JOB = None
            if frozen:
                gc.unfreeze()
            if bar is not None:
                bar.close()
        for k in sorted(ends):
            wanted, todo, error = ends[k]
            self.wanted += wanted
            self.todo += todo
            self.error = self.error or error


def _part_worker(k: int, q) -> None:
    """Body of forked part worker k (see `_ForkedParts`)."""
    import pickle

    questions, scenes, stream_kw, settings, n = _PART_JOB
    stream = _ChunkStream(questions, scenes, _FORKED_SCENES, part=(k, n), **stream_kw)
    try:
        answer = _Answerer(settings)
        for chunk in stream:
            q.put(("chunk", k, answer(chunk)))
    except Exception as e:  # noqa: BLE001 (reported to the main process, which raises it)
        try:
            pickle.dumps(e)
        except Exception:  # noqa: BLE001
            e = VQAError(f"{type(e).__name__}: {e}")
        q.put(("fail", k, e))
        return
    q.put(("end", k, (stream.wanted, stream.todo, stream.error)))


def _map(chunks, settings, workers: int, progress, scene_records=None):
    """The answered records of each chunk; scenes come from `scene_records` (gold) by image id."""
    global _FORKED_SCENES
    bar = progress(desc="questions") if progress else None
    _FORKED_SCENES = scene_records  # in this process, and inherited by forked workers
    try:
        if workers <= 1:
            answer = _Answerer(settings)
            for chunk in chunks:
                res = answer(chunk)
                if bar is not None:
                    bar.update(len(res))
                yield res
            return
        # torch models (the NSM, parsers without a numpy export) get fresh spawned processes
        # (torch's thread pools do not survive fork); the chunks carry their scenes
        if scene_records is not None:
            chunks = ([(i, scene_records[i], p, qs) for i, _, p, qs in c] for c in chunks)
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
            for res in pool.imap_unordered(_run_chunk, chunks):
                if bar is not None:
                    bar.update(len(res))
                yield res
    finally:
        _FORKED_SCENES = None
        if bar is not None:
            bar.close()
