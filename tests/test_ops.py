"""Each op of the packed runtime against PyTorch (float64) on random shapes, through export and load.

Every test builds a small PyTorch model around one op (its module, function or tensor-method form), exports it,
runs the packed model and compares with the float64 evaluation of the same model: the runtime computes in
float32, so outputs must agree within a few float32 roundings (``RTOL`` of the output's largest magnitude).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnorpp import runtime
from xnorpp.export import ExportError, export_model
from xnorpp.nn import BinaryLinear
from xnorpp.packed import Graph, ModelFormatError
from xnorpp.runtime import kernels

RTOL = 2e-6
SEEDS = [0, 1, 2]


class Lambda(nn.Module):
    """A model whose forward is ``fn``, optionally after a real conv (so the graph has a first layer)."""

    def __init__(self, fn, channels: int | None = None, **modules):
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(channels, channels, 1) if channels else None
        for key, m in modules.items():
            setattr(self, key, m)

    def forward(self, x):
        return self.fn(self, self.conv(x) if self.conv is not None else x)


def _shape(seed: int, min_channels: int = 1):
    rng = np.random.default_rng(seed)
    return int(rng.integers(min_channels, 13)), int(rng.integers(1, 9)), int(rng.integers(1, 9))


def _input(seed: int, c: int, h: int, w: int, scale: float = 3.0, n: int = 3) -> np.ndarray:
    return (np.random.default_rng(100 + seed).standard_normal((n, c, h, w)) * scale).astype(np.float32)


def _check(model: nn.Module, x: np.ndarray, tmp_path, rtol: float = RTOL, **export) -> runtime.PackedModel:
    model = model.eval()
    packed = runtime.load(export_model(model, tmp_path / "m.xnor", input_size=x.shape[2:],
                                       in_channels=x.shape[1], **export))
    got = packed(x)
    with torch.no_grad():
        expect = model.double()(torch.from_numpy(x).double()).numpy()
    assert got.shape == expect.shape
    scale = max(np.abs(expect).max(), 1e-30)
    np.testing.assert_allclose(got, expect, rtol=0, atol=rtol * scale)
    return packed


def _ops(packed) -> set[str]:
    return {n.op for n in packed.graph.nodes}


# ----------------------------------------------------------------------------------------------- activations
ACTIVATIONS = {
    "Hardswish": (lambda s, x: s.m(x), nn.Hardswish, "hardswish"),
    "F.hardswish": (lambda s, x: F.hardswish(x), None, "hardswish"),
    "Hardsigmoid": (lambda s, x: s.m(x), nn.Hardsigmoid, "hardsigmoid"),
    "F.hardsigmoid": (lambda s, x: F.hardsigmoid(x), None, "hardsigmoid"),
    "SiLU": (lambda s, x: s.m(x), nn.SiLU, "silu"),
    "F.silu": (lambda s, x: F.silu(x), None, "silu"),
    "Sigmoid": (lambda s, x: s.m(x), nn.Sigmoid, "sigmoid"),
    "torch.sigmoid": (lambda s, x: torch.sigmoid(x), None, "sigmoid"),
    "x.sigmoid()": (lambda s, x: x.sigmoid(), None, "sigmoid"),
    "Tanh": (lambda s, x: s.m(x), nn.Tanh, "tanh"),
    "torch.tanh": (lambda s, x: torch.tanh(x), None, "tanh"),
    "GELU": (lambda s, x: s.m(x), nn.GELU, "gelu"),
    "GELU(tanh)": (lambda s, x: s.m(x), lambda: nn.GELU(approximate="tanh"), "gelu"),
    "F.gelu": (lambda s, x: F.gelu(x), None, "gelu"),
    "ReLU6": (lambda s, x: s.m(x), nn.ReLU6, "hardtanh"),
    "F.relu6": (lambda s, x: F.relu6(x), None, "hardtanh"),
    "torch.clamp": (lambda s, x: torch.clamp(x, -1.5, 2.0), None, "hardtanh"),
    "x.clamp(min)": (lambda s, x: x.clamp(min=0.5), None, "hardtanh"),
    "x.clamp(max)": (lambda s, x: x.clamp(max=-0.25), None, "hardtanh"),
    "F.hardtanh": (lambda s, x: F.hardtanh(x, -0.5, 0.75), None, "hardtanh"),
    "F.relu": (lambda s, x: F.relu(x), None, "relu"),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("form", list(ACTIVATIONS))
def test_activations(form, seed, tmp_path):
    fn, module, op = ACTIVATIONS[form]
    c, h, w = _shape(seed)
    model = Lambda(fn, c, **({"m": module()} if module else {}))
    packed = _check(model, _input(seed, c, h, w), tmp_path)
    assert op in _ops(packed)


def test_gelu_erf_and_sigmoid_precision():
    """The erf GELU against PyTorch's float64 GELU of the same float32 inputs, over the whole range."""
    x = np.concatenate([np.linspace(-12, 12, 200_001), [-1e4, -100.0, -0.0, 0.0, 100.0, 1e4]]).astype(np.float32)
    node = Graph.from_json({"input": {"name": "x", "channels": 1, "size": [1, 1]}, "output": "g", "nodes": [
        {"name": "g", "op": "gelu", "inputs": ["x"], "attrs": {"approximate": "none"}, "params": {}}]}, {}).nodes[0]
    got = kernels.gelu(type("S", (), {"node": node})(), None)(x)
    expect = F.gelu(torch.from_numpy(x).double()).numpy()
    # erf rounded to float32, then x·0.5·(1 + erf) in float32: within 1.2e-7·|x| (PyTorch's own: 3.5e-7·|x|)
    assert np.all(np.abs(got - expect) <= 1.5e-7 * np.abs(x) + 1e-38)
    z = np.linspace(-6, 6, 100_001)
    erf = kernels.erf(z.astype(np.float32))
    exact = np.array([math.erf(float(v)) for v in z.astype(np.float32)])
    assert np.abs(erf - exact).max() <= 1.3e-7


