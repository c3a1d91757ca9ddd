"""Inference checkpoints as `.npz` files: what the numpy runtime loads, without torch.

An exported file holds every tensor of a torch checkpoint's `state_dict` as a float32 (or
integer) array under its own name, and the rest of the checkpoint (format, config,
vocabularies, metadata) as JSON under `__checkpoint__`:

    vqa export-numpy data/checkpoints/scene_parser.pt       # -> data/checkpoints/scene_parser.npz
    arrays, meta = load_npz("data/checkpoints/scene_parser.npz")

`export_npz` needs torch (it reads the `.pt` file); `load_npz` needs only numpy.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import DataError

META_KEY = "__checkpoint__"


def _jsonable(value):
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def export_npz(pt_path: str | Path, npz_path: str | Path | None = None) -> Path:
    """Write the `.npz` twin of a torch checkpoint (default: same name, `.npz`); returns its path.
    Entries other than `state_dict` that are not JSON (optimizer states, say) are left out."""
    import torch

    pt_path = Path(pt_path)
    out = Path(npz_path) if npz_path is not None else pt_path.with_suffix(".npz")
    try:
        ckpt = torch.load(pt_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError("no such checkpoint file", file=pt_path) from None
    except Exception as e:  # noqa: BLE001 (a truncated or foreign file)
        raise DataError(f"cannot read checkpoint ({type(e).__name__}: {e})", file=pt_path) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError("not a vqa checkpoint (no state_dict)", file=pt_path)
    arrays = {}
    for name, t in ckpt["state_dict"].items():
        t = t.detach().cpu()
        arrays[name] = t.float().numpy() if t.is_floating_point() else t.numpy()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict" and _jsonable(v)}
    meta["exported_from"] = pt_path.name
    meta["source_sha256"] = file_sha256(pt_path)
    if META_KEY in arrays:
        raise DataError(f"a tensor is named {META_KEY!r}", file=pt_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays, **{META_KEY: np.array(json.dumps(meta))})
    tmp.replace(out)
    return out


def load_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays by state_dict name, the checkpoint's other entries) of an exported file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such checkpoint file", file=path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 (not a zip, truncated ...)
        raise DataError(f"cannot read exported checkpoint ({type(e).__name__}: {e})", file=path) from None
    if META_KEY not in arrays:
        raise DataError(f"not an exported vqa checkpoint (no {META_KEY} entry)", file=path)
    meta = json.loads(str(arrays.pop(META_KEY)))
    return arrays, meta


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_meta(path: str | Path) -> dict:
    """The JSON entries of an exported file (without reading its arrays)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z[META_KEY]))
    except Exception as e:  # noqa: BLE001
        raise DataError(f"not a readable exported checkpoint ({type(e).__name__}: {e})", file=path) from None


def check_export(npz_path: str | Path, pt_path: str | Path) -> None:
    """Raise DataError when `npz_path` was not exported from the current `pt_path` (a
    checkpoint retrained after its export), naming the command that refreshes it."""
    meta = read_meta(npz_path)
    if meta.get("source_sha256") != file_sha256(pt_path):
        raise DataError(f"stale export: it was not made from the current {Path(pt_path).name} "
                        f"(refresh it with `vqa export-numpy {pt_path}`, or use the torch backend)", file=npz_path)
