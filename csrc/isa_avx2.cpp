// AVX2 kernels: 64 output channels (one channel per byte, two ymm) x 4 pixels per register tile.
//
// AVX2 has no vector popcount. Instead of counting the bits of (activation xor weight) with a
// nibble lookup (xor, and, shift, and, 2 vpshufb, 2 adds: 8 vector ops per 256 bit-MACs), the
// activation selects the lookup table: for an activation nibble a, T_a[w] = popcount(a xor w) for
// the 16 weight nibbles w, and one vpshufb of T_a by 32 weight nibbles (one output channel per
// byte, weights pre-split by prepare_weights, WeightLayout::Nibbles) gives 32 channels x 4 bits.
// Per activation byte and 64 channels: 2 table loads (the low and high nibble tables of that byte,
// kNibbleTables), 4 vpshufb, 4 byte adds = 512 bit-MACs for 8 vector ops, twice the nibble LUT.
// Byte counts are widened to 16 bits every 7 words (28 bytes x at most 8 < 256) and to 32 bits at
// the end (or every 128 widenings, before a 16-bit count could overflow).
// Built with -mavx2 -mfma -mpopcnt (csrc/units.def).
#include "core.h"

#include <immintrin.h>

namespace xnorpp {
namespace isa_avx2 {

constexpr const char* kIsaName = "avx2";
constexpr int L = 64, P = 4;
constexpr WeightLayout kWeightLayout = WeightLayout::Nibbles;
constexpr int kCodeBias = 0;  // dot4 multiplies the codes as unsigned bytes

// kNibbleTables.t[a]: for an activation byte a, 32 bytes popcount((a & 15) ^ (i & 15)) then
// 32 bytes popcount((a >> 4) ^ (i & 15)), i = 0..31 (vpshufb looks up within 16-byte halves).
struct NibbleTables {
    alignas(64) uint8_t t[256][64];
    constexpr NibbleTables() : t() {
        for (int a = 0; a < 256; ++a)
            for (int i = 0; i < 32; ++i) {
                const int lo = (a & 15) ^ (i & 15), hi = (a >> 4) ^ (i & 15);
                t[a][i] = static_cast<uint8_t>((lo & 1) + (lo >> 1 & 1) + (lo >> 2 & 1) + (lo >> 3 & 1));
                t[a][32 + i] = static_cast<uint8_t>((hi & 1) + (hi >> 1 & 1) + (hi >> 2 & 1) + (hi >> 3 & 1));
            }
    }
};
alignas(64) static constexpr NibbleTables kNibbleTables{};

template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    const uint8_t* tables = &kNibbleTables.t[0][0];
    // Register accumulators are plain arrays indexed by fully unrolled loops, never captured or
    // address-taken. The 16-bit sums, touched once every 7 words, live in memory.
    __m256i acc[NP][2];
    alignas(32) int16_t s16[NP][2][2][16] = {};  // [pixel][32-channel half][16-channel quarter]
    alignas(32) int32_t s32[NP][L] = {};
    bool wide = false;
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) acc[p][0] = acc[p][1] = _mm256_setzero_si256();
    auto widen16 = [](int16_t* sum, __m256i counts) {
        __m256i* s0 = reinterpret_cast<__m256i*>(sum);
        __m256i* s1 = reinterpret_cast<__m256i*>(sum + 16);
        _mm256_store_si256(s0, _mm256_add_epi16(_mm256_load_si256(s0), _mm256_cvtepu8_epi16(_mm256_castsi256_si128(counts))));
        _mm256_store_si256(s1, _mm256_add_epi16(_mm256_load_si256(s1), _mm256_cvtepu8_epi16(_mm256_extracti128_si256(counts, 1))));
    };
    auto widen32 = [](int32_t* sum, const int16_t* s) {  // 32 channels, then clear the 16-bit sums
        for (int q = 0; q < 4; ++q) {
            __m256i* d = reinterpret_cast<__m256i*>(sum + 8 * q);
            const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(s + 8 * q));
            _mm256_store_si256(d, _mm256_add_epi32(_mm256_load_si256(d), _mm256_cvtepu16_epi32(v)));
        }
    };
    int filled = 0, widened = 0;
    const uint8_t* w = reinterpret_cast<const uint8_t*>(wb);
    for (int64_t t = 0; t < taps; ++t) {
        const uint8_t* a[NP];
#pragma GCC unroll 16
        for (int p = 0; p < NP; ++p) a[p] = reinterpret_cast<const uint8_t*>(ind[p * taps + t] + goff);
        for (int64_t k = 0; k < cw; ++k) {
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j, w += 128) {
                const __m256i wl0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
                const __m256i wh0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
                const __m256i wl1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64));
                const __m256i wh1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 96));
