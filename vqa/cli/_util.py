"""Small helpers shared by the command modules."""
from __future__ import annotations

import sys


def progress(iterable=None, desc: str = "", total: int | None = None, **kw):
    """A tqdm progress bar on stderr, quiet when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True, **kw)


class Stages:
    """Progress of a command made of a few long steps that a bar would disturb (benchmarks
    timing themselves): one line per step on stderr, `NAME: [i/n] what (elapsed so far)`."""

    def __init__(self, name: str, total: int, file=None):
        import time

        self.name, self.total, self.k, self.file = name, total, 0, file or sys.stderr
        self.start, self._clock = time.monotonic(), time.monotonic

    def __call__(self, what: str) -> None:
        self.k += 1
        print(f"{self.name}: [{self.k}/{self.total}] {what} ({_duration(self._clock() - self.start)} elapsed)",
              file=self.file, flush=True)


PROGRESS_SECONDS = 30.0  # default interval of the progress lines of a logged run (VQA_PROGRESS_SECONDS)


def progress_or_log(iterable=None, desc: str = "", total: int | None = None, **kw):
    """A tqdm bar when stderr is a terminal; otherwise (a run logged to a file) a `LogProgress`
    that prints one line every VQA_PROGRESS_SECONDS (default 30) seconds."""
    if sys.stderr.isatty():
        return progress(iterable, desc=desc, total=total, **kw)
    import os

    try:
        interval = float(os.environ.get("VQA_PROGRESS_SECONDS", PROGRESS_SECONDS))
    except ValueError:
        interval = PROGRESS_SECONDS
    return LogProgress(iterable, desc=desc, total=total, interval=interval)


class LogProgress:
    """Progress as plain lines for a log: `desc: done/total (pct), rate/s, time left`, at most
    one every `interval` seconds (and a last one at close if any was printed)."""

    def __init__(self, iterable=None, desc: str = "", total: int | None = None, interval: float = PROGRESS_SECONDS,
                 file=None, clock=None):
        import time

        self.iterable, self.desc, self.total, self.interval = iterable, desc, total, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.file = file or sys.stderr
        self.clock = clock or time.monotonic
        self.n = 0
        self.start = self.last = self.clock()
        self.printed = 0

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.1f}%)" if self.total else f"{self.n}"
        left = ""
        if self.total and rate > 0:
            left = f", {_duration((self.total - self.n) / rate)} left"
        return f"{self.desc or 'progress'}: {done}, {rate:.1f}/s, {_duration(elapsed)} elapsed{left}"

    def _line(self, now: float) -> None:
        print(self.line(now), file=self.file, flush=True)
        self.printed += 1

    def close(self) -> None:
        if self.printed:  # the final count, once
            self._line(self.clock())
            self.printed = 0

    def set_postfix(self, *a, **k) -> None:  # tqdm's, for callers that use it
        pass


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def add_resume_flags(p, state: str) -> None:
    """--resume / --restart of a training command whose run is saved in `state`."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help=f"continue the run saved in {state} even with another --steps/--epochs (without "
                   "this flag the same command continues it anyway, when its settings are the same)")
    g.add_argument("--restart", action="store_true",
                   help=f"start a new run, overwriting the one saved in {state} (without this flag a run "
                   "saved with other settings is refused)")


def resume_mode(args):
    """The `resume` argument of the training functions: True, False or "auto" (`vqa.resume`)."""
    return True if args.resume else False if args.restart else "auto"
