"""The OpenVINO IR of a packed model (``xnorpp.export.to_openvino``) against PyTorch's own forward of the model.

Whole models are compared as in tests/test_export.py and tests/test_deploy.py: per image, logits within ``RTOL`` of
their largest magnitude and the same argmax, except images whose binary-layer signs are undetermined at float32
precision (:func:`conftest.exempt_images`), of which at most ``MAX_DIFFERING`` may differ. Parameters are
randomized, with negative and zero batch-norm scales before signs, so that every folding into thresholds shows.
The thresholds themselves are checked exactly against their definition, by enumeration.
"""

from __future__ import annotations

import copy
from importlib.util import find_spec

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import binary_modules, exempt_images
from test_cli import run_cli
from test_export import Mixed
from test_ops import ACTIVATIONS, ConvNeXtNorm, Lambda
from xnorpp.cli import main
from xnorpp.export import export_model
from xnorpp.export import openvino as xov
from xnorpp.models import create
from xnorpp.nn import BinaryConv2d
from xnorpp.packed import OPS, load_graph
from xnorpp.scaling import SCALINGS
from xnorpp.train.demo import DEMO_MODEL, DEMO_OPTS

needs_openvino = pytest.mark.skipif(find_spec("openvino") is None, reason="openvino not installed")
RTOL = 1e-4            # logits, relative to the largest of the image (as tests/test_export.py)
MAX_DIFFERING = 2      # images that may differ, each of them exempt (a wrong mapping changes them all)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO's default is bf16 on CPUs with AMX or AVX512_BF16


def _run_openvino(packed_path, x: np.ndarray):
    import openvino as ov

    compiled = ov.Core().compile_model(xov.openvino_model(packed_path, len(x)), "CPU", F32)
    return compiled(x)[0], compiled


def _check_against_pytorch(model: nn.Module, x: np.ndarray, path):
    """The IR's output equals the PyTorch model's (float32 forward) under the rule of the module doc; returns
    the compiled model."""
    packed_path = export_model(model, path, input_size=tuple(x.shape[2:]), in_channels=x.shape[1])
    got, compiled = _run_openvino(packed_path, x)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    got, expect = got.reshape(len(x), -1), expect.reshape(len(x), -1)
    scale = np.abs(expect).max(axis=1, keepdims=True)
    differs = (np.abs(got - expect) > RTOL * scale).any(axis=1) | (got.argmax(1) != expect.argmax(1))
    exempt = exempt_images(model, x) if binary_modules(model) else np.zeros(len(x), bool)
    assert not (differs & ~exempt).any(), (f"images {np.flatnonzero(differs & ~exempt).tolist()} differ, largest "
                                           f"difference {(np.abs(got - expect) / scale).max():.3g} of max |logit|")
    assert differs.sum() <= MAX_DIFFERING, f"{differs.sum()} of {len(x)} images differ"
    return compiled


def _executed(compiled) -> list[tuple[str, str, str]]:
    """(layer type, kernel, output precision) of every node OpenVINO runs."""
    out = []
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        out.append(tuple(info[key].astype(str) for key in ("layerType", "primitiveType", "outputPrecisions")))
    return out


def _scales_before_signs(path) -> np.ndarray:
    """The scales of the batch norms that binary layers read."""
    graph, tensors = load_graph(path)
    norms = {n.name: n for n in graph.nodes if n.op == "batch_norm"}
    return np.concatenate([tensors[norms[n.inputs[0]].params["scale"]] for n in graph.nodes
                           if n.op in ("binary_conv2d", "binary_linear") and n.inputs[0] in norms])


