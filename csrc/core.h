// Shared declarations of the compiled core: shapes, the fused output stage, the
// per-instruction-set kernel table and the thread pool.
//
// Packed layout (docs/design.md, Conventions): activations NHWC, the channels of each group
// packed LSB-first into 32-bit words (bit 1 <=> x < 0, sign(0) = +1), unused
// bits 0. A pixel holds groups * words_per_group words. Weights are packed the
// same way per output channel and tap: [O][KH][KW][words_per_group].
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <utility>
#include <vector>

namespace xnorpp {

// Memory aligned to cache lines (64 bytes): AMX tile rows and AVX-512 vectors load at full speed only from
// lines they do not straddle.
template <class T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
    bool operator==(const CacheLineAllocator&) const { return true; }
    bool operator!=(const CacheLineAllocator&) const { return false; }
};

enum class PadMode : int { Zero = 0, PlusOne = 1, MinusOne = 2 };
enum class OutMode : int { Float = 0, Int32 = 1, Packed = 2 };

inline int64_t words_for(int64_t bits) { return (bits + 31) / 32; }
inline int64_t padded_channels(int64_t o) { return words_for(o) * 32; }

struct ConvShape {
    int64_t n = 1, h = 1, w = 1, c = 1;  // input (NHWC)
    int64_t o = 1, kh = 1, kw = 1;        // output channels, kernel
    int64_t sh = 1, sw = 1, dh = 1, dw = 1;
    int64_t pt = 0, pl = 0;               // top / left padding (bottom / right are implied by oh, ow)
    int64_t groups = 1, oh = 1, ow = 1;
    int64_t ostride = 0;  // length of the per-channel stage arrays and tapsum rows: o rounded up to 32
    PadMode pad = PadMode::Zero;

    int64_t cg() const { return c / groups; }
    int64_t og() const { return o / groups; }
    int64_t cw() const { return words_for(cg()); }         // words per group and pixel
    int64_t pixel_words() const { return groups * cw(); }  // words per input pixel
    int64_t taps() const { return kh * kw; }
};

// y = dot * scale + bias, then PReLU, then (for packed output) z = y*post_mul + post_add, bit = z < 0,
// or (for float output) y + residual.
// scale = scale_map[p, o] if given, else scale_rows[y, o] * scale_pos[p] if given, else scale_o[o] (or 1)
// times kmap[n, p] (or 1); p = (y, x) is the output position.
// Per-channel arrays hold ConvShape::ostride values (zero padded) so the lane loops run full width.
struct Stage {
    const float* scale_o = nullptr;     // [ostride]
    const float* scale_map = nullptr;   // [OH*OW, ostride] (a full Γ)
    const float* scale_rows = nullptr;  // [OH, ostride]: a factored Γ, all factors but the last multiplied
    const float* scale_pos = nullptr;   // [OH*OW]: ... and its last factor, over (h, w) or w only
    const float* kmap = nullptr;        // [N*OH*OW]  (XNOR-Net's K, per input)
    const float* bias = nullptr;        // [ostride]
    const float* slope = nullptr;       // [ostride] PReLU
    const float* post_mul = nullptr;    // [ostride] affine before packing the output
    const float* post_add = nullptr;    // [ostride]
    const float* residual = nullptr;    // [N*OH*OW, O], added last (float output): a fused residual add
    OutMode mode = OutMode::Float;
    void* out = nullptr;  // float/int32 [N*OH*OW, O] or uint32 [N*OH*OW, words_for(O)]
    // Float output only (groups 1): the output's bits as well, sign(out·post_mul + post_add), for a
    // binary layer that reads them: what packing the float output with that affine gives. [N*OH*OW, words_for(O)]
    uint32_t* bits = nullptr;
};

// The real (float) convolution's fused epilogue: y = acc + bias, y = y*scale + shift (a folded
// batch norm), then PReLU y = max(y, 0) + min(y, 0)*slope, or ReLU y = max(y, 0). Arrays hold
// the output channels rounded up to the kernel's float_lanes, zero padded.
struct FloatStage {
    const float* bias = nullptr;
    const float* scale = nullptr;
    const float* shift = nullptr;
    const float* slope = nullptr;
    bool relu = false;  // used when slope is null
};

