"""Streaming JSON reading with errors that name the file (ijson, C backend when present).

CLEVR and GQA files reach gigabytes; nothing here reads a file into memory whole.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import ijson

from ..errors import DataError


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", file=path) from None


def _malformed(path: Path, err: Exception) -> DataError:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DataError(f"malformed JSON: {msg}", file=path)


def stream_list(path: str | Path, key: str) -> Iterator[dict]:
    """Items of the list under top-level `key`: `{"key": [item, ...]}`."""
    path = Path(path)
    n = 0
    with _open(path) as f:
        try:
            for item in ijson.items(f, f"{key}.item", use_float=True):
                n += 1
                yield item
        except ijson.JSONError as e:
            raise _malformed(path, e) from None
    if n == 0:
        _require_top_key(path, key, list)


def stream_dict(path: str | Path) -> Iterator[tuple[str, object]]:
    """(key, value) pairs of a top-level JSON object: `{"id": {...}, ...}`."""
    path = Path(path)
    n = 0
    with _open(path) as f:
        try:
            for k, v in ijson.kvitems(f, "", use_float=True):
                n += 1
                yield k, v
        except ijson.JSONError as e:
            raise _malformed(path, e) from None
    if n == 0:
        with _open(path) as f:
            try:
                first = next(ijson.parse(f), None)
            except ijson.JSONError as e:
                raise _malformed(path, e) from None
        if first is None or first[1] != "start_map":
            kind = "empty file" if first is None else f"a JSON {first[1].replace('start_', '')}"
            raise DataError(f"expected a JSON object of records, found {kind}", file=path)


def _require_top_key(path: Path, key: str, typ) -> None:
    """Explain why no items were found under `key` (absent, wrong type, or truly empty)."""
    with _open(path) as f:
        try:
            events = ijson.parse(f)
            first = next(events, None)
            if first is None:
                raise DataError("empty file", file=path)
            if first[1] != "start_map":
                raise DataError(f"expected a JSON object with a '{key}' list, found a JSON "
                                f"{first[1].replace('start_', '')}", file=path)
            for prefix, event, value in events:
                if prefix == "" and event == "map_key" and value == key:
                    _, ev, _ = next(events)
                    if ev != "start_array":
                        raise DataError(f"expected a list, found {ev.replace('start_', '')}", file=path, field=key)
                    return
        except ijson.JSONError as e:
            raise _malformed(path, e) from None
    raise DataError(f"missing top-level '{key}' list", file=path, field=key)


def top_level_keys(path: str | Path, stop_at: str | None = None) -> list[str]:
    """Keys of a top-level JSON object, read by streaming (stops early at `stop_at`)."""
    path = Path(path)
    keys = []
    with _open(path) as f:
        try:
            for prefix, event, value in ijson.parse(f):
                if prefix == "" and event == "map_key":
                    keys.append(value)
                    if value == stop_at:
                        break
        except ijson.JSONError as e:
            raise _malformed(path, e) from None
    return keys
