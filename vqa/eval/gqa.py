"""GQA evaluation: answer questions on scene graphs and score them with GQA's metrics.

    report = evaluate_gqa("val_balanced_questions.json", "val_sceneGraphs.json",
                          choices="val_choices.json", out="report.json", predictions="pred.json")
    print(format_report(report))

The metrics are re-implemented from the definitions of GQA's official `eval.py`
(`gqa_metrics`): only balanced questions are scored (`all_questions=True` scores all);
accuracy is exact match; open = structural type "query", binary = the rest; validity and
plausibility = the prediction is in the question's `valid` / `plausible` set of a
`{split}_choices.json` file (for "Common" detailed types the set is color/material/shape);
consistency = for each correctly answered scored question with entailed questions, the
mean accuracy over those entailed questions (those present in the predictions), averaged;
distribution = chi-square between the predicted and gold answer histograms of each
global group, weighted by group size, divided by 100 (lower is better). Scores are
percentages, as the official script prints them. Breakdowns: structural, semantic and
detailed type, program length (steps, counted as eval.py does) and question length (words).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..datasets.gqa import iter_question_records
from ..datasets.gqa_ontology import GQAOntology
from ..datasets.gqa_program import steps_number
from ..datasets.jsonstream import read_span
from ..errors import DataError, VQAError
from ..scene import SceneGraph
from .gqa_store import QuestionStore, inspect_program, program_steps, write_predictions_file
from .loop import Journal, drain, iter_journal, lock_predictions

DEFAULT_BUDGET = 2.0  # vqa.reason.gqa_asp.DEFAULT_BUDGET (not imported here: it loads clingo; a test checks them equal)
# A task (one clingo call for gold graphs) ends at IMAGES_PER_TASK images or QUESTIONS_PER_TASK
# questions, whichever comes first: a call's fixed cost (~6 ms of clingo for the theory alone) is
# spread over ~1,500 questions at 2-3 questions per image as at 13 (README, issue 28's
# measurements); --scenes-per-call: images only. A worker process is renewed after
# TASKS_PER_WORKER tasks (clingo keeps every symbol it has seen for the life of a process: ~21 KB
# per distinct question, FACTS.md).
IMAGES_PER_TASK = 512
QUESTIONS_PER_TASK = 1_536
TASKS_PER_WORKER = 40
QUESTIONS_PER_WORKER = 20_000  # fewer tasks per worker where images have many questions each
FAILED_LISTED = 100  # failed questions named in the report (the count covers all)
FAILED_PRINTED = 5  # of those, named in the printed summary
KEEP = ("imageId", "question", "answer", "isBalanced", "types", "entailed", "groups", "semantic")


# ---- metrics -------------------------------------------------------------------------------
def _avg(xs) -> float | None:
    return 100.0 * sum(xs) / len(xs) if xs else None


def chi_square(gold: dict[str, Counter], predicted: dict[str, Counter]) -> float | None:
    """GQA's distribution score before /100: per group sum (o-e)^2/e over gold answers,
    weighted by the group's size."""
    total_score, total = 0.0, 0
    for group, answers in gold.items():
        score = sum((predicted.get(group, {}).get(a, 0) - e) ** 2 / e for a, e in answers.items())
        n = sum(answers.values())
        total_score += score * n
        total += n
    return total_score / total if total else None


def gqa_metrics(questions: dict[str, dict], predictions: dict[str, str], *, choices: dict | None = None,
                all_questions: bool = False, only: set | None = None) -> dict:
    """Official-style scores. `questions`: qid -> record (answer, isBalanced, types,
    entailed, groups, semantic, question); `predictions`: qid -> answer string (a missing
    prediction counts as wrong). `only` restricts the scored questions further (e.g. to the
    first N); consistency reads the entailed questions present in `predictions`."""
    acc, binary, open_, valid, plaus, cons = [], [], [], [], [], []
    per = {k: defaultdict(list) for k in ("structural", "semantic", "detailed", "steps", "words")}
    gold_dist, pred_dist = defaultdict(Counter), defaultdict(Counter)
    missing_choices = 0
    for qid, q in questions.items():
        if not (all_questions or q.get("isBalanced")) or (only is not None and qid not in only):
            continue
        gold, pred = q.get("answer"), predictions.get(qid)
        score = float(pred == gold)
        types = q.get("types") or {}
        acc.append(score)
        (open_ if types.get("structural") == "query" else binary).append(score)
        for key in ("structural", "semantic", "detailed"):
            per[key][types.get(key)].append(score)
        if "semantic" in q:
            per["steps"][steps_number(q["semantic"])].append(score)
        per["words"][len(q.get("question", "").split())].append(score)
        if choices is not None:
            c = choices.get(qid)
            if c is None:
                missing_choices += 1
            else:
                common = "Common" in (types.get("detailed") or "")
                vset = ["color", "material", "shape"] if common else c.get("valid", [])
                pset = ["color", "material", "shape"] if common else c.get("plausible", [])
                valid.append(float(pred in vset))
                plaus.append(float(pred in pset))
        group = (q.get("groups") or {}).get("global")
        if group is not None:
            gold_dist[group][gold] += 1
            pred_dist[group][pred] += 1
        if score:
            ent = [e for e in q.get("entailed") or [] if e != qid and e in predictions and e in questions]
            if ent:
                cons.append(sum(predictions[e] == questions[e].get("answer") for e in ent) / len(ent))
    chi = chi_square(gold_dist, pred_dist)
    return {
        "scored": len(acc),
        "accuracy": _avg(acc), "binary": _avg(binary), "open": _avg(open_),
        "validity": _avg(valid), "plausibility": _avg(plaus), "consistency": _avg(cons),
        "consistency_questions": len(cons),
        "distribution": None if chi is None else chi / 100,
        "missing_choices": missing_choices,
        "per_structural": _table(per["structural"]), "per_semantic": _table(per["semantic"]),
        "per_detailed": _table(per["detailed"]), "per_steps": _table(per["steps"]),
        "per_words": _table(per["words"]),
    }


