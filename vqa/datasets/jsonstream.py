"""Streaming JSON reading with errors that name the file.

CLEVR and GQA files reach gigabytes; nothing here reads a file into memory whole.
`stream_list` and `stream_dict` read one record at a time with the standard library's C
decoder (`json.JSONDecoder.raw_decode` over a sliding window of the file), about twice as
fast as ijson's C backend building the same dicts; ijson explains files without records.
"""
from __future__ import annotations

import io
import json
import re
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
    for item in _WindowReader(path).items(key):
        n += 1
        yield item
    if n == 0:
        _require_top_key(path, key, list)


_SPACE = re.compile(r"[ \t\n\r]*")


class _WindowReader:
    """The values of a JSON file read piece by piece: a window of the text, refilled from
    the file when a value runs past its end (`raw_decode` fails on a cut value, and the
    values read here are objects, lists and strings, which cannot look complete when cut)."""

    CHUNK = 1 << 18  # characters read at a time (the window holds about twice that)

    def __init__(self, path: Path):
        self.path = path
        self.buf, self.pos, self.done, self.offset = "", 0, False, 0
        self.decoder = json.JSONDecoder()
        self.track = False  # byte offsets (for `spans`): bytes before buf[0], and a mark in buf
        self.bbase = self.cmark = self.bmark = 0

    def _more(self, size: int | None = None) -> bool:
        """Read the next piece (dropping what has been consumed); False at the end of the file."""
        if self.done:
            return False
        try:
            piece = self.file.read(size or self.CHUNK)
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text: {e.reason}", file=self.path) from None
        if not piece:
            self.done = True
            return False
        self.offset += self.pos
        if self.track:  # what is dropped, counted in bytes
            self.bbase, self.cmark, self.bmark = self._byte_at(self.pos), 0, 0
        self.buf, self.pos = self.buf[self.pos:] + piece, 0
        return True

    def _skip_space(self) -> str:
        """The next non-space character ("" at the end of the file), not consumed."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def _malformed(self, what: str) -> DataError:
        return DataError(f"malformed JSON: {what} at character {self.offset + self.pos}", file=self.path)

    def _expect(self, chars: str) -> str:
        c = self._skip_space()
        if not c or c not in chars:
            raise self._malformed(f"expected {' or '.join(repr(x) for x in chars)}, found "
                                  + (repr(c) if c else "the end of the file"))
        self.pos += 1
        return c

    def _value(self):
        self._skip_space()
        size = self.CHUNK
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # a value cut by the end of the window fails near that end (a cut literal or
                # escape, at most a few characters back) or as an unterminated string; an
                # error elsewhere is in the file itself
                cut = e.pos >= len(self.buf) - 16 or e.msg.startswith("Unterminated string")
                if cut and self._more(size):
                    size *= 2  # a large value: read more each time (decoding restarts from its start)
                    continue
                self.pos = max(self.pos, e.pos)
                raise self._malformed(e.msg) from None
            if end == len(self.buf) and not isinstance(value, (dict, list, str)) and self._more():
                continue  # a number or constant may go on in the next piece
            self.pos = end
            return value

    def _members(self) -> Iterator[str]:
        """The keys of the top-level object, each yielded with the window at its value, which
        the caller reads before asking for the next key (nothing when the file is not an
        object: the caller explains why)."""
        with _open(self.path) as raw:
            self.file = io.TextIOWrapper(raw, encoding="utf-8-sig")
            if self._skip_space() != "{":
                if self._skip_space():
                    self._value()  # not an object: malformed JSON raises here
                return
            self.pos += 1
            if self._skip_space() == "}":
                return
            while True:
                if self._skip_space() != '"':
                    raise self._malformed("expected a key")
                name = self._value()
                self._expect(":")
                yield name
                if self._expect(",}") == "}":
                    return

    def _byte_at(self, p: int) -> int:
        """The file's byte offset of buf[p] (p at or after the last asked; each character is
        encoded once)."""
        self.bmark += len(self.buf[self.cmark:p].encode("utf-8", "surrogatepass"))
        self.cmark = p
        return self.bbase + self.bmark

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """(key, start byte, end byte) of each value of the top-level object: the value is
        `json.loads` of those bytes. Each value is decoded once to find its end, then dropped."""
        self.track = True
        with _open(self.path) as raw:
            self.bbase = 3 if raw.read(3) == b"\xef\xbb\xbf" else 0  # (utf-8-sig drops a BOM)
        for name in self._members():
            self._skip_space()
            start = self._byte_at(self.pos)
            self._value()
            yield name, start, self._byte_at(self.pos)

    def pairs(self) -> Iterator[tuple[str, object]]:
        """(key, value) of the top-level object."""
        for name in self._members():
            yield name, self._value()

    def items(self, key: str) -> Iterator:
        """The items of the list under top-level `key` (nothing when there is no such list)."""
        for name in self._members():
            if name != key or self._skip_space() != "[":
                self._value()
                continue
            self.pos += 1
            if self._skip_space() == "]":
                self.pos += 1
                continue
            while True:
                yield self._value()
                if self._expect(",]") == "]":
                    break


def stream_spans(path: str | Path) -> Iterator[tuple[str, int, int]]:
    """(key, start byte, end byte) of each value of a top-level JSON object, for reading
    single records later by seeking (`read_span`)."""
    yield from _WindowReader(Path(path)).spans()


def read_span(f, start: int, end: int, path=None):
    """The JSON value at bytes [start, end) of the binary file `f`."""
    f.seek(start)
    try:
        return json.loads(f.read(end - start))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _malformed(Path(path or getattr(f, "name", "?")), e) from None


def stream_dict(path: str | Path) -> Iterator[tuple[str, object]]:
    """(key, value) pairs of a top-level JSON object: `{"id": {...}, ...}`."""
    path = Path(path)
    n = 0
    for k, v in _WindowReader(path).pairs():
        n += 1
        yield k, v
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
