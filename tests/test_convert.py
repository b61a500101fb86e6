"""convert(): torchvision's resnet18 into a binary network."""

import pytest
import torch
import torchvision
from torch import nn

import xnorpp
from xnorpp.nn import BinaryConv2d, BinaryLayer, BinaryLinear


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_convert_keeps_first_and_last_real_and_copies_weights(tv_resnet18):
    before = {k: v.clone() for k, v in tv_resnet18.state_dict().items()}
    model = xnorpp.convert(tv_resnet18, scaling="gamma-o-h-w", input_size=(32, 32))
    assert model is not tv_resnet18
    # original untouched
    for k, v in tv_resnet18.state_dict().items():
        assert torch.equal(v, before[k])
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    binary = {n for n, m in model.named_modules() if isinstance(m, BinaryLayer)}
    tv_convs = {n for n, m in tv_resnet18.named_modules() if isinstance(m, nn.Conv2d)}
    assert binary == tv_convs - {"conv1"} and len(binary) == 19
    report = model.xnorpp_conversion
    assert set(report.converted) == binary and report.kept == ["conv1", "fc"]
    for name in binary:
        torch.testing.assert_close(model.get_submodule(name).weight, tv_resnet18.get_submodule(name).weight)
    assert not any(type(m) is nn.ReLU for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert "converted 19 layer(s)" in str(report)


def test_convert_spatial_factors_fit_the_traced_sizes(tv_resnet18):
    model = xnorpp.convert(tv_resnet18, scaling="gamma-o-h-w", input_size=(64, 48))
    sizes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, m=m: sizes.__setitem__(m, tuple(o.shape[-2:])))
             for m in model.modules() if isinstance(m, BinaryConv2d)]
    model(torch.randn(1, 3, 64, 48))
    for h in hooks:
        h.remove()
    for layer, (h, w) in sizes.items():
        assert layer.scale_height.shape == (h,) and layer.scale_width.shape == (w,)


def test_convert_patterns_inplace_and_linear(tv_resnet18):
    model = xnorpp.convert(tv_resnet18, scaling="gamma-o", exclude=("first", "last", "*downsample*"))
    assert len([m for m in model.modules() if isinstance(m, BinaryConv2d)]) == 16
    model = xnorpp.convert(tv_resnet18, scaling="gamma-o", include=["layer4.*"])
    assert sorted(model.xnorpp_conversion.converted) == sorted(
        n for n, m in tv_resnet18.named_modules() if n.startswith("layer4.") and isinstance(m, nn.Conv2d))
    model = xnorpp.convert(tv_resnet18, scaling="xnor", exclude=("first",))
    assert isinstance(model.fc, BinaryLinear) and model.fc.scaling == "xnor"
    copy = xnorpp.convert(tv_resnet18, scaling="gamma-o")
    same = xnorpp.models.convert(copy, scaling="gamma-o", inplace=True)  # nothing left but first/last
    assert same is copy


def test_convert_without_input_size_materializes_on_first_forward(tv_resnet18):
    model = xnorpp.convert(tv_resnet18, scaling="gamma-o-hw")
    layer = model.layer1[0].conv1
    assert isinstance(layer.scale_spatial, nn.UninitializedParameter)
    model(torch.randn(1, 3, 32, 32))
    assert layer.scale_spatial.shape == (8, 8)


def test_convert_bad_arguments(tv_resnet18):
    with pytest.raises(ValueError, match="valid names"):
        xnorpp.convert(tv_resnet18, scaling="gamma")
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        xnorpp.convert(nn.Sequential(nn.ReLU()))
