"""Models: registry, architecture rules (real first/last layers), factor sizes, block semantics."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xnorpp.models as M
from xnorpp.nn import BinaryConv2d, BinaryLayer, BinaryLinear


def binary_layers(model):
    return [m for m in model.modules() if isinstance(m, BinaryLayer)]


def real_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, BinaryLayer)]


def test_registry_lists_the_families_and_float_variants():
    names = M.list_models()
    for n in ("resnet18", "resnet34", "alexnet", "fmnist-net"):
        assert n in names and f"float-{n}" in names


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet99'.*resnet18.*fmnist-net"):
        M.create("resnet99")


def test_unknown_scaling_is_refused_early():
    with pytest.raises(ValueError, match="gamma-o-h-w"):
        M.create("fmnist-net", scaling="gamma-x", in_channels=1, input_size=28)


@pytest.mark.parametrize("name,size,kw", [
    ("fmnist-net", 28, {}), ("resnet18", 32, {"width": 8}), ("resnet34", 28, {"width": 4}),
    ("resnet18", 224, {"width": 4}), ("alexnet", 32, {"fc_features": 64}),
])
def test_forward_shape_and_real_first_last(name, size, kw):
    torch.manual_seed(0)
    model = M.create(name, num_classes=7, in_channels=3, input_size=size, **kw).eval()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    reals = real_layers(model)
    # first conv and last linear are real; everything else that is a 3×3+ conv is binary
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    last = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    assert not isinstance(first, BinaryLayer) and not isinstance(last, BinaryLayer)
    assert isinstance(last, nn.Linear) and last.out_features == 7
    assert all(m.kernel_size == (1, 1) for m in reals if isinstance(m, nn.Conv2d) and m is not first)
    assert len(binary_layers(model)) > 0
    float_model = M.create(f"float-{name}", num_classes=7, in_channels=3, input_size=size, **kw)
    assert binary_layers(float_model) == []
    assert float_model.eval()(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_resnet18_layer_counts_and_binary_downsample():
    model = M.create("resnet18", input_size=32, width=8)
    convs = binary_layers(model)
    assert len(convs) == 16 and all(isinstance(c, BinaryConv2d) for c in convs)
    assert len([m for m in real_layers(model) if isinstance(m, nn.Conv2d)]) == 1 + 3
    model = M.create("resnet18", input_size=32, width=8, binary_downsample=True)
    assert len(binary_layers(model)) == 19


def test_stem_follows_input_size():
    small = M.create("resnet18", input_size=28, width=4)
    big = M.create("resnet18", input_size=224, width=4)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.stem)
    assert big.stem[0].kernel_size == (7, 7) and any(isinstance(m, nn.MaxPool2d) for m in big.stem)
    with pytest.raises(ValueError, match="stem"):
        M.create("resnet18", stem="tiny")


@pytest.mark.parametrize("scaling", ["gamma-o-h-w", "gamma-o-hw", "gamma-ohw"])
def test_spatial_factors_match_real_output_sizes(scaling):
    model = M.create("resnet18", input_size=28, width=4, scaling=scaling)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, m=m: seen.__setitem__(m, tuple(o.shape[-2:])))
             for m in binary_layers(model)]
    model.eval()(torch.randn(1, 3, 28, 28))
    for h in hooks:
        h.remove()
    assert len(seen) == 16
    for layer, (h, w) in seen.items():
        assert tuple(layer.output_size) == (h, w)
        if scaling == "gamma-o-h-w":
            assert layer.scale_height.shape == (h,) and layer.scale_width.shape == (w,)
        if scaling == "gamma-ohw":
            assert layer.scale_full.shape == (layer.out_channels, h, w)
    # parameters exist at construction (no lazy dry run needed before building an optimizer)
    assert not any(isinstance(p, nn.UninitializedParameter) for p in model.parameters())


def test_alexnet_hidden_linear_layers_use_channel_scaling():
    model = M.create("alexnet", input_size=32, fc_features=32, scaling="gamma-o-h-w")
    lins = [m for m in binary_layers(model) if isinstance(m, BinaryLinear)]
    assert len(lins) == 2 and all(m.scaling == "gamma-o" for m in lins)
    model = M.create("alexnet", input_size=32, fc_features=32, scaling="xnor")
    assert {m.scaling for m in binary_layers(model)} == {"xnor"}


def test_basic_block_follows_its_documented_formula():
    torch.manual_seed(1)
    model = M.create("resnet18", input_size=16, width=4).eval()
    block = model.layer2[0]  # has a downsample
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 4, 16, 16)

    def bconv(conv, t):
        sx = torch.where(t < 0, -1.0, 1.0)
        sw = torch.where(conv.weight < 0, -1.0, 1.0)
        y = F.conv2d(sx, sw, None, conv.stride, conv.padding)
        return y * (conv.scale_channel.view(-1, 1, 1) * conv.scale_height.view(1, -1, 1)
                    * conv.scale_width.view(1, 1, -1))

    def prelu(a, t):
        return torch.where(t >= 0, t, a.weight.view(1, -1, 1, 1) * t)

    with torch.no_grad():
        out = prelu(block.act1, bconv(block.conv1, block.bn1(x)))
        out = prelu(block.act2, bconv(block.conv2, block.bn2(out)))
        pool, conv, bn = block.downsample
        short = bn(F.conv2d(F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False), conv.weight))
        torch.testing.assert_close(block(x), out + short)


def test_scaling_factors_get_gradients():
    model = M.create("fmnist-net", in_channels=1, input_size=28, width=8)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    for layer in binary_layers(model):
        for name in layer.scaling_spec.factors:
            g = getattr(layer, name).grad
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_gamma_init_alpha_starts_at_xnor_alpha():
    model = M.create("fmnist-net", in_channels=1, input_size=28, width=8, gamma_init="alpha")
    for layer in binary_layers(model):
        expected = layer.weight.detach().abs().mean(dim=(1, 2, 3))
        torch.testing.assert_close(layer.scale_channel.detach(), expected)
        assert torch.equal(layer.scale_height.detach(), torch.ones_like(layer.scale_height))
    ones = M.create("fmnist-net", in_channels=1, input_size=28, width=8)
    assert all(torch.equal(l.scale_channel, torch.ones_like(l.scale_channel)) for l in binary_layers(ones))
    with pytest.raises(ValueError, match="gamma_init"):
        M.create("fmnist-net", in_channels=1, input_size=28, gamma_init="zeros")


def test_list_models_takes_a_glob_pattern():
    import fnmatch

    names = M.list_models()
    assert M.list_models("resnet*") == ["resnet18", "resnet34"]
    assert M.list_models("float-*") == [n for n in names if fnmatch.fnmatchcase(n, "float-*")] != []
    assert M.list_models("nothing-like-this*") == []


def test_create_accepts_timms_in_chans_and_refuses_unknown_options():
    a = M.create("fmnist-net", in_chans=3, input_size=(28, 28))
    b = M.create("fmnist-net", in_channels=3, input_size=(28, 28))
    assert a.stem[0].in_channels == b.stem[0].in_channels == 3
    with pytest.raises(ValueError, match=r"model 'resnet18' has no option 'depth'; its options: .*width"):
        M.create("resnet18", depth=50)
    with pytest.raises(ValueError, match="wrong type.*width='wide'"):
        M.create("fmnist-net", width="wide", input_size=(28, 28))
    from xnorpp.models.registry import model_options
    assert "width" in model_options("float-fmnist-net") and "fc_features" in model_options("alexnet")