# ----------------------------------------------------------------------------------------------- layer norm
class ConvNeXtNorm(nn.LayerNorm):
    """torchvision's LayerNorm2d: a LayerNorm subclass whose forward permutes around F.layer_norm."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _random_affine(m: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("form", ["permute+LayerNorm", "LayerNorm2d", "no affine", "vector"])
def test_layer_norm_over_channels(form, seed, tmp_path):
    c, h, w = _shape(seed, min_channels=2)
    eps = [1e-5, 1e-6, 0.1][seed]
    if form == "permute+LayerNorm":
        model = Lambda(lambda s, x: s.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), c,
                       ln=_random_affine(nn.LayerNorm(c, eps=eps), seed))
    elif form == "LayerNorm2d":
        model = Lambda(lambda s, x: s.ln(x), c, ln=_random_affine(ConvNeXtNorm(c, eps=eps), seed))
    elif form == "no affine":
        model = Lambda(lambda s, x: F.layer_norm(x.permute(0, 2, 3, 1), (c,), eps=eps).permute(0, 3, 1, 2), c)
    else:
        model = Lambda(lambda s, x: s.ln(torch.flatten(x, 1)), c, ln=_random_affine(nn.LayerNorm(c * h * w), seed))
    packed = _check(model, _input(seed, c, h, w) + 2.0, tmp_path)
    assert "layer_norm" in _ops(packed)


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_gelu_on_channels_last(seed, tmp_path):
    """ConvNeXt's block: permute, LayerNorm, Linear, GELU, Linear, permute back, a per-channel scale, a residual."""
    c, h, w = _shape(seed, min_channels=2)
    model = Lambda(lambda s, x: x + s.gamma * s.fc2(F.gelu(s.fc1(s.ln(x.permute(0, 2, 3, 1))))).permute(0, 3, 1, 2),
                   c, ln=_random_affine(nn.LayerNorm(c), seed), fc1=nn.Linear(c, 3 * c), fc2=nn.Linear(3 * c, c))
    model.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
    packed = _check(model, _input(seed, c, h, w), tmp_path)
    assert {"layer_norm", "conv2d", "gelu", "batch_norm", "add"} <= _ops(packed)


