"""`vqa scene`: an image's predicted scene graph (and a drawing of it)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("scene", help="parse an image into a scene graph with the scene parser",
                       description="Parse one image (--image), or evaluate the parser on a CLEVR-layout split "
                                   "(--evaluate DIR): object precision/recall/F1, attribute, count and relation "
                                   "accuracy, and VQA accuracy with gold vs predicted scenes on the split's questions.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="image file (PNG, JPEG, ...; RGBA and grayscale are converted)")
    what.add_argument("--evaluate", metavar="DIR", help="CLEVR-layout folder to evaluate on (images/, scenes/, questions/)")
    what.add_argument("--tune", metavar="DIR", help="choose the objectness threshold, NMS IoU and hysteresis with the best object F1 "
                                                   "on DIR's --split (first --limit scenes, default 150); --save writes "
                                                   "the checkpoint with them")
    what.add_argument("--tune-centre", metavar="DIR", action="append",
                      help="choose how far each detected object's centre moves from the dense head's to the "
                           "second stage's, and from what box size the second stage also reads a tighter crop, "
                           "with the most centres within 5 px (then the lowest mean error) on the matched "
                           "objects of DIR's --split (repeat for more folders; first --limit scenes of each); "
                           "--save writes the checkpoint with them")
    what.add_argument("--fit-size", metavar="DIR", action="append",
                      help="fit the size each object's box should have from its shape, size and place in the "
                           "image on the amodal boxes of DIR's --split (the project's renders; repeat for more "
                           "folders): a box far from it (a partly hidden object found too small) gets its centre "
                           "read again by the second stage from a crop of that size; --save writes the "
                           "checkpoint with it")
    p.add_argument("--size-band", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="--fit-size: read again the boxes whose longer side is under LO or over HI x the "
                        "expected one (default: the checkpoint's, 0.9 1.1)")
    p.add_argument("--by-side", action="store_true",
                   help="--tune-centre: also fit the centre weight by object size, kept where it has as many "
                        "centres within 5 px and a lower mean error")
    p.add_argument("--split", default="val", help="split for --evaluate, --tune, --tune-centre, --fit-size (default: val)")
    p.add_argument("--limit", type=int, default=None, help="first N scenes for --evaluate")
    p.add_argument("--distance", type=float, default=0.05,
                   help="matching threshold: centre distance as a fraction of the image width (default 0.05)")
    p.add_argument("--out", default=None, help="--evaluate: write the report as JSON here")
    p.add_argument("--models", default="synth", choices=("synth", "clevr"),
                   help="shipped scene parser: synth (the project's own world; default) or clevr (fine-tuned on "
                        "Blender renders like CLEVR's); --checkpoint wins over it")
    p.add_argument("--checkpoint", default=None, help="scene-parser checkpoint (default: the shipped model)")
    p.add_argument("--threshold", type=float, default=None, help="objectness threshold (default: the checkpoint's)")
    p.add_argument("--nms-iou", type=float, default=None, help="box NMS IoU (default: the checkpoint's)")
    p.add_argument("--low-threshold", type=float, default=None,
                   help="hysteresis: also keep peaks down to this objectness where their box overlaps no kept box "
                        "by more than --low-iou (0: off; default: the checkpoint's)")
    p.add_argument("--low-iou", type=float, default=None, help="hysteresis IoU (default: the checkpoint's)")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None,
                     help="average with the mirror image (default: the checkpoint's setting)")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="no mirror-image averaging")
    p.add_argument("--save", default=None, metavar="CKPT",
                   help="--tune, --tune-centre: write the checkpoint with the chosen settings here")
    p.add_argument("--json", action="store_true", help="print the scene graph as JSON")
    p.add_argument("--draw", default=None, metavar="OUT.png", help="write the image with boxes and labels")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "torch"),
                   help="--image: numpy (the torch-free runtime, from the .npz export; what auto picks on the CPU) "
                        "or torch; --evaluate, --tune and --tune-centre always run the torch model")
    p.set_defaults(func=run, output_paths=("out", "save", "draw"))  # output folders made by `vqa`


def run(args) -> int:
    import os
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see _train_scene_parser.run (shared CPUs)
    from ..vision.core import load_image

    if args.checkpoint is None and args.models != "synth":
        from ..pipeline import CHECKPOINT_DIR, MODEL_SETS

        args.checkpoint = str(CHECKPOINT_DIR / MODEL_SETS[args.models]["scene_checkpoint"])
    if args.image:  # the backend `vqa answer` uses (numpy on the CPU: no torch import)
        from ..pipeline import Pipeline

        parser = Pipeline(scene_checkpoint=args.checkpoint, device=args.device, backend=args.backend).scene_parser
    else:
        from ..vision.scene_parser import load_scene_parser

        parser = load_scene_parser(args.checkpoint, device=args.device)
    if args.threshold is not None:
        parser.cfg.score_threshold = args.threshold
    if args.nms_iou is not None:
        parser.cfg.nms_iou = args.nms_iou
    if args.low_threshold is not None:
        parser.cfg.low_threshold = args.low_threshold
    if args.low_iou is not None:
        parser.cfg.low_iou = args.low_iou
    if args.tta is not None:
        parser.cfg.flip_tta = args.tta
    if args.evaluate:
        return _evaluate(parser, args)
    if args.tune:
        return _tune(parser, args)
    if args.tune_centre:
        return _tune_centre(parser, args)
    if args.fit_size:
        return _fit_size(parser, args)
    image = load_image(args.image)
    from pathlib import Path
    graph = parser.parse_image(image, image_id=Path(args.image).stem)
    if args.json:
        print(graph.to_json(indent=1))
    else:
        print(f"{graph.image_id}: {len(graph.objects)} objects ({graph.width}x{graph.height})")
        for o in graph.objects:
            desc = " ".join(f"{o.value(c)} ({o.probability(c, o.value(c)):.2f})"
                            for c in ("size", "color", "material", "shape"))
            x, y, w, h = o.bbox
            print(f"  {o.id}: {desc}  score {o.score:.2f}  box [{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}]")
        print(f"  {len(graph.relations)} relations (left/right/front/behind)")
    if args.draw:
        from ..vision.draw import draw_scene
        draw_scene(image, graph).save(args.draw)
        if not args.json:
            print(f"  drawing: {args.draw}")
    return 0


def _evaluate(parser, args) -> int:
    import json
    from pathlib import Path

    from ..vision.evaluate import evaluate_split, format_split_report
    from ._util import progress

    report = evaluate_split(parser, args.evaluate, args.split, distance=args.distance, limit=args.limit,
                            progress=progress)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1) if args.json else format_split_report(report))
    return 0


def _save_tuned(parser, args, tuned: dict) -> None:
    """Write the checkpoint `args.checkpoint` (default: the shipped one) with `parser`'s config and
    its record of what was tuned ("tuned": earlier entries of other kinds kept) to `args.save`."""
    import torch

    from ..vision.scene_parser import DEFAULT_CHECKPOINT, checkpoint_dict

    src = torch.load(args.checkpoint or DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    extra = {k: v for k, v in src.items() if k not in ("format", "config", "vocab", "state_dict", "optimizer")}
    extra.update(tuned)
    torch.save(checkpoint_dict(parser.cpu(), **extra), args.save)
    print(f"  saved: {args.save}")


def _tune_centre(parser, args) -> int:
    from ..vision.refine import tune_centre
    from ._util import progress

    table = tune_centre(parser, args.tune_centre, args.split, limit=args.limit, by_side=args.by_side,
                        progress=progress)

    def zoom(z):
        return f"tighter crop from {100 * z:.2f}% of the width" if z else "no tighter crop"
    for r in table["grid"]:
        print(f"  weight {r['weight']}, {zoom(r['zoom_from'])}: {100 * r['within_5px']:.2f}% within 5 px, "
              f"mean {r['mean_error']:.3f} px")
    if "by_side" in table:
        r = table["by_side"]
        sides = ", ".join(f"{w:.2f} at {100 * a:g}% of the width" for a, w in r["weight"])
        print(f"  by size ({sides}): {100 * r['within_5px']:.2f}% within 5 px, mean {r['mean_error']:.3f} px")
    cfg = parser.cfg
    chosen = cfg.refine_centre_by_side or cfg.refine_centre_weight
    print(f"{', '.join(args.tune_centre)} split {args.split} ({table['objects']} matched objects): centre weight "
          f"{'by size ' if cfg.refine_centre_by_side else ''}{chosen}, {zoom(cfg.refine_zoom_from)}")
    if args.save:
        _save_tuned(parser, args, {"tuned_centre": {
            "data": list(args.tune_centre), "split": args.split, "objects": table["objects"],
            "chosen": table["chosen"], "zoom_from": cfg.refine_zoom_from}})
    return 0


def _fit_size(parser, args) -> int:
    from ..errors import VQAError
    from ..vision.refine import fit_size_prior

    if not (parser.cfg.refine_size and parser.cfg.refine_centre):
        raise VQAError("--fit-size: this scene parser has no second stage regressing centres to read the boxes "
                       "again (train one: vqa train scene-refiner --centre)")
    if args.size_band is not None:
        lo, hi = args.size_band
        if not 0 < lo <= 1 <= hi:
            raise VQAError(f"--size-band: expected 0 < LO <= 1 <= HI, got {lo} {hi}")
        parser.cfg.refine_size_band = (float(lo), float(hi))
    split = args.split
    out = fit_size_prior(args.fit_size, split, attributes=parser.cfg.attributes)
    parser.cfg.refine_size_prior = out["prior"]
    for key, c in out["classes"].items():
        print(f"  {key}: {c['objects']} objects, longer side within {100 * c['spread']:.1f}% (std)")
    lo, hi = parser.cfg.refine_size_band
    print(f"{', '.join(args.fit_size)} split {split}: size prior for {len(out['prior'])} shapes and sizes; "
          f"boxes under {lo:g} or over {hi:g} x the expected side get their centre read again")
    if args.save:
        _save_tuned(parser, args, {"fitted_size": {"data": list(args.fit_size), "split": split,
                                                   "band": [lo, hi], "classes": out["classes"]}})
    return 0


def _tune(parser, args) -> int:
    from ..vision.evaluate import tune_decoding

    out = tune_decoding(parser, args.tune, args.split, limit=args.limit or 150, distance=args.distance)
    low = (f"weaker peaks down to {out['low_threshold']} where IoU <= {out['low_iou']}" if out["low_threshold"]
           else "no hysteresis")
    print(f"{args.tune} split {args.split}: score threshold {out['score_threshold']}, NMS IoU {out['nms_iou']}, {low}, "
          f"mirror averaging {'on' if parser.cfg.flip_tta else 'off'} (object F1 {100 * (out['f1'] or 0):.2f}%)")
    if args.save:
        _save_tuned(parser, args, {"tuned": {
            "data": str(args.tune), "split": args.split, "flip_tta": parser.cfg.flip_tta, "f1": out["f1"],
            **{k: out[k] for k in ("score_threshold", "nms_iou", "low_threshold", "low_iou")}}})
    return 0
