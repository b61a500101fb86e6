"""Models of vectors (an MLP, no conv) export and run; non-finite parameters are refused, naming the tensor."""

import re
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from torch import nn

from conftest import MAX_EXEMPT_SHARE, SIGN_TOLERANCE, randomize, sign_distances
from test_cli import run_cli
from test_export import _check_every_binary_layer
from xnorpp import runtime
from xnorpp.export import ExportError, export_model
from xnorpp.nn import BinaryLinear
from xnorpp.packed.format import read, write
from xnorpp.runtime import ModelFormatError
from xnorpp.scaling import LINEAR_SCALINGS

FEATURES = 37


def _mlp(scaling: str, seed: int = 1) -> nn.Module:
    """Issue #20's binary MLP: a real layer on the input, BN → binary linear → BN → PReLU, a real classifier."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(FEATURES, 64), nn.BatchNorm1d(64), BinaryLinear(64, 32, scaling=scaling),
                          nn.BatchNorm1d(32), nn.PReLU(32), nn.Linear(32, 10))
    return randomize(model, seed)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)


@pytest.mark.parametrize("scaling", LINEAR_SCALINGS)
def test_binary_mlp_exports_and_gives_pytorchs_logits(scaling, tmp_path):
    """Logits within 1e-4 of the largest of each row and the same argmax, as tests/test_export.py, except vectors
    with a sign input within SIGN_TOLERANCE of 0 in float64 (under 0.1 %)."""
    model = _mlp(scaling)
    x = _vectors(4000)
    path = export_model(model, tmp_path / "mlp.xnor", input_size=(FEATURES,))
    graph, _ = read(path)
    assert graph["input"] == {"name": "input_1", "channels": FEATURES, "size": []}
    packed = runtime.load(path)
    assert packed.input_shape == (FEATURES,) and packed.input_size == ()
    assert [s.kind for s in packed.steps].count("binary_linear") == 1

    keep = sign_distances(model, x) >= SIGN_TOLERANCE
    assert (~keep).mean() < MAX_EXEMPT_SHARE
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()[keep]
    got = packed.predict(x)[keep]
    scale = np.abs(expect).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - expect) <= 1e-4 * scale), np.abs(got - expect).max()
    np.testing.assert_array_equal(got.argmax(1), expect.argmax(1))
    one = packed(np.ascontiguousarray(x[0]))  # one vector (F,), as one image (C, H, W) is taken
    np.testing.assert_array_equal(one, packed(x[:1]))


def test_binary_layer_of_an_mlp_equals_pytorch_exactly(tmp_path):
    """The binary layer alone, fed PyTorch's input to it: PyTorch's own integer dot products of the signs."""
    _check_every_binary_layer(_mlp("xnor", 3), _vectors(64, 5), tmp_path / "m.xnor")


def test_vector_input_size_forms(tmp_path):
    """(features,), or nothing when the first layer is a Linear reading the input, or () with in_channels:
    the same file. A model that flattens images keeps needing (h, w), and says so, naming the vector form too."""
    model = _mlp("gamma-o")
    files = [export_model(model, tmp_path / "a.xnor", input_size=(FEATURES,)),
             export_model(model, tmp_path / "b.xnor"),
             export_model(model, tmp_path / "c.xnor", input_size=(), in_channels=FEATURES)]
    graphs = [read(f)[0] for f in files]
    assert graphs[0] == graphs[1] == graphs[2]
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    with pytest.raises(ExportError, match=r"pass input_size=\(h, w\) for images, or input_size=\(features,\)"):
        export_model(flat, tmp_path / "d.xnor", in_channels=3)
    assert runtime.load(export_model(flat, tmp_path / "d.xnor", input_size=(4, 4), in_channels=3)).input_shape \
        == (3, 4, 4)


@pytest.mark.parametrize("input_size, in_channels, message", [
    ((36,), None, r"'in_features' is 37, but its input has 36 .*the model does not run on vectors of 36 features"),
    ((0,), None, r"input_size must be \(h, w\) for images or \(features,\) for vectors, in positive integers; "
                 r"got \(0,\)"),
    ((37, 1, 1), None, r"got \(37, 1, 1\)"),
    ((37.5,), None, r"got \(37\.5,\)"),
    ("37", None, r"got '37'"),
    ((37,), 5, r"input_size=\(37,\) means vectors of 37 features, but in_channels=5"),
])
def test_bad_vector_sizes_are_refused_at_export(input_size, in_channels, message, tmp_path):
    with pytest.raises(ExportError, match=message):
        export_model(_mlp("gamma-o"), tmp_path / "m.xnor", input_size=input_size, in_channels=in_channels)
    assert not (tmp_path / "m.xnor").exists()


def test_the_runtime_refuses_inputs_of_another_shape(tmp_path):
    packed = runtime.load(export_model(_mlp("xnor-alpha"), tmp_path / "m.xnor", input_size=(FEATURES,)))
    assert packed(_vectors(3)).shape == (3, 10)
    for shape in [(3, FEATURES - 1), (3, FEATURES, 1, 1), (3, 1, FEATURES), (0, FEATURES), (FEATURES + 1,)]:
        with pytest.raises(ValueError, match=re.escape("expected an input of shape (N, 37): the model was exported "
                                                       f"for vectors of 37 features; got {shape}")):
            packed(np.zeros(shape, np.float32))
    with pytest.raises(TypeError, match="float32"):
        packed(_vectors(3).astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        packed(np.zeros((3, 2 * FEATURES), np.float32)[:, ::2])
    x = _vectors(3)
    x[2, 5] = np.nan
    with pytest.raises(ValueError, match="input contains NaN"):
        packed(x)


def test_the_schema_refuses_bad_vector_input_sizes(tmp_path):
    """size [] is a vector of 'channels' features; any other size but [H, W] is refused with what is valid, and a
    conv reading a vector names what it needs."""
    path = export_model(_mlp("gamma-o"), tmp_path / "m.xnor", input_size=(FEATURES,))
    graph, tensors = read(path)
    for size in ([FEATURES], [FEATURES, 1, 1], [0], None, [[]]):
        graph["input"]["size"] = size
        write(tmp_path / "bad.xnor", graph, tensors)
        with pytest.raises(ModelFormatError, match=r"graph 'input' must have .* a size: \[H, W\] \(integers in "
                                                   r"\[1, 16777216\]\) for images, or \[\] for vectors"):
            runtime.load(tmp_path / "bad.xnor")
    graph["input"]["size"] = [1, 1]  # (37, 1, 1): a feature map, which a linear layer does not read
    write(tmp_path / "map.xnor", graph, tensors)
    with pytest.raises(ModelFormatError, match=r"node '_0' \(linear, 0\): needs a vector input \(flatten first\), "
                                               r"got a feature map \(37, 1, 1\)"):
        runtime.load(tmp_path / "map.xnor")


def test_cli_runs_vectors_without_torch(tmp_path):
    """`xnorpp run --input x.npy --labels y.npy` on a model of vectors, in an interpreter that cannot import torch."""
    model = _mlp("gamma-o", 4)
    path = export_model(model, tmp_path / "m.xnor", input_size=(FEATURES,))
    x, y = _vectors(300, 6), np.random.default_rng(7).integers(0, 10, 300)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    result = run_cli(["run", str(path), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                      "--threads", "1"])
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        top1 = (model(torch.from_numpy(x)).numpy().argmax(1) == y).mean()
    assert f"top-1 {100 * top1:.2f}% on 300 images" in result.stdout
    np.save(tmp_path / "wrong.npy", _vectors(4)[:, :-1])
    result = run_cli(["run", str(path), "--input", str(tmp_path / "wrong.npy")])
    assert result.returncode == 2 and "expected vectors of shape (N, 37), got (4, 36)" in result.stderr


@pytest.mark.skipif(find_spec("openvino") is None, reason="openvino not installed")
def test_openvino_ir_of_an_mlp(tmp_path):
    import openvino as ov

    from xnorpp.export import openvino_model

    model = _mlp("xnor")
    x = _vectors(16, 9)
    path = export_model(model, tmp_path / "m.xnor", input_size=(FEATURES,))
    compiled = ov.Core().compile_model(openvino_model(path, len(x)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    assert sign_distances(model, x).min() >= SIGN_TOLERANCE
    np.testing.assert_allclose(compiled(x)[0], expect, rtol=0, atol=1e-4 * np.abs(expect).max())


# -- non-finite numbers ------------------------------------------------------------------------------------------
class EveryParameter(nn.Module):
    """Every kind of float parameter of a small model: conv and linear weights and biases (float32 or float16),
    batch norm scale and shift, Γ factors, α-free binary layers' bias, PReLU slopes, layer norm weight and bias."""

    def __init__(self):
        super().__init__()
        from xnorpp.nn import BinaryConv2d

        self.stem, self.bn = nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b1 = BinaryConv2d(8, 8, 3, padding=1, scaling="gamma-o-h-w", input_size=(6, 6))
        self.act = nn.PReLU(8)
        self.ln = nn.LayerNorm(8 * 36)
        self.fc = BinaryLinear(8 * 36, 6, scaling="gamma-o")
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.flatten(self.act(self.b1(self.bn(self.stem(x)))), 1)
        return self.head(self.fc(self.ln(x)))


