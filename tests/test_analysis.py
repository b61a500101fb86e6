"""Tests of xnorpp.analysis: approximation error, summary, report (fast, tiny models)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnorpp.analysis import approximation_error, report, summary
from xnorpp.nn import BinaryConv2d, BinaryLinear

XNOR_GAUSSIAN = math.sqrt(1 - 4 / math.pi ** 2)  # ≈ 0.771
BWN_GAUSSIAN = math.sqrt(1 - 2 / math.pi)  # ≈ 0.603


def _gaussian_conv(**kw):
    torch.manual_seed(0)
    layer = BinaryConv2d(256, 32, 3, bias=False, **kw)
    nn.init.normal_(layer.weight)
    return nn.Sequential(layer), torch.randn(8, 256, 10, 10)


# -- approximation error ----------------------------------------------------------------------

def test_gaussian_xnor_relative_error():
    model, x = _gaussian_conv(scaling="xnor")
    layer = approximation_error(model, x).layers[0]
    assert layer.relative_error["xnor"] == pytest.approx(XNOR_GAUSSIAN, abs=0.015)
    # cosine: E[y ŷ] / sqrt(E[y²] E[ŷ²]) = n (2/π)² / (n · 2/π) = 2/π
    assert layer.cosine["xnor"] == pytest.approx(2 / math.pi, abs=0.015)
    assert layer.relative_error["learned"] is None  # trained with xnor: no learned Γ


def test_gaussian_binary_weights_only_relative_error():
    model, x = _gaussian_conv(scaling="xnor-alpha", binarize_input=False)
    layer = approximation_error(model, x).layers[0]
    assert layer.relative_error["xnor-alpha"] == pytest.approx(BWN_GAUSSIAN, abs=0.015)
    assert layer.relative_error["xnor"] is None  # K needs binarized inputs


def test_gaussian_linear_xnor():
    torch.manual_seed(1)
    layer = BinaryLinear(2048, 64, bias=False, scaling="xnor")
    nn.init.normal_(layer.weight)
    rep = approximation_error(nn.Sequential(layer), torch.randn(256, 2048))
    assert rep.layers[0].relative_error["xnor"] == pytest.approx(XNOR_GAUSSIAN, abs=0.015)


def _reference_metrics(real: torch.Tensor, approx: torch.Tensor) -> tuple[float, float]:
    real, approx = real.double().flatten(), approx.double().flatten()
    rel = float((real - approx).norm() / real.norm())
    cos = float(real @ approx / (real.norm() * approx.norm()))
    return rel, cos


def test_against_direct_float64_reference():
    """Every scheme on a conv with padding, stride and learned Γ, against a direct float64 computation."""
    torch.manual_seed(2)
    conv = BinaryConv2d(6, 5, 3, stride=2, padding=1, bias=True, scaling="gamma-o-h-w", input_size=(9, 9),
                        pad_value=1.0).double()
    with torch.no_grad():
        for name in ("scale_channel", "scale_height", "scale_width"):
            getattr(conv, name).uniform_(0.2, 2.0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1).double(), conv)
    x = torch.randn(7, 3, 9, 9, dtype=torch.float64)
    rep = approximation_error(model, x, batch_size=3)  # several batches accumulate
    row = rep.layers[0]
    assert rep.images == 7 and row.name == "1"

    inp = model[0](x).detach()
    real = F.conv2d(inp, conv.weight.detach(), None, 2, 1)
    xb = torch.where(inp < 0, -1.0, 1.0).double()
    wb = torch.where(conv.weight.detach() < 0, -1.0, 1.0).double()
    binary = F.conv2d(F.pad(xb, (1, 1, 1, 1), value=1.0), wb, None, 2, 0)
    alpha = conv.weight.detach().abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
    k = F.avg_pool2d(inp.abs().mean(1, keepdim=True), 3, 2, 1, count_include_pad=True)
    gamma = (conv.scale_channel.view(-1, 1, 1) * conv.scale_height.view(1, -1, 1)
             * conv.scale_width.view(1, 1, -1)).detach()
    # Oracle: least squares per output channel, solved by torch.linalg.lstsq.
    oracle = torch.empty_like(binary)
    for o in range(binary.shape[1]):
        b = binary[:, o].reshape(-1, 1)
        s = torch.linalg.lstsq(b, real[:, o].reshape(-1, 1)).solution
        oracle[:, o] = binary[:, o] * s.item()
    expected = {"none": binary, "xnor-alpha": binary * alpha, "xnor": binary * alpha * k,
                "learned": binary * gamma, "oracle": oracle}
    for scheme, approx in expected.items():
        rel, cos = _reference_metrics(real, approx)
        assert row.relative_error[scheme] == pytest.approx(rel, rel=1e-6), scheme
        assert row.cosine[scheme] == pytest.approx(cos, rel=1e-6), scheme
        # Per-channel least-squares rescaling of this approximation (lstsq again).
        rescaled = torch.empty_like(approx)
        for o in range(approx.shape[1]):
            s = torch.linalg.lstsq(approx[:, o].reshape(-1, 1), real[:, o].reshape(-1, 1)).solution
            rescaled[:, o] = approx[:, o] * s.item()
        assert row.rescaled_error[scheme] == pytest.approx(_reference_metrics(real, rescaled)[0], rel=1e-6), scheme
    assert row.rescaled_error["none"] == pytest.approx(row.relative_error["oracle"], rel=1e-9)
    # The oracle is the best per-channel scale: no scheme of that family beats it.
    for scheme in ("none", "xnor-alpha", "learned"):
        assert row.relative_error["oracle"] <= row.relative_error[scheme] + 1e-12


def test_data_forms_and_max_images():
    torch.manual_seed(3)
    model = nn.Sequential(BinaryConv2d(2, 4, 3, scaling="gamma-o"))
    x = torch.randn(20, 2, 6, 6)
    labels = torch.zeros(20, dtype=torch.long)
    dataset = torch.utils.data.TensorDataset(x, labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    a = approximation_error(model, x[:10])
    b = approximation_error(model, dataset, max_images=10, batch_size=3)
    c = approximation_error(model, loader, max_images=10)
    assert a.images == b.images == c.images == 10
    assert a.layers[0].relative_error == pytest.approx(b.layers[0].relative_error)
    assert a.layers[0].cosine == pytest.approx(c.layers[0].cosine)
    assert model.training  # mode restored


def test_approx_bad_input():
    with pytest.raises(ValueError, match="no binary layers"):
        approximation_error(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(2, 1, 5, 5))
    with pytest.raises(TypeError, match="data must be"):
        approximation_error(nn.Sequential(BinaryConv2d(1, 2, 3)), 42)
    with pytest.raises(ValueError, match="no images"):
        approximation_error(nn.Sequential(BinaryConv2d(1, 2, 3)), [])


# -- summary ----------------------------------------------------------------------------------

def _small_model():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
        BinaryConv2d(8, 16, 3, stride=2, padding=1, bias=False, scaling="gamma-o-h-w", input_size=(8, 8)),
        nn.PReLU(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        BinaryLinear(16, 12, bias=False, scaling="xnor"), nn.Linear(12, 10))


def test_summary_hand_count():
    s = summary(_small_model(), (1, 8, 8), packed=False)
    by_name = {r.name: r for r in s.layers}
    # conv 1→8, 3×3, bias, on 8×8 (padding 1): 8·1·9 + 8 params, 8·1·9·8·8 MACs
    assert (by_name["0"].float_params, by_name["0"].float_macs) == (8 * 9 + 8, 8 * 9 * 64)
    assert (by_name["1"].float_params, by_name["1"].bn_stats) == (2 * 8, 2 * 8)  # weight, bias | mean, var
    conv = by_name["2"]  # binary 8→16, stride 2 → 4×4 output
    assert conv.output_shape == (16, 4, 4)
    assert (conv.binary_params, conv.float_params, conv.learned_scale_params) == (16 * 8 * 9, 16 + 4 + 4, 24)
    assert (conv.binary_macs, conv.float_macs) == (16 * 8 * 9 * 16, 0)
    lin = by_name["6"]  # xnor linear: K costs one mean over the 16 inputs
    assert (lin.binary_params, lin.binary_macs, lin.float_macs) == (192, 192, 16)
    assert s.binary_params == 16 * 8 * 9 + 192
    assert s.float_params == (8 * 9 + 8) + 16 + 24 + 16 + (12 * 10 + 10)
    assert s.bn_stats == 16
    assert s.learned_scale_params == 24
    assert s.binary_macs == 16 * 8 * 9 * 16 + 192
    assert s.float_macs == 8 * 9 * 64 + 16 + 12 * 10
    assert s.binary_mac_share == pytest.approx(s.binary_macs / (s.binary_macs + s.float_macs))
    assert s.memory_bits == s.binary_params + 32 * (s.float_params + s.bn_stats)
    assert s.float32_bytes == 4 * (s.binary_params + s.float_params + s.bn_stats)
    # Independent check: trainable parameters as training counts them, BN statistics apart.
    model = _small_model()
    assert s.total_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert s.bn_stats == sum(b.numel() for b in model.buffers() if b.is_floating_point())
    text = s.table()
    assert "BinaryConv2d[gamma-o-h-w]" in text and "total" in text
    assert json.loads(s.to_json())["totals"]["binary_macs"] == s.binary_macs


def test_summary_channels_from_first_conv_and_bad_sizes():
    model = _small_model()
    assert summary(model, (8, 8), packed=False).input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="does not fit the model"):
        summary(model, (1, 16, 16), packed=False)  # spatial Γ was built for 8×8
    with pytest.raises(ValueError, match="does not fit the model"):
        summary(model, (3, 8, 8), packed=False)  # wrong channel count
    with pytest.raises(ValueError, match="input_size"):
        summary(model, (1, 2, 3, 4), packed=False)
    with pytest.raises(ValueError, match="no convolution"):
        summary(nn.Sequential(nn.Linear(4, 2)), (2, 2), packed=False)


def test_summary_float_model_has_no_binary_work():
    s = summary(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)), (3, 6, 6), packed=False)
    assert s.binary_params == 0 and s.binary_macs == 0 and s.binary_mac_share == 0.0
    assert s.float_macs == 4 * 3 * 9 * 16 + 64 * 2


def _flop_counter_macs(model: nn.Module, shape) -> int:
    """MACs of one image as PyTorch's FlopCounterMode counts them (2 FLOPs per multiply-accumulate)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    model.eval()
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name, shape", [("resnet18", (3, 224, 224)), ("alexnet", (3, 224, 224)),
                                         ("fmnist-net", (1, 28, 28))])
