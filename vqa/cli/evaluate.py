"""`vqa evaluate`: answer a CLEVR or GQA split and score it."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="answer a CLEVR or GQA split and report accuracy and breakdowns")
    p.add_argument("--dataset", choices=["clevr", "gqa"], required=True)
    p.add_argument("--questions", required=True, help="questions file (GQA: a file or a folder of parts)")
    p.add_argument("--scenes", help="CLEVR scenes file or GQA scene-graph file (required unless --from-predictions)")
    p.add_argument("--reasoner", choices=["asp", "reference", "executor", "nsm"], default="asp",
                   help="asp (clingo theory in rules/), nsm (Neural State Machine; GQA: --nsm-checkpoint, default "
                        "data/checkpoints/nsm_gqa.pt) or reference "
                        "(the Python executor; 'executor' is an alias)")
    p.add_argument("--scene-source", choices=["gold", "predicted"], default="gold",
                   help="CLEVR: gold scenes file, or scenes predicted from --images by the scene parser")
    p.add_argument("--program-source", choices=["gold", "parsed"], default="gold",
                   help="the questions' programs, or programs parsed from the question text (GQA: by the GQA "
                        "question parser, --parser-checkpoint; default data/checkpoints/gqa_question_parser.pt)")
    p.add_argument("--images", help="CLEVR: the split's image folder (for --scene-source predicted)")
    p.add_argument("--models", default="synth", choices=("synth", "clevr"),
                   help="CLEVR: shipped model set for predicted scenes and parsed programs: synth (the project's own "
                        "world; default) or clevr (Blender renders like CLEVR's, official question templates); "
                        "--*-checkpoint flags win over it")
    p.add_argument("--scene-checkpoint", help="scene parser checkpoint (default: the shipped one)")
    p.add_argument("--parser-checkpoint", help="question parser checkpoint (default: the shipped one)")
    p.add_argument("--nsm-checkpoint", help="NSM checkpoint (default: the shipped one)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--workers", type=int, default=1, help="processes answering in parallel (GQA: forked, renewed every "
                                                                 "40 tasks of --scenes-per-call images or ~20,000 "
                                                                 "questions, whichever comes first)")
    p.add_argument("--shard", help="i/n: answer one n-th of the images (CLEVR: every n-th image starting at i; GQA: "
                                   "the images whose crc32 of the id is i modulo n; the predictions file then lists "
                                   "the shard's questions only); merge the shards with `vqa report`")
    p.add_argument("--out", help="write the report here (JSON, with .md and .png beside it)")
    p.add_argument("--predictions", help="write the predictions here (an output; rerun the same command to resume). "
                                         "CLEVR: JSONL, appended as answered. GQA: the official format "
                                         "([{questionId, prediction}] for every question of --questions, \"\" where "
                                         "none), journaled as answered in PREDICTIONS.journal")
    p.add_argument("--from-predictions", metavar="FILE",
                   help="GQA: score this predictions file (official format, any model's) instead of answering; "
                        "no --scenes needed")
    p.add_argument("--theory", help="CLEVR: a folder of .lp files instead of rules/clevr")
    p.add_argument("--scenes-per-call", type=int, default=None,
                   help="CLEVR: images whose questions are answered together (one clingo call for gold scenes; "
                        "larger is faster, a kill loses at most one such chunk per worker; default 32). "
                        "GQA: images per task (one clingo call for gold graphs; default 512 images or 1,536 questions, "
                        "whichever comes first; given, images only; a kill loses at most the tasks in flight)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="ASP: seconds of search per question on an uncertain (predicted) scene (default 2.0; "
                        "0: no limit); CLEVR's report counts the answers not proven within it; for GQA one image's "
                        "questions share budget x their number, and a question whose image found no reading within "
                        "it fails at 'budget'")
    p.add_argument("--min-reading", type=float, metavar="P",
                   help="CLEVR, ASP: a question about a predicted scene that can be carried out only on a reading less "
                        "probable than P times the scene's most probable reading is refused (its presupposition "
                        "fails there; default 0.05; 0: no limit); the report counts them as refused")
    p.add_argument("--confidence", action="store_true",
                   help="CLEVR, ASP: record each answer's confidence as `vqa answer` gives it (searches the next-best "
                        "answers too: several times slower on predicted scenes); the report gets its calibration "
                        "(ECE) and a reliability plot (REPORT.reliability.png)")
    p.add_argument("--choices", help="GQA: {split}_choices.json for validity and plausibility")
    p.add_argument("--attentions", metavar="FILE",
                   help="GQA: score grounding on this attentions file (official format, any model's: "
                        "[{questionId, attention: [[x0, y0, x1, y1, score], ...]}], boxes in pixels); needs --scenes "
                        "(gold). With --reasoner nsm the NSM's own are scored (and written to PREDICTIONS.attentions.json)")
    p.add_argument("--all", action="store_true", help="GQA: score all questions, not only the balanced ones")
    p.add_argument("--ontology", help="GQA: an attribute ontology learned by `vqa gqa ontology`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (when stderr is not a terminal, no progress lines: one every "
                        "VQA_PROGRESS_SECONDS, default 30)")
    p.set_defaults(func=run, output_paths=("out", "predictions"))  # output folders made by `vqa`


def run(args) -> int:
    from ..errors import VQAError
    from ._util import progress_or_log

    bar = None if args.no_progress else progress_or_log  # on stderr; lines at an interval when logged
    if args.limit is not None and args.limit < 0:
        raise VQAError(f"--limit must be >= 0, got {args.limit}")
    if args.from_predictions and args.dataset != "gqa":
        raise VQAError("--from-predictions applies to --dataset gqa only")
    if not args.scenes and not args.from_predictions and not (args.dataset == "gqa" and args.scene_source == "predicted"):
        raise VQAError("--scenes is required (the scenes or scene-graph file)")
    if args.dataset == "clevr":
        if args.choices or args.all or args.ontology or args.attentions:
            raise VQAError("--choices, --all, --ontology and --attentions apply to --dataset gqa only")
        from ..eval.clevr import evaluate_clevr, format_report

        if args.workers < 1:
            raise VQAError(f"--workers must be >= 1, got {args.workers}")
        args.scenes_per_call = 32 if args.scenes_per_call is None else args.scenes_per_call
        if args.scenes_per_call < 1:
            raise VQAError(f"--scenes-per-call must be >= 1, got {args.scenes_per_call}")
        from ..pipeline import CHECKPOINT_DIR, MODEL_SETS

        checkpoints = {k: str(CHECKPOINT_DIR / name) for k, name in MODEL_SETS[args.models].items()
                       if args.models != "synth"}
        checkpoints.update({k: v for k, v in (("scene_checkpoint", args.scene_checkpoint),
                                              ("parser_checkpoint", args.parser_checkpoint),
                                              ("nsm_checkpoint", args.nsm_checkpoint)) if v})
        report = evaluate_clevr(args.questions, args.scenes, reasoner=args.reasoner, scene_source=args.scene_source,
                                program_source=args.program_source, limit=args.limit, out=args.out,
                                predictions=args.predictions, progress=bar, theory_dir=args.theory,
                                workers=args.workers, shard=parse_shard(args.shard), images=args.images,
                                checkpoints=checkpoints, scenes_per_call=args.scenes_per_call, budget=args.budget,
                                min_reading=args.min_reading, confidence=args.confidence)
    else:
        clevr_only = [f for f, v in (("--theory", args.theory),
                                      ("--min-reading", args.min_reading is not None),
                                      ("--confidence", args.confidence), ("--models", args.models != "synth")) if v]
        if clevr_only:
            raise VQAError(f"{', '.join(clevr_only)} apply to --dataset clevr only")
        from ..eval.gqa import evaluate_gqa, format_report, score_predictions

        reasoner = "reference" if args.reasoner == "executor" else args.reasoner
        kwargs = {"ontology": args.ontology} if args.ontology else {}
        if args.workers < 1:
            raise VQAError(f"--workers must be >= 1, got {args.workers}")
        from ..eval.gqa import IMAGES_PER_TASK, QUESTIONS_PER_TASK

        per_task = QUESTIONS_PER_TASK if args.scenes_per_call is None else None  # given: images only
        args.scenes_per_call = IMAGES_PER_TASK if args.scenes_per_call is None else args.scenes_per_call
        if args.scenes_per_call < 1:
            raise VQAError(f"--scenes-per-call must be >= 1, got {args.scenes_per_call}")
        if args.scene_source == "predicted" or args.images:  # the GQA scene parser (vqa.vision.gqa_predicted)
            kwargs.update(scene_source=args.scene_source, images=args.images, scene_checkpoint=args.scene_checkpoint)
        if args.budget is not None:
            if args.budget < 0:
                raise VQAError(f"--budget must be >= 0 seconds (0: no limit), got {args.budget}")
            if reasoner != "asp":
                raise VQAError("--budget bounds the ASP reasoner's search: it applies to --reasoner asp")
            kwargs["budget"] = args.budget or None
        shard = parse_shard(args.shard)
        if args.from_predictions:
            if args.predictions or args.ontology or args.budget is not None:
                raise VQAError("--from-predictions scores a file: --predictions, --ontology and --budget do not apply")
            report = score_predictions(args.questions, args.from_predictions, choices=args.choices,
                                       all_questions=args.all, limit=args.limit, out=args.out, shard=shard,
                                       scenes=args.scenes, attentions=args.attentions)
        else:
            report = evaluate_gqa(args.questions, args.scenes, choices=args.choices, all_questions=args.all,
                                  out=args.out, predictions=args.predictions, limit=args.limit, reasoner=reasoner,
                                  progress=bar, program_source=args.program_source,
                                  parser_checkpoint=args.parser_checkpoint, nsm_checkpoint=args.nsm_checkpoint,
                                  workers=args.workers, images_per_task=args.scenes_per_call,
                                  questions_per_task=per_task, shard=shard,
                                  attentions=args.attentions, **kwargs)
        import sys

        for w in report.get("warnings") or []:  # one line each, on stderr
            print(f"vqa evaluate: warning: {w}", file=sys.stderr)
        unknown = report.get("unknown_operations") or {}
        if unknown.get("first"):  # one line naming the first, on stderr; the report counts them as failures
            import sys

            from ..errors import Problem

            f = unknown["first"]
            print(f"vqa evaluate: warning: {Problem(f.get('file'), f['record'], f['field'], f['message'])}; "
                  f"{unknown['questions']} question(s) with operations outside GQA's answered as failures",
                  file=sys.stderr)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    from ..errors import VQAError

    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise VQAError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    return i, n