@pytest.mark.parametrize("real_dtype", ["float32", "float16"])
def test_non_finite_parameters_are_refused_at_load_naming_the_tensor(real_dtype, tmp_path):
    model = randomize(EveryParameter(), 2)
    path = export_model(model, tmp_path / "m.xnor", input_size=(6, 6), real_dtype=real_dtype)
    graph, tensors = read(path)
    floats = sorted(name for name, t in tensors.items() if t.dtype.kind == "f")
    assert {"stem.weight", "bn.scale", "bn.shift", "b1.scale_channel", "b1.scale_height", "b1.scale_width",
            "act.slope", "ln.weight", "ln.bias", "fc.scale_channel", "head.weight", "head.bias"} <= set(floats)
    assert {str(tensors[n].dtype) for n in ("stem.weight", "head.weight")} == {real_dtype}
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    assert np.isfinite(runtime.load(path)(x)).all()
    for i, name in enumerate(floats):
        node, key = name.split(".", 1)
        for value, text in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
            edited = {k: v.copy() for k, v in tensors.items()}
            where = np.unravel_index(i % edited[name].size, edited[name].shape)
            edited[name][where] = value
            write(tmp_path / "bad.xnor", graph, edited)
            expected = (f"parameter '{key}' (tensor '{name}') holds 1 NaN or infinite value(s), the first {text} at "
                        f"index {tuple(int(j) for j in where)}; every parameter must be finite")
            with pytest.raises(ModelFormatError, match=rf"node '{node}' \(.*\): " + re.escape(expected)):
                runtime.load(tmp_path / "bad.xnor")


