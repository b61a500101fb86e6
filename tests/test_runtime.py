"""The torch-free runtime: loading, input checks, bad files (truncated, corrupted, newer), CLI."""

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from xnorpp import _core, runtime
from xnorpp.export import export_model
from xnorpp.models import create
from xnorpp.runtime import ModelFormatError
from xnorpp.packed.format import FORMAT_VERSION, read, seal, write


@pytest.fixture(scope="module")
def packed_path(tmp_path_factory):
    torch.manual_seed(0)
    model = create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28), width=8).eval()
    return export_model(model, tmp_path_factory.mktemp("m") / "model.xnor", input_size=(28, 28),
                        dataset="fashion-mnist")


def _x(n=2):
    return np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_runtime_never_imports_torch(packed_path):
    code = ("import sys, numpy as np, xnorpp.runtime as r\n"
            f"m = r.load({str(packed_path)!r}, threads=1)\n"
            "y = m(np.zeros((3, 1, 28, 28), np.float32))\n"
            "assert y.shape == (3, 10) and r.num_threads() == 1\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_input_checks(packed_path):
    m = runtime.load(packed_path)
    assert m(_x()).shape == (2, 10)
    assert m(_x()[0]).shape == (1, 10)  # one image (C, H, W)
    with pytest.raises(TypeError, match="float32"):
        m(_x().astype(np.float64))
    with pytest.raises(TypeError, match="numpy"):
        m(_x().tolist())
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        m(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="resolution"):
        m(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        m(np.zeros((2, 1, 28, 56), np.float32)[..., ::2])
    x = _x()
    x[1, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="input contains NaN"):  # the input's fault, not the model's
        m(x)
    with pytest.raises(ValueError, match="input contains NaN"):
        m.check_input(x)
    with pytest.raises(ValueError, match="without a matching"):  # every call released its hold on the threads
        _core.hold_workers(False)


def test_output_memory_is_recycled_but_never_shared(packed_path):
    """Freed output arrays lend their memory to the next ones of the same size (no page faults on repeated
    calls): a recycled block's old contents never reach a result, and an array the caller holds is never reused."""
    m = runtime.load(packed_path)
    xa, xb = _x(), -2 * _x()
    assert _core.recycle_buffers(False) is True  # on by default
    try:
        fresh_a, fresh_b = m(xa), m(xb)
        assert not np.array_equal(fresh_a, fresh_b)
        assert _core.recycle_buffers(True) is False
        held = m(xa)
        for _ in range(3):  # every intermediate now comes from a block of the calls before, with its values
            recycled_b = m(xb)
        np.testing.assert_array_equal(recycled_b, fresh_b)
        np.testing.assert_array_equal(held, fresh_a)  # held through the calls: not recycled under the caller
        image = np.arange(3 * 40 * 50, dtype=np.float32).reshape(1, 3, 40, 50)
        for _ in range(5):  # the block of a freed array waits for its size; a smaller array does not take it
            first = _core.to_nhwc(image)
            address = first.ctypes.data
            del first
            smaller = _core.to_nhwc(image[:, :, :20].copy())
            second = _core.to_nhwc(image[:, ::-1].copy())
            assert second.ctypes.data == address and address % 64 == 0
            np.testing.assert_array_equal(second, image[:, ::-1].transpose(0, 2, 3, 1))
            del smaller, second
    finally:
        _core.recycle_buffers(True)


def test_truncated_file(packed_path, tmp_path):
    blob = packed_path.read_bytes()
    for size in (0, 5, 8, 100, len(blob) // 2, len(blob) - 1):
        bad = tmp_path / f"t{size}.xnor"
        bad.write_bytes(blob[:size])
        with pytest.raises(ModelFormatError):
            runtime.load(bad)


def _rewrite_metadata(blob: bytes, **changes) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n:]


def test_newer_format_version_and_other_files(packed_path, tmp_path):
    newer = tmp_path / "newer.xnor"
    newer.write_bytes(_rewrite_metadata(packed_path.read_bytes(), format_version=str(FORMAT_VERSION + 1)))
    with pytest.raises(ModelFormatError, match="newer"):
        runtime.load(newer)
    other = tmp_path / "other.xnor"
    other.write_bytes(_rewrite_metadata(packed_path.read_bytes(), format="something-else"))
    with pytest.raises(ModelFormatError, match="not a packed xnorpp model"):
        runtime.load(other)
    with pytest.raises(FileNotFoundError):
        runtime.load(tmp_path / "missing.xnor")
    flipped = packed_path.read_bytes().replace(b'"format_version":"2"', b'"format_version":"3"', 1)
    assert flipped != packed_path.read_bytes()
    (tmp_path / "flipped.xnor").write_bytes(flipped)  # one bit: '1' -> '3'; the checksum no longer matches
    with pytest.raises(ModelFormatError, match="newer.*or the file is corrupted"):
        runtime.load(tmp_path / "flipped.xnor")
    blob = packed_path.read_bytes()
    (tmp_path / "old.xnor").write_bytes(seal(_rewrite_metadata(blob, format_version="1")))
    with pytest.raises(ModelFormatError, match=r"older xnorpp; re-export the model with xnorpp >= 0\.2"):
        runtime.load(tmp_path / "old.xnor")
    graph, tensors = read(packed_path)
    edited = tmp_path / "edited.xnor"
    edited.write_bytes(_rewrite_metadata(packed_path.read_bytes(), graph=json.dumps(graph, indent=1)))
    with pytest.raises(ModelFormatError, match="checksum"):  # the checksum covers the graph too
        runtime.load(edited)
    graph["nodes"][0]["op"] = "lstm"  # a well-formed file whose graph this runtime cannot run
    write(tmp_path / "op.xnor", graph, tensors)
    with pytest.raises(ModelFormatError, match="lstm"):
        runtime.load(tmp_path / "op.xnor")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_cli_run_fashion_mnist(packed_path, tmp_path):
    # A small IDX test split of our own, so the test needs no downloaded data.
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (300, 28, 28)), rng.integers(0, 10, 300)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    result = subprocess.run([sys.executable, "-m", "xnorpp", "run", str(packed_path), "--dataset", "fashion-mnist",
                             "--data-root", str(tmp_path), "--threads", "1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "top-1" in result.stdout and "300 images" in result.stdout
    x = ((images[:, None] / np.float32(255) - np.float32(0.2860)) / np.float32(0.3530)).astype(np.float32)
    top1 = (runtime.load(packed_path).predict(np.ascontiguousarray(x)).argmax(1) == labels).mean()
    assert f"top-1 {100 * top1:.2f}%" in result.stdout
    bad = tmp_path / "bad.xnor"
    bad.write_bytes(b"not a model")
    result = subprocess.run([sys.executable, "-m", "xnorpp", "run", str(bad), "--dataset", "fashion-mnist"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "xnorpp run:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("edit, field", [
    (lambda g: g["nodes"][0]["attrs"].update(stride=[10**400, 1]), "stride"),
    (lambda g: g["nodes"][0]["attrs"].update(padding=[2**24, 2**24, 0, 0]), "elements"),
    (lambda g: g["nodes"][0]["attrs"].pop("kernel"), "kernel"),
    (lambda g: g["nodes"][0]["attrs"].update(colour="red"), "unknown attributes"),
    (lambda g: g["nodes"][1].update(inputs=[g["nodes"][2]["name"]]), "inputs"),
    (lambda g: g["nodes"].append({"name": "h", "op": "hardtanh", "inputs": [g["output"]], "attrs":
                                  {"min": -10**400, "max": 1}, "params": {}}), "'min'"),
    (lambda g: g["nodes"].append({"name": "p", "op": "adaptive_avg_pool2d", "inputs": ["x"], "attrs":
                                  {"output_size": [2**15, 2**15]}, "params": {}}), "elements"),
    (lambda g: g["input"].update(channels=10**400), "channels"),
    (lambda g: g["input"].update(size=[28]), r"a size: \[H, W\] .* for images, or \[\] for vectors"),
    (lambda g: g["input"].update(size=[]), r"needs a feature map \(C, H, W\) as input, got a vector of 1 features"),
    (lambda g: g["nodes"][0]["attrs"].update(kernel=[3, 3000]), "smaller than the kernel"),
])
def test_bad_graphs_are_refused_at_load_naming_the_field(packed_path, tmp_path, edit, field):
    graph, tensors = read(packed_path)
    edit(graph)
    write(tmp_path / "bad.xnor", graph, tensors)
    with pytest.raises(ModelFormatError, match=field):
        runtime.load(tmp_path / "bad.xnor")


def test_a_header_length_that_looks_like_a_pickle_is_still_a_header_length():
    # 640 = 0x280 is written b"\x80\x02...", the first bytes of a protocol-2 pickle: only an impossible length
    # makes the reader call the file a PyTorch one.
    from xnorpp.packed.format import _header_length

    blob = struct.pack("<Q", 640) + b" " * 640
    assert blob.startswith(b"\x80\x02") and _header_length(blob, "f") == 640
    with pytest.raises(ModelFormatError, match="is a PyTorch file"):
        _header_length(b"\x80\x02}q\x00(X\x05\x00\x00\x00model", "f")
