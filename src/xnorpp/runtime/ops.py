"""Real-valued (float32) layers of the packed runtime, NHWC layout.

The first conv, the downsample shortcuts, pooling, batch norm and the classifier stay
real in a binary network. Convolutions with groups = 1 run in the compiled core
(``_core.FloatConv``, built by :mod:`.model`); the functions here cover the rest with
numpy (grouped convs by im2col + BLAS) or thin calls into the core (max pooling, the
per-channel affine). Each reproduces the PyTorch layer of the same name (its padding,
ceil_mode and count_include_pad rules) on ``(N, H, W, C)`` arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..geometry import conv_output_length


def _taps(x: np.ndarray, kernel, stride, dilation, out_hw):
    """Yield (ky, kx, view (N, OH, OW, C)) over the kernel taps of an already padded x."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, x[:, y0:y0 + sh * (oh - 1) + 1:sh, x0:x0 + sw * (ow - 1) + 1:sw, :]


def _pad(x: np.ndarray, padding, value=0.0, extra=(0, 0)) -> np.ndarray:
    top, bottom, left, right = padding
    if not (top or bottom or left or right or extra[0] or extra[1]):
        return x
    return np.pad(x, ((0, 0), (top, bottom + extra[0]), (left, right + extra[1]), (0, 0)), constant_values=value)


def conv_output_hw(hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    return (conv_output_length(hw[0], kernel[0], stride[0], padding[0], padding[1], dilation[0]),
            conv_output_length(hw[1], kernel[1], stride[1], padding[2], padding[3], dilation[1]))


def conv2d(x: np.ndarray, weight: np.ndarray, bias, stride, padding, dilation, groups: int) -> np.ndarray:
    """Grouped float convolution: x (N,H,W,C), weight (O, C/groups, KH, KW) as in PyTorch; im2col + BLAS.

    (Convolutions with groups = 1 run in the compiled core, ``_core.FloatConv``.)"""
    n, h, w, c = x.shape
    o, cg, kh, kw = weight.shape
    oh, ow = conv_output_hw((h, w), (kh, kw), stride, padding, dilation)
    og = o // groups
    if kh == kw == 1 and not any(padding):  # pointwise: a plain GEMM on the (strided) pixels
        xs = x[:, ::stride[0], ::stride[1], :][:, :oh, :ow, :]
        cols = [np.ascontiguousarray(xs[..., g * cg:(g + 1) * cg]).reshape(-1, cg) for g in range(groups)]
        weights = [weight[g * og:(g + 1) * og].reshape(og, cg).T for g in range(groups)]
    else:
        span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
        win = sliding_window_view(_pad(x, padding), span, axis=(1, 2))  # (N, H', W', C, span_h, span_w)
        win = win[:, ::stride[0], ::stride[1], :, ::dilation[0], ::dilation[1]][:, :oh, :ow]
        cols = [win[:, :, :, g * cg:(g + 1) * cg].reshape(-1, cg * kh * kw) for g in range(groups)]
        weights = [weight[g * og:(g + 1) * og].reshape(og, -1).T for g in range(groups)]  # (C/g·KH·KW, O/g)
    if groups == 1:
        out = cols[0] @ weights[0]
    else:
        out = np.empty((n * oh * ow, o), dtype=np.float32)
        for g in range(groups):
            out[:, g * og:(g + 1) * og] = cols[g] @ weights[g]
    if bias is not None:
        out += bias
    return out.reshape(n, oh, ow, o)


def magnitude_map(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """XNOR-Net's K: mean over channels of |x|, box-filtered (1/(kh·kw)) with zero padding; (N, OH, OW)."""
    kh, kw = kernel
    mean_abs = np.abs(x).mean(axis=-1, keepdims=True, dtype=np.float32)
    oh, ow = conv_output_hw(x.shape[1:3], kernel, stride, padding, dilation)
    box = np.float32(1.0 / (kh * kw))
    k = np.zeros((x.shape[0], oh, ow, 1), dtype=np.float32)
    for _, _, view in _taps(_pad(mean_abs, padding), kernel, stride, dilation, (oh, ow)):
        k += view * box
    return np.ascontiguousarray(k[..., 0])


def _pool_out(length, k, s, p, d, ceil_mode):
    span = d * (k - 1) + 1
    num = length + 2 * p - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= length + p:
        out -= 1
    return out


def max_pool2d(x, kernel, stride, padding, dilation, ceil_mode) -> np.ndarray:
    """PyTorch's max_pool2d (-inf padding, ceil_mode rule) in the compiled core."""
    from .. import _core

    oh = _pool_out(x.shape[1], kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _pool_out(x.shape[2], kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    return _core.max_pool2d(np.ascontiguousarray(x, dtype=np.float32), kernel, stride, padding, dilation, (oh, ow))


def avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad) -> np.ndarray:
    h, w = x.shape[1:3]
    oh = _pool_out(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = _pool_out(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    extra = (max(0, (oh - 1) * stride[0] + kernel[0] - h - 2 * padding[0]),
             max(0, (ow - 1) * stride[1] + kernel[1] - w - 2 * padding[1]))
    pads = (padding[0], padding[0], padding[1], padding[1])
    xp = _pad(x, pads, 0.0, extra)
    total = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    for _, _, view in _taps(xp, kernel, stride, (1, 1), (oh, ow)):
        total += view
    # Divisor as in PyTorch: the window clipped to the padded image, or to the image itself.
    ones = np.ones((1, h, w, 1), dtype=np.float32)
    if count_include_pad:
        ones = _pad(ones, pads, 1.0)
        ones = _pad(ones, (0, 0, 0, 0), 0.0, extra)
    else:
        ones = _pad(ones, pads, 0.0, extra)
    count = np.zeros((1, oh, ow, 1), dtype=np.float32)
    for _, _, view in _taps(ones, kernel, stride, (1, 1), (oh, ow)):
        count += view
    return total / count


def adaptive_avg_pool2d(x, output_size) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = output_size
    out = np.empty((n, oh, ow, c), dtype=np.float32)
    for i in range(oh):
        y0, y1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            x0, x1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[:, i, j, :] = x[:, y0:y1, x0:x1, :].mean(axis=(1, 2), dtype=np.float32)
    return out


def flatten(x: np.ndarray) -> np.ndarray:
    """PyTorch's flatten(x, 1) of an NCHW tensor, from the NHWC array."""
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * slope).astype(np.float32, copy=False)


def channel_affine(x: np.ndarray, scale=None, shift=None, slope=None, relu: bool = False) -> np.ndarray:
    """x*scale + shift per channel (last axis), then PReLU(slope) or ReLU: one pass in the compiled core."""
    from .. import _core

    return _core.channel_affine(np.ascontiguousarray(x, dtype=np.float32), scale, shift, slope, relu)
