"""Helpers shared by the benchmarks: timing, thread settings per subprocess, machine description."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time


def set_threads_env(threads: int) -> None:
    """Call before importing numpy/torch: BLAS and OpenMP pools read these once. OpenMP's idle threads
    sleep (libgomp spins ~10 ms after each call by default, on the core the next timed call needs: it made
    xnorpp's 2-thread layers look slower than 1 thread in interleaved rounds with PyTorch)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XNORPP_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# What --engines-isa avx2 puts in the environment: the other engines' kernels use AVX2 at most, as on a CPU
# without AVX-512 (the kind issue #9's targets were set on), so that xnorpp's AVX2 path meets them on equal
# terms. oneDNN (PyTorch's and OpenVINO's convolutions), MKL (PyTorch's GEMMs) and ATen's vector kernels
# read these once, when they load. ONNX Runtime's MLAS picks its kernels from cpuid and has no such setting.
ENGINE_ISA_CAPS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
                            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
ENGINE_ISAS = ("native", *ENGINE_ISA_CAPS)


def cap_engines_isa(argv: list[str]) -> str:
    """Read --engines-isa from argv (native or avx2; argparse validates it later) and put its caps in the
    environment now, before torch or OpenVINO is imported. Returns the value."""
    isa = "native"
    for i, arg in enumerate(argv):
        if arg == "--engines-isa" and i + 1 < len(argv):
            isa = argv[i + 1]
        elif arg.startswith("--engines-isa="):
            isa = arg.split("=", 1)[1]
    os.environ.update(ENGINE_ISA_CAPS.get(isa, {}))
    return isa


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


def interleaved_rounds(fns, rounds: int = 30, warmup: int = 3,
                       gap: float = 0.0) -> tuple[list[list[float]], list[list[float]]]:
    """Time each fn in interleaved rounds: one call of each per round, the starting candidate rotated
    by one each round (so that no candidate always runs right after the same other one), and an
    untimed pause of ``gap`` seconds after each call (time for spin-waiting threads to go idle).

    Returns (wall, cpu): wall[r][i] is the wall time of fn i in round r, cpu[r][i] the CPU time of the
    whole process during that call (all threads: worker threads of any library that still spin
    while fn i runs are counted against it). Seconds. Warm-up rounds come first and are not kept.
    """
    n = len(fns)
    for _ in range(warmup):
        for fn in fns:
            fn()
    wall, cpu = [], []
    for r in range(rounds):
        w, c = [0.0] * n, [0.0] * n
        for k in range(n):
            i = (r + k) % n
            c0, t0 = time.process_time(), time.perf_counter()
            fns[i]()
            w[i], c[i] = time.perf_counter() - t0, time.process_time() - c0
            if gap > 0:
                time.sleep(gap)
        wall.append(w)
        cpu.append(c)
    return wall, cpu


def paired_median_ratio(wall: list[list[float]], i: int, base: int) -> float:
    """Median over rounds of wall[r][i] / wall[r][base]: the ratio of two candidates timed in the same rounds."""
    return statistics.median(w[i] / w[base] for w in wall)


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (Linux), else lscpu's or platform's."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return machine().split(",")[0]


def cpu_flags(wanted) -> list[str]:
    """Those of the CPU flags ``wanted`` that /proc/cpuinfo lists (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


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