#pragma GCC unroll 16
                for (int p = 0; p < NP; ++p) {
                    const uint8_t* e = tables + (static_cast<size_t>(a[p][4 * k + j]) << 6);
                    const __m256i tl = _mm256_load_si256(reinterpret_cast<const __m256i*>(e));
                    const __m256i th = _mm256_load_si256(reinterpret_cast<const __m256i*>(e + 32));
                    acc[p][0] = _mm256_add_epi8(acc[p][0], _mm256_add_epi8(_mm256_shuffle_epi8(tl, wl0),
                                                                           _mm256_shuffle_epi8(th, wh0)));
                    acc[p][1] = _mm256_add_epi8(acc[p][1], _mm256_add_epi8(_mm256_shuffle_epi8(tl, wl1),
                                                                           _mm256_shuffle_epi8(th, wh1)));
                    // Keep each step's sum in its register: without this GCC reassociated the byte
                    // adds of the unrolled steps into one tree and spilled every shuffle result.
                    asm("" : "+x"(acc[p][0]), "+x"(acc[p][1]));
                }
            }
            if (++filled == 7) {  // widen the byte counts before they can overflow
                filled = 0;
#pragma GCC unroll 16
                for (int p = 0; p < NP; ++p) {
                    widen16(s16[p][0][0], acc[p][0]);
                    widen16(s16[p][1][0], acc[p][1]);
                    acc[p][0] = acc[p][1] = _mm256_setzero_si256();
                }
                if (++widened == 128) {  // 128 x 224 < 2^15: move the 16-bit sums on
                    widened = 0;
                    wide = true;
                    for (int p = 0; p < NP; ++p) {
                        widen32(s32[p], s16[p][0][0]);
                        widen32(s32[p] + 32, s16[p][1][0]);
                    }
                    std::fill(&s16[0][0][0][0], &s16[0][0][0][0] + NP * 64, int16_t(0));
                }
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
        widen16(s16[p][0][0], acc[p][0]);
        widen16(s16[p][1][0], acc[p][1]);
        if (wide) {
            widen32(s32[p], s16[p][0][0]);
            widen32(s32[p] + 32, s16[p][1][0]);
            std::copy(s32[p], s32[p] + L, pc + p * L);
        } else {
            for (int q = 0; q < 8; ++q)
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(pc + p * L + 8 * q),
                                    _mm256_cvtepu16_epi32(_mm_load_si128(
                                        reinterpret_cast<const __m128i*>(&s16[p][0][0][0] + 8 * q))));
        }
    }
}

static inline bool pack_word(const float* x, int count, const float* mul, const float* add, uint32_t& word) {
    if (count != 32) return pack_word_scalar(x, count, mul, add, word);
    uint32_t neg = 0, nan = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
        __m256 v = _mm256_loadu_ps(x + 8 * j);
        if (mul) v = _mm256_mul_ps(v, _mm256_loadu_ps(mul + 8 * j));
        if (add) v = _mm256_add_ps(v, _mm256_loadu_ps(add + 8 * j));
        neg |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ))) << (8 * j);
        nan |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    word = neg;
    return nan != 0;
}

static inline uint32_t lanes_to_bits(const float* z, int n) {  // z holds 32 readable lanes, n <= 32 valid
    const __m256 zero = _mm256_setzero_ps();
    uint32_t bits = 0;
    for (int j = 0; j < 4; ++j)
        bits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z + 8 * j), zero, _CMP_LT_OQ)))
                << (8 * j);
    return n >= 32 ? bits : bits & ((1u << n) - 1u);
}

// Words per tap unrolled at compile time (helps the 2-word layers of ResNet's first stage).
constexpr int kUnrolledWords = 4;
#define VBYTES 32
#include "kernels_impl.h"
#undef VBYTES

// u8 x s8 byte pairs summed to int16 (saturating, but the int8 layer's pairs stay below 2^15), then pairs of
// those to int32: 32 products in two instructions.
static inline vint dot4(vint acc, vint a, vint w) {
    return acc + (vint)_mm256_madd_epi16(_mm256_maddubs_epi16((__m256i)a, (__m256i)w), _mm256_set1_epi16(1));
}

static inline uint32_t negative_lanes(vfloat v) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps((__m256)v, _mm256_setzero_ps(), _CMP_LT_OQ)));
}

}  // namespace isa_avx2

const IsaKernels* kernels_avx2() { return &isa_avx2::kTable; }

}  // namespace xnorpp
