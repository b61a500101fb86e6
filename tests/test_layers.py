"""Binary layers against independent float64 references built from PyTorch's own ops."""

import inspect
import io
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnorpp.nn import BinaryConv2d, BinaryLinear, name_layers, sign_ste
from xnorpp.scaling import SCALINGS

ALL_SCALINGS = tuple(SCALINGS)
GAMMA_SCALINGS = tuple(n for n in ALL_SCALINGS if n.startswith("gamma"))


def sign64(t: torch.Tensor) -> torch.Tensor:
    """Reference sign: +1 for x >= 0, -1 for x < 0, in float64."""
    return torch.where(t.double() < 0, -1.0, 1.0).double()


def randomize_factors(layer: nn.Module, generator: torch.Generator) -> None:
    """Give learned factors distinct random values so a swapped axis cannot go unnoticed."""
    with torch.no_grad():
        for name in layer.scaling_spec.factors:
            p = getattr(layer, name)
            p.copy_(torch.rand(p.shape, generator=generator) + 0.5)


def reference_scale(layer: BinaryConv2d, x: torch.Tensor, out_hw) -> torch.Tensor | None:
    """The documented scale of each scheme, written out independently in float64."""
    w = layer.weight.detach().double()
    o = w.shape[0]
    name = layer.scaling
    if name == "none":
        return None
    if name in ("xnor", "xnor-alpha"):
        alpha = w.abs().mean(dim=(1, 2, 3)).view(o, 1, 1)
        if name == "xnor-alpha":
            return alpha
        t, b, l, r = layer.padding_amounts
        mean_abs = F.pad(x.double().abs().mean(dim=1, keepdim=True), (l, r, t, b))
        kh, kw = layer.kernel_size
        box = torch.ones(1, 1, kh, kw, dtype=torch.float64) / (kh * kw)
        k_map = F.conv2d(mean_abs, box, stride=layer.stride, dilation=layer.dilation)
        return alpha * k_map
    h, wd = out_hw
    if name == "gamma-o":
        return layer.scale_channel.detach().double().view(o, 1, 1)
    if name == "gamma-ohw":
        return layer.scale_full.detach().double()
    if name == "gamma-o-hw":
        return torch.einsum("o,hw->ohw", layer.scale_channel.double(), layer.scale_spatial.double()).detach()
    if name == "gamma-o-h-w":
        return torch.einsum("o,h,w->ohw", layer.scale_channel.double(), layer.scale_height.double(),
                            layer.scale_width.double()).detach()
    raise AssertionError(name)


def reference_conv(layer: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    xs = sign64(x) if layer.binarize_input else x.double()
    t, b, l, r = layer.padding_amounts
    xs = F.pad(xs, (l, r, t, b), value=layer.pad_value)
    y = F.conv2d(xs, sign64(layer.weight.detach()), None, layer.stride, 0, layer.dilation, layer.groups)
    scale = reference_scale(layer, x, y.shape[-2:])
    if scale is not None:
        y = y * scale
    if layer.bias is not None:
        y = y + layer.bias.detach().double().view(-1, 1, 1)
    return y


CONV_CASES = [
    # in, out, kernel, stride, padding, dilation, groups, input (h, w)
    dict(cin=5, cout=7, k=3, stride=1, padding=0, dilation=1, groups=1, hw=(9, 7)),
    dict(cin=5, cout=7, k=3, stride=2, padding=1, dilation=1, groups=1, hw=(9, 8)),
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=2, groups=1, hw=(8, 11)),
    dict(cin=6, cout=9, k=3, stride=2, padding=0, dilation=1, groups=3, hw=(10, 9)),
    dict(cin=33, cout=5, k=(1, 3), stride=1, padding=(0, 1), dilation=1, groups=1, hw=(5, 6)),
    dict(cin=4, cout=6, k=5, stride=1, padding=2, dilation=1, groups=2, hw=(7, 7)),
]


