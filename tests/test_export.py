"""Export → packed runtime equals the PyTorch model: every scaling, every supported layer, every ISA."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import MAX_EXEMPT_SHARE, SIGN_TOLERANCE, binary_modules, randomize, sign_distances
from xnorpp import _core, runtime
from xnorpp.export import ExportError, export_and_measure, export_model
from xnorpp.runtime.kernels import binary_scale
from xnorpp.models import create
from xnorpp.nn import BinaryConv2d, BinaryLinear
from xnorpp.data.sources import load_arrays
from xnorpp.scaling import SCALINGS


def _compare(model, x, path, rtol=1e-4, **kw):
    out = export_model(model, path, input_size=tuple(x.shape[2:]), **kw)
    packed = runtime.load(out)
    got = packed.predict(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    scale = np.abs(expect).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - expect) <= rtol * scale), np.abs(got - expect).max()
    np.testing.assert_array_equal(got.argmax(1), expect.argmax(1))
    return packed


def _fashion_test_images() -> np.ndarray:
    """The Fashion-MNIST test split when it is on disk, else as many random images (the same tests run either way)."""
    try:
        images, _ = load_arrays("fashion-mnist", "test")
        x = (images.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    except FileNotFoundError:
        x = np.random.default_rng(0).standard_normal((10000, 1, 28, 28))
    return np.ascontiguousarray(x, dtype=np.float32)


@pytest.fixture(scope="module")
def fashion():
    return _fashion_test_images()


def _signs64(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t.double() < 0, -1.0, 1.0).double()


def _reference_dots(m, x: torch.Tensor) -> np.ndarray:
    """float64 sign(x) ⊛ sign(W) with the layer's padding value: PyTorch's own conv/linear, not the code under test."""
    if isinstance(m, BinaryLinear):
        return (_signs64(x) @ _signs64(m.weight).T).numpy()
    left, right, top, bottom = m._reversed_padding_repeated_twice
    xb = F.pad(_signs64(x), (left, right, top, bottom), value=m.pad_value)
    return F.conv2d(xb, _signs64(m.weight), None, m.stride, 0, m.dilation, m.groups).numpy()


def _check_every_binary_layer(model, x: np.ndarray, path):
    """Each binary layer of the runtime, fed PyTorch's input to that layer (a forward pre-hook), gives exactly
    PyTorch's integer dot products, and its output within a few float32 ulp of the layer's output."""
    captured = {}

    def capture(name):
        def hook(module, args, out):
            captured[name] = (args[0], out)
        return hook

    hooks = [m.register_forward_hook(capture(name)) for name, m in binary_modules(model)]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    packed = runtime.load(export_model(model, path, input_size=tuple(x.shape[2:])))
    node_of = {n.attrs.get("module"): n.name for n in packed.graph.nodes}
    assert set(captured) <= set(node_of)
    for name, m in binary_modules(model):
        inp, out = captured[name]
        dots = packed.run_node(node_of[name], inp.numpy(), dots=True)
        np.testing.assert_array_equal(dots, _reference_dots(m, inp), err_msg=name)
        got, expect = packed.run_node(node_of[name], inp.numpy()), out.numpy()
        ulp = np.spacing(np.float32(np.abs(expect).max()))
        np.testing.assert_allclose(got, expect, rtol=0, atol=4 * ulp, err_msg=name)


@pytest.mark.parametrize("scaling", list(SCALINGS))
def test_every_binary_layer_equals_pytorch(scaling, tmp_path):
    model = randomize(create("fmnist-net", in_channels=1, scaling=scaling, input_size=(28, 28), width=8), 1)
    x = np.random.default_rng(7).standard_normal((64, 1, 28, 28)).astype(np.float32)
    _check_every_binary_layer(model, x, tmp_path / "m.xnor")


@pytest.mark.parametrize("scaling, form", [("gamma-o-h-w", {"scale_rows", "scale_pos"}),
                                            ("gamma-o-hw", {"scale_rows", "scale_pos"}), ("gamma-ohw", {"scale_map"}),
                                            ("gamma-o", {"scale"}), ("xnor-alpha", {"scale"}), ("none", set())])
def test_factored_gamma_needs_no_full_scale_map(scaling, form, tmp_path):
    """α ⊗ β ⊗ γ and α ⊗ β_hw reach the kernel as rows × positions (bit-identical to the full map, checked in
    test_kernels.py); only a full Γ keeps its (OH, OW, O) map."""
    model = create("fmnist-net", in_channels=1, scaling=scaling, input_size=(28, 28), width=8)
    packed = runtime.load(export_model(model, tmp_path / "m.xnor", input_size=(28, 28)))
    convs = [n for n in packed.graph.nodes if n.op == "binary_conv2d"]
    assert convs
    for node in convs:
        assert set(binary_scale(node, packed._tensors)) == form, node.name


@pytest.mark.parametrize("linear_scaling", ["none", "xnor", "xnor-alpha", "gamma-o"])
def test_every_binary_layer_of_mixed_geometry_equals_pytorch(linear_scaling, tmp_path):
    model = randomize(Mixed.for_linear(linear_scaling), 3)
    x = np.random.default_rng(2).standard_normal((32, 3, 11, 11)).astype(np.float32)
    _check_every_binary_layer(model, x, tmp_path / "m.xnor")


def test_fmnist_net_end_to_end_every_scaling(fashion, tmp_path):
    """Every scaling on the whole test set (or 10 000 random images): logits within rtol 1e-4 and the same argmax,
    except images with a sign input closer to 0 than SIGN_TOLERANCE in float64, which must be under 0.1 %."""
    exempt = total = 0
    for scaling in SCALINGS:
        torch.manual_seed(0)
        model = randomize(create("fmnist-net", in_channels=1, scaling=scaling, input_size=(28, 28), width=8), 1)
        keep = sign_distances(model, fashion) >= SIGN_TOLERANCE
        exempt += int((~keep).sum())
        total += len(keep)
        packed = runtime.load(export_model(model, tmp_path / f"{scaling}.xnor", input_size=(28, 28)))
        got = packed.predict(fashion)[keep]
        with torch.no_grad():
            expect = torch.cat([model(torch.from_numpy(fashion[i:i + 2000])) for i in range(0, len(fashion), 2000)])
        expect = expect.numpy()[keep]
        scale = np.abs(expect).max(axis=1, keepdims=True)
        bad = np.flatnonzero((np.abs(got - expect) > 1e-4 * scale).any(axis=1))
        assert bad.size == 0, f"{scaling}: {bad.size} images differ, e.g. {np.abs(got - expect)[bad[:3]].max(1)}"
        np.testing.assert_array_equal(got.argmax(1), expect.argmax(1), err_msg=scaling)
    assert exempt / total < MAX_EXEMPT_SHARE, f"{exempt} of {total} images exempt"


def test_every_isa_gives_the_same_logits(tmp_path):
    model = randomize(create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28), width=16), 2)
    x = np.random.default_rng(1).standard_normal((20, 1, 28, 28)).astype(np.float32)
    path = export_model(model, tmp_path / "m.xnor", input_size=(28, 28))
    previous, results = _core.isa(), {}
    try:
        for isa in runtime.supported_isas():
            runtime.set_isa(isa)
            packed = runtime.load(path)
            assert packed.isa == isa
            results[isa] = packed(x)
    finally:
        _core.set_isa(previous)
    # The binary layers are exact on every path; the real layers use FMA on AVX2/AVX-512 and
    # separate multiply and add on the portable path, so only the last bits may differ.
    reference = results[runtime.supported_isas()[0]]
    for logits in results.values():
        np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
        assert (logits.argmax(1) == reference.argmax(1)).all()


class Mixed(nn.Module):
    """Layers beyond the ResNet blocks: pad values, groups, dilation, pools, Hardtanh, binary linear."""

    @classmethod
    def for_linear(cls, linear_scaling: str) -> "Mixed":
        """The model for one linear scaling, paired with a conv scaling so that every scaling is covered."""
        conv = {"none": "gamma-ohw", "xnor": "xnor", "xnor-alpha": "gamma-o-hw"}.get(linear_scaling, "none")
        return cls(conv, linear_scaling)

    def __init__(self, conv_scaling="gamma-o", linear_scaling="gamma-o"):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(24)
        self.b1 = BinaryConv2d(24, 48, 3, stride=1, padding=2, dilation=2, groups=2, pad_value=1.0,
                               scaling=conv_scaling, input_size=(11, 11))
        self.act = nn.Hardtanh()
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.b2 = BinaryConv2d(48, 40, (3, 2), stride=(1, 2), padding=(1, 0), pad_value=-1.0,
                               scaling=conv_scaling, input_size=(6, 6))
        self.prelu = nn.PReLU()
        self.avg = nn.AvgPool2d(2, 2, padding=1, count_include_pad=True)
        self.bn1d = nn.BatchNorm1d(40 * 4 * 2)
        self.fc1 = BinaryLinear(40 * 4 * 2, 30, scaling=linear_scaling)
        self.fc2 = nn.Linear(30, 7)

    def forward(self, x):
        x = self.bn(self.stem(x))
        x = self.pool(self.act(self.b1(x)))
        x = self.avg(self.prelu(self.b2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(self.bn1d(x))))


@pytest.mark.parametrize("linear_scaling", ["none", "xnor", "xnor-alpha", "gamma-o"])
def test_mixed_layers(linear_scaling, tmp_path):
    model = randomize(Mixed.for_linear(linear_scaling), 3)
    x = np.random.default_rng(2).standard_normal((64, 3, 11, 11)).astype(np.float32)
    _compare(model, x, tmp_path / "m.xnor")


class RealTails(nn.Module):
    """Real convs whose batch norm / activation may or may not be fused into the conv's epilogue."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)  # conv -> bn -> relu, bn used twice
        self.c2, self.bn2 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)  # conv -> bn -> prelu (per channel)
        self.act2 = nn.PReLU(8)
        self.c3 = nn.Conv2d(8, 8, 3, stride=2, dilation=2, padding=2)           # conv -> relu, no bn
        self.c4, self.bn4 = nn.Conv2d(8, 5, 1), nn.BatchNorm2d(5)              # the graph's output is a bn

    def forward(self, x):
        y = self.bn1(self.c1(x))
        x = torch.relu(y) + y
        x = torch.relu(self.c3(self.act2(self.bn2(self.c2(x)))))
        return self.bn4(self.c4(x))  # (N, 5, H, W) maps