@torch.no_grad()
def _randomize(model: nn.Module, seed: int, slopes=(0.05, 0.35)) -> nn.Module:
    """BN statistics, BN scales in [-1, 1] (some zero), Γ factors, biases and PReLU slopes in ``slopes``."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            uniform(m.running_mean, -0.5, 0.5)
            uniform(m.running_var, 0.5, 1.5)
            uniform(m.weight, -1.0, 1.0)
            m.weight[::17] = 0.0  # a sign that no input changes
            uniform(m.bias, -0.3, 0.3)
        elif isinstance(m, nn.PReLU):
            uniform(m.weight, *slopes)
        for name in getattr(getattr(m, "scaling_spec", None), "factors", ()):
            uniform(getattr(m, name), 0.5, 1.5)
        if isinstance(m, BinaryConv2d) and m.bias is not None:
            uniform(m.bias, -0.3, 0.3)
    return model.eval()


# ------------------------------------------------------------------------------------ thresholds, exactly
def _float32_neighbours(t: np.float32, count: int = 3) -> list[np.float32]:
    out, lo, hi = [t], t, t
    for _ in range(count):
        lo, hi = np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return [v for v in out if np.isfinite(v)]


def test_sign_thresholds_are_exact():
    """x·scale + shift < 0 (float32, two roundings) ⇔ x ≤ t (x > t where reversed), at t and its float32
    neighbours, at signed zeros, denormals and the extremes, for scales of either sign, 0 and tiny ones."""
    rng = np.random.default_rng(0)
    scale = np.concatenate([rng.standard_normal(40), [0.0, -0.0, 1e-30, -1e-30, 3e38, 1.0, -1.0, 1.0]])
    shift = np.concatenate([rng.standard_normal(40) * 10, [-1.0, 2.0, 1e-40, 0.0, -1e-3, 0.0, -0.0, -0.0]])
    scale, shift = scale.astype(np.float32), shift.astype(np.float32)
    t, reversed_ = xov.sign_thresholds(scale, shift)
    fixed = np.float32([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 3.4e38, -3.4e38, 1.0, -1.0])
    checked = 0
    for c in range(len(scale)):
        xs = np.array(_float32_neighbours(t[c]) + list(fixed) + list(rng.standard_normal(20)), np.float32)
        with np.errstate(over="ignore"):
            negative = (xs * scale[c]) + shift[c] < 0  # numpy float32 scalars: one rounding per operation
        below = xs <= t[c]
        np.testing.assert_array_equal(negative, below != reversed_[c], err_msg=f"channel {c}: t={t[c]!r}")
        checked += len(xs)
    assert reversed_[scale < 0].all() and not reversed_[scale > 0].any()  # shifts here keep every sign varying
    assert np.isinf(t[scale == 0]).all() and checked > 1000


def test_dot_thresholds_are_exact():
    """The sign after a binary conv's output stage, a PReLU (or ReLU) and a batch norm, over every possible dot
    product, equals the threshold's verdict."""
    rng = np.random.default_rng(1)
    channels, taps = 24, 75
    gamma = rng.uniform(-1.5, 1.5, channels).astype(np.float32)
    gamma[0] = 0.0
    bias = rng.uniform(-2, 2, channels).astype(np.float32)
    slope = rng.uniform(0, 0.5, channels).astype(np.float32)
    bn_scale = rng.uniform(-1, 1, channels).astype(np.float32)
    bn_shift = rng.uniform(-1, 1, channels).astype(np.float32)
    for relu in (False, True):
        stages = [("affine", gamma, bias), ("prelu", np.zeros(1, np.float32) if relu else slope, None),
                  ("affine", bn_scale, bn_shift)]
        t, reversed_ = xov.dot_thresholds(channels, taps, stages)
        assert np.all((t == np.round(t - 0.5) + 0.5) | np.isinf(t))  # between integers: no tie with a dot
        for c in range(channels):
            for d in range(-taps, taps + 1):
                y = np.float32(d) * gamma[c] + bias[c]
                y = y if y > 0 else (np.float32(0) if relu else y * slope[c])
                negative = y * bn_scale[c] + bn_shift[c] < 0
                assert negative == ((d <= t[c]) != reversed_[c]), (c, d, t[c], reversed_[c])


# ------------------------------------------------------------------------------------ whole models
@needs_openvino
@pytest.mark.parametrize("scaling", list(SCALINGS))
def test_demo_network_every_scaling(scaling, tmp_path):
    """The demo network (fmnist-net as `xnorpp demo` trains it), PReLU slopes of either sign (no folding of a
    binary conv's output into the next signs)."""
    torch.manual_seed(0)
    model = _randomize(create(DEMO_MODEL, in_channels=1, scaling=scaling, input_size=(28, 28), **DEMO_OPTS), 1,
                       slopes=(-0.3, 0.7))
    x = np.random.default_rng(7).standard_normal((64, 1, 28, 28)).astype(np.float32)
    _check_against_pytorch(model, x, tmp_path / "m.xnor")
    assert (_scales_before_signs(tmp_path / "m.xnor") < 0).any()


