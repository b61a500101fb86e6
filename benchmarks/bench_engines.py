"""The packed binary ResNet-18 against the engines a user would pick instead, in one process.

Usage: python benchmarks/bench_engines.py [--threads 1 2] [--batch 1 8] [--rounds 30] [--quick]
                                          [--isa avx2 --engines-isa avx2]
       (--help for the rest; ONNX Runtime and OpenVINO come with ``pip install 'xnorpp[bench]'``)

Candidates, all on the same seeded random 224×224 input (random 8-bit images normalized with
ImageNet's mean and std, what a user feeds):

* xnorpp: the binary ResNet-18 of XNOR-Net++ (γ_o-h-w scaling, or ``--scaling``), exported to a packed ``.xnor``
  file and run by ``xnorpp.runtime``. It is the baseline of every ratio. A second row runs the same
  file with the int8 input layer (``runtime.load(path, input_layer="int8")``).
* PyTorch eager fp32: torchvision's ResNet-18 (the same architecture, reproduced here when
  torchvision is not installed).
* ONNX Runtime fp32 and int8, OpenVINO fp32 and int8: that ResNet-18 exported to ONNX by this
  script, and a static QDQ int8 quantization of it (onnxruntime.quantization, per channel, S8
  weights, U8 activations, calibrated on generated images). Both engines run the same two files.
* OpenVINO binary (BinaryConvolution): xnorpp's binary ResNet-18, the same .xnor file, converted to an
  OpenVINO IR by ``xnorpp.export.to_openvino`` (binary convs as OpenVINO's own ``BinaryConvolution``,
  signs as 2-level FakeQuantize): OpenVINO's binary engine on the very network xnorpp runs.

Weights are random (speed does not depend on their values); batch-norm statistics, scaling
factors and PReLU slopes are randomized too, so that the output checks exercise the folding
done by each exporter. Each output is checked: fp32 engines against PyTorch fp32, each int8
engine against its own fp32 run, xnorpp and OpenVINO binary against the binary model in PyTorch (with the int8
input layer: that model with its first conv's weights rounded as the int8 layer rounds them). A row whose top-1
differs or whose relative difference is too large is flagged.

Timing: per configuration (threads × batch) the candidates are called in interleaved rounds,
one call of each per round, the starting candidate rotated each round, after warm-up rounds.
Reported: min and median wall time, the paired median ratios (median over rounds of candidate
time / xnorpp time in the same round, against each of the two xnorpp rows) and the CPU cores the
process used during the calls.
The table is printed and written to benchmarks/results/engines-<isa>[-engines-avx2][-<scaling>]-<YYYYMMDD-HHMMSS>.md/.json.

On a CPU with AVX-512, ``--isa avx2`` alone pits xnorpp's AVX2 path against engines that use AVX-512
(and VNNI for int8). ``--engines-isa avx2`` caps PyTorch and OpenVINO at AVX2 too (oneDNN's, MKL's and
ATen's own settings: common.ENGINE_ISA_CAPS), which is how they run on an AVX2-only CPU; ONNX Runtime has
no such setting and keeps the CPU's best; nor has OpenVINO's binary convolution, its own JIT kernel. The kernels
OpenVINO actually chose are listed under the table, and the file name gains ``-engines-avx2``.
ONNX Runtime and OpenVINO are optional: without them their rows are skipped with a note
(``pip install 'xnorpp[bench]'``).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

# PyTorch's OpenMP workers spin about 10 ms after each call, on the core that the next candidate of the
# round runs on; libgomp reads its wait policy once, when torch is imported. --spin keeps the default.
if "--spin" not in sys.argv[1:]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ENGINE_ISA_CAPS, ENGINE_ISAS, cap_engines_isa, cpu_flags, cpu_model,  # noqa: E402
                    interleaved_rounds, paired_median_ratio, update_readme)

ENGINES_ISA = cap_engines_isa(sys.argv[1:])  # before torch and OpenVINO load: they read the caps once

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from xnorpp.data.sources import DATASETS  # noqa: E402
from xnorpp.runtime.kernels import int8_rounded_weight  # noqa: E402

IMAGENET = DATASETS["imagenet"]
SIZE = 224
NUM_CLASSES = 1000
INSTALL_HINT = "pip install 'xnorpp[bench]'"
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# Flag a row when its output differs from its reference by more than this, relative to max |reference|
# (besides any top-1 disagreement). fp32 engines reorder float sums; the packed runtime folds BN and Γ;
# int8 quantizes every layer of a 21-layer network (about 1.5e-2 here). For int8 rows a top-1 flip is
# flagged only with a rel. diff above the tolerance: within it, only near-ties can flip.
TOLERANCE = {"fp32": 1e-3, "binary": 1e-3, "int8": 0.1}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vpopcntdq", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


# -- models -----------------------------------------------------------------------------------------------
def normalized_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random 8-bit RGB images normalized as torchvision's ImageNet models expect: what a user feeds."""
    pixels = rng.integers(0, 256, (n, 3, SIZE, SIZE)).astype(np.float32) / np.float32(255)
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (IMAGENET.mean, IMAGENET.std))
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


