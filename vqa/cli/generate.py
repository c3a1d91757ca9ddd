"""`vqa generate`: write a synthetic CLEVR-like dataset (images, scenes, questions)."""
from __future__ import annotations

import argparse
import json
import re


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a synthetic CLEVR-like dataset in CLEVR's layout and format")
    p.add_argument("--out", required=True, help="output folder (gets images/, scenes/, questions/)")
    p.add_argument("--num-scenes", type=_positive, required=True, metavar="N", help="number of scenes (images)")
    p.add_argument("--questions-per-scene", type=_non_negative, required=True, metavar="K",
                   help="questions per scene (fewer when a scene admits fewer well-posed ones)")
    p.add_argument("--seed", type=_non_negative, required=True, metavar="S", help="random seed (same seed, same output)")
    p.add_argument("--split", default="train", type=_split, help="split name (default: train)")
    p.add_argument("--image-size", default=(320, 240), type=_image_size, metavar="WxH",
                   help="image width x height in pixels (default: 320x240; CLEVR's own: 480x320)")
    p.add_argument("--no-images", action="store_true", help="write scenes and questions only (fast)")
    p.add_argument("--format", choices=["clevr", "gqa"], default="clevr",
                   help="clevr (CLEVR's layout) or gqa (GQA's: images/, sceneGraphs/<split>_sceneGraphs.json, "
                        "questions1.2/<split>_balanced_questions.json; names with categories, GQA relations)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip re-deriving every answer with the reference executor")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ._util import progress

    if getattr(args, "format", "clevr") == "gqa":
        return run_gqa(args)
    from ..datasets.synth.generate import generate_dataset

    summary = generate_dataset(args.out, num_scenes=args.num_scenes, questions_per_scene=args.questions_per_scene,
                               seed=args.seed, split=args.split, image_size=args.image_size,
                               images=not args.no_images, verify=not args.no_verify, progress=progress)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"wrote {summary['num_scenes']:,} scenes and {summary['num_questions']:,} questions to {summary['out']}")
        print(f"  scenes:    {summary['scenes_file']}")
        print(f"  questions: {summary['questions_file']}")
        if summary["images_dir"]:
            print(f"  images:    {summary['images_dir']}")
        print(f"  time: scenes {summary['seconds_scenes']} s, questions {summary['seconds_questions']} s "
              f"({summary['questions_per_second']} questions/s)")
    return 0


def run_gqa(args) -> int:
    from ..datasets.gqa_synth.generate import generate_gqa_dataset
    from ._util import progress

    summary = generate_gqa_dataset(args.out, num_scenes=args.num_scenes, questions_per_scene=args.questions_per_scene,
                                   seed=args.seed, split=args.split, image_size=args.image_size,
                                   images=not args.no_images, verify=not args.no_verify, progress=progress)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"wrote {summary['num_scenes']:,} scene graphs and {summary['num_questions']:,} questions "
              f"(GQA format) to {summary['out']}")
        for k in ("scenes_file", "questions_file", "choices_file", "images_dir"):
            if summary[k]:
                print(f"  {k.replace('_', ' '):<15}{summary[k]}")
        print(f"  time: scenes {summary['seconds_scenes']} s, questions {summary['seconds_questions']} s "
              f"({summary['questions_per_second']} questions/s)")
    return 0


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _split(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(f"expected a name of letters, digits, '_' or '-' (e.g. train), got {text!r}")
    return text


def _image_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 320x240, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"image size must be at least 32x32, got {w}x{h}")
    return w, h
