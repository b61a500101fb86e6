"""The ``xnorpp`` command line: thin commands over library functions.

Each command lives in its own module ``xnorpp.cli.<command>`` exposing
``register(subparsers)``, which adds its parser and sets ``func``; the work is
done by the library function that ``func`` calls. Building the parser imports
only the command modules, which import nothing but argparse and torch-free
modules at their top and in ``register``: heavy libraries (torch, the
analysis and training code) load inside ``func``, when that command runs. So
``xnorpp --help`` stays fast, and every command's ``--help`` and ``xnorpp run``
work in a base install without PyTorch.

Errors are reported here, once, for every command (:func:`main`): bad input (a
``ValueError`` or ``OSError`` from the library, whose message names what was wrong
and what is valid) is one line and exit status 2; a missing ``train`` extra is one
line saying what to install; anything else is one line asking for a bug report.
``--debug`` or ``XNORPP_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module
from importlib.util import find_spec

COMMANDS = ("demo", "train", "export", "run", "summary", "approx", "compare", "report", "paired")
# Commands that work in a base install (numpy, safetensors, the compiled core); the others need the extra.
TORCH_FREE_COMMANDS = frozenset({"run"})
TRAIN_EXTRA = "xnorpp[train]"
# Top-level modules the `train` extra provides, and how a message names them.
TRAIN_EXTRA_MODULES = {"torch": "PyTorch", "torchvision": "torchvision", "tqdm": "tqdm",
                       "matplotlib": "matplotlib", "tensorboard": "TensorBoard"}
_TRAIN_EXTRA_NOTE = f"the train extra (PyTorch): pip install '{TRAIN_EXTRA}'"
# Exit statuses: bad input (as argparse), a bug or missing extra, interrupted (128 + SIGINT), closed pipe (128 + SIGPIPE).
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 1, 130, 141
# Bad input: the library raises these with a message meant for the user.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


class DeprecatedAlias(argparse.Action):
    """An old option spelling, accepted for one version: a note on stderr, then the new option's action."""

    def __init__(self, option_strings, dest, new: str, convert=None, **kwargs):
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and will be removed in the next version; use {self.new}",
              file=sys.stderr)
        if self.convert is not None:
            values = self.convert(values)
        if isinstance(getattr(namespace, self.dest, None), list) and isinstance(values, list):
            values = getattr(namespace, self.dest) + values
        setattr(namespace, self.dest, values)


def add_deprecated(parser, old: str, new: str, dest: str, convert=None, **kwargs) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of option ``new`` (stored in ``dest``)."""
    parser.add_argument(old, action=DeprecatedAlias, new=new, dest=dest, convert=convert, **kwargs)


def add_model_opt(parser) -> None:
    """``--model-opt KEY=VALUE`` (repeatable), the one spelling of model constructor options."""
    parser.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="model constructor option, e.g. width=32 or binary_downsample=true (repeatable)")


def parse_value(text: str):
    """'32' → 32, '0.5' → 0.5, 'true' → True, '1,2,2' → (1, 2, 2), else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in text:
        return tuple(parse_value(t) for t in text.split(",") if t)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_opts(items: list[str]) -> dict:
    """``["width=32", "stem=small"]`` → ``{"width": 32, "stem": "small"}`` (``-`` in keys becomes ``_``)."""
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-opt expects KEY=VALUE (e.g. width=32), got {item!r}")
        opts[key.strip().replace("-", "_")] = parse_value(value.strip())
    return opts


def _version() -> str:
    from .. import __version__
    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnorpp",
        description="Binary neural networks with XNOR-Net++ scaling: train, compare, export, run packed.",
        epilog=f"`xnorpp run` works with the base install (and so does `xnorpp export MODEL.xnor --format openvino`, "
               f"with the openvino extra); the other commands need {_TRAIN_EXTRA_NOTE}. "
               "--debug (or XNORPP_DEBUG=1) shows the traceback of an error, for bug reports.")
    parser.add_argument("--version", action="version", version=f"xnorpp {_version()}")
    debug_help = "show the traceback of an error (for bug reports; also XNORPP_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = import_module(f".{name}", __name__)
        module.register(sub)
        command = sub.choices[name]
        # After the command too; SUPPRESS keeps a top-level --debug from being reset by the subparser.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        if name not in TORCH_FREE_COMMANDS and command.epilog is None:
            command.epilog = f"This command needs {_TRAIN_EXTRA_NOTE}."
    return parser


def _one_line(err: BaseException) -> str:
    """The error's message on one line (``[Errno N]`` dropped from an OSError that names its file)."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    return " ".join(text.split())


def _missing_module_line(err: BaseException) -> str | None:
    """What to install when ``err`` is an import of a package that is not installed, else None."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    top = err.name.partition(".")[0]
    if find_spec(top) is not None:  # the package is there and one of its modules is not: a broken install
        return None
    if top in TRAIN_EXTRA_MODULES:
        return f"this command needs {TRAIN_EXTRA_MODULES[top]}; install it with: pip install '{TRAIN_EXTRA}'"
    if "pip install" in str(err):  # the library already said what to install
        return _one_line(err)
    return f"this command needs the Python package {top!r}, which is not installed: pip install {top}"


def _quiet_stdout() -> None:
    """After a closed pipe (``xnorpp ... | head``): send what is left to /dev/null, so exit flushes silently."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("XNORPP_DEBUG", "") not in ("", "0")
    prefix = f"xnorpp {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away: not an error of ours, and nothing more to say
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as err:
        if debug:
            raise
        missing = _missing_module_line(err)
        if missing is not None:
            print(f"{prefix}: {missing}", file=sys.stderr)
            return EXIT_FAILURE
        if isinstance(err, USER_ERRORS) or (isinstance(err, ImportError) and not isinstance(err, ModuleNotFoundError)):
            print(f"{prefix}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prefix}: internal error (a bug in xnorpp {_version()}: please report it with the traceback "
              f"that `xnorpp --debug {args.command} ...` prints): {type(err).__name__}: {_one_line(err)}",
              file=sys.stderr)
        return EXIT_FAILURE