def test_real_conv_epilogue_fusion(tmp_path):
    model = randomize(RealTails(), 5)
    x = np.random.default_rng(4).standard_normal((6, 3, 9, 9)).astype(np.float32)
    _compare(model, x, tmp_path / "t.xnor")


def test_float16_real_layers(tmp_path):
    model = randomize(create("fmnist-net", in_channels=1, scaling="gamma-o", input_size=(28, 28), width=16), 4)
    x = np.random.default_rng(3).standard_normal((8, 1, 28, 28)).astype(np.float32)
    p32 = export_model(model, tmp_path / "a.xnor", input_size=(28, 28))
    p16 = export_model(model, tmp_path / "b.xnor", input_size=(28, 28), real_dtype="float16")
    assert p16.stat().st_size < p32.stat().st_size
    assert runtime.load(p16)(x).shape == (8, 10)


def test_one_bit_per_binary_weight(tmp_path):
    model = create("resnet18", num_classes=10, scaling="gamma-o-h-w", input_size=(32, 32))
    path = export_model(model, tmp_path / "r.xnor", input_size=(32, 32))
    from xnorpp.packed import load_graph

    graph, tensors = load_graph(path)
    binary = [m for m in model.modules() if isinstance(m, (BinaryConv2d, BinaryLinear))]
    n_weights = sum(m.weight.numel() for m in binary)
    n_bytes = sum(t.nbytes for k, t in tensors.items() if k.endswith(".weight_bits"))
    assert n_bytes == sum((m.weight.numel() + 7) // 8 for m in binary) and n_bytes * 8 >= n_weights
    assert sum(n.op == "binary_conv2d" for n in graph.nodes) == len(binary)
    # The plan runs BN before each binary conv in its input packing and the PReLU after it in its output
    # stage; consecutive binary convs hand bits over; the second conv of a block adds the shortcut as it
    # writes its output, after the shortcut's own steps (a downsampling shortcut comes after it in the graph),
    # and writes that output's bits too for the next block's first conv (all but the last block's).
    all_steps = runtime.load(path).steps
    steps = [s for s in all_steps if s.kind == "binary_conv2d"]
    assert len(steps) == len(binary)
    assert all(s.input_affine is not None and [n.op for n in s.epilogue] == ["prelu"] for s in steps)
    assert sum(s.bits_out is not None for s in steps) == len(binary) // 2
    assert sum(s.residual_add is not None for s in steps) == len(binary) // 2
    bits_too = [s for s in steps if s.bits_too]
    assert len(bits_too) == len(binary) // 2 - 1 and all(s.residual_add for s in bits_too)
    assert all(s.bits_too.inputs == (s.bits_output,) and s.bits_too.bits_in for s in bits_too)
    assert sum(not s.bits_in for s in steps) == 1  # only the first binary conv packs floats
    assert not any(s.kind == "add" for s in all_steps)
    produced = {graph.input_name}
    for s in all_steps:
        assert set(s.inputs) <= produced, s.describe()
        produced.update(filter(None, (s.output, s.bits_output)))


def test_unsupported_layers_are_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LogSigmoid(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ExportError, match=r"'1' \(LogSigmoid\)"):
        export_model(model, tmp_path / "m.xnor")
    bwn = nn.Sequential(BinaryConv2d(3, 4, 3, binarize_input=False, scaling="gamma-o"))
    with pytest.raises(ExportError, match="binarize_input=False"):
        export_model(bwn, tmp_path / "m.xnor")

    class Exp(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    with pytest.raises(ExportError, match=r"'exp' \(node 'exp' in module 'block'\)"):
        export_model(nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 1), block=Exp())), tmp_path / "m.xnor",
                     input_size=(4, 4))
    assert not (tmp_path / "m.xnor").exists()


