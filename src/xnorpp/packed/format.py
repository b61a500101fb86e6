"""The packed model file (``.xnor``): one safetensors file, no pickle (numpy and safetensors only).

The safetensors header's ``__metadata__`` holds

``format``          ``"xnorpp-packed"``
``format_version``  :data:`FORMAT_VERSION` (decimal digits)
``graph``           the graph as JSON, described and validated by :mod:`xnorpp.packed.schema`
``sha256``          SHA-256 of the whole file computed with these 64 hex digits set to ``0``:
                    a flipped bit anywhere (graph, tensor table, data) is refused

and the tensors are the graph's parameters, named ``<node>.<param>``: binary weights as dense
sign bits (:mod:`xnorpp.packed.bits`), the rest float32 (real layers may be float16).

Version history: 1 (xnorpp 0.1) stored a graph already fused by the exporter; 2 (xnorpp 0.2) stores
one node per layer and leaves fusion to the runtime's plan (:mod:`xnorpp.packed.plan`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

from ..files import atomic_write

FORMAT_NAME = "xnorpp-packed"
FORMAT_VERSION = 2
SUFFIX = ".xnor"
_FIRST_VERSION_OF = {2: "0.2"}  # format version -> the first xnorpp release that writes it
_UNSET_DIGEST = "0" * 64


class ModelFormatError(ValueError):
    """The file is not a packed model this runtime can run; the message names the node and field at fault."""


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ModuleNotFoundError("reading and writing packed models needs the safetensors package: "
                                  "pip install safetensors", name="safetensors") from None
    return safetensors.numpy


# First bytes of what torch.save writes: a zip archive (since PyTorch 1.6) or a bare pickle (protocol 2+).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _header_length(blob: bytes, where: str) -> int:
    if len(blob) < 8:
        raise ModelFormatError(f"{where}: file too short ({len(blob)} bytes) to be a packed model")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        # Only now do the first bytes say what the file is: a real header length can begin with them too.
        if blob.startswith(_TORCH_MAGIC):
            raise ModelFormatError(f"{where} is a PyTorch file (torch.save), not a packed .xnor model; export it "
                                   "first: xnorpp export CHECKPOINT -o model.xnor")
        raise ModelFormatError(f"{where} is not a packed .xnor model (made by `xnorpp export`), or a truncated one: "
                               f"its header length {header_len} exceeds the file size {len(blob)}")
    return header_len


def _digest(blob: bytes, header_len: int, recorded: str) -> str:
    """SHA-256 of ``blob`` with the recorded digest in its header replaced by zeros."""
    header = blob[8:8 + header_len].replace(f'"{recorded}"'.encode(), f'"{_UNSET_DIGEST}"'.encode(), 1)
    digest = hashlib.sha256(blob[:8])
    digest.update(header)
    digest.update(memoryview(blob)[8 + header_len:])
    return digest.hexdigest()


def seal(blob: bytes) -> bytes:
    """``blob`` with its ``sha256`` field recomputed (the field must hold 64 hex digits)."""
    header_len = _header_length(blob, "seal")
    header = blob[8:8 + header_len]
    match = re.search(rb'"sha256"\s*:\s*"([0-9a-f]{64})"', header)
    if match is None:
        raise ValueError("seal: the header has no 64-digit sha256 field")
    recorded = match.group(1).decode()
    digest = _digest(blob, header_len, recorded)
    start, end = 8 + match.start(1), 8 + match.end(1)
    return blob[:start] + digest.encode() + blob[end:]


def encode(graph: dict, tensors: dict[str, np.ndarray]) -> bytes:
    """The bytes of a packed model file holding ``graph`` (JSON-able dict) and ``tensors``."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "graph": json.dumps(graph, separators=(",", ":"), allow_nan=False), "sha256": _UNSET_DIGEST}
    return seal(_safetensors().save(tensors, metadata=meta))


def write(path: str | os.PathLike, graph: dict, tensors: dict[str, np.ndarray]) -> Path:
    """Write a packed model atomically (temporary file in the same folder, then rename)."""
    blob = encode(graph, tensors)
    path = Path(path)
    with atomic_write(path) as f:
        f.write(blob)
    return path


def decode(blob: bytes, where: str = "packed model") -> tuple[dict, dict[str, np.ndarray]]:
    """``(graph JSON, tensors)`` of a packed model file's bytes; the graph is not validated here.

    Raises :class:`ModelFormatError` naming what is wrong for a truncated or corrupted file, a
    file of another format, or one written by another version of xnorpp.
    """
    load = _safetensors().load  # a missing safetensors says so, not "corrupted"
    header_len = _header_length(blob, where)
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFormatError(f"{where}: corrupted header ({type(err).__name__}); not a packed xnorpp model "
                               "or a damaged one") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{where}: not a packed xnorpp model (no metadata format {FORMAT_NAME!r}); "
                               "create one with `xnorpp export`")
    recorded = meta.get("sha256")
    well_formed = isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{64}", recorded) is not None
    intact = well_formed and _digest(blob, header_len, recorded) == recorded
    version_text = meta.get("format_version")
    if not isinstance(version_text, str) or re.fullmatch(r"[0-9]{1,6}", version_text) is None:
        raise ModelFormatError(f"{where}: corrupted format_version {version_text!r}"
                               + ("" if intact else " (and the checksum does not match)"))
    version = int(version_text)
    if version > FORMAT_VERSION:  # a newer writer may checksum differently: name both possibilities
        raise ModelFormatError(f"{where}: format version {version} is newer than this runtime reads "
                               f"({FORMAT_VERSION}); upgrade xnorpp"
                               + ("" if intact else " (or the file is corrupted: its checksum does not match)"))
    if not well_formed:
        raise ModelFormatError(f"{where}: missing or corrupted checksum (metadata sha256)")
    if not intact:
        raise ModelFormatError(f"{where}: checksum mismatch: the file is truncated or corrupted")
    if version < FORMAT_VERSION:
        raise ModelFormatError(f"{where}: format version {version} was written by an older xnorpp; re-export "
                               f"the model with xnorpp >= {_FIRST_VERSION_OF[FORMAT_VERSION]} (`xnorpp export`)")
    graph_text = meta.get("graph")
    try:
        graph = json.loads(graph_text)
    except (TypeError, ValueError, RecursionError) as err:
        raise ModelFormatError(f"{where}: corrupted graph ({type(err).__name__})") from None
    try:
        tensors = load(blob)
    except Exception as err:  # safetensors' own error types for a malformed table
        raise ModelFormatError(f"{where}: corrupted tensor table ({err})") from None
    return graph, tensors


def is_packed_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file that says it is a packed xnorpp model (nothing else is checked)."""
    with open(path, "rb") as f:
        blob = f.read(8)
        if len(blob) < 8:
            return False
        (header_len,) = struct.unpack("<Q", blob)
        if header_len > min(os.fstat(f.fileno()).st_size - 8, 1 << 30):
            return False
        header = f.read(header_len)
    try:
        meta = json.loads(header.decode("utf-8")).get("__metadata__")
    except (UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT_NAME


def read(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(graph JSON, tensors)`` of the packed model file at ``path`` (see :func:`decode`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed model at {str(path)!r}")
    return decode(path.read_bytes(), repr(str(path)))