def _table(d: dict) -> dict:
    return {str(k): {"accuracy": _avg(v), "n": len(v)} for k, v in sorted(d.items(), key=lambda kv: str(kv[0]))}


# ---- loading and answering -----------------------------------------------------------------
def load_questions(path, *, all_questions: bool = False, limit: int | None = None,
                   info: dict | None = None) -> tuple[dict, set]:
    """Scored questions (balanced unless `all_questions`, first `limit`) and the records of
    their entailed questions present in the file. Streams the file (twice when needed).
    `info`, when given, receives `entailed_missing`: how many distinct entailed questions of
    the scored ones are not in the file (a balanced-only file lacks most of them)."""
    scored, records = set(), {}
    for f, qid, rec in iter_question_records(path):
        if limit is not None and len(scored) >= limit:
            break
        if not isinstance(rec, dict):
            raise DataError("expected a question object", file=f, record=qid)
        if all_questions or rec.get("isBalanced"):
            records[qid] = {k: rec[k] for k in KEEP if k in rec}
            scored.add(qid)
    wanted = {e for qid in scored for e in records[qid].get("entailed") or []} - set(records)
    if wanted:
        for f, qid, rec in iter_question_records(path):
            if qid in wanted:
                records[qid] = {k: rec[k] for k in KEEP if k in rec}
    if info is not None:
        info["entailed_missing"] = len(wanted - set(records))
    return records, scored


def _reasoner(name: str, ontology, budget=DEFAULT_BUDGET):
    """(answer, ontology): `answer([(scene, {qid: steps})])` -> [{qid: GQAAnswer}] per image.
    `budget`: the ASP's seconds of search per question on an uncertain (predicted) graph."""
    if name == "asp":
        from ..reason.gqa_asp import GQAReasoner, GQAReasonerConfig

        from ..reason.gqa_asp import relation_predicates

        r = GQAReasoner(GQAReasonerConfig(ontology=ontology, budget=budget))

        def answer(batch):
            return r.answer_images(batch, trace=False)
        answer.relation_predicates = relation_predicates  # gold graphs read with only these relations
        return answer, r.ontology
    if name == "reference":
        from ..datasets.gqa_ontology import default_ontology
        from ..reason.gqa_asp import GQAAnswer
        from ..reason.gqa_reference import run_gqa

        onto = ontology or default_ontology()

        def answer(batch):
            out = []
            for scene, programs in batch:
                res = {}
                for qid, steps in programs.items():
                    a, failed = run_gqa(scene, steps, onto)
                    res[qid] = GQAAnswer(qid, a, failed, None if failed is None else steps[failed].operation)
                out.append(res)
            return out
        return answer, onto
    raise VQAError(f"unknown GQA reasoner {name!r} (expected asp, reference or nsm)")


# ---- answering: tasks of images, in this process or in forked workers ---------------------
_SCENES_FILE: tuple | None = None  # (pid, path, open scene-graph file): each process reads through its own


def _graph(path, image_id: str, start: int, end: int, predicates=None) -> SceneGraph:
    global _SCENES_FILE
    if isinstance(path, dict):  # predicted graphs, in memory (no spans to read)
        return path[image_id]
    if _SCENES_FILE is None or _SCENES_FILE[:2] != (os.getpid(), str(path)):
        if _SCENES_FILE is not None and _SCENES_FILE[0] == os.getpid():
            _SCENES_FILE[2].close()
        _SCENES_FILE = (os.getpid(), str(path), open(path, "rb"))
    return SceneGraph.from_gqa(image_id, read_span(_SCENES_FILE[2], start, end, path), file=path,
                               predicates=predicates)


