// Portable C++ kernels (any x86-64 or other CPU): no instruction-set flags, so no popcount instruction or library
// call: a SWAR popcount per byte, summed every 31 words. 32 output channels x 4 pixels per tile; the lane loops
// are simple enough for the compiler's baseline auto-vectorizer (SSE2, NEON).
#include "core.h"

namespace xnorpp {
namespace isa_portable {

constexpr const char* kIsaName = "portable";
constexpr int L = 32, P = 4;
constexpr WeightLayout kWeightLayout = WeightLayout::Words;
constexpr int kCodeBias = 0;  // dot4 multiplies the codes as unsigned bytes

// Per byte of x: the popcount of that byte (0..8). The last step of a popcount (summing the 4 bytes) is left
// for later, so the lane loop has only shifts, ands and adds: the compiler vectorizes it with the baseline
// instructions (SSE2 on x86-64, NEON on aarch64), where a 32-bit multiply or a popcount call would not be.
static inline uint32_t byte_popcounts(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (x + (x >> 4)) & 0x0f0f0f0fu;
}

template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    constexpr int kWordsPerFlush = 31;            // 31 x 8 = 248: a byte count stays below 256
    uint32_t bytes[NP][L] = {}, sums[NP][L] = {};
    auto flush = [&] {  // the 4 byte counts of each lane into its sum
        for (int p = 0; p < NP; ++p)
            for (int l = 0; l < L; ++l) {
                const uint32_t b = bytes[p][l], halves = (b & 0x00ff00ffu) + ((b >> 8) & 0x00ff00ffu);
                sums[p][l] += (halves & 0xffffu) + (halves >> 16);
                bytes[p][l] = 0;
            }
    };
    int filled = 0;
    for (int64_t t = 0; t < taps; ++t) {
        const uint32_t* a[NP];
        for (int p = 0; p < NP; ++p) a[p] = ind[p * taps + t] + goff;
        const uint32_t* w = wb + t * cw * L;
        for (int64_t k = 0; k < cw; ++k, w += L) {
            for (int p = 0; p < NP; ++p) {
                const uint32_t b = a[p][k];
                for (int l = 0; l < L; ++l) bytes[p][l] += byte_popcounts(b ^ w[l]);
            }
            if (++filled == kWordsPerFlush) {
                filled = 0;
                flush();
            }
        }
    }
    flush();
    for (int p = 0; p < NP; ++p)
        for (int l = 0; l < L; ++l) pc[p * L + l] = static_cast<int32_t>(sums[p][l]);
}

static inline bool pack_word(const float* x, int count, const float* mul, const float* add, uint32_t& word) {
    return pack_word_scalar(x, count, mul, add, word);
}

static inline uint32_t lanes_to_bits(const float* z, int n) {
    uint32_t bits = 0;
    for (int l = 0; l < n; ++l) bits |= static_cast<uint32_t>(z[l] < 0.0f) << l;
    return bits;
}

// No compile-time unrolling of the word loop (keeps the portable build small).
constexpr int kUnrolledWords = 0;
#define VBYTES 16
#include "kernels_impl.h"
#undef VBYTES

// The vector as 8 lanes of 16 bits, each holding two bytes: the even bytes (sign-extended weights, zero-extended
// codes) times each other plus the odd ones is a sum of 2 products in 16 bits (|product| <= 255 x 64), then the two
// such sums of each 32-bit lane are added: shifts, 16-bit multiplies and adds, which every baseline SIMD has (a
// 32-bit multiply, as SSE2 lacks it, or byte unpacking cost more).
static inline vint dot4(vint acc, vint a, vint w) {
    typedef int16_t s16x8 __attribute__((vector_size(16)));
    typedef uint16_t u16x8 __attribute__((vector_size(16)));
    const s16x8 w16 = (s16x8)w, a16 = (s16x8)a;
    const s16x8 w_even = (s16x8)((u16x8)w16 << 8) >> 8, w_odd = w16 >> 8;
    const s16x8 a_even = a16 & 0xff, a_odd = (s16x8)((u16x8)a16 >> 8);
    const s16x8 pairs = a_even * w_even + a_odd * w_odd;
    typedef uint32_t u32x4 __attribute__((vector_size(16)));
    const vint sums = (vint)pairs;
    return acc + ((vint)((u32x4)sums << 16) >> 16) + (sums >> 16);
}

static inline uint32_t negative_lanes(vfloat v) {
    uint32_t bits = 0;
    for (int l = 0; l < VW; ++l) bits |= static_cast<uint32_t>(v[l] < 0.0f) << l;
    return bits;
}

}  // namespace isa_portable

const IsaKernels* kernels_portable() { return &isa_portable::kTable; }

}  // namespace xnorpp
