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
import time
from collections import Counter, defaultdict
from pathlib import Path

from ..datasets.gqa import SceneGraphIndex, SceneGraphs, iter_question_records  # noqa: F401
from ..datasets.gqa_ontology import GQAOntology
from ..datasets.gqa_program import check_operations, parse_step, steps_number
from ..errors import DataError, VQAError

# workers: images per task, and tasks before a worker process is renewed (clingo keeps every
# symbol it has seen for the life of a process: ~21 KB per distinct question, FACTS.md)
IMAGES_PER_TASK = 32
TASKS_PER_WORKER = 150
FAILED_LISTED = 100  # failed questions named in the report (the count covers all)
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


def _reasoner(name: str, ontology):
    if name == "asp":
        from ..reason.gqa_asp import GQAReasoner, GQAReasonerConfig

        r = GQAReasoner(GQAReasonerConfig(ontology=ontology))
        return r.answer_image, r.ontology
    if name == "reference":
        from ..datasets.gqa_ontology import default_ontology
        from ..reason.gqa_asp import GQAAnswer
        from ..reason.gqa_reference import run_gqa

        onto = ontology or default_ontology()

        def answer(scene, programs):
            out = {}
            for qid, steps in programs.items():
                a, failed = run_gqa(scene, steps, onto)
                out[qid] = GQAAnswer(qid, a, failed, None if failed is None else steps[failed].operation)
            return out
        return answer, onto
    raise VQAError(f"unknown GQA reasoner {name!r} (expected asp or reference)")


