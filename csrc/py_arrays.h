// What the Python bindings share (bindings.cpp and the layer classes py_*_conv.cpp): array checks that refuse
// anything but C-contiguous numpy arrays of the documented dtype, new numpy arrays, the stage arrays' padding, and
// the layers' window geometry. No kernels here: those are the units' (core.h).
#pragma once
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core.h"
#include "dispatch.h"

namespace xnorpp::py {

namespace nb = nanobind;
using InArray = nb::ndarray<nb::ro>;

// A NaN reached the packer (a NaN has no sign): its own Python type, _core.NaNError (a ValueError), so
// callers can tell it from a bad argument.
struct NaNError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

inline const char* dtype_name(nb::dlpack::dtype dt) {
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
inline const char* expected_name() {
    if constexpr (std::is_same_v<T, float>) return "float32";
    if constexpr (std::is_same_v<T, uint32_t>) return "uint32";
    if constexpr (std::is_same_v<T, int8_t>) return "int8";
    return "?";
}

// Checks dtype, dimensions and C-contiguity; returns the data pointer.
template <class T>
inline const T* checked(const InArray& a, const char* what, std::initializer_list<size_t> ndims) {
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

// The output arrays' memory, recycled. A model allocates the same sizes on every call, and a fresh large block
// costs a page fault per 4 KiB page on first touch (glibc may unmap large blocks on free and map them anew):
// with a PyTorch model run between binary ResNet-18 calls, 948 faults per call, ~1.8 ms of ~10 (Intel Xeon,
// 1 thread). Freed blocks wait here, found most recent first, up to kCapBytes in all; the oldest go back beyond.
class BufferCache {
public:
    static constexpr size_t kCapBytes = size_t(256) << 20;
    static constexpr size_t kMaxBlocks = 256;

    static BufferCache& instance() {
        static BufferCache* cache = new BufferCache;  // never destroyed: arrays may be freed after static teardown
        return *cache;
    }

    // A block of `bytes`, 64-byte aligned (a cache line, an AVX-512 vector): a recycled one of that size if any.
    void* take(size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (size_t i = blocks_.size(); i-- > 0;) {
                if (blocks_[i].bytes == bytes) {
                    void* p = blocks_[i].data;
                    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
                    cached_ -= bytes;
                    return p;
                }
            }
        }
        return ::operator new(bytes, kAlign);
    }

    void give(void* p, size_t bytes) noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!enabled_ || bytes > kCapBytes) return ::operator delete(p, kAlign);
        while (!blocks_.empty() && (cached_ + bytes > kCapBytes || blocks_.size() == kMaxBlocks)) {
            ::operator delete(blocks_.front().data, kAlign);  // the oldest makes room
            cached_ -= blocks_.front().bytes;
            blocks_.erase(blocks_.begin());
        }
        blocks_.push_back({p, bytes});  // never allocates: reserved
        cached_ += bytes;
    }

    // Off: every block is fresh and goes back at once (the cached ones too). Returns the previous setting.
    bool set_enabled(bool enabled) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const Block& b : blocks_) ::operator delete(b.data, kAlign);
        blocks_.clear();
        cached_ = 0;
        return std::exchange(enabled_, enabled);
    }

private:
    struct Block {
        void* data;
        size_t bytes;
    };
    static constexpr std::align_val_t kAlign{64};
    BufferCache() { blocks_.reserve(kMaxBlocks); }  // push_back never allocates (give is noexcept)
    std::mutex mutex_;
    std::vector<Block> blocks_;  // oldest first
    size_t cached_ = 0;
    bool enabled_ = true;
};

template <class T>
inline nb::ndarray<nb::numpy, T> new_array(const std::vector<size_t>& shape, T** data) {
    size_t n = 1;
    for (size_t s : shape) n *= s;
    // Every kernel writes all of it (packed words are assigned), so a recycled block needs no clearing. The
    // block's size rides in a header in front of the data, for the capsule's deleter.
    constexpr size_t kHeader = 64;
    const size_t bytes = kHeader + sizeof(T) * (n > 0 ? n : 1);
    auto* block = static_cast<unsigned char*>(BufferCache::instance().take(bytes));
    *reinterpret_cast<size_t*>(block) = bytes;
    T* buf = reinterpret_cast<T*>(block + kHeader);
    nb::capsule owner(block, [](void* p) noexcept { BufferCache::instance().give(p, *static_cast<size_t*>(p)); });
    *data = buf;
    return nb::ndarray<nb::numpy, T>(buf, shape.size(), shape.data(), owner);
}

