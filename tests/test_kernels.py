"""Packed kernels against float64 references, on every instruction-set path this CPU runs.

The binary dot products must equal a float64 convolution of the ±1 tensors exactly; the fused
output stage must match the float formula within 1e-5 relative.
"""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import binary_conv, float_conv, weight_words
from xnorpp import _core

ISAS = list(_core.supported_isas())


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _core.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(previous)


def sign(a):
    return np.where(a < 0, -1.0, 1.0)


def reference(x, w, stride, pad, dil, groups, pad_value):
    """float64 sign(x) ⊛ sign(w), x NCHW, pad (top, bottom, left, right) filled with pad_value."""
    xb = F.pad(torch.from_numpy(sign(x)), (pad[2], pad[3], pad[0], pad[1]), value=pad_value)
    return F.conv2d(xb, torch.from_numpy(sign(w)), None, stride, 0, dil, groups).numpy()


def run_conv(x, w, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=1, pad_value=0.0, out=_core.Output.int32):
    xp = _core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), groups=groups)
    conv = binary_conv(w, x.shape[1], x.shape[2:], groups, stride, pad, dil, pad_value)
    return conv, conv.forward(xp, None, out)


CASES = [  # n, c, o, h, w, k, stride, pad, dilation, groups, pad_value
    (1, 64, 64, 7, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.0),
    (2, 33, 17, 9, 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, 0.0),
    (3, 100, 40, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, 0.0),
    (1, 65, 31, 11, 11, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1, 0.0),
    (1, 1, 7, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, 0.0),
    (2, 20, 50, 8, 9, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, 0.0),
    (1, 48, 96, 6, 7, (3, 3), (1, 2), (1, 0, 2, 1), (1, 1), 3, 0.0),
    (2, 40, 36, 7, 5, (3, 2), (2, 1), (1, 1, 0, 1), (1, 2), 1, 1.0),
    (1, 70, 33, 6, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, -1.0),
    (1, 130, 64, 5, 4, (2, 3), (1, 1), (1, 2, 2, 0), (2, 1), 2, -1.0),
    (5, 3, 3, 1, 1, (1, 1), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.0),
]


@pytest.mark.parametrize("case", CASES, ids=[f"c{c[1]}o{c[2]}k{c[5][0]}x{c[5][1]}s{c[6][0]}g{c[9]}p{c[10]}"
                                              for c in CASES])
def test_conv_dot_products_exact(isa, case):
    n, c, o, h, w, k, stride, pad, dil, groups, pv = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[x > 1.5] = 0.0  # zeros must count as +1
    wt = rng.standard_normal((o, c // groups, *k)).astype(np.float32)
    _, y = run_conv(x, wt, stride, pad, dil, groups, pv)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), reference(x, wt, stride, pad, dil, groups, pv))


def test_random_shapes_exact(isa):
    rng = np.random.default_rng(1)
    checked = 0
    while checked < 25:
        g = int(rng.choice([1, 1, 2, 3]))
        cg, og = int(rng.integers(1, 90)), int(rng.integers(1, 45))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        st, dl = tuple(int(v) for v in rng.integers(1, 3, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
        if h + pad[0] + pad[1] < dl[0] * (kh - 1) + 1 or w + pad[2] + pad[3] < dl[1] * (kw - 1) + 1:
            continue
        pv = float(rng.choice([0.0, 1.0, -1.0]))
        x = rng.standard_normal((int(rng.integers(1, 4)), cg * g, h, w)).astype(np.float32)
        wt = rng.standard_normal((og * g, cg, kh, kw)).astype(np.float32)
        _, y = run_conv(x, wt, st, pad, dl, g, pv)
        np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), reference(x, wt, st, pad, dl, g, pv))
        checked += 1


@pytest.mark.parametrize("m,k,o", [(1, 1, 1), (7, 33, 10), (64, 512, 100), (3, 1000, 65)])
def test_gemm_exact(isa, m, k, o):
    rng = np.random.default_rng(m * k + o)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((o, k)).astype(np.float32)
    conv = binary_conv(b, k)
    y = conv.forward(_core.pack(a), None, _core.Output.int32)
    np.testing.assert_array_equal(y, (sign(a) @ sign(b).T).astype(np.int64))