def test_binary_linear_on_channels_last_is_a_pointwise_binary_conv(tmp_path):
    """A BinaryLinear over the channels of each pixel runs as a 1×1 binary conv, exactly (float32 reference)."""
    torch.manual_seed(0)
    model = Lambda(lambda s, x: s.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), 40,
                   fc=BinaryLinear(40, 24, scaling="gamma-o")).eval()
    with torch.no_grad():
        model.fc.scale_channel.copy_(torch.rand(24) + 0.5)
    x = _input(0, 40, 5, 6)
    packed = runtime.load(export_model(model, tmp_path / "m.xnor", input_size=(5, 6)))
    assert "binary_conv2d" in _ops(packed)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(packed(x), expect, rtol=1e-6, atol=1e-6 * np.abs(expect).max())


# ----------------------------------------------------------------------------------------------- arithmetic
ARITHMETIC = {
    "x * gate(C,1,1)": lambda s, x: x * torch.sigmoid(x.mean((2, 3), keepdim=True)),
    "gate * x": lambda s, x: torch.sigmoid(F.adaptive_avg_pool2d(x, 1)) * x,
    "x + y": lambda s, x: x + s.other(x),
    "x - y": lambda s, x: x - s.other(x),
    "y(C,1,1) - x": lambda s, x: x.amax((2, 3), keepdim=True) - x,
    "torch.mul": lambda s, x: torch.mul(x, s.other(x)),
    "torch.sub": lambda s, x: torch.sub(s.other(x), x),
    "x.mul_": lambda s, x: s.other(x).mul_(x),
    "x * 2.5": lambda s, x: x * 2.5,
    "3 - x": lambda s, x: 3 - x,
    "x + 0.5": lambda s, x: x + 0.5,
    "x / const": lambda s, x: x * s.scale,
    "param * x": lambda s, x: s.scale * x - s.shift,
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("form", list(ARITHMETIC))
def test_elementwise_arithmetic_with_broadcast(form, seed, tmp_path):
    c, h, w = _shape(seed)
    model = Lambda(ARITHMETIC[form], c, other=nn.Conv2d(c, c, 3, padding=1))
    model.scale = nn.Parameter(torch.randn(c, 1, 1))
    model.register_buffer("shift", torch.randn(1, c, 1, 1))
    _check(model, _input(seed, c, h, w), tmp_path)


# ----------------------------------------------------------------------------------------------- channels
@pytest.mark.parametrize("seed", SEEDS)
def test_concat_along_channels(seed, tmp_path):
    rng = np.random.default_rng(seed)
    c, h, w = _shape(seed)
    widths = [int(v) for v in rng.integers(1, 6, size=int(rng.integers(2, 5)))]
    branches = nn.ModuleList(nn.Conv2d(c, k, 3, padding=1) for k in widths)
    dim = [1, -3, 1][seed]
    model = Lambda(lambda s, x: torch.cat([b(x) for b in s.branches] + [x], dim), c, branches=branches)
    packed = _check(model, _input(seed, c, h, w), tmp_path)
    assert "concat" in _ops(packed)
    vectors = Lambda(lambda s, x: torch.cat([torch.flatten(x, 1), x.mean((2, 3))], 1), c)
    _check(vectors, _input(seed, c, h, w), tmp_path)


@pytest.mark.parametrize("seed", SEEDS)
def test_chunk_split_and_channel_shuffle(seed, tmp_path):
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(2, 5))
    c = groups * int(rng.integers(1, 5))
    _, h, w = _shape(seed)

    def shuffle(x, g):  # torchvision's shufflenetv2.channel_shuffle
        batchsize, num_channels, height, width = x.size()
        x = x.view(batchsize, g, num_channels // g, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batchsize, num_channels, height, width)

    k = int(rng.integers(2, 4))
    pieces = -(-c // -(-c // k))  # torch.chunk's count: chunks of ceil(c / k) channels

    def forward(s, x):
        parts = x.chunk(k, dim=1)
        return shuffle(torch.cat([parts[i] * (i + 1) for i in range(pieces)], 1), groups) if pieces > 1 \
            else shuffle(parts[0], groups)

    model = Lambda(forward, c)
    packed = _check(model, _input(seed, c, h, w), tmp_path)
    assert {"channel_slice", "channel_shuffle"} <= _ops(packed)
    if c > 1:
        sizes = [1, c - 1]
        def swap(s, x):
            first, rest = torch.split(x, sizes, dim=1)
            return torch.cat([rest, first], 1)

        split = Lambda(swap, c)
        _check(split, _input(seed, c, h, w), tmp_path)


# ----------------------------------------------------------------------------------------------- pools, flatten
REDUCTIONS = {
    "x.mean([2, 3])": lambda s, x: x.mean([2, 3]),
    "mean keepdim": lambda s, x: x.mean((-2, -1), keepdim=True),
    "torch.mean": lambda s, x: torch.mean(x, dim=(2, 3)),
    "x.amax((2, 3))": lambda s, x: x.amax((2, 3)),
    "torch.amax keepdim": lambda s, x: torch.amax(x, (3, 2), keepdim=True),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("form", list(REDUCTIONS))
def test_mean_and_amax_over_h_w(form, seed, tmp_path):
    c, h, w = _shape(seed)
    packed = _check(Lambda(REDUCTIONS[form], c), _input(seed, c, h, w), tmp_path)
    assert "global_pool" in _ops(packed)


@pytest.mark.parametrize("seed", SEEDS)
def test_functional_pools(seed, tmp_path):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 6))
    h, w = (int(v) for v in rng.integers(5, 14, size=2))
    k, stride, pad = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    oh, ow = (int(v) for v in rng.integers(1, 8, size=2))
    model = Lambda(lambda s, x: torch.cat([
        F.max_pool2d(x, k, stride, pad, ceil_mode=bool(seed % 2)),
        F.avg_pool2d(x, kernel_size=k, stride=stride, padding=pad, ceil_mode=bool(seed % 2),
                     count_include_pad=seed != 1)], 1), c)
    _check(model, _input(seed, c, h, w), tmp_path)
    _check(Lambda(lambda s, x: F.adaptive_avg_pool2d(x, (oh, ow)), c), _input(seed, c, h, w), tmp_path)


FLATTENS = {
    "nn.Flatten()": lambda s, x: s.flat(x),
    "torch.flatten(x, 1)": lambda s, x: torch.flatten(x, 1),
    "x.flatten(start_dim=-3)": lambda s, x: x.flatten(start_dim=-3),
    "x.view(x.size(0), -1)": lambda s, x: x.view(x.size(0), -1),
    "x.reshape(n, c*h*w)": lambda s, x: x.reshape(x.shape[0], x.shape[1] * x.shape[2] * x.shape[3]),
    "x.mean keepdim, flatten(1)": lambda s, x: x.mean((2, 3), keepdim=True).flatten(1),
    "flatten twice": lambda s, x: torch.flatten(torch.flatten(x, 1), 1),
}


@pytest.mark.parametrize("form", list(FLATTENS))
def test_flatten_forms(form, tmp_path):
    c, h, w = _shape(5)
    model = Lambda(lambda s, x: s.fc(FLATTENS[form](s, x)), c, flat=nn.Flatten(),
                   fc=nn.Linear(c if "mean" in form else c * h * w, 3))
    _check(model, _input(5, c, h, w), tmp_path)


def test_dropout_and_identity_are_no_ops(tmp_path):
    model = Lambda(lambda s, x: s.drop(s.ident(x)) + s.drop2(x), 4, drop=nn.Dropout(0.5), ident=nn.Identity(),
                   drop2=nn.Dropout(0.3))
    packed = _check(model, _input(0, 4, 5, 5), tmp_path)
    assert _ops(packed) == {"conv2d", "add"}


# ----------------------------------------------------------------------------------------------- refusals
REFUSED = {
    "permute(0, 2, 1, 3)": (lambda s, x: x.permute(0, 2, 1, 3), r"module 'block'.*permute\(0, 2, 1, 3\)"),
    "cat along H": (lambda s, x: torch.cat([x, x], 2), r"module 'block'.*along dim 2"),
    "mean over C": (lambda s, x: x.mean(1), r"module 'block'.*only over H and W"),
    "x[:, :2]": (lambda s, x: x[:, :2], r"'getitem'.*module 'block'"),
    "flatten(2)": (lambda s, x: torch.flatten(x, 2), r"module 'block'.*reshaping \(2, 4, 5, 5\) to \(2, 4, 25\)"),
    "conv on channels last": (lambda s, x: s.conv2(x.permute(0, 2, 3, 1)), r"channels last"),
    "x * (1, H, W) constant": (lambda s, x: x * s.map, r"per-channel constants"),
    "torch.exp": (lambda s, x: torch.exp(x), r"'exp'.*module 'block'"),
}


@pytest.mark.parametrize("form", list(REFUSED))
def test_unsupported_operations_are_named(form, tmp_path):
    fn, message = REFUSED[form]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv2 = nn.Conv2d(4, 4, 1)
            self.map = nn.Parameter(torch.ones(1, 5, 5))

        def forward(self, x):
            return fn(self, x)

    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(4, 4, 1))
    model.add_module("block", Block())
    with pytest.raises(ExportError, match=message):
        export_model(model, tmp_path / "m.xnor", input_size=(5, 5))


