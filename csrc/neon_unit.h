// The NEON unit's kernels (AArch64 Advanced SIMD, baseline ARMv8.0: Cortex-A53 and A72, Raspberry Pi 3 and
// 4), included inside a unit's namespace after it defined kIsaName: by isa_neon.cpp, and by
// isa_neon_dotprod.cpp, which is the same unit with the int8 input layer on SDOT (ARMv8.2 dotprod).
//
// Binary convolution: 32 output channels (8 q registers of 4 channel words) x 2 pixels per pass, the
// activation word broadcast (ld1r), so per 16 bytes of weights one eor, one cnt and one byte add: 128
// binary MACs per 3 NEON instructions, the density of Larq Compute Engine's 8x4x2 block (benchmarks/README.md,
// "ARM64 on paper"). The byte counts (at most 8 per word) are widened into 32-bit sums every 31 words,
// before a byte could pass 255, so any K is exact.
// The int8 input layer: the codes minus 128 as signed bytes (kCodeBias), so that signed multiplies apply:
// smull + addp + sadalp (16 products in 4 instructions), or one sdot; kernels_impl.h adds 128 · Σw back.
// Needs arm_neon.h first.
constexpr int L = 32, P = 4;
constexpr WeightLayout kWeightLayout = WeightLayout::Words;
constexpr int kCodeBias = 128;

// Popcount sums of NP (1 or 2) pixels x L channels: pc[p * L + l].
template <int NP, int CW>
static inline void popcount_pass(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                                 const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    constexpr int kWordsPerFlush = 31;            // 31 x 8 = 248: a byte count stays below 256
    uint8x16_t acc[NP][8];
    // The 32-bit sums, touched once every 31 words, live in memory: the registers hold the byte counts.
    alignas(16) uint32_t wide[NP][L] = {};
    auto flush = [&] {
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                uint32_t* at = wide[p] + 4 * j;
                vst1q_u32(at, vpadalq_u16(vld1q_u32(at), vpaddlq_u8(acc[p][j])));
                acc[p][j] = vdupq_n_u8(0);
            }
    };
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[p][j] = vdupq_n_u8(0);
    int filled = 0;
    for (int64_t t = 0; t < taps; ++t) {
        const uint32_t* a[NP];
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) a[p] = ind[p * taps + t] + goff;
        const uint32_t* w = wb + t * cw * L;
        // The activation words broadcast a word ahead of their use, so that the load and dup of the next word
        // overlap this word's eor, cnt and add (llvm-mca: Apple M1 22 -> 16.7 cycles per word, others equal).
        uint8x16_t b[NP];
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) b[p] = vreinterpretq_u8_u32(vld1q_dup_u32(a[p]));
        for (int64_t k = 0; k < cw; ++k, w += L) {
            uint8x16_t wv[8], next[NP];
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) wv[j] = vreinterpretq_u8_u32(vld1q_u32(w + 4 * j));
            const int64_t ahead = k + 1 < cw ? k + 1 : k;  // (the last word again, never past the pixel)
#pragma GCC unroll 2
            for (int p = 0; p < NP; ++p) next[p] = vreinterpretq_u8_u32(vld1q_dup_u32(a[p] + ahead));
#pragma GCC unroll 2
            for (int p = 0; p < NP; ++p) {
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) acc[p][j] = vaddq_u8(acc[p][j], vcntq_u8(veorq_u8(b[p], wv[j])));
                b[p] = next[p];
            }
            if (++filled == kWordsPerFlush) {
                filled = 0;
                flush();
            }
        }
    }
    flush();
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p)
        for (int l = 0; l < L; ++l) pc[p * L + l] = static_cast<int32_t>(wide[p][l]);
}

// A tile of NP <= 4 pixels as passes of 2 (16 byte accumulators + 8 weight registers of the 32).
template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    if constexpr (NP <= 2) {
        popcount_pass<NP, CW>(ind, taps, cw_runtime, goff, wb, pc);
    } else {
        popcount_pass<2, CW>(ind, taps, cw_runtime, goff, wb, pc);
        popcount_pass<NP - 2, CW>(ind + 2 * taps, taps, cw_runtime, goff, wb, pc + 2 * L);
    }
}

// Bit i of the result = lane i of the mask (lanes all-ones or zero), for the 4 lanes of a vector.
static inline uint32_t mask_bits(uint32x4_t mask) {
    static const uint32_t kLaneBits[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(mask, vld1q_u32(kLaneBits)));
}

static inline bool pack_word(const float* x, int count, const float* mul, const float* add, uint32_t& word) {
    if (count != 32) return pack_word_scalar(x, count, mul, add, word);
    uint32_t neg = 0;
    uint32x4_t ordered = vdupq_n_u32(~0u);
    for (int j = 0; j < 8; ++j) {
        float32x4_t v = vld1q_f32(x + 4 * j);
        if (mul) v = vmulq_f32(v, vld1q_f32(mul + 4 * j));
        if (add) v = vaddq_f32(v, vld1q_f32(add + 4 * j));
        neg |= mask_bits(vcltzq_f32(v)) << (4 * j);  // -0 and NaN are not < 0: as the scalar pack
        ordered = vandq_u32(ordered, vceqq_f32(v, v));
    }
    word = neg;
    return vminvq_u32(ordered) == 0;
}

static inline uint32_t lanes_to_bits(const float* z, int n) {  // z holds 32 readable lanes, n <= 32 valid
    uint32_t bits = 0;
    for (int j = 0; j < 8; ++j) bits |= mask_bits(vcltzq_f32(vld1q_f32(z + 4 * j))) << (4 * j);
    return n >= 32 ? bits : bits & ((1u << n) - 1u);
}

// Unrolling up to 2 words per tap keeps the 24 accumulator and weight registers without spills.
constexpr int kUnrolledWords = 2;
#define VBYTES 16
#include "kernels_impl.h"
#undef VBYTES

// Per 32-bit lane: acc + the sum of its 4 products (code - 128) x weight, the codes as signed bytes.
static inline vint dot4(vint acc, vint a, vint w) {
    const int8x16_t codes = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_s32((int32x4_t)a), vdupq_n_u8(0x80)));
    const int8x16_t weights = vreinterpretq_s8_s32((int32x4_t)w);
#if defined(XNORPP_NEON_DOTPROD)
    return (vint)vdotq_s32((int32x4_t)acc, codes, weights);
#else
    // |product| <= 128 x 64, so a pair of them fits 16 bits: the pairs (addp), then the pairs of pairs (sadalp).
    const int16x8_t lo = vmull_s8(vget_low_s8(codes), vget_low_s8(weights));
    const int16x8_t hi = vmull_high_s8(codes, weights);
    return (vint)vpadalq_s16((int32x4_t)acc, vpaddq_s16(lo, hi));
#endif
}

static inline uint32_t negative_lanes(vfloat v) { return mask_bits(vcltzq_f32((float32x4_t)v)); }