def answer_task(answer, scenes, task) -> list[tuple[str, str | None, str | None]]:
    """[(qid, answer or None, failed operation or None)] for a task [(image id, span start,
    span end, [(qid, program JSON)])]: the scene graphs read from `scenes` by span, every
    image of the task answered in one call of `answer` (one clingo call for gold graphs)."""
    wanted = getattr(answer, "relation_predicates", None)  # relations the reasoner reads (None: all)
    batch = []
    for img, start, end, qs in task:
        programs = {qid: program_steps(p) for qid, p in qs}
        batch.append((_graph(scenes, img, start, end, None if wanted is None else wanted(programs)), programs))
    out = []
    for res, (_, programs) in zip(answer(batch), batch):
        for qid in programs:
            a = res.get(qid)
            if a is None:  # (an empty program: nothing to carry out)
                out.append((qid, None, "?"))
            elif a.answer is not None and not isinstance(a.answer, str):  # e.g. a parsed program ending in `select`
                out.append((qid, None, f"{programs[qid][-1].operation} (the program ends without an answer)"))
            else:
                out.append((qid, a.answer, None if a.answer is not None else (a.failed_operation or "?")))
    return out


_POOL_JOB: tuple | None = None  # (scene-graph file, reasoner, ontology, budget), inherited by forked workers
_POOL_ANSWER = None


def _pool_init() -> None:
    global _POOL_ANSWER
    try:
        _POOL_ANSWER = _reasoner(*_POOL_JOB[1:])[0]
    except Exception as e:  # noqa: BLE001 (a failing initializer would be restarted for ever: told per task)
        _POOL_ANSWER = e


def _pool_task(task):
    """A worker's answers as plain data, or ("error", message) (exceptions with keyword-only
    arguments do not survive pickling)."""
    try:
        if isinstance(_POOL_ANSWER, Exception):
            raise _POOL_ANSWER
        return answer_task(_POOL_ANSWER, _POOL_JOB[0], task)
    except Exception as e:  # noqa: BLE001 (raised in the main process)
        return ("error", f"{type(e).__name__}: {e}" if not isinstance(e, VQAError) else str(e))


def _pooled(tasks, scenes, reasoner, ontology, workers: int, tasks_per_worker: int | None, budget=DEFAULT_BUDGET):
    """Answers of each task (in task order) from a pool of forked workers, each renewed after
    `tasks_per_worker` tasks; at most a few tasks in flight per worker (memory stays flat)."""
    import gc
    import multiprocessing as mp
    from collections import deque

    global _POOL_JOB
    if "fork" not in mp.get_all_start_methods():
        raise VQAError("--workers for GQA needs the fork start method (Linux, macOS)")
    _POOL_JOB = (scenes if isinstance(scenes, dict) else str(scenes), reasoner, ontology, budget)
    frozen = gc.get_freeze_count() == 0
    if frozen:  # what the workers inherit leaves the collector's care (no page copied by a collection)
        gc.freeze()

    def result(res):
        if isinstance(res, tuple):
            raise VQAError(res[1])
        return res
    try:
        with mp.get_context("fork").Pool(workers, initializer=_pool_init, maxtasksperchild=tasks_per_worker) as pool:
            pending: deque = deque()
            for task in tasks:
                pending.append(pool.apply_async(_pool_task, (task,)))
                if len(pending) > 2 * workers:
                    yield result(pending.popleft().get())
            while pending:
                yield result(pending.popleft().get())
    finally:
        _POOL_JOB = None
        if frozen:
            gc.unfreeze()


