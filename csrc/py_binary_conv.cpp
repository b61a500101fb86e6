// The binary convolution layer of the bindings (BinaryConv): a binary conv or GEMM with its weights prepared
// for one unit and its folded output stage.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "py_arrays.h"

namespace xnorpp::py {
namespace {

// What BinaryConv.forward returns (_core.Output).
enum class Output { Float, Int32, Packed, FloatAndBits };

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
        geo_ = Geometry("BinaryConv", in_size, out_size, {kh_, kw_}, stride, padding, dilation, true);
        if (pad_value == 0.0) pad_ = PadMode::Zero;
        else if (pad_value == 1.0) pad_ = PadMode::PlusOne;
        else if (pad_value == -1.0) pad_ = PadMode::MinusOne;
        else throw std::invalid_argument("BinaryConv: pad_value must be 0, 1 or -1");
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

    nb::object forward(const InArray& x, const std::optional<InArray>& kmap, Output out,
                       const std::optional<InArray>& residual) {
        const uint32_t* xd = checked<uint32_t>(x, "BinaryConv.forward: x", {2, 4});
        geo_.check_input("BinaryConv.forward", x.ndim() == 4 ? x.shape(1) : 1, x.ndim() == 4 ? x.shape(2) : 1);
        ConvShape s = geo_.shape(x.shape(0), c_, o_, false);
        s.groups = groups_;
        s.pad = pad_;
        s.ostride = padded_channels(o_);
        const int64_t words = int64_t(x.shape(x.ndim() - 1));
        if (words != s.pixel_words())
            throw std::invalid_argument("BinaryConv.forward: x has " + std::to_string(words) +
                                        " words per pixel, expected " + std::to_string(s.pixel_words()) + " (" +
                                        std::to_string(c_) + " channels in " + std::to_string(groups_) +
                                        " groups)");
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
        const bool float_out = out == Output::Float || out == Output::FloatAndBits;
        if (residual) {
            if (!float_out) throw std::invalid_argument("BinaryConv.forward: a residual needs a float output");
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
            if (out == Output::FloatAndBits) {  // (float output, its bits after post_mul/post_add)
                if (groups_ != 1) throw std::invalid_argument("BinaryConv.forward: packed output needs groups == 1");
                result = nb::make_tuple(result, nb::cast(new_array<uint32_t>(shape_for(size_t(words_for(o_))), &st.bits)));
            }
        } else if (out == Output::Int32) {
            st.mode = OutMode::Int32;
            int32_t* p;
            result = nb::cast(new_array<int32_t>(shape_for(size_t(o_)), &p));
            st.out = p;
        } else {
            if (groups_ != 1) throw std::invalid_argument("BinaryConv.forward: packed output needs groups == 1");
            st.mode = OutMode::Packed;
            uint32_t* p;
            result = nb::cast(new_array<uint32_t>(shape_for(size_t(words_for(o_))), &p));
            st.out = p;
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
    Geometry geo_;
    PadMode pad_;
    const IsaKernels* kernels_;
    PreparedWeights prepared_;
    std::vector<float> scale_, scale_map_, scale_rows_, scale_pos_, bias_, slope_, post_mul_, post_add_;
};

}  // namespace

void bind_binary_conv(nb::module_& m) {
    nb::enum_<Output>(m, "Output", "What BinaryConv.forward returns.")
        .value("float", Output::Float, "the float32 output (N, ..., O)")
        .value("int32", Output::Int32, "the raw dot products, int32")
        .value("packed", Output::Packed, "the output's signs after post_mul, post_add, packed to uint32 words")
        .value("float_and_bits", Output::FloatAndBits,
               "a tuple: the float output and, beside it, its bits as packed gives them (for a binary layer that "
               "reads it)");
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
        .def("forward", &BinaryConv::forward, nb::arg("x"), nb::arg("kmap") = nb::none(),
             nb::arg("out") = Output::Float, nb::arg("residual") = nb::none(),
             "Run on packed input (N,H,W,words) or (N,words); out: an Output (float, int32, packed, float_and_bits). "
             "residual (float outputs only): a float32 array of the output's shape added last (a fused residual "
             "add).")
        .def_prop_ro("isa", &BinaryConv::isa)
        .def_prop_ro("out_channels", &BinaryConv::out_channels)
        .def_prop_ro("in_channels", &BinaryConv::in_channels)
        .def_prop_ro("groups", &BinaryConv::groups);
}

}  // namespace xnorpp::py