// The int8 input layer (runtime option, docs/design.md "The int8 input layer"): 8-bit input codes (u8)
// times weights in [-64, 64] (s8), summed exactly in int32 (|a pair of products| < 2^15, so AVX2's
// saturating u8 x s8 multiply-add is exact too), then
//   y = sum * scale + offset - (the offsets of the taps that fall on padding), then the FloatStage.
// The input is already coded and padded (s.h, s.w include the padding; the image starts at row
// pad_top, column pad_left), with int8_input_slack readable bytes past its end; padding codes are 0 and the per-tap
// offsets stand in for them.
// The kernel reads each window in place as runs of contiguous codes (Int8Runs), 4 codes at a time, so a
// run is padded to a multiple of 4 codes with zero weights (it reads up to 3 codes past a run's end).
// Weights are blocked [ceil(O / int8_lanes)][K4 / 4][int8_lanes][4] bytes, K4 = runs x padded run, in
// (ky, kx, c) order (block_int8_weights). Per-channel arrays hold ostride values.
struct Int8Stage {
    const float* scale = nullptr;       // [ostride]
    const float* offset = nullptr;      // [ostride]
    const float* tap_offset = nullptr;  // [KH*KW][ostride]
    int64_t ostride = 0, pad_top = 0, pad_left = 0, h = 0, w = 0;  // h, w: the unpadded input
    FloatStage post;
};

// Bytes past the end of the int8 layer's coded input that a unit may read: 3 past a run (the 4-code steps),
// and the AMX unit's tiles, 16 windows of a row at once, up to a row of 64 codes from each.
inline int64_t int8_input_slack(int64_t c, int64_t sw) { return 16 * sw * c + 64; }

// A window of the int8 layer as runs of contiguous codes (NHWC): one run of KW*C codes per kernel row
// when the columns are adjacent (dilation 1), else one run of C codes per tap.
struct Int8Runs {
    int64_t count, len, padded;  // runs per window, codes per run, len rounded up to 4
    Int8Runs(int64_t kh, int64_t kw, int64_t c, int64_t dw)
        : count(dw == 1 ? kh : kh * kw), len(dw == 1 ? kw * c : c), padded((len + 3) / 4 * 4) {}
    int64_t k4() const { return count * padded; }  // codes (and weights) per window as the kernel reads them
};

// How an ISA unit wants its binary weights arranged (dispatch.cpp: prepare_weights).
//   Words:  [G][blocks][taps][cw][lanes] 32-bit words (lane l = output channel l of the block).
//   Nibbles: [G][blocks][taps][cw][byte j of the word][lanes/32][low|high nibble][32] bytes: the
//            4-bit halves of every weight byte, one output channel per byte (AVX2's table-select
//            popcount, isa_avx2.cpp). Twice the size of Words.
//   SignBytes: [G][blocks][taps][AmxK::chunks][2][AmxK::kc / 4][16][4] signed bytes, +1 / -1 per weight and 0
//            past the group's channels: per tap and chunk of kc input channels, two AMX B tiles of 16
//            output channels each, 4 consecutive input channels per output channel (isa_amx.cpp). When
//            AmxK::bits, the same order as sign bits instead, one 64-bit word (bit 1 <=> -1) per tile row.
enum class WeightLayout : int { Words = 0, Nibbles = 1, SignBytes = 2 };

// How the AMX unit lays out a layer (blocks of 32 output channels): a tap's cg input channels in chunks of
// kc bytes (64, a full tile row, or the channels rounded up to 4 when fewer), cbg = chunks * kc bytes per
// group and pixel, steps = taps * chunks tile products per output tile. A deep layer (tall: at least 64
// steps, whole blocks) multiplies 4 A tiles of positions by one B tile of 16 channels, so that each B tile
// is loaded once for 64 positions; and its weights stay bits when as bytes they would pass the core's L2
// cache (they streamed from memory at every call: ResNet-18's 512-channel layers took twice as long), a
// B tile expanded to bytes while the tiles multiply the one before.
struct AmxK {
    static constexpr int64_t kMaxByteWeights = 256 << 10, kTallSteps = 64;
    int64_t kc, cbg, chunks, steps, block_bytes;  // block_bytes: weight bytes of a block as bytes
    bool tall, bits;
    AmxK(int64_t cg, int64_t og, int64_t taps, int64_t groups)
        : kc(cg >= 64 ? 64 : (cg + 3) / 4 * 4), cbg((cg + kc - 1) / kc * kc), chunks(cbg / kc),
          steps(taps * chunks), block_bytes(taps * cbg * 32), tall(og % 32 == 0 && steps >= kTallSteps),
          bits(tall && groups * (og / 32) * block_bytes > kMaxByteWeights) {}
};

// 32-bit words per block of one tap and input word (lanes output channels) in a layout.
inline int64_t weight_words_per_tap_word(WeightLayout layout, int lanes) {
    return layout == WeightLayout::Nibbles ? 2 * int64_t(lanes) : int64_t(lanes);
}

