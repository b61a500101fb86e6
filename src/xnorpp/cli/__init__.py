"""The ``xnorpp`` command line: thin commands over library functions.

Each command lives in its own module ``xnorpp.cli.<command>`` exposing
``register(subparsers)``, which adds its parser and sets ``func``; the work is
done by the library function that ``func`` calls. Modules import heavy
libraries inside ``func`` so that ``xnorpp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

COMMANDS = ("demo", "train", "export", "run", "summary", "approx", "compare", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnorpp",
        description="Binary neural networks with XNOR-Net++ scaling: train, compare, export, run packed.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":  # command not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
