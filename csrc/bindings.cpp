// Python bindings of the compiled core: thin, GIL released around every kernel call.
// Arrays must be C-contiguous numpy arrays of the documented dtype; anything else is
// refused with a clear error (no silent copies or conversions).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "core.h"
#include "dispatch.h"

namespace nb = nanobind;
using namespace xnorpp;

namespace {

using InArray = nb::ndarray<nb::ro>;

// A NaN reached the packer (a NaN has no sign): its own Python type, _core.NaNError (a ValueError), so
// callers can tell it from a bad argument.
struct NaNError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

const char* dtype_name(nb::dlpack::dtype dt) {
    if (dt == nb::dtype<float>()) return "float32";
    if (dt == nb::dtype<double>()) return "float64";
    if (dt == nb::dtype<uint32_t>()) return "uint32";
    if (dt == nb::dtype<int32_t>()) return "int32";
    if (dt == nb::dtype<int64_t>()) return "int64";
    if (dt == nb::dtype<uint8_t>()) return "uint8";
    if (dt == nb::dtype<int8_t>()) return "int8";
    return "another dtype";
}

template <class T>
const char* expected_name() {
    if constexpr (std::is_same_v<T, float>) return "float32";
    if constexpr (std::is_same_v<T, uint32_t>) return "uint32";
    if constexpr (std::is_same_v<T, int8_t>) return "int8";
    return "?";
}

// Checks dtype, dimensions and C-contiguity; returns the data pointer.
template <class T>
const T* checked(const InArray& a, const char* what, std::initializer_list<size_t> ndims) {
    if (a.device_type() != nb::device::cpu::value)
        throw std::invalid_argument(std::string(what) + ": expected a CPU (numpy) array");
    if (a.dtype() != nb::dtype<T>())
        throw nb::type_error((std::string(what) + ": expected dtype " + expected_name<T>() + ", got " +
                              dtype_name(a.dtype()))
                                 .c_str());
    bool ndim_ok = false;
    std::string valid;
    for (size_t d : ndims) {
        ndim_ok |= a.ndim() == d;
        valid += (valid.empty() ? "" : " or ") + std::to_string(d);
    }
    if (!ndim_ok)
        throw std::invalid_argument(std::string(what) + ": expected " + valid + " dimensions, got " +
                                    std::to_string(a.ndim()));
    int64_t expect = 1;
    for (size_t i = a.ndim(); i-- > 0;) {
        if (a.shape(i) != 1 && a.stride(i) != expect)
            throw std::invalid_argument(std::string(what) +
                                        ": array is not C-contiguous; pass numpy.ascontiguousarray(x)");
        expect *= static_cast<int64_t>(a.shape(i));
    }
    return static_cast<const T*>(a.data());
}

template <class T>
nb::ndarray<nb::numpy, T> new_array(const std::vector<size_t>& shape, T** data) {
    size_t n = 1;
    for (size_t s : shape) n *= s;
    T* buf = new T[n > 0 ? n : 1];  // every kernel writes all of it (packed words are assigned)
    nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    *data = buf;
    return nb::ndarray<nb::numpy, T>(buf, shape.size(), shape.data(), owner);
}

// A copy of an optional float array of `size` values, zero padded to `padded` (0: no padding).
std::vector<float> optional_vector(const std::optional<InArray>& a, const char* what, size_t size,
                                   size_t padded = 0) {
    if (!a) return {};
    const float* p = checked<float>(*a, what, {1, 2, 3});
    if (a->size() != size)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(size) + " values, got " +
                                    std::to_string(a->size()));
    std::vector<float> v(p, p + size);
    v.resize(std::max(size, padded), 0.0f);
    return v;
}

const float* ptr_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// rows x n floats, each row zero padded to `stride` (the stage arrays' per-channel length).
std::vector<float> padded_rows(const float* p, int64_t rows, int64_t n, int64_t stride) {
    std::vector<float> v(static_cast<size_t>(rows * stride), 0.0f);
    for (int64_t i = 0; i < rows; ++i) std::copy(p + i * n, p + (i + 1) * n, v.begin() + i * stride);
    return v;
}

// Pack float activations ([N,C,H,W] / [N,H,W,C] / [N,C]) to packed NHWC words.
nb::ndarray<nb::numpy, uint32_t> pack(const InArray& x, const std::string& layout, int64_t groups,
                                      const std::optional<InArray>& mul, const std::optional<InArray>& add) {
    const float* data = checked<float>(x, "pack: x", {2, 4});
    if (layout != "nhwc" && layout != "nchw")
        throw std::invalid_argument("pack: layout must be 'nhwc' or 'nchw', got '" + layout + "'");
    int64_t n = x.shape(0), c, h = 1, w = 1;
    const bool nchw = x.ndim() == 4 && layout == "nchw";
    if (x.ndim() == 2) c = x.shape(1);
    else if (nchw) c = x.shape(1), h = x.shape(2), w = x.shape(3);
    else h = x.shape(1), w = x.shape(2), c = x.shape(3);
    if (groups < 1 || c % groups != 0)
        throw std::invalid_argument("pack: channels (" + std::to_string(c) + ") must be divisible by groups (" +
                                    std::to_string(groups) + ")");
    std::vector<float> m = optional_vector(mul, "pack: scale", c), a = optional_vector(add, "pack: shift", c);
    const int64_t pw = groups * words_for(c / groups);
    uint32_t* out;
    std::vector<size_t> shape = x.ndim() == 2 ? std::vector<size_t>{size_t(n), size_t(pw)}
                                              : std::vector<size_t>{size_t(n), size_t(h), size_t(w), size_t(pw)};
    auto result = new_array<uint32_t>(shape, &out);
    bool ok;
    {
        nb::gil_scoped_release release;
        const IsaKernels* k = current_isa();
        if (nchw) {  // gather to NHWC first
            std::vector<float> t(static_cast<size_t>(n * h * w * c));
            for (int64_t i = 0; i < n; ++i)
                for (int64_t cc = 0; cc < c; ++cc)
                    for (int64_t p = 0; p < h * w; ++p) t[(i * h * w + p) * c + cc] = data[(i * c + cc) * h * w + p];
            ok = k->pack(t.data(), n * h * w, c, groups, ptr_or_null(m), ptr_or_null(a), out);
        } else {
            ok = k->pack(data, n * h * w, c, groups, ptr_or_null(m), ptr_or_null(a), out);
        }
    }
    if (!ok)
        throw NaNError("pack: input contains NaN; a NaN has no sign (the packed runtime refuses it)");
    return result;
}