@pytest.mark.parametrize("buffer, value, message", [
    ("running_var", np.nan, r"running_var holds NaN or infinite values \(channels \[3\]\)"),
    ("running_mean", np.inf, r"running_mean holds NaN or infinite values \(channels \[3\]\)"),
    ("weight", np.nan, r"weight holds NaN or infinite values \(channels \[3\]\)"),
    ("running_var", -1.0, r"running_var \+ eps must be positive, got -0\.99999 \(channels \[3\]\)"),
])
def test_non_finite_batch_norm_statistics_are_refused_at_export(buffer, value, message, tmp_path):
    model = _mlp("gamma-o")
    with torch.no_grad():
        getattr(model[3], buffer)[3] = value
    with pytest.raises(ExportError, match=r"^3: BatchNorm " + message):
        export_model(model, tmp_path / "m.xnor", input_size=(FEATURES,))
    assert not (tmp_path / "m.xnor").exists()


def test_a_negative_layer_norm_eps_is_refused_at_load(tmp_path):
    """It made NaN of small variances, reported at run as an overflow of the next binary layer (found by the fuzz
    test's eps edits); eps 0 is PyTorch's to allow."""
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.LayerNorm(16), BinaryLinear(16, 4)).eval()
    path = export_model(model, tmp_path / "m.xnor", input_size=(FEATURES,))
    graph, tensors = read(path)
    for eps, ok in ((0, True), (0.0, True), (-1e-5, False), (-1, False)):
        graph["nodes"][1]["attrs"]["eps"] = eps
        write(tmp_path / "eps.xnor", graph, tensors)
        if ok:
            assert runtime.load(tmp_path / "eps.xnor")(_vectors(2)).shape == (2, 4)
            continue
        with pytest.raises(ModelFormatError, match=r"node '_1' \(layer_norm\): attribute 'eps' must be a "
                                                   r"finite number >= 0, got -"):
            runtime.load(tmp_path / "eps.xnor")


def test_a_nan_after_the_last_binary_layer_is_refused_not_returned(tmp_path):
    """Finite parameters can still overflow on some inputs, which the schema cannot know: here 0 · inf in the
    classifier, NaN in PyTorch too. The runtime says so, naming the node, instead of returning a NaN logit."""
    model = nn.Sequential(nn.Linear(4, 1, bias=False), nn.Linear(1, 2, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3e38, 3e38, 0, 0]]))
        model[1].weight.copy_(torch.tensor([[0.0], [1.0]]))
    packed = runtime.load(export_model(model, tmp_path / "m.xnor", input_size=(4,)))
    np.testing.assert_array_equal(packed(np.array([[0.25, 0.25, 1, 1]], np.float32)), [[0, np.float32(1.5e38)]])
    x = np.array([[2, 2, 0, 0]], np.float32)
    with torch.no_grad():
        assert torch.isnan(model(torch.from_numpy(x))).any()
    with pytest.raises(ModelFormatError, match=r"node '_1' \(linear, 1\): NaN appeared on this input"):
        packed(x)
