// Dispatch, thread and weight-preparation functions used by the bindings.
#pragma once
#include <string>
#include <vector>

#include "core.h"

namespace xnorpp {

bool isa_supported(const std::string& name);
std::vector<std::string> isa_names();  // the units built, best first (units.def)
// A unit of units.def: its compile flags and run-time checks, whether this binary has it, whether this CPU runs it.
struct IsaUnitInfo {
    std::string name, arch, flags;
    std::vector<std::string> features;
    bool built, supported;
};
std::vector<IsaUnitInfo> isa_units();
std::string supported_isas_text();
void select_isa(const std::string& name);  // "" or "auto": best for this CPU
void init_isa_from_env();                  // XNORPP_ISA
const IsaKernels* current_isa();
const IsaKernels* isa_by_name(const std::string& name);
double estimate_cpu_hz();  // benchmarks: cycles per second from a dependent-add chain


struct PreparedWeights {
    int lanes = 0;
    WeightLayout layout = WeightLayout::Words;
    std::vector<uint32_t, CacheLineAllocator<uint32_t>> blocks;  // [G][blocks][taps][cw][...] in `layout` (core.h)
    std::vector<int32_t> tapsum;   // [taps][padded_channels(O)]: Σ_c sign(w) of each tap (exact zero padding;
                                   // the popcount layouts only)
};
// Weights for the kernels of `isa` (its lanes and weight layout).
PreparedWeights prepare_weights(const uint32_t* words, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                                int64_t groups, const IsaKernels& isa);

// Float weights [O][C][KH][KW] -> [O/lanes][KH][KW][C][lanes], output channels zero padded.
// Float weights (O, C/groups, KH, KW) as float_conv reads them: [G][blocks][KH][KW][C/groups][lanes].
std::vector<float> block_float_weights(const float* w, int64_t o, int64_t cg, int64_t kh, int64_t kw, int64_t groups,
                                       int lanes);
// Depthwise weights (C, 1, KH, KW) as float_depthwise reads them: [KH*KW][C rounded up to lanes], zero padded.
std::vector<float> block_depthwise_weights(const float* w, int64_t c, int64_t kh, int64_t kw, int lanes);

// Int8 weights [O][KH*KW*C] ((ky, kx, c) order) as int8_conv reads them: [ceil(O/lanes)][K4/4][lanes][4], each
// run of Int8Runs(kh, kw, c, dw) padded with zeros to a multiple of 4.
std::vector<int8_t> block_int8_weights(const int8_t* w, int64_t o, int64_t kh, int64_t kw, int64_t c, int64_t dw,
                                       int lanes);

}  // namespace xnorpp
