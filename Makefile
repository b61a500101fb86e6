# Two commands do all the set-up on a fresh machine:
#   make demo   installs into .venv, gets Fashion-MNIST, trains and evaluates the main model
#   make test   installs into .venv and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xnorpp-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test install fashion-mnist bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One pip call installs the project (compiling csrc/) with all its dependencies.
# It reruns when the packaging or the C++ sources change.
$(STAMP): $(BIN)/python pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

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

bench: install
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_resnet18.py

clean:
	rm -rf build $(VENV)
