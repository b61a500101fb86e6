"""Convolution geometry shared by the layers, the exporter and the runtime (no torch)."""

from __future__ import annotations


def conv_output_length(length: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                       dilation: int) -> int:
    """Output length along one axis: floor((L + p0 + p1 - d·(k-1) - 1) / s) + 1."""
    span = dilation * (kernel - 1) + 1
    padded = length + pad_before + pad_after
    if padded < span:
        return 0
    return (padded - span) // stride + 1


def conv_output_size(input_size: tuple[int, int], kernel_size: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int]
                     ) -> tuple[int, int]:
    """Output (h, w) of a 2-D convolution; ``padding`` is ((top, bottom), (left, right))."""
    return tuple(
        conv_output_length(input_size[i], kernel_size[i], stride[i], padding[i][0], padding[i][1], dilation[i])
        for i in range(2)
    )


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
