"""`vqa parse "question"`: a question -> a CLEVR program, one step per line, with a confidence.

With `--questions FILE` it parses a whole CLEVR questions file instead and reports exact
program match (and, with `--scenes`, answer accuracy by the reference executor).
"""
from __future__ import annotations

import json
import os


def register(sub) -> None:
    p = sub.add_parser("parse", help="parse a question into a CLEVR program")
    p.add_argument("question", nargs="?", help="the question, e.g. \"How many red balls are there?\"")
    p.add_argument("--parser", choices=("seq2seq", "llm"), default="seq2seq",
                   help="seq2seq: the trained model (default); llm: an OpenAI-compatible endpoint")
    p.add_argument("--checkpoint", help="seq2seq checkpoint (default: data/checkpoints/question_parser.pt)")
    p.add_argument("--beam", type=int, default=1, help="beam width of the seq2seq decoder (default: 1, greedy)")
    p.add_argument("--base-url", help="llm: OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="llm: model name (default: $OPENAI_MODEL or gpt-4o-mini)")
    p.add_argument("--api-key", help="llm: API key (default: $OPENAI_API_KEY; local servers need none)")
    p.add_argument("--timeout", type=float, default=60.0, help="llm: seconds per request")
    p.add_argument("--samples", type=int, default=1, help="llm: completions to vote over (self-consistency)")
    p.add_argument("--questions", metavar="FILE",
                   help="seq2seq: parse every question of a CLEVR questions file and report accuracy")
    p.add_argument("--scenes", metavar="FILE", help="with --questions: scenes file for answer accuracy")
    p.add_argument("--limit", type=int, help="with --questions: only the first N questions")
    p.add_argument("--unsure-below", type=float, metavar="P",
                   help="with --questions: count the parses the LLM fallback would be offered (confidence below P, "
                        "or a program the gold scene refuses)")
    p.add_argument("--fallback", choices=("llm",),
                   help="with --questions and --unsure-below: parse the unsure questions again with the LLM parser "
                        "(the --base-url/--model/--api-key settings) and score its programs instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VQAError

    if args.questions:
        return _run_file(args)
    if not args.question:
        raise VQAError("give a question (or --questions FILE)")
    if args.parser == "llm":
        from ..language.llm_parser import LLMQuestionParser
        from ..llm import LLMClient, LLMConfig

        client = LLMClient(LLMConfig.resolve(base_url=args.base_url, model=args.model, api_key=args.api_key,
                                             env=os.environ, timeout=args.timeout))
        r = LLMQuestionParser(client, samples=args.samples).parse(args.question)
        extra = {"replies": r.replies}
    else:
        from ..language.parser import QuestionParser

        r = QuestionParser.from_checkpoint(args.checkpoint, beam=args.beam).parse(args.question)
        extra = {"prefix": r.tokens, "token_probs": [round(p, 4) for p in r.token_probs], "words": r.words}
    if args.json:
        print(json.dumps({"question": args.question, "parser": args.parser, "program": r.program.to_clevr("function"),
                          "expr": r.program.to_expr(), "confidence": r.confidence, **extra}, indent=1))
    else:
        print(str(r.program))
        print(f"confidence: {r.confidence:.4f}")
    return 0


def _run_file(args) -> int:
    from ..datasets.clevr import iter_questions, load_scenes
    from ..errors import VQAError
    from ..language.parser import QuestionParser, evaluate_parser
    from ._util import progress

    if args.parser != "seq2seq":
        raise VQAError("--questions works with --parser seq2seq only")
    if args.fallback and args.unsure_below is None:
        raise VQAError("--fallback needs --unsure-below")
    fallback = None
    if args.fallback == "llm":
        from ..language.llm_parser import LLMQuestionParser
        from ..llm import LLMClient, LLMConfig

        fallback = LLMQuestionParser(LLMClient(LLMConfig.resolve(base_url=args.base_url, model=args.model,
                                                                 api_key=args.api_key, env=os.environ,
                                                                 timeout=args.timeout)), samples=args.samples)
    questions = list(iter_questions(args.questions))
    if args.limit:
        questions = questions[:args.limit]
    scenes = load_scenes(args.scenes) if args.scenes else None
    parser = QuestionParser.from_checkpoint(args.checkpoint, beam=args.beam)
    res = evaluate_parser(parser, questions, scenes, progress=progress, unsure_below=args.unsure_below,
                          fallback=fallback)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{res['questions']:,} questions: exact program match {res['exact_match']:.4f} "
          f"({res['exact']:,}/{res['questions']:,}); up to the order of and/or branches "
          f"{res['exact_up_to_branch_order']:.4f}")
    if res["answer_accuracy"] is not None:
        print(f"answer accuracy (reference executor): {res['answer_accuracy']:.4f} "
              f"({res['answer_correct']:,}/{res['answered']:,})")
    print(f"mean confidence: {res['mean_confidence']:.4f}")
    if "unsure" in res:
        print(f"unsure (confidence < {res['unsure_below']} or refused by the scene): {res['unsure']:,} questions "
              f"({res['unsure'] / max(res['questions'], 1):.2%}; {res['unsure_exact']:,} of them parsed exactly)"
              + (f"; LLM fallback used {res['fallback_used']:,}, failed {res['fallback_failed']:,}"
                 if "fallback_used" in res else "; the LLM fallback (--fallback llm) would be offered for them"))
    if len(res["by_template"]) > 1:
        for name, c in res["by_template"].items():
            ans = f", answers {c['answer_accuracy']:.4f}" if c["answer_accuracy"] is not None else ""
            print(f"  {name:<16} exact {c['exact_match']:.4f} ({c['exact']:,}/{c['questions']:,}){ans}")
    for m in res["mistakes"][:10]:
        print(f"  x {m['question']}\n      gold   {m['gold']}\n      parsed {m['parsed']} "
              f"(confidence {m['confidence']}, answer {'ok' if m['answer_ok'] else 'wrong'})")
    return 0