# ----------------------------------------------------------------------------------------------- the schema
def _graph(nodes, channels=4, size=(3, 3)):
    return {"input": {"name": "x", "channels": channels, "size": list(size)}, "output": nodes[-1]["name"],
            "nodes": [dict(n, attrs=n.get("attrs", {}), params={}) for n in nodes]}


@pytest.mark.parametrize("nodes, message", [
    ([{"name": "f", "op": "flatten", "inputs": ["x"]}, {"name": "c", "op": "concat", "inputs": ["x", "f"]}],
     "concatenates values of shapes"),
    ([{"name": "c", "op": "concat", "inputs": ["x"]}], r"must list 2 to 1024 value"),
    ([{"name": "s", "op": "channel_slice", "inputs": ["x"], "attrs": {"start": 2, "stop": 5}}], r"\[2, 5\)"),
    ([{"name": "s", "op": "channel_slice", "inputs": ["x"], "attrs": {"start": 3, "stop": 3}}], "non-empty"),
    ([{"name": "s", "op": "channel_shuffle", "inputs": ["x"], "attrs": {"groups": 3}}], "multiple of groups"),
    ([{"name": "p", "op": "global_pool", "inputs": ["x"], "attrs": {"mode": "mean", "keepdim": True}},
      {"name": "f", "op": "flatten", "inputs": ["x"]}, {"name": "m", "op": "mul", "inputs": ["p", "f"]}],
     "cannot combine values of shapes"),
    ([{"name": "h", "op": "hardtanh", "inputs": ["x"], "attrs": {"min": 2.0, "max": 1.0}}], "less than"),
    ([{"name": "h", "op": "hardtanh", "inputs": ["x"], "attrs": {}}], "'min', 'max' or both"),
    ([{"name": "g", "op": "gelu", "inputs": ["x"], "attrs": {"approximate": "erf"}}], "one of 'none', 'tanh'"),
    ([{"name": "l", "op": "layer_norm", "inputs": ["x"], "attrs": {}}], "'eps' is missing"),
])
def test_schema_refuses_bad_nodes(nodes, message):
    with pytest.raises(ModelFormatError, match=message):
        Graph.from_json(_graph(nodes), {})