def test_summary_totals_agree_with_pytorchs_flop_counter(name, shape):
    from xnorpp.models import create
    from xnorpp.train.loop import count_parameters

    kw = dict(in_channels=shape[0], input_size=shape[1:], scaling="gamma-o-h-w")  # Γ: no XNOR-Net K map
    model = create(name, **kw)
    s = summary(model, shape, packed=False)
    assert s.binary_macs + s.float_macs == _flop_counter_macs(model, shape)
    assert s.total_params == count_parameters(model)  # what training reports
    assert s.bn_stats == sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    assert 0.5 < s.binary_mac_share < 1.0
    # Binary weights on real inputs: a MAC counts at the higher precision (as Larq counts), so float.
    real_inputs = create(name, binarize_input=False, **kw)
    r = summary(real_inputs, shape, packed=False)
    assert r.binary_macs == 0 and r.float_macs == _flop_counter_macs(real_inputs, shape)
    assert r.binary_params == s.binary_params  # the weights stay 1 bit each
    assert "weights only" in r.table()


# -- report -----------------------------------------------------------------------------------

def _fake_run(tmp_path, name="gamma-o-h-w-seed0", scaling="gamma-o-h-w", finished=True, epochs=3):
    """A run folder as xnorpp.train writes it, for a tiny model with perturbed learned factors."""
    run = tmp_path / name
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                          BinaryConv2d(4, 8, 3, padding=1, scaling=scaling, input_size=(6, 6)), nn.PReLU(8))
    with torch.no_grad():
        for p in model[2].parameters():
            if p.dim() <= 3 and p is not model[2].weight:
                p.add_(0.3 * torch.randn_like(p))
    config = {"model": "tiny", "dataset": "synthetic", "scaling": scaling, "epochs": epochs, "seed": 0}
    (run / "config.json").write_text(json.dumps(config))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
                    "epoch_time_s", "images_per_s"])
        for e in range(1, epochs + 1):
            w.writerow([e, 0.01, 2.0 / e, 50 + 10 * e, 1.5 / e, 55 + 10 * e, 90, 1.0, 100.0])
    torch.save({"model": model.state_dict(), "config": config}, run / "model.pt")
    (run / "approx.json").write_text(approximation_error(model, torch.randn(16, 1, 6, 6)).to_json())
    if finished:
        (run / "result.json").write_text(json.dumps({"test_top1": 55.0 + 10 * epochs, "best_top1": 85.0,
                                                     "train_time_s": 3.0, "params": 999, "epochs": epochs}))
    return run


