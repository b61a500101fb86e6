// The int8 input layer of the bindings (Int8InputConv).
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <atomic>

#include "py_arrays.h"

namespace xnorpp::py {
namespace {

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
        : relu_(relu) {
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
        geo_ = Geometry("Int8InputConv", in_size, out_size, {kh_, kw_}, stride, padding, dilation, true);
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
        for (int64_t i = 0; i < in_size[1] * c_; ++i) {
            row_mul_.push_back(mul[i % c_]);
            row_add_.push_back(add[i % c_]);
        }
        bias_ = optional_vector(bias, "Int8InputConv: bias", o_, ostride_);
        bn_scale_ = optional_vector(bn_scale, "Int8InputConv: scale", o_, ostride_);
        bn_shift_ = optional_vector(bn_shift, "Int8InputConv: shift", o_, ostride_);
        slope_ = optional_vector(slope, "Int8InputConv: slope", o_, ostride_);
        blocks_ = block_int8_weights(w, o_, kh_, kw_, c_, dilation[1], kernels_->int8_lanes);
    }

    nb::ndarray<nb::numpy, float> forward(const InArray& x) {
        const float* xd = checked<float>(x, "Int8InputConv.forward: x", {4});
        const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2);
        if (int64_t(x.shape(3)) != c_ || h != geo_.in[0] || w != geo_.in[1])
            throw std::invalid_argument("Int8InputConv.forward: expected (N, " + std::to_string(geo_.in[0]) + ", " +
                                        std::to_string(geo_.in[1]) + ", " + std::to_string(c_) + ") float32 (NHWC)");
        ConvShape s = geo_.shape(n, c_, o_, true);
        float* out;
        auto result = new_array<float>({size_t(n), size_t(s.oh), size_t(s.ow), size_t(o_)}, &out);
        Int8Stage st;
        st.scale = scale_.data();
        st.offset = offset_.data();
        st.tap_offset = tap_offset_.data();
        st.ostride = ostride_;
        st.pad_top = geo_.padding[0];
        st.pad_left = geo_.padding[2];
        st.h = h;
        st.w = w;
        st.post = FloatStage{ptr_or_null(bias_), ptr_or_null(bn_scale_), ptr_or_null(bn_shift_), ptr_or_null(slope_),
                             relu_};
        std::atomic<bool> nan{false};
        {
            nb::gil_scoped_release release;
            const Scratch<uint8_t> codes(static_cast<size_t>(n * s.h * s.w * c_ + int8_input_slack(c_, s.sw)), 0);
            const int64_t row = w * c_;
            parallel_for(n * h, [&](int64_t rb, int64_t re) {
                bool ok = true;
                for (int64_t r = rb; r < re; ++r) {
                    const int64_t b = r / h, y = r % h;
                    ok &= kernels_->int8_codes(xd + r * row, row, row_mul_.data(), row_add_.data(),
                                               codes.data() + ((b * s.h + y + geo_.padding[0]) * s.w + geo_.padding[2]) * c_);
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
    Geometry geo_;
    int64_t o_, c_, kh_, kw_, ostride_;
    const IsaKernels* kernels_;
    std::vector<int8_t> blocks_;
    std::vector<float> scale_, offset_, tap_offset_, row_mul_, row_add_, bias_, bn_scale_, bn_shift_, slope_;
    bool relu_;
};

}  // namespace

void bind_int8_input_conv(nb::module_& m) {
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
}

}  // namespace xnorpp::py
