# Two commands do all the set-up on a fresh machine:
#   make demo   installs into .venv, gets Fashion-MNIST, trains and evaluates the main model
#   make test   installs into .venv and runs the whole test suite
# and `make test-arm64` checks the ARM64 build under emulation (installs a cross compiler and qemu-user with apt).
# and `make bench` installs the `bench` extra too (ONNX Runtime, OpenVINO) and runs the benchmarks.
# The base install (pip install xnorpp) is the torch-free runtime; these targets add the extras
# `train` (PyTorch, ...), `dev` (pytest, scikit-learn) and, for make bench, `bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xnorpp-installed
BENCH_STAMP := $(VENV)/.xnorpp-bench-installed
# What a reinstall depends on: the packaging and the C++ sources.
SOURCES := pyproject.toml CMakeLists.txt $(wildcard csrc/*)
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-arm64 install install-bench fashion-mnist bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One pip call installs the project (compiling csrc/) with the extras it needs.
# It reruns when the packaging or the C++ sources change.
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[train,dev]'
	touch $@

# The bench install is a superset of the plain one, so it renews both stamps.
$(BENCH_STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[train,dev,bench]'
	touch $@ $(STAMP)

install: $(STAMP)

install-bench: $(BENCH_STAMP)

# Debian's dataset-fashion-mnist, when apt is available and the files are missing;
# otherwise xnorpp downloads it (with checksums) or says how to get it.
fashion-mnist:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  ($$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist) \
	    || echo "note: could not install dataset-fashion-mnist with apt; xnorpp will try to download it"; \
	fi

demo: install fashion-mnist
	$(BIN)/xnorpp demo

test: install
	$(BIN)/python -m pytest -q

# The aarch64 build under qemu-user: the NEON units against the portable one, and the runtime on an arm64
# Python running files exported here (scripts/test-arm64.sh).
test-arm64: install
	PYTHON=$(BIN)/python scripts/test-arm64.sh

# The engines twice: every engine at this CPU's best, then as on an AVX2-only CPU (issue #9's targets).
bench: install-bench
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_resnet18.py
	$(BIN)/python benchmarks/bench_engines.py
	$(BIN)/python benchmarks/bench_engines.py --isa avx2 --engines-isa avx2

clean:
	rm -rf build $(VENV)
