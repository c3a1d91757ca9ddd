"""`vqa bench scene-parser`: images/s of the numpy scene parser (image loading and decoding
included), one image at a time and all in one call, checkpoints side by side."""
from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("scene-parser", help="scene parsing images/s on the CPU numpy runtime (e.g. 480x320 CLEVR renders)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder of images (PNG) to parse; default: 32 generated 480x320 images")
    p.add_argument("--limit", type=int, default=32, help="first N images of --images (default 32)")
    p.add_argument("--npz", action="append", default=None, metavar="FILE",
                   help="numpy scene-parser export (repeatable; default: data/checkpoints/scene_parser.npz)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per checkpoint and mode, alternating (medians)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: the library's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile

    from ..errors import VQAError
    from ..runtime.scene_parser import bench_parsing

    from ._util import Stages

    stage = Stages("vqa bench scene-parser", 1 if args.images else 2)
    npz = args.npz or [str(Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "scene_parser.npz")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            images = images[:args.limit]
            if not images:
                raise VQAError(f"{args.images}: no PNG or JPEG images")
        else:
            from ..datasets.synth.generate import generate_dataset

            stage(f"generating {args.limit} 480x320 images")
            generate_dataset(tmp, num_scenes=args.limit, questions_per_scene=0, seed=0, image_size=(480, 320), verify=False)
            images = sorted((Path(tmp) / "images" / "train").iterdir())
        from PIL import Image
        with Image.open(images[0]) as im:
            size = f"{im.size[0]}x{im.size[1]}"
        stage(f"timing {len(npz)} checkpoint(s) x {args.repeats} runs, one at a time and in one call")
        if args.threads:
            from threadpoolctl import threadpool_limits
            with threadpool_limits(args.threads):
                rows = bench_parsing(npz, images, repeats=args.repeats)
        else:
            rows = bench_parsing(npz, images, repeats=args.repeats)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"numpy scene parser, {len(images)} images of {size} (first: {images[0].name}), medians of {args.repeats} "
          f"alternating runs (a shared machine varies: compare rows of one run)")
    for r in rows:
        print(f"  {r['checkpoint']}: {r['single_images_per_s']:.2f} images/s one at a time, "
              f"{r['batch_images_per_s']:.2f} in one call")
    return 0