def answer_questions(records: dict, scenes, *, reasoner: str = "asp", ontology: GQAOntology | None = None,
                     progress=None, done: dict | None = None, journal=None, workers: int = 1,
                     images_per_task: int = IMAGES_PER_TASK,
                     tasks_per_worker: int | None = TASKS_PER_WORKER) -> tuple[dict[str, str | None], dict]:
    """qid -> answer (None when the question failed) for every record, solved per image;
    and stats: failures and unsupported steps per operation, time.

    `done`: journal records ({qid, prediction, operation}) of questions answered by an
    earlier run, taken as they are; `journal`: a text file each image's answers are
    appended to (one JSON line per question) and flushed as the image is done.
    `workers` > 1: forked processes answer `images_per_task` images per task, each renewed
    after `tasks_per_worker` tasks (clingo's symbol table, which only grows, starts afresh)."""
    from ..program import GQA_OPERATIONS
    from ..reason.gqa_asp import step_kind

    answer_image = None  # (built on first use: forked workers build their own)
    by_image: dict[str, dict] = defaultdict(dict)
    unsupported = Counter()
    unknown: dict = {"questions": 0}
    for qid, rec in records.items():
        sem = rec.get("semantic")
        if not isinstance(sem, list):
            raise DataError("missing program (expected a 'semantic' list)", record=qid, field="semantic")
        try:
            steps = [parse_step(r["operation"], r["argument"], r["dependencies"]) for r in sem]
        except (KeyError, TypeError, AttributeError):
            raise DataError("expected operation/argument/dependencies steps", record=qid, field="semantic") from None
        for i, s in enumerate(steps):
            if not all(isinstance(k, int) and 0 <= k < i for k in s.inputs):
                raise DataError(f"dependencies {list(s.inputs)} must refer to earlier steps (0..{i - 1})",
                                record=qid, field=f"semantic[{i}].dependencies")
        for i, s in enumerate(steps):  # not a GQA operation at all: answered as a failure, and named
            if str(s.operation).split(" ")[0] not in GQA_OPERATIONS:
                unknown["questions"] += 1
                unknown.setdefault("first", {"record": qid, "field": f"semantic[{i}].operation",
                                             "message": f"unknown operation {s.operation!r} (GQA's are "
                                                        f"{', '.join(GQA_OPERATIONS)})"})
                break
        for s in steps:
            if step_kind(s).startswith("unsupported"):
                unsupported[s.operation] += 1
        by_image[str(rec.get("imageId"))][qid] = steps
    done = done or {}
    answers, failures, failed_ops = {}, Counter(), {}

    def took(qid, answer, operation):
        answers[qid] = answer
        if answer is None:
            failures[operation or "?"] += 1
            failed_ops[qid] = operation or "?"

    resumed = 0
    todo_images = {}
    for image_id, programs in by_image.items():
        left = {}
        for qid, steps in programs.items():
            if qid in done:
                took(qid, done[qid].get("prediction"), done[qid].get("operation"))
                resumed += 1
            else:
                left[qid] = steps
        if left:
            todo_images[image_id] = left
    # scene graphs read per image from the file (an index of where each lies: flat memory)
    graphs = scenes if not isinstance(scenes, (str, Path)) else SceneGraphIndex(scenes, keep=todo_images)
    t0 = time.perf_counter()
    items = sorted(todo_images.items())
    for image_id, programs in items:  # every scene graph there before anything is answered
        if image_id not in graphs:
            raise DataError(f"no scene graph for image {image_id!r}", file=getattr(graphs, "path", None),
                            record=next(iter(programs)), field="imageId")
    bar = None if progress is None else progress(desc="questions", total=sum(len(p) for _, p in items))
    # ASP in this process would keep every symbol of every question answered (FACTS.md): a run
    # longer than one worker's life goes to a renewed worker even with workers=1
    renew = reasoner == "asp" and tasks_per_worker and len(items) > images_per_task * tasks_per_worker
    if workers > 1 or renew:
        batches = _pooled(items, graphs, reasoner, ontology, workers, images_per_task, tasks_per_worker)
    else:
        answer_image, _ = _reasoner(reasoner, ontology)
        batches = ([(qid, a.answer, None if a.answer is not None else (a.failed_operation or "?"))
                    for qid, a in answer_image(graphs[image_id], programs).items()] for image_id, programs in items)
    for batch in batches:
        for qid, answer, op in batch:
            took(qid, answer, op)
        if journal is not None:
            journal.write("".join(json.dumps({"qid": qid, "prediction": answer, "operation": op}) + "\n"
                                  for qid, answer, op in batch))
            journal.flush()
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    now = len(records) - resumed
    failed_first = []  # in answering order (images sorted), whether resumed or not
    for image_id in sorted(by_image):
        for qid in by_image[image_id]:
            if qid in failed_ops and len(failed_first) < FAILED_LISTED:
                failed_first.append({"questionId": qid, "imageId": image_id, "operation": failed_ops[qid]})
    return answers, {"failed": sum(failures.values()), "failures_by_operation": dict(failures.most_common()),
                     "failed_questions": failed_first,
                     "unsupported_by_operation": dict(unsupported.most_common()), "images": len(by_image),
                     "unknown_operations": unknown, "resumed": resumed, "answered_now": now,
                     "seconds": round(seconds, 3),
                     "questions_per_second": round(now / seconds, 1) if seconds > 0 and now else None}


_POOL_JOB: tuple | None = None  # (todo images, scene graphs, reasoner, ontology), inherited by forked workers
_POOL_ANSWER = None


def _pool_init() -> None:
    global _POOL_ANSWER
    try:
        _POOL_ANSWER = _reasoner(_POOL_JOB[2], _POOL_JOB[3])[0]
    except Exception as e:  # noqa: BLE001 (a failing initializer would be restarted for ever: told per task)
        _POOL_ANSWER = e


def _pool_task(image_ids: list[str]):
    """Answers of a worker's task as plain data: [(qid, answer, failed operation)], or
    ("error", message) (exceptions with keyword-only arguments do not survive pickling)."""
    todo, graphs = _POOL_JOB[0], _POOL_JOB[1]
    try:
        if isinstance(_POOL_ANSWER, Exception):
            raise _POOL_ANSWER
        return [(qid, a.answer, None if a.answer is not None else (a.failed_operation or "?"))
                for image_id in image_ids
                for qid, a in _POOL_ANSWER(graphs[image_id], todo[image_id]).items()]
    except Exception as e:  # noqa: BLE001 (raised in the main process)
        return ("error", f"{type(e).__name__}: {e}" if not isinstance(e, VQAError) else str(e))


