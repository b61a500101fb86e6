"""Child process of the packed-file fuzz test (tests/test_fuzz.py): load and run mutants, torch-free.

Protocol: after its imports the worker writes ``{"ready": true, ...}``; then it reads one
request per line on stdin — JSON ``{"path": ...}`` (or a bare path; a ``fallback_size`` field is
ignored: the file records its input shape) — and answers each with one JSON line on stdout::

    {"outcome": "ok" | "refused" | "late" | "unclear", "stage": "load" | "input" | "run" | null,
     "type": exception type, "message": ..., "where": innermost frame "file:line (function)"}

``ok``       loaded, and ran on a batch of 2 standard-normal inputs of the recorded shape (images or vectors)
``refused``  ModelFormatError raised by ``xnorpp.runtime.load``
``late``     load accepted the file, running it raised ModelFormatError
``unclear``  any other exception (at load, while building the input the model asks for, or at run)

A crash (segfault, abort) or a hang is seen by the parent: the worker dies or stops answering.
Anything the runtime prints goes to stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

# The runtime must not need PyTorch: make any `import torch` fail loudly.
sys.modules["torch"] = None  # type: ignore[assignment]

for var in ("XNORPP_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

MAX_INPUT_ELEMENTS = 1 << 24  # a valid input larger than this (64 MiB): the recorded input shape is absurd


def _limit_memory() -> None:
    """Cap the address space (XNORPP_FUZZ_MEM_MB, default 4096) so a huge allocation fails here, not the machine."""
    megabytes = int(os.environ.get("XNORPP_FUZZ_MEM_MB", "4096"))
    if megabytes <= 0:
        return
    try:
        import resource

        limit = megabytes << 20
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    inner = frames[-1]
    ours = [f for f in frames if "xnorpp" in f.filename.replace("\\", "/")]
    frame = ours[-1] if ours else inner
    text = f"{os.path.basename(frame.filename)}:{frame.lineno} ({frame.name})"
    if frame is not inner:
        text += f" -> {os.path.basename(inner.filename)}:{inner.lineno} ({inner.name})"
    return text


def _message(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 - a message that cannot be printed is itself a finding
        text = "<unprintable message>"
    return text if len(text) <= 400 else text[:400] + "..."


def _result(outcome: str, stage: str | None = None, err: BaseException | None = None, **extra) -> dict:
    out = {"outcome": outcome, "stage": stage}
    if err is not None:
        out.update(type=type(err).__name__, message=_message(err), where=_where(err))
    out.update(extra)
    return out


def _selftest(kind: str, runtime) -> None:
    """Failures on request, for the harness's own test: it must see each one for what it is."""
    if kind == "abort":
        os.abort()
    if kind == "segv":
        import ctypes

        ctypes.string_at(0)
    if kind == "exit":
        os._exit(3)
    if kind == "hang":
        import time

        time.sleep(3600)
    if kind == "raise":
        raise KeyError("selftest")
    if kind == "late":
        raise runtime.ModelFormatError("selftest")


def process(request: dict, runtime, np) -> dict:
    ModelFormatError = runtime.ModelFormatError
    path = request["path"]
    if request.get("selftest") in ("abort", "segv", "exit", "hang"):
        _selftest(request["selftest"], runtime)
    try:
        model = runtime.load(path)
    except ModelFormatError as err:
        if not str(err):
            return _result("unclear", "load", err, message="ModelFormatError without a message")
        return _result("refused", "load", err)
    except Exception as err:  # noqa: BLE001 - everything else is what we are looking for (FileNotFoundError too)
        return _result("unclear", "load", err)

    # The input the model says it takes: batch 2 of the recorded shape, (C, H, W) or (F,).
    try:
        shape = (2, *model.input_shape)
        if not all(type(d) is int and d >= 1 for d in shape):
            raise ValueError(f"load accepted the input shape {shape!r}")
        count = 1
        for d in shape:
            count *= d
        if count > MAX_INPUT_ELEMENTS:
            raise ValueError(f"load accepted the input shape {shape!r} ({count} values)")
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    except Exception as err:  # noqa: BLE001
        return _result("unclear", "input", err)

    try:
        if request.get("selftest"):
            _selftest(request["selftest"], runtime)
        y = model(x)
    except ModelFormatError as err:
        return _result("late", "run", err)
    except Exception as err:  # noqa: BLE001
        return _result("unclear", "run", err)
    shape = getattr(y, "shape", None)
    return _result("ok", None, output_shape=list(shape) if shape is not None else None)


def main() -> int:
    _limit_memory()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    import numpy as np

    import xnorpp.runtime as runtime

    torch_free = sys.modules.get("torch") is None
    protocol.write(json.dumps({"ready": True, "pid": os.getpid(), "torch_free": torch_free}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line) if line.startswith("{") else {"path": line}
        try:
            result = process(request, runtime, np)
        except BaseException as err:  # noqa: BLE001 - e.g. a RecursionError escaping our own handlers
            if isinstance(err, KeyboardInterrupt):
                raise
            result = _result("unclear", "worker", err)
        result["path"] = request["path"]
        result["torch_free"] = sys.modules.get("torch") is None
        try:
            text = json.dumps(result)
        except (TypeError, ValueError):
            text = json.dumps({k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                               for k, v in result.items()})
        protocol.write(text + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
