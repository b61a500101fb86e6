// NEON unit (AArch64 Advanced SIMD, ARMv8.0: every 64-bit ARM core): neon_unit.h.
#include "core.h"

#include <arm_neon.h>

#define XNORPP_NEON_UNIT 1

namespace xnorpp {
namespace isa_neon {

constexpr const char* kIsaName = "neon";
#include "neon_unit.h"

}  // namespace isa_neon

const IsaKernels* kernels_neon() { return &isa_neon::kTable; }

}  // namespace xnorpp
