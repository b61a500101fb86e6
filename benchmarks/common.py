"""Helpers shared by the benchmarks: timing, thread settings per subprocess, machine description."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time


def set_threads_env(threads: int) -> None:
    """Call before importing numpy/torch: BLAS and OpenMP pools read these once."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XNORPP_NUM_THREADS"):
        os.environ[var] = str(threads)


def best_time(fn, repeat: int = 30, warmup: int = 3, min_time: float = 0.0) -> float:
    """Best (minimum) wall time of fn() in seconds: the least disturbed run on a shared machine."""
    for _ in range(warmup):
        fn()
    best, total, runs = float("inf"), 0.0, 0
    while runs < repeat or total < min_time:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def best_times(fns, repeat: int = 30, warmup: int = 3) -> list[float]:
    """Best wall time of each fn in seconds, measured in interleaved rounds (one call of each per
    round), so that a slow spell of a shared machine hits every candidate alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"Model name:\s*(.+)", text)
        if found:
            model = found.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def run_child(script: str, args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, script, *args], env={**os.environ, **env}, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def update_readme(path: str, marker: str, text: str) -> None:
    """Replace the block between <!-- marker --> and <!-- /marker --> in path (appending it if absent)."""
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    content = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in content and end in content:
        content = content[:content.index(begin)] + block + content[content.index(end) + len(end):]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(content)