def _check_page(page, expected_images):
    import matplotlib.image as mpimg

    text = page.read_text()
    for name in expected_images:
        assert name in text, name
        img = mpimg.imread(page.parent / name)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.01  # not a blank picture


def test_report_on_run_folder(tmp_path):
    run = _fake_run(tmp_path)
    page = report(run)
    assert page == run / "report" / "report.md"
    _check_page(page, ["curves.png", "approx_error.png", "approx_schemes.png", "factors-gamma-o-h-w-seed0.png"])


def test_report_refuses_incomplete_or_foreign_folders(tmp_path):
    run = _fake_run(tmp_path, finished=False)
    with pytest.raises(ValueError, match="incomplete.*3 of 3 epochs"):
        report(run)
    page = report(run, partial=True, fmt="html")
    assert page.name == "report.html" and "not finished" in page.read_text()
    html_text = page.read_text()
    assert '<img src="curves.png"' in html_text and "<h2>Every scale on every model</h2>" in html_text
    assert "<table><tr><th>model</th>" in html_text
    with pytest.raises(ValueError, match="neither a comparison folder"):
        report(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        report(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown format"):
        report(run, fmt="pdf", partial=True)


def test_report_on_comparison_folder(tmp_path):
    from xnorpp.analysis.compare import load_comparison

    folder = tmp_path / "cmp"
    for scaling, seeds in (("gamma-o", (0, 1)), ("gamma-o-hw", (0,)), ("gamma-ohw", (0,))):
        for seed in seeds:
            _fake_run(folder, f"{scaling}-seed{seed}", scaling)
    settings = {"model": "tiny", "dataset": "synthetic", "scalings": ["gamma-o", "gamma-o-hw", "gamma-ohw"],
                "seeds": [0, 1, 2], "epochs": 3, "recipe": None, "approx_images": 16}
    (folder / "comparison.json").write_text(json.dumps({"settings": settings}))
    with pytest.raises(ValueError, match="incomplete.*gamma-o-hw-seed1.*gamma-o-seed2"):
        load_comparison(folder)
    comparison = load_comparison(folder, partial=True)
    rows = {r["scaling"]: r for r in comparison.rows()}
    assert rows["gamma-o"]["n"] == 2 and rows["gamma-o"]["test_top1_std"] == 0.0
    assert rows["gamma-o-hw"]["n"] == 1 and rows["gamma-o-hw"]["test_top1_std"] is None
    assert rows["gamma-o-hw"]["learned_scale_params"] == 8 + 36
    assert rows["gamma-ohw"]["learned_scale_params"] == 8 * 36
    page = report(folder, partial=True)
    _check_page(page, ["accuracy.png", "curves.png", "approx_error.png", "factors-gamma-o-hw-seed0.png"])
    assert "| `gamma-o` | 85.00 ± 0.00 |" in page.read_text()


# -- compare: skip / resume logic (trainer replaced by a fake that writes a run folder) -------------

class _FakeTrainer:
    """Stands in for xnorpp.train: writes the run folder files; can be told to be interrupted."""

    def __init__(self, tmp_path):
        self.calls: list[str] = []
        self.interrupt_at: str | None = None
        self.tmp_path = tmp_path

    def module(self):
        import types
        from dataclasses import asdict, dataclass

        trainer = self

        @dataclass
        class TrainConfig:
            model: str = "tiny"
            dataset: str = "synthetic"
            scaling: str = "gamma-o-h-w"
            epochs: int = 2
            seed: int = 0
            run_dir: str = ""
            resume: bool = True
            recipe: str = "fast"
            batch_size: int = 8

            def to_dict(self):
                return asdict(self)

        def train(config):
            run = Path(config.run_dir)
            name = run.name
            trainer.calls.append(name)
            scaling = "none" if config.model.startswith("float-") else config.scaling
            fake = _fake_run(run.parent, name, scaling if scaling != "none" else "gamma-o", finished=False)
            (fake / "config.json").write_text(json.dumps(config.to_dict()))
            if config.model.startswith("float-"):
                (fake / "approx.json").unlink()
            if trainer.interrupt_at == name:
                trainer.interrupt_at = None
                raise KeyboardInterrupt
            (fake / "result.json").write_text(json.dumps({"test_top1": 80.0 + len(trainer.calls), "params": 1}))

        return types.SimpleNamespace(TrainConfig=TrainConfig, train=train)


def test_compare_skips_finished_runs_and_resumes(tmp_path, monkeypatch):
    import sys

    from xnorpp.analysis import compare, load_comparison

    fake = _FakeTrainer(tmp_path)
    monkeypatch.setitem(sys.modules, "xnorpp.train", fake.module())
    folder = tmp_path / "cmp"
    fake.interrupt_at = "gamma-o-seed0"
    with pytest.raises(KeyboardInterrupt):
        compare(folder, model="tiny", dataset="synthetic", scalings=["gamma-o-h-w", "gamma-o", "float"],
                seeds=[0], epochs=2, log=None)
    assert fake.calls == ["gamma-o-h-w-seed0", "gamma-o-seed0"]
    done = json.loads((folder / "comparison.json").read_text())  # written after each finished run
    assert [r["scaling"] for r in done["runs"]] == ["gamma-o-h-w"]
    with pytest.raises(ValueError, match="incomplete.*gamma-o-seed0"):
        load_comparison(folder)

    result = compare(folder, model="tiny", dataset="synthetic", scalings=["gamma-o-h-w", "gamma-o", "float"],
                     seeds=[0], epochs=2, log=None)
    assert fake.calls == ["gamma-o-h-w-seed0", "gamma-o-seed0", "gamma-o-seed0", "float-seed0"]
    assert [r["scaling"] for r in result.rows()] == ["gamma-o-h-w", "gamma-o", "float"]
    float_row = result.rows()[2]
    assert float_row["approx_relative_error"] is None and float_row["learned_scale_params"] == 0
    assert (folder / "float-seed0" / "config.json").read_text().count('"float-tiny"') == 1
    text = (folder / "comparison.md").read_text()
    assert "| `gamma-o-h-w` | 81.00 |" in text and "Machine:" in text

    # A second seed later: old runs skipped, table covers both seeds.
    compare(folder, model="tiny", dataset="synthetic", scalings=["gamma-o"], seeds=[1], epochs=2, log=None)
    assert fake.calls[-1] == "gamma-o-seed1" and len(fake.calls) == 5
    rows = {r["scaling"]: r for r in load_comparison(folder).rows()}
    assert rows["gamma-o"]["n"] == 2 and rows["gamma-o-h-w"]["n"] == 1

    with pytest.raises(ValueError, match="epochs=2, not 5"):
        compare(folder, model="tiny", dataset="synthetic", scalings=["gamma-o"], epochs=5, log=None)
    with pytest.raises(ValueError, match="unknown scaling 'gamma-x'.*valid names"):
        compare(folder, model="tiny", scalings=["gamma-x"], log=None)


# -- summary against the packed file written by the exporter ------------------------------------

@pytest.mark.parametrize("make", [
    lambda: (_small_model(), (1, 8, 8)),
    lambda: (_models().create("fmnist-net", in_channels=1, input_size=12, scaling="gamma-o-hw", width=8),
             (1, 12, 12)),
    lambda: (_models().create("fmnist-net", in_channels=1, input_size=12, scaling="xnor", width=8), (1, 12, 12)),
])
def test_summary_agrees_with_exported_file(tmp_path, make):
    from safetensors.numpy import load_file

    from xnorpp.export import export_model

    model, shape = make()
    path = export_model(model, tmp_path / "m.xnor", input_size=shape[1:])
    tensor_bytes = sum(a.nbytes for a in load_file(str(path)).values())
    s = summary(model, shape)
    assert s.packed_tensor_bytes == tensor_bytes
    assert sum(r.packed_bits for r in s.layers) == 8 * tensor_bytes  # every tensor belongs to a layer's row
    assert s.packed_bytes == path.stat().st_size
    # Binary weights take 1 bit each: the packed data is far below the float32 size of the same weights.
    binary_bytes = sum(math.ceil(r.binary_params / 8) for r in s.layers if r.binary_params)
    assert tensor_bytes == binary_bytes + 4 * sum(
        a.size for k, a in load_file(str(path)).items() if not k.endswith("weight_bits"))
    assert s.compression_ratio == pytest.approx(s.float32_bytes / path.stat().st_size)


def _models():
    import xnorpp.models

    return xnorpp.models


# -- the commands on a model trained by xnorpp.train (tiny: digits, 2 blocks of width 8, 128 images) ----

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from xnorpp.train import TrainConfig, train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig(model="fmnist-net", dataset="digits", scaling="gamma-o-h-w", recipe="fast-cpu", epochs=1,
                      train_subset=128, model_opts={"width": 8, "stages": [1, 1]}, run_dir=str(run), threads=1,
                      progress=False,
                      tensorboard=False))
    return run


def test_cli_summary_matches_export_of_the_run(trained_run, tmp_path, capsys):
    from xnorpp.cli import main
    from xnorpp.export import export_model

    assert main(["summary", str(trained_run), "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    exported = export_model(trained_run, tmp_path / "run.xnor")  # what `xnorpp export RUN` writes
    assert totals["packed_bytes"] == exported.stat().st_size
    assert totals["packed_tensor_bytes"] < totals["packed_bytes"]
    assert main(["summary", "fmnist-net", "--input-size", "1", "12", "12", "--no-packed"]) == 0
    assert "BinaryConv2d[gamma-o-h-w]" in capsys.readouterr().out
    assert main(["summary", str(trained_run), "--input-size", "1", "16", "16", "--no-packed"]) == 2
    assert "does not fit the model" in capsys.readouterr().err
    assert main(["summary", "no-such-model"]) == 2
    assert "neither an existing run folder" in capsys.readouterr().err


def test_cli_approx_and_report_on_the_run(trained_run, capsys):
    from xnorpp.cli import main

    assert main(["approx", str(trained_run), "--images", "32", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 32 and len(out["layers"]) == 4  # two blocks of two binary convs
    assert all(r["relative_error"]["learned"] is not None for r in out["layers"])
    assert main(["report", str(trained_run), "--approx-images", "32"]) == 0
    page = trained_run / "report" / "report.md"
    _check_page(page, ["curves.png", "approx_error.png", "approx_schemes.png", "factors-run.png"])
    assert (trained_run / "approx.json").exists()  # computed once, reused by later reports


def test_compare_with_the_real_trainer(tmp_path):
    from xnorpp.analysis import compare

    options = dict(recipe="fast-cpu", epochs=1, train_subset=128, model_opts={"width": 8, "stages": [1]}, threads=1,
                   progress=False, tensorboard=False, approx_images=32, log=None)
    result = compare(tmp_path / "cmp", model="fmnist-net", dataset="digits", scalings=["gamma-o", "float"], **options)
    rows = {r["scaling"]: r for r in result.rows()}
    assert set(rows) == {"gamma-o", "float"}
    assert rows["gamma-o"]["learned_scale_params"] == 8 + 8  # α per output channel of the 2 binary convs
    assert rows["gamma-o"]["approx_relative_error"] is not None and rows["float"]["approx_relative_error"] is None
    stamp = (tmp_path / "cmp" / "gamma-o-seed0" / "result.json").stat().st_mtime_ns
    compare(tmp_path / "cmp", model="fmnist-net", dataset="digits", scalings=["gamma-o", "float"], **options)
    assert (tmp_path / "cmp" / "gamma-o-seed0" / "result.json").stat().st_mtime_ns == stamp  # skipped


def _summary(scaling, seed, top1):
    from xnorpp.analysis.compare import RunSummary

    return RunSummary(scaling=scaling, seed=seed, run_dir="", test_top1=top1, best_top1=None, train_time_s=None,
                      params=None, learned_scale_params=0, approx_relative_error=None, approx_cosine=None,
                      approx_rescaled_error=None, oracle_relative_error=None)


def test_paired_differences_against_xnor_with_a_t_interval():
    from scipy import stats

    from xnorpp.analysis.compare import Comparison

    xnor = [90.0, 91.0, 89.5, 90.5, 92.0]
    gamma = [90.6, 91.5, 90.3, 90.9, 92.4]  # better on every seed by 0.4–0.8
    noisy = [91.0, 90.0, 89.0, 92.0, 91.0]  # as often better as worse
    runs = ([_summary("xnor", s, a) for s, a in enumerate(xnor)] + [_summary("gamma-o", s, a) for s, a in
            enumerate(gamma)] + [_summary("none", s, a) for s, a in enumerate(noisy)] + [_summary("float", 0, 95.0)])
    comparison = Comparison(settings={"scalings": ["none", "xnor", "gamma-o", "float"], "model": "m", "dataset": "d",
                                      "seeds": list(range(5))}, runs=runs)
    paired = {p["scaling"]: p for p in comparison.paired()}
    assert set(paired) == {"none", "gamma-o", "float"}
    for name, values in (("gamma-o", gamma), ("none", noisy)):
        diffs = [a - b for a, b in zip(values, xnor)]
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=stats.tmean(diffs), scale=stats.sem(diffs))
        assert paired[name]["mean_difference"] == pytest.approx(sum(diffs) / len(diffs))
        assert paired[name]["ci95"] == pytest.approx([low, high], abs=1e-4)
    assert paired["gamma-o"]["verdict"] == "higher" and paired["none"]["verdict"] == "cannot tell"
    assert paired["float"]["n"] == 1 and paired["float"]["ci95"] is None
    assert "95 % confidence interval" in comparison.markdown() and "higher" in comparison.markdown()


def _curve_run(folder, scaling, seed, top1, model_opts=None, finished=True):
    """A run folder with only what `paired` reads: config.json, metrics.csv (test top-1 per epoch), result.json."""
    run = folder / f"{scaling}-seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "m", "dataset": "d", "scaling": scaling, "seed": seed,
                                                 "epochs": len(top1), "model_opts": model_opts or {}}))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "test_top1"])
        w.writerows(enumerate(top1, 1))
    if finished:
        (run / "result.json").write_text(json.dumps({"test_top1": top1[-1]}))