// (N, C, H, W) float32 -> (N, H, W, C): the model's input, once per call, refused if it holds a NaN (checked
// in the same pass). Row by row: each of the C input rows is read in order and written with stride C into one
// output row (in L1). numpy's strided copy of the transpose took 0.18 ms for a 224x224 RGB image, as long as a
// ResNet-18 layer; this takes 0.04 ms.
nb::ndarray<nb::numpy, float> to_nhwc(const InArray& x) {
    const float* data = checked<float>(x, "to_nhwc: x", {4});
    const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
    float* out;
    auto result = new_array<float>({size_t(n), size_t(h), size_t(w), size_t(c)}, &out);
    std::atomic<bool> nan{false};
    {
        nb::gil_scoped_release release;
        parallel_for(n * h, [&](int64_t begin, int64_t end) {
            bool bad = false;
            for (int64_t row = begin; row < end; ++row) {
                const int64_t b = row / h, y = row % h;
                float* dst = out + row * w * c;
                for (int64_t ch = 0; ch < c; ++ch) {
                    const float* src = data + ((b * c + ch) * h + y) * w;
                    for (int64_t p = 0; p < w; ++p) {
                        dst[p * c + ch] = src[p];
                        bad |= src[p] != src[p];
                    }
                }
            }
            if (bad) nan.store(true, std::memory_order_relaxed);
        }, static_cast<double>(w * c));
    }
    if (nan) throw NaNError("input contains NaN; a NaN has no sign (the packed runtime refuses it)");
    return result;
}

// Per-channel (last axis) y = x*scale + shift, then PReLU y > 0 ? y : y*slope or ReLU: batch norm
// and the activation of the real layers in one pass, rounding like numpy's separate operations.
nb::ndarray<nb::numpy, float> channel_affine(const InArray& x, const std::optional<InArray>& scale,
                                             const std::optional<InArray>& shift, const std::optional<InArray>& slope,
                                             bool relu) {
    const float* data = checked<float>(x, "channel_affine: x", {1, 2, 3, 4});
    const size_t c = x.shape(x.ndim() - 1), n = x.size() / std::max<size_t>(c, 1);
    std::vector<float> m = optional_vector(scale, "channel_affine: scale", c),
                       a = optional_vector(shift, "channel_affine: shift", c),
                       sl = optional_vector(slope, "channel_affine: slope", c);
    std::vector<size_t> shape(x.ndim());
    for (size_t i = 0; i < x.ndim(); ++i) shape[i] = x.shape(i);
    float* out;
    auto result = new_array<float>(shape, &out);
    {
        nb::gil_scoped_release release;
        const float *pm = ptr_or_null(m), *pa = ptr_or_null(a), *ps = ptr_or_null(sl);
        parallel_for(static_cast<int64_t>(n), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const float* xi = data + i * c;
                float* yi = out + i * c;
                // Separate branch-free passes over the row (in L1) so each one vectorizes.
                if (pm) for (size_t j = 0; j < c; ++j) yi[j] = xi[j] * pm[j];
                else std::memcpy(yi, xi, c * sizeof(float));
                if (pa) for (size_t j = 0; j < c; ++j) yi[j] = yi[j] + pa[j];
                // Branch-free PReLU (random signs would mispredict a branch half the time); same values as
                // x > 0 ? x : x*slope, NaN propagated.
                if (ps) for (size_t j = 0; j < c; ++j) yi[j] = std::max(yi[j], 0.0f) + std::min(yi[j], 0.0f) * ps[j];
                else if (relu) for (size_t j = 0; j < c; ++j) yi[j] = std::max(yi[j], 0.0f);  // -inf -> 0, NaN kept
            }
        }, static_cast<double>(c) / 4);
    }
    return result;
}

// The geometry comes from the caller (xnorpp.packed.schema validates and computes it); the core only
// checks that every window it will read lies inside the padded input, so a wrong size cannot read
// out of bounds. Sizes are (height, width); padding is (top, bottom, left, right).
void check_windows(const char* what, std::array<int64_t, 2> in, std::array<int64_t, 2> out, int64_t kh, int64_t kw,
                   std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation) {
    const int64_t k[2] = {kh, kw}, pad[2] = {padding[0] + padding[1], padding[2] + padding[3]};
    for (int i = 0; i < 2; ++i)
        if (in[i] < 1 || out[i] < 1 || (out[i] - 1) * stride[i] + dilation[i] * (k[i] - 1) + 1 > in[i] + pad[i])
            throw std::invalid_argument(std::string(what) + ": output " + std::to_string(out[0]) + "x" +
                                        std::to_string(out[1]) + " does not fit input " + std::to_string(in[0]) + "x" +
                                        std::to_string(in[1]) + " with this kernel, stride, padding and dilation");
}

ConvShape conv_shape(int64_t n, int64_t c, int64_t o, int64_t kh, int64_t kw, std::array<int64_t, 2> stride,
                     std::array<int64_t, 2> dilation) {
    ConvShape s;
    s.n = n;
    s.c = c;
    s.o = o;
    s.kh = kh;
    s.kw = kw;
    s.sh = stride[0];
    s.sw = stride[1];
    s.dh = dilation[0];
    s.dw = dilation[1];
    return s;
}

// The bound on every size (xnorpp.packed.geometry.MAX_DIM): keeps size products far from int64 overflow.
constexpr int64_t kMaxGeometry = int64_t(1) << 24;