def answer_store(store: QuestionStore, scenes, *, reasoner: str = "asp", ontology=None, workers: int = 1,
                 images_per_task: int = IMAGES_PER_TASK, questions_per_task: int | None = QUESTIONS_PER_TASK,
                 tasks_per_worker: int | None = TASKS_PER_WORKER, journal: Journal | None = None, progress=None,
                 questions_per_worker: int | None = QUESTIONS_PER_WORKER, budget=DEFAULT_BUDGET) -> dict:
    """Answer the store's questions still to answer, `images_per_task` images per task, or
    fewer where their questions reach `questions_per_task` first (one clingo call each for
    gold graphs); each task's answers recorded in the store and
    appended to `journal` (JSON lines, flushed) as it finishes. `workers` > 1: forked
    processes, each renewed after `tasks_per_worker` tasks (clingo's symbol table, which
    only grows, starts afresh); an ASP run longer than one worker's life goes to a renewed
    worker even with workers=1; a worker's life is also cut to about `questions_per_worker`
    questions (tasks of images with many questions each). Returns {answered_now, seconds, questions_per_second}."""
    todo = store.count("todo = 1 AND done = 0")
    bar = None if progress is None else progress(desc="questions", total=todo)
    t0 = time.perf_counter()
    tasks = store.tasks(images_per_task, questions_per_task)
    todo_images = store.todo_images()
    per_task = 0.0  # questions per task, about
    if todo_images:
        per_task = min(images_per_task * todo / todo_images, questions_per_task or float("inf"))
    if tasks_per_worker and questions_per_worker and per_task:  # a worker's life in questions, not only tasks
        tasks_per_worker = max(1, min(tasks_per_worker, int(questions_per_worker // per_task)))
    renew = reasoner == "asp" and tasks_per_worker and todo > per_task * tasks_per_worker
    if workers > 1 or renew:
        batches = _pooled(tasks, scenes, reasoner, ontology, workers, tasks_per_worker, budget)
    else:
        answer, _ = _reasoner(reasoner, ontology, budget)
        batches = (answer_task(answer, scenes, task) for task in tasks)
    now = drain(batches, take=store.record, journal=journal, bar=bar,
                line=lambda a: {"qid": a[0], "prediction": a[1], "operation": a[2]})
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return {"answered_now": now, "seconds": round(seconds, 3),
            "questions_per_second": round(now / seconds, 1) if seconds > 0 and now else None}


def parse_programs(store: QuestionStore, parser_checkpoint=None, *, progress=None, chunk: int = 2048) -> dict:
    """The programs of the questions to answer replaced by what the GQA question parser
    reads from their text, and the exact-match stats over the scored ones (id-free form)."""
    from ..language.gqa_parser import load_gqa_question_parser, normalised_semantic

    parser = load_gqa_question_parser(parser_checkpoint)
    total = store.count("todo = 1")
    bar = None if progress is None else progress(desc="parsing", total=total)
    exact = n = 0
    last = -1
    db = store.db
    while True:
        rows = db.execute("SELECT pos, program, text, scored FROM q WHERE todo = 1 AND pos > ? ORDER BY pos LIMIT ?",
                          (last, chunk)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        results = parser.parse_batch([r[2] or "" for r in rows])
        updates = []
        for (pos, gold, _, scored), r in zip(rows, results):
            if scored:
                n += 1
                if gold is not None:
                    sem = [{"operation": o, "argument": a, "dependencies": d} for o, a, d in json.loads(gold)]
                    exact += r.semantic == normalised_semantic(sem)
            updates.append((*inspect_program(r.semantic), pos))
        db.execute("BEGIN")
        db.executemany("UPDATE q SET program = ?, unsup = ?, unknown = ?, bad = ? WHERE pos = ?", updates)
        db.execute("COMMIT")
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return {"program_exact_match": 100.0 * exact / n if n else None, "programs_parsed": n,
            "parser_checkpoint": str(parser_checkpoint) if parser_checkpoint else "default"}


@contextmanager
def open_store(predictions=None):
    """A fresh QuestionStore in a work folder, deleted afterwards: `PREDICTIONS.work` beside
    the predictions file (a run killed before cleaning up leaves it; the next run on that
    file, which holds its lock, replaces it), or a folder in the system's temporary folder."""
    import shutil
    import tempfile

    if predictions is not None:
        work = Path(str(predictions) + ".work")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="vqa-gqa-work-"))
    store = QuestionStore(work / "store.sqlite")
    try:
        yield store
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)


def evaluate_gqa(questions, scenes, *, choices=None, all_questions=False, out=None, predictions=None,
                 limit=None, reasoner="asp", progress=None, ontology=None, workers: int = 1,
                 images_per_task: int = IMAGES_PER_TASK, questions_per_task: int | None = QUESTIONS_PER_TASK,
                 tasks_per_worker: int | None = TASKS_PER_WORKER,
                 shard: tuple[int, int] | None = None, program_source="gold",
                 parser_checkpoint=None, nsm_checkpoint=None, scene_source="gold", images=None,
                 scene_checkpoint=None, attentions=None, budget=DEFAULT_BUDGET) -> dict:
    """Answer a GQA split on scene graphs and score it; writes report.json (`out`), a `.md`
    and a plot next to it, and the official predictions file (`predictions`). Returns the report.

    `reasoner`: "asp" (rules/gqa), "reference" (the Python executor) or "nsm"; `ontology`:
    a GQAOntology, or the path of one learned by `vqa gqa ontology` (merged onto the shipped
    default); `limit`: score only the first N questions; failed questions predict "".
    `shard=(i, n)`: only the questions of the images whose crc32 of the id is i modulo n
    (the predictions file then lists those only; `vqa report --dataset gqa` merges shards).

    Memory stays flat however large the files: the questions are streamed into a work file
    (`QuestionStore`), scene graphs are read per image, answers are recorded as they come.
    The predictions file lists every question of the questions file (`""` for those not
    answered, e.g. beyond `limit`), so GQA's official `eval.py` runs on it. While answering,
    each task's answers are appended to a journal beside it (`PREDICTIONS.journal`, JSON
    lines after a settings line): rerunning the same command after a kill takes the
    questions already there (`resumed` in the report) and answers the rest.

    `budget`: the ASP's seconds of search per question on a predicted (uncertain) graph
    (None: no limit; `vqa.reason.gqa_asp.solve`); a question whose image found no reading
    within it fails at "budget". Gold graphs are solved without one.

    Grounding (`vqa.eval.gqa_grounding`, needs the gold scene-graph file): `attentions`, an
    attentions file in the official format, is scored; the NSM gives its own (its final
    step's attention over the graph's objects), written to `PREDICTIONS.attentions.json`
    where `predictions` is given, and scored.
    """
    ontology_file = str(ontology) if isinstance(ontology, (str, Path)) else None
    if isinstance(ontology, (str, Path)):  # a learned ontology file, on top of the shipped default
        from ..datasets.gqa_ontology import default_ontology

        ontology = default_ontology().merge(GQAOntology.load(ontology))
    if reasoner not in ("asp", "reference", "nsm"):
        raise VQAError(f"unknown GQA reasoner {reasoner!r} (expected asp, reference or nsm)")
    if program_source not in ("gold", "parsed"):
        raise VQAError(f"unknown program source {program_source!r} (expected gold or parsed)")
    if scene_source not in ("gold", "predicted") or (scene_source == "predicted") != (images is not None):
        raise VQAError("--scene-source predicted goes with --images DIR (and gold without it)")
    if attentions is not None and reasoner == "nsm":
        raise VQAError("--attentions scores a file of another model's; the NSM gives its own attentions "
                       "(written beside --predictions)")
    if attentions is not None and scenes is None:
        raise VQAError("--attentions needs the gold scene-graph file (--scenes) for the annotated regions")
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise VQAError(f"--shard i/n needs 0 <= i < n, got {shard[0]}/{shard[1]}")
    if budget is not None and not budget > 0:
        raise VQAError(f"--budget must be positive seconds (or none: no limit), got {budget}")
    held = lock_predictions(predictions)  # held for the run: released when it ends, however it ends
    try:
        scene_key = str(scenes) if scene_source == "gold" else f"predicted from {images} by {scene_checkpoint or 'default'}"
        settings = {"dataset": "gqa", "reasoner": reasoner, "questions": str(questions), "scenes": scene_key,
                    "ontology": ontology_file, "program_source": program_source,
                    "parser_checkpoint": str(parser_checkpoint) if parser_checkpoint else None,
                    "nsm_checkpoint": str(nsm_checkpoint) if nsm_checkpoint else None}
        if reasoner == "asp" and scene_source == "predicted" and budget != DEFAULT_BUDGET:
            settings["budget"] = budget  # answers on uncertain graphs depend on it (journals of the default stay valid)
        jpath = journal_path(predictions) if predictions else None
        scenes_file = scenes
        with open_store(predictions) as store:
            try:
                store.load_questions(questions, all_questions=all_questions, limit=limit, shard=shard,
                                     texts=program_source == "parsed" or reasoner == "nsm")
            except DataError as e:  # a record's defect: name the questions file it is in
                raise (e.located(file=questions) if Path(questions).is_file() else e) from None
            parse_stats = {}
            if program_source == "parsed":
                parse_stats = parse_programs(store, parser_checkpoint, progress=progress)
            if reasoner != "nsm":
                defect = store.first_defect()
                if defect is None and program_source == "gold":  # an operation outside GQA's: bad input (one line)
                    defect = store.first_unknown()
                if defect is not None:
                    qid, d = defect
                    raise DataError(d["message"], file=questions if Path(questions).is_file() else None, record=qid,
                                    field=d["field"])
            scene_stats = {}
            if scene_source == "predicted":  # the GQA scene parser over --images (vqa.vision.gqa_predicted)
                from ..vision.gqa_predicted import predicted_scene_graphs

                scenes, scene_stats = predicted_scene_graphs(
                    images, store.image_ids(), checkpoint=scene_checkpoint, gold=scenes_file,
                    cache=str(predictions) + ".scenes.jsonl" if predictions else None, progress=progress)
                store.set_scene_ids(scenes)
            elif reasoner != "nsm":
                store.load_scene_spans(scenes)
            if reasoner != "nsm":
                missing = store.missing_scene()
                if missing is not None:
                    where = scenes if scene_source == "gold" else images
                    raise DataError(f"no scene graph for image {missing[1]!r}", file=where, record=missing[0],
                                    field="imageId")
            resumed = store.resume(iter_journal(jpath, settings, JOURNAL_KEYS)) if jpath else 0
            with Journal(jpath, settings) as journal:
                if reasoner == "nsm":  # answered in one pass (not journaled)
                    nsm_attentions = {} if scenes_file is not None else None
                    stats = _answer_nsm(store, scenes, nsm_checkpoint, progress, nsm_attentions)
                else:
                    stats = answer_store(store, scenes, reasoner=reasoner, ontology=ontology, workers=workers,
                                         images_per_task=images_per_task, questions_per_task=questions_per_task,
                                         tasks_per_worker=tasks_per_worker,
                                         journal=journal, progress=progress, budget=budget)
            stats = {**store.answer_stats(FAILED_LISTED), **stats}
            if (stats.get("unknown_operations") or {}).get("first"):
                stats["unknown_operations"]["first"]["file"] = str(questions)
            metrics = store.metrics(choices)
            report = {"dataset": "gqa", "reasoner": reasoner, "program_source": program_source, **parse_stats,
                      "questions_file": str(questions),
                      "scenes_file": None if scenes_file is None else str(scenes_file), "scene_source": scene_source,
                      "choices_file": None if choices is None else str(choices), "all_questions": bool(all_questions),
                      "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
                      "answered": store.count("todo = 1 AND done = 1"), "workers": workers, **metrics, **stats,
                      "resumed": resumed, **store.info, **scene_stats,
                      "failed_scored": store.count("scored = 1 AND (done = 0 OR op IS NOT NULL)")}
            if reasoner == "nsm" and nsm_attentions is not None:
                attentions = nsm_attentions
                if predictions:
                    from .gqa_grounding import write_attentions

                    report["attentions_file"] = str(predictions) + ".attentions.json"
                    write_attentions(report["attentions_file"], nsm_attentions)
            if attentions is not None:
                report.update(_grounding(store, questions, scenes_file, attentions))
            report["warnings"] = warnings(report)
            if predictions:
                report["predictions_written"] = write_predictions_file(predictions,
                                                                       store.predictions(only_todo=shard is not None))
        if out:
            write_report(report, out)
        return report
    finally:
        if held is not None:
            held.close()


def _grounding(store: QuestionStore, questions, scenes_file, attentions) -> dict:
    """GQA's grounding over the store's scored questions (`vqa.eval.gqa_grounding`)."""
    from .gqa_grounding import score_grounding

    scored = {qid for (qid,) in store.db.execute("SELECT qid FROM q WHERE scored = 1")}
    out = score_grounding(questions, scenes_file, attentions, scored=scored)
    if isinstance(attentions, (str, Path)):
        out["attentions_file"] = str(attentions)
    return out


def _answer_nsm(store: QuestionStore, scenes, checkpoint, progress, attentions=None) -> dict:
    """The NSM answers every question to answer in one pass (its records held in memory)."""
    try:
        from ..reason.nsm_gqa import answer_questions_nsm
    except ModuleNotFoundError as e:
        if e.name != f"{__package__.rsplit('.', 1)[0]}.reason.nsm_gqa":
            raise
        raise VQAError("the NSM reasoner is not available for GQA in this version") from None
    records = {qid: {"imageId": img, "question": text or ""} for qid, img, text in
               store.db.execute("SELECT qid, img, text FROM q WHERE todo = 1 AND done = 0 ORDER BY pos")}
    answers, stats = answer_questions_nsm(records, scenes, checkpoint=checkpoint, progress=progress,
                                          attentions=attentions)
    store.db.execute("BEGIN")
    store.record([(qid, a, None if a is not None else "?") for qid, a in answers.items()])
    store.db.execute("COMMIT")
    return {k: v for k, v in stats.items() if k in ("seconds", "questions_per_second")} | {"answered_now": len(answers)}


JOURNAL_KEYS = ("dataset", "reasoner", "questions", "scenes", "ontology", "program_source", "parser_checkpoint",
                "nsm_checkpoint")  # settings a journal must match


def journal_path(predictions) -> Path:
    """Where a GQA run journals the predictions it makes (beside the official file)."""
    return Path(str(predictions) + ".journal")


def iter_predictions(path) -> Iterator[tuple[str, str]]:
    """(questionId, prediction) of a predictions file in the official format (a JSON list of
    `{"questionId", "prediction"}`), streamed; a bad entry is a DataError naming its index
    and field."""
    import ijson

    from .gqa_grounding import official_entry

    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", file=path) from None
    with f:
        try:
            events = ijson.parse(f)
            first = next(events, None)
            if first is None or first[1] != "start_array":
                kind = "an empty file" if first is None else first[1].replace("start_", "").replace("map", "dict")
                raise DataError(f"expected a list of {{\"questionId\", \"prediction\"}} objects, got {kind}", file=path)
            f.seek(0)
            for i, p in enumerate(ijson.items(f, "item", use_float=True)):
                qid, pred = official_entry(p, i, "prediction", path)
                if not isinstance(pred, str):
                    raise DataError(f"expected a string, got {type(pred).__name__}", file=path, record=f"[{i}]",
                                    field="prediction")
                yield qid, pred
        except ijson.JSONError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"malformed JSON: {msg}", file=path) from None


