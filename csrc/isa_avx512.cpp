// AVX-512 VPOPCNTDQ kernels (avx512_unit.h): 32 output channels (two zmm of 32-bit lanes) x 12 pixels
// per register tile; activation words are broadcast, so no horizontal reductions are needed.
// Built with -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq -mavx512vnni (csrc/units.def); only
// called after the dispatcher checked the CPU (every CPU with VPOPCNTDQ but Knights Mill has VNNI too).
#include "core.h"

#if defined(XNORPP_SIMDE_AVX512)
// Development check only (csrc/tools/check_isa.cpp): the same code on SIMDe's portable
// implementation of the intrinsics, to test this unit on a CPU without AVX-512.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
typedef simde__mmask16 __mmask16;
static inline simde__m512 xnorpp_maskz_loadu_ps(simde__mmask16 m, const float* p) {
    float v[16] = {};
    for (int i = 0; i < 16; ++i)
        if (m >> i & 1) v[i] = p[i];
    return simde_mm512_loadu_ps(v);
}
#define _mm512_maskz_loadu_ps xnorpp_maskz_loadu_ps
#define _mm512_mask_cmp_ps_mask(m, a, b, pred) \
    static_cast<simde__mmask16>((m) & simde_mm512_cmp_ps_mask((a), (b), (pred)))
#else
#include <immintrin.h>
#endif

namespace xnorpp {
namespace isa_avx512 {

constexpr const char* kIsaName = "avx512";
#include "avx512_unit.h"

}  // namespace isa_avx512

const IsaKernels* kernels_avx512() { return &isa_avx512::kTable; }

}  // namespace xnorpp