def _pooled(items, graphs, reasoner, ontology, workers, images_per_task, tasks_per_worker):
    """Batches of answers from a pool of forked workers (unordered; one batch per task)."""
    import gc
    import multiprocessing as mp

    global _POOL_JOB
    if "fork" not in mp.get_all_start_methods():
        raise VQAError("--workers for GQA needs the fork start method (Linux, macOS)")
    _POOL_JOB = (dict(items), graphs, reasoner, ontology)
    ids = [image_id for image_id, _ in items]
    tasks = [ids[i:i + images_per_task] for i in range(0, len(ids), images_per_task)]
    frozen = gc.get_freeze_count() == 0
    if frozen:  # what the workers inherit leaves the collector's care (no page copied by a collection)
        gc.freeze()
    try:
        with mp.get_context("fork").Pool(workers, initializer=_pool_init, maxtasksperchild=tasks_per_worker) as pool:
            for res in pool.imap_unordered(_pool_task, tasks):
                if isinstance(res, tuple):
                    raise VQAError(res[1])
                yield res
    finally:
        _POOL_JOB = None
        if frozen:
            gc.unfreeze()


def parse_records(records: dict, parser_checkpoint=None, *, scored=None, progress=None) -> tuple[dict, dict]:
    """Records with `semantic` replaced by the program the GQA question parser reads from
    each question's text, and the exact-match stats (id-free form, over `scored`)."""
    from ..language.gqa_parser import load_gqa_question_parser, normalised_semantic

    parser = load_gqa_question_parser(parser_checkpoint)
    qids = list(records)
    results = parser.parse_batch([records[q].get("question", "") for q in qids], progress=progress)
    out, exact, n = {}, 0, 0
    for qid, r in zip(qids, results):
        gold = records[qid].get("semantic")
        if scored is None or qid in scored:
            n += 1
            exact += isinstance(gold, list) and r.semantic == normalised_semantic(gold)
        out[qid] = {**records[qid], "semantic": r.semantic}
    return out, {"program_exact_match": _avg([1] * exact + [0] * (n - exact)), "programs_parsed": n,
                 "parser_checkpoint": str(parser_checkpoint) if parser_checkpoint else "default"}