void check_geometry(const char* what, std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
                    std::array<int64_t, 2> dilation, std::array<int64_t, 2> in, std::array<int64_t, 2> out) {
    for (auto v : {stride[0], stride[1], dilation[0], dilation[1], in[0], in[1], out[0], out[1]})
        if (v < 1 || v > kMaxGeometry)
            throw std::invalid_argument(std::string(what) + ": sizes, stride and dilation must be in [1, 2^24]");
    for (auto p : padding)
        if (p < 0 || p > kMaxGeometry) throw std::invalid_argument(std::string(what) + ": padding must be in [0, 2^24]");
}

const IsaKernels* kernels_for(const char* what, const std::optional<std::string>& isa) {
    if (!isa) return current_isa();
    const IsaKernels* k = isa_by_name(*isa);
    if (!isa_supported(*isa))
        throw std::runtime_error(std::string(what) + ": instruction set '" + *isa + "' is not supported by this CPU");
    return k;
}

// A real (float32) convolution, groups 1, on NHWC arrays, with its epilogue fused: bias, a
// folded batch norm (scale, shift) and PReLU (slope) or ReLU.
class FloatConv {
public:
    FloatConv(const InArray& weight, std::array<int64_t, 2> in_size, std::array<int64_t, 2> out_size,
              std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
              int64_t groups, const std::optional<InArray>& bias, const std::optional<InArray>& scale,
              const std::optional<InArray>& shift, const std::optional<InArray>& slope, bool relu,
              const std::optional<std::string>& isa)
        : in_(in_size), out_(out_size), stride_(stride), padding_(padding), dilation_(dilation), relu_(relu) {
        const float* w = checked<float>(weight, "FloatConv: weight", {4});
        o_ = weight.shape(0);
        kh_ = weight.shape(2);
        kw_ = weight.shape(3);
        if (o_ < 1 || weight.shape(1) < 1 || kh_ < 1 || kw_ < 1 || kh_ > kMaxGeometry || kw_ > kMaxGeometry)
            throw std::invalid_argument("FloatConv: weight must have a non-zero shape (O, C/groups, KH, KW)");
        if (groups < 1 || groups > kMaxGeometry || o_ % groups)
            throw std::invalid_argument("FloatConv: groups must be in [1, 2^24] and divide the " +
                                        std::to_string(o_) + " output channels, got " + std::to_string(groups));
        groups_ = groups;
        c_ = int64_t(weight.shape(1)) * groups;
        if (c_ > kMaxGeometry) throw std::invalid_argument("FloatConv: more than 2^24 input channels");
        check_geometry("FloatConv", stride, padding, dilation, in_size, out_size);
        check_windows("FloatConv", in_size, out_size, kh_, kw_, stride, padding, dilation);
        kernels_ = kernels_for("FloatConv", isa);
        const int lanes = kernels_->float_lanes;
        // Stage arrays: a group's last block of lanes may read past O (float_conv in core.h).
        const size_t padded = static_cast<size_t>((o_ + lanes - 1) / lanes * lanes + lanes);
        bias_ = optional_vector(bias, "FloatConv: bias", o_, padded);
        scale_ = optional_vector(scale, "FloatConv: scale", o_, padded);
        shift_ = optional_vector(shift, "FloatConv: shift", o_, padded);
        slope_ = optional_vector(slope, "FloatConv: slope", o_, padded);
        depthwise_ = groups > 1 && groups == c_ && groups == o_;
        blocks_ = depthwise_ ? block_depthwise_weights(w, c_, kh_, kw_, lanes)
                             : block_float_weights(w, o_, c_ / groups, kh_, kw_, groups, lanes);
    }

    nb::ndarray<nb::numpy, float> forward(const InArray& x) {
        const float* xd = checked<float>(x, "FloatConv.forward: x", {4});
        if (int64_t(x.shape(3)) != c_)
            throw std::invalid_argument("FloatConv.forward: x has " + std::to_string(x.shape(3)) +
                                        " channels (last axis of NHWC), expected " + std::to_string(c_));
        ConvShape s = conv_shape(x.shape(0), c_, o_, kh_, kw_, stride_, dilation_);
        s.groups = groups_;
        const int64_t h = x.shape(1), w = x.shape(2);
        if (h != in_[0] || w != in_[1])
            throw std::invalid_argument("FloatConv.forward: input " + std::to_string(h) + "x" + std::to_string(w) +
                                        ", this layer was built for " + std::to_string(in_[0]) + "x" +
                                        std::to_string(in_[1]));
        s.oh = out_[0];
        s.ow = out_[1];
        s.h = h + padding_[0] + padding_[1];
        s.w = w + padding_[2] + padding_[3];
        float* out;
        auto result = new_array<float>({size_t(s.n), size_t(s.oh), size_t(s.ow), size_t(o_)}, &out);
        FloatStage st{ptr_or_null(bias_), ptr_or_null(scale_), ptr_or_null(shift_), ptr_or_null(slope_), relu_};
        {
            nb::gil_scoped_release release;
            std::vector<float> padded;
            const float* input = xd;
            if (s.h != h || s.w != w) {  // zero padding, materialized once (cheap next to the convolution)
                padded.assign(static_cast<size_t>(s.n * s.h * s.w * c_), 0.0f);
                for (int64_t n = 0; n < s.n; ++n)
                    for (int64_t y = 0; y < h; ++y)
                        std::copy(xd + ((n * h + y) * w) * c_, xd + ((n * h + y + 1) * w) * c_,
                                  padded.begin() + ((n * s.h + y + padding_[0]) * s.w + padding_[2]) * c_);
                input = padded.data();
            }
            (depthwise_ ? kernels_->float_depthwise : kernels_->float_conv)(s, input, blocks_.data(), st, out);
        }
        return result;
    }

