// The AVX-512 VPOPCNTDQ unit's kernels, included inside a unit's namespace after it defined kIsaName:
// by isa_avx512.cpp, and by isa_amx.cpp, which runs the same kernels but for its tile convolutions.
// 32 output channels (two zmm of 32-bit lanes) x 12 pixels per register tile; activation words are
// broadcast, so no horizontal reductions are needed. Needs immintrin.h (or SIMDe's aliases) first.
constexpr int L = 32, P = 12;
constexpr WeightLayout kWeightLayout = WeightLayout::Words;
constexpr int kCodeBias = 0;  // dot4 multiplies the codes as unsigned bytes

template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    __m512i acc0[NP], acc1[NP];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) acc0[p] = acc1[p] = _mm512_setzero_si512();
    for (int64_t t = 0; t < taps; ++t) {
        const uint32_t* a[NP];
#pragma GCC unroll 16
        for (int p = 0; p < NP; ++p) a[p] = ind[p * taps + t] + goff;
        const uint32_t* w = wb + t * cw * L;
        for (int64_t k = 0; k < cw; ++k, w += L) {
            const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 16);
#pragma GCC unroll 16
            for (int p = 0; p < NP; ++p) {
                const __m512i b = _mm512_set1_epi32(static_cast<int>(a[p][k]));
                acc0[p] = _mm512_add_epi32(acc0[p], _mm512_popcnt_epi32(_mm512_xor_si512(b, w0)));
                acc1[p] = _mm512_add_epi32(acc1[p], _mm512_popcnt_epi32(_mm512_xor_si512(b, w1)));
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
        _mm512_storeu_si512(pc + p * L, acc0[p]);
        _mm512_storeu_si512(pc + p * L + 16, acc1[p]);
    }
}

static inline __mmask16 head_mask(int count) {
    return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
}

static inline bool pack_word(const float* x, int count, const float* mul, const float* add, uint32_t& word) {
    const __mmask16 m0 = head_mask(count), m1 = count > 16 ? head_mask(count - 16) : 0;
    __m512 v0 = _mm512_maskz_loadu_ps(m0, x), v1 = _mm512_maskz_loadu_ps(m1, x + 16);
    if (mul) {
        v0 = _mm512_mul_ps(v0, _mm512_maskz_loadu_ps(m0, mul));
        v1 = _mm512_mul_ps(v1, _mm512_maskz_loadu_ps(m1, mul + 16));
    }
    if (add) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, add));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, add + 16));
    }
    const __m512 zero = _mm512_setzero_ps();
    const uint32_t neg = static_cast<uint32_t>(_mm512_mask_cmp_ps_mask(m0, v0, zero, _CMP_LT_OQ)) |
                         static_cast<uint32_t>(_mm512_mask_cmp_ps_mask(m1, v1, zero, _CMP_LT_OQ)) << 16;
    const uint32_t nan = static_cast<uint32_t>(_mm512_mask_cmp_ps_mask(m0, v0, v0, _CMP_UNORD_Q)) |
                         static_cast<uint32_t>(_mm512_mask_cmp_ps_mask(m1, v1, v1, _CMP_UNORD_Q));
    word = neg;
    return nan != 0;
}

static inline uint32_t lanes_to_bits(const float* z, int n) {
    uint32_t bits = 0;
    pack_word(z, n, nullptr, nullptr, bits);
    return bits;
}

// Unrolling 2-4 words per tap made GCC spill zmm accumulators at 12 pixels: only 1.
constexpr int kUnrolledWords = 1;
#define VBYTES 64
#include "kernels_impl.h"
#undef VBYTES

// AVX512-VNNI: 64 u8 x s8 products summed into 16 int32 lanes in one instruction.
static inline vint dot4(vint acc, vint a, vint w) {
    return (vint)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)a, (__m512i)w);
}

static inline uint32_t negative_lanes(vfloat v) {
    return _mm512_cmp_ps_mask((__m512)v, _mm512_setzero_ps(), _CMP_LT_OQ);
}
