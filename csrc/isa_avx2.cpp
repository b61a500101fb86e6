// AVX2 kernels: 16 output channels (two ymm of 32-bit lanes) x 4 pixels per register tile.
// AVX2 has no vector popcount: bytes are counted with a nibble lookup (vpshufb) into 8-bit
// accumulators, widened to 32-bit lanes every 31 words (before a byte can overflow).
// Built with -mavx2 -mfma -mpopcnt (CMakeLists.txt).
#include "core.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace xnorpp {
namespace isa_avx2 {

constexpr const char* kIsaName = "avx2";
constexpr int L = 16, P = 4;

template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f), ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    // Register accumulators are plain arrays indexed by fully unrolled loops, never captured
    // or address-taken (a lambda capturing them had moved them all to the stack).
    // The byte counts live in registers (2 per pixel); the 32-bit sums, touched once every 31
    // words, live in memory so that the 16 ymm registers suffice without spills in the loop.
    __m256i c0[NP], c1[NP];  // per-byte counts (at most 31 words of 8 bits each)
    alignas(32) int32_t sums[NP][L] = {};
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) c0[p] = c1[p] = _mm256_setzero_si256();
    auto widen = [](__m256i* sum, __m256i counts, __m256i ones8, __m256i ones16) {
        _mm256_store_si256(sum, _mm256_add_epi32(_mm256_load_si256(sum),
                                                 _mm256_madd_epi16(_mm256_maddubs_epi16(counts, ones8), ones16)));
    };
    int filled = 0;
    for (int64_t t = 0; t < taps; ++t) {
        const uint32_t* a[NP];
#pragma GCC unroll 16
        for (int p = 0; p < NP; ++p) a[p] = ind[p * taps + t] + goff;
        const uint32_t* w = wb + t * cw * L;
        for (int64_t k = 0; k < cw; ++k, w += L) {
            const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
            const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 8));
#pragma GCC unroll 16
            for (int p = 0; p < NP; ++p) {
                const __m256i b = _mm256_set1_epi32(static_cast<int>(a[p][k]));
                const __m256i v0 = _mm256_xor_si256(b, w0), v1 = _mm256_xor_si256(b, w1);
                c0[p] = _mm256_add_epi8(c0[p], _mm256_add_epi8(
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(v0, low4)),
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v0, 4), low4))));
                c1[p] = _mm256_add_epi8(c1[p], _mm256_add_epi8(
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(v1, low4)),
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4))));
            }
            if (++filled == 31) {  // widen the byte counts before they can overflow
                filled = 0;
#pragma GCC unroll 16
                for (int p = 0; p < NP; ++p) {
                    widen(reinterpret_cast<__m256i*>(sums[p]), c0[p], ones8, ones16);
                    widen(reinterpret_cast<__m256i*>(sums[p] + 8), c1[p], ones8, ones16);
                    c0[p] = c1[p] = _mm256_setzero_si256();
                }
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
        widen(reinterpret_cast<__m256i*>(sums[p]), c0[p], ones8, ones16);
        widen(reinterpret_cast<__m256i*>(sums[p] + 8), c1[p], ones8, ones16);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pc + p * L), _mm256_load_si256(reinterpret_cast<__m256i*>(sums[p])));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pc + p * L + 8),
                            _mm256_load_si256(reinterpret_cast<__m256i*>(sums[p] + 8)));
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

static inline uint32_t lanes_to_bits(const float* z, int n) {  // z holds L = 16 lanes, n of them valid
    const __m256 zero = _mm256_setzero_ps();
    const uint32_t bits = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z), zero, _CMP_LT_OQ))) |
                          static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z + 8), zero,
                                                                                 _CMP_LT_OQ))) << 8;
    return bits & ((1u << n) - 1u);  // n <= L = 16
}

// Words per tap unrolled at compile time (helps the 2-word layers of ResNet's first stage).
constexpr int kUnrolledWords = 4;
#define VBYTES 32
#include "kernels_impl.h"
#undef VBYTES

}  // namespace isa_avx2

const IsaKernels* kernels_avx2() { return &isa_avx2::kTable; }

}  // namespace xnorpp

#else  // not x86-64: the dispatcher never selects this path
namespace xnorpp {
const IsaKernels* kernels_avx2() { return kernels_portable(); }
}  // namespace xnorpp
#endif