def test_shapes_are_inferred():
    graph = Graph.from_json(_graph([
        {"name": "p", "op": "global_pool", "inputs": ["x"], "attrs": {"mode": "max", "keepdim": True}},
        {"name": "m", "op": "mul", "inputs": ["p", "x"]},
        {"name": "s", "op": "channel_slice", "inputs": ["m"], "attrs": {"start": 1, "stop": 3}},
        {"name": "c", "op": "concat", "inputs": ["m", "x", "s"]}]), {})
    assert [n.shape for n in graph.nodes] == [(4, 1, 1), (4, 3, 3), (2, 3, 3), (10, 3, 3)]


@pytest.mark.parametrize("seed", SEEDS)
def test_real_grouped_and_depthwise_convs_with_fused_epilogue(seed, tmp_path):
    """MobileNet's depthwise conv + BN + ReLU, and a grouped conv + BN + PReLU: the compiled core, fused."""
    rng = np.random.default_rng(seed)
    c, groups = int(rng.integers(1, 40)), int(rng.integers(2, 5))
    _, h, w = _shape(seed)
    model = Lambda(lambda s, x: s.act2(s.bn2(s.grouped(s.act(s.bn(s.dw(x)))))), c,
                   dw=nn.Conv2d(c, c, 3, padding=1, groups=c, stride=1 + seed % 2), bn=nn.BatchNorm2d(c),
                   act=nn.ReLU(), grouped=nn.Conv2d(c, groups * 3, 3, padding=1, groups=1 if c % groups else groups),
                   bn2=nn.BatchNorm2d(groups * 3), act2=nn.PReLU(groups * 3))
    with torch.no_grad():
        for bn in (model.bn, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(-1.5, 1.5)
    packed = _check(model, _input(seed, c, h + 2, w + 2), tmp_path)
    fused = [s.describe() for s in packed.steps if s.node.op == "conv2d" and s.node.groups > 1]
    assert fused and all("batch_norm -> " in d for d in fused), packed.steps


@pytest.mark.parametrize("pad_value", [0.0, 1.0, -1.0])
@pytest.mark.parametrize("channels, groups", [(16, 16), (24, 12), (12, 3), (64, 2)])
def test_grouped_binary_convs_are_exact_on_either_path(channels, groups, pad_value, tmp_path, monkeypatch):
    """Small groups run as a real conv of the ±1 signs (kernels.SMALL_GROUP), larger ones in the packed kernel:
    both give PyTorch's binary layer exactly (float32 reference, input affine, PReLU, odd padding, stride)."""
    from xnorpp.nn import BinaryConv2d

    torch.manual_seed(groups)
    model = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels),
                          BinaryConv2d(channels, 2 * channels, 3, padding=(1, 2), stride=(1, 2), groups=groups,
                                       scaling="gamma-o", pad_value=pad_value, bias=True),
                          nn.PReLU(2 * channels)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[2].scale_channel.uniform_(0.5, 1.5)
        model[3].weight.uniform_(0.05, 0.3)
    path = export_model(model, tmp_path / "m.xnor", input_size=(9, 11))
    x = _input(groups, 3, 9, 11)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    for small in (0, 64):  # every group through the packed kernel, then every group through the real conv
        monkeypatch.setattr(kernels, "SMALL_GROUP", small)
        np.testing.assert_array_equal(runtime.load(path)(x), expect, err_msg=f"SMALL_GROUP={small}")
