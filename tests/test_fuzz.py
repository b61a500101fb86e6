"""Fuzz the packed model file (``.xnor``): every mutant is refused with ModelFormatError, or loads and runs.

Three seed models are exported once (two of images, an MLP of vectors); mutants of them (flipped
bytes, truncations, edited header lengths, edited safetensors tables, edited metadata, edited graphs,
edited tensor data) are written to files and loaded and run in child processes (tests/fuzz_worker.py,
torch-free), so that a segfault or an abort fails the test instead of killing pytest:

``ok``       loaded and ran
``refused``  ModelFormatError at load (the goal for everything that can be checked there)
``late``     loaded, then ModelFormatError at run: counted, not a failure
``unclear``  any other exception (RecursionError, KeyError, OverflowError, MemoryError...), or a
             recorded input shape that cannot be built (a dimension < 1, or over 2**24 values)
``hang``     no answer within the per-mutant timeout: the worker is killed and restarted
``crash``    the worker died (signal, abort): it is restarted

Acceptance: no unclear error, no hang, no crash. Most mutants get their checksum recomputed
(family names ending in ``+sum``) so they get past the whole-file checksum to the deeper
checks; the others check that the checksum refuses them. Every mutant is a pure function
of (seed, index): a run is reproducible, and failing mutants are saved for reproduction.

    pytest tests/test_fuzz.py -m "not slow"                # 400 mutants, a few seconds
    pytest tests/test_fuzz.py -m slow                      # 10 000 (XNORPP_FUZZ_COUNT=N for another count)
    python tests/test_fuzz.py --count 10000 --seed 1       # summary + breakdown of failures, by family
    python tests/test_fuzz.py --seed 1 --write 3363 --out d  # regenerate one mutant as d/3363.xnor

Environment: XNORPP_FUZZ_COUNT (slow test's count), XNORPP_FUZZ_SEED, XNORPP_FUZZ_TIMEOUT
(seconds per mutant, default 20), XNORPP_FUZZ_MEM_MB (address-space cap of a worker, default 3072).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import queue
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from xnorpp.packed.schema import OPS

HERE = Path(__file__).resolve().parent
WORKER = HERE / "fuzz_worker.py"
DEFAULT_TIMEOUT = float(os.environ.get("XNORPP_FUZZ_TIMEOUT", "20"))
QUICK_COUNT = 400
SLOW_COUNT = 10_000
MAX_JOBS = 2
FAILURES = ("unclear", "hang", "crash")


# -- the checksum, recomputed here (independent of the runtime's internal helpers) ---------------
_SHA_FIELD = re.compile(rb'"sha256"\s*:\s*"([0-9a-f]{64})"')


def fix_checksum(blob: bytes) -> bytes | None:
    """Recompute the file checksum: the recorded sha256 hex digits are replaced by 64 zeros, the
    whole blob is hashed, and the digest is written back in place. None if the blob has no
    well-formed sha256 field left to fix."""
    m = _SHA_FIELD.search(blob)
    if m is None:
        return None
    zeroed = blob[:m.start(1)] + b"0" * 64 + blob[m.end(1):]
    digest = hashlib.sha256(zeroed).hexdigest().encode()
    return blob[:m.start(1)] + digest + blob[m.end(1):]


# -- JSON with raw tokens (1e999, NaN, deep nesting, duplicate keys) -------------------------------
class Raw:
    """A JSON token written verbatim (what json.dumps cannot produce: 1e999, duplicate keys...)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text if len(self.text) <= 40 else f"{self.text[:20]}...({len(self.text)} chars)"


def dumps(obj) -> str:
    raws: list[Raw] = []

    def default(o):
        if isinstance(o, Raw):
            raws.append(o)
            return f"@@RAW{len(raws) - 1}@@"
        raise TypeError(type(o))

    text = json.dumps(obj, separators=(",", ":"), default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw.text, 1)
    return text


def deep_list(depth: int) -> Raw:
    return Raw("[" * depth + "1" + "]" * depth)


def deep_dict(depth: int) -> Raw:
    return Raw('{"a":' * depth + "1" + "}" * depth)


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- seeds -------------------------------------------------------------------------------------------
@dataclass
class Seed:
    name: str
    blob: bytes
    size: tuple[int, ...]
    header_len: int = 0
    header: dict = field(default_factory=dict)
    graph: dict = field(default_factory=dict)

    def __post_init__(self):
        (self.header_len,) = struct.unpack("<Q", self.blob[:8])
        self.header = json.loads(self.blob[8:8 + self.header_len])
        self.graph = json.loads(self.header["__metadata__"]["graph"])

    @property
    def data(self) -> bytes:
        return self.blob[8 + self.header_len:]

    @property
    def entries(self) -> dict:
        return {k: v for k, v in self.header.items() if k != "__metadata__"}


