"""`vqa report`: merge CLEVR prediction shards and write the report (JSON, Markdown, plot)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("report", help="merge CLEVR prediction files (shards) and write reports")
    p.add_argument("--predictions", nargs="+", required=True, help="predictions JSONL files of one run (shards)")
    p.add_argument("--compare", nargs="+", help="predictions of a second run to show side by side "
                                                "(e.g. predicted vs gold scenes)")
    p.add_argument("--out", required=True, help="report JSON (a .md and a .png are written beside it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    from ..eval.report import format_report, merge_predictions, score_records, write_reports

    records, settings = merge_predictions(args.predictions)
    report = {**(settings or {}), **score_records(records), "files": args.predictions}
    compare = None
    if args.compare:
        crec, csettings = merge_predictions(args.compare)
        compare = {**(csettings or {}), **score_records(crec)}
        report["compare"] = compare
    write_reports(report, args.out, compare)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