def read_predictions(path) -> dict[str, str]:
    """questionId -> prediction of a predictions file in the official format (in memory; see
    `iter_predictions`)."""
    return dict(iter_predictions(path))


def score_predictions(questions, predictions, *, choices=None, all_questions=False, limit=None, out=None,
                      shard: tuple[int, int] | None = None, stage=None, scenes=None, attentions=None) -> dict:
    """Score predictions files in the official format (any model's; several: shards of one
    run, merged) against a questions file with the same metrics as `evaluate_gqa`; nothing is
    answered and no scene graphs are read. A scored question without a prediction counts as
    wrong (`missing_predictions`; the official eval.py stops on it); a question predicted
    differently by two files is a DataError. `stage(what)`, when given, is called before each
    long step (progress: `vqa.cli._util.Stages`): 2 + len(files) of them, one more with `out`.
    `attentions` (an attentions file) with `scenes` (the gold scene graphs): GQA's grounding too."""
    if attentions is not None and scenes is None:
        raise VQAError("--attentions needs the gold scene-graph file (--scenes) for the annotated regions")
    files = [predictions] if isinstance(predictions, (str, Path)) else list(predictions)
    stage = stage or (lambda what: None)
    with open_store(None) as store:
        stage(f"reading the questions ({questions})")
        try:
            store.load_questions(questions, all_questions=all_questions, limit=limit, shard=shard)
        except DataError as e:
            raise (e.located(file=questions) if Path(questions).is_file() else e) from None
        for f in files:
            stage(f"reading the predictions ({f})")
            if len(files) > 1:
                _check_agreement(store, f)
            store.set_predictions(iter_predictions(f))
        stage("scoring")
        metrics = store.metrics(choices)
        report = {"dataset": "gqa", "reasoner": None,
                  "predictions_file": str(files[0]) if len(files) == 1 else ", ".join(map(str, files)),
                  "questions_file": str(questions), "choices_file": None if choices is None else str(choices),
                  "all_questions": bool(all_questions), "answered": store.count("todo = 1 AND done = 1"),
                  **metrics, **store.info,
                  "missing_predictions": store.count("scored = 1 AND done = 0"),
                  "failed_scored": store.count("scored = 1 AND (done = 0 OR pred = '')")}
        if attentions is not None:
            stage(f"grounding ({attentions})")
            report.update(_grounding(store, questions, scenes, attentions))
    report["warnings"] = warnings(report)
    if out:
        stage(f"writing the report ({out}, .md, .png)")
        write_report(report, out)
    return report


