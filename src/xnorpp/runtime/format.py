"""The packed model file (``.xnor``): one safetensors file, no pickle.

Layout: the safetensors header's ``__metadata__`` holds

``format``          ``"xnorpp-packed"``
``format_version``  an integer (this runtime reads versions up to :data:`FORMAT_VERSION`)
``graph``           the graph as JSON (see :mod:`xnorpp.runtime.model`)
``sha256``          SHA-256 of the whole file, computed with these 64 hex digits set to
                    ``0``: a flipped bit anywhere (graph, tensor table, data) is refused

and the tensors are the graph's parameters: binary weights as ``uint8`` sign bits packed
1 bit per weight (LSB first, bit 1 ⇔ w < 0, in ``(O, KH, KW, C/groups)`` order), the
folded output-stage parameters in float32, and the real layers in float32 or float16.

This module imports neither torch nor the compiled core: the exporter writes with it,
the runtime reads with it.
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
FORMAT_VERSION = 1
SUFFIX = ".xnor"


class ModelFormatError(ValueError):
    """The file is not a packed xnorpp model this runtime can read (truncated, corrupted, newer...)."""


_UNSET_DIGEST = "0" * 64


def _header_length(blob: bytes) -> int:
    if len(blob) < 8:
        raise ModelFormatError(f"file too short ({len(blob)} bytes) to be a safetensors file")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise ModelFormatError(f"header length {header_len} exceeds the file size {len(blob)}: truncated file?")
    return header_len


def _file_digest(blob: bytes, header_len: int, recorded: str) -> str:
    """SHA-256 of ``blob`` with the recorded digest in its header replaced by zeros."""
    header = blob[8:8 + header_len].replace(f'"{recorded}"'.encode(), f'"{_UNSET_DIGEST}"'.encode(), 1)
    digest = hashlib.sha256(memoryview(blob)[:8])
    digest.update(header)
    digest.update(memoryview(blob)[8 + header_len:])
    return digest.hexdigest()


def write_model(path: str | os.PathLike, graph: dict, tensors: dict[str, np.ndarray]) -> Path:
    """Write a packed model atomically (temporary file in the same folder, then rename)."""
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "graph": json.dumps(graph, separators=(",", ":")), "sha256": _UNSET_DIGEST}
    blob = save(tensors, metadata=meta)
    header_len = _header_length(blob)
    digest = _file_digest(blob, header_len, _UNSET_DIGEST)
    blob = (blob[:8] + blob[8:8 + header_len].replace(f'"{_UNSET_DIGEST}"'.encode(), f'"{digest}"'.encode(), 1)
            + blob[8 + header_len:])
    path = Path(path)
    with atomic_write(path) as f:
        f.write(blob)
    return path


def read_model(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate a packed model file; returns ``(graph, tensors)``.

    Raises :class:`ModelFormatError` naming what is wrong for a truncated or corrupted
    file, a file of another format, or one written by a newer xnorpp.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed model at {str(path)!r}")
    blob = path.read_bytes()
    where = f"{str(path)!r}"
    header_len = _header_length(blob)
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
        meta = header.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise ModelFormatError(f"{where}: corrupted header ({err}); not a packed xnorpp model") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{where}: not a packed xnorpp model (metadata format is "
                               f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                               f"expected {FORMAT_NAME!r}); create one with `xnorpp export`")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise ModelFormatError(f"{where}: corrupted format_version {meta.get('format_version')!r}") from None
    recorded = meta.get("sha256")
    well_formed = isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{64}", recorded) is not None
    intact = well_formed and _file_digest(blob, header_len, recorded) == recorded
    if version > FORMAT_VERSION:  # a newer writer may checksum differently: name both possibilities
        raise ModelFormatError(f"{where}: format version {version} is newer than this runtime reads "
                               f"(up to {FORMAT_VERSION}); upgrade xnorpp"
                               + ("" if intact else " (or the file is corrupted: its checksum does not match)"))
    if not well_formed:
        hint = (" (written by a development version of xnorpp: export it again)" if "data_sha256" in meta
                else "")
        raise ModelFormatError(f"{where}: missing or corrupted checksum (metadata sha256){hint}")
    if not intact:
        raise ModelFormatError(f"{where}: checksum mismatch: the file is truncated or corrupted")
    if version < 1:
        raise ModelFormatError(f"{where}: invalid format version {version}")
    try:
        graph = json.loads(meta["graph"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{where}: corrupted graph ({err})") from None
    try:
        from safetensors.numpy import load

        tensors = load(blob)
    except Exception as err:  # safetensors' own error type for a malformed file
        raise ModelFormatError(f"{where}: corrupted tensor table ({err})") from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise ModelFormatError(f"{where}: corrupted graph (no node list)")
    return graph, tensors


def pack_sign_bits(weight: np.ndarray) -> np.ndarray:
    """Sign bits of a weight array, 1 bit per weight (LSB first, bit 1 ⇔ w < 0), as uint8."""
    return np.packbits((np.asarray(weight) < 0).reshape(-1), bitorder="little")


def unpack_sign_bits(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_sign_bits`: ±1 float32 array of ``shape``."""
    count = int(np.prod(shape))
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (count + 7) // 8:
        raise ModelFormatError(f"packed weights of {bits.size} bytes do not hold {count} bits of shape {shape}")
    flat = np.unpackbits(bits, bitorder="little", count=count)
    return np.where(flat.reshape(shape) != 0, np.float32(-1.0), np.float32(1.0))
