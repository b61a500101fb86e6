// Python bindings of the compiled core (the module xnorpp._core): thin, GIL released around every kernel call.
// Arrays must be C-contiguous numpy arrays of the documented dtype; anything else is refused with a clear error
// (no silent copies or conversions): py_arrays.h. Here: the unit selection, threads, packing and the pools; the
// layer classes are py_binary_conv.cpp, py_float_conv.cpp and py_int8_input_conv.cpp.
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <cstring>

#include "py_arrays.h"

using namespace xnorpp;
using namespace xnorpp::py;

namespace {

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

// (N, C, H, W) float32 -> (N, H, W, C): the model's input, once per call, refused if it holds a NaN.
nb::ndarray<nb::numpy, float> to_nhwc(const InArray& x) {
    const float* data = checked<float>(x, "to_nhwc: x", {4});
    const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
    float* out;
    auto result = new_array<float>({size_t(n), size_t(h), size_t(w), size_t(c)}, &out);
    bool ok;
    {
        nb::gil_scoped_release release;
        ok = current_isa()->to_nhwc(data, n, c, h, w, out);
    }
    if (!ok) throw NaNError("input contains NaN; a NaN has no sign (the packed runtime refuses it)");
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
        current_isa()->channel_affine(data, int64_t(n), int64_t(c), ptr_or_null(m), ptr_or_null(a), ptr_or_null(sl),
                                      relu, out);
    }
    return result;
}

// Checks the arguments of a pooling call on (N, H, W, C) float32, allocates its (N, OH, OW, C) output and
// gives the window as a ConvShape (C channels in and out).
nb::ndarray<nb::numpy, float> pool_output(const InArray& x, const char* what, std::array<int64_t, 2> kernel,
                                          std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
                                          std::array<int64_t, 2> dilation, std::array<int64_t, 2> out_size,
                                          const float** xd, float** out, ConvShape* s) {
    *xd = checked<float>(x, (std::string(what) + ": x").c_str(), {4});
    const Geometry geo(what, {int64_t(x.shape(1)), int64_t(x.shape(2))}, out_size, kernel, stride, padding, dilation,
                       false);
    *s = geo.shape(x.shape(0), x.shape(3), x.shape(3), false);
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
    m.def("recycle_buffers", [](bool on) { return BufferCache::instance().set_enabled(on); }, nb::arg("on"),
          "Whether freed output arrays keep their memory for the next ones of the same size (default True: no "
          "page faults on repeated calls, up to 256 MiB held); returns the previous setting. False frees them.");
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
    bind_binary_conv(m);
    bind_float_conv(m);
    bind_int8_input_conv(m);
    m.def("avg_pool2d", &avg_pool2d, nb::arg("x"), nb::arg("kernel"), nb::arg("stride"), nb::arg("padding"),
          nb::arg("out_size"), nb::arg("count_include_pad"),
          "Average pooling of (N, H, W, C) float32 to out_size with PyTorch's windows and divisors; padding is "
          "(top, bottom, left, right).");
    m.def("max_pool2d", &max_pool2d, nb::arg("x"), nb::arg("kernel"), nb::arg("stride"), nb::arg("padding"),
          nb::arg("dilation"), nb::arg("out_size"),
          "Max pooling of (N, H, W, C) float32 to out_size (the caller applies ceil_mode); padding is (top, bottom, "
          "left, right).");
}