@pytest.mark.parametrize("scaling", ALL_SCALINGS)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("pad_value", [0.0, 1.0, -1.0])
def test_conv_forward_matches_reference(scaling, case, pad_value):
    c = CONV_CASES[case]
    g = torch.Generator().manual_seed(case * 100 + int(pad_value) + 7)
    layer = BinaryConv2d(c["cin"], c["cout"], c["k"], stride=c["stride"], padding=c["padding"],
                         dilation=c["dilation"], groups=c["groups"], bias=True, scaling=scaling,
                         input_size=c["hw"], pad_value=pad_value)
    randomize_factors(layer, g)
    x = torch.randn(2, c["cin"], *c["hw"], generator=g)
    x[0, 0, 0, 0] = 0.0  # sign(0) must be +1
    y = layer(x)
    ref = reference_conv(layer, x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_zero_pad_value_equals_pytorch_zero_padding(padding):
    """pad_value=0 is exactly PyTorch's own zero padding of the binarized input."""
    layer = BinaryConv2d(4, 6, 3, padding=padding, bias=False, scaling="none")
    x = torch.randn(3, 4, 6, 5)
    expected = F.conv2d(torch.sign(x), torch.sign(layer.weight), padding=padding)
    torch.testing.assert_close(layer(x), expected)


def test_padding_same_and_valid_strings():
    x = torch.randn(1, 3, 7, 6)
    same = BinaryConv2d(3, 4, 3, padding="same", pad_value=1.0, scaling="gamma-o-h-w")
    assert same(x).shape == (1, 4, 7, 6)
    torch.testing.assert_close(same(x).double(), reference_conv(same, x))
    valid = BinaryConv2d(3, 4, 3, padding="valid", scaling="gamma-ohw")
    assert valid(x).shape == (1, 4, 5, 4)


def test_unbatched_input():
    layer = BinaryConv2d(3, 4, 3, padding=1, scaling="gamma-o-h-w", input_size=(5, 5))
    randomize_factors(layer, torch.Generator().manual_seed(0))
    x = torch.randn(3, 5, 5)
    torch.testing.assert_close(layer(x), layer(x[None])[0])


def test_binary_weights_only_keeps_input_real():
    layer = BinaryConv2d(3, 4, 3, padding=1, binarize_input=False, scaling="xnor-alpha", pad_value=1.0)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x).double(), reference_conv(layer, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="xnor-alpha"):
        BinaryConv2d(3, 4, 3, binarize_input=False, scaling="xnor")


def test_sign_of_zero_is_plus_one_and_nan_propagates():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, float("inf"), float("nan")], requires_grad=True)
    s = sign_ste(x)
    assert s[:6].tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]
    assert torch.isnan(s[6])
    layer = BinaryConv2d(2, 3, 1, bias=False, scaling="none")
    zeros = torch.zeros(1, 2, 3, 3)
    torch.testing.assert_close(layer(zeros), F.conv2d(torch.ones_like(zeros), torch.sign(layer.weight)))
    poisoned = torch.randn(1, 2, 3, 3)
    poisoned[0, 1, 1, 1] = float("nan")
    out = layer(poisoned)
    assert torch.isnan(out[0, :, 1, 1]).all()
    assert not torch.isnan(out[0, :, 0, 0]).any()


def test_xnor_alpha_and_k_match_hand_computation():
    torch.manual_seed(3)
    layer = BinaryConv2d(2, 3, 2, stride=1, padding=1, bias=False, scaling="xnor")
    x = torch.randn(1, 2, 3, 3)
    w = layer.weight.detach()
    alpha_hand = [sum(abs(float(v)) for v in w[o].flatten()) / 8 for o in range(3)]
    torch.testing.assert_close(layer.weight_alpha().detach(), torch.tensor(alpha_hand))
    # K by explicit loops: mean over channels of |x|, averaged over each 2×2 window of the zero-padded map.
    a = [[(abs(float(x[0, 0, i, j])) + abs(float(x[0, 1, i, j]))) / 2 for j in range(3)] for i in range(3)]
    padded = [[a[i - 1][j - 1] if 1 <= i <= 3 and 1 <= j <= 3 else 0.0 for j in range(5)] for i in range(5)]
    k_hand = [[(padded[i][j] + padded[i][j + 1] + padded[i + 1][j] + padded[i + 1][j + 1]) / 4
               for j in range(4)] for i in range(4)]
    torch.testing.assert_close(layer.magnitude_map(x)[0, 0], torch.tensor(k_hand))
    conv = F.conv2d(torch.sign(x), torch.sign(w), padding=1)
    expected = conv * torch.tensor(alpha_hand).view(1, 3, 1, 1) * torch.tensor(k_hand)
    torch.testing.assert_close(layer(x), expected)


