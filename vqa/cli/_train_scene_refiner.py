"""`vqa train scene-refiner`: add the second stage (attributes from object crops) to a scene
parser (registered by `train.py`)."""
from __future__ import annotations

import json

from ._train_scene_parser import _positive
from ._util import add_resume_flags, resume_mode


def register(tsub) -> None:
    p = tsub.add_parser("scene-refiner", help="train the scene parser's second stage (attributes from object crops)",
                        description="Train a small CNN that reads each detected object's attributes again from a "
                                    "crop of the image, on the gold objects of DIR/images/<split>/ and "
                                    "DIR/scenes/CLEVR_<split>_scenes.json, and choose on --val-split how much its "
                                    "logits weigh against the dense head's. The scene parser itself is not changed; "
                                    "OUT/scene_parser.pt is the parser with the second stage.")
    p.add_argument("--data", required=True, help="CLEVR-layout folder")
    p.add_argument("--checkpoint", default=None, help="scene parser to extend (default: the shipped one)")
    p.add_argument("--out", default="runs/scene_refiner", help="output folder: last.pt, scene_parser.pt, log.jsonl")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="split for the evaluation and the mixing weights (skipped if absent)")
    p.add_argument("--limit", type=_positive, default=None, help="use the first N training scenes")
    p.add_argument("--val-limit", type=_positive, default=None)
    p.add_argument("--epochs", type=_positive, default=4)
    p.add_argument("--batch-size", type=_positive, default=128, help="crops per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--crop-size", type=_positive, default=None,
                   help="crop side in pixels (default 24; with --keep, the checkpoint's, or continue at this side)")
    p.add_argument("--context", type=float, default=1.5, help="crop side / the box's longer side (default 1.5)")
    p.add_argument("--channels", default="24,48,96", help="the CNN's three widths (default 24,48,96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=_positive, default=200, metavar="STEPS")
    add_resume_flags(p, "OUT/last.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this many minutes")
    p.add_argument("--repeat", type=_positive, default=1, help="--data's scenes repeated N times per epoch (default 1)")
    p.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                   help="another CLEVR-layout folder mixed into training (its --split); may be repeated")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps of the learning rate (default 100)")
    p.add_argument("--val-data", default=None, metavar="DIR", help="folder of --val-split (default: --data)")
    p.add_argument("--extra-limit", type=_positive, default=None, help="first N scenes of each --extra-data folder")
    p.add_argument("--keep", action="store_true",
                   help="continue training --checkpoint's own second stage instead of a fresh one")
    p.add_argument("--source", choices=("input", "image"), default=None,
                   help="crops from the network input or from the image at its own resolution (default: the "
                        "checkpoint's with --keep, else input)")
    p.add_argument("--centre", action="store_true",
                   help="the second stage also regresses each object's centre (its weight against the dense "
                        "head's centre is chosen on --val-split), and its attribute head reads the crop's "
                        "geometry (size and place in the image: a crop alone does not show how big its object is)")
    p.add_argument("--detected-crops", type=float, default=0.0, metavar="SHARE",
                   help="share (0-1) of training crops placed on the dense head's own detection of the object "
                        "instead of its jittered gold box, so that the second stage learns the crops it gets "
                        "when parsing (off-centre where an object is partly hidden); default 0")
    p.add_argument("--hidden-weight", type=float, default=0.0, metavar="W",
                   help="an object's centre loss counts 1 + W x (h - 0.2) / 0.8 times where h > 0.2 is the share of "
                        "it hidden behind other objects (known for the project's Blender renders: their "
                        "visible_pixels; 0 elsewhere), so that training looks more at the hidden objects whose "
                        "centres the crops get wrong; default 0")
    p.add_argument("--centre-by-side", action="store_true",
                   help="with --centre: also fit the centre weight by object size (larger objects lean more on "
                        "the dense head) and keep it where it gives a lower mean centre error on --val-split "
                        "with as many centres within 5 px")
    p.add_argument("--cubes", choices=("synth", "clevr"), default=None,
                   help="cube half-extent the parser assumes for 3-D positions: synth (radius / sqrt(2), the "
                        "synthetic world's) or clevr (the radius, released CLEVR's); default: what the training "
                        "scenes' 3d_coords show, else the checkpoint's")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run, output_paths=("out",))  # output folders made by `vqa`


def run(args) -> int:
    import os
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see _train_scene_parser.run (shared CPUs)
    from ..errors import VQAError
    from ..vision.refine import RefineConfig, train_refiner
    from ._util import progress

    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        channels = ()
    if len(channels) != 3 or min(channels) < 1:
        raise VQAError(f"--channels: expected three positive integers, e.g. 24,48,96, got {args.channels!r}")
    if not args.context > 0:
        raise VQAError(f"--context: expected a positive number, got {args.context}")
    cfg = RefineConfig(data=args.data, checkpoint=args.checkpoint, out=args.out, split=args.split,
                       val_split=args.val_split, limit=args.limit, val_limit=args.val_limit, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, size=args.crop_size, channels=channels,
                       context=args.context, seed=args.seed, checkpoint_every=args.checkpoint_every,
                       resume=resume_mode(args), device=args.device, threads=args.threads, max_minutes=args.max_minutes,
                      repeat=args.repeat, extra_data=tuple(args.extra_data), extra_limit=args.extra_limit, val_data=args.val_data, warmup_steps=args.warmup_steps, keep=args.keep,
                       source=args.source, centre=True if args.centre else None, cubes=args.cubes,
                       detected=args.detected_crops, hidden_weight=args.hidden_weight,
                       centre_by_side=args.centre_by_side)
    summary = train_refiner(cfg, progress=progress)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"trained {summary['steps']} steps in {summary['seconds']} s ({summary['crops_per_s']} crops/s)")
        print(f"  mixing weights: {summary['refine_weight']}")
        if summary["refine_centre_by_side"]:
            print(f"  centre weight by size (side / width, weight): {summary['refine_centre_by_side']}")
        elif summary["refine_centre_weight"]:
            print(f"  centre weight: {summary['refine_centre_weight']}")
        if summary["refine_zoom_from"]:
            print(f"  a tighter second crop for boxes from {100 * summary['refine_zoom_from']:.2f}% of the input width")
        print(f"  checkpoint: {summary['checkpoint']}")
    return 0
