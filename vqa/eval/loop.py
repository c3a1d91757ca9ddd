"""The loop CLEVR and GQA evaluation share: a lock on the predictions file, the journal of
answers (JSON lines after a settings line) read back, streamed, by a rerun to resume, and
the drain that takes each batch of answers as it comes (journaled and flushed, counted on
the progress bar).

    held = lock_predictions("pred.jsonl")          # one run per file (released when closed)
    for rec in iter_journal(path, settings, keys):  # the records an earlier run wrote
        ...
    with Journal(path, settings) as journal:
        n = drain(batches, take=store, journal=journal, line=to_json, bar=bar)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import DataError, VQAError


def lock_predictions(path):
    """An exclusive lock on a predictions file for one run (`PATH.lock` beside it, holding
    the pid; kept open by the caller, released when closed or when the process ends, even
    by kill -9). A second run on the same file gets a VQAError at once instead of
    interleaving its lines with the first's. None when `path` is None."""
    if path is None:
        return None
    import fcntl
    import os

    lock_path = Path(str(path) + ".lock")
    try:
        f = open(lock_path, "a+", encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot create the lock file {lock_path}: {e.strerror}", file=path) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        who = f.read().strip()
        f.close()
        raise VQAError(f"{path} is being written by another run ({who or 'another process'}, lock {lock_path}); "
                       "wait for it to end, or choose another --predictions file") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    # forked workers must not keep the lock alive (after a kill -9 of this process, say)
    import weakref

    ref = weakref.ref(f)  # (a strong reference here would hold the lock for the life of the process)
    os.register_at_fork(after_in_child=lambda: ref() is not None and ref().close())
    return f


def iter_journal(path: Path, settings: dict, keys: tuple[str, ...]) -> Iterator[dict]:
    """The records (one JSON object per line) of a journal made with the same settings
    (`keys`: the settings that must match, from its first `{"settings": ...}` line), read one
    line at a time. A last line cut short by a kill is dropped from the file first (so that
    appending goes on after the last whole record). A journal of other settings is a
    VQAError; a line that is not JSON, a DataError naming it."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as f:  # the last line, cut short by a kill: dropped before appending
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) != b"\n":
            back = min(size, 1 << 16)
            while True:
                f.seek(size - back)
                tail = f.read(back)
                cut = tail.rfind(b"\n")
                if cut >= 0 or back == size:
                    f.truncate(size - back + cut + 1 if cut >= 0 else 0)
                    break
                back = min(size, back * 2)
    meta = None
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"line {i + 1} is not JSON", file=path) from None
            if meta is None and "settings" in rec:
                meta = rec["settings"]
                diff = [k for k in keys if meta.get(k) != settings.get(k)]
                if diff:
                    raise VQAError(f"{path} holds predictions made with other settings ({', '.join(diff)}); "
                                   "use another --predictions file")
                continue
            yield rec


class Journal:
    """Appends to a journal (the settings line first when the file is new); each batch of
    lines is flushed as written, so that a kill loses at most the batches in flight. A
    context manager; `path` None: writes nothing."""

    def __init__(self, path, settings: dict):
        self.path, self.settings, self.f = path, settings, None

    def __enter__(self) -> "Journal":
        if self.path is not None:
            self.f = open(self.path, "a", encoding="utf-8")
            if self.f.tell() == 0:
                self.f.write(json.dumps({"settings": self.settings}) + "\n")
                self.f.flush()
        return self

    def write(self, records) -> None:
        if self.f is not None:
            self.f.write("".join(json.dumps(r) + "\n" for r in records))
            self.f.flush()

    def __exit__(self, *exc) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def drain(batches, *, take, journal: Journal | None = None, line=lambda r: r, bar=None) -> int:
    """Takes each batch of answers as it arrives: `take(batch)` (into the caller's records or
    store), then the journal (`line(r)`: a record's journal object) and the progress bar.
    Returns how many answers were taken."""
    n = 0
    for batch in batches:
        take(batch)
        if journal is not None:
            journal.write(line(r) for r in batch)
        n += len(batch)
        if bar is not None:
            bar.update(len(batch))
    return n
