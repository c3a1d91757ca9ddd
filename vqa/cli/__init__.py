"""The `vqa` command: a thin layer that parses arguments and calls the library.

Each command group lives in its own module of this package with a
`register(subparsers)` function; every module whose name does not start with "_" or
"bench_" is registered (in name order). `vqa bench NAME` commands live in `bench_NAME.py`
modules, registered by `bench.py`. Library imports happen inside the
command functions so that `vqa --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import VQAError



def command_modules(prefix: str = "") -> list[str]:
    """Names of the command modules in this package (those starting with `prefix`)."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    if prefix:
        return sorted(n for n in names if n.startswith(prefix))
    return sorted(n for n in names if not n.startswith("bench_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqa", description="Neuro-symbolic visual question answering.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"vqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _make_output_folders(args) -> None:
    """The folders that a command's output paths (`output_paths`, set by each command's `set_defaults`)
    lie in, created when missing; one clear error when one cannot be."""
    from pathlib import Path

    for name in getattr(args, "output_paths", ()):
        value = getattr(args, name, None)
        if not value or str(value) == "-":
            continue
        folder = Path(value).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            flag = "--" + name.replace("_", "-")
            raise VQAError(f"{flag} {value}: cannot create the folder {folder}: {e.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _make_output_folders(args)
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
    except BrokenPipeError:  # the reader went away (`vqa scene ... | head`): stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
