"""`vqa bench NAME`: side-by-side benchmarks; each lives in a `bench_NAME.py` module
with a `register(bench_subparsers)` function."""
from __future__ import annotations

import importlib


def register(sub) -> None:
    from . import command_modules

    p = sub.add_parser("bench", help="benchmarks measured side by side in one run")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    for name in command_modules("bench_"):
        importlib.import_module(f"{__package__}.{name}").register(bsub)