def _check_agreement(store: QuestionStore, path) -> None:
    """A DataError when `path` predicts a question differently from a file taken before."""
    batch = []

    def check():
        marks = ",".join("?" * len(batch))
        given = dict(batch)
        for qid, pred in store.db.execute(f"SELECT qid, pred FROM q WHERE done = 1 AND qid IN ({marks})", list(given)):
            if pred != given[qid]:
                raise DataError(f"predicted {given[qid]!r} here and {pred!r} in an earlier file", file=path,
                                record=qid, field="prediction")
        batch.clear()
    for item in iter_predictions(path):
        batch.append(item)
        if len(batch) >= 500:
            check()
    if batch:
        check()


def warnings(report: dict) -> list[str]:
    """One line per thing that makes the scores differ from what the official script would
    give (or keeps it from running), with counts."""
    out = []
    if report.get("entailed_missing"):
        out.append(f"consistency averaged over the entailed questions present in {report['questions_file']}: "
                   f"{report['entailed_missing']} entailed question(s) of the scored ones are not in it "
                   "(the official figure uses the {split}_all_questions.json file)")
    if report.get("choices_file") and report.get("missing_choices"):
        out.append(f"{report['missing_choices']} of {report['scored']} scored question(s) have no entry in "
                   f"{report['choices_file']}: validity and plausibility leave them out"
                   + (" (none has one: a choices file of another split?)"
                      if report["missing_choices"] >= report["scored"] else ""))
    if report.get("grounding_missing"):
        out.append(f"{report['grounding_missing']} of {report['grounding_questions']} scored question(s) have no "
                   f"entry in the attentions file: grounding counts them 0 (the official eval.py stops on them)")
    if report.get("missing_predictions"):
        out.append(f"{report['missing_predictions']} scored question(s) have no prediction in "
                   f"{report['predictions_file']}: counted wrong (the official eval.py stops on them)")
    return out