class _BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (same module names, so the state dicts are interchangeable)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _ResNet18(nn.Module):
    """torchvision.models.resnet18 (architecture and initialisation), for machines without torchvision."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, layers = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layers.append(nn.Sequential(_BasicBlock(inplanes, planes, stride, down), _BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def float_resnet18() -> tuple[nn.Module, str]:
    try:
        import torchvision
        return torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES), \
            f"torchvision {torchvision.__version__} resnet18"
    except Exception:  # not installed, or built for another torch
        return _ResNet18(), "torchvision's resnet18 architecture (torchvision not installed: built in)"


@torch.no_grad()
def randomize(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random batch-norm statistics and affine parameters, learned scaling factors and PReLU slopes
    (all start as constants), so that wrong folding of any of them shows in the output checks."""
    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=gen))

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            uniform(m.running_var, 0.5, 1.5)
            uniform(m.weight, 0.5, 1.5)
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        elif isinstance(m, nn.PReLU):
            uniform(m.weight, 0.05, 0.35)
        spec = getattr(m, "scaling_spec", None)
        for name in getattr(spec, "factors", ()):
            param = getattr(m, name, None)
            if isinstance(param, torch.Tensor) and not isinstance(param, nn.parameter.UninitializedParameter):
                param.mul_(0.5 + torch.rand(param.shape, generator=gen))
    return model.eval()


def binary_resnet18(gen: torch.Generator, scaling: str = "gamma-o-h-w") -> nn.Module:
    """xnorpp's binary ResNet-18 for 224×224 ImageNet images, randomized with ``gen`` (see randomize)."""
    from xnorpp.models import create

    return randomize(create("resnet18", num_classes=NUM_CLASSES, in_channels=3, input_size=(SIZE, SIZE),
                            scaling=scaling), gen)


