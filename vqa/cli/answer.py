"""`vqa answer`: answer questions about images (or scene files) with the shipped models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_BUDGET = 2.0  # vqa.reason.asp.DEFAULT_BUDGET (not imported here: it loads clingo)
DEFAULT_MIN_READING = 0.05  # vqa.reason.asp.DEFAULT_MIN_READING (checked equal by a test)
DEFAULT_MAX_UNKNOWN = 0.3  # vqa.pipeline.DEFAULT_MAX_UNKNOWN (checked equal by a test)


def register(sub) -> None:
    p = sub.add_parser(
        "answer", help="answer a question about an image or a scene",
        description="Answer a question about an image with the shipped scene parser, question parser and "
                    "reasoner (ASP by default), printing the answer, its confidence, the program and the step "
                    "trace. --scene answers from a scene file instead of an image (no scene parser); --program "
                    "gives the program instead of parsing the question. --questions FILE answers many questions "
                    "about many images in one run.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image file (PNG, JPEG, ...)")
    src.add_argument("--scene", help="a SceneGraph JSON file, or a CLEVR scenes file (first scene, or --image-id)")
    src.add_argument("--questions", metavar="FILE",
                     help="many questions: a JSON list or JSONL of {\"image\": path, \"question\": text}, or a CLEVR "
                          "questions file (images from --images DIR by image_filename)")
    p.add_argument("--question", help="the question")
    p.add_argument("--program", help='the question as a CLEVR program, e.g. "count(filter_color[red](scene))" '
                                     "(skips the question parser)")
    p.add_argument("--image-id", help="which scene of a CLEVR scenes file (--scene)")
    p.add_argument("--images", metavar="DIR", help="--questions with a CLEVR questions file: the images folder")
    p.add_argument("--reasoner", default="asp", choices=("asp", "nsm"), help="asp (default) or nsm")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, metavar="SECONDS",
                   help=f"ASP: seconds of search per question on an uncertain scene (default {DEFAULT_BUDGET}; 0: no "
                        "limit). An answer whose reading is not proven the best within it is marked not proven.")
    p.add_argument("--min-reading", type=float, default=DEFAULT_MIN_READING, metavar="P",
                   help="ASP: a question that can be carried out only on a reading of the scene less probable than P "
                        f"times its most probable reading gets no answer (default {DEFAULT_MIN_READING}; 0: no limit): "
                        "the question presupposes what the most probable reading does not hold")
    p.add_argument("--max-unknown", type=float, default=DEFAULT_MAX_UNKNOWN, metavar="SHARE",
                   help="a question with more than this share of its words outside the question parser's vocabulary "
                        f"is reported as not understood, with its parse (default {DEFAULT_MAX_UNKNOWN}; 1: never)")
    p.add_argument("--min-parse", type=float, metavar="P",
                   help="also report as not understood a question whose parse probability is below P (default: off)")
    p.add_argument("--fallback", choices=("llm",),
                   help="parse a question the question parser does not understand (see --max-unknown, --min-parse) "
                        "again with the LLM parser (an OpenAI-compatible endpoint: --base-url, --model, --api-key) "
                        "and answer its program; the model may decline (not understood). ASP only")
    p.add_argument("--base-url", help="--fallback llm: endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="--fallback llm: model name (default: $OPENAI_MODEL or gpt-4o-mini)")
    p.add_argument("--api-key", help="--fallback llm: API key (default: $OPENAI_API_KEY; local servers need none)")
    p.add_argument("--timeout", type=float, default=60.0, help="--fallback llm: seconds per request (default 60)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (JSONL with --questions)")
    p.add_argument("--explain", metavar="OUT.png", help="draw the objects selected at each step")
    p.add_argument("--models", default="synth", choices=("synth", "clevr"),
                   help="shipped model set: synth (the project's own world; default) or clevr (CLEVR's distribution: "
                        "a scene parser fine-tuned on Blender renders, parsers trained on the official templates)")
    p.add_argument("--checkpoints", metavar="DIR", help="folder with scene_parser.pt, question_parser.pt, nsm_clevr.pt "
                                                        "(default: the shipped ones)")
    p.add_argument("--dataset", default="clevr", choices=("clevr", "gqa"),
                   help="clevr (default) or gqa: the GQA models (GQA scene parser, GQA question parser, GQA NSM) "
                        "and the ASP theory of rules/gqa; --checkpoints then holds gqa_scene_parser.pt, "
                        "gqa_question_parser.pt, nsm_gqa.pt")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "torch"),
                   help="how the scene and question parsers run: numpy (the torch-free runtime, from the .npz "
                        "exports; what auto picks on the CPU) or torch (.pt checkpoints; auto picks it for CUDA)")
    p.set_defaults(func=run, output_paths=("explain",))  # output folders made by `vqa`


def run(args) -> int:
    from ..errors import VQAError
    from ..pipeline import Pipeline, load_scene

    if args.budget < 0:
        raise VQAError(f"--budget must be >= 0 seconds (0: no limit), got {args.budget}")
    if args.dataset == "gqa":
        return _run_gqa(args)
    for flag, v in (("--min-reading", args.min_reading), ("--max-unknown", args.max_unknown),
                    ("--min-parse", args.min_parse)):
        if v is not None and not 0 <= v <= 1:
            raise VQAError(f"{flag} must be in [0, 1], got {v}")
    fallback = None
    if args.fallback == "llm":
        if args.reasoner != "asp":
            raise VQAError("--fallback llm gives a program: it applies to --reasoner asp (the NSM reads the question)")
        import os

        from ..language.llm_parser import LLMQuestionParser
        from ..llm import LLMClient, LLMConfig

        fallback = LLMQuestionParser(LLMClient(LLMConfig.resolve(base_url=args.base_url, model=args.model,
                                                                 api_key=args.api_key, env=os.environ,
                                                                 timeout=args.timeout)))
    elif args.base_url or args.model or args.api_key:
        raise VQAError("--base-url, --model and --api-key are for --fallback llm")
    pipe = Pipeline.from_pretrained(args.checkpoints, models=args.models, reasoner=args.reasoner, device=args.device,
                                    backend=args.backend, budget=args.budget or None,
                                    min_reading=args.min_reading or None, max_unknown=args.max_unknown,
                                    min_parse=args.min_parse, fallback=fallback)
    if args.questions:
        if args.question or args.program or args.explain:
            raise VQAError("--questions answers a file of questions; --question, --program and --explain "
                           "are for one question")
        return _many(pipe, args)
    if not args.question and not args.program:
        raise VQAError("give --question (or --program)")
    if args.reasoner == "nsm" and not args.question:
        raise VQAError("--reasoner nsm reads the question text: give --question")
    target = load_scene(args.scene, args.image_id) if args.scene else args.image
    result = pipe.answer(target, args.question or "", program=args.program)
    return _report(args, result)


def _run_gqa(args) -> int:
    """`--dataset gqa`: one question about one image with the GQA models."""
    from ..errors import VQAError
    from ..pipeline import Pipeline

    for flag, given in (("--scene", args.scene), ("--questions", args.questions), ("--program", args.program),
                        ("--models", args.models != "synth"), ("--min-parse", args.min_parse)):
        if given:
            raise VQAError(f"{flag} is not available with --dataset gqa (give --image and --question)")
    if not args.question:
        raise VQAError("give --question")
    pipe = Pipeline.from_pretrained(args.checkpoints, dataset="gqa", reasoner=args.reasoner, device=args.device,
                                    backend=args.backend, budget=args.budget or None)
    result = pipe.answer(args.image, args.question)
    return _report(args, result)


def _print(r) -> None:
    if r.question:
        print(f"question: {r.question}")
    if r.program is not None:
        by = " by the LLM parser (the fallback)" if r.parser == "llm" else ""
        print(f"program{by} (parse confidence {r.parse_confidence:.3f}):")
        for line in str(r.program).splitlines():
            print(f"  {line}")
    print(f"trace ({r.reasoner}):")
    from ..explain import machine_note

    for t, chosen in zip(r.trace, r.selected()):
        att = t.value if isinstance(t.value, dict) else getattr(t, "attention", None)
        if t.error:
            val = t.error
        elif att is not None and (isinstance(t.value, dict) or t.value is None):
            top = sorted(att.items(), key=lambda kv: -kv[1])[:3]
            val = "attention " + ", ".join(f"{k}: {p:.2f}" for k, p in top)
        else:
            val = list(t.value) if isinstance(t.value, tuple) else t.value
        print(f"  {t.index}  {t.token:<24} -> {val}{machine_note(t)}")
    if not r.proven:
        print("  (search stopped at its budget: the best reading found so far, not proven the best; "
              "confidence halved)")
    if r.ok:
        alts = ", ".join(f"{a} {p:.3f}" for a, p in r.top[1:])
        reading = ("" if r.reading_probability is None or r.reading_probability >= 1.0 else
                   f"; on a reading {r.reading_probability:.3g} as probable as the scene's most probable")
        print(f"answer: {r.answer}  (confidence {r.confidence:.3f}{reading}"
              f"{'; alternatives: ' + alts if alts else ''})")
    elif r.presupposition:
        print(f"no answer: {r.error}")
    elif not r.understood:
        print(r.error)
        if r.fallback is None:
            print("  (the LLM parser can be tried on it: --fallback llm)")
    else:
        print(f"answer: none ({r.error})")


def _many(pipe, args) -> int:
    from ..errors import DataError
    from ._util import progress

    items = read_question_file(Path(args.questions), Path(args.images) if args.images else None)
    by_image: dict[str, list[tuple[int, str]]] = {}
    for i, (image, question) in enumerate(items):
        by_image.setdefault(image, []).append((i, question))
    results: list = [None] * len(items)
    bar = progress(total=len(items), desc="answering")
    for image, qs in by_image.items():
        if not Path(image).exists():
            raise DataError(f"image {image} does not exist", file=args.questions)
        for (i, _), r in zip(qs, pipe.answer_many(image, [q for _, q in qs])):
            results[i] = r
        bar.update(len(qs))
    bar.close()
    failed = 0
    for (image, _), r in zip(items, results):
        failed += not r.ok
        if args.json:
            d = r.to_dict()
            d["image"] = image
            print(json.dumps(d))
        else:
            print(f"{Path(image).name}\t{r.question}\t{r.answer if r.ok else 'none (' + str(r.error) + ')'}"
                  f"\t{r.confidence:.3f}" + ("" if r.proven else "\tnot proven"))
    unproven = sum(not r.proven for r in results)
    print(f"{len(items)} questions about {len(by_image)} images; {failed} without an answer; "
          f"{unproven} not proven within the budget; {fallback_counts(results)}", file=sys.stderr)
    return 0


def fallback_counts(results) -> str:
    """The not-understood questions and what the LLM fallback did with them, for a summary."""
    not_understood = sum(not r.understood for r in results)
    used = sum(r.parser == "llm" for r in results)
    asked = sum(r.fallback is not None for r in results)
    if not asked:
        return f"{not_understood} not understood" + (" (the LLM parser fallback: --fallback llm)"
                                                     if not_understood else "")
    return (f"{not_understood + used} not understood by the question parser: the LLM fallback parsed {used}, "
            f"gave no program for {asked - used}")


def read_question_file(path: Path, images: Path | None) -> list[tuple[str, str]]:
    """[(image path, question)] from a JSON list / JSONL of {"image", "question"} records
    (image paths relative to the file) or a CLEVR questions file (with `images`)."""
    from ..errors import DataError

    if not path.is_file():
        raise DataError("no such file", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"line {n} is not JSON ({e.msg})", file=path) from None
    if isinstance(data, dict) and "questions" in data:  # CLEVR questions file
        if images is None:
            raise DataError("a CLEVR questions file needs --images DIR (the folder of its images)", file=path)
        out = []
        for i, q in enumerate(data["questions"]):
            if not isinstance(q, dict) or "question" not in q or "image_filename" not in q:
                raise DataError("needs 'question' and 'image_filename'", file=path, record=i)
            out.append((str(images / q["image_filename"]), q["question"]))
        return out
    if not isinstance(data, list):
        raise DataError("expected a JSON list of {\"image\", \"question\"} records, JSONL, or a CLEVR "
                        "questions file", file=path)
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) or not isinstance(rec.get("question"), str):
            raise DataError("needs string fields 'image' and 'question'", file=path, record=i)
        image = Path(rec["image"])
        out.append((str(image if image.is_absolute() else path.parent / image), rec["question"]))
    return out


def _report(args, result) -> int:
    """Print one answer (JSON or text), write its explanation image if asked; the exit code."""
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        _print(result)
    if args.explain:
        from ..explain import explain_image

        explain_image(args.image, result).save(args.explain)
        if not args.json:
            print(f"explanation: {args.explain}")
    return 0 if result.ok else 1