struct IsaKernels {
    const char* name;
    int lanes;  // output channels per register tile (the weight block width); a multiple of 32
    // Pack NHWC floats ([npix][c]) into words; optional per-channel affine first. Returns false on NaN.
    bool (*pack)(const float* x, int64_t npix, int64_t c, int64_t groups, const float* mul, const float* add,
                 uint32_t* out);
    // Binary convolution on packed input with weights as prepare_weights (dispatch.h) arranged them for this unit.
    void (*conv)(const ConvShape& s, const uint32_t* x, const uint32_t* wblocks, const int32_t* tapsum,
                 const Stage& st);
    int float_lanes;  // output channels per float register tile (the float weight block width)
    // Float convolution, any groups, on an input already padded (s.h, s.w include the padding;
    // s.pt = s.pl = 0) with weights blocked per group [G][ceil(O/G / float_lanes)][KH][KW][C/G][float_lanes]
    // (block_float_weights); out [N*OH*OW][O]. Stage arrays hold O + float_lanes values, zero padded.
    void (*float_conv)(const ConvShape& s, const float* x, const float* wblocks, const FloatStage& st, float* out);
    // Depthwise float convolution (groups = C = O), vectorized along the channels, same input and stage as
    // float_conv, weights [KH*KW][C rounded up to float_lanes] (block_depthwise_weights).
    void (*float_depthwise)(const ConvShape& s, const float* x, const float* w, const FloatStage& st, float* out);
    WeightLayout weight_layout;  // how prepare_weights arranges the blocks conv reads
    int int8_lanes;              // output channels per int8 register tile (the int8 weight block width)
    // The int8 input layer (Int8Stage above); out [N*OH*OW][O] float.
    void (*int8_conv)(const ConvShape& s, const uint8_t* x, const int8_t* wblocks, const Int8Stage& st, float* out);
    // Its input codes: out[i] = x[i]·mul[i] + add[i] clamped to [0, 255] and rounded half to even, for n
    // values with their own factors (a row of pixels: the per-channel factors repeated). False on NaN.
    bool (*int8_codes)(const float* x, int64_t n, const float* mul, const float* add, uint8_t* out);
    // Max pooling of NHWC floats [N][H][W][C] (s.n, h, w, c; the window: kh, kw, sh, sw, dh, dw, pt, pl) to
    // [N][OH][OW][C]; out-of-image taps are skipped, NaN propagates.
    void (*max_pool)(const ConvShape& s, const float* x, float* out);
    // Average pooling, the same layout and window (dilation 1), PyTorch's divisors: a window starts at
    // o*stride - pad and ends at min(start + kernel, size + pad_end) (pad_end: bottom, right padding);
    // count_include_pad divides by that span, otherwise by the part inside the image.
    void (*avg_pool)(const ConvShape& s, const float* x, int64_t pad_bottom, int64_t pad_right, bool count_include_pad,
                     float* out);
    // (N, C, H, W) -> (N, H, W, C) float32: a model's input, once per call. False if it holds a NaN.
    bool (*to_nhwc)(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* out);
    // Per channel of rows x c floats: y = x*mul + add (each optional, two roundings like numpy), then PReLU
    // max(y, 0) + min(y, 0)*slope or ReLU max(y, 0) (NaN kept): a real layer's batch norm and activation.
    void (*channel_affine)(const float* x, int64_t rows, int64_t c, const float* mul, const float* add,
                           const float* slope, bool relu, float* out);
};

// Every unit's kernel table (units.def): kernels_amx(), kernels_avx512(), ..., kernels_portable(). Only the units
// built for the target architecture are defined (dispatch.cpp calls no other).
#define XNORPP_UNIT(id, name, arch, source, flags, features) const IsaKernels* kernels_##id();
#include "units.def"
#undef XNORPP_UNIT

// Thread pool. Idle workers sleep on a condition variable, after spinning for spin_us()
// microseconds (0 by default, or XNORPP_SPIN_US): spinning saves the wake-up of the next region
// (tens of microseconds on a virtual machine) at the cost of a busy core.
// parallel_for splits [0, n) over the threads, but never into parts of less than ~20000 cycles of
// work (cost_per_item: estimated cycles of one item): waking a thread costs microseconds.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, double cost_per_item = 1e9);
int num_threads();
void set_num_threads(int n);
int64_t spin_us();
void set_spin_us(int64_t us);
// While held (calls nest), idle workers wait for the next region by spinning instead of sleeping.
void hold_workers(bool hold);

}  // namespace xnorpp

namespace xnorpp {

// Population count without a library call (the portable path is built without -mpopcnt).
inline uint32_t popcount32_swar(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}

// Pack up to 32 floats (optionally v = x*mul + add, two roundings like numpy) into one word.
// Returns true when a value is NaN.
inline bool pack_word_scalar(const float* x, int count, const float* mul, const float* add, uint32_t& word) {
    uint32_t bits = 0;
    bool nan = false;
    for (int i = 0; i < count; ++i) {
        float v = x[i];
        if (mul) v = v * mul[i];
        if (add) v = v + add[i];
        nan |= (v != v);
        bits |= static_cast<uint32_t>(v < 0.0f) << i;
    }
    word = bits;
    return nan;
}

}  // namespace xnorpp