// A kernel call's temporary array (a zero-padded copy of its input), filled with `fill`; its block is recycled
// like the outputs'.
template <class T>
class Scratch {
public:
    Scratch(size_t n, T fill)
        : bytes_(sizeof(T) * std::max<size_t>(n, 1)), data_(static_cast<T*>(BufferCache::instance().take(bytes_))) {
        std::fill_n(data_, n, fill);
    }
    ~Scratch() { BufferCache::instance().give(data_, bytes_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    T* data() const { return data_; }

private:
    size_t bytes_;
    T* data_;
};

// A copy of an optional float array of `size` values, zero padded to `padded` (0: no padding).
inline std::vector<float> optional_vector(const std::optional<InArray>& a, const char* what, size_t size,
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

inline const float* ptr_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// rows x n floats, each row zero padded to `stride` (the stage arrays' per-channel length).
inline std::vector<float> padded_rows(const float* p, int64_t rows, int64_t n, int64_t stride) {
    std::vector<float> v(static_cast<size_t>(rows * stride), 0.0f);
    for (int64_t i = 0; i < rows; ++i) std::copy(p + i * n, p + (i + 1) * n, v.begin() + i * stride);
    return v;
}

// The bound on every size (xnorpp.packed.geometry.MAX_DIM): keeps size products far from int64 overflow.
constexpr int64_t kMaxGeometry = int64_t(1) << 24;

// A layer's window geometry as the caller computed it (xnorpp.packed.schema validates and computes it): sizes
// (height, width), padding (top, bottom, left, right). Checked once more here, at construction, so that a wrong
// size can never read out of bounds: every value in range and, for a convolution, every window inside the padded
// input (a pooling window may pass it with ceil_mode: the pooling kernels skip the taps outside the image).
struct Geometry {
    std::array<int64_t, 2> in{}, out{}, kernel{}, stride{}, dilation{};
    std::array<int64_t, 4> padding{};

    Geometry() = default;
    Geometry(const char* what, std::array<int64_t, 2> in_size, std::array<int64_t, 2> out_size,
             std::array<int64_t, 2> kernel_size, std::array<int64_t, 2> stride_, std::array<int64_t, 4> padding_,
             std::array<int64_t, 2> dilation_, bool windows_inside)
        : in(in_size), out(out_size), kernel(kernel_size), stride(stride_), dilation(dilation_), padding(padding_) {
        for (auto v : {stride[0], stride[1], dilation[0], dilation[1], in[0], in[1], out[0], out[1]})
            if (v < 1 || v > kMaxGeometry)
                throw std::invalid_argument(std::string(what) + ": sizes, stride and dilation must be in [1, 2^24]");
        for (auto v : kernel)
            if (v < 1 || v > kMaxGeometry) throw std::invalid_argument(std::string(what) + ": kernel must be in [1, 2^24]");
        for (auto p : padding)
            if (p < 0 || p > kMaxGeometry) throw std::invalid_argument(std::string(what) + ": padding must be in [0, 2^24]");
        const int64_t pad[2] = {padding[0] + padding[1], padding[2] + padding[3]};
        for (int i = 0; windows_inside && i < 2; ++i)
            if ((out[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 > in[i] + pad[i])
                throw std::invalid_argument(std::string(what) + ": output " + std::to_string(out[0]) + "x" +
                                            std::to_string(out[1]) + " does not fit input " + std::to_string(in[0]) +
                                            "x" + std::to_string(in[1]) +
                                            " with this kernel, stride, padding and dilation");
    }

    // The kernels' shape for a batch of n with c input and o output channels. The input as the kernel reads it:
    // the image with the padding as offsets (binary conv, pools), or already padded (float and int8 convs).
    ConvShape shape(int64_t n, int64_t c, int64_t o, bool padded_input) const {
        ConvShape s;
        s.n = n, s.c = c, s.o = o;
        s.kh = kernel[0], s.kw = kernel[1];
        s.sh = stride[0], s.sw = stride[1];
        s.dh = dilation[0], s.dw = dilation[1];
        s.oh = out[0], s.ow = out[1];
        s.h = padded_input ? in[0] + padding[0] + padding[1] : in[0];
        s.w = padded_input ? in[1] + padding[2] + padding[3] : in[1];
        s.pt = padded_input ? 0 : padding[0];
        s.pl = padded_input ? 0 : padding[2];
        return s;
    }

    // Refuses an input of another size than the layer was built for.
    void check_input(const char* what, int64_t h, int64_t w) const {
        if (h != in[0] || w != in[1])
            throw std::invalid_argument(std::string(what) + ": input " + std::to_string(h) + "x" + std::to_string(w) +
                                        ", this layer was built for " + std::to_string(in[0]) + "x" +
                                        std::to_string(in[1]));
    }
};

// The unit a layer runs on: the current one, or the one named (an error if this CPU lacks it).
inline const IsaKernels* kernels_for(const char* what, const std::optional<std::string>& isa) {
    if (!isa) return current_isa();
    const IsaKernels* k = isa_by_name(*isa);
    if (!isa_supported(*isa))
        throw std::runtime_error(std::string(what) + ": instruction set '" + *isa + "' is not supported by this CPU");
    return k;
}


// Each layer class registers itself (py_binary_conv.cpp, py_float_conv.cpp, py_int8_input_conv.cpp).
void bind_binary_conv(nb::module_& m);
void bind_float_conv(nb::module_& m);
void bind_int8_input_conv(nb::module_& m);

}  // namespace xnorpp::py