    std::string isa() const { return kernels_->name; }

private:
    std::array<int64_t, 2> in_, out_, stride_;
    std::array<int64_t, 4> padding_;
    std::array<int64_t, 2> dilation_;
    int64_t o_, c_, kh_, kw_, groups_;
    const IsaKernels* kernels_;
    std::vector<float> blocks_, bias_, scale_, shift_, slope_;
    bool relu_, depthwise_;
};

// The int8 input layer (core.h, Int8Stage): the float input is coded as bytes,
// code = clamp(round_half_even(x*in_mul + in_add), 0, 255) per channel (for an image normalized with
// mean m and std s, in_mul = 255*s and in_add = 255*m give back its 8-bit pixels), then an exact integer
// convolution with weights in [-64, 64], then y = sum*scale + offset - (offsets of the taps on padding),
// and the float epilogue (bias, batch norm, PReLU/ReLU) as FloatConv's. xnorpp.runtime.kernels computes
// the weights and offsets from the float layer.
class Int8InputConv {
public:
    Int8InputConv(const InArray& weight, const InArray& scale, const InArray& offset, const InArray& tap_offset,
                  const InArray& in_mul, const InArray& in_add, std::array<int64_t, 2> in_size,
                  std::array<int64_t, 2> out_size, std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
                  std::array<int64_t, 2> dilation, const std::optional<InArray>& bias,
                  const std::optional<InArray>& bn_scale, const std::optional<InArray>& bn_shift,
                  const std::optional<InArray>& slope, bool relu, const std::optional<std::string>& isa)
        : in_(in_size), out_(out_size), stride_(stride), padding_(padding), dilation_(dilation), relu_(relu) {
        const int8_t* w = checked<int8_t>(weight, "Int8InputConv: weight", {4});
        o_ = weight.shape(0);
        kh_ = weight.shape(1);
        kw_ = weight.shape(2);
        c_ = weight.shape(3);
        if (o_ < 1 || kh_ < 1 || kw_ < 1 || c_ < 1 || kh_ > kMaxGeometry || kw_ > kMaxGeometry || c_ > kMaxGeometry)
            throw std::invalid_argument("Int8InputConv: weight must have a non-zero shape (O, KH, KW, C)");
        const int64_t k = kh_ * kw_ * c_;
        for (int64_t i = 0; i < o_ * k; ++i)
            if (w[i] < -64 || w[i] > 64)
                throw std::invalid_argument("Int8InputConv: weights must lie in [-64, 64] (7 bits and sign), got " +
                                            std::to_string(int(w[i])));
        if (k * 255 * 64 >= (int64_t(1) << 31))
            throw std::invalid_argument("Int8InputConv: KH*KW*C = " + std::to_string(k) +
                                        " is too large for exact int32 sums (at most 131000)");
        check_geometry("Int8InputConv", stride, padding, dilation, in_size, out_size);
        check_windows("Int8InputConv", in_size, out_size, kh_, kw_, stride, padding, dilation);
        kernels_ = kernels_for("Int8InputConv", isa);
        const int lanes = std::max(kernels_->int8_lanes, kernels_->float_lanes);
        ostride_ = (o_ + lanes - 1) / lanes * lanes + lanes;
        scale_ = optional_vector(scale, "Int8InputConv: scale", o_, ostride_);
        offset_ = optional_vector(offset, "Int8InputConv: offset", o_, ostride_);
        const float* t = checked<float>(tap_offset, "Int8InputConv: tap_offset", {2});
        if (int64_t(tap_offset.shape(0)) != kh_ * kw_ || int64_t(tap_offset.shape(1)) != o_)
            throw std::invalid_argument("Int8InputConv: tap_offset must have shape (KH*KW, O)");
        tap_offset_ = padded_rows(t, kh_ * kw_, o_, ostride_);
        // The per-channel factors repeated along an input row: a row is coded as one flat vector loop.
        const std::vector<float> mul = optional_vector(in_mul, "Int8InputConv: in_mul", c_),
                                 add = optional_vector(in_add, "Int8InputConv: in_add", c_);
        for (int64_t i = 0; i < in_[1] * c_; ++i) {
            row_mul_.push_back(mul[i % c_]);
            row_add_.push_back(add[i % c_]);
        }
        bias_ = optional_vector(bias, "Int8InputConv: bias", o_, ostride_);
        bn_scale_ = optional_vector(bn_scale, "Int8InputConv: scale", o_, ostride_);
        bn_shift_ = optional_vector(bn_shift, "Int8InputConv: shift", o_, ostride_);
        slope_ = optional_vector(slope, "Int8InputConv: slope", o_, ostride_);
        blocks_ = block_int8_weights(w, o_, kh_, kw_, c_, dilation_[1], kernels_->int8_lanes);
    }

    nb::ndarray<nb::numpy, float> forward(const InArray& x) {
        const float* xd = checked<float>(x, "Int8InputConv.forward: x", {4});
        const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2);
        if (int64_t(x.shape(3)) != c_ || h != in_[0] || w != in_[1])
            throw std::invalid_argument("Int8InputConv.forward: expected (N, " + std::to_string(in_[0]) + ", " +
                                        std::to_string(in_[1]) + ", " + std::to_string(c_) + ") float32 (NHWC)");
        ConvShape s = conv_shape(n, c_, o_, kh_, kw_, stride_, dilation_);
        s.oh = out_[0];
        s.ow = out_[1];
        s.h = h + padding_[0] + padding_[1];
        s.w = w + padding_[2] + padding_[3];
        float* out;
        auto result = new_array<float>({size_t(n), size_t(s.oh), size_t(s.ow), size_t(o_)}, &out);
        Int8Stage st;
        st.scale = scale_.data();
        st.offset = offset_.data();
        st.tap_offset = tap_offset_.data();
        st.ostride = ostride_;
        st.pad_top = padding_[0];
        st.pad_left = padding_[2];
        st.h = h;
        st.w = w;
        st.post = FloatStage{ptr_or_null(bias_), ptr_or_null(bn_scale_), ptr_or_null(bn_shift_), ptr_or_null(slope_),
                             relu_};
        std::atomic<bool> nan{false};
        {
            nb::gil_scoped_release release;
            std::vector<uint8_t> codes(static_cast<size_t>(n * s.h * s.w * c_ + int8_input_slack(c_, s.sw)), 0);
            const int64_t row = w * c_;
            parallel_for(n * h, [&](int64_t rb, int64_t re) {
                bool ok = true;
                for (int64_t r = rb; r < re; ++r) {
                    const int64_t b = r / h, y = r % h;
                    ok &= kernels_->int8_codes(xd + r * row, row, row_mul_.data(), row_add_.data(),
                                               codes.data() + ((b * s.h + y + padding_[0]) * s.w + padding_[2]) * c_);
                }
                if (!ok) nan.store(true, std::memory_order_relaxed);
            }, 2.0 * static_cast<double>(row));
            if (!nan.load()) kernels_->int8_conv(s, codes.data(), blocks_.data(), st, out);
        }
        if (nan.load()) throw NaNError("Int8InputConv.forward: input contains NaN");
        return result;
    }

    std::string isa() const { return kernels_->name; }

