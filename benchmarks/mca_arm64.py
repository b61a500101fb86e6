"""The NEON unit's binary inner loop on paper: llvm-mca's cycles per iteration on ARM cores, in binary MACs per
cycle, beside each core's ceiling and, when its header is given, Larq Compute Engine's 8x4x2 block.

    python benchmarks/mca_arm64.py [--lce path/to/kernel_8x4x2_aarch64.h]

Needs aarch64-linux-gnu-g++ and llvm-mca (Debian: g++-aarch64-linux-gnu, llvm-19). The loop is taken from the
compiler's own output for csrc/isa_neon.cpp (popcount_pass<2, 0>: 2 pixels x 32 channels x one 32-bit word =
2048 binary MACs per iteration), so it measures the code we ship. LCE's block (its macro
XOR_POPCOUNT_ACCUM_LOAD_BLOCK_64: 4 pixels x 8 channels x 64 bits = 2048 binary MACs) is read from the header
a user fetched, its named operands given fixed registers; nothing of it is kept here.
The ceiling: eor, cnt and an add per 16 bytes (128 binary MACs) on the core's 128-bit NEON pipes, as llvm-mca
models them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = ["cortex-a72", "cortex-a76", "neoverse-n1", "neoverse-v1", "apple-m1"]
MACS_PER_ITERATION = 2048
# 128-bit NEON pipes that take eor, cnt and add, in llvm-mca-19's models (its apple-m1 model has 3).
NEON_PIPES = {"cortex-a72": 2, "cortex-a76": 2, "neoverse-n1": 2, "neoverse-v1": 4, "apple-m1": 3}
LOOP_FUNCTION = "_ZN6xnorpp8isa_neonL13popcount_passILi2ELi0EEEvPKPKjlllS3_Pi"


def llvm_mca() -> str:
    """llvm-mca 19 (older ones, such as Debian's default 14, lack these cores' models)."""
    for name in ("/usr/lib/llvm-19/bin/llvm-mca", "llvm-mca-19"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("llvm-mca 19 not found (Debian: apt-get install llvm-19)")


def neon_loop(tmp: Path) -> str:
    """The inner loop of popcount_pass<2, 0> as GCC compiles it: the block that holds the cnt instructions."""
    asm = tmp / "isa_neon.s"
    subprocess.run(["aarch64-linux-gnu-g++", "-std=c++17", "-O3", "-ffp-contract=off", f"-I{ROOT / 'csrc'}", "-S",
                    str(ROOT / "csrc" / "isa_neon.cpp"), "-o", str(asm)], check=True)
    text = asm.read_text().splitlines()
    start = text.index(f"{LOOP_FUNCTION}:")
    body = [line for line in text[start:] if not line.strip().startswith((".cfi", "//", "#"))]
    blocks, current = [], []
    for line in body:
        if re.match(r"^\.L\d+:", line):
            blocks.append(current)
            current = []
        else:
            current.append(line)
        if line.startswith("\t.size"):
            break
    blocks.append(current)
    loop = max(blocks, key=lambda b: sum("cnt\t" in x for x in b))
    # The loop runs to its flush test (every 31 words): the block up to that branch.
    end = next(i for i, x in enumerate(loop) if re.match(r"\s*b(eq|ne)\s", x))
    return "\n".join(x for x in loop[:end] if not x.strip().startswith(".")) + "\n"


def lce_block(header: Path) -> str:
    """LCE's XOR_POPCOUNT_ACCUM_LOAD_BLOCK_64 with its operands on fixed registers, in a loop."""
    text = header.read_text()
    macro = text[text.index("#define XOR_POPCOUNT_ACCUM_LOAD_BLOCK_64"):]
    macro = macro[:macro.index("\n\n")]
    lines = [s.replace("\\n", "").replace("\\t", "").strip() for s in re.findall(r'"([^"]*)"', macro)]
    regs = {f"a_{i}": f"v{16 + i}" for i in range(4)} | {f"w_{i}": f"v{20 + i}" for i in range(4)}
    regs |= {f"accum_{i}": f"v{24 + i}" for i in range(4)} | {f"a_ptr_{i}": f"x{1 + i}" for i in range(4)}
    regs |= {"w_ptr": "x5"}

    def operand(m: re.Match) -> str:
        modifier, name = m.group(1), m.group(2)
        reg = regs[name]
        return f"q{reg[1:]}" if modifier == "q" else reg

    body = [re.sub(r"%([qw]?)\[\s*(\w+)\s*\]", operand, line) for line in lines if line]
    return "0:\nsubs w0, w0, #1\n" + "\n".join(body) + "\nb.gt 0b\n"


def cycles(mca: str, source: str, cpu: str, tmp: Path) -> float:
    path = tmp / f"block-{cpu}.s"
    path.write_text(source)
    out = subprocess.run([mca, "-mtriple=aarch64", f"-mcpu={cpu}", "-iterations=500", str(path)],
                         check=True, capture_output=True, text=True).stdout
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return total / 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lce", type=Path, help="LCE's larq_compute_engine/core/indirect_bgemm/kernel_8x4x2_aarch64.h")
    args = parser.parse_args()
    mca = llvm_mca()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours = neon_loop(tmp)
        lce = lce_block(args.lce) if args.lce else None
        version = next(line.strip() for line in subprocess.run([mca, "--version"], capture_output=True,
                                                                   text=True).stdout.splitlines() if "version" in line)
        print(f"{version}; xnorpp's loop compiled by {subprocess.run(['aarch64-linux-gnu-g++', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}\n")
        print("| core | NEON pipes | ceiling, MACs/cycle | xnorpp neon: cycles per 2048 MACs | MACs/cycle |"
              + (" LCE 8x4x2: cycles | MACs/cycle | xnorpp ÷ LCE |" if lce else ""))
        print("|---|---|---|---|---|" + ("---|---|---|" if lce else ""))
        for cpu in CORES:
            ceiling = NEON_PIPES[cpu] * 128 / 3
            c = cycles(mca, ours, cpu, tmp)
            row = f"| {cpu} | {NEON_PIPES[cpu]} | {ceiling:.0f} | {c:.2f} | {MACS_PER_ITERATION / c:.1f} |"
            if lce:
                cl = cycles(mca, lce, cpu, tmp)
                row += f" {cl:.2f} | {MACS_PER_ITERATION / cl:.1f} | {cl / c:.2f} |"
            print(row)


if __name__ == "__main__":
    main()