def evaluate_gqa(questions, scenes, *, choices=None, all_questions=False, out=None, predictions=None,
                 limit=None, reasoner="asp", progress=None, ontology=None, workers: int = 1,
                 images_per_task: int = IMAGES_PER_TASK, program_source="gold",
                 parser_checkpoint=None, nsm_checkpoint=None, scene_source="gold", images=None,
                 scene_checkpoint=None) -> dict:
    """Answer a GQA split on scene graphs and score it; writes report.json (`out`), a `.md`
    and a plot next to it, and the official predictions file (`predictions`). Returns the report.

    `reasoner`: "asp" (rules/gqa) or "reference" (the Python executor); `ontology`: a
    GQAOntology, or the path of one learned by `vqa gqa ontology` (merged onto the shipped
    default); `limit`: score only the first N questions; failed questions predict "".

    The predictions file lists every question of the questions file (`""` for those not
    answered, e.g. beyond `limit`), so GQA's official `eval.py` runs on it. While answering,
    each image's answers are appended to a journal beside it (`PREDICTIONS.journal`, JSON
    lines after a settings line): rerunning the same command after a kill takes the
    questions already there (`resumed` in the report) and answers the rest.
    """
    ontology_file = str(ontology) if isinstance(ontology, (str, Path)) else None
    if isinstance(ontology, (str, Path)):  # a learned ontology file, on top of the shipped default
        from ..datasets.gqa_ontology import default_ontology

        ontology = default_ontology().merge(GQAOntology.load(ontology))
    from .clevr import _read_predictions, lock_predictions

    held = lock_predictions(predictions)  # noqa: F841 (held for the run: released when this returns)
    if program_source not in ("gold", "parsed"):
        raise VQAError(f"unknown program source {program_source!r} (expected gold or parsed)")
    if scene_source not in ("gold", "predicted") or (scene_source == "predicted") != (images is not None):
        raise VQAError("--scene-source predicted goes with --images DIR (and gold without it)")
    scene_key = str(scenes) if scene_source == "gold" else f"predicted from {images} by {scene_checkpoint or 'default'}"
    settings = {"dataset": "gqa", "reasoner": reasoner, "questions": str(questions), "scenes": scene_key,
                "ontology": ontology_file, "program_source": program_source,
                "parser_checkpoint": str(parser_checkpoint) if parser_checkpoint else None,
                "nsm_checkpoint": str(nsm_checkpoint) if nsm_checkpoint else None}
    jpath = journal_path(predictions) if predictions else None
    done = _read_predictions(jpath, settings, keys=JOURNAL_KEYS) if jpath else {}
    info: dict = {}
    records, scored = load_questions(questions, all_questions=all_questions, limit=limit, info=info)
    if program_source == "gold" and reasoner != "nsm":  # an operation outside GQA's: bad input (one line)
        check_operations(records, questions)
    parse_stats = {}
    answer_records = records
    if program_source == "parsed":
        answer_records, parse_stats = parse_records(records, parser_checkpoint, scored=scored, progress=progress)
    scene_stats, answer_scenes = {}, scenes
    if scene_source == "predicted":  # the GQA scene parser over --images (vqa.vision.gqa_predicted)
        from .vision.gqa_predicted import predicted_scene_graphs

        answer_scenes, scene_stats = predicted_scene_graphs(
            images, {str(r.get("imageId")) for r in records.values()}, checkpoint=scene_checkpoint, gold=scenes,
            cache=str(predictions) + ".scenes.jsonl" if predictions else None, progress=progress)
    journal = open(jpath, "a", encoding="utf-8") if jpath else None
    try:
        if journal is not None and not done:
            journal.write(json.dumps({"settings": settings}) + "\n")
            journal.flush()
        if reasoner == "nsm":  # answered in one pass (not journaled)
            try:
                from ..reason.nsm_gqa import answer_questions_nsm
            except ModuleNotFoundError as e:
                if e.name != f"{__package__}.reason.nsm_gqa":
                    raise
                raise VQAError("the NSM reasoner is not available for GQA in this version") from None

            answers, stats = answer_questions_nsm(answer_records, answer_scenes, checkpoint=nsm_checkpoint,
                                                  progress=progress)
        else:
            answers, stats = answer_questions(answer_records, answer_scenes, reasoner=reasoner, ontology=ontology,
                                              progress=progress, done=done, journal=journal, workers=workers,
                                              images_per_task=images_per_task)
    except DataError as e:  # a record's defect: name the questions file it is in
        raise (e.located(file=questions) if Path(questions).is_file() else e) from None
    finally:
        if journal is not None:
            journal.close()
    if (stats.get("unknown_operations") or {}).get("first"):
        stats["unknown_operations"]["first"]["file"] = str(questions)
    preds = {qid: a if a is not None else "" for qid, a in answers.items()}
    choice_data = _load_json(choices) if choices else None
    # entailed questions outside the scored set are answered for consistency only
    metrics = gqa_metrics(records, preds, choices=choice_data, all_questions=all_questions, only=scored)
    report = {"dataset": "gqa", "reasoner": reasoner, "program_source": program_source, **parse_stats,
              "questions_file": str(questions), "scenes_file": str(scenes),
              "choices_file": None if choices is None else str(choices), "all_questions": bool(all_questions),
              "answered": len(answers), "workers": workers, **metrics, **stats, **info, **scene_stats,
              "failed_scored": sum(1 for k in scored if answers.get(k) is None)}
    report["warnings"] = warnings(report)
    if predictions:
        report["predictions_written"] = write_predictions(predictions, questions, preds)
    if out:
        write_report(report, out)
    return report


JOURNAL_KEYS = ("dataset", "reasoner", "questions", "scenes", "ontology", "program_source", "parser_checkpoint",
                "nsm_checkpoint")  # settings a journal must match