private:
    std::array<int64_t, 2> in_, out_, stride_;
    std::array<int64_t, 4> padding_;
    std::array<int64_t, 2> dilation_;
    int64_t o_, c_, kh_, kw_, ostride_;
    const IsaKernels* kernels_;
    std::vector<int8_t> blocks_;
    std::vector<float> scale_, offset_, tap_offset_, row_mul_, row_add_, bias_, bn_scale_, bn_shift_, slope_;
    bool relu_;
};

// Checks the arguments of a pooling call on (N, H, W, C) float32, allocates its (N, OH, OW, C) output and
// gives the window as a ConvShape (C channels in and out).
nb::ndarray<nb::numpy, float> pool_output(const InArray& x, const char* what, std::array<int64_t, 2> kernel,
                                          std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
                                          std::array<int64_t, 2> dilation, std::array<int64_t, 2> out_size,
                                          const float** xd, float** out, ConvShape* s) {
    *xd = checked<float>(x, (std::string(what) + ": x").c_str(), {4});
    check_geometry(what, stride, padding, dilation, {int64_t(x.shape(1)), int64_t(x.shape(2))}, out_size);
    if (kernel[0] < 1 || kernel[1] < 1 || kernel[0] > kMaxGeometry || kernel[1] > kMaxGeometry)
        throw std::invalid_argument(std::string(what) + ": kernel must be in [1, 2^24]");
    *s = conv_shape(x.shape(0), x.shape(3), x.shape(3), kernel[0], kernel[1], stride, dilation);
    s->h = x.shape(1);
    s->w = x.shape(2);
    s->pt = padding[0];
    s->pl = padding[2];
    s->oh = out_size[0];
    s->ow = out_size[1];
    return new_array<float>({size_t(x.shape(0)), size_t(out_size[0]), size_t(out_size[1]), size_t(x.shape(3))}, out);
}

// Max pooling on NHWC floats with the window geometry of PyTorch; the caller gives the output
// size (it holds the ceil_mode rule). Out-of-image taps are skipped (-inf padding); NaN propagates.
// padding is (top, bottom, left, right); only top and left place the windows.
nb::ndarray<nb::numpy, float> max_pool2d(const InArray& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                                         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
                                         std::array<int64_t, 2> out_size) {
    const float* xd;
    float* out;
    ConvShape s;
    auto result = pool_output(x, "max_pool2d", kernel, stride, padding, dilation, out_size, &xd, &out, &s);
    {
        nb::gil_scoped_release release;
        current_isa()->max_pool(s, xd, out);
    }
    return result;
}

// Average pooling on NHWC floats with PyTorch's windows and divisors: a window starts at
// o*stride - pad and ends at min(start + kernel, size + pad); count_include_pad divides by that
// span, otherwise by the part inside the image. The caller gives the output size (ceil_mode).
nb::ndarray<nb::numpy, float> avg_pool2d(const InArray& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                                         std::array<int64_t, 4> padding, std::array<int64_t, 2> out_size,
                                         bool count_include_pad) {
    const float* xd;
    float* out;
    ConvShape s;
    auto result = pool_output(x, "avg_pool2d", kernel, stride, padding, {1, 1}, out_size, &xd, &out, &s);
    {
        nb::gil_scoped_release release;
        current_isa()->avg_pool(s, xd, padding[1], padding[3], count_include_pad, out);
    }
    return result;
}