@needs_openvino
@pytest.mark.parametrize("scaling", list(SCALINGS))
def test_binary_resnet18_every_scaling(scaling, tmp_path):
    """The binary ResNet-18 of the benchmarks at 64×64 (ImageNet stem): every binary conv runs as OpenVINO's
    BinaryConvolution; with one scale per channel, a block's first conv writes the second's input as bits."""
    torch.manual_seed(0)
    model = _randomize(create("resnet18", num_classes=10, scaling=scaling, input_size=(64, 64), stem="imagenet"), 2)
    x = np.random.default_rng(3).standard_normal((8, 3, 64, 64)).astype(np.float32)
    compiled = _check_against_pytorch(model, x, tmp_path / "r.xnor")
    scales = _scales_before_signs(tmp_path / "r.xnor")
    assert (scales < 0).any() and (scales == 0).any()
    executed = _executed(compiled)
    binary = [e for e in executed if e[0] == "BinaryConvolution"]
    assert len(binary) == 16 and all(kernel.endswith("_u1") for _, kernel, _ in binary), binary
    spec = SCALINGS[scaling]
    writes_bits = sum(precision == "u1" for _, _, precision in binary)
    assert writes_bits == (0 if spec.spatial or spec.analytic_k else 8), executed


@needs_openvino
@pytest.mark.parametrize("linear_scaling", ["none", "xnor", "xnor-alpha", "gamma-o"])
def test_layers_beyond_resnet(linear_scaling, tmp_path):
    """Grouped binary convs (the real conv of their signs), pad values ±1, dilation, Hardtanh, ceil-mode pools,
    BatchNorm1d before a binary linear layer: tests/test_export.py's model, with every scaling."""
    model = _randomize(Mixed.for_linear(linear_scaling), 3)
    x = np.random.default_rng(2).standard_normal((32, 3, 11, 11)).astype(np.float32)
    _check_against_pytorch(model, x, tmp_path / "m.xnor")


class OneBinaryConv(nn.Module):
    """A batch norm (negative and zero scales) before one binary conv, whose output is the model's."""

    def __init__(self, channels: int, pad_value: float, scaling: str):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = BinaryConv2d(channels, 16, 3, stride=2, padding=(1, 2), pad_value=pad_value, scaling=scaling,
                                 input_size=(9, 10))

    def forward(self, x):
        return self.conv(self.bn(x))


@needs_openvino
@pytest.mark.parametrize("channels", [16, 12])  # bits for BinaryConvolution; 12: the real conv of the signs
@pytest.mark.parametrize("pad_value", [0.0, 1.0, -1.0])
def test_binary_conv_bit_order_padding_and_thresholds(channels, pad_value, tmp_path):
    """One binary conv: u1 weights (bit 1 = +1, LSB first), OpenVINO's pad_value (0: zero padding, ±1: that sign)
    and the thresholds of a batch norm with negative and zero scales, against PyTorch's conv of the signs."""
    model = _randomize(OneBinaryConv(channels, pad_value, "gamma-o-h-w"), 4)
    x = np.random.default_rng(5).standard_normal((16, channels, 9, 10)).astype(np.float32)
    compiled = _check_against_pytorch(model, x, tmp_path / "m.xnor")
    kinds = {kind for kind, _, _ in _executed(compiled)}
    assert ("BinaryConvolution" in kinds) == (channels % xov.BINARY_CHANNEL_MULTIPLE == 0), kinds


