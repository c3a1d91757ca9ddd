"""`vqa gqa ontology`: learn GQA's attribute -> type ontology from question programs."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("gqa", help="GQA helpers (attribute ontology)")
    gsub = p.add_subparsers(dest="gqa_command", metavar="ACTION")
    gsub.required = True
    o = gsub.add_parser("ontology", help="learn attribute -> type from question programs (streamed)")
    o.add_argument("--questions", required=True, help="GQA questions file or folder of parts")
    o.add_argument("--out", required=True, help="ontology JSON to write")
    o.add_argument("--scenes", help="scene-graph file: also learn hypernyms from annotated select/relate names")
    o.add_argument("--min-count", type=int, default=1, help="keep a (value, type) pair seen at least this often")
    o.add_argument("--with-default", action="store_true", help="merge the shipped default ontology into the output")
    o.add_argument("--no-progress", action="store_true")
    o.set_defaults(func=run_ontology, output_paths=("out",))  # output folders made by `vqa`


def run_ontology(args) -> int:
    from ..datasets.gqa import iter_question_records
    from ..datasets.gqa_ontology import GQAOntology, default_ontology, learn_hypernyms, learn_types
    from ._util import progress

    records = ((qid, rec) for _, qid, rec in iter_question_records(args.questions))
    onto, stats = learn_types(records, min_count=args.min_count,
                              progress=None if args.no_progress else progress)
    if args.scenes:
        from ..datasets.jsonstream import stream_dict

        names = {img: {oid: o.get("name") for oid, o in (sg.get("objects") or {}).items()}
                 for img, sg in stream_dict(args.scenes)}
        hyp = learn_hypernyms(((qid, rec) for _, qid, rec in iter_question_records(args.questions)), names)
        onto = onto.merge(GQAOntology(hypernyms=hyp, common_types=[]))
        stats["hypernyms"] = len(hyp)
    if args.with_default:
        onto = default_ontology().merge(onto)
    onto.save(args.out)
    print(f"{stats['questions']} questions: {stats['values']} values in {stats['types']} types"
          f" ({len(stats['ambiguous'])} values with several types)"
          + (f", {stats['hypernyms']} hypernyms" if "hypernyms" in stats else "") + f" -> {args.out}")
    return 0