def write_report(report: dict, out) -> None:
    """`out` (JSON), plus `.md` and `.png` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown_report(report))
    try:
        plot_report(report, out.with_suffix(".png"))
    except ImportError:
        pass


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_report(report: dict) -> str:
    lines = [f"GQA evaluation ({_source(report)}): {report['scored']} questions scored"
             f" ({'all' if report.get('all_questions') else 'balanced'}), {report.get('answered')} answered,"
             f" {report.get('failed', report.get('failed_scored', 0))} failed"
             + (f", {report['resumed']} resumed" if report.get("resumed") else "")]
    if report.get("program_source") == "parsed":
        lines.append(f"  program exact match {_fmt(report.get('program_exact_match'))}"
                     f" ({report.get('programs_parsed')} questions parsed)")
    for k in ("accuracy", "binary", "open", "consistency", "validity", "plausibility", "distribution", "grounding"):
        if k != "grounding" or "grounding" in report:
            lines.append(f"  {k:<13} {_fmt(report.get(k))}"
                         + (f"  (each annotated object once: {_fmt(report.get('grounding_distinct'))})"
                            if k == "grounding" else ""))
    for key, title in (("per_structural", "structural type"), ("per_semantic", "semantic type"),
                       ("per_detailed", "detailed type"), ("per_steps", "steps")):
        rows = report.get(key) or {}
        if rows:
            lines.append(f"accuracy / {title}:")
            lines += [f"  {k:<24} {_fmt(v['accuracy'])}  (n={v['n']})" for k, v in rows.items()]
    if report.get("failures_by_operation"):
        lines.append("failures by operation: " + ", ".join(f"{k} {v}" for k, v in report["failures_by_operation"].items()))
    failed = report.get("failed_questions") or []
    if failed:
        shown = failed[:FAILED_PRINTED]
        total = report.get("failed", len(failed))
        lines.append(("failed questions: " if total <= len(shown) else f"failed questions (first {len(shown)} of {total}; the .md names up to {FAILED_LISTED}): ")
                     + ", ".join(f"{f['questionId']} (image {f['imageId']}, at {f['operation']})" for f in shown))
    if report.get("unsupported_by_operation"):
        lines.append("unsupported steps: " + ", ".join(f"{k} {v}" for k, v in report["unsupported_by_operation"].items()))
    if report.get("questions_per_second"):
        lines.append(f"speed: {report['questions_per_second']} questions/s over {report['images']} images")
    return "\n".join(lines)


def _source(report: dict) -> str:
    return report.get("reasoner") or f"predictions file {report.get('predictions_file')}"


def markdown_report(report: dict) -> str:
    """The report as Markdown: scores, breakdowns, failures (naming the failed questions)
    and the warnings."""
    lines = [f"# GQA evaluation ({_source(report)})", "",
             f"Questions file `{report.get('questions_file')}`: {report['scored']} scored "
             f"({'all' if report.get('all_questions') else 'balanced'}), {report.get('answered')} answered"
             + (f" ({report['resumed']} resumed from an earlier run)" if report.get("resumed") else "") + ".", "",
             "| metric | score |", "|---|---:|"]
    for k in ("accuracy", "binary", "open", "consistency", "validity", "plausibility", "distribution", "grounding"):
        if k != "grounding" or "grounding" in report:
            lines.append(f"| {k} | {_fmt(report.get(k))} |")
    if "grounding" in report:
        lines.append(f"| grounding, each annotated object once | {_fmt(report.get('grounding_distinct'))} |")
    lines.append("")
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    for key, title in (("per_structural", "structural type"), ("per_semantic", "semantic type"),
                       ("per_detailed", "detailed type"), ("per_steps", "steps")):
        rows = report.get(key) or {}
        if rows:
            lines += [f"## Accuracy by {title}", "", "| | accuracy | n |", "|---|---:|---:|"]
            lines += [f"| {k} | {_fmt(v['accuracy'])} | {v['n']} |" for k, v in rows.items()] + [""]
    if report.get("failures_by_operation"):
        lines += ["## Failures", "", "| operation | questions |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in report["failures_by_operation"].items()] + [""]
    failed = report.get("failed_questions") or []
    if failed:
        more = report.get("failed", len(failed)) - len(failed)
        lines += [f"Failed questions (first {len(failed)}" + (f" of {report.get('failed')}" if more > 0 else "") + "):",
                  "", "| questionId | imageId | failed at |", "|---|---|---|"]
        lines += [f"| {f['questionId']} | {f['imageId']} | {f['operation']} |" for f in failed] + [""]
    if report.get("unsupported_by_operation"):
        lines += ["Unsupported steps: " + ", ".join(f"{k} {v}" for k, v in report["unsupported_by_operation"].items()),
                  ""]
    return "\n".join(lines)


def plot_report(report: dict, path) -> None:
    """Bar chart of accuracy per structural and semantic type (`vqa.plots.plot_gqa_report`)."""
    from vqa.plots import plot_gqa_report  # absolute: this module may move into vqa/eval/

    plot_gqa_report(report, path)