// A binary convolution with its weights blocked for one instruction set and its folded output stage.
class BinaryConv {
public:
    BinaryConv(const InArray& weights, int64_t in_channels, std::array<int64_t, 2> in_size,
               std::array<int64_t, 2> out_size, int64_t groups, std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
               std::array<int64_t, 2> dilation, double pad_value,
               const std::optional<InArray>& scale, const std::optional<InArray>& scale_map,
               const std::optional<InArray>& bias, const std::optional<InArray>& slope,
               const std::optional<InArray>& post_mul, const std::optional<InArray>& post_add,
               const std::optional<std::string>& isa, const std::optional<InArray>& scale_rows,
               const std::optional<InArray>& scale_pos) {
        const uint32_t* words = checked<uint32_t>(weights, "BinaryConv: weights", {4});
        o_ = weights.shape(0);
        kh_ = weights.shape(1);
        kw_ = weights.shape(2);
        groups_ = groups;
        c_ = in_channels;
        if (groups < 1 || in_channels < 1 || in_channels % groups || o_ % groups)
            throw std::invalid_argument("BinaryConv: in_channels (" + std::to_string(in_channels) + ") and out_channels (" +
                                        std::to_string(o_) + ") must be positive multiples of groups (" +
                                        std::to_string(groups) + ")");
        if (int64_t(weights.shape(3)) != words_for(in_channels / groups))
            throw std::invalid_argument("BinaryConv: weights have " + std::to_string(weights.shape(3)) +
                                        " words per tap, expected " + std::to_string(words_for(in_channels / groups)));
        check_geometry("BinaryConv", stride, padding, dilation, in_size, out_size);
        check_windows("BinaryConv", in_size, out_size, kh_, kw_, stride, padding, dilation);
        in_ = in_size;
        out_ = out_size;
        if (pad_value == 0.0) pad_ = PadMode::Zero;
        else if (pad_value == 1.0) pad_ = PadMode::PlusOne;
        else if (pad_value == -1.0) pad_ = PadMode::MinusOne;
        else throw std::invalid_argument("BinaryConv: pad_value must be 0, 1 or -1");
        stride_ = stride;
        padding_ = padding;
        dilation_ = dilation;
        kernels_ = kernels_for("BinaryConv", isa);
        scale_ = optional_vector(scale, "BinaryConv: scale", o_, padded_channels(o_));
        bias_ = optional_vector(bias, "BinaryConv: bias", o_, padded_channels(o_));
        slope_ = optional_vector(slope, "BinaryConv: slope", o_, padded_channels(o_));
        post_mul_ = optional_vector(post_mul, "BinaryConv: post_mul", o_, padded_channels(o_));
        post_add_ = optional_vector(post_add, "BinaryConv: post_add", o_, padded_channels(o_));
        if (scale_map) {
            const float* p = checked<float>(*scale_map, "BinaryConv: scale_map", {3});
            if (int64_t(scale_map->shape(0)) != out_size[0] || int64_t(scale_map->shape(1)) != out_size[1] ||
                int64_t(scale_map->shape(2)) != o_)
                throw std::invalid_argument("BinaryConv: scale_map must have shape (OH, OW, out_channels)");
            scale_map_ = padded_rows(p, out_size[0] * out_size[1], o_, padded_channels(o_));
        }
        if (bool(scale_rows) != bool(scale_pos))
            throw std::invalid_argument("BinaryConv: scale_rows and scale_pos go together (a factored scale)");
        if (scale_rows) {
            if (scale || scale_map)
                throw std::invalid_argument("BinaryConv: give one scale: scale, scale_map or scale_rows with scale_pos");
            const float* r = checked<float>(*scale_rows, "BinaryConv: scale_rows", {2});
            if (int64_t(scale_rows->shape(0)) != out_size[0] || int64_t(scale_rows->shape(1)) != o_)
                throw std::invalid_argument("BinaryConv: scale_rows must have shape (OH, out_channels)");
            scale_rows_ = padded_rows(r, out_size[0], o_, padded_channels(o_));
            checked<float>(*scale_pos, "BinaryConv: scale_pos", {2});
            if (int64_t(scale_pos->shape(0)) != out_size[0] || int64_t(scale_pos->shape(1)) != out_size[1])
                throw std::invalid_argument("BinaryConv: scale_pos must have shape (OH, OW)");
            scale_pos_ = optional_vector(scale_pos, "BinaryConv: scale_pos", size_t(out_size[0] * out_size[1]));
        }
        prepared_ = prepare_weights(words, o_, c_ / groups, kh_, kw_, groups, *kernels_);
    }

    nb::object forward(const InArray& x, const std::optional<InArray>& kmap, const std::string& out,
                       const std::optional<InArray>& residual) {
        const uint32_t* xd = checked<uint32_t>(x, "BinaryConv.forward: x", {2, 4});
        ConvShape s = conv_shape(x.shape(0), c_, o_, kh_, kw_, stride_, dilation_);
        s.h = x.ndim() == 4 ? x.shape(1) : 1;
        s.w = x.ndim() == 4 ? x.shape(2) : 1;
        s.pt = padding_[0];
        s.pl = padding_[2];
        s.groups = groups_;
        s.pad = pad_;
        s.ostride = padded_channels(o_);
        const int64_t words = int64_t(x.shape(x.ndim() - 1));
        if (words != s.pixel_words())
            throw std::invalid_argument("BinaryConv.forward: x has " + std::to_string(words) +
                                        " words per pixel, expected " + std::to_string(s.pixel_words()) + " (" +
                                        std::to_string(c_) + " channels in " + std::to_string(groups_) +
                                        " groups)");
        if (s.h != in_[0] || s.w != in_[1])
            throw std::invalid_argument("BinaryConv.forward: input " + std::to_string(s.h) + "x" + std::to_string(s.w) +
                                        ", this layer was built for " + std::to_string(in_[0]) + "x" +
                                        std::to_string(in_[1]));
        s.oh = out_[0];
        s.ow = out_[1];
        Stage st;
        st.scale_o = ptr_or_null(scale_);
        st.bias = ptr_or_null(bias_);
        st.slope = ptr_or_null(slope_);
        st.post_mul = ptr_or_null(post_mul_);
        st.post_add = ptr_or_null(post_add_);
        st.scale_map = ptr_or_null(scale_map_);
        st.scale_rows = ptr_or_null(scale_rows_);
        st.scale_pos = ptr_or_null(scale_pos_);
        if (kmap) {
            st.kmap = checked<float>(*kmap, "BinaryConv.forward: kmap", {1, 2, 3});
            if (int64_t(kmap->size()) != s.n * s.oh * s.ow)
                throw std::invalid_argument("BinaryConv.forward: kmap must hold N*OH*OW values");
        }
        const bool float_out = out == "float" || out == "float+packed";
        if (residual) {
            if (!float_out) throw std::invalid_argument("BinaryConv.forward: a residual needs out='float'");
            st.residual = checked<float>(*residual, "BinaryConv.forward: residual", {2, 4});
            if (int64_t(residual->size()) != s.n * s.oh * s.ow * o_ || residual->shape(0) != x.shape(0))
                throw std::invalid_argument("BinaryConv.forward: residual must have the output's shape");
        }
        const bool flat = x.ndim() == 2;
        const size_t n = size_t(s.n), oh = size_t(s.oh), ow = size_t(s.ow);
        auto shape_for = [&](size_t last) {
            return flat ? std::vector<size_t>{n, last} : std::vector<size_t>{n, oh, ow, last};
        };
        nb::object result;
        if (float_out) {
            st.mode = OutMode::Float;
            float* p;
            result = nb::cast(new_array<float>(shape_for(size_t(o_)), &p));
            st.out = p;
            if (out == "float+packed") {  // (float output, its bits after post_mul/post_add)
                if (groups_ != 1) throw std::invalid_argument("BinaryConv.forward: packed output needs groups == 1");
                result = nb::make_tuple(result, nb::cast(new_array<uint32_t>(shape_for(size_t(words_for(o_))), &st.bits)));
            }
        } else if (out == "int32") {
            st.mode = OutMode::Int32;
            int32_t* p;
            result = nb::cast(new_array<int32_t>(shape_for(size_t(o_)), &p));
            st.out = p;
        } else if (out == "packed") {
            if (groups_ != 1) throw std::invalid_argument("BinaryConv.forward: packed output needs groups == 1");
            st.mode = OutMode::Packed;
            uint32_t* p;
            result = nb::cast(new_array<uint32_t>(shape_for(size_t(words_for(o_))), &p));
            st.out = p;
        } else {
            throw std::invalid_argument("BinaryConv.forward: out must be 'float', 'int32', 'packed' or 'float+packed', "
                                        "got '" + out + "'");
        }
        {
            nb::gil_scoped_release release;
            kernels_->conv(s, xd, prepared_.blocks.data(), prepared_.tapsum.data(), st);
        }
        return result;
    }

