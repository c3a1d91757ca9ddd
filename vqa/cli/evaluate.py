"""`vqa evaluate`: answer a CLEVR or GQA split and score it."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="answer a CLEVR or GQA split and report accuracy and breakdowns")
    p.add_argument("--dataset", choices=["clevr", "gqa"], required=True)
    p.add_argument("--questions", required=True, help="questions file (GQA: a file or a folder of parts)")
    p.add_argument("--scenes", required=True, help="CLEVR scenes file or GQA scene-graph file")
    p.add_argument("--reasoner", choices=["asp", "reference", "executor"], default="asp",
                   help="asp (clingo theory in rules/) or reference (the Python executor; 'executor' is an alias)")
    p.add_argument("--scene-source", choices=["gold"], default="gold", help="where scene graphs come from")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--out", help="write the report (JSON) here")
    p.add_argument("--predictions", help="write the predictions (JSON) here")
    p.add_argument("--theory", help="CLEVR: a folder of .lp files instead of rules/clevr")
    p.add_argument("--choices", help="GQA: {split}_choices.json for validity and plausibility")
    p.add_argument("--all", action="store_true", help="GQA: score all questions, not only the balanced ones")
    p.add_argument("--ontology", help="GQA: an attribute ontology learned by `vqa gqa ontology`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VQAError
    from ._util import progress

    bar = None if args.no_progress or args.json else progress
    if args.limit is not None and args.limit < 0:
        raise VQAError(f"--limit must be >= 0, got {args.limit}")
    if args.dataset == "clevr":
        if args.choices or args.all or args.ontology:
            raise VQAError("--choices, --all and --ontology apply to --dataset gqa only")
        from ..evaluate import evaluate_clevr, format_report

        report = evaluate_clevr(args.questions, args.scenes, reasoner=args.reasoner, scene_source=args.scene_source,
                                limit=args.limit, out=args.out, predictions=args.predictions, progress=bar,
                                theory_dir=args.theory)
    else:
        if args.theory:
            raise VQAError("--theory applies to --dataset clevr only")
        from ..evaluate_gqa import evaluate_gqa, format_report

        reasoner = "reference" if args.reasoner == "executor" else args.reasoner
        kwargs = {"ontology": args.ontology} if args.ontology else {}
        report = evaluate_gqa(args.questions, args.scenes, choices=args.choices, all_questions=args.all,
                              out=args.out, predictions=args.predictions, limit=args.limit, reasoner=reasoner,
                              progress=bar, **kwargs)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