def journal_path(predictions) -> Path:
    """Where a GQA run journals the predictions it makes (beside the official file)."""
    return Path(str(predictions) + ".journal")


def write_predictions(path, questions, preds: dict) -> int:
    """The official predictions file: `[{"questionId", "prediction"}]` for every question of
    the questions file (file order; `""` where `preds` has none), written to a temporary
    file beside `path` and renamed over it. Returns how many were written."""
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[")
        for _, qid, _ in iter_question_records(questions):
            f.write(("," if n else "") + json.dumps({"questionId": qid, "prediction": preds.get(qid) or ""}))
            n += 1
        f.write("]\n")
    os.replace(tmp, path)
    return n


def read_predictions(path) -> dict[str, str]:
    """questionId -> prediction from a predictions file in the official format (a JSON list
    of `{"questionId", "prediction"}`); a bad entry is a DataError naming its index and field."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a list of {{\"questionId\", \"prediction\"}} objects, got {type(data).__name__}",
                        file=path)
    out: dict[str, str] = {}
    for i, p in enumerate(data):
        if not isinstance(p, dict):
            raise DataError(f"expected an object, got {type(p).__name__}", file=path, record=f"[{i}]")
        for key in ("questionId", "prediction"):
            if key not in p:
                raise DataError("missing", file=path, record=f"[{i}]", field=key)
        qid, pred = p["questionId"], p["prediction"]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)):
            raise DataError(f"expected a string, got {type(qid).__name__}", file=path, record=f"[{i}]",
                            field="questionId")
        if not isinstance(pred, str):
            raise DataError(f"expected a string, got {type(pred).__name__}", file=path, record=f"[{i}]",
                            field="prediction")
        out[str(qid)] = pred
    return out


def score_predictions(questions, predictions, *, choices=None, all_questions=False, limit=None, out=None) -> dict:
    """Score a predictions file in the official format (any model's) against a questions
    file with the same metrics as `evaluate_gqa`; nothing is answered and no scene graphs
    are read. A scored question without a prediction counts as wrong (`missing_predictions`;
    the official eval.py stops on it)."""
    info: dict = {}
    records, scored = load_questions(questions, all_questions=all_questions, limit=limit, info=info)
    given = read_predictions(predictions)
    preds = {qid: given[qid] for qid in records if qid in given}
    choice_data = _load_json(choices) if choices else None
    metrics = gqa_metrics(records, preds, choices=choice_data, all_questions=all_questions, only=scored)
    report = {"dataset": "gqa", "reasoner": None, "predictions_file": str(predictions),
              "questions_file": str(questions), "choices_file": None if choices is None else str(choices),
              "all_questions": bool(all_questions), "answered": len(preds), **metrics, **info,
              "missing_predictions": sum(1 for k in scored if k not in given),
              "failed_scored": sum(1 for k in scored if not preds.get(k))}
    report["warnings"] = warnings(report)
    if out:
        write_report(report, out)
    return report


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


def _load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", file=path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON at line {e.lineno}: {e.msg}", file=path) from None


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
    for k in ("accuracy", "binary", "open", "consistency", "validity", "plausibility", "distribution"):
        lines.append(f"  {k:<13} {_fmt(report.get(k))}")
    for key, title in (("per_structural", "structural type"), ("per_semantic", "semantic type"),
                       ("per_detailed", "detailed type"), ("per_steps", "steps")):
        rows = report.get(key) or {}
        if rows:
            lines.append(f"accuracy / {title}:")
            lines += [f"  {k:<24} {_fmt(v['accuracy'])}  (n={v['n']})" for k, v in rows.items()]
    if report.get("failures_by_operation"):
        lines.append("failures by operation: " + ", ".join(f"{k} {v}" for k, v in report["failures_by_operation"].items()))
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
    for k in ("accuracy", "binary", "open", "consistency", "validity", "plausibility", "distribution"):
        lines.append(f"| {k} | {_fmt(report.get(k))} |")
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