    std::string isa() const { return kernels_->name; }
    int64_t out_channels() const { return o_; }
    int64_t in_channels() const { return c_; }
    int64_t groups() const { return groups_; }

private:
    int64_t o_, c_, kh_, kw_, groups_;
    std::array<int64_t, 2> in_, out_, stride_, dilation_;
    std::array<int64_t, 4> padding_;
    PadMode pad_;
    const IsaKernels* kernels_;
    PreparedWeights prepared_;
    std::vector<float> scale_, scale_map_, scale_rows_, scale_pos_, bias_, slope_, post_mul_, post_add_;
};

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "xnorpp compiled core: bit packing, binary convolution / GEMM, fused output stage";
    init_isa_from_env();
    nb::exception<NaNError>(m, "NaNError", PyExc_ValueError);
    m.def("version", []() { return 1; }, "ABI version of the compiled core.");
    m.def("isa", []() { return std::string(current_isa()->name); }, "Instruction set in use.");
    m.def("set_isa", &select_isa, nb::arg("name"),
          "Use a unit of isa_names() or 'auto' (the best this CPU supports) for new layers.");
    m.def("isa_names", &isa_names, "All instruction-set paths compiled in, best first.");
    m.def("isa_units", []() {
        std::vector<nb::dict> out;
        for (const auto& u : isa_units()) {
            nb::dict d;
            d["name"] = u.name, d["arch"] = u.arch, d["flags"] = u.flags, d["features"] = u.features;
            d["built"] = u.built, d["supported"] = u.supported;
            out.push_back(d);
        }
        return out;
    }, "Every unit of csrc/units.def: name, arch, compile flags, run-time CPU features, built, supported.");
    m.def("supported_isas", []() {
        std::vector<std::string> out;
        for (const auto& n : isa_names())
            if (isa_supported(n)) out.push_back(n);
        return out;
    }, "Instruction-set paths this CPU can run.");
    m.def("estimate_cpu_hz", []() { nb::gil_scoped_release r; return estimate_cpu_hz(); },
          "Clock of the calling core in Hz, from a chain of dependent adds (1 cycle each); for benchmarks.");
    m.def("spin_us", &spin_us, "Microseconds an idle kernel thread spins before it sleeps.");
    m.def("set_spin_us", &set_spin_us, nb::arg("us"),
          "Set how long an idle kernel thread spins before it sleeps (>= 0 microseconds; 0: never spin).");
    m.def("hold_workers", &hold_workers, nb::arg("hold"),
          "hold_workers(True) ... hold_workers(False) around a sequence of kernel calls: idle kernel threads wait "
          "for the next one by spinning (at most 5 ms) instead of sleeping.");
    m.def("num_threads", &num_threads, "Threads used by the kernels.");
    m.def("set_num_threads", &set_num_threads, nb::arg("threads"), "Set the number of kernel threads (>= 1).");
    m.def("pack", &pack, nb::arg("x"), nb::arg("layout") = "nhwc", nb::arg("groups") = 1,
          nb::arg("scale") = nb::none(), nb::arg("shift") = nb::none(),
          "Pack float32 activations (N,H,W,C), (N,C,H,W) with layout='nchw', or (N,C) into uint32 words "
          "(NHWC, LSB-first, bit 1 <=> value < 0); value = x*scale + shift per channel when given.");
    m.def("to_nhwc", &to_nhwc, nb::arg("x"),
          "float32 (N, C, H, W) -> (N, H, W, C), a new C-contiguous array; NaNError if x holds a NaN.");
    m.def("channel_affine", &channel_affine, nb::arg("x"), nb::arg("scale") = nb::none(),
          nb::arg("shift") = nb::none(), nb::arg("slope") = nb::none(), nb::arg("relu") = false,
          "float32 x (..., C): y = x*scale + shift per channel, then PReLU with slope or ReLU (each optional).");
    nb::class_<BinaryConv>(m, "BinaryConv")
        .def(nb::init<const InArray&, int64_t, std::array<int64_t, 2>, std::array<int64_t, 2>, int64_t,
                      std::array<int64_t, 2>, std::array<int64_t, 4>, std::array<int64_t, 2>, double,
                      const std::optional<InArray>&, const std::optional<InArray>&, const std::optional<InArray>&,
                      const std::optional<InArray>&, const std::optional<InArray>&, const std::optional<InArray>&,
                      const std::optional<std::string>&, const std::optional<InArray>&, const std::optional<InArray>&>(),
             nb::arg("weights"), nb::arg("in_channels"), nb::arg("in_size"), nb::arg("out_size"), nb::arg("groups") = 1,
             nb::arg("stride") = std::array<int64_t, 2>{1, 1}, nb::arg("padding") = std::array<int64_t, 4>{0, 0, 0, 0},
             nb::arg("dilation") = std::array<int64_t, 2>{1, 1}, nb::arg("pad_value") = 0.0,
             nb::arg("scale") = nb::none(), nb::arg("scale_map") = nb::none(), nb::arg("bias") = nb::none(),
             nb::arg("slope") = nb::none(), nb::arg("post_mul") = nb::none(), nb::arg("post_add") = nb::none(),
             nb::arg("isa") = nb::none(), nb::arg("scale_rows") = nb::none(), nb::arg("scale_pos") = nb::none(),
             "Binary convolution on packed NHWC input of in_size (h, w) giving out_size (as computed by "
             "xnorpp.packed.geometry); weights are uint32 words (O, KH, KW, words); padding is (top, bottom, left, right). "
             "The output scale is one of: scale (O,), scale_map (OH, OW, O), or the factored scale_rows (OH, O) times "
             "scale_pos (OH, OW).")
        .def("forward", &BinaryConv::forward, nb::arg("x"), nb::arg("kmap") = nb::none(), nb::arg("out") = "float",
             nb::arg("residual") = nb::none(),
             "Run on packed input (N,H,W,words) or (N,words); out='float', 'int32' (raw dot products), 'packed' or "
             "'float+packed' (a tuple: the float output and its bits as 'packed' gives them, for a binary layer "
             "that reads it). residual (float outputs only): a float32 array of the output's shape added last "
             "(a fused residual add).")
        .def_prop_ro("isa", &BinaryConv::isa)
        .def_prop_ro("out_channels", &BinaryConv::out_channels)
        .def_prop_ro("in_channels", &BinaryConv::in_channels)
        .def_prop_ro("groups", &BinaryConv::groups);
    nb::class_<FloatConv>(m, "FloatConv")
        .def(nb::init<const InArray&, std::array<int64_t, 2>, std::array<int64_t, 2>, std::array<int64_t, 2>,
                      std::array<int64_t, 4>, std::array<int64_t, 2>, int64_t, const std::optional<InArray>&,
                      const std::optional<InArray>&, const std::optional<InArray>&, const std::optional<InArray>&, bool,
                      const std::optional<std::string>&>(),
             nb::arg("weight"), nb::arg("in_size"), nb::arg("out_size"), nb::arg("stride") = std::array<int64_t, 2>{1, 1},
             nb::arg("padding") = std::array<int64_t, 4>{0, 0, 0, 0}, nb::arg("dilation") = std::array<int64_t, 2>{1, 1},
             nb::arg("groups") = 1, nb::arg("bias") = nb::none(), nb::arg("scale") = nb::none(), nb::arg("shift") = nb::none(),
             nb::arg("slope") = nb::none(), nb::arg("relu") = false, nb::arg("isa") = nb::none(),
             "Float32 convolution (any groups; depthwise when groups = C = O) on NHWC input of in_size (h, w) giving "
             "out_size, weight (O, C/groups, KH, KW) as in PyTorch; padding is (top, bottom, left, right). Epilogue: + bias, * scale + shift, then PReLU(slope) or ReLU.")
        .def("forward", &FloatConv::forward, nb::arg("x"), "Run on (N, H, W, C) float32; returns (N, OH, OW, O).")
        .def_prop_ro("isa", &FloatConv::isa);
    nb::class_<Int8InputConv>(m, "Int8InputConv")
        .def(nb::init<const InArray&, const InArray&, const InArray&, const InArray&, const InArray&, const InArray&,
                      std::array<int64_t, 2>, std::array<int64_t, 2>, std::array<int64_t, 2>, std::array<int64_t, 4>,
                      std::array<int64_t, 2>, const std::optional<InArray>&, const std::optional<InArray>&,
                      const std::optional<InArray>&, const std::optional<InArray>&, bool,
                      const std::optional<std::string>&>(),
             nb::arg("weight"), nb::arg("scale"), nb::arg("offset"), nb::arg("tap_offset"), nb::arg("in_mul"),
             nb::arg("in_add"), nb::arg("in_size"), nb::arg("out_size"), nb::arg("stride") = std::array<int64_t, 2>{1, 1},
             nb::arg("padding") = std::array<int64_t, 4>{0, 0, 0, 0}, nb::arg("dilation") = std::array<int64_t, 2>{1, 1},
             nb::arg("bias") = nb::none(), nb::arg("bn_scale") = nb::none(), nb::arg("bn_shift") = nb::none(),
             nb::arg("slope") = nb::none(), nb::arg("relu") = false, nb::arg("isa") = nb::none(),
             "The int8 input layer: codes = clamp(rint(x*in_mul + in_add), 0, 255) per channel, an exact integer "
             "convolution with int8 weight (O, KH, KW, C) in [-64, 64], y = sum*scale + offset - tap_offset[t] for "
             "every tap t on padding, then + bias, * bn_scale + bn_shift, PReLU(slope) or ReLU.")
        .def("forward", &Int8InputConv::forward, nb::arg("x"), "Run on (N, H, W, C) float32; returns (N, OH, OW, O).")
        .def_prop_ro("isa", &Int8InputConv::isa);
    m.def("avg_pool2d", &avg_pool2d, nb::arg("x"), nb::arg("kernel"), nb::arg("stride"), nb::arg("padding"),
          nb::arg("out_size"), nb::arg("count_include_pad"),
          "Average pooling of (N, H, W, C) float32 to out_size with PyTorch's windows and divisors; padding is "
          "(top, bottom, left, right).");
    m.def("max_pool2d", &max_pool2d, nb::arg("x"), nb::arg("kernel"), nb::arg("stride"), nb::arg("padding"),
          nb::arg("dilation"), nb::arg("out_size"),
          "Max pooling of (N, H, W, C) float32 to out_size (the caller applies ceil_mode); padding is (top, bottom, "
          "left, right).");
}
