"""Packaging: the base install is the torch-free runtime, the rest comes with the `train` extra.

The slow test builds a wheel of this checkout, installs it with its base dependencies only into a
fresh virtual env (numpy and safetensors come from the package index) and checks there, without
PyTorch, that a model exported here runs to the same outputs and that the CLI behaves.
Run it with ``pytest -m slow tests/test_install.py`` (or ``-m 'slow or not slow'``).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

import xnorpp

ROOT = Path(__file__).resolve().parents[1]
BASE_DEPENDENCIES = {"numpy", "safetensors"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _name(requirement: str) -> str:
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i].lower()
    return requirement.lower()


def test_base_dependencies_are_torch_free_and_the_extras_hold_the_rest():
    project = _pyproject()["project"]
    assert {_name(r) for r in project["dependencies"]} == BASE_DEPENDENCIES
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert extras["train"] == {"torch", "torchvision", "tqdm", "matplotlib", "tensorboard"}
    assert {"pytest", "scikit-learn"} <= extras["dev"]
    assert {"onnx", "onnxruntime", "openvino"} <= extras["bench"]
    assert project["version"] == xnorpp.__version__
    assert (ROOT / "LICENSE").is_file()


def _run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, \
        f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow
def test_wheel_installs_without_torch_and_runs_packed_models(tmp_path):
    torch = pytest.importorskip("torch")  # this environment exports the model
    from xnorpp import models, runtime
    from xnorpp.export import export_model

    # 1. A small exported model and its outputs here, in the development environment.
    torch.manual_seed(0)
    model = models.create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28), width=8).eval()
    with torch.no_grad():  # learned-looking factors and batch-norm statistics instead of the initial ones
        for name, p in model.named_parameters():
            if "scale_" in name:
                p.uniform_(0.5, 1.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    packed = export_model(model, tmp_path / "model.xnor", input_size=(28, 28), dataset="fashion-mnist")
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = runtime.load(packed)(x)

    # 2. A wheel of this checkout, built outside the source tree's build/ folder (the editable install's).
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--disable-pip-version-check", "-w", wheels,
             f"--config-settings=build-dir={tmp_path / 'build'}"]
    if find_spec("scikit_build_core") and find_spec("nanobind"):  # the build requirements are here
        build.append("--no-build-isolation")
    _run(build, timeout=600)
    (wheel,) = wheels.glob("xnorpp-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licenses = [n for n in names if n.split("/")[0].endswith(".dist-info") and n.endswith("/LICENSE")]
        assert licenses, names
        assert zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    required = {_name(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert required == BASE_DEPENDENCIES
    assert any(n.startswith("xnorpp/_core") for n in names)

    # 3. A fresh virtual env with the wheel and its base dependencies only.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=300)
    py, cli = venv / "bin" / "python", venv / "bin" / "xnorpp"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _run([py, "-m", "pip", "install", "--disable-pip-version-check", wheel], timeout=600, env=env)
    no_torch = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    # 4. There: the same outputs, and no torch (nor anything of the train extra) imported.
    script = ("import sys, numpy as np, xnorpp, xnorpp.runtime\n"
              "assert xnorpp.__file__.startswith(sys.prefix), xnorpp.__file__\n"
              "m = xnorpp.runtime.load(sys.argv[1])\n"
              "np.save(sys.argv[3], m(np.load(sys.argv[2])))\n"
              "heavy = {'torch', 'torchvision', 'tqdm', 'matplotlib', 'tensorboard'}\n"
              "assert not heavy & {k.partition('.')[0] for k in sys.modules}, sorted(sys.modules)\n"
              "print(xnorpp.__version__)\n")
    out = _run([py, "-c", script, packed, tmp_path / "x.npy", tmp_path / "y.npy"], env=env, cwd=tmp_path,
               timeout=120)
    assert out.stdout.strip() == xnorpp.__version__
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6)

    # 5. The CLI there: help of the torch-free commands, `xnorpp run` on a small IDX test split, and
    # a command of the train extra says which extra to install, in one line.
    for argv in (["--help"], ["run", "--help"], ["export", "--help"]):
        assert "usage: xnorpp" in _run([cli, *argv], env=env, cwd=tmp_path, timeout=60).stdout
    rng = np.random.default_rng(1)
    data = tmp_path / "fmnist"
    data.mkdir()
    _write_idx(data / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (64, 28, 28)))
    _write_idx(data / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 64))
    ran = _run([cli, "run", packed, "--dataset", "fashion-mnist", "--data-root", data], env=env, cwd=tmp_path,
               timeout=120)
    assert "top-1" in ran.stdout and "64 images" in ran.stdout
    for argv in (["train", "--list"], ["export", tmp_path / "model.pt", "-o", tmp_path / "out.xnor"]):
        result = subprocess.run([str(a) for a in [cli, *argv]], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=60)
        assert result.returncode != 0
        assert result.stderr == (f"xnorpp {argv[0]}: this command needs PyTorch; install it with: "
                                 "pip install 'xnorpp[train]'\n")
