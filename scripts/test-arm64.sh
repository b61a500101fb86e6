#!/bin/sh
# make test-arm64: the aarch64 build, run under emulation (qemu-user) on an x86-64 machine.
#   1. The units of csrc/units.def for aarch64 (neon-dotprod, neon, portable), cross-built by CMake with the
#      tools of csrc/tools and linked statically. check_isa compares each NEON unit with the portable unit
#      under qemu-aarch64: neon on a Cortex-A72 (ARMv8.0, the Raspberry Pi 4's core) and on `-cpu max`
#      (dotprod, i8mm, SVE), neon-dotprod on `-cpu max`; on the A72 it must decline neon-dotprod.
#   2. The torch-free runtime on an arm64 Python: the extension cross-built against the headers of an arm64
#      Debian root (mmdebstrap, cached in ~/.cache/xnorpp/arm64-root), run by that root's python3 with its numpy
#      and PyPI's aarch64 safetensors wheel. Packed files exported on x86 (tests/arm64/export_models.py, with
#      .venv's PyTorch) must give the same top-1 and logits within the float bound on every arm64 unit
#      (tests/arm64/check_runtime.py), as a Cortex-A72 and as `-cpu max`.
# Needs g++-aarch64-linux-gnu, qemu-user and mmdebstrap (Debian); installs them with apt when they are missing.
set -eu
cd "$(dirname "$0")/.."
BUILD=build/arm64-tools
PY=${PYTHON:-.venv/bin/python}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/xnorpp
ROOT=$CACHE/arm64-root

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null \
        || ! command -v mmdebstrap >/dev/null; then
    SUDO=$( [ "$(id -u)" = 0 ] || echo sudo -n )
    $SUDO apt-get update -q && $SUDO apt-get install -y -q g++-aarch64-linux-gnu qemu-user mmdebstrap
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

# ---- 2. the runtime on an arm64 Python
start=$(date +%s)
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    rm -rf "$ROOT.tmp" && mkdir -p "$CACHE"
    mmdebstrap --quiet --variant=extract --arch=arm64 --include=python3,python3-numpy,libpython3.11-dev \
        bookworm "$ROOT.tmp" http://deb.debian.org/debian
    mv "$ROOT.tmp" "$ROOT"
fi
WHEELS=$CACHE/arm64-wheels
ls "$WHEELS"/safetensors-*.whl >/dev/null 2>&1 || $PY -m pip download -q --no-deps --only-binary=:all: \
    --platform manylinux2014_aarch64 --python-version 3.11 -d "$WHEELS" 'safetensors>=0.4,<1'
$PY -m nanobind --cmake_dir >/dev/null 2>&1 || $PY -m pip install -q nanobind
BUILD_PY=build/arm64-python
cmake -S . -B $BUILD_PY -DCMAKE_BUILD_TYPE=Release -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -Dnanobind_DIR="$($PY -m nanobind --cmake_dir)" \
    -DPython_EXECUTABLE="$(command -v python3.11 || echo "$PY")" -DPython_INCLUDE_DIR="$ROOT/usr/include/python3.11" \
    -DCMAKE_CXX_FLAGS="-I$ROOT/usr/include" >$BUILD_PY.log 2>&1 || { cat $BUILD_PY.log; exit 1; }
cmake --build $BUILD_PY -j 2 --target _core >>$BUILD_PY.log 2>&1 || { cat $BUILD_PY.log; exit 1; }
STAGE=build/arm64-stage
rm -rf $STAGE && mkdir -p $STAGE
cp -r src/xnorpp $STAGE/ && rm -f $STAGE/xnorpp/_core*.so
cp $BUILD_PY/_core*.so $STAGE/xnorpp/_core.cpython-311-aarch64-linux-gnu.so
$PY -m zipfile -e "$(ls "$WHEELS"/safetensors-*.whl | head -n 1)" $STAGE
echo "arm64: runtime built for an arm64 Python in $(( $(date +%s) - start )) s"

MODELS=build/arm64-models
$PY tests/arm64/export_models.py $MODELS >/dev/null
LIBS=/usr/aarch64-linux-gnu/lib:$ROOT/usr/lib/aarch64-linux-gnu/blas:$ROOT/usr/lib/aarch64-linux-gnu/lapack
# One thread: under qemu-user, threads that wait for each other by spinning crawl (the first model took minutes).
for cpu in max cortex-a72; do
    start=$(date +%s)
    qemu-aarch64 -cpu $cpu -L "$ROOT" -E LD_LIBRARY_PATH=$LIBS -E PYTHONPATH=$STAGE \
        -E XNORPP_NUM_THREADS=1 -E OPENBLAS_NUM_THREADS=1 \
        "$ROOT/usr/bin/python3" tests/arm64/check_runtime.py $MODELS
    echo "arm64: the runtime as $cpu in $(( $(date +%s) - start )) s"
done
