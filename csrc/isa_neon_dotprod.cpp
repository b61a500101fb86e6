// NEON unit with the int8 input layer on SDOT (ARMv8.2 dotprod: Cortex-A55, A76 and later, Raspberry Pi 5,
// Apple M1, Graviton 2 and later); the rest is the NEON unit (neon_unit.h). Built with +dotprod.
#include "core.h"

#include <arm_neon.h>

#define XNORPP_NEON_UNIT 1
#define XNORPP_NEON_DOTPROD 1

namespace xnorpp {
namespace isa_neon_dotprod {

constexpr const char* kIsaName = "neon-dotprod";
#include "neon_unit.h"

}  // namespace isa_neon_dotprod

const IsaKernels* kernels_neon_dotprod() { return &isa_neon_dotprod::kTable; }

}  // namespace xnorpp