# -- ONNX files -------------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: str, opset: int = 17) -> None:
    """The fp32 model to ONNX with a dynamic batch axis named 'batch' (TorchScript exporter: no onnxscript)."""
    x = torch.zeros(1, 3, SIZE, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["logits"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True,
                          dynamo=False)


def quantize_qdq(fp32_path: str, int8_path: str, images: np.ndarray) -> None:
    """Static QDQ int8 quantization: per-channel S8 weights, U8 activations (with S8 activations ORT on
    x86 leaves many convolutions in float), MinMax calibration on ``images``."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.batches, None)

    pre = int8_path + ".pre.onnx"
    quant_pre_process(fp32_path, pre)  # symbolic shapes + graph optimizations (the quantizer's advice)
    quantize_static(pre, int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    os.remove(pre)


# -- engines ----------------------------------------------------------------------------------------------
def ort_session(path: str, threads: int, batch: int, spin: bool, optimized_path: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool spin-waits after each call by default: its threads would eat the cores the next
    # candidate of the round runs on. Off unless --spin.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.add_free_dimension_override_by_name("batch", batch)  # static shapes, as OpenVINO gets
    so.log_severity_level = 3
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_precision(path: str, tmp: str) -> str:
    """Which op types ORT runs the convolutions of ``path`` as, after its graph optimizations."""
    import onnx

    optimized = os.path.join(tmp, "ort-optimized.onnx")
    ort_session(path, 1, 1, False, optimized)
    counts: dict[str, int] = {}
    for node in onnx.load(optimized).graph.node:
        if "Conv" in node.op_type or node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QGemm"):
            op = node.op_type + (f" ({node.domain})" if node.domain else "")
            counts[op] = counts.get(op, 0) + 1
    os.remove(optimized)
    return ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))


OV_PRECISION = "f32"  # OpenVINO's default on CPUs with AVX512_BF16/AMX is bf16: pin f32 for the "fp32" rows


def ov_compile(core, path: str, threads: int, batch: int, perf_count: bool = False):
    """``path`` (ONNX or IR) compiled for the CPU at the benchmark's settings; ``perf_count``: with OpenVINO's
    per-layer counters (InferRequest.get_profiling_info)."""
    model = core.read_model(path)
    model.reshape([batch, 3, SIZE, SIZE])  # static shapes: OpenVINO's fast path
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "INFERENCE_PRECISION_HINT": OV_PRECISION}
    compiled = core.compile_model(model, "CPU", {**config, "PERF_COUNT": perf_count})
    got = {key: str(compiled.get_property(key)) for key in config}
    if (got["INFERENCE_NUM_THREADS"] != str(threads) or got["NUM_STREAMS"] != "1"
            or "LATENCY" not in got["PERFORMANCE_HINT"].upper()
            or got["INFERENCE_PRECISION_HINT"].lower() not in ("f32", "float32", "<type: 'float32'>")):
        raise RuntimeError(f"OpenVINO did not take the settings {config}: it has {got}")
    return compiled


def ov_precision(compiled) -> str:
    """Runtime precision and kernel of the convolutions and the classifier in OpenVINO's executable graph
    (u8/i8: integer kernels on 8-bit activations and i8 weights; f32; bf16; u1: binary. The kernel's name says
    its ISA, e.g. brgconv_avx512_I8, jit_avx2_I8, jit_avx512_u1). For a binary convolution, "→ u1" says that it
    writes its output as bits (the next binary convolution's signs fused into it)."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer, prec = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if layer in ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "BinaryConvolution"):
            writes_bits = layer == "BinaryConvolution" and info["outputPrecisions"].astype(str) == "u1"
            bits_out = " → u1" if writes_bits else ""
            key = f"{layer} {prec}{bits_out} ({info['primitiveType'].astype(str)})"
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def ov_runner(compiled, x: np.ndarray) -> Callable[[], np.ndarray]:
    request = compiled.create_infer_request()
    out = compiled.output(0)

    def run():
        return request.infer({0: x}, share_inputs=True)[out]
    return run


# -- checks -----------------------------------------------------------------------------------------------
def compare(got: np.ndarray, ref: np.ndarray) -> tuple[float, np.ndarray]:
    """(max |got - ref| / max |ref|, per image: does the top-1 class agree)."""
    got = np.asarray(got, dtype=np.float32).reshape(ref.shape)
    rel = float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-30))
    return rel, got.argmax(1) == ref.argmax(1)


