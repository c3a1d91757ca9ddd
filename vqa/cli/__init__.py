"""The `vqa` command: a thin layer that parses arguments and calls the library.

Each command group lives in its own module with a `register(subparsers)` function;
add a module name to COMMANDS to add a group. Library imports happen inside the
command functions so that `vqa --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import VQAError

COMMANDS = ["answer", "data"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqa", description="Neuro-symbolic visual question answering.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"vqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VQAError as e:
        print(f"vqa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"vqa {args.command}: error: {e.filename}: no such file", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
