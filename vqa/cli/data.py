"""`vqa data check`."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("data", help="inspect and validate dataset files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    c = dsub.add_parser("check", help="validate questions, scenes and images of a CLEVR or GQA split")
    c.add_argument("--dataset", choices=["clevr", "gqa"], required=True)
    c.add_argument("--questions", required=True, help="questions file (GQA: a file or a folder of parts)")
    c.add_argument("--scenes", required=True, help="CLEVR scenes file or GQA scene-graph file")
    c.add_argument("--images", help="image folder; when given, every question's image must exist")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_check)


def run_check(args) -> int:
    from ..datasets.check import check_clevr, check_gqa
    from ._util import progress

    check = check_clevr if args.dataset == "clevr" else check_gqa
    report = check(args.questions, args.scenes, args.images,
                   progress=None if args.no_progress or args.json else progress)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0 if report.ok else 1
