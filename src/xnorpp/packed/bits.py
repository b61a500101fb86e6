"""The bit layout of binary weights, and the one packer (numpy only).

Convention (docs/design.md, "Conventions"): bit 1 ⇔ value < 0, so sign(0) = +1. A binary layer's
weights are stored in the file densely, 1 bit per weight, LSB first, in ``(O, KH, KW, C/groups)``
order (channels last, like the NHWC activations). The compiled core reads them as 32-bit words
per output channel and tap, channels LSB first and zero padded to a whole word:
``(O, KH, KW, words(C/groups))``. Activations are packed the same way by the core's ``pack``.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 32


def words_for(bits: int) -> int:
    """32-bit words holding ``bits`` bits."""
    return -(-bits // WORD_BITS)


def stored_bytes(count: int) -> int:
    """Bytes of ``count`` densely packed sign bits in the file."""
    return -(-count // 8)


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Dense sign bits of ``values`` (any shape, flattened in C order) as uint8: bit 1 ⇔ value < 0, LSB first."""
    return np.packbits((np.asarray(values) < 0).reshape(-1), bitorder="little")


def to_words(bits: np.ndarray, out_channels: int, kernel: tuple[int, int], channels: int) -> np.ndarray:
    """The core's weight words ``(O, KH, KW, words(C))`` from the file's dense bits of ``(O, KH, KW, C)``.

    ``bits`` must hold exactly :func:`stored_bytes` of O·KH·KW·C bits (the schema checks it).
    """
    kh, kw = kernel
    flat = np.unpackbits(bits, bitorder="little", count=out_channels * kh * kw * channels)
    per_tap = flat.reshape(out_channels * kh * kw, channels)
    padded = np.zeros((per_tap.shape[0], words_for(channels) * WORD_BITS), np.uint8)
    padded[:, :channels] = per_tap
    words = np.packbits(padded, axis=1, bitorder="little").view("<u4")
    return np.ascontiguousarray(words.astype(np.uint32).reshape(out_channels, kh, kw, -1))


def to_signs(bits: np.ndarray, out_channels: int, kernel: tuple[int, int], channels: int) -> np.ndarray:
    """The ±1 float32 weights ``(O, C, KH, KW)`` (PyTorch's layout) of the file's dense bits of ``(O, KH, KW, C)``."""
    kh, kw = kernel
    flat = np.unpackbits(bits, bitorder="little", count=out_channels * kh * kw * channels)
    signs = 1.0 - 2.0 * flat.reshape(out_channels, kh, kw, channels).astype(np.float32)
    return np.ascontiguousarray(signs.transpose(0, 3, 1, 2), dtype=np.float32)


def weight_words(weight: np.ndarray) -> np.ndarray:
    """The core's words of float weights ``(O, C/groups, KH, KW)`` (PyTorch's layout) or ``(O, C)``."""
    w4 = weight if weight.ndim == 4 else weight[:, :, None, None]
    o, cg, kh, kw = w4.shape
    return to_words(pack_signs(w4.transpose(0, 2, 3, 1)), o, (kh, kw), cg)
