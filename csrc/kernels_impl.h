// The ISA-independent part of the kernels, included once by each instruction-set
// translation unit (isa_*.cpp) inside its own namespace, after it defined:
//   constexpr int L, P;                      lanes (output channels) and pixels of a register tile
//   template <int NP> void micro(...);       popcount sums of an NP x L tile
//   bool pack_word(x, count, mul, add, w);   32 channels -> one word, true on NaN
//   uint32_t lanes_to_bits(z, n);            bit l = (z[l] < 0)
// Everything here is compiled with that unit's instruction-set flags.
using MicroFn = void (*)(const uint32_t* const*, int64_t, int64_t, int64_t, const uint32_t*, int32_t*);

template <int... I>
static constexpr std::array<MicroFn, sizeof...(I)> make_micro_table(std::integer_sequence<int, I...>) {
    return {&micro<I + 1>...};
}
static constexpr auto kMicro = make_micro_table(std::make_integer_sequence<int, P>{});

static bool pack_impl(const float* x, int64_t npix, int64_t c, int64_t groups, const float* mul,
                      const float* add, uint32_t* out) {
    const int64_t cg = c / groups, cw = words_for(cg);
    std::atomic<bool> nan{false};
    parallel_for(npix, [&](int64_t begin, int64_t end) {
        bool bad = false;
        for (int64_t p = begin; p < end; ++p) {
            const float* xp = x + p * c;
            uint32_t* op = out + p * groups * cw;
            for (int64_t g = 0; g < groups; ++g)
                for (int64_t k = 0; k < cw; ++k) {
                    const int64_t c0 = g * cg + k * 32;
                    const int count = static_cast<int>(std::min<int64_t>(32, cg - k * 32));
                    bad |= pack_word(xp + c0, count, mul ? mul + c0 : nullptr, add ? add + c0 : nullptr,
                                     op[g * cw + k]);
                }
        }
        if (bad) nan.store(true, std::memory_order_relaxed);
    });
    return !nan.load();
}

// One output pixel's L (or fewer) channels: back-transform, border correction, fused stage.
// Lane loops run the full L (stage arrays are padded to ostride); only the stores stop at nv.
static inline void output_stage(const ConvShape& s, const Stage& st, const int32_t* pc, bool border,
                                int64_t q, int64_t oy, int64_t ox, int64_t o0, int nv, const int32_t* tapsum,
                                int32_t ktot) {
    alignas(64) int32_t dot[L];
    alignas(64) float y[L];
    for (int l = 0; l < L; ++l) dot[l] = ktot - 2 * pc[l];
    if (border && s.pad == PadMode::Zero) {
        // Out-of-image taps were read as +1: remove their weight sums (exact zero padding).
        for (int64_t ky = 0; ky < s.kh; ++ky) {
            const int64_t iy = oy * s.sh - s.pt + ky * s.dh;
            for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ox * s.sw - s.pl + kx * s.dw;
                if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) continue;
                const int32_t* ts = tapsum + (ky * s.kw + kx) * s.ostride + o0;
                for (int l = 0; l < L; ++l) dot[l] -= ts[l];
            }
        }
    }
    if (st.mode == OutMode::Int32) {
        int32_t* out = static_cast<int32_t*>(st.out) + q * s.o + o0;
        if (nv == L)
            for (int l = 0; l < L; ++l) out[l] = dot[l];
        else
            for (int l = 0; l < nv; ++l) out[l] = dot[l];
        return;
    }
    for (int l = 0; l < L; ++l) y[l] = static_cast<float>(dot[l]);
    if (st.scale_map) {
        const float* sm = st.scale_map + (q % (s.oh * s.ow)) * s.ostride + o0;
        for (int l = 0; l < L; ++l) y[l] = y[l] * sm[l];
    } else if (st.scale_o && st.kmap) {
        const float* so = st.scale_o + o0;
        const float kk = st.kmap[q];
        for (int l = 0; l < L; ++l) y[l] = y[l] * (so[l] * kk);
    } else if (st.scale_o) {
        const float* so = st.scale_o + o0;
        for (int l = 0; l < L; ++l) y[l] = y[l] * so[l];
    } else if (st.kmap) {
        const float kk = st.kmap[q];
        for (int l = 0; l < L; ++l) y[l] = y[l] * kk;
    }
    if (st.bias) {
        const float* b = st.bias + o0;
        for (int l = 0; l < L; ++l) y[l] = y[l] + b[l];
    }
    if (st.slope) {
        const float* a = st.slope + o0;
        for (int l = 0; l < L; ++l) y[l] = y[l] > 0.0f ? y[l] : y[l] * a[l];
    }
    if (st.mode == OutMode::Float) {
        float* out = static_cast<float*>(st.out) + q * s.o + o0;
        if (nv == L)
            for (int l = 0; l < L; ++l) out[l] = y[l];
        else
            for (int l = 0; l < nv; ++l) out[l] = y[l];
        return;
    }
    // Packed output (groups == 1, so o0 % 32 + nv <= 32): the first block of a word assigns it.
    if (st.post_mul)
        for (int l = 0; l < L; ++l) y[l] = y[l] * st.post_mul[o0 + l];
    if (st.post_add)
        for (int l = 0; l < L; ++l) y[l] = y[l] + st.post_add[o0 + l];
    uint32_t* out = static_cast<uint32_t*>(st.out) + q * words_for(s.o) + o0 / 32;
    const uint32_t bits = lanes_to_bits(y, nv) << (o0 % 32);
    *out = (o0 % 32 == 0) ? bits : (*out | bits);
}

