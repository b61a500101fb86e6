"""Convolution and pooling geometry, and the size bounds of the packed format (no torch, no numpy).

One padding layout everywhere (layers, exporter, schema, runtime, compiled core):
``(top, bottom, left, right)``. Pools store their symmetric PyTorch padding in the same layout.
"""

from __future__ import annotations

# The one bound on sizes read from a packed file (docs/design.md, "Bounds"). Checked by the schema
# before anything is allocated, so a file that loads cannot exhaust memory or time:
MAX_DIM = 1 << 24        # any single size: channels, features, spatial size, kernel, stride, padding
MAX_ELEMENTS = 1 << 28   # elements of one image's activation or of one parameter tensor
MAX_WORK = 1 << 34       # multiply-adds (or window reads) of one node for one image

Padding = tuple[int, int, int, int]  # (top, bottom, left, right)


def conv_output_length(length: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                       dilation: int) -> int:
    """Output length along one axis: floor((L + p0 + p1 - d·(k-1) - 1) / s) + 1, or 0 if the window never fits."""
    span = dilation * (kernel - 1) + 1
    padded = length + pad_before + pad_after
    if padded < span:
        return 0
    return (padded - span) // stride + 1


def conv_output_size(input_size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                     padding: Padding, dilation: tuple[int, int]) -> tuple[int, int]:
    """Output (h, w) of a 2-D convolution; ``padding`` is (top, bottom, left, right)."""
    return (conv_output_length(input_size[0], kernel[0], stride[0], padding[0], padding[1], dilation[0]),
            conv_output_length(input_size[1], kernel[1], stride[1], padding[2], padding[3], dilation[1]))


def pool_output_length(length: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length, ceil_mode rule included (the last window must start inside)."""
    span = dilation * (kernel - 1) + 1
    num = length + 2 * pad - span
    if num < 0:
        return 0
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + pad:
        out -= 1
    return out


def pool_output_size(input_size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                     padding: Padding, dilation: tuple[int, int], ceil_mode: bool) -> tuple[int, int]:
    """Output (h, w) of max/avg pooling; ``padding`` is (top, bottom, left, right) with top == bottom, left == right."""
    return (pool_output_length(input_size[0], kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
            pool_output_length(input_size[1], kernel[1], stride[1], padding[2], dilation[1], ceil_mode))


def padding_from_torch(reversed_padding: tuple[int, int, int, int]) -> Padding:
    """(top, bottom, left, right) from a torch conv's ``_reversed_padding_repeated_twice`` (left, right, top, bottom)."""
    left, right, top, bottom = (int(p) for p in reversed_padding)
    return (top, bottom, left, right)


def symmetric_padding(value) -> Padding:
    """A pool's PyTorch padding (an int or (h, w)) in the one layout."""
    h, w = (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))
    return (h, h, w, w)


def size_pair(value, what: str = "input_size") -> tuple[int, int]:
    """``28`` or ``(28, 28)`` → ``(28, 28)``; a clear ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a pair (h, w), got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return (h, w)
