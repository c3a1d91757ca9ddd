"""`vqa bench render`: seconds per image of `vqa generate --renderer blender`, variants side by side."""
from __future__ import annotations

import json


def register(sub) -> None:
    from .generate import _image_size

    p = sub.add_parser("render", help="Blender renderer: seconds per image (own scene model / CLEVR assets, samples, CPU/GPU)")
    p.add_argument("--images", type=int, default=3, help="images per variant after one warm-up image (default 3)")
    p.add_argument("--image-size", type=_image_size, default=(480, 320), metavar="WxH", help="default 480x320")
    p.add_argument("--samples", default="64", help="comma-separated Cycles samples to compare (default 64)")
    p.add_argument("--blender-assets", metavar="DIR", default=None,
                   help="CLEVR's asset files: adds the official scene model beside the own one")
    p.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda, optix, ... (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    p.add_argument("--blender", metavar="PROGRAM", default=None, help="Blender binary or 'bpy'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..datasets.blender.bench import bench_render
    from ..errors import VQAError
    from ._util import Stages

    try:
        samples = [int(s) for s in args.samples.split(",")]
    except ValueError:
        raise VQAError(f"--samples: expected comma-separated integers, got {args.samples!r}") from None
    if args.images < 1:
        raise VQAError(f"--images: at least 1 (got {args.images})")
    models = ("own", "official") if args.blender_assets else ("own",)
    print(f"Blender renderer, {args.image_size[0]}x{args.image_size[1]}, median of {args.images} images per variant "
          f"(times on a shared machine vary: compare rows of one run)")
    devices = args.devices.split(",")
    stage = Stages("vqa bench render", len(devices) * len(models) * len(samples) * (args.images + 1))
    rows = bench_render(images=args.images, image_size=args.image_size, samples=samples, models=models,
                        assets=args.blender_assets, devices=devices, threads=args.threads,
                        blender=args.blender, stage=stage)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0
