"""`vqa report`: merge prediction shards (CLEVR's JSONL files, or GQA's official-format files)
and write the report (JSON, Markdown, plot)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("report", help="merge prediction files (shards) and write reports")
    p.add_argument("--dataset", choices=["clevr", "gqa"], default="clevr")
    p.add_argument("--predictions", nargs="+", required=True,
                   help="predictions files of one run (shards): CLEVR's JSONL files, or GQA's official-format files "
                        "(scored together against --questions)")
    p.add_argument("--questions", help="GQA: the questions file (or folder of parts) the shards answered")
    p.add_argument("--choices", help="GQA: {split}_choices.json for validity and plausibility")
    p.add_argument("--all", action="store_true", help="GQA: score all questions, not only the balanced ones")
    p.add_argument("--compare", nargs="+", help="predictions of a second run to show side by side "
                                                "(e.g. predicted vs gold scenes)")
    p.add_argument("--out", required=True, help="report JSON (a .md and a .png are written beside it)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr (one per step)")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    from ..errors import VQAError
    from ._util import Stages

    if args.dataset == "gqa":
        if not args.questions:
            raise VQAError("vqa report --dataset gqa needs --questions (the questions file the shards answered)")
        if args.compare:
            raise VQAError("--compare applies to --dataset clevr only")
        from ..eval.gqa import format_report as gqa_format, score_predictions

        stage = None if args.no_progress else Stages("vqa report", 2 + len(args.predictions) + bool(args.out))
        report = score_predictions(args.questions, args.predictions, choices=args.choices, all_questions=args.all,
                                   out=args.out, stage=stage)
        import sys

        for w in report.get("warnings") or []:
            print(f"vqa report: warning: {w}", file=sys.stderr)
        print(json.dumps(report, indent=1) if args.json else gqa_format(report))
        return 0
    if args.questions or args.choices or args.all:
        raise VQAError("--questions, --choices and --all apply to --dataset gqa only")
    from ..eval.report import format_report, merge_predictions, score_records, write_reports

    stage = (lambda what: None) if args.no_progress else Stages("vqa report", 2 + bool(args.compare))
    stage(f"reading and scoring {len(args.predictions)} predictions file(s)")
    records, settings = merge_predictions(args.predictions)
    report = {**(settings or {}), **score_records(records), "files": args.predictions}
    compare = None
    if args.compare:
        stage(f"reading and scoring {len(args.compare)} file(s) to compare")
        crec, csettings = merge_predictions(args.compare)
        compare = {**(csettings or {}), **score_records(crec)}
        report["compare"] = compare
    stage(f"writing the report and plots ({args.out})")
    write_reports(report, args.out, compare)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
