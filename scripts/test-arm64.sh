#!/bin/sh
# make test-arm64: the aarch64 build, run under emulation (qemu-user) on an x86-64 machine.
#   1. The units of csrc/units.def for aarch64 (neon-dotprod, neon, portable), cross-built by CMake with the
#      tools of csrc/tools and linked statically. check_isa compares each NEON unit with the portable unit
#      under qemu-aarch64: neon on a Cortex-A72 (ARMv8.0, the Raspberry Pi 4's core) and on `-cpu max`
#      (dotprod, i8mm, SVE), neon-dotprod on `-cpu max`; on the A72 it must decline neon-dotprod.
# Needs g++-aarch64-linux-gnu and qemu-user (Debian); installs them with apt when they are missing.
set -eu
cd "$(dirname "$0")/.."
BUILD=build/arm64-tools

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    SUDO=$( [ "$(id -u)" = 0 ] || echo sudo -n )
    $SUDO apt-get update -q && $SUDO apt-get install -y -q g++-aarch64-linux-gnu qemu-user
fi

start=$(date +%s)
cmake -S . -B $BUILD -DXNORPP_PYTHON_MODULE=OFF -DXNORPP_TOOLS=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
    -DCMAKE_EXE_LINKER_FLAGS=-static >$BUILD.log 2>&1 || { cat $BUILD.log; exit 1; }
cmake --build $BUILD -j 2 --target check_isa >>$BUILD.log 2>&1 || { cat $BUILD.log; exit 1; }
echo "arm64: built $(grep -o 'units for aarch64: .*' $BUILD.log) in $(( $(date +%s) - start )) s"

# check_isa under one emulated CPU; the line it prints must say "0 mismatches" (or, with `declines`, "skipped").
check() {
    cpu=$1 unit=$2 want=${3:-"0 mismatches"}
    out=$(qemu-aarch64 -cpu "$cpu" $BUILD/check_isa "$unit" 2>&1) || { echo "$out"; echo "FAILED: $unit on $cpu"; return 1; }
    echo "arm64 $cpu: $out"
    case "$out" in *"$want"*) ;; *) echo "FAILED: $unit on $cpu: expected '$want'"; return 1 ;; esac
}
start=$(date +%s)
check cortex-a72 neon & a=$!
check max neon-dotprod & b=$!
wait $a && wait $b
check max neon & a=$!
check cortex-a72 neon-dotprod "skipped" & b=$!
wait $a && wait $b
echo "arm64: check_isa under qemu in $(( $(date +%s) - start )) s"
