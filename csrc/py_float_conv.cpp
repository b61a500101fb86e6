// The real (float32) convolution layer of the bindings (FloatConv).
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "py_arrays.h"

namespace xnorpp::py {
namespace {

// A real (float32) convolution, groups 1, on NHWC arrays, with its epilogue fused: bias, a
// folded batch norm (scale, shift) and PReLU (slope) or ReLU.
class FloatConv {
public:
    FloatConv(const InArray& weight, std::array<int64_t, 2> in_size, std::array<int64_t, 2> out_size,
              std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
              int64_t groups, const std::optional<InArray>& bias, const std::optional<InArray>& scale,
              const std::optional<InArray>& shift, const std::optional<InArray>& slope, bool relu,
              const std::optional<std::string>& isa)
        : relu_(relu) {
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
        geo_ = Geometry("FloatConv", in_size, out_size, {kh_, kw_}, stride, padding, dilation, true);
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
        const int64_t h = x.shape(1), w = x.shape(2);
        geo_.check_input("FloatConv.forward", h, w);
        ConvShape s = geo_.shape(x.shape(0), c_, o_, true);
        s.groups = groups_;
        float* out;
        auto result = new_array<float>({size_t(s.n), size_t(s.oh), size_t(s.ow), size_t(o_)}, &out);
        FloatStage st{ptr_or_null(bias_), ptr_or_null(scale_), ptr_or_null(shift_), ptr_or_null(slope_), relu_};
        {
            nb::gil_scoped_release release;
            std::optional<Scratch<float>> padded;
            const float* input = xd;
            if (s.h != h || s.w != w) {  // zero padding, materialized once (cheap next to the convolution)
                padded.emplace(static_cast<size_t>(s.n * s.h * s.w * c_), 0.0f);
                for (int64_t n = 0; n < s.n; ++n)
                    for (int64_t y = 0; y < h; ++y)
                        std::copy(xd + ((n * h + y) * w) * c_, xd + ((n * h + y + 1) * w) * c_,
                                  padded->data() + ((n * s.h + y + geo_.padding[0]) * s.w + geo_.padding[2]) * c_);
                input = padded->data();
            }
            (depthwise_ ? kernels_->float_depthwise : kernels_->float_conv)(s, input, blocks_.data(), st, out);
        }
        return result;
    }

    std::string isa() const { return kernels_->name; }

private:
    Geometry geo_;
    int64_t o_, c_, kh_, kw_, groups_;
    const IsaKernels* kernels_;
    std::vector<float> blocks_, bias_, scale_, shift_, slope_;
    bool relu_, depthwise_;
};

}  // namespace

void bind_float_conv(nb::module_& m) {
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
}

}  // namespace xnorpp::py
