// Portable C++ kernels (any x86-64 or other CPU): SWAR popcount, no instruction-set flags,
// so no library popcount call either. 32 output channels x 4 pixels per tile; the lane
// loops are simple enough for the compiler's baseline auto-vectorizer.
#include "core.h"

namespace xnorpp {
namespace isa_portable {

constexpr const char* kIsaName = "portable";
constexpr int L = 32, P = 4;
constexpr WeightLayout kWeightLayout = WeightLayout::Words;
constexpr int kCodeBias = 0;  // dot4 multiplies the codes as unsigned bytes

template <int NP, int CW>
static void micro(const uint32_t* const* ind, int64_t taps, int64_t cw_runtime, int64_t goff,
                  const uint32_t* wb, int32_t* pc) {
    const int64_t cw = CW > 0 ? CW : cw_runtime;  // small word counts unrolled at compile time
    uint32_t acc[NP][L] = {};
    for (int64_t t = 0; t < taps; ++t) {
        const uint32_t* a[NP];
        for (int p = 0; p < NP; ++p) a[p] = ind[p * taps + t] + goff;
        const uint32_t* w = wb + t * cw * L;
        for (int64_t k = 0; k < cw; ++k, w += L)
            for (int p = 0; p < NP; ++p) {
                const uint32_t b = a[p][k];
                for (int l = 0; l < L; ++l) acc[p][l] += popcount32_swar(b ^ w[l]);
            }
    }
    for (int p = 0; p < NP; ++p)
        for (int l = 0; l < L; ++l) pc[p * L + l] = static_cast<int32_t>(acc[p][l]);
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

static inline vint dot4(vint acc, vint a, vint w) {
    for (int i = 0; i < VW; ++i) {
        const uint32_t codes = static_cast<uint32_t>(a[i]), weights = static_cast<uint32_t>(w[i]);
        int32_t sum = 0;
        for (int b = 0; b < 4; ++b)
            sum += static_cast<int32_t>((codes >> (8 * b)) & 255u) * static_cast<int8_t>((weights >> (8 * b)) & 255u);
        acc[i] += sum;
    }
    return acc;
}

static inline uint32_t negative_lanes(vfloat v) {
    uint32_t bits = 0;
    for (int l = 0; l < VW; ++l) bits |= static_cast<uint32_t>(v[l] < 0.0f) << l;
    return bits;
}

}  // namespace isa_portable

const IsaKernels* kernels_portable() { return &isa_portable::kTable; }

}  // namespace xnorpp
