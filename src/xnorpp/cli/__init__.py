"""The ``xnorpp`` command line: thin commands over library functions.

Each command lives in its own module ``xnorpp.cli.<command>`` exposing
``register(subparsers)``, which adds its parser and sets ``func``; the work is
done by the library function that ``func`` calls. Building the parser imports
only the command modules, which import nothing but argparse and torch-free
modules at their top and in ``register``: heavy libraries (torch, the
analysis and training code) load inside ``func``, when that command runs. So
``xnorpp --help`` stays fast, and every command's ``--help`` and ``xnorpp run``
work in a base install without PyTorch; a command that needs the ``train``
extra says so in one line instead of a traceback (:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from importlib.util import find_spec

COMMANDS = ("demo", "train", "export", "run", "summary", "approx", "compare", "report")
# Commands that work in a base install (numpy, safetensors, the compiled core); the others need the extra.
TORCH_FREE_COMMANDS = frozenset({"run"})
TRAIN_EXTRA = "xnorpp[train]"
# Top-level modules the `train` extra provides, and how a message names them.
TRAIN_EXTRA_MODULES = {"torch": "PyTorch", "torchvision": "torchvision", "tqdm": "tqdm",
                       "matplotlib": "matplotlib", "tensorboard": "TensorBoard"}
_TRAIN_EXTRA_NOTE = f"the train extra (PyTorch): pip install '{TRAIN_EXTRA}'"


def missing_train_module(err: BaseException) -> str | None:
    """The ``train``-extra module whose absence raised ``err`` (a ModuleNotFoundError), else None."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    top = err.name.partition(".")[0]
    # Only when the package itself is absent: a missing submodule of an installed one is a broken install.
    if top in TRAIN_EXTRA_MODULES and find_spec(top) is None:
        return top
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnorpp",
        description="Binary neural networks with XNOR-Net++ scaling: train, compare, export, run packed.",
        epilog=f"`xnorpp run` works with the base install; the other commands need {_TRAIN_EXTRA_NOTE}.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":  # command not written yet
                continue
            raise
        module.register(sub)
        if name not in TORCH_FREE_COMMANDS and sub.choices[name].epilog is None:
            sub.choices[name].epilog = f"This command needs {_TRAIN_EXTRA_NOTE}."
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:  # a base install without the `train` extra: one line, no traceback
        missing = missing_train_module(err)
        if missing is None:
            raise
        print(f"xnorpp {args.command}: this command needs {TRAIN_EXTRA_MODULES[missing]}; install it with: "
              f"pip install '{TRAIN_EXTRA}'", file=sys.stderr)
        return 1