def top1_margin(ref: np.ndarray) -> np.ndarray:
    """Per image: (largest − second largest logit) / max |ref|."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) / max(float(np.abs(ref).max()), 1e-30)


@dataclass
class Candidate:
    engine: str
    precision: str          # fp32, int8, binary
    run: Callable[[], np.ndarray]
    reference: str          # what the output is checked against
    rel: float = float("nan")
    top1: int = 0
    flag: str = ""          # why the output looks wrong; empty when it passed
    note: str = ""          # a remark that is not a failure

    def check(self, ref: np.ndarray) -> np.ndarray:
        """Run once, compare with ``ref`` and set rel, top1, flag and note; returns the output."""
        out = np.asarray(self.run())
        self.rel, agree = compare(out, ref)
        self.top1 = int(agree.sum())
        tol, reasons = TOLERANCE[self.precision], []
        if not self.rel <= tol:
            reasons.append(f"rel. diff > {tol:g}")
        if not agree.all():
            if self.precision == "int8" and self.rel <= tol:
                # An error within the tolerance can only flip images whose top two logits are within
                # 2 × tol × max|ref| of each other: near-ties, common on a random-weight network.
                self.note = (f"top-1 flips on near-ties (reference margin ≤ "
                             f"{100 * float(top1_margin(ref)[~agree].max()):.1f} % of max |logit|)")
            else:
                reasons.append(f"top-1 differs on {len(agree) - self.top1}/{len(agree)}")
        self.flag = "; ".join(reasons)
        return out


# -- the benchmark ----------------------------------------------------------------------------------------
def build_candidates(threads: int, batch: int, x: np.ndarray, packed, packed_int8, fp32_model: nn.Module,
                     ref_binary: np.ndarray, ref_binary_int8: np.ndarray, ref_fp32: np.ndarray, *, engines,
                     use_ort: bool, ov_core, ov_onnx: bool, ov_binary_ir: str | None,
                     make_int8: bool, onnx_fp32: str, onnx_int8: str, spin: bool,
                     precision_info: dict) -> list[Candidate]:
    """The candidates of one configuration, each set up for it and its output checked once; xnorpp first.
    The ONNX Runtime sessions and OpenVINO compiled models live only as long as the returned list."""
    xt = torch.from_numpy(x)

    def torch_run():
        with torch.inference_mode():
            return fp32_model(xt).numpy()

    cands = [Candidate("xnorpp packed", "binary", lambda: packed(x), "binary ResNet-18 in PyTorch"),
             Candidate("xnorpp packed, int8 input layer", "binary", lambda: packed_int8(x),
                       "the same, first conv's weights rounded to 7 bits")]
    cands[0].check(ref_binary)
    cands[1].check(ref_binary_int8)
    if "torch" in engines:
        cands.append(Candidate("PyTorch eager", "fp32", torch_run, "PyTorch fp32 (itself)"))
        cands[-1].check(ref_fp32)
    if use_ort:
        s32, s8 = (ort_session(path, threads, batch, spin) for path in (onnx_fp32, onnx_int8))
        c32 = Candidate("ONNX Runtime", "fp32", lambda: s32.run(None, {"input": x})[0], "PyTorch fp32")
        c8 = Candidate("ONNX Runtime", "int8", lambda: s8.run(None, {"input": x})[0], "ONNX Runtime fp32")
        c8.check(c32.check(ref_fp32))
        cands += [c32, c8]
    if ov_binary_ir is not None:
        mb = ov_compile(ov_core, ov_binary_ir, threads, batch)
        cb = Candidate("OpenVINO binary (BinaryConvolution)", "binary", ov_runner(mb, x), "binary ResNet-18 in PyTorch")
        cb.check(ref_binary)
        precision_info.setdefault("OpenVINO binary", ov_precision(mb))
        cands.append(cb)
    if ov_onnx:
        m32 = ov_compile(ov_core, onnx_fp32, threads, batch)
        c32 = Candidate("OpenVINO", "fp32", ov_runner(m32, x), "PyTorch fp32")
        out32 = c32.check(ref_fp32)
        precision_info.setdefault("OpenVINO fp32", ov_precision(m32))
        cands.append(c32)
        if make_int8:
            m8 = ov_compile(ov_core, onnx_int8, threads, batch)
            c8 = Candidate("OpenVINO", "int8", ov_runner(m8, x), "OpenVINO fp32")
            c8.check(out32)
            precision_info.setdefault("OpenVINO int8", ov_precision(m8))
            cands.append(c8)
    return cands


def versions() -> dict:
    import xnorpp
    v = {"python": platform.python_version(), "xnorpp": xnorpp.__version__, "torch": torch.__version__,
         "numpy": np.__version__}
    for name, module in (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        try:
            v[name] = __import__(module).__version__
        except ImportError:
            v[name] = None
    return v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 2; --quick: 1)")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8; --quick: 1)")
    parser.add_argument("--rounds", type=int, help="timed rounds per configuration (default: 30; --quick: 5)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default: 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke test: few rounds, batch 1, 1 thread")
    parser.add_argument("--engines", nargs="+", choices=("torch", "ort", "openvino"),
                        default=["torch", "ort", "openvino"], help="engines besides xnorpp (default: all)")
    parser.add_argument("--isa", help="xnorpp instruction-set path (amx, avx512, avx2, portable; default: the best)")
    parser.add_argument("--scaling", default="gamma-o-h-w",
                        help="scaling of the binary ResNet-18 (default: gamma-o-h-w; with gamma-o OpenVINO fuses the "
                             "next layer's signs into its binary convolutions)")
    parser.add_argument("--engines-isa", choices=ENGINE_ISAS, default="native",
                        help="cap PyTorch's and OpenVINO's kernels at this ISA, as on a CPU without AVX-512 "
                             "(default: native, the CPU's best; ONNX Runtime cannot be capped)")
    parser.add_argument("--calibration-images", type=int, default=16,
                        help="images for the int8 calibration (default: 16)")
    parser.add_argument("--seed", type=int, default=0,
                        help="input, weights and calibration images (default: 0)")
    parser.add_argument("--spin", action="store_true",
                        help="keep the engines' default spin-waiting (ONNX Runtime's pool, PyTorch's OpenMP); "
                             "pair it with --gap-ms so that spinning threads go idle before the next call")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="untimed pause after each call (default: 0)")
    parser.add_argument("--out-dir", default=RESULTS_DIR,
                        help="where the .md and .json go (default: benchmarks/results)")
    parser.add_argument("--no-save", action="store_true", help="only print the table")
    parser.add_argument("--update-readme", action="store_true",
                        help="also write the table into benchmarks/README.md (between the bench-engines markers)")
    args = parser.parse_args(argv)
    threads_list = args.threads or ([1] if args.quick else [1, 2])
    batches = args.batch or ([1] if args.quick else [1, 8])
    rounds = args.rounds if args.rounds is not None else (5 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if min(threads_list) < 1 or min(batches) < 1 or rounds < 1 or warmup < 0:
        parser.error("threads, batch and rounds must be >= 1")
    if args.engines_isa != ENGINES_ISA:
        parser.error("--engines-isa must be given on the command line: the engines read its caps when they load")

    from xnorpp import runtime
    from xnorpp.export import export_model
    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    notes, skipped = [], []
    ort = ov = None
    if "ort" in args.engines or "openvino" in args.engines:
        try:
            import onnxruntime as ort  # noqa: F401
        except ImportError:
            skipped.append(f"ONNX Runtime fp32/int8 (onnxruntime not installed: {INSTALL_HINT})")
            if "openvino" in args.engines:
                skipped.append(f"OpenVINO int8 (its QDQ file is made with onnxruntime.quantization: {INSTALL_HINT})")
    if "openvino" in args.engines:
        try:
            import openvino as ov
        except ImportError:
            skipped.append(f"OpenVINO fp32/int8/binary (openvino not installed: {INSTALL_HINT})")
    use_ort = ort is not None and "ort" in args.engines
    ov_module = ov  # the binary row needs no ONNX
    make_int8 = ort is not None
    if use_ort or ov is not None:
        try:
            import onnx  # noqa: F401  (torch.onnx.export and the quantizer need it)
        except ImportError:
            skipped.append(f"ONNX Runtime and OpenVINO fp32/int8 (onnx not installed: {INSTALL_HINT})")
            use_ort, ov, make_int8 = False, None, False

    max_threads, max_batch = max(threads_list), max(batches)
    torch.set_num_threads(max_threads)
    rng = np.random.default_rng(args.seed)
    images = normalized_images(rng, max_batch)
    calibration = normalized_images(np.random.default_rng(args.seed + 1), args.calibration_images)
    gen = torch.Generator().manual_seed(args.seed)

    torch.manual_seed(args.seed)
    fp32_model, fp32_source = float_resnet18()
    randomize(fp32_model, gen)
    binary_model = binary_resnet18(gen, args.scaling)

    rounded_model = copy.deepcopy(binary_model)  # the reference of the int8 input layer
    stem = rounded_model.stem[0]
    stem.weight.data = torch.from_numpy(int8_rounded_weight(stem.weight.detach().numpy(), IMAGENET.std)).float()

    log("reference logits (PyTorch fp32 and binary)")
    with torch.inference_mode():
        ref_fp32 = {b: fp32_model(torch.from_numpy(images[:b])).numpy().copy() for b in batches}
        ref_binary = {b: binary_model(torch.from_numpy(images[:b])).numpy().copy() for b in batches}
        ref_binary_int8 = {b: rounded_model(torch.from_numpy(images[:b])).numpy().copy() for b in batches}

    rows, precision_info = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        if args.isa:
            runtime.set_isa(args.isa)
        xnor_path = export_model(binary_model, os.path.join(tmp, "resnet18-binary.xnor"), input_size=(SIZE, SIZE),
                                 dataset="imagenet")
        packed = runtime.load(xnor_path)
        packed_int8 = runtime.load(xnor_path, input_layer="int8")
        isa = packed.isa
        onnx_fp32 = os.path.join(tmp, "resnet18-fp32.onnx")
        onnx_int8 = os.path.join(tmp, "resnet18-int8-qdq.onnx")
        if use_ort or ov is not None:
            log("exporting ONNX")
            export_onnx(fp32_model, onnx_fp32)
            if make_int8:
                log(f"quantizing (static QDQ, {args.calibration_images} calibration images)")
                quantize_qdq(onnx_fp32, onnx_int8, calibration)
        if use_ort:
            precision_info["ONNX Runtime int8"] = ort_precision(onnx_int8, tmp)
            precision_info["ONNX Runtime fp32"] = ort_precision(onnx_fp32, tmp)
        core = ov_module.Core() if ov_module is not None else None
        ov_binary_ir = None
        if core is not None:
            from xnorpp.export import to_openvino

            log("converting the .xnor to OpenVINO IR")
            ov_binary_ir = str(to_openvino(xnor_path, tmp))

        for threads in threads_list:
            runtime.set_num_threads(threads)
            torch.set_num_threads(threads)
            for batch in batches:
                log(f"threads {threads}, batch {batch}: building")
                x = np.ascontiguousarray(images[:batch])
                cands = build_candidates(threads, batch, x, packed, packed_int8, fp32_model, ref_binary[batch],
                                         ref_binary_int8[batch], ref_fp32[batch], engines=args.engines,
                                         use_ort=use_ort, ov_core=core, ov_onnx=ov is not None,
                                         ov_binary_ir=ov_binary_ir,
                                         make_int8=make_int8, onnx_fp32=onnx_fp32, onnx_int8=onnx_int8,
                                         spin=args.spin, precision_info=precision_info)
                log(f"threads {threads}, batch {batch}: {warmup} warm-up + {rounds} rounds of {len(cands)}")
                wall, cpu = interleaved_rounds([c.run for c in cands], rounds, warmup, args.gap_ms / 1e3)
                for i, c in enumerate(cands):
                    times = [w[i] for w in wall]
                    rows.append({
                        "threads": threads, "batch": batch, "engine": c.engine, "precision": c.precision,
                        "min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times),
                        "ratio_vs_xnorpp": paired_median_ratio(wall, i, 0),
                        "ratio_vs_xnorpp_int8": paired_median_ratio(wall, i, 1),
                        "cores_used": statistics.median(cpu[r][i] / wall[r][i] for r in range(rounds)),
                        "reference": c.reference, "rel_diff": c.rel, "top1_agree": c.top1, "images": batch,
                        "flag": c.flag, "note": c.note, "times_ms": [round(1e3 * t, 4) for t in times]})
                del cands, wall, cpu  # frees this configuration's sessions and compiled models

    notes.append(("Spin-waiting: each engine's default (--spin)" if args.spin else
                  "Spin-waiting off wherever an engine has a setting for it (below), so that no idle worker "
                  "thread takes a core from the next candidate of the round")
                 + f"; {args.gap_ms:g} ms untimed pause after each call.")
    if ENGINES_ISA != "native":
        caps = " ".join(f"{k}={v}" for k, v in ENGINE_ISA_CAPS[ENGINES_ISA].items())
        notes.append(f"Engines capped at {ENGINES_ISA.upper()} ({caps}, set before they loaded): PyTorch's ATen "
                     f"kernels ran at {torch.backends.cpu.get_cpu_capability()}, OpenVINO's kernels are listed "
                     f"above; ONNX Runtime has no such setting and used the CPU's best.")
    notes.append(f"xnorpp: runtime.set_num_threads(threads); during a call its threads wait for the next layer "
                 f"spinning, between calls they sleep (runtime.spin_us() = {runtime.spin_us()}).")
    if "torch" in args.engines:
        notes.append(f"PyTorch: torch.set_num_threads(threads), inference_mode; OMP_WAIT_POLICY="
                     f"{os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp spins ~10 ms after each call)')}.")
    if use_ort:
        notes.append(f"ONNX Runtime: intra_op_num_threads = threads, inter_op 1, sequential, all graph "
                     f"optimizations, batch fixed by a free-dimension override; session.intra_op.allow_spinning "
                     f"= {1 if args.spin else 0}.")
    if core is not None:
        notes.append(f"OpenVINO: INFERENCE_NUM_THREADS = threads, PERFORMANCE_HINT LATENCY, NUM_STREAMS 1, "
                     f"INFERENCE_PRECISION_HINT {OV_PRECISION} (its default is bf16 on CPUs with AVX512_BF16 or "
                     f"AMX), model reshaped to the batch; its TBB workers have no spin setting (they idle within "
                     f"about 1 ms here). OpenVINO binary: the .xnor as an IR by xnorpp.export.to_openvino, the same "
                     f"settings.")
    if make_int8:
        notes.append(f"int8 model: onnxruntime.quantization.quantize_static, QDQ, per channel, S8 weights, U8 "
                     f"activations, MinMax over {args.calibration_images} images like the input (seed "
                     f"{args.seed + 1}); quant_pre_process first.")
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(),
        "cpu_flags": cpu_flags(CPU_FLAGS), "logical_cpus": os.cpu_count(), "isa": isa,
        "engines_isa": ENGINES_ISA,
        "threads": threads_list, "batches": batches, "rounds": rounds, "warmup": warmup, "seed": args.seed,
        "input": f"{SIZE}x{SIZE}, random 8-bit images normalized with ImageNet's mean and std (seed {args.seed})",
        "fp32_model": fp32_source,
        "binary_model": f'xnorpp.models.create("resnet18", scaling="{args.scaling}", input_size=(224, 224))',
        "calibration_images": args.calibration_images, "versions": versions(), "precision": precision_info,
        "tolerance": TOLERANCE, "spin": args.spin, "gap_ms": args.gap_ms,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "skipped": skipped, "notes": notes, "quick": args.quick,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    text = render(meta, rows)
    print(text)
    if not args.no_save:
        os.makedirs(args.out_dir, exist_ok=True)
        capped = "" if ENGINES_ISA == "native" else f"-engines-{ENGINES_ISA}"
        scaling = "" if args.scaling == "gamma-o-h-w" else f"-{args.scaling}"
        stem = os.path.join(args.out_dir, f"engines-{isa}{capped}{scaling}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        with open(stem + ".md", "w") as f:
            f.write(text + "\n")
        with open(stem + ".json", "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)
        print(f"\nwritten: {stem}.md, {stem}.json", file=sys.stderr)
    if args.update_readme:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), "bench-engines", text)
    for r in rows:
        if r["flag"]:
            print(f"WARNING: {r['engine']} {r['precision']} (threads {r['threads']}, batch {r['batch']}): "
                  f"output check failed: {r['flag']}", file=sys.stderr)
    # Exit status 1 only when xnorpp's own output is wrong: other engines' flags are reported, not fatal.
    return 1 if any(r["flag"] for r in rows if r["engine"].startswith("xnorpp")) else 0


def render(meta: dict, rows: list[dict]) -> str:
    v = meta["versions"]
    engines = ", ".join(f"{name} {v[key].split('-')[0]}" for name, key in (
        ("xnorpp", "xnorpp"), ("PyTorch", "torch"), ("ONNX Runtime", "onnxruntime"), ("OpenVINO", "openvino"),
        ("onnx", "onnx")) if v.get(key))
    flags = " ".join(meta["cpu_flags"]) or "unknown"
    lines = [
        f"CPU: {meta['cpu']} ({meta['logical_cpus']} logical CPUs; flags: {flags}). xnorpp ISA: **{meta['isa']}**. "
        f"Other engines: " + ("the CPU's best ISA." if meta.get("engines_isa", "native") == "native" else
                              f"**capped at {meta['engines_isa'].upper()}** except ONNX Runtime (notes below)."),
        f"Engines: {engines}; Python {v['python']}.",
        f"ResNet-18, {meta['input']}; fp32 model: {meta['fp32_model']}. Threads {meta['threads']}, batch "
        f"{meta['batches']}; {meta['rounds']} interleaved rounds after {meta['warmup']} warm-up"
        f"{' (--quick)' if meta['quick'] else ''}. Load average at the end: "
        + (", ".join(f"{x:.2f}" for x in meta["load_average"]) if meta["load_average"] else "n/a") + ".",
        "",
        "| threads | batch | engine | precision | min (ms) | median (ms) | time ÷ xnorpp (paired median) "
        "| ÷ xnorpp, int8 input layer | cores used | checked against | rel. diff | top-1 agree | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio_vs_xnorpp']:.2f}×"
        ratio8 = f"{r['ratio_vs_xnorpp_int8']:.2f}×" if "ratio_vs_xnorpp_int8" in r else ""
        lines.append(
            f"| {r['threads']} | {r['batch']} | {r['engine']} | {r['precision']} | {r['min_ms']:.1f} | "
            f"{r['median_ms']:.1f} | {'1 (baseline)' if r['engine'] == 'xnorpp packed' else ratio} | "
            f"{'1' if r['engine'].endswith('int8 input layer') else ratio8} | "
            f"{r['cores_used']:.2f} | {r['reference']} | {r['rel_diff']:.1e} | {r['top1_agree']}/{r['images']} | "
            f"{'⚠ ' + r['flag'] if r['flag'] else 'ok'}{'; ' + r['note'] if r['note'] else ''} |")
    lines += ["", "Time ÷ xnorpp > 1: xnorpp is faster. Cores used: process CPU time ÷ wall time during the calls. "
              f"Rel. diff: max |out − ref| / max |ref|. A row is flagged (⚠) when its rel. diff exceeds "
              f"{meta['tolerance']['fp32']:g} (fp32, binary) or {meta['tolerance']['int8']:g} (int8), or when a "
              "top-1 class differs (int8: only beyond near-ties, which an error within the tolerance can flip)."]
    if meta["precision"]:
        lines += ["", "Precision the engines actually ran (convolutions and classifier after their graph rewrites):"]
        lines += [f"* {k}: {val}" for k, val in meta["precision"].items()]
    lines += [""] + [f"* {n}" for n in meta["notes"]]
    if meta["skipped"]:
        lines += ["", "Skipped:"] + [f"* {s}" for s in meta["skipped"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