# -- linear --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", ["none", "xnor", "xnor-alpha", "gamma-o"])
def test_linear_forward_matches_reference(scaling):
    g = torch.Generator().manual_seed(1)
    layer = BinaryLinear(37, 5, scaling=scaling)
    randomize_factors(layer, g)
    x = torch.randn(4, 3, 37, generator=g)
    y = F.linear(sign64(x), sign64(layer.weight.detach()))
    w = layer.weight.detach().double()
    if scaling == "xnor-alpha":
        y = y * w.abs().mean(dim=1)
    elif scaling == "xnor":
        y = y * w.abs().mean(dim=1) * x.double().abs().mean(dim=-1, keepdim=True)
    elif scaling == "gamma-o":
        y = y * layer.scale_channel.detach().double()
    y = y + layer.bias.detach().double()
    torch.testing.assert_close(layer(x).double(), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scaling", ["gamma-ohw", "gamma-o-hw", "gamma-o-h-w"])
def test_linear_refuses_spatial_scalings(scaling):
    with pytest.raises(ValueError, match="spatial.*none, xnor, xnor-alpha, gamma-o"):
        BinaryLinear(4, 3, scaling=scaling)


def test_drop_in_signatures_match_torch():
    for ours, theirs in ((BinaryConv2d, nn.Conv2d), (BinaryLinear, nn.Linear)):
        ours_params = inspect.signature(ours.__init__).parameters
        for name, param in inspect.signature(theirs.__init__).parameters.items():
            assert name in ours_params, (ours.__name__, name)
            assert ours_params[name].default == param.default, (ours.__name__, name)
    assert inspect.signature(BinaryConv2d.__init__).parameters["scaling"].default == "gamma-o-h-w"


def test_extra_repr_shows_options():
    text = repr(BinaryConv2d(3, 4, 3, scaling="gamma-o", ste="approx", pad_value=-1.0))
    assert "scaling='gamma-o'" in text and "ste='approx'" in text and "pad_value=-1.0" in text
    assert "scaling='xnor'" in repr(BinaryLinear(3, 4, scaling="xnor"))


def test_binary_weight_is_plus_minus_one():
    layer = BinaryConv2d(3, 4, 3)
    with torch.no_grad():
        layer.weight[0, 0, 0, 0] = 0.0
    wb = layer.binary_weight()
    assert set(wb.unique().tolist()) <= {-1.0, 1.0}
    assert wb[0, 0, 0, 0] == 1.0
    assert not wb.requires_grad
    torch.testing.assert_close(wb.double(), sign64(layer.weight.detach()))


# -- gradients -----------------------------------------------------------------------------------

STE_DERIVATIVE = {
    "clipped": lambda x: (x.abs() <= 1).double(),
    "approx": lambda x: (2 - 2 * x.abs()).clamp_min(0),
    "identity": lambda x: torch.ones_like(x),
}


@pytest.mark.parametrize("ste", list(STE_DERIVATIVE))
def test_ste_gradient_of_sign(ste):
    x = torch.tensor([-3.0, -1.0, -0.75, -0.2, 0.0, 0.3, 0.999, 1.0, 1.5], dtype=torch.float64,
                     requires_grad=True)
    upstream = torch.arange(1.0, 10.0, dtype=torch.float64)
    (sign_ste(x, ste) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, upstream * STE_DERIVATIVE[ste](x.detach()))


@pytest.mark.parametrize("ste", list(STE_DERIVATIVE))
def test_layer_gradients_follow_the_ste(ste):
    """Input and weight gradients equal those of a conv on ±1 tensors times the STE derivative."""
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, padding=1, bias=False, scaling="none", ste=ste).double()
    with torch.no_grad():
        layer.weight.mul_(8)  # push some latent weights beyond |w| > 1
    x = (2 * torch.randn(2, 3, 5, 5, dtype=torch.float64)).requires_grad_()
    upstream = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()

    xs = sign64(x.detach()).requires_grad_()
    ws = sign64(layer.weight.detach()).requires_grad_()
    (F.conv2d(xs, ws, padding=1) * upstream).sum().backward()
    derivative = STE_DERIVATIVE[ste]
    torch.testing.assert_close(x.grad, xs.grad * derivative(x.detach()))
    torch.testing.assert_close(layer.weight.grad, ws.grad * derivative(layer.weight.detach()))
    assert (layer.weight.detach().abs() > 1).any()