static void conv_impl(const ConvShape& s, const uint32_t* x, const uint32_t* wblocks, const int32_t* tapsum,
                      const Stage& st) {
    const int64_t cg = s.cg(), og = s.og(), cw = s.cw(), pw = s.pixel_words(), taps = s.taps();
    const int64_t nblocks = (og + L - 1) / L;
    const int64_t npix = s.n * s.oh * s.ow, ntiles = (npix + P - 1) / P;
    const int32_t ktot = static_cast<int32_t>(cg * taps);

    // What an out-of-image tap reads: +1 (0 bits) for zero and +1 padding, -1 on the true channels.
    std::vector<uint32_t> padbuf(static_cast<size_t>(pw), 0u);
    if (s.pad == PadMode::MinusOne)
        for (int64_t g = 0; g < s.groups; ++g)
            for (int64_t k = 0; k < cw; ++k) {
                const int64_t valid = std::min<int64_t>(32, cg - k * 32);
                padbuf[g * cw + k] = valid == 32 ? 0xffffffffu : ((1u << valid) - 1u);
            }

    parallel_for(ntiles, [&](int64_t tb, int64_t te) {
        std::vector<const uint32_t*> ind(static_cast<size_t>(P * taps));
        alignas(64) int32_t pc[P * L];
        bool border[P];
        int64_t oys[P], oxs[P];
        for (int64_t tile = tb; tile < te; ++tile) {
            const int64_t q0 = tile * P;
            const int np = static_cast<int>(std::min<int64_t>(P, npix - q0));
            for (int i = 0; i < np; ++i) {
                const int64_t q = q0 + i, n = q / (s.oh * s.ow), r = q % (s.oh * s.ow);
                const int64_t oy = r / s.ow, ox = r % s.ow;
                oys[i] = oy;
                oxs[i] = ox;
                border[i] = false;
                const uint32_t* img = x + n * s.h * s.w * pw;
                for (int64_t ky = 0; ky < s.kh; ++ky) {
                    const int64_t iy = oy * s.sh - s.pt + ky * s.dh;
                    for (int64_t kx = 0; kx < s.kw; ++kx) {
                        const int64_t ix = ox * s.sw - s.pl + kx * s.dw;
                        const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
                        border[i] |= !inside;
                        ind[i * taps + ky * s.kw + kx] = inside ? img + (iy * s.w + ix) * pw : padbuf.data();
                    }
                }
            }
            for (int64_t g = 0; g < s.groups; ++g)
                for (int64_t ob = 0; ob < nblocks; ++ob) {
                    const uint32_t* wb = wblocks + (g * nblocks + ob) * taps * cw * L;
                    kMicro[np - 1](ind.data(), taps, cw, g * cw, wb, pc);
                    const int64_t o0 = g * og + ob * L;
                    const int nv = static_cast<int>(std::min<int64_t>(L, og - ob * L));
                    for (int i = 0; i < np; ++i)
                        output_stage(s, st, pc + i * L, border[i], q0 + i, oys[i], oxs[i], o0, nv, tapsum, ktot);
                }
        }
    });
}

static const IsaKernels kTable = {kIsaName, L, &pack_impl, &conv_impl};
