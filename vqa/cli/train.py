"""`vqa train MODEL`: the training commands.

Each model's sub-command lives in a `_train_MODEL.py` module of this package with a
`register(train_subparsers)` function (the leading underscore keeps it out of the
top-level command discovery); this group registers every such module, e.g.
`vqa train nsm` from `_train_nsm.py`.
"""
from __future__ import annotations

import importlib
import pkgutil


def register(sub) -> None:
    from . import __path__ as cli_path

    p = sub.add_parser("train", help="train a model (nsm, ...) and write a checkpoint")
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL")
    tsub.required = True
    for name in sorted(m.name for m in pkgutil.iter_modules(cli_path) if m.name.startswith("_train_")):
        importlib.import_module(f"{__package__}.{name}").register(tsub)