@pytest.mark.parametrize("scaling", GAMMA_SCALINGS)
def test_learned_factors_get_gradients_and_change(scaling):
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, padding=1, scaling=scaling, input_size=(6, 5))
    names = layer.scaling_spec.factors
    before = {n: getattr(layer, n).detach().clone() for n in names}
    assert all(torch.equal(t, torch.ones_like(t)) for t in before.values())  # factors start at 1
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    loss = (layer(torch.randn(2, 3, 6, 5)) - 1).pow(2).mean()
    loss.backward()
    for n in names:
        assert getattr(layer, n).grad is not None and getattr(layer, n).grad.abs().sum() > 0, n
    opt.step()
    for n in names:
        assert not torch.equal(getattr(layer, n).detach(), before[n]), n


def test_learned_gamma_gradient_matches_formula():
    """d loss / d Γ for gamma-ohw is the binary conv output times the upstream gradient."""
    torch.manual_seed(1)
    layer = BinaryConv2d(2, 3, 3, bias=False, scaling="gamma-ohw", input_size=(5, 5)).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    upstream = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()
    conv = F.conv2d(sign64(x), sign64(layer.weight.detach()))
    torch.testing.assert_close(layer.scale_full.grad, (conv * upstream).sum(0))


# -- sizes, state, compile -----------------------------------------------------------------------


def test_spatial_size_inferred_at_first_forward_then_fixed():
    layer = BinaryConv2d(3, 4, 3, stride=2, padding=1, scaling="gamma-o-h-w")
    assert layer.output_size is None
    layer(torch.randn(1, 3, 8, 6))
    assert layer.scale_height.shape == (4,) and layer.scale_width.shape == (3,)
    layer(torch.randn(1, 3, 7, 5))  # same output size (4, 3): accepted
    with pytest.raises(ValueError, match=r"built for input size \(8, 6\).*output size \(4, 3\).*\(10, 6\)"):
        layer(torch.randn(1, 3, 10, 6))


def test_size_error_names_the_layer():
    model = nn.Sequential(BinaryConv2d(3, 4, 3, input_size=(6, 6)))
    name_layers(model)
    with pytest.raises(ValueError, match="BinaryConv2d '0'.*built for input size"):
        model(torch.randn(1, 3, 7, 7))


def test_non_spatial_scalings_accept_any_size():
    layer = BinaryConv2d(3, 4, 3, scaling="gamma-o", input_size=(6, 6))
    assert layer(torch.randn(1, 3, 9, 13)).shape == (1, 4, 7, 11)