def test_fused_stage_float(isa):
    rng = np.random.default_rng(5)
    n, c, o, h, w = 2, 45, 37, 6, 5
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    dot = reference(x, wt, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.0)  # (n, o, h, w) float64
    alpha = rng.uniform(0.2, 2, o).astype(np.float32)
    smap = rng.uniform(0.2, 2, (h, w, o)).astype(np.float32)
    kmap = rng.uniform(0.1, 1, (n, h, w)).astype(np.float32)
    bias, slope = rng.standard_normal(o).astype(np.float32), rng.uniform(-0.5, 0.5, o).astype(np.float32)
    xp = _core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))

    def check(got, expect):
        got = got.transpose(0, 3, 1, 2).astype(np.float64)
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())

    a64, b64, s64 = alpha.astype(np.float64)[:, None, None], bias.astype(np.float64)[:, None, None], \
        slope.astype(np.float64)[:, None, None]
    conv = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale=alpha, bias=bias, slope=slope)
    y = dot * a64 + b64
    check(conv.forward(xp), np.where(y > 0, y, y * s64))
    conv = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale_map=smap)
    check(conv.forward(xp), dot * smap.transpose(2, 0, 1)[None].astype(np.float64))
    conv = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale=alpha, bias=bias)
    check(conv.forward(xp, kmap), dot * a64 * kmap[:, None].astype(np.float64) + b64)
    # A factored scale, rows (OH, O) times positions (OH, OW): within float64 of the product, and bit for bit
    # the full map folded in the same order in float32 (what the runtime relies on to skip the full map).
    rows, pos = rng.uniform(0.2, 2, (h, o)).astype(np.float32), rng.uniform(0.2, 2, (h, w)).astype(np.float32)
    conv = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale_rows=rows, scale_pos=pos, bias=bias, slope=slope)
    factored = conv.forward(xp)
    y = dot * (rows.T[:, :, None].astype(np.float64) * pos[None].astype(np.float64)) + b64
    check(factored, np.where(y > 0, y, y * s64))
    folded = rows[:, None, :] * pos[:, :, None]  # (OH, OW, O), float32
    conv = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale_map=folded, bias=bias, slope=slope)
    np.testing.assert_array_equal(factored, conv.forward(xp))
    for bad, message in [(dict(scale_rows=rows), "go together"),
                         (dict(scale_rows=rows, scale_pos=pos, scale=alpha), "give one scale"),
                         (dict(scale_rows=rows[:, :-1].copy(), scale_pos=pos), "scale_rows must have shape"),
                         (dict(scale_rows=rows, scale_pos=pos.T.copy()), "scale_pos must have shape")]:
        with pytest.raises(ValueError, match=message):
            binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), **bad)
    # Packed output: bits of (stage output * post_mul + post_add) < 0.
    post_mul, post_add = rng.uniform(0.5, 2, o).astype(np.float32), rng.standard_normal(o).astype(np.float32)
    conv_f = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale=alpha, bias=bias, slope=slope)
    conv_p = binary_conv(wt, c, (h, w), pad=(1, 1, 1, 1), scale=alpha, bias=bias, slope=slope,
                              post_mul=post_mul, post_add=post_add)
    np.testing.assert_array_equal(conv_p.forward(xp, None, _core.Output.packed),
                                  _core.pack(conv_f.forward(xp), scale=post_mul, shift=post_add))