def build_seed_files(folder: Path) -> list[tuple[Path, tuple[int, ...]]]:
    """Export the three seed models into ``folder`` (needs torch); returns (path, input size) pairs."""
    import torch
    from torch import nn

    import xnorpp
    from xnorpp.export import export_model
    from xnorpp.nn import BinaryConv2d, BinaryLinear

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    fmnist = xnorpp.models.create("fmnist-net", in_channels=1, scaling="gamma-o-h-w", input_size=(28, 28),
                                  width=8).eval()
    a = export_model(fmnist, folder / "fmnist.xnor", input_size=(28, 28), dataset="fashion-mnist")

    class Mixed(nn.Module):
        """Grouped binary conv with pad value 1, pools, hardtanh, a residual add, layer norm over channels, concat,
        a squeeze-and-excitation product, binary linear (xnor)."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.b1 = BinaryConv2d(8, 16, 3, padding=1, groups=2, pad_value=1.0, scaling="gamma-o-hw",
                                   input_size=(12, 12))
            self.act = nn.Hardtanh()
            self.pool = nn.MaxPool2d(2)
            self.b2 = BinaryConv2d(16, 16, 3, padding=1, scaling="xnor", input_size=(6, 6))
            self.prelu = nn.PReLU(16)
            self.avg = nn.AvgPool2d(2, 2, padding=1, ceil_mode=True)
            self.ada = nn.AdaptiveAvgPool2d((2, 2))
            self.ln = nn.LayerNorm(16)
            self.bn1d = nn.BatchNorm1d(128)
            self.fc = BinaryLinear(128, 10, scaling="xnor")

        def forward(self, x):
            x = self.bn(self.stem(x))
            x = self.pool(self.act(self.b1(x)))
            x = x + self.prelu(self.b2(x))
            x = self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            x = torch.cat([x, nn.functional.gelu(x) * torch.sigmoid(x.mean((2, 3), keepdim=True))], 1)
            x = torch.flatten(self.ada(self.avg(x)), 1)
            return self.fc(self.bn1d(x))

    # An MLP of vectors (input size []): layer norm and batch norm on features, two binary linear layers.
    mlp = nn.Sequential(nn.Linear(20, 32), nn.LayerNorm(32), BinaryLinear(32, 24, scaling="gamma-o"), nn.PReLU(24),
                        nn.BatchNorm1d(24), BinaryLinear(24, 16, scaling="xnor-alpha"), nn.ReLU(), nn.Linear(16, 5))
    mixed = Mixed()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in [*mixed.named_parameters(), *mlp.named_parameters()]:
            if "scale_" in name or "weight" in name and p.dim() == 1:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) - 0.3)
    b = export_model(mixed.eval(), folder / "mixed.xnor", input_size=(12, 12), real_dtype="float16")
    c = export_model(mlp.eval(), folder / "mlp.xnor", input_size=(20,))
    return [(Path(a), (28, 28)), (Path(b), (12, 12)), (Path(c), ())]


def load_seeds(files) -> list[Seed]:
    return [Seed(Path(p).stem, Path(p).read_bytes(), tuple(size)) for p, size in files]


# -- building blobs ------------------------------------------------------------------------------------
def pack_header(text: str | bytes, data: bytes, pad: bool = True) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def with_graph(seed: Seed, graph, data: bytes | None = None) -> bytes:
    header = copy.deepcopy(seed.header)
    header["__metadata__"]["graph"] = dumps(graph)
    return pack_header(dumps(header), seed.data if data is None else data)


# -- mutation families -----------------------------------------------------------------------------------
SCALING_NAMES = ["none", "xnor", "xnor-alpha", "gamma-o", "gamma-ohw", "gamma-o-hw", "gamma-o-h-w"]
RUNTIME_OPS = list(OPS)
UNKNOWN_OPS = ["lstm", "", "Conv2d", "binary_conv2d ", "BINARY_LINEAR", None, 5, [], {"op": "relu"}]
# Every attribute and parameter name of the current format, from the schema's op table: an edit sets a node's own
# field to a wrong value, or another op's (an unknown field for this one).
ATTR_KEYS = sorted({key for spec in OPS.values() for key in spec.attrs})
PARAM_KEYS = sorted({key for spec in OPS.values() for key in spec.params})
HUGE = [2**31, 2**32, 2**63, 2**64, 10**30, 10**400, -10**400, Raw("1e999"), Raw("-1e999")]
NON_INT = [1.5, -0.5, 0.0, "3", "", True, False, None, [], {}, Raw("NaN"), Raw("Infinity"), Raw("-Infinity")]
WEIRD = [0, -1, 1, 2, 3, -2**31, *HUGE, *NON_INT,
         [0, 0], [-1, -1], [1], [1, 2, 3], [1, 1, 1, 1, 1], [2**31, 2**31], [2**63, 1], [1.5, 1.5], ["3", "3"],
         [True, True], [None, None], [Raw("1e999"), 1], [[1], [1]], [4096, 4096], [65536, 65536], [65537, 1],
         [0, 0, 0, 0], [1, 1, 1, 1], [-1, 0, 0, 0], [2**31, 0, 0, 0], [2**16, 2**16, 2**16, 2**16], {"a": 1},
         deep_list(500), deep_list(5000), deep_dict(5000)]
PAD_VALUES = [0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1, 0, Raw("NaN"), Raw("Infinity"), Raw("1e999"), "1", None, True, [],
              [1.0]]
ADAPTIVE_SIZES = [[4096, 4096], [65536, 65536], [2**31, 2**31], [2**63, 1], [1, 2**20], [2**16, 2**16], [0, 0],
                  [3, 3], [28, 28], [1], [1, 1, 1], [Raw("1e999"), 1], [-1, 1], None, 4, [1.5, 1], ["2", "2"]]
INPUT_SIZES = [[], [28], [28, 28, 28], [0, 0], [-1, -1], [Raw("1e999"), 28], None, [2**31, 2**31], [2**63, 1],
               [4096, 4096], [14, 14], [29, 28], [13, 12], [1, 1], "28", 28, [28.0, 28.0], [True, True],
               ["28", "28"], deep_list(5000), Raw("1e999")]
CHANNELS = [0, -1, 2, 3, 8, 2**20, *HUGE, 1.5, "3", "1", True, False, None, [], [1], Raw("NaN"), deep_list(5000)]


class Skip(Exception):
    """This edit does not apply to this (already edited) graph: pick another."""


def _nodes(g) -> list:
    nodes = g.get("nodes") if isinstance(g, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise Skip
    return nodes


def _node(rng, g, want=None) -> dict:
    nodes = [n for n in _nodes(g) if isinstance(n, dict) and (want is None or want(n))]
    if not nodes:
        raise Skip
    return rng.choice(nodes)


def _name(n) -> str:
    return repr(n.get("name")) if isinstance(n, dict) else repr(n)


def _plausible_list(rng, current) -> list:
    length = len(current) if isinstance(current, list) and current else rng.choice([2, 4])
    if rng.random() < 0.5 and isinstance(current, list) and current:
        out = list(current)
        out[rng.randrange(len(out))] = rng.choice([0, 1, 2, 3, 5, 9, 100, 65536, 65537, -1, *HUGE, *NON_INT])
        return out
    return [rng.randint(0, 6) for _ in range(length)]


def g_attr(rng, g):
    """An attribute set to a weird, huge, non-integer, or plausible-but-inconsistent value; sometimes any name
    (another op's: an unknown attribute), the only kind of edit a node with no attribute but 'module' can take."""
    extra = rng.random() < 0.15
    node = _node(rng, g, lambda n: isinstance(n.get("attrs"), dict) and (extra or set(n["attrs"]) - {"module"}))
    attrs = node["attrs"]
    keys = [k for k in sorted(attrs) if k != "module"]
    key = rng.choice(ATTR_KEYS) if extra or not keys else rng.choice(keys)
    current = attrs.get(key)
    r = rng.random()
    if key == "pad_value":
        value = rng.choice(PAD_VALUES)
    elif key == "scaling":
        value = rng.choice(SCALING_NAMES + ["gamma", "", "XNOR", None, 5, [], "none "])
    elif key == "output_size" and node.get("op") == "adaptive_avg_pool2d":
        value = rng.choice(ADAPTIVE_SIZES)
    elif key == "eps" and r < 0.6:
        value = rng.choice(EPS)
    elif key in ("in_channels", "out_channels", "in_features", "out_features", "groups") and r < 0.6:
        c = current if type(current) is int else 8
        value = rng.choice([c + 1, c - 1, c * 2, max(c // 2, 1), 0, 3, 4, 16, 2**20, *HUGE, 1.5, "8", True, None])
    elif isinstance(current, list) and r < 0.5:
        value = _plausible_list(rng, current)
    else:
        value = rng.choice(WEIRD)
    attrs[key] = value
    return f"node {_name(node)} ({node.get('op')}) attrs.{key}: {short(current)} -> {short(value)}"


EPS = [0, 0.0, -0.0, 1e-5, -1e-5, -1, 1e-300, 1e300, 10**400, Raw("NaN"), Raw("1e999"), Raw("-1e999"), "1e-5", None,
       True, []]
BINARY = ("binary_conv2d", "binary_linear")
LINEAR = ("linear", "binary_linear")
POOLS = ("max_pool2d", "avg_pool2d")
# The other attributes with a few valid values: each valid one, a near miss, a wrong type.
FLAGS = [True, False, 0, 1, "true", None]
CHOICES = {"gelu": {"approximate": ["none", "tanh", "erf", "Tanh", "", None, 1]},
           "global_pool": {"mode": ["mean", "max", "min", "sum", "", None, 0], "keepdim": FLAGS},
           "max_pool2d": {"ceil_mode": FLAGS},
           "avg_pool2d": {"ceil_mode": FLAGS, "count_include_pad": FLAGS},
           "channel_slice": {"start": [0, 1, 2, 7, 8, -1, 2**24, 1.0, None],
                             "stop": [0, 1, 4, 8, 9, 2**24, 2**25, None]},
           "channel_shuffle": {"groups": [1, 2, 3, 4, 8, 16, 0, -1, 2**24, None]}}


def g_target(rng, g):
    """The edits most likely to get past the first checks: one attribute of the right kind of node."""
    kind = rng.choice(["adaptive", "pad_value", "scaling", "features", "channels", "repeat_input", "add_inputs",
                       "pool_geometry", "conv_geometry", "hardtanh", "eps", "choice"])
    if kind == "adaptive":
        node = _node(rng, g, lambda n: n.get("op") == "adaptive_avg_pool2d" and isinstance(n.get("attrs"), dict))
        key, value = "output_size", rng.choice(ADAPTIVE_SIZES)
    elif kind in ("pad_value", "scaling"):
        node = _node(rng, g, lambda n: n.get("op") in (BINARY if kind == "scaling" else ("binary_conv2d",))
                     and isinstance(n.get("attrs"), dict))
        key = kind
        value = rng.choice(PAD_VALUES) if kind == "pad_value" else rng.choice(
            SCALING_NAMES + ["gamma", "", "XNOR", None, 5, []])
    elif kind in ("channels", "features"):
        ops_ = ("binary_conv2d", "conv2d") if kind == "channels" else LINEAR
        node = _node(rng, g, lambda n: n.get("op") in ops_ and isinstance(n.get("attrs"), dict))
        key = rng.choice(["in_features", "out_features"] if kind == "features" else ["in_channels", "groups"]
                         if node["op"] == "conv2d" else ["in_channels", "out_channels", "groups"])
        c = node["attrs"].get(key)
        c = c if type(c) is int else 8
        value = rng.choice([c + 1, c - 1, c * 2, max(c // 2, 1), 0, -c, 2, 3, 4, 16, 2**20, *HUGE])
    elif kind == "eps":
        node = _node(rng, g, lambda n: n.get("op") == "layer_norm" and isinstance(n.get("attrs"), dict))
        key, value = "eps", rng.choice(EPS)
    elif kind == "choice":
        node = _node(rng, g, lambda n: n.get("op") in CHOICES and isinstance(n.get("attrs"), dict))
        key = rng.choice(sorted(CHOICES[node["op"]]))
        value = rng.choice(CHOICES[node["op"]][key])
    elif kind in ("repeat_input", "add_inputs"):
        node = _node(rng, g, lambda n: (n.get("op") == "add") == (kind == "add_inputs")
                     and isinstance(n.get("inputs"), list) and n["inputs"])
        old, first = node["inputs"], node["inputs"][0]
        node["inputs"] = rng.choice([[first, first], [first, first, first], [first] * 2 + old[1:]]
                                    if kind == "repeat_input" else [[first], [first, first, first], [first, first]])
        return f"node {_name(node)} ({node.get('op')}) inputs: {short(old)} -> {short(node['inputs'])}"
    elif kind == "pool_geometry" or kind == "conv_geometry":
        ops_ = POOLS if kind == "pool_geometry" else ("conv2d", "binary_conv2d")
        node = _node(rng, g, lambda n: n.get("op") in ops_ and isinstance(n.get("attrs"), dict))
        key = rng.choice(["kernel", "stride", "padding", "dilation"] if kind == "conv_geometry" or
                         node["op"] == "max_pool2d" else ["kernel", "stride", "padding"])
        length = 4 if key == "padding" and kind == "conv_geometry" else 2
        big = rng.choice([0, 1, 2, 3, 5, 13, 29, 100, 4096, 65535, 65536, 65537])
        value = rng.choice([[big] * length, [rng.randint(0, 6) for _ in range(length)],
                            [big] + [1] * (length - 1), [1] * (length + 1), [1] * (length - 1)])
    else:
        node = _node(rng, g, lambda n: n.get("op") == "hardtanh" and isinstance(n.get("attrs"), dict))
        key = rng.choice(["min", "max"])
        value = rng.choice([Raw("NaN"), Raw("1e999"), Raw("-1e999"), 5.0, -5.0, 0, "1", None, [], 2**1000])
    old = node["attrs"].get(key)
    node["attrs"][key] = value
    return f"node {_name(node)} ({node.get('op')}) attrs.{key}: {short(old)} -> {short(value)}"


def g_del_attr(rng, g):
    node = _node(rng, g, lambda n: isinstance(n.get("attrs"), dict) and n["attrs"])
    key = rng.choice(sorted(node["attrs"]))
    del node["attrs"][key]
    return f"node {_name(node)} ({node.get('op')}) attrs.{key} removed"


def g_op(rng, g):
    node = _node(rng, g)
    old = node.get("op")
    node["op"] = rng.choice(RUNTIME_OPS + UNKNOWN_OPS if rng.random() < 0.3 else RUNTIME_OPS)
    return f"node {_name(node)} op: {short(old)} -> {short(node['op'])}"


def g_inputs(rng, g):
    nodes = _nodes(g)
    i = rng.randrange(len(nodes))
    node = nodes[i]
    if not isinstance(node, dict):
        raise Skip
    old = node.get("inputs")
    names = [n.get("name") for n in nodes if isinstance(n, dict)]
    earlier = [n.get("name") for n in nodes[:i] if isinstance(n, dict)]
    later = [n.get("name") for n in nodes[i + 1:] if isinstance(n, dict)]
    inp = g.get("input", {}).get("name", "x") if isinstance(g.get("input"), dict) else "x"
    first = old[0] if isinstance(old, list) and old else inp
    choices = [
        [], [node.get("name")], [first, first], ["missing"], [first, first, first], "x", [5], [None], [inp],
        [rng.choice(later)] if later else [first, first],
        [rng.choice(earlier)] if earlier else [inp],
        (old or []) + [rng.choice(earlier or [inp])] if isinstance(old, list) else [first],
        old[:1] if isinstance(old, list) else [],
        [rng.choice(names)],
    ]
    node["inputs"] = rng.choice(choices)
    return f"node {_name(node)} ({node.get('op')}) inputs: {short(old)} -> {short(node['inputs'])}"


def g_cycle(rng, g):
    nodes = [n for n in _nodes(g) if isinstance(n, dict)]
    if len(nodes) < 2:
        raise Skip
    a, b = sorted(rng.sample(range(len(nodes)), 2))
    nodes[a]["inputs"] = [nodes[b].get("name")]
    nodes[b]["inputs"] = [nodes[a].get("name")]
    return f"cycle: {_name(nodes[a])} <-> {_name(nodes[b])}"


def g_structure(rng, g):
    nodes = _nodes(g)
    i = rng.randrange(len(nodes))
    node = nodes[i]
    kind = rng.choice(["delete", "duplicate", "swap", "to_end", "to_start", "rename", "non_dict", "drop_key",
                       "attrs_type", "params_type"])
    if kind == "delete":
        del nodes[i]
    elif kind == "duplicate":
        nodes.insert(i + 1, copy.deepcopy(node))
    elif kind == "swap":
        j = rng.randrange(len(nodes))
        nodes[i], nodes[j] = nodes[j], nodes[i]
        return f"nodes {i} and {j} swapped"
    elif kind in ("to_end", "to_start"):
        nodes.insert(len(nodes) if kind == "to_end" else 0, nodes.pop(i))
    elif kind == "rename":
        if not isinstance(node, dict):
            raise Skip
        other = rng.choice(nodes)
        value = rng.choice([other.get("name") if isinstance(other, dict) else "x", "x", "", 5, None, ["a"]])
        node["name"] = value
        return f"node {i} renamed to {short(value)}"
    elif kind == "non_dict":
        nodes[i] = rng.choice([5, "conv", [], None, deep_list(5000)])
        return f"node {i} replaced by {short(nodes[i])}"
    else:
        if not isinstance(node, dict):
            raise Skip
        if kind == "drop_key":
            key = rng.choice(["name", "op", "inputs", "attrs", "params"])
            node.pop(key, None)
            return f"node {i} ({node.get('op')}) lacks {key!r}"
        key = "attrs" if kind == "attrs_type" else "params"
        node[key] = rng.choice([[], "x", 5, None, {"a": None}, {"a": 5}, deep_dict(5000)])
        return f"node {i} ({node.get('op')}) {key} = {short(node[key])}"
    return f"node {i} ({node.get('op') if isinstance(node, dict) else node!r}): {kind}"


def g_params(rng, g, tensor_names):
    node = _node(rng, g, lambda n: isinstance(n.get("params"), dict))
    params = node["params"]
    kind = rng.choice(["remove", "other", "missing", "non_string", "extra", "known"])
    if kind == "remove":
        if not params:
            raise Skip
        key = rng.choice(sorted(params))
        del params[key]
        return f"node {_name(node)} ({node.get('op')}) params.{key} removed"
    if kind in ("other", "missing", "non_string") and params:
        key = rng.choice(sorted(params))
    else:
        key = rng.choice(PARAM_KEYS if kind != "extra" else ["foo", *PARAM_KEYS])
    value = {"missing": "nope.weight", "non_string": rng.choice([5, None, [], {}, True])}.get(
        kind, rng.choice(tensor_names))
    params[key] = value
    return f"node {_name(node)} ({node.get('op')}) params.{key} = {short(value)}"


def g_io(rng, g):
    if not isinstance(g, dict):
        raise Skip
    inp = g.get("input")
    kind = rng.choice(["channels", "channels", "size", "size", "name", "drop", "input_type", "output", "nodes",
                       "num_classes", "extra"])
    if kind in ("channels", "size", "name", "drop"):
        if not isinstance(inp, dict):
            raise Skip
        if kind == "drop":
            key = rng.choice(["channels", "size", "name"])
            inp.pop(key, None)
            return f"input.{key} removed"
        value = {"channels": lambda: rng.choice(CHANNELS), "size": lambda: rng.choice(INPUT_SIZES),
                 "name": lambda: rng.choice([5, None, "", "fc", "stem", [], deep_list(5000)])}[kind]()
        inp[kind] = value
        return f"input.{kind} = {short(value)}"
    if kind == "input_type":
        g["input"] = rng.choice([None, 5, "x", [], {}, deep_dict(5000)])
        return f"input = {short(g['input'])}"
    if kind == "output":
        nodes = g.get("nodes") if isinstance(g.get("nodes"), list) else []
        names = [n.get("name") for n in nodes if isinstance(n, dict)] or ["x"]
        g["output"] = rng.choice(["missing", 5, None, "x", [names[-1]], names[0], rng.choice(names), ""])
        return f"output = {short(g['output'])}"
    if kind == "nodes":
        g["nodes"] = rng.choice([{}, "x", None, [], 5, deep_list(5000), deep_list(100000)])
        return f"nodes = {short(g['nodes'])}"
    if kind == "num_classes":
        g["num_classes"] = rng.choice(WEIRD)
        return f"num_classes = {short(g['num_classes'])}"
    key = rng.choice(["extra", "version", "input "])
    g[key] = rng.choice(WEIRD)
    return f"graph[{key!r}] = {short(g[key])}"


def g_deep(rng, g):
    """Deep nesting somewhere inside an otherwise valid graph."""
    depth = rng.choice([500, 990, 1000, 5000, 100000])
    where = rng.choice(["attr", "size", "inputs", "params"])
    value = deep_list(depth) if rng.random() < 0.7 else deep_dict(depth)
    if where == "size" and isinstance(g.get("input"), dict):
        g["input"]["size"] = value
        return f"input.size = {short(value)}"
    node = _node(rng, g)
    if where == "attr" and isinstance(node.get("attrs"), dict):
        key = rng.choice(sorted(node["attrs"]) or ["kernel"])
        node["attrs"][key] = value
    elif where == "params" and isinstance(node.get("params"), dict):
        key = rng.choice(sorted(node["params"]) or ["weight"])
        node["params"][key] = value
    else:
        node["inputs"] = value
        return f"node {_name(node)} inputs = {short(value)}"
    return f"node {_name(node)} {where}.{key} = {short(value)}"


def mutate_graph(rng, seed: Seed) -> tuple[str, bytes]:
    g = copy.deepcopy(seed.graph)
    tensor_names = sorted(seed.entries)
    edits = ([g_target] * 8 + [g_attr] * 6 + [g_del_attr] * 2 + [g_op] * 2 + [g_inputs] * 3 + [g_cycle]
             + [g_structure] * 3 + [lambda r, gr: g_params(r, gr, tensor_names)] * 2 + [g_io] * 3 + [g_deep])
    if rng.random() < 0.04:  # the whole graph replaced
        graph = rng.choice([Raw("5"), Raw("[]"), Raw("null"), Raw('"x"'), Raw("{}"), deep_list(100000),
                            deep_dict(100000), {"nodes": []}, {"input": {"name": "x", "channels": 1}, "nodes": [],
                                                               "output": "x"}])
        return f"graph = {short(graph)}", with_graph(seed, graph)
    descs = []
    for _ in range(rng.choice([1, 1, 1, 1, 1, 1, 2, 2, 2, 3])):
        for _attempt in range(20):
            try:
                descs.append(rng.choice(edits)(rng, g))
                break
            except Skip:
                continue
    return "; ".join(descs) or "no applicable edit", with_graph(seed, g)


def mutate_metadata(rng, seed: Seed) -> tuple[str, bytes]:
    header = copy.deepcopy(seed.header)
    meta = header["__metadata__"]
    key = rng.choice(["format_version"] * 3 + ["format", "sha256", "graph", "graph", "drop", "extra", "whole"])
    if key == "format_version":
        value = rng.choice([Raw("1e999"), Raw("-1e999"), Raw("NaN"), "1e999", "0", "-1", "2", "10" * 20, "1.0",
                            " 1", "", "1_0", "\u0661", "\uff11", 1, 2**63, 1.0, None, [], {}, True, "1\x00"])
    elif key == "format":
        value = rng.choice(["xnorpp-packed2", "", None, 5, ["xnorpp-packed"], "XNORPP-PACKED"])
    elif key == "sha256":
        value = rng.choice([None, "", meta["sha256"].upper(), meta["sha256"][:63], 5, [meta["sha256"]],
                            meta["sha256"] + "0"])
    elif key == "graph":
        value = rng.choice([Raw("5"), {"nodes": []}, [], None, "", "{}", "[]", '{"nodes": []}', "null",
                            "[" * 100000 + "]" * 100000, '{"a":' * 5000 + "1" + "}" * 5000, "1e999",
                            json.dumps(seed.graph)[:-1], meta["graph"] + " x"])
    elif key == "drop":
        dropped = rng.choice(["format", "format_version", "graph"])
        del meta[dropped]
        return f"metadata.{dropped} removed", pack_header(dumps(header), seed.data)
    elif key == "extra":
        meta[rng.choice(["data_sha256", "extra"])] = rng.choice(["x", meta["sha256"], 5])
        return "metadata extra key", pack_header(dumps(header), seed.data)
    else:
        header["__metadata__"] = value = rng.choice([[], "x", 5, None, Raw("1e999"), deep_list(100000)])
        return f"__metadata__ = {short(value)}", pack_header(dumps(header), seed.data)
    meta[key] = value
    return f"metadata.{key} = {short(value)}", pack_header(dumps(header), seed.data)


DTYPES = ["F16", "F32", "F64", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64", "BF16", "BOOL", "F8_E4M3",
          "F8_E5M2", "XYZ", "f32", "", 5, None, [], Raw("1e999")]
DTYPE_SIZES = {"F16": 2, "F32": 4, "U8": 1, "I8": 1, "F64": 8}


def mutate_tensor_table(rng, seed: Seed) -> tuple[str, bytes]:
    header = copy.deepcopy(seed.header)
    data = seed.data
    names = sorted(seed.entries)
    name = rng.choice(names)
    entry = header[name]
    begin, end = entry["data_offsets"]
    total = len(data)
    kind = rng.choice(["dtype", "dtype", "shape", "shape", "offsets", "offsets", "remove", "add", "add",
                       "entry_type", "entry_extra", "header_type", "duplicate", "append", "text"])
    if kind == "dtype":
        entry["dtype"] = value = rng.choice(DTYPES)
        desc = f"{name}: dtype -> {short(value)}"
    elif kind == "shape":
        count = 1
        for d in entry["shape"]:
            count *= d
        same = [[count], [1, count], [count, 1], [count // 2, 2] if count % 2 == 0 else [count, 1, 1]]
        entry["shape"] = value = rng.choice(same + [[], [0], [-1], [2**63], [2**32, 2**32], [Raw("1e999")], [1.5],
                                                    [str(count)], None, str(count), count, [count + 1],
                                                    [count - 1], deep_list(5000)])
        desc = f"{name}: shape {seed.entries[name]['shape']} -> {short(value)}"
    elif kind == "offsets":
        entry["data_offsets"] = value = rng.choice([
            [end, begin], [0, 0], [-1, end], [begin, end + 1], [begin - 1, end], [begin, total + 8],
            [2**64 - 1, 2**64 - 1], [2**63, 2**63 + 4], [begin], [begin, end, end], "0", None,
            [Raw("1e999"), end], [1.5, end], [0, end - begin], [total, total + end - begin]])
        desc = f"{name}: data_offsets {[begin, end]} -> {short(value)}"
    elif kind == "remove":
        del header[name]
        desc = f"{name}: entry removed"
    elif kind == "add":
        variant = rng.choice(["valid", "beyond", "overlap", "empty", "weird"])
        new = rng.choice(["extra", "x", "__metadata", name + "_"])
        if variant == "valid":
            header[new] = {"dtype": "F32", "shape": [2], "data_offsets": [total, total + 8]}
            data = data + struct.pack("<2f", 1.0, 2.0)
        elif variant == "beyond":
            header[new] = {"dtype": "F32", "shape": [2], "data_offsets": [total, total + 8]}
        elif variant == "overlap":
            header[new] = {"dtype": "U8", "shape": [end - begin], "data_offsets": [begin, end]}
        elif variant == "empty":
            header[new] = {"dtype": "F32", "shape": [0], "data_offsets": [total, total]}
        else:
            header[new] = rng.choice([5, None, {}, {"dtype": "F32"}, {"dtype": "F32", "shape": [1]}])
        desc = f"added entry {new!r} ({variant})"
    elif kind == "entry_type":
        header[name] = value = rng.choice([5, "x", [], None, Raw("1e999"), deep_list(5000)])
        desc = f"{name}: entry = {short(value)}"
    elif kind == "entry_extra":
        entry[rng.choice(["foo", "dtype ", "offsets"])] = rng.choice(WEIRD[:12])
        desc = f"{name}: extra key in entry"
    elif kind == "header_type":
        text = rng.choice(["[]", "5", '"x"', "null", "1e999", "[" * 100000 + "]" * 100000,
                           '{"a":' * 100000 + "1" + "}" * 100000])
        return f"header = {short(Raw(text))}", pack_header(text, data)
    elif kind == "duplicate":
        text = dumps(header)
        dup = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        text = text[:-1] + "," + json.dumps(name) + ":" + json.dumps(dup) + "}"
        return f"{name}: duplicate key in the header", pack_header(text, data)
    elif kind == "append":
        data = data + rng.choice([b"\0" * 8, b"garbage!", b"\0"])
        desc = "bytes appended after the tensor data"
    else:  # text-level edits of the header JSON
        text = dumps(header).encode()
        variant = rng.choice(["cut", "bom", "space", "nul", "utf8", "tail"])
        if variant == "cut":
            text = text[:rng.randrange(1, len(text))]
        elif variant == "bom":
            text = b"\xef\xbb\xbf" + text
        elif variant == "space":
            text = b"   \n" + text
        elif variant == "nul":
            text = text + b"\0\0\0"
        elif variant == "utf8":
            pos = text.index(b'"', rng.randrange(len(text) // 2)) + 1
            text = text[:pos] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + text[pos:]
        else:
            text = text + b" {}"
        return f"header text: {variant}", pack_header(text, data, pad=False)
    return desc, pack_header(dumps(header), data)


def mutate_tensor_data(rng, seed: Seed) -> tuple[str, bytes]:
    """Tensor values edited in place: the safetensors header stays byte for byte the same."""
    import numpy as np

    entries = {k: v for k, v in seed.entries.items() if v["dtype"] in ("F32", "F16", "U8")}
    name = rng.choice(sorted(entries))
    entry = entries[name]
    begin, end = entry["data_offsets"]
    data = bytearray(seed.data)
    dtype = {"F32": np.float32, "F16": np.float16, "U8": np.uint8}[entry["dtype"]]
    values = np.frombuffer(data, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize, offset=begin).copy()
    if dtype is np.uint8:
        kind = rng.choice(["random", "ones", "zeros"])
        values[:] = {"random": lambda: np.frombuffer(rng.randbytes(values.size), np.uint8),
                     "ones": lambda: 0xFF, "zeros": lambda: 0}[kind]()
        desc = f"{name}: bits {kind}"
    else:
        special = rng.choice(["nan", "inf", "-inf", "0", "-0", "1e38", "-1e38", "3e-45", "65504", "1e-8"])
        value = float(special)
        scope = rng.choice(["one", "some", "all"])
        with np.errstate(over="ignore"):  # 1e38 -> inf in float16: fine, a non-finite value is the point
            if scope == "one":
                values[rng.randrange(values.size)] = value
            elif scope == "some":
                for _ in range(min(values.size, rng.randint(2, 8))):
                    values[rng.randrange(values.size)] = value
            else:
                values[:] = value
        desc = f"{name}: {scope} = {special}"
    data[begin:end] = values.tobytes()
    return desc, bytes(seed.blob[:8 + seed.header_len] + data)


def mutate_bytes(rng, seed: Seed) -> tuple[str, bytes]:
    blob = bytearray(seed.blob)
    n = rng.choice([1, 1, 1, 2, 4, 16, 64])
    region = rng.choice(["header", "header", "data", "any"])
    lo, hi = {"header": (0, 8 + seed.header_len), "data": (8 + seed.header_len, len(blob)),
              "any": (0, len(blob))}[region]
    how = rng.choice(["bit", "byte", "char"])
    for _ in range(n):
        pos = rng.randrange(lo, hi)
        if how == "bit":
            blob[pos] ^= 1 << rng.randrange(8)
        elif how == "byte":
            blob[pos] = rng.randrange(256)
        else:
            blob[pos] = rng.choice(b'"{}[],:\\0 9e-.\x00\xff')
    return f"{n} {how} flip(s) in {region}", bytes(blob)


def mutate_truncate(rng, seed: Seed) -> tuple[str, bytes]:
    n, blob = 8 + seed.header_len, seed.blob
    if rng.random() < 0.15:
        extra = rng.choice([b"\0", b"\0" * 8, b"garbage", b"\0" * 4096])
        return f"{len(extra)} bytes appended", blob + extra
    size = rng.choice([rng.randrange(len(blob)), rng.randrange(len(blob)), rng.randrange(9),
                       n + rng.randint(-8, 8), len(blob) - rng.randint(1, 16), n])
    size = max(0, min(size, len(blob) - 1))
    return f"truncated to {size} of {len(blob)} bytes", blob[:size]


def mutate_header_len(rng, seed: Seed) -> tuple[str, bytes]:
    n, total = seed.header_len, len(seed.blob)
    value = rng.choice([0, 1, 2, 7, 8, n - 1, n + 1, n - 8, n + 8, n // 2, total - 8, total - 7, total, 2**31,
                        2**32, 2**32 + n, 2**63, 2**64 - 1, rng.randrange(2**64), rng.randrange(total)])
    value = max(0, value)
    return f"header length {n} -> {value}", struct.pack("<Q", value) + seed.blob[8:]


# name, weight, probability that the checksum is recomputed
FAMILIES = {
    "bytes": (mutate_bytes, 10, 0.5),
    "truncate": (mutate_truncate, 6, 0.5),
    "header_len": (mutate_header_len, 6, 0.5),
    "tensor_table": (mutate_tensor_table, 14, 0.85),
    "metadata": (mutate_metadata, 8, 0.85),
    "graph": (mutate_graph, 44, 0.92),
    "tensor_data": (mutate_tensor_data, 12, 0.85),
}


@dataclass
class Mutant:
    index: int
    seed: str
    family: str
    desc: str
    blob: bytes
    size: tuple[int, ...]


def make_mutant(seeds: list[Seed], index: int, run_seed: int, families: list[str] | None = None) -> Mutant:
    """Mutant number ``index`` of run ``run_seed``: a pure function of both (and of the seeds)."""
    rng = random.Random(f"xnorpp-fuzz/{run_seed}/{index}")
    names = families or list(FAMILIES)
    family = rng.choices(names, weights=[FAMILIES[f][1] for f in names])[0]
    seed = rng.choice(seeds)
    mutate, _, p_fix = FAMILIES[family]
    for _attempt in range(5):  # an edit that happens to change nothing (a value set to itself): another one
        desc, blob = mutate(rng, seed)
        if blob != seed.blob:
            break
    else:
        desc += " (no change)"
    if rng.random() < p_fix:
        fixed = fix_checksum(blob)
        if fixed is not None:
            blob, family = fixed, family + "+sum"
    return Mutant(index, seed.name, family, desc, blob, seed.size)


def controls(seeds: list[Seed]) -> list[Mutant]:
    """The unmodified seeds, and the seeds with their checksum recomputed: these must run."""
    out = []
    for s in seeds:
        out.append(Mutant(-1, s.name, "control", "unmodified seed", s.blob, s.size))
        out.append(Mutant(-1, s.name, "control+sum", "checksum recomputed", fix_checksum(s.blob), s.size))
    return out


# -- workers -----------------------------------------------------------------------------------------------
class Worker:
    """A long-lived tests/fuzz_worker.py child: one request per line, one JSON answer per line."""

    def __init__(self, log_path: Path, timeout: float):
        self.log_path, self.timeout = Path(log_path), timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = -1
        self.start()

    def start(self) -> None:
        self.restarts += 1
        env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONDONTWRITEBYTECODE="1")
        env.setdefault("XNORPP_FUZZ_MEM_MB", "3072")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, cwd=str(HERE.parent), text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        try:
            ready = self.lines.get(timeout=max(120.0, self.timeout))
        except queue.Empty:
            ready = None
        if not ready or not json.loads(ready).get("ready"):
            self.stop()
            raise RuntimeError(f"fuzz worker did not start: {self._log_tail(0)}")
        if not json.loads(ready).get("torch_free"):
            self.stop()
            raise RuntimeError("fuzz worker imported torch")

    @staticmethod
    def _read(proc, lines) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _log_tail(self, offset: int, limit: int = 1500) -> str:
        if not self.log.closed:
            self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text[-limit:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def ask(self, path: Path, size: tuple[int, ...], **extra) -> dict:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            self.proc.stdin.write(json.dumps({"path": str(path), "fallback_size": list(size), **extra}) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            self.start()
            return {"outcome": "hang", "type": "Timeout", "message": f"no answer within {self.timeout:g} s"}
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            rc = self.proc.wait()
            tail = self._log_tail(offset)
            self.log.close()
            self.start()
            return {"outcome": "crash", "type": f"exit status {rc}", "message": tail.strip()[-600:]}
        return json.loads(line)


@dataclass
class Report:
    count: int
    results: list = field(default_factory=list)  # (Mutant without blob, result dict)
    control: list = field(default_factory=list)
    save_dir: Path | None = None
    seconds: float = 0.0
    restarts: int = 0

    def outcomes(self) -> Counter:
        return Counter(r["outcome"] for _, r in self.results)

    def summary(self) -> str:
        c = self.outcomes()
        refused = c["refused"] + c["late"]
        return (f"fuzz: {len(self.results)} mutants: ok {c['ok']}, refused {refused} ({c['late']} at run), "
                f"unclear {c['unclear']}, hangs {c['hang']}, crashes {c['crash']}")

    def failures(self) -> list:
        return [(m, r) for m, r in self.results if r["outcome"] in FAILURES]

    def examples(self, limit: int = 20, outcomes=FAILURES) -> str:
        lines = []
        for m, r in [(m, r) for m, r in self.results if r["outcome"] in outcomes][:limit]:
            lines.append(f"  #{m.index} {r['outcome']} [{m.family}, {m.seed}] {m.desc} -> {r.get('stage')}: "
                         f"{r.get('type')}: {r.get('message')} @ {r.get('where', '')}")
        return "\n".join(lines)

    def breakdown(self, outcomes=FAILURES, examples: int = 3) -> str:
        groups: dict[tuple, list] = {}
        for m, r in self.results:
            if r["outcome"] in outcomes:
                groups.setdefault((r["outcome"], m.family, r.get("stage"), r.get("type")), []).append((m, r))
        lines = []
        for (outcome, family, stage, etype), items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  {len(items):5d}  {outcome:7s} {family:18s} {str(stage):6s} {etype}")
            kinds: dict[str, list] = {}  # a few distinct messages (digits and quoted names ignored)
            for m, r in items:
                key = re.sub(r"'[^']*'|\d+", "_", str(r.get("message")))[:60] + str(r.get("where"))
                kinds.setdefault(key, []).append((m, r))
            for same in sorted(kinds.values(), key=len, reverse=True)[:examples]:
                m, r = same[0]
                lines.append(f"     {len(same):4d} e.g. #{m.index} [{m.seed}] {m.desc!s:.200}\n"
                             f"          -> {r.get('message')!s:.300}  @ {r.get('where', '')}")
        return "\n".join(lines)

    def by_family(self) -> str:
        table: dict[str, Counter] = {}
        for m, r in self.results:
            table.setdefault(m.family, Counter())[r["outcome"]] += 1
        cols = ["ok", "refused", "late", "unclear", "hang", "crash"]
        lines = [f"  {'family':18s} " + " ".join(f"{c:>8s}" for c in cols)]
        for fam in sorted(table):
            lines.append(f"  {fam:18s} " + " ".join(f"{table[fam][c]:8d}" for c in cols))
        return "\n".join(lines)


def run_fuzz(seeds: list[Seed], count: int, run_seed: int = 0, workdir: Path | None = None, jobs: int = MAX_JOBS,
             timeout: float = DEFAULT_TIMEOUT, save_dir: Path | None = None, families: list[str] | None = None,
             progress: bool = False) -> Report:
    """Generate ``count`` mutants, process each in a worker (at most 2 in parallel); failures saved in save_dir."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="xnorpp-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
    items = controls(seeds) + [None] * count  # None: generated lazily from its index
    report = Report(count, save_dir=save_dir)
    results: list = [None] * len(items)
    lock = threading.Lock()
    next_item = iter(range(len(items)))
    errors: list[BaseException] = []
    start = time.monotonic()
    n_controls = len(items) - count

    def loop(w: int) -> None:
        try:
            worker = Worker(workdir / f"worker{w}.log", timeout)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
            return
        try:
            while not errors:
                with lock:
                    k = next(next_item, None)
                if k is None:
                    break
                mutant = items[k] or make_mutant(seeds, k - n_controls, run_seed, families)
                path = workdir / f"m{w}.xnor"
                path.write_bytes(mutant.blob)
                result = worker.ask(path, mutant.size)
                if result["outcome"] in FAILURES and save_dir is not None and mutant.index >= 0:
                    name = f"{mutant.index:06d}-{mutant.family}-{result['outcome']}.xnor"
                    shutil.copyfile(path, save_dir / name)
                    result["saved"] = name
                results[k] = (Mutant(mutant.index, mutant.seed, mutant.family, mutant.desc, b"", mutant.size), result)
                if progress and k >= n_controls and (k - n_controls + 1) % 500 == 0:
                    print(f"  ... {k - n_controls + 1} / {count} ({time.monotonic() - start:.0f} s)", file=sys.stderr,
                          flush=True)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
        finally:
            report.restarts += worker.restarts
            worker.stop()

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(max(1, min(jobs, MAX_JOBS)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    report.control = results[:n_controls]
    report.results = results[n_controls:]
    report.seconds = time.monotonic() - start
    if save_dir is not None:
        manifest = [{"index": m.index, "seed": m.seed, "family": m.family, "desc": m.desc, **r}
                    for m, r in report.failures()]
        (save_dir / "manifest.json").write_text(json.dumps({"seed": run_seed, "count": count, "failures": manifest},
                                                           indent=1))
    return report


def check(report: Report) -> None:
    """The acceptance: controls run, every worker stayed torch-free, no unclear error, hang or crash."""
    bad_controls = [(m.seed, m.family, r) for m, r in report.control if r["outcome"] != "ok"]
    assert not bad_controls, f"the unmodified seeds do not run: {bad_controls}"
    assert all(r.get("torch_free", True) for _, r in report.results), "a worker imported torch"
    failures = report.failures()
    if failures:
        where = f"\nfailing mutants saved in {report.save_dir}" if report.save_dir else ""
        raise AssertionError(f"{report.summary()}\n{report.examples(20)}{where}")


# -- pytest -------------------------------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the script runs without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def seeds(tmp_path_factory):
        return load_seeds(build_seed_files(tmp_path_factory.mktemp("fuzz-seeds")))

    def test_fix_checksum_leaves_a_valid_file_unchanged(seeds):
        for s in seeds:
            assert fix_checksum(s.blob) == s.blob
            edited = s.blob.replace(b'"format":"xnorpp-packed"', b'"format":"xnorpp-packer"', 1)
            assert edited != s.blob and fix_checksum(edited) != edited

    def test_worker_crashes_and_hangs_are_caught(seeds, tmp_path):
        """The harness itself: a worker that aborts, segfaults or hangs is reported, replaced, and goes on."""
        path = tmp_path / "seed.xnor"
        path.write_bytes(seeds[0].blob)
        worker = Worker(tmp_path / "worker.log", timeout=3)
        try:
            assert worker.ask(path, seeds[0].size)["outcome"] == "ok"
            for selftest, outcome in [("abort", "crash"), ("segv", "crash"), ("exit", "crash"), ("hang", "hang"),
                                      ("raise", "unclear"), ("late", "late")]:
                result = worker.ask(path, seeds[0].size, selftest=selftest)
                assert result["outcome"] == outcome, (selftest, result)
                assert worker.ask(path, seeds[0].size)["outcome"] == "ok"
            assert worker.restarts == 4
        finally:
            worker.stop()

    def test_mutants_are_deterministic(seeds):
        for i in range(40):
            a, b = make_mutant(seeds, i, 7), make_mutant(seeds, i, 7)
            assert (a.family, a.desc, a.blob) == (b.family, b.desc, b.blob)
        assert len({make_mutant(seeds, i, 7).blob for i in range(40)}) > 30

    def _run_and_check(seeds, tmp_path, count):
        run_seed = int(os.environ.get("XNORPP_FUZZ_SEED", "0"))
        report = run_fuzz(seeds, count, run_seed, workdir=tmp_path / "work", save_dir=tmp_path / "failures")
        print(report.summary())
        check(report)
        assert report.outcomes()["ok"] > 0 and report.outcomes()["refused"] > count // 4, report.summary()

    def test_fuzz_packed_files(seeds, tmp_path):
        _run_and_check(seeds, tmp_path, QUICK_COUNT)

    @pytest.mark.slow
    def test_fuzz_packed_files_many(seeds, tmp_path):
        _run_and_check(seeds, tmp_path, int(os.environ.get("XNORPP_FUZZ_COUNT", SLOW_COUNT)))


# -- script ---------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz xnorpp packed model files (see the module docstring).")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per mutant")
    parser.add_argument("--jobs", type=int, default=MAX_JOBS, help=f"workers in parallel (at most {MAX_JOBS})")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families")
    parser.add_argument("--out", type=Path, help="folder for the seeds, logs and failing mutants (default: a temp dir)")
    parser.add_argument("--late", action="store_true", help="also list the late refusals (at run) by kind")
    parser.add_argument("--examples", type=int, default=4, help="distinct example messages per group")
    parser.add_argument("--write", type=int, metavar="INDEX", help="only write mutant INDEX to OUT/INDEX.xnor")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="xnorpp-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    seeds = load_seeds(build_seed_files(out / "seeds"))
    if args.write is not None:
        m = make_mutant(seeds, args.write, args.seed, args.family)
        (out / f"{args.write}.xnor").write_bytes(m.blob)
        print(f"{out / f'{args.write}.xnor'}: [{m.family}, {m.seed}] {m.desc}")
        return 0
    report = run_fuzz(seeds, args.count, args.seed, workdir=out / "work", jobs=args.jobs, timeout=args.timeout,
                      save_dir=out / "failures", families=args.family, progress=True)
    with open(out / "results.jsonl", "w") as f:
        for m, r in report.results:
            f.write(json.dumps({"index": m.index, "seed": m.seed, "family": m.family, "desc": m.desc, **r}) + "\n")
    print(report.summary())
    print(f"({report.seconds:.0f} s, {report.restarts} worker restarts, seed {args.seed})")
    print("by family:\n" + report.by_family())
    bad_controls = [(m.seed, m.family, r) for m, r in report.control if r["outcome"] != "ok"]
    if bad_controls:
        print(f"CONTROLS FAILED: {bad_controls}")
    if report.failures():
        print("unclear errors, hangs and crashes by (outcome, family, stage, exception type):")
        print(report.breakdown(examples=args.examples))
        print(f"failing mutants saved in {out / 'failures'} (manifest.json); regenerate one with "
              f"--seed {args.seed} --write INDEX")
    if args.late:
        print("late refusals (load accepted, run refused) by (family, exception type):")
        print(report.breakdown(("late",), examples=args.examples) or "  none")
    return 1 if report.failures() or bad_controls else 0


if __name__ == "__main__":
    sys.exit(main())