@pytest.mark.parametrize("scaling", ALL_SCALINGS)
def test_state_dict_round_trip(scaling):
    torch.manual_seed(0)
    model = nn.Sequential(BinaryConv2d(3, 5, 3, padding=1, scaling=scaling, input_size=(6, 6)),
                          nn.BatchNorm2d(5), nn.PReLU(5), nn.Flatten(),
                          BinaryLinear(5 * 36, 4, scaling="gamma-o" if scaling.startswith("gamma") else "none"))
    randomize_factors(model[0], torch.Generator().manual_seed(1))
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = nn.Sequential(BinaryConv2d(3, 5, 3, padding=1, scaling=scaling),  # no input_size: lazy
                          nn.BatchNorm2d(5), nn.PReLU(5), nn.Flatten(),
                          BinaryLinear(5 * 36, 4, scaling="gamma-o" if scaling.startswith("gamma") else "none"))
    clone.load_state_dict(state)
    clone.eval()
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    assert list(clone.state_dict()) == list(model.state_dict())


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
        BinaryConv2d(8, 8, 3, padding=1, bias=False, scaling="gamma-o-h-w", input_size=(8, 8)),
        nn.PReLU(8), nn.BatchNorm2d(8),
        BinaryConv2d(8, 8, 3, stride=2, padding=1, scaling="xnor", pad_value=1.0),
        nn.Flatten(), BinaryLinear(8 * 16, 10, scaling="gamma-o"),
    )
    for layer in (model[2], model[7]):
        randomize_factors(layer, torch.Generator().manual_seed(2))
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    eager = model(x)
    compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    layer = BinaryConv2d(3, 4, 3, input_size=(6, 6))
    with pytest.raises(TypeError, match="floating-point.*torch.int64"):
        layer(torch.ones(1, 3, 6, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\).*got 2-D"):
        layer(torch.randn(3, 6))
    with pytest.raises(ValueError, match="expected 3 input channels, got 5"):
        layer(torch.randn(1, 5, 6, 6))
    with pytest.raises(ValueError, match="BinaryConv2d.*spatial scaling 'gamma-o-h-w'.*output size"):
        layer(torch.randn(1, 3, 8, 8))
    linear = BinaryLinear(6, 2)
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 6\), got shape \(2, 5\)"):
        linear(torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        linear(torch.ones(2, 6, dtype=torch.int32))


@pytest.mark.parametrize("kwargs, match", [
    (dict(scaling="gamma"), "unknown scaling 'gamma'; valid names: none, xnor, xnor-alpha, gamma-o, "
                            "gamma-ohw, gamma-o-hw, gamma-o-h-w"),
    (dict(ste="tanh"), "unknown ste 'tanh'; valid names: clipped, approx, identity"),
    (dict(pad_value=0.5), r"pad_value must be one of \(0.0, 1.0, -1.0\)"),
    (dict(padding_mode="reflect"), "padding_mode='reflect' is not supported"),
    (dict(input_size=(0, 4)), "input_size must be positive"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinaryConv2d(3, 4, 3, **kwargs)


def test_bad_linear_constructor_arguments():
    with pytest.raises(ValueError, match="unknown scaling 'foo'"):
        BinaryLinear(3, 4, scaling="foo")
    with pytest.raises(ValueError, match="unknown ste"):
        BinaryLinear(3, 4, ste="foo")


def test_every_scaling_constructs_for_every_pad_value():
    for scaling, pad in itertools.product(ALL_SCALINGS, (0.0, 1.0, -1.0)):
        layer = BinaryConv2d(2, 2, 3, padding=1, scaling=scaling, pad_value=pad, input_size=(4, 4))
        assert layer(torch.randn(1, 2, 4, 4)).shape == (1, 2, 4, 4)


def _special_values(dtype):
    """Values at every edge of the sign and of the clipped STE, plus random ones, in ``dtype``."""
    eps = torch.finfo(dtype).eps
    edges = torch.tensor([0.0, -0.0, 1.0, -1.0, 1 + eps, -1 - eps, 1 - eps / 2, -(1 - eps / 2), 1e-38, -1e-38,
                          float("inf"), 3.0, -3.0], dtype=dtype)  # not -inf too: inf - inf is a NaN sum
    return torch.cat([edges, 3 * torch.randn(4000, dtype=torch.float64).to(dtype)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("ste", list(STE_DERIVATIVE))
def test_fast_sign_and_gradient_equal_the_reference_formulas(dtype, ste):
    # The eager CPU shortcuts (copysign, one fused backward kernel) against the formulas they replace:
    # sign = where(x < 0, -1, 1) with NaN kept, gradient = upstream · STE derivative, bit for bit.
    from xnorpp.nn.quantizers import _sign

    torch.manual_seed(0)
    for poison in (False, True):  # a NaN anywhere sends the whole tensor down the exact path
        x = _special_values(dtype)
        if poison:
            x[7] = float("nan")
        assert _sign(x)[1] is not poison  # the shortcut is taken exactly when there is no NaN
        x.requires_grad_()
        upstream = torch.randn(len(x), dtype=torch.float64).to(dtype)
        upstream[:3] = torch.tensor([float("inf"), float("nan"), -float("inf")]) if poison else upstream[:3]
        s = sign_ste(x, ste)
        xd = x.detach()
        expect = torch.where(torch.isnan(xd), xd, torch.where(xd < 0, -1.0, 1.0).to(dtype))
        assert torch.equal(torch.isnan(s), torch.isnan(expect))
        assert torch.equal(s.nan_to_num(7.0), expect.nan_to_num(7.0))
        (s * upstream).sum().backward()  # upstream reaches the STE as grad = upstream (times 1)
        want = upstream * STE_DERIVATIVE[ste](xd.double()).to(dtype)
        assert torch.equal(torch.isnan(x.grad), torch.isnan(want))
        assert torch.equal(x.grad.nan_to_num(7.0), want.nan_to_num(7.0))


def test_infinite_upstream_gradient_still_reaches_the_weights():
    # AMP's GradScaler skips a step when a gradient overflowed: an inf must not be dropped by the STE.
    x = torch.tensor([5.0, 0.5], requires_grad=True)
    s = sign_ste(x)
    s.backward(torch.tensor([float("inf"), 1.0]))
    assert torch.isnan(x.grad[0]) and x.grad[1] == 1.0  # inf · 0 = NaN, as the product has always given