def test_export_and_measure_reports(tmp_path):
    model = randomize(create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28), width=16), 5)
    x = np.random.default_rng(4).standard_normal((100, 1, 28, 28)).astype(np.float32)
    y = np.random.default_rng(5).integers(0, 10, 100)
    r = export_and_measure(model, tmp_path / "m.xnor", x, y, repeat=3)
    assert r["agreement"] == 1.0 and r["max_logit_rel_diff"] < 1e-4
    from xnorpp.export import format_measurement

    assert "smaller than the float checkpoint" in format_measurement(r)
    assert r["packed_top1"] == r["torch_top1"]
    assert r["file_bytes"] == (tmp_path / "m.xnor").stat().st_size and r["size_ratio"] > 1


def test_cli_export_from_training_checkpoint(tmp_path):
    import subprocess
    import sys

    from xnorpp.train import TrainConfig
    from xnorpp.train.checkpoint import build_model, save_atomic

    config = TrainConfig(model="fmnist-net", dataset="fashion-mnist", scaling="gamma-o", model_opts={"width": 8})
    model = randomize(build_model(config), 6)
    save_atomic({"model": model.state_dict(), "config": config.to_dict()}, tmp_path / "model.pt")
    out = tmp_path / "m.xnor"
    result = subprocess.run([sys.executable, "-m", "xnorpp", "export", str(tmp_path), "-o", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    packed = runtime.load(out)
    assert packed.input_size == (28, 28) and packed.preprocess["dataset"] == "fashion-mnist"
    x = np.random.default_rng(6).standard_normal((16, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(packed(x), expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    # Another input size than the data set's (γ_o has no spatial factors, and the network pools globally).
    result = subprocess.run([sys.executable, "-m", "xnorpp", "export", str(tmp_path), "-o", str(tmp_path / "32.xnor"),
                             "--input-size", "32", "36", "--in-channels", "1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    packed = runtime.load(tmp_path / "32.xnor")
    assert packed.input_size == (32, 36)
    x = np.random.default_rng(7).standard_normal((4, 1, 32, 36)).astype(np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(packed(x), expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    bad = subprocess.run([sys.executable, "-m", "xnorpp", "export", str(tmp_path / "nothing"), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "xnorpp export:" in bad.stderr and "Traceback" not in bad.stderr


def test_wide_binary_linear(tmp_path):
    """Channel counts have no small upper bound: 131 072 inputs to a binary linear layer."""
    model = randomize(nn.Sequential(nn.Flatten(), BinaryLinear(8 * 128 * 128, 3, scaling="gamma-o")), 6)
    x = np.random.default_rng(5).standard_normal((2, 8, 128, 128)).astype(np.float32)
    with pytest.raises(ExportError, match="in_channels"):
        export_model(model, tmp_path / "unknown.xnor", input_size=(128, 128))
    _compare(model, x, tmp_path / "wide.xnor", in_channels=8)


def test_pools_match_pytorch(tmp_path):
    """Average pools of every size class (small windows add taps, large ones use an integral image), adaptive
    pools that shrink, keep and grow the size, and a ceil-mode max pool."""
    class Flat(nn.Module):  # one output per pool: a graph with several readers of the conv's output
        def __init__(self, pool):
            super().__init__()
            self.conv, self.pool = nn.Conv2d(2, 6, 3, padding=1), pool

        def forward(self, x):
            return torch.flatten(self.pool(self.conv(x)), 1)

    x = np.random.default_rng(8).standard_normal((3, 2, 13, 12)).astype(np.float32)
    pools = [nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),  # small: adds taps
             nn.AvgPool2d(9, 3, padding=4, ceil_mode=True, count_include_pad=True),    # large: integral image
             nn.AvgPool2d(9, 3, padding=4, count_include_pad=False),
             nn.AvgPool2d((13, 4)),                                                     # tiles the input
             nn.AvgPool2d(2, 2),                                                        # almost tiles it
             nn.AdaptiveAvgPool2d((5, 3)), nn.AdaptiveAvgPool2d((13, 12)), nn.AdaptiveAvgPool2d((20, 7)),
             nn.MaxPool2d(4, 3, padding=2, dilation=1, ceil_mode=True)]
    for pool in pools:
        _compare(randomize(Flat(pool), 9), x, tmp_path / "p.xnor", rtol=1e-5)


class SharedValues(nn.Module):
    """Values read twice by one node (y + y), by three nodes, and an inner node as the graph's output."""

    def __init__(self, output_inner: bool):
        super().__init__()
        self.output_inner = output_inner
        self.stem, self.bn = nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.b1 = BinaryConv2d(32, 32, 3, padding=1, scaling="gamma-o-h-w", input_size=(8, 8))
        self.act1 = nn.PReLU(32)
        self.bn2 = nn.BatchNorm2d(32)
        self.b2 = BinaryConv2d(32, 32, 3, padding=1, scaling="gamma-o", input_size=(8, 8))
        self.act2 = nn.PReLU(32)

    def forward(self, x):
        y = self.bn(self.stem(x))
        y = y + y                                  # one node reads y twice
        a = self.act1(self.b1(y))                  # a: read by bn2, the add and the relu below (three nodes)
        z = self.act2(self.b2(self.bn2(a)))
        out = z + a + torch.relu(a)
        return a if self.output_inner else out     # an inner node (also read by others) as the output


@pytest.mark.parametrize("output_inner", [False, True])
def test_shared_values_and_inner_output(output_inner, tmp_path):
    model = randomize(SharedValues(output_inner), 11)
    x = np.random.default_rng(11).standard_normal((4, 3, 8, 8)).astype(np.float32)
    packed = _compare(model, x, tmp_path / "s.xnor")
    readers = packed.graph.consumers()
    assert any(n.inputs[0] == n.inputs[1] for n in packed.graph.nodes if n.op == "add")
    assert len(readers["act1"]) == 3
    assert not any(s.bits_out for s in packed.steps)  # a is read by three nodes: no bit handover from b1
    b2 = next(s for s in packed.steps if s.node.name == "b2")
    assert b2.residual_add is not None and b2.inputs[-1] == "act1"  # z + a: b2 adds a as it writes z


def test_int8_input_layer_is_the_model_with_its_first_conv_rounded(tmp_path):
    """input_layer='int8' on 8-bit images equals PyTorch with the first conv's weights replaced by their 7-bit
    rounding (per output channel, on the pixel scale: W·255·std, symmetric, [-64, 64]), under the rule of the
    float runtime (logits within 1e-4, same argmax, images with a sign input within rounding of 0 exempt)."""
    torch.manual_seed(0)
    model = randomize(create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28), width=8), 3)
    path = export_model(model, tmp_path / "m.xnor", input_size=(28, 28), dataset="fashion-mnist")
    mean, std = 0.2860, 0.3530  # Fashion-MNIST's normalization, as recorded in the file
    rounded = copy.deepcopy(model)
    stem = rounded.stem[0]
    w = stem.weight.detach().double() / (255.0 * std)  # per pixel code
    step = w.abs().flatten(1).max(1).values / 64
    stem.weight.data = ((w / step[:, None, None, None]).round().clamp(-64, 64) * step[:, None, None, None]
                        * (255.0 * std)).float()
    assert not torch.equal(stem.weight, model.stem[0].weight)

    pixels = np.random.default_rng(4).integers(0, 256, (2000, 1, 28, 28))
    x = np.ascontiguousarray((pixels.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std))
    keep = sign_distances(rounded, x) >= SIGN_TOLERANCE
    assert (~keep).mean() < MAX_EXEMPT_SHARE
    got = runtime.load(path, input_layer="int8").predict(x)[keep]
    with torch.no_grad():
        expect = rounded(torch.from_numpy(x)).numpy()[keep]
    scale = np.abs(expect).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - expect) <= 1e-4 * scale), np.abs(got - expect).max()
    np.testing.assert_array_equal(got.argmax(1), expect.argmax(1))


def test_int8_input_layer_refusals(tmp_path):
    model = randomize(create("fmnist-net", in_channels=1, scaling="gamma-o", input_size=(28, 28), width=8), 3)
    path = export_model(model, tmp_path / "m.xnor", input_size=(28, 28))  # no data set: no normalization recorded
    with pytest.raises(ValueError, match="needs the input normalization.*--dataset"):
        runtime.load(path, input_layer="int8")
    with pytest.raises(ValueError, match="input_layer must be one of float32, int8, got 'int4'"):
        runtime.load(path, input_layer="int4")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    path = export_model(flat, tmp_path / "flat.xnor", input_size=(28, 28), dataset="fashion-mnist", in_channels=1)
    with pytest.raises(ValueError, match="needs a real conv2d"):
        runtime.load(path, input_layer="int8")
