"""`vqa generate`: write a synthetic CLEVR-like dataset (images, scenes, questions)."""
from __future__ import annotations

import argparse
import json
import re
import sys


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
    p.add_argument("--no-images", action="store_true", help="write scenes and questions only (fast; the same scenes and questions as with images)")
    p.add_argument("--format", choices=["clevr", "gqa"], default="clevr",
                   help="clevr (CLEVR's layout) or gqa (GQA's: images/, sceneGraphs/<split>_sceneGraphs.json, "
                        "questions1.2/<split>_balanced_questions.json; names with categories, GQA relations)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip re-deriving every answer with the reference executor")
    p.add_argument("--templates", metavar="DIR", default=None,
                   help="question templates in the official CLEVR format (template *.json files, metadata.json, "
                        "synonyms.json) instead of the project's own 59 families")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    b = p.add_argument_group("Blender renderer (--renderer blender)")
    b.add_argument("--renderer", choices=("numpy", "blender"), default="numpy",
                   help="numpy: the project's own renderer (default); blender: Cycles renders like CLEVR's")
    b.add_argument("--blender", metavar="PROGRAM", default=None,
                   help="Blender binary, or 'bpy' for the PyPI module (default: $VQA_BLENDER, blender on PATH, bpy)")
    b.add_argument("--blender-assets", metavar="DIR", default=None,
                   help="CLEVR's asset files (base_scene.blend, shapes/, materials/); default: the project's own scene model")
    b.add_argument("--samples", type=_positive, default=64, metavar="N", help="Cycles samples per pixel (default 64)")
    b.add_argument("--workers", type=_positive, default=1, metavar="N", help="Blender processes (default 1)")
    b.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="render threads per Blender process (default: CPU cores / workers)")
    b.add_argument("--device", choices=("cpu", "cuda", "optix", "hip", "oneapi", "metal"), default="cpu",
                   help="Cycles device (default cpu)")
    b.add_argument("--blender-cubes", choices=("clevr", "synth"), default="clevr",
                   help="cube size: clevr (default): half-extent 0.7 / 0.35 like released CLEVR's cubes; synth: "
                        "sqrt(2) smaller, as the project's synthetic world (and Blender renders before this option)")
    b.add_argument("--min-hidden", type=float, default=0.0, metavar="SHARE",
                   help="keep only scenes in which some object is at least this share (0-1) hidden behind others "
                        "or cut off by the frame (measured on the pre-render), for training sets rich in the objects "
                        "whose centres parsers get wrong; not CLEVR's distribution; default 0 (off)")
    b.add_argument("--blender-timeout", type=_positive, default=600, metavar="S",
                   help="seconds Blender may take for one request before it is restarted (default 600)")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    from ._util import progress

    if getattr(args, "format", "clevr") == "gqa":
        return run_gqa(args)
    if args.renderer == "blender":
        return _run_blender(args)
    from ..datasets.synth.generate import generate_dataset

    summary = generate_dataset(args.out, num_scenes=args.num_scenes, questions_per_scene=args.questions_per_scene,
                               seed=args.seed, split=args.split, image_size=args.image_size,
                               images=not args.no_images, verify=not args.no_verify, progress=progress,
                               templates=args.templates)
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


def _run_blender(args) -> int:
    from ..datasets.blender import render_dataset
    from ._util import progress

    if args.no_images:
        raise SystemExit("vqa generate: --renderer blender renders images; leave out --no-images")
    s = render_dataset(args.out, num_scenes=args.num_scenes, questions_per_scene=args.questions_per_scene,
                       seed=args.seed, split=args.split, image_size=args.image_size, samples=args.samples,
                       workers=args.workers, threads=args.threads, blender=args.blender, assets=args.blender_assets,
                       device=args.device, timeout=args.blender_timeout, verify=not args.no_verify, progress=progress,
                       cubes=args.blender_cubes, min_hidden=args.min_hidden)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"rendered {s['rendered_now']:,} images ({s['already_there']:,} were there already); "
              f"{s['num_scenes']:,} scenes and {s['num_questions']:,} questions in {s['out']}")
        print(f"  scenes:    {s['scenes_file']}")
        print(f"  questions: {s['questions_file']}")
        print(f"  images:    {s['images_dir']}")
        if s["rendered_now"]:
            print(f"  time: {s['seconds_wall']} s, {s['seconds_per_image']} s per image "
                  f"(Cycles {s['render_seconds_per_image']} s; Blender {s['blender']}, {s['model']} scene model, {s['device']})")
    for i, err in sorted(s["failed"].items()):
        print(f"vqa generate: image {i} failed: {err}", file=sys.stderr)
    return 1 if s["failed"] else 0


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
