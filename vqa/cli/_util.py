"""Small helpers shared by the command modules."""
from __future__ import annotations

import sys


def progress(iterable=None, desc: str = "", total: int | None = None, **kw):
    """A tqdm progress bar on stderr, quiet when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True, **kw)