def test_paired_by_epoch_across_folders(tmp_path, capsys):
    from scipy import stats

    from xnorpp.analysis import Arm, paired_epochs, write_paired
    from xnorpp.cli import main

    rng = np.random.default_rng(0)
    xnor = rng.uniform(80, 90, size=(4, 3))  # 4 seeds x 3 epochs
    gamma = xnor + rng.normal(0.5, 0.2, size=(4, 3))  # better on most seeds
    alpha = xnor + rng.normal(0.0, 1.0, size=(4, 3))
    for seed in range(4):
        _curve_run(tmp_path / "a", "xnor", seed, list(xnor[seed]))
        _curve_run(tmp_path / "a", "gamma-o", seed, list(gamma[seed]))
        if seed < 3:  # the fourth seed of this arm is not paired
            _curve_run(tmp_path / "b", "gamma-o", seed, list(alpha[seed]), {"gamma_init": "alpha"})
    _curve_run(tmp_path / "b", "gamma-o", 7, [1.0, 2.0], finished=False)  # unfinished: not read
    arms = [Arm.parse(f"{tmp_path / 'a'}:xnor"), Arm.parse(f"Γ=1={tmp_path / 'a'}:gamma-o"),
            Arm.parse(f"Γ=α={tmp_path / 'b'}:gamma-o")]
    assert arms[2].label == "Γ=α" and arms[0].label == "xnor" and arms[2].scaling == "gamma-o"
    curves = paired_epochs(arms)
    assert curves.reference == "xnor" and curves.epochs == 3
    for label, values, seeds in (("Γ=1", gamma, 4), ("Γ=α", alpha, 3)):
        for e, d in enumerate(curves.differences(label)):
            diffs = values[:seeds, e] - xnor[:seeds, e]
            low, high = stats.t.interval(0.95, seeds - 1, loc=diffs.mean(), scale=stats.sem(diffs))
            assert d["n"] == seeds and d["mean_difference"] == pytest.approx(diffs.mean())
            assert d["ci95"] == pytest.approx([low, high], abs=1e-4)
    assert curves.differences("Γ=1")[-1]["verdict"] == "higher"
    assert curves.seed_differences("Γ=α", 1) == pytest.approx({s: alpha[s, 1] - xnor[s, 1] for s in range(3)})
    assert curves.means("Γ=α") == pytest.approx(alpha[:3].mean(axis=0))

    page = write_paired(arms, tmp_path / "out", reference="Γ=1")
    text = page.read_text()
    assert "gamma_init=alpha" in text and "| xnor − Γ=1 | 4 |" in text and "| 3 |" in text
    assert f"3: {xnor[3, 2] - gamma[3, 2]:+.2f} |" in text  # the per-seed differences after the last epoch
    _check_page(page, ["paired-curves.png", "paired-differences.png"])
    data = json.loads((tmp_path / "out" / "paired.json").read_text())
    assert data["reference"] == "Γ=1" and len(data["arms"][0]["paired_by_epoch"]) == 3

    assert main(["paired", "--arm", f"{tmp_path / 'a'}:xnor", "--arm", f"{tmp_path / 'b'}:gamma-o",
                 "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "paired.md").exists() and "wrote" in capsys.readouterr().out
    with pytest.raises(ValueError, match="LABEL=FOLDER:SCALING"):
        Arm.parse("no-scaling-here")
    with pytest.raises(ValueError, match="unknown scaling 'gamma'"):
        Arm.parse("a:gamma")
    with pytest.raises(ValueError, match="labels must differ"):
        paired_epochs([arms[1], Arm("Γ=1", tmp_path / "b", "gamma-o")])
    with pytest.raises(ValueError, match="no finished run of 'none'"):
        paired_epochs([arms[0], Arm.parse(f"{tmp_path / 'a'}:none")])
    with pytest.raises(ValueError, match="reference 'float' is not an arm"):
        paired_epochs(arms, reference="float")
    _curve_run(tmp_path / "c", "xnor", 0, [1.0, 2.0])
    with pytest.raises(ValueError, match="different numbers of epochs"):
        paired_epochs([arms[0], Arm.parse(f"short={tmp_path / 'c'}:xnor")])


def test_t_quantile_matches_scipy():
    from scipy import stats

    from xnorpp.analysis.compare import t_quantile_975

    for df in list(range(1, 40)) + [50, 100, 1000]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)


def test_same_seed_same_initial_weights_across_scalings():
    # What makes a paired comparison paired: the seed fixes the latent weights whatever the scaling.
    from xnorpp.models import create

    weights = []
    for scaling in ("none", "xnor", "gamma-o", "gamma-o-h-w"):
        torch.manual_seed(3)
        model = create("fmnist-net", scaling=scaling, in_channels=1, input_size=(28, 28), width=8)
        weights.append([p.detach() for n, p in model.named_parameters() if n.endswith("weight")])
    for other in weights[1:]:
        assert len(other) == len(weights[0]) and all(torch.equal(a, b) for a, b in zip(weights[0], other))
