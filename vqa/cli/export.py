"""`vqa export-numpy`: write the numpy-runtime twin (`.npz`) of torch checkpoints."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "export-numpy", help="export checkpoints for the torch-free numpy runtime",
        description="Write NAME.npz next to each NAME.pt scene-parser or question-parser checkpoint: the "
                    "weights as arrays and the config as JSON, which `vqa answer` and `Pipeline` load without "
                    "importing torch (a fast start). Run it again after retraining: an export that no longer "
                    "matches its .pt file is refused. Default: the shipped checkpoints.")
    p.add_argument("checkpoints", nargs="*", metavar="CKPT.pt",
                   help="checkpoint files (default: data/checkpoints/scene_parser.pt and question_parser.pt)")
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 when an export is missing or does not match its checkpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import DataError
    from ..pipeline import CHECKPOINT_DIR
    from ..runtime.checkpoints import check_export, export_npz, load_npz

    paths = [Path(c) for c in args.checkpoints] or [CHECKPOINT_DIR / "scene_parser.pt",
                                                    CHECKPOINT_DIR / "question_parser.pt"]
    bad = 0
    for pt in paths:
        npz = pt.with_suffix(".npz")
        if args.check:
            try:
                if not npz.is_file():
                    raise DataError("missing (run `vqa export-numpy`)", file=npz)
                check_export(npz, pt)
                print(f"{npz}: up to date")
            except DataError as e:
                print(e)
                bad += 1
            continue
        out = export_npz(pt, npz)
        arrays, meta = load_npz(out)
        n = sum(a.size for a in arrays.values())
        print(f"{out}: {len(arrays)} arrays, {n:,} values, {out.stat().st_size / 1e6:.2f} MB "
              f"({meta.get('format')})")
    return 1 if bad else 0