def test_to_nhwc_is_numpys_transpose_bit_for_bit(isa):
    rng = np.random.default_rng(11)
    for shape in [(1, 3, 224, 224), (2, 1, 28, 28), (2, 4, 5, 6), (3, 5, 7, 9), (1, 70, 1, 1)]:  # C 1, 3, 4: own code
        x = rng.standard_normal(shape).astype(np.float32)
        x.flat[:3] = [-0.0, np.inf, -np.inf]
        got = _core.to_nhwc(x)
        assert got.shape == (shape[0], shape[2], shape[3], shape[1]) and got.flags.c_contiguous
        np.testing.assert_array_equal(got.view(np.uint32), x.transpose(0, 2, 3, 1).view(np.uint32))
        for where in (x.size - 1, x[0, 0].size * (shape[1] // 2) + 1):  # last value; a middle channel's
            y = x.copy()
            y.flat[where] = np.nan
            with pytest.raises(_core.NaNError, match="input contains NaN"):
                _core.to_nhwc(y)
    with pytest.raises(ValueError, match="expected 4 dimensions"):
        _core.to_nhwc(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.to_nhwc(np.zeros((1, 3, 4, 5)))


def test_pack_layouts_and_conventions(isa):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 70, 3, 4)).astype(np.float32)
    x[0, :5, 0, 0] = 0.0
    x[0, 5:8, 0, 0] = -0.0
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    packed = _core.pack(nhwc)
    np.testing.assert_array_equal(packed, _core.pack(x, "nchw"))
    assert packed.shape == (2, 3, 4, 3) and packed.dtype == np.uint32
    bits = np.unpackbits(packed.view(np.uint8), bitorder="little").reshape(2, 3, 4, 96)[..., :70]
    np.testing.assert_array_equal(bits, (nhwc < 0).astype(np.uint8))  # sign(0) = sign(-0) = +1 -> bit 0
    assert not np.unpackbits(packed.view(np.uint8), bitorder="little").reshape(2, 3, 4, 96)[..., 70:].any()
    scale, shift = rng.uniform(-2, 2, 70).astype(np.float32), rng.standard_normal(70).astype(np.float32)
    np.testing.assert_array_equal(_core.pack(nhwc, scale=scale, shift=shift), _core.pack(nhwc * scale + shift))


def test_pack_rejects_nan_and_bad_arrays(isa):
    x = np.zeros((1, 2, 2, 40), np.float32)
    x[0, 1, 1, 37] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _core.pack(x)
    with pytest.raises(TypeError, match="float32"):
        _core.pack(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.pack(np.zeros((1, 4, 4, 3), np.float32)[:, ::2])
    conv = binary_conv(np.ones((4, 3, 3, 3), np.float32), 3, (5, 5))
    with pytest.raises(ValueError, match="words per pixel"):
        conv.forward(np.zeros((1, 5, 5, 2), np.uint32))
    with pytest.raises(ValueError, match="built for 5x5"):
        conv.forward(np.zeros((1, 2, 2, 1), np.uint32))
    words = weight_words(np.ones((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):  # a geometry the caller got wrong cannot read out of bounds
        _core.BinaryConv(words, 3, (5, 5), (4, 4))
    with pytest.raises(ValueError, match="2\\^24"):
        _core.BinaryConv(words, 3, (5, 5), (3, 3), 1, (1 << 25, 1))


def test_threads_give_identical_results(isa):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 9, 9)).astype(np.float32)
    wt = rng.standard_normal((96, 64, 3, 3)).astype(np.float32)
    # Weights past 256 KiB of bits, in 2 groups: the work items block-major, not tile-major (conv_impl), and
    # each thread's first item somewhere inside a group.
    x_deep = rng.standard_normal((1, 768, 6, 6)).astype(np.float32)
    wt_deep = rng.standard_normal((768, 384, 3, 3)).astype(np.float32)
    before, spin_before = _core.num_threads(), _core.spin_us()
    try:
        _core.set_num_threads(1)
        _, one = run_conv(x, wt, pad=(1, 1, 1, 1))
        _, deep_one = run_conv(x_deep, wt_deep, pad=(1, 1, 1, 1), groups=2)
        _core.set_num_threads(3)
        _, three = run_conv(x, wt, pad=(1, 1, 1, 1))
        _, deep_three = run_conv(x_deep, wt_deep, pad=(1, 1, 1, 1), groups=2)
        _core.set_spin_us(200)  # idle workers spin between the calls instead of sleeping
        assert _core.spin_us() == 200
        spun = [run_conv(x, wt, pad=(1, 1, 1, 1))[1] for _ in range(3)]
        _core.set_spin_us(0)
        _core.hold_workers(True)  # as a packed model's call does: workers spin between the calls
        _core.hold_workers(True)  # holds nest
        held = [run_conv(x, wt, pad=(1, 1, 1, 1))[1] for _ in range(3)]
        _core.hold_workers(False)
        _core.hold_workers(False)
    finally:
        _core.set_num_threads(before)
        _core.set_spin_us(spin_before)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(deep_one, deep_three)
    np.testing.assert_array_equal(deep_one.transpose(0, 3, 1, 2),
                                  reference(x_deep, wt_deep, (1, 1), (1, 1, 1, 1), (1, 1), 2, 0.0))
    for out in spun + held:
        np.testing.assert_array_equal(one, out)
    with pytest.raises(ValueError, match="without a matching hold_workers"):
        _core.hold_workers(False)
    with pytest.raises(ValueError):
        _core.set_num_threads(0)
    with pytest.raises(ValueError, match="spin must be >= 0 microseconds, got -1"):
        _core.set_spin_us(-1)


def test_spin_default_comes_from_the_environment():
    env = dict(os.environ, XNORPP_SPIN_US="70")
    done = subprocess.run([sys.executable, "-c", "from xnorpp import _core; print(_core.spin_us())"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "70", done.stderr


def _core_in_subprocess(isa_value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XNORPP_ISA=isa_value)
    return subprocess.run([sys.executable, "-c", "from xnorpp import _core; print(_core.isa())"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_env_var_forces_each_path():
    for name in _core.isa_names():
        result = _core_in_subprocess(name)
        if name in ISAS:
            assert result.returncode == 0 and result.stdout.strip() == name, result.stderr
        else:  # this CPU lacks it: a clear error, not a crash
            assert result.returncode == 1 and "not supported by this CPU" in result.stderr
    bad = _core_in_subprocess("sse9")
    assert bad.returncode == 1 and "valid here: " + ", ".join(_core.isa_names()) in bad.stderr
    assert ISAS[-1] == "portable" and _core_in_subprocess("auto").stdout.strip() == ISAS[0]


FLOAT_CASES = [  # n, c, o, h, w, k, stride, pad (top, bottom, left, right), dilation
    (1, 3, 64, 23, 20, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),  # a ResNet stem
    (2, 64, 37, 6, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),    # a shortcut 1×1, odd outputs
    (1, 17, 33, 9, 11, (5, 3), (2, 1), (1, 2, 0, 3), (1, 1)),
    (3, 5, 40, 10, 9, (3, 3), (1, 2), (2, 2, 2, 2), (2, 3)),    # dilation: segments of C per tap
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
]


GROUPED_CASES = [  # the same, then groups
    (2, 16, 16, 9, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 16),   # depthwise, whole vectors of channels
    (1, 37, 37, 8, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 37),  # depthwise, a partial vector at the end
    (1, 5, 5, 13, 13, (5, 5), (1, 2), (2, 2, 1, 3), (2, 1), 5),    # depthwise 5×5, dilation, fewer than a vector
    (1, 96, 96, 7, 7, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 96),   # ConvNeXt's 7×7
    (1, 8, 24, 6, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8),     # depthwise with a multiplier: grouped path
    (2, 12, 18, 7, 5, (3, 3), (2, 1), (0, 1, 1, 0), (1, 2), 3),    # grouped, groups of 4 -> 6
    (1, 128, 128, 6, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 32), # ResNeXt's 32 groups of 4
    (1, 6, 64, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2),     # groups of 32 outputs: whole blocks
]


def _float_case_id(c) -> str:
    return f"c{c[1]}o{c[2]}k{c[5][0]}x{c[5][1]}d{c[8][1]}" + (f"g{c[9]}" if len(c) > 9 else "")


@pytest.mark.parametrize("case", FLOAT_CASES + GROUPED_CASES, ids=[_float_case_id(c) for c in FLOAT_CASES + GROUPED_CASES])
def test_float_conv_with_epilogue(isa, case):
    """The real layers' conv (+ bias, folded batch norm, PReLU), grouped and depthwise ones included, against a
    float64 PyTorch reference."""
    n, c, o, h, w, k, stride, pad, dil, groups = case if len(case) > 9 else (*case, 1)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((o, c // groups, *k)).astype(np.float32)
    bias, scale, shift = (rng.standard_normal(o).astype(np.float32) for _ in range(3))
    slope = (0.25 * rng.standard_normal(o)).astype(np.float32)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    xd = F.pad(torch.from_numpy(x).double(), (pad[2], pad[3], pad[0], pad[1]))
    conv = F.conv2d(xd, torch.from_numpy(weight).double(), torch.from_numpy(bias).double(), stride, 0, dil, groups)
    per_channel = lambda v: torch.from_numpy(v).double()[:, None, None]  # noqa: E731
    affine = conv * per_channel(scale) + per_channel(shift)
    plain = conv - per_channel(bias)
    for kwargs, ref in [({}, plain),
                        ({"bias": bias}, conv),
                        ({"scale": scale, "shift": shift}, plain * per_channel(scale) + per_channel(shift)),
                        ({"bias": bias, "scale": scale, "shift": shift, "relu": True}, affine.clamp(min=0)),
                        ({"bias": bias, "scale": scale, "shift": shift, "slope": slope},
                         torch.where(affine > 0, affine, affine * per_channel(slope)))]:
        got = float_conv(weight, (h, w), stride, pad, dil, groups=groups, **kwargs).forward(nhwc).transpose(0, 3, 1, 2)
        ref = ref.numpy()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_fused_relu_and_prelu_on_extremes(isa):
    """ReLU maps -inf to 0 (PyTorch's relu), NaN propagates; the fused PReLU keeps x*slope."""
    values = np.array([-np.inf, np.nan, -2.0, 3.0, np.inf], np.float32)
    x = values.reshape(1, 1, 5, 1)  # NHWC: 5 pixels of one channel, a 1×1 conv of weight 1
    one = np.ones((1, 1, 1, 1), np.float32)
    relu = float_conv(one, (1, 5), relu=True).forward(x).reshape(-1)
    np.testing.assert_array_equal(relu, F.relu(torch.from_numpy(values)).numpy())
    prelu = float_conv(one, (1, 5), slope=np.full(1, 0.25, np.float32)).forward(x).reshape(-1)
    np.testing.assert_array_equal(prelu, F.prelu(torch.from_numpy(values), torch.tensor([0.25])).numpy())
    affine = _core.channel_affine(values.reshape(5, 1), None, None, None, True).reshape(-1)
    np.testing.assert_array_equal(affine, relu)


def test_float_conv_bad_input(isa):
    conv = float_conv(np.ones((4, 3, 3, 3), np.float32), (5, 5))
    with pytest.raises(ValueError, match="channels"):
        conv.forward(np.zeros((1, 5, 5, 4), np.float32))
    with pytest.raises(ValueError, match="built for 5x5"):
        conv.forward(np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        conv.forward(np.zeros((1, 5, 5, 3), np.float64))
    with pytest.raises(ValueError, match="stride"):
        _core.FloatConv(np.ones((4, 3, 3, 3), np.float32), (5, 5), (3, 3), (0, 1))
    with pytest.raises(ValueError, match="groups must .* divide the 4 output channels, got 3"):
        _core.FloatConv(np.ones((4, 1, 3, 3), np.float32), (5, 5), (3, 3), groups=3)
    grouped = float_conv(np.ones((4, 2, 3, 3), np.float32), (5, 5), groups=2)  # 4 input channels
    with pytest.raises(ValueError, match="has 2 channels .* expected 4"):
        grouped.forward(np.zeros((1, 5, 5, 2), np.float32))


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", [
    (3, 2, 1, 1, False), (3, 2, 1, 1, True), (2, 2, 0, 1, True), (3, 1, 1, 2, False), (1, 3, 0, 1, True)])
def test_max_pool_matches_pytorch(isa, kernel, stride, padding, dilation, ceil_mode):
    from xnorpp.packed.geometry import pool_output_size

    x = np.random.default_rng(3).standard_normal((2, 13, 10, 21)).astype(np.float32)  # vectors of channels + a tail
    x[1, 4, 4, [2, 20]] = np.nan  # propagates, as in PyTorch (in a vector lane and in the tail)
    x[0, 6, 3, :] = -np.inf
    geometry = (kernel,) * 2, (stride,) * 2, (padding,) * 4, (dilation,) * 2
    got = _core.max_pool2d(x, *geometry, pool_output_size(x.shape[1:3], *geometry, ceil_mode))
    ref = F.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), kernel, stride, padding, dilation,
                       ceil_mode=ceil_mode).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, ref)


def test_fused_residual_add(isa):
    """out=Output.float with a residual: the stage's output plus the residual, bit for bit the separate float add."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 70, 6, 5)).astype(np.float32)  # 70 outputs: a partial block of lanes too
    w = rng.standard_normal((70, 70, 3, 3)).astype(np.float32)
    xp = _core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    conv = binary_conv(w, 70, (6, 5), 1, (1, 1), (1, 1, 1, 1), (1, 1), 0.0)
    residual = rng.standard_normal((2, 6, 5, 70)).astype(np.float32)
    np.testing.assert_array_equal(conv.forward(xp, None, _core.Output.float, residual),
                                  conv.forward(xp, None, _core.Output.float) + residual)
    with pytest.raises(ValueError, match="needs a float output"):
        conv.forward(xp, None, _core.Output.int32, residual)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        conv.forward(xp, None, _core.Output.float, residual[:, :, :, :69].copy())


@pytest.mark.parametrize("o", [64, 70])  # whole register tiles; a partial block of lanes
@pytest.mark.parametrize("with_residual", [False, True])
def test_float_output_with_its_bits(isa, o, with_residual):
    """out=Output.float_and_bits: the float output as Output.float gives it, and beside it the bits that packing that
    output with the reader's affine (post_mul, post_add) gives, bit for bit: what a binary reader would read."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 40, 6, 5)).astype(np.float32)
    w = rng.standard_normal((o, 40, 3, 3)).astype(np.float32)
    post_mul = rng.uniform(-1.5, 1.5, o).astype(np.float32)  # negative factors flip signs too
    post_add = rng.standard_normal(o).astype(np.float32)
    xp = _core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    conv = binary_conv(w, 40, (6, 5), 1, (1, 1), (1, 1, 1, 1), (1, 1), 0.0, scale=rng.uniform(0.5, 1.5, o).astype(
        np.float32), bias=rng.standard_normal(o).astype(np.float32), slope=np.full(o, 0.25, np.float32),
        post_mul=post_mul, post_add=post_add)
    residual = rng.standard_normal((2, 6, 5, o)).astype(np.float32) if with_residual else None
    y, bits = conv.forward(xp, None, _core.Output.float_and_bits, residual)
    np.testing.assert_array_equal(y, conv.forward(xp, None, _core.Output.float, residual))
    np.testing.assert_array_equal(bits, _core.pack(y, "nhwc", 1, post_mul, post_add))
    assert bits.shape == (2, 6, 5, (o + 31) // 32) and 0.2 < np.unpackbits(bits.view(np.uint8)).mean() < 0.8
    grouped = binary_conv(rng.standard_normal((64, 20, 3, 3)).astype(np.float32), 40, (6, 5), 2, pad=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="packed output needs groups == 1"):
        grouped.forward(_core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), "nhwc", 2), None,
                        _core.Output.float_and_bits)


DEEP_CASES = [  # n, c, o, h, w, stride: ResNet's deeper 3x3 layers, small (on AMX: tall tiles, weights as bits)
    (1, 512, 64, 7, 7, 1),   # 72 tile steps, 64 outputs: tall items of 16 channels, bits expanded per step
    (2, 256, 96, 6, 5, 2),   # stride 2 (a tile per output row), two images, 36 steps
    (1, 512, 96, 4, 9, 1),   # three blocks of 32, positions past a padded row
]


@pytest.mark.parametrize("case", DEEP_CASES, ids=[f"c{c[1]}o{c[2]}s{c[5]}" for c in DEEP_CASES])
def test_deep_layers_exact(isa, case):
    """Deep layers, their dot products exact and their float output with its bits (each 16-channel half of a
    bit word written by another block on AMX) as the float path and the packer give them."""
    n, c, o, h, w, stride = case
    rng = np.random.default_rng(o + c)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    conv, dots = run_conv(x, wt, (stride, stride), (1, 1, 1, 1))
    np.testing.assert_array_equal(dots.transpose(0, 3, 1, 2), reference(x, wt, (stride, stride), (1, 1, 1, 1),
                                                                        (1, 1), 1, 0.0))
    post_mul, post_add = rng.uniform(-1.5, 1.5, o).astype(np.float32), rng.standard_normal(o).astype(np.float32)
    conv = binary_conv(wt, c, (h, w), 1, (stride, stride), (1, 1, 1, 1), scale=rng.uniform(0.5, 1.5, o).astype(
        np.float32), bias=rng.standard_normal(o).astype(np.float32) * 10, slope=np.full(o, 0.25, np.float32),
        post_mul=post_mul, post_add=post_add)
    xp = _core.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    y, bits = conv.forward(xp, None, _core.Output.float_and_bits)
    np.testing.assert_array_equal(y, conv.forward(xp, None, _core.Output.float))
    np.testing.assert_array_equal(bits, _core.pack(y, "nhwc", 1, post_mul, post_add))
    np.testing.assert_array_equal(conv.forward(xp, None, _core.Output.packed), bits)


def test_amx_where_the_cpu_has_it():
    """The AMX unit is offered exactly where the CPU has AMX (and Linux grants the tiles): every test above then
    runs it; elsewhere it says why."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    cpu_has = {"amx_tile", "amx_int8", "avx512_vpopcntdq", "avx512_vnni"} <= flags
    if not cpu_has:
        assert "amx" not in ISAS
        result = _core_in_subprocess("amx")
        assert result.returncode == 1 and "not supported by this CPU" in result.stderr
        pytest.skip("skipped: no AMX on this CPU (amx_tile, amx_int8 in /proc/cpuinfo)")
    assert "amx" in ISAS and ISAS[0] == "amx", "this CPU has AMX, but Linux refused its tiles (see stderr)"



def _cpu_flags():
    """The CPU's features as /proc/cpuinfo lists them (x86 'flags', ARM 'Features'), without '_' or '-'."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.split(":", 1)[0].strip() in ("flags", "Features"):
                return {flag.replace("_", "") for flag in line.split(":", 1)[1].split()}
    return set()


def test_units_table_builds_and_checks_what_it_says(capsys):
    """csrc/units.def is the one list of units: this build has exactly the units of its architecture, best
    first, and a unit is offered exactly when /proc/cpuinfo lists every feature its line names."""
    units = _core.isa_units()
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine().lower(), "other")
    flags = _cpu_flags()
    with capsys.disabled():
        print("\nunits (csrc/units.def):")
        for u in units:
            print(f"  {u['name']:13} {u['arch']:8} built={u['built']!s:5} supported={u['supported']!s:5} "
                  f"checks: {' '.join(u['features']) or '-'}")
    assert [u["name"] for u in units if u["built"]] == list(_core.isa_names())
    for u in units:
        assert u["built"] == (u["arch"] in ("any", machine)), u
        assert u["features"] or not u["flags"], f"{u['name']}: instructions beyond the baseline need run-time checks"
        needed = {f.replace("-", "").replace("_", "") for f in u["features"]}
        assert u["supported"] == (u["built"] and needed <= flags), (u, sorted(needed - flags))
    assert [u["name"] for u in units if u["supported"]] == ISAS
    forced = os.environ.get("XNORPP_ISA", "auto")
    assert ISAS[-1] == "portable" and _core.isa() == (ISAS[0] if forced in ("", "auto") else forced)

# ---------------------------------------------------------------------------------------- the int8 input layer
INT8_CASES = [  # n, c, o, h, w, k, stride, pad (top, bottom, left, right), dilation
    (1, 3, 64, 23, 21, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),  # ResNet's stem, small
    (2, 1, 8, 9, 10, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),    # fmnist-net's
    (1, 4, 70, 8, 7, (3, 2), (1, 2), (2, 0, 1, 2), (2, 1)),    # channels past a tile, dilation, odd padding
    (3, 2, 33, 5, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    (1, 3, 5, 6, 6, (5, 5), (1, 1), (4, 4, 4, 4), (1, 1)),     # windows that are mostly padding
]


@pytest.mark.parametrize("case", INT8_CASES, ids=[f"c{c[1]}o{c[2]}k{c[5][0]}x{c[5][1]}" for c in INT8_CASES])
def test_int8_input_conv(isa, case):
    """The int8 input layer against float64 PyTorch: codes = clamp(rint(x·in_mul + in_add), 0, 255) (out-of-range
    inputs included), sum of codes × weights, · scale, + the offsets of the taps inside the image, then the epilogue."""
    n, c, o, h, w, k, stride, pad, dil = case
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((n, c, h, w)) * 1.3).astype(np.float32)
    in_mul = rng.uniform(40, 80, c).astype(np.float32)
    in_add = rng.uniform(90, 140, c).astype(np.float32)
    weight = rng.integers(-64, 65, (o, *k, c)).astype(np.int8)
    weight[0] = 64  # the extremes, with the largest codes below
    weight[-1] = -64
    x[0, :, 0, :] = 10.0
    scale = rng.uniform(0.001, 0.01, o).astype(np.float32)
    tap_offset = rng.standard_normal((k[0] * k[1], o)).astype(np.float32)
    bias, bn_scale, bn_shift = (rng.standard_normal(o).astype(np.float32) for _ in range(3))
    slope = (0.25 * rng.standard_normal(o)).astype(np.float32)

    codes = np.clip(np.rint(x * in_mul[:, None, None] + in_add[:, None, None]), 0, 255)  # float32 math, as the core
    assert codes.max() == 255 and codes.min() == 0
    padding = (pad[2], pad[3], pad[0], pad[1])
    conv = lambda v, wt: F.conv2d(F.pad(torch.from_numpy(v).double(), padding), torch.from_numpy(wt).double(),  # noqa: E731
                                  None, stride, 0, dil)
    sums = conv(codes, weight.transpose(0, 3, 1, 2).astype(np.float64))
    inside = conv(np.ones((n, 1, h, w)), tap_offset.T.reshape(o, 1, *k).astype(np.float64))  # Σ over in-image taps
    per_channel = lambda v: torch.from_numpy(v).double()[:, None, None]  # noqa: E731
    y = ((sums * per_channel(scale) + inside + per_channel(bias)) * per_channel(bn_scale) + per_channel(bn_shift))
    ref = torch.where(y > 0, y, y * per_channel(slope)).numpy()

    oh, ow = ref.shape[2:]
    layer = _core.Int8InputConv(weight, scale, tap_offset.sum(axis=0), tap_offset, in_mul, in_add, (h, w), (oh, ow),
                                stride=stride, padding=pad, dilation=dil, bias=bias, bn_scale=bn_scale,
                                bn_shift=bn_shift, slope=slope)
    assert layer.isa == isa
    got = layer.forward(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("w", [1, 5, 16, 23])  # rows of 3·w values: vector body and scalar tail of each unit
def test_int8_input_codes(isa, w):
    """The codes alone, seen through a 1×1 conv with weight 1 and scale 1: numpy's round half to even of
    x·in_mul + in_add, clamped to [0, 255], on halves, clamp edges, ±0 and ±inf; a NaN anywhere is refused."""
    c, h = 3, 4
    in_mul = np.array([1.0, 2.0, 0.5], np.float32)
    in_add = np.array([0.0, 100.0, 7.25], np.float32)
    special = np.array([0.5, 1.5, 2.5, 254.5, 255.5, -0.5, -0.0, 0.0, 300.0, -7.0, np.inf, -np.inf], np.float32)
    rng = np.random.default_rng(w)
    x = rng.uniform(-20, 280, (1, h, w, c)).astype(np.float32)
    flat = x.reshape(-1)
    flat[:min(len(special), flat.size)] = special[:flat.size]
    layer = _core.Int8InputConv(np.ones((1, 1, 1, c), np.int8), np.ones(1, np.float32), np.zeros(1, np.float32),
                                np.zeros((1, 1), np.float32), in_mul, in_add, (h, w), (h, w))
    assert layer.isa == isa
    # One output channel summing the three channels' codes: check each channel alone, the others at code 0.
    for ch in range(c):
        xc = np.full_like(x, -1e30)
        xc[..., ch] = x[..., ch]
        want = np.clip(np.rint(xc[..., ch] * in_mul[ch] + in_add[ch]), 0, 255)  # float32 math, as the core
        np.testing.assert_array_equal(layer.forward(xc)[..., 0], want)
    for where in (0, x.size // 2, x.size - 1):  # first, middle (a vector body) and last (the tail) value
        bad = x.copy().reshape(-1)
        bad[where] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            layer.forward(bad.reshape(x.shape))


def test_int8_input_conv_bad_input():
    ok = dict(in_size=(4, 4), out_size=(4, 4), padding=(1, 1, 1, 1))
    w = np.zeros((2, 3, 3, 1), np.int8)
    args = (np.ones(2, np.float32), np.zeros(2, np.float32), np.zeros((9, 2), np.float32), np.ones(1, np.float32),
            np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"\[-64, 64\]"):
        _core.Int8InputConv(np.full((2, 3, 3, 1), 65, np.int8), *args, **ok)
    with pytest.raises(TypeError, match="int8"):
        _core.Int8InputConv(w.astype(np.float32), *args, **ok)
    with pytest.raises(ValueError, match=r"tap_offset must have shape"):
        _core.Int8InputConv(w, args[0], args[1], np.zeros((8, 2), np.float32), *args[3:], **ok)
    layer = _core.Int8InputConv(w, *args, **ok)
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.full((1, 4, 4, 1), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 4, 4, 1\)"):
        layer.forward(np.zeros((1, 4, 4, 3), np.float32))