class Zoo(nn.Module):
    """Every op but the binary layers in one graph: chunk, activations, products with a gate, a channel shuffle,
    layer norms over channels and features, reductions over H and W, average, max and adaptive pools, ..."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.norm = ConvNeXtNorm(12)
        self.gelu, self.gelu_tanh = nn.GELU(), nn.GELU(approximate="tanh")
        self.dw = nn.Conv2d(40, 40, 3, padding=1, groups=40)
        self.bn, self.prelu, self.dropout = nn.BatchNorm2d(40), nn.PReLU(40), nn.Dropout()
        self.pools = nn.ModuleList([nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                                    nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True),
                                    nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), nn.AdaptiveAvgPool2d((3, 2))])
        features = 40 * (42 + 42 + 30 + 6 + 2)  # the pools' outputs on 11×13 (6×7, 6×7, 5×6, 3×2), mean and amax
        self.vector_norm = nn.LayerNorm(features)
        self.fc = nn.Linear(features, 7)

    @staticmethod
    def shuffle(x, groups):  # torchvision's shufflenetv2.channel_shuffle
        n, c, h, w = x.size()
        return torch.transpose(x.view(n, groups, c // groups, h, w), 1, 2).contiguous().view(n, c, h, w)

    def forward(self, x):
        a, b, c = self.norm(self.conv(x)).chunk(3, dim=1)
        y = torch.cat([F.hardswish(a), F.hardsigmoid(b) * c, F.silu(c), torch.tanh(a), self.gelu(b),
                       self.gelu_tanh(c), torch.sigmoid(a), F.relu6(b), c.clamp(min=0.5), a.clamp(max=-0.25)], 1)
        y = self.shuffle(y, 4)
        y = self.dropout(self.prelu(self.bn(self.dw(y)))) + torch.relu(y)
        y = (y - 0.5 * y.amax((2, 3), keepdim=True)) * torch.sigmoid(y.mean((2, 3), keepdim=True))
        vectors = [torch.flatten(pool(y), 1) for pool in self.pools] + [y.mean((2, 3)), y.amax((2, 3))]
        return self.fc(self.vector_norm(torch.cat(vectors, 1)))


@needs_openvino
def test_every_other_op_against_float64(tmp_path):
    model = Zoo().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    x = (np.random.default_rng(9).standard_normal((4, 3, 11, 13)) * 2).astype(np.float32)
    path = export_model(model, tmp_path / "z.xnor", input_size=(11, 13))
    # (export writes dropout as the value it reads: no identity node)
    assert {n.op for n in load_graph(path)[0].nodes} == set(OPS) - {"binary_conv2d", "binary_linear", "identity"}
    got, _ = _run_openvino(path, x)
    with torch.no_grad():
        expect = copy.deepcopy(model).double()(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5 * np.abs(expect).max())


@needs_openvino
@pytest.mark.parametrize("form", list(ACTIVATIONS))
def test_activations_against_float64(form, tmp_path):
    fn, module, _ = ACTIVATIONS[form]
    model = Lambda(fn, 6, **({"m": module()} if module else {})).eval()
    x = (np.random.default_rng(3).standard_normal((2, 6, 5, 7)) * 3).astype(np.float32)
    got, _ = _run_openvino(export_model(model, tmp_path / "a.xnor", input_size=(5, 7)), x)
    with torch.no_grad():
        expect = copy.deepcopy(model).double()(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-6 * np.abs(expect).max())


try:  # tests/test_deploy.py's models and input sizes (it skips itself without torchvision)
    from test_deploy import MODELS as TORCHVISION_MODELS, _randomize as randomize_converted
except pytest.skip.Exception:
    TORCHVISION_MODELS = {}


@needs_openvino
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if slow else n
                                  for n, (_, slow) in TORCHVISION_MODELS.items() if n != "efficientnet_b0"])
def test_converted_torchvision_models(name, tmp_path):
    """Every torchvision classifier converted by xnorpp.convert, as tests/test_deploy.py runs them: binary
    depthwise convs, concat, channel shuffle, squeeze-excitation, ... EfficientNet-B0 is left out: all of its
    random images are exempt, and OpenVINO's SiLU reaches -0.0 (sign +1) at other inputs than PyTorch's
    (x ≈ -88 to -104, where a sign follows the rounding), which changes 3 of its 8 images."""
    import torchvision

    import xnorpp

    size = TORCHVISION_MODELS[name][0]
    torch.manual_seed(0)
    float_model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    model = randomize_converted(xnorpp.convert(float_model, scaling="gamma-o", input_size=(size, size)), 1)
    x = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    _check_against_pytorch(model, x, tmp_path / f"{name}.xnor")


@needs_openvino
def test_every_op_has_a_mapping_and_others_are_named(tmp_path, monkeypatch):
    assert all(hasattr(xov._Builder, "op_" + op) for op in OPS)
    path = export_model(Lambda(lambda s, x: torch.relu(x), 3).eval(), tmp_path / "r.xnor", input_size=(4, 4))
    monkeypatch.delattr(xov._Builder, "op_relu")
    with pytest.raises(ValueError, match=r"node 'relu' \(relu.*op 'relu' has no OpenVINO mapping"):
        xov.openvino_model(path)


# ------------------------------------------------------------------------------------ files and the command line
def _checkpoint(tmp_path):
    from conftest import randomize
    from xnorpp.train import TrainConfig
    from xnorpp.train.checkpoint import build_model, save_atomic

    config = TrainConfig(model="fmnist-net", dataset="fashion-mnist", scaling="gamma-o", model_opts={"width": 8})
    model = randomize(build_model(config), 6)
    save_atomic({"model": model.state_dict(), "config": config.to_dict()}, tmp_path / "run" / "model.pt")
    return model, tmp_path / "run"


@needs_openvino
def test_cli_exports_a_checkpoint_or_converts_a_packed_file(tmp_path, capsys):
    import openvino as ov

    model, run_dir = _checkpoint(tmp_path)
    assert main(["export", str(run_dir), "--format", "openvino", "-o", str(tmp_path / "ir")]) == 0
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["model.bin", "model.xml", "model.xnor"]
    assert main(["export", str(tmp_path / "ir" / "model.xnor"), "--format", "openvino", "-o",
                 str(tmp_path / "again")]) == 0
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["model.bin", "model.xml"]
    assert capsys.readouterr().out.count("wrote ") == 5
    x = np.random.default_rng(6).standard_normal((5, 1, 28, 28)).astype(np.float32)
    read = ov.Core().read_model(tmp_path / "again" / "model.xml")
    read.reshape([5, 1, 28, 28])
    got = ov.Core().compile_model(read, "CPU", F32)(x)[0]
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expect, rtol=0, atol=RTOL * np.abs(expect).max())
    # A packed file is converted as it is: the options of exporting a checkpoint are refused.
    assert main(["export", str(tmp_path / "ir" / "model.xnor"), "--format", "openvino", "-o", str(tmp_path / "x"),
                 "--real-dtype", "float16"]) == 2
    assert "packed model already" in capsys.readouterr().err and not (tmp_path / "x").exists()


@needs_openvino
def test_converting_a_packed_file_needs_no_torch(tmp_path):
    _, run_dir = _checkpoint(tmp_path)
    packed = export_model(run_dir, tmp_path / "m.xnor")
    result = run_cli(["export", str(packed), "--format", "openvino", "-o", str(tmp_path / "ir")], block=("torch",))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["m.bin", "m.xml"]


NEEDS_OPENVINO = f"converting to OpenVINO needs the openvino package: pip install '{xov.OPENVINO_EXTRA}'"


@pytest.mark.parametrize("source", ["packed", "checkpoint"])
def test_without_openvino_the_cli_says_which_extra_to_install(source, tmp_path):
    _, run_dir = _checkpoint(tmp_path)
    path = export_model(run_dir, tmp_path / "m.xnor") if source == "packed" else run_dir
    result = run_cli(["export", str(path), "--format", "openvino", "-o", str(tmp_path / "ir")], block=("openvino",))
    assert result.returncode == 1
    assert result.stderr == f"xnorpp export: {NEEDS_OPENVINO}\n"  # one line, no traceback
    assert not (tmp_path / "ir").exists()  # nothing was traced or written


def test_without_openvino_the_library_says_which_extra_to_install(tmp_path, monkeypatch):
    from xnorpp.cli import export as cli_export

    assert cli_export.OPENVINO_EXTRA == xov.OPENVINO_EXTRA == "xnorpp[openvino]"
    _, run_dir = _checkpoint(tmp_path)
    path = export_model(run_dir, tmp_path / "m.xnor")
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'xnorpp\[openvino\]'"):
        xov.to_openvino(path, tmp_path / "ir")
