// The ISA-independent part of the kernels, included once by each instruction-set
// translation unit (isa_*.cpp) inside its own namespace, after it defined:
//   constexpr int L, P;                      lanes (output channels) and pixels of a register tile
//   template <int NP, int CW> void micro(ind, taps, cw, goff, wb, pc);
//                                            popcount sums of an NP x L tile: pc[p * L + l] = the popcounts of
//                                            (pixel p's words, at ind[p * taps + t] + goff) xor (channel l's
//                                            weights, the block wb in kWeightLayout); CW > 0: cw == CW unrolled
//   bool pack_word(x, count, mul, add, w);   32 channels -> one word, true on NaN
//   uint32_t lanes_to_bits(z, n);            bit l = (z[l] < 0)
//   VBYTES                                   vector width in bytes for the output stage
//   constexpr int kUnrolledWords;            words per tap unrolled at compile time (0..4)
//   constexpr WeightLayout kWeightLayout;    how micro reads its weight blocks (core.h)
//   constexpr int kCodeBias;                 what dot4 subtracts from the int8 layer's codes (0, or 128 for
//                                            units whose multiplies are signed: the codes as s8)
// and, after including it, dot4 (4 byte products per 32-bit lane, the int8 layer) and negative_lanes (the
// sign bits of a vector, the output stage's bits), declared here.
// Everything here is compiled with that unit's instruction-set flags.
using MicroFn = void (*)(const uint32_t* const*, int64_t, int64_t, int64_t, const uint32_t*, int32_t*);

// kMicro[cw][np - 1]: micro-kernels with 1..kUnrolledWords words per tap unrolled at compile time
// (cw 0: any count). kUnrolledWords is the unit's choice: unrolling must not make the compiler
// spill the accumulators (checked in the generated code).
template <int CW, int... I>
static constexpr std::array<MicroFn, sizeof...(I)> make_micro_row(std::integer_sequence<int, I...>) {
    return {&micro<I + 1, CW>...};
}
template <int... C>
static constexpr auto make_micro_table(std::integer_sequence<int, C...>) {
    return std::array<std::array<MicroFn, P>, sizeof...(C)>{make_micro_row<C>(std::make_integer_sequence<int, P>{})...};
}
static constexpr auto kMicro = make_micro_table(std::make_integer_sequence<int, kUnrolledWords + 1>{});

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
    }, static_cast<double>(c));
    return !nan.load();
}

// Vectors of the unit's width (GCC/Clang vector extensions): VBYTES is defined by the unit.
constexpr int VW = VBYTES / 4;
static_assert(L % VW == 0, "the tile width must be a multiple of the vector width");
// Whole 32-bit output words per block: a packed output word is written by one block, so blocks
// of the same pixel can run on different threads.
static_assert(L % 32 == 0, "the tile width must be a multiple of 32 channels");
typedef float vfloat __attribute__((vector_size(VBYTES)));
typedef int32_t vint __attribute__((vector_size(VBYTES)));
static inline vfloat load_f(const float* p) { vfloat v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline vint load_i(const int32_t* p) { vint v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline void store_f(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }
static inline void store_i(int32_t* p, vint v) { __builtin_memcpy(p, &v, sizeof v); }

// One output pixel's L dot products from its popcounts: back-transform and border correction.
static inline void popcounts_to_dots(const ConvShape& s, const int32_t* pc, bool border, int64_t oy, int64_t ox,
                                     int64_t o0, const int32_t* tapsum, int32_t ktot, int32_t* dot) {
    for (int l = 0; l < L; l += VW) store_i(dot + l, ktot - 2 * load_i(pc + l));
    if (border && s.pad == PadMode::Zero) {
        // Out-of-image taps were read as +1: remove their weight sums (exact zero padding).
        for (int64_t ky = 0; ky < s.kh; ++ky) {
            const int64_t iy = oy * s.sh - s.pt + ky * s.dh;
            for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ox * s.sw - s.pl + kx * s.dw;
                if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) continue;
                const int32_t* ts = tapsum + (ky * s.kw + kx) * s.ostride + o0;
                for (int l = 0; l < L; l += VW) store_i(dot + l, load_i(dot + l) - load_i(ts + l));
            }
        }
    }
}

// One output pixel q (output row oy) of L (or fewer) channels from its exact dot products: the fused
// stage. Lanes run the full L (stage arrays are padded to ostride); only the stores stop at nv.
static inline void output_stage(const ConvShape& s, const Stage& st, const int32_t* dot, int64_t q, int64_t oy,
                                int64_t o0, int nv) {
    alignas(64) float y[L];
    if (st.mode == OutMode::Int32) {
        int32_t* out = static_cast<int32_t*>(st.out) + q * s.o + o0;
        if (nv == L)
            for (int l = 0; l < L; l += VW) store_i(out + l, load_i(dot + l));
        else
            for (int l = 0; l < nv; ++l) out[l] = dot[l];
        return;
    }
    const float* sm = st.scale_map ? st.scale_map + (q % (s.oh * s.ow)) * s.ostride + o0 : nullptr;
    const float* sr = st.scale_rows ? st.scale_rows + oy * s.ostride + o0 : nullptr;
    const float sp = st.scale_pos ? st.scale_pos[q % (s.oh * s.ow)] : 1.0f;
    const float* so = st.scale_o ? st.scale_o + o0 : nullptr;
    const float* b = st.bias ? st.bias + o0 : nullptr;
    const float* a = st.slope ? st.slope + o0 : nullptr;
    const float kk = st.kmap ? st.kmap[q] : 1.0f;
    const bool packed = st.mode == OutMode::Packed;
    // A float output is written in the loop when the tile is full (else after it: the stores, and the
    // residual's reads, stop at nv), the residual added last; the bits, packed or beside a float output,
    // are the signs of (value·post_mul) + post_add, as pack_word gives them for the layer that reads them.
    float* out = packed ? nullptr : static_cast<float*>(st.out) + q * s.o + o0;
    const float* r = st.residual && !packed ? st.residual + q * s.o + o0 : nullptr;
    const bool full = !packed && nv == L, signs = packed || st.bits;
    const float* pm = signs && st.post_mul ? st.post_mul + o0 : nullptr;
    const float* pa = signs && st.post_add ? st.post_add + o0 : nullptr;
    const vfloat zero = vfloat{} ;
    for (int l = 0; l < L; l += VW) {
        vfloat v = __builtin_convertvector(load_i(dot + l), vfloat);
        if (sm) v = v * load_f(sm + l);
        else if (sr) v = v * (load_f(sr + l) * sp);  // the factors in the layer's order: the folded Γ's float
        else if (so && st.kmap) v = v * (load_f(so + l) * kk);  // (α·K) first, as PyTorch's scale
        else if (so) v = v * load_f(so + l);
        else if (st.kmap) v = v * kk;
        if (b) v = v + load_f(b + l);
        if (a) v = v > zero ? v : v * load_f(a + l);
        if (full) {
            if (r) v = v + load_f(r + l);
            store_f(out + l, v);
        }
        if (packed || full) {  // a partial float tile applies the affine after its residual, below
            if (pm) v = v * load_f(pm + l);
            if (pa) v = v + load_f(pa + l);
        }
        store_f(y + l, v);
    }
    if (!packed && !full)
        for (int l = 0; l < nv; ++l) {
            float v = r ? y[l] + r[l] : y[l];
            out[l] = v;
            if (pm) v = v * pm[l];
            if (pa) v = v + pa[l];
            y[l] = v;
        }
    if (!signs) return;
    // Whole words, 32 lanes each (groups == 1, so o0 % 32 == 0).
    uint32_t* words = (packed ? static_cast<uint32_t*>(st.out) : st.bits) + q * words_for(s.o) + o0 / 32;
    for (int l = 0; l < nv; l += 32) words[l / 32] = lanes_to_bits(y + l, std::min(32, nv - l));
}

// Per lane of v: bit l = (v[l] < 0), as pack_word (NaN: 0). Defined by the unit.
static inline uint32_t negative_lanes(vfloat v);

// output_stage for several output positions of one image and W output channels from o0 (all of them
// outputs; W = L, or 16 with o0 a multiple of 16 and little-endian bits): the same float operations, with
// the per-channel factors loaded once for all positions (output_stage reloads them for every position,
// since its stores might alias them) and no division. Position i: dots acc + row[i] * W, position
// p[i] = oy * OW + ox within the image that starts at output position q0 (a multiple of OH * OW), output
// row oy[i].
template <int W = L>
static void output_rows(const ConvShape& s, const Stage& st, const int32_t* acc, int count, const int8_t* row,
                        const int32_t* p, const int32_t* oy, int64_t q0, int64_t o0) {
    static_assert(W % VW == 0 && (W == 16 || W % 32 == 0), "whole vectors, whole halves of bit words");
    constexpr int NV = W / VW;
    if (st.mode == OutMode::Int32) {
        for (int i = 0; i < count; ++i)
            for (int l = 0; l < W; l += VW)
                store_i(static_cast<int32_t*>(st.out) + (q0 + p[i]) * s.o + o0 + l, load_i(acc + row[i] * W + l));
        return;
    }
    const bool packed = st.mode == OutMode::Packed, signs = packed || st.bits;
    auto constants = [&](const float* a, vfloat* v) {
        for (int j = 0; j < NV; ++j) v[j] = a ? load_f(a + o0 + j * VW) : vfloat{};
    };
    vfloat so[NV], bias[NV], slope[NV], pm[NV], pa[NV];
    constants(st.scale_o, so), constants(st.bias, bias), constants(st.slope, slope);
    constants(st.post_mul, pm), constants(st.post_add, pa);
    // Locals: the stores below could alias the Stage's fields.
    const float *scale_map = st.scale_map, *scale_rows = st.scale_rows, *scale_pos = st.scale_pos;
    const float *kmap = st.kmap ? st.kmap + q0 : nullptr, *residual = packed ? nullptr : st.residual;
    const bool has_so = st.scale_o, has_bias = st.bias, has_slope = st.slope, has_pm = st.post_mul,
               has_pa = st.post_add;
    float* out = packed ? nullptr : static_cast<float*>(st.out);
    uint32_t* bits_out = packed ? static_cast<uint32_t*>(st.out) : st.bits;
    const int64_t ostride = s.ostride, o = s.o, words = words_for(s.o);
    const vfloat zero{};
    for (int i = 0; i < count; ++i) {
        const int64_t at = (q0 + p[i]) * o + o0;  // this position's output channels
        const int32_t* dot = acc + row[i] * W;
        const float* sm = scale_map ? scale_map + p[i] * ostride + o0 : nullptr;
        const float* sr = scale_rows ? scale_rows + oy[i] * ostride + o0 : nullptr;
        const float sp = scale_pos ? scale_pos[p[i]] : 1.0f;
        const float kk = kmap ? kmap[p[i]] : 1.0f;
        uint32_t bits[(W + 31) / 32] = {};
        for (int j = 0; j < NV; ++j) {
            vfloat v = __builtin_convertvector(load_i(dot + j * VW), vfloat);
            if (sm) v = v * load_f(sm + j * VW);
            else if (sr) v = v * (load_f(sr + j * VW) * sp);
            else if (has_so && kmap) v = v * (so[j] * kk);
            else if (has_so) v = v * so[j];
            else if (kmap) v = v * kk;
            if (has_bias) v = v + bias[j];
            if (has_slope) v = v > zero ? v : v * slope[j];
            if (out) {
                if (residual) v = v + load_f(residual + at + j * VW);
                store_f(out + at + j * VW, v);
            }
            if (signs) {
                if (has_pm) v = v * pm[j];
                if (has_pa) v = v + pa[j];
                bits[j * VW / 32] |= negative_lanes(v) << (j * VW % 32);
            }
        }
        if (signs && W == 16)  // half a word: the other half is another block's
            reinterpret_cast<uint16_t*>(bits_out + (q0 + p[i]) * words)[o0 / 16] = static_cast<uint16_t>(bits[0]);
        else if (signs)
            for (int w = 0; w < W / 32; ++w) bits_out[(q0 + p[i]) * words + o0 / 32 + w] = bits[w];
    }
}

// Rows 0, 1, 2, ... of a tile of dot products (output_rows).
static constexpr struct RowIndex {
    int8_t row[64];
    constexpr RowIndex() : row() {
        for (int i = 0; i < 64; ++i) row[i] = static_cast<int8_t>(i);
    }
} kRowIndexTable{};
static constexpr const int8_t* kRowIndex = kRowIndexTable.row;
static_assert(P <= 64, "a tile's rows are indexed by kRowIndex");

// Work items: (group, block of L output channels, tile of P pixels), block-major, so that a
// thread's share of a deep layer reads only its blocks' weights, and a layer with few pixels
// (7x7 at batch 1) still splits over both pixels and channels. When all the weights fit in L2
// (ResNet's layers up to 256 channels), tile-major instead: a tile's windows are then gathered once
// for all its blocks, not once per block (bench_conv: 0.75-0.9x the time on those layers).
static void conv_impl(const ConvShape& s, const uint32_t* x, const uint32_t* wblocks, const int32_t* tapsum,
                      const Stage& st) {
    const int64_t og = s.og(), cw = s.cw(), pw = s.pixel_words(), taps = s.taps();
    const int64_t nblocks = (og + L - 1) / L, nitems_b = s.groups * nblocks;
    const int64_t npix = s.n * s.oh * s.ow, ntiles = (npix + P - 1) / P;
    const int64_t wblock = taps * cw * weight_words_per_tap_word(kWeightLayout, L);  // words per block
    const int32_t ktot = static_cast<int32_t>(s.cg() * taps);
    const auto& micro_row = kMicro[cw <= kUnrolledWords ? cw : 0];

    // What an out-of-image tap reads: +1 (0 bits) for zero and +1 padding, -1 on the true channels.
    std::vector<uint32_t> padbuf(static_cast<size_t>(pw), 0u);
    if (s.pad == PadMode::MinusOne)
        for (int64_t g = 0; g < s.groups; ++g)
            for (int64_t k = 0; k < cw; ++k) {
                const int64_t valid = std::min<int64_t>(32, s.cg() - k * 32);
                padbuf[g * cw + k] = valid == 32 ? 0xffffffffu : ((1u << valid) - 1u);
            }

    // Word offsets of the taps from a window's origin: the same for every window inside the image.
    std::vector<int64_t> tap_offset(static_cast<size_t>(taps));
    for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx) tap_offset[ky * s.kw + kx] = (ky * s.dh * s.w + kx * s.dw) * pw;
    const int64_t span_h = s.dh * (s.kh - 1), span_w = s.dw * (s.kw - 1);

    constexpr int64_t kL2Bytes = 256 << 10;  // the smallest L2 per core of the CPUs we meet
    const bool tile_major = s.groups * nblocks * wblock * 4 <= kL2Bytes;
    // Estimated cycles per item (kernel ~100 binary MACs per cycle, stage ~1 cycle per 8 outputs).
    const double item_cost = double(P) * L * (taps * cw * 32 / 100.0 + 0.125);
    parallel_for(nitems_b * ntiles, [&](int64_t ib, int64_t ie) {
        std::vector<const uint32_t*> ind(static_cast<size_t>(P * taps));
        alignas(64) int32_t pc[P * L];
        bool border[P];
        int64_t oys[P], oxs[P];
        int32_t pos[P], oy32[P];  // position within its image, output row (output_rows)
        int64_t have_tile = -1;
        int np = 0;
        // The item's (group, block, tile): divided out for the first item, then stepped (the divisions cost more
        // than the rest of an item's bookkeeping).
        int64_t g, ob, tile;
        if (tile_major) {
            g = ib / (ntiles * nblocks);
            tile = ib % (ntiles * nblocks) / nblocks, ob = ib % nblocks;
        } else {
            g = ib / ntiles / nblocks, ob = ib / ntiles % nblocks, tile = ib % ntiles;
        }
        auto next_item = [&] {
            int64_t& inner = tile_major ? ob : tile;
            int64_t& outer = tile_major ? tile : ob;
            if (++inner < (tile_major ? nblocks : ntiles)) return;
            inner = 0;
            if (++outer < (tile_major ? ntiles : nblocks)) return;
            outer = 0, ++g;
        };
        for (int64_t item = ib; item < ie; ++item, next_item()) {
            const int64_t gb = g * nblocks + ob;
            const int64_t q0 = tile * P;
            if (tile != have_tile) {  // indirection of the tile's windows
                have_tile = tile;
                np = static_cast<int>(std::min<int64_t>(P, npix - q0));
                // Pixel coordinates: divide once per tile, then step (divisions cost more than a tap).
                int64_t n = q0 / (s.oh * s.ow), oy = (q0 % (s.oh * s.ow)) / s.ow, ox = q0 % s.ow;
                for (int i = 0; i < np; ++i) {
                    oys[i] = oy;
                    oxs[i] = ox;
                    pos[i] = static_cast<int32_t>(oy * s.ow + ox);
                    oy32[i] = static_cast<int32_t>(oy);
                    const uint32_t* img = x + n * s.h * s.w * pw;
                    const int64_t iy0 = oy * s.sh - s.pt, ix0 = ox * s.sw - s.pl;
                    border[i] = iy0 < 0 || ix0 < 0 || iy0 + span_h >= s.h || ix0 + span_w >= s.w;
                    const uint32_t** pi = ind.data() + i * taps;
                    if (!border[i]) {
                        const uint32_t* origin = img + (iy0 * s.w + ix0) * pw;
                        for (int64_t t = 0; t < taps; ++t) pi[t] = origin + tap_offset[t];
                    } else {
                        for (int64_t ky = 0; ky < s.kh; ++ky) {
                            const int64_t iy = iy0 + ky * s.dh;
                            for (int64_t kx = 0; kx < s.kw; ++kx) {
                                const int64_t ix = ix0 + kx * s.dw;
                                const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
                                pi[ky * s.kw + kx] = inside ? img + (iy * s.w + ix) * pw : padbuf.data();
                            }
                        }
                    }
                    if (++ox == s.ow) {
                        ox = 0;
                        if (++oy == s.oh) oy = 0, ++n;
                    }
                }
            }
            micro_row[np - 1](ind.data(), taps, cw, g * cw, wblocks + gb * wblock, pc);
            const int64_t o0 = g * og + ob * L;
            const int nv = static_cast<int>(std::min<int64_t>(L, og - ob * L));
            alignas(64) int32_t dots[P * L];
            for (int i = 0; i < np; ++i) popcounts_to_dots(s, pc + i * L, border[i], oys[i], oxs[i], o0, tapsum, ktot,
                                                            dots + i * L);
            if (nv < L) {
                for (int i = 0; i < np; ++i) output_stage(s, st, dots + i * L, q0 + i, oys[i], o0, nv);
                continue;
            }
            // The stage for the tile's pixels at once, an image at a time.
            for (int i0 = 0, i1; i0 < np; i0 = i1) {
                i1 = i0 + 1;
                while (i1 < np && pos[i1] > pos[i1 - 1]) ++i1;  // the same image
                output_rows(s, st, dots + i0 * L, i1 - i0, kRowIndex, pos + i0, oy32 + i0, q0 + i0 - pos[i0], o0);
            }
        }
    }, item_cost);
}

// ---- Float direct convolution: the real layers (the stem conv, the shortcut 1x1 convs) ----
// A register tile of FP pixels x FL output channels (two vectors); each input value is
// broadcast once and multiplied into both. 2*FP accumulators + 3 fit the unit's registers.
constexpr int FL = 2 * VW;
constexpr int FP = VBYTES == 64 ? 12 : 6;

// All lanes = v, as one broadcast instruction. (Scalar - vector broadcasts the scalar; v - 0 is
// exactly v for every float, so the compiler drops the subtraction. A loop filling the lanes
// compiled to a chain of inserts, and v + 0 keeps an add because -0 + 0 = +0.)
static inline vfloat splat(float v) { return v - vfloat{}; }

static inline vfloat fmadd(vfloat a, vfloat b, vfloat c) {
#if VBYTES == 16 && defined(XNORPP_NEON_UNIT)
    return (vfloat)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#elif VBYTES == 64 && defined(__AVX512F__)
    return (vfloat)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif VBYTES == 32 && defined(__FMA__)
    return (vfloat)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

// Sums of an NP x FL tile. px[p] points at pixel p's window origin; a kernel row holds
// nseg segments of seg_len contiguous floats (one run of KW*C when the dilation is 1).
template <int NP>
static void float_micro(const float* const* px, int64_t kh, int64_t row_step, int64_t nseg, int64_t seg_step,
                        int64_t seg_len, const float* w, float* acc_out) {
    vfloat acc0[NP], acc1[NP];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) acc0[p] = acc1[p] = vfloat{};
    for (int64_t ky = 0; ky < kh; ++ky)
        for (int64_t sg = 0; sg < nseg; ++sg) {
            const int64_t off = ky * row_step + sg * seg_step;
            for (int64_t j = 0; j < seg_len; ++j, w += FL) {
                const vfloat w0 = load_f(w), w1 = load_f(w + VW);
#pragma GCC unroll 16
                for (int p = 0; p < NP; ++p) {
                    const vfloat b = splat(px[p][off + j]);
                    acc0[p] = fmadd(b, w0, acc0[p]);
                    acc1[p] = fmadd(b, w1, acc1[p]);
                }
            }
        }
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
        store_f(acc_out + p * FL, acc0[p]);
        store_f(acc_out + p * FL + VW, acc1[p]);
    }
}

using FloatMicroFn = void (*)(const float* const*, int64_t, int64_t, int64_t, int64_t, int64_t, const float*,
                              float*);
template <int... I>
static constexpr std::array<FloatMicroFn, sizeof...(I)> make_float_micro(std::integer_sequence<int, I...>) {
    return {&float_micro<I + 1>...};
}
static constexpr auto kFloatMicro = make_float_micro(std::make_integer_sequence<int, FP>{});

// The fused epilogue of the float convolutions on one vector of output channels o..o+VW: the same
// operations, in the same order, as the unfused layers.
static inline vfloat float_stage(vfloat z, const FloatStage& st, int64_t o) {
    if (st.bias) z = z + load_f(st.bias + o);
    if (st.scale) z = z * load_f(st.scale + o);
    if (st.shift) z = z + load_f(st.shift + o);
    const vfloat zero{};
    if (st.slope)  // std::max(z, 0) + std::min(z, 0) * slope: NaN propagates
        z = (z < zero ? zero : z) + (zero < z ? zero : z) * load_f(st.slope + o);
    else if (st.relu)  // std::max(z, 0): -inf gives 0, NaN propagates
        z = z < zero ? zero : z;
    return z;
}

static void float_conv_impl(const ConvShape& s, const float* x, const float* wblocks, const FloatStage& st,
                            float* out) {
    const int64_t groups = s.groups, cg = s.c / groups, og = s.o / groups;
    const int64_t nblocks = (og + FL - 1) / FL, npix = s.n * s.oh * s.ow, ntiles = (npix + FP - 1) / FP;
    const int64_t kdim = s.kh * s.kw * cg;
    const bool one_run = s.dw == 1 && groups == 1;  // a kernel row is then one contiguous run of KW*C floats
    const int64_t nseg = one_run ? 1 : s.kw, seg_len = one_run ? s.kw * s.c : cg, seg_step = s.dw * s.c;
    const int64_t row_step = s.dh * s.w * s.c;
    // Items (group, block of FL output channels, tile of FP pixels), block-major like the binary kernel.
    parallel_for(groups * nblocks * ntiles, [&](int64_t ib, int64_t ie) {
        const float* px[FP];
        alignas(64) float acc[FP * FL];
        int64_t have_tile = -1, have_group = -1;
        int np = 0;
        for (int64_t item = ib; item < ie; ++item) {
            const int64_t g = item / (nblocks * ntiles), ob = item / ntiles % nblocks, tile = item % ntiles;
            const int64_t q0 = tile * FP;
            if (tile != have_tile || g != have_group) {
                have_tile = tile;
                have_group = g;
                np = static_cast<int>(std::min<int64_t>(FP, npix - q0));
                int64_t n = q0 / (s.oh * s.ow), oy = (q0 % (s.oh * s.ow)) / s.ow, ox = q0 % s.ow;  // then step
                for (int i = 0; i < np; ++i) {
                    px[i] = x + ((n * s.h + oy * s.sh) * s.w + ox * s.sw) * s.c + g * cg;
                    if (++ox == s.ow) {
                        ox = 0;
                        if (++oy == s.oh) oy = 0, ++n;
                    }
                }
            }
            kFloatMicro[np - 1](px, s.kh, row_step, nseg, seg_step, seg_len,
                                wblocks + (g * nblocks + ob) * kdim * FL, acc);
            const int64_t o0 = g * og + ob * FL;
            const int nv = static_cast<int>(std::min<int64_t>(FL, og - ob * FL));
            for (int i = 0; i < np; ++i) {
                float* y = acc + i * FL;
                for (int v = 0; v < FL; v += VW) store_f(y + v, float_stage(load_f(y + v), st, o0 + v));
                std::copy(y, y + nv, out + (q0 + i) * s.o + o0);
            }
        }
    }, static_cast<double>(kdim * FP * FL / VW) / 2.0);  // ~2 vector FMAs per cycle
}

// Depthwise: every output channel reads its own input channel, so the channels are the vector lanes.
// A row of output pixels per item, DP pixels at a time (independent accumulators hide the FMA latency and
// share each weight load); the last partial vector of channels goes through a zero-padded copy.
constexpr int DP = 4;

template <int NP>
static inline void depthwise_pixels(const ConvShape& s, const float* const* origin, const float* w, int64_t cpad,
                                    int64_t c0, bool partial, const FloatStage& st, float* const* y) {
    const int64_t c = s.c;
    vfloat acc[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) acc[p] = vfloat{};
    alignas(64) float tail[VW];
    for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t off = (ky * s.dh * s.w + kx * s.dw) * c + c0;
            const vfloat wv = load_f(w + (ky * s.kw + kx) * cpad + c0);
#pragma GCC unroll 4
            for (int p = 0; p < NP; ++p) {
                vfloat v;
                if (!partial) {
                    v = load_f(origin[p] + off);
                } else {
                    std::fill(tail, tail + VW, 0.0f);
                    std::copy(origin[p] + off, origin[p] + off + (c - c0), tail);
                    v = load_f(tail);
                }
                acc[p] = fmadd(v, wv, acc[p]);
            }
        }
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
        const vfloat z = float_stage(acc[p], st, c0);
        if (!partial) {
            store_f(y[p] + c0, z);
        } else {
            store_f(tail, z);
            std::copy(tail, tail + (c - c0), y[p] + c0);
        }
    }
}

static void float_depthwise_impl(const ConvShape& s, const float* x, const float* w, const FloatStage& st,
                                 float* out) {
    const int64_t c = s.c, cpad = (c + FL - 1) / FL * FL, taps = s.kh * s.kw, full = c / VW * VW;
    parallel_for(s.n * s.oh, [&](int64_t rb, int64_t re) {
        const float* origin[DP];
        float* y[DP];
        for (int64_t row = rb; row < re; ++row) {
            const int64_t n = row / s.oh, oy = row % s.oh;
            for (int64_t ox0 = 0; ox0 < s.ow; ox0 += DP) {
                const int np = static_cast<int>(std::min<int64_t>(DP, s.ow - ox0));
                for (int p = 0; p < np; ++p) {
                    origin[p] = x + ((n * s.h + oy * s.sh) * s.w + (ox0 + p) * s.sw) * c;
                    y[p] = out + (row * s.ow + ox0 + p) * c;
                }
                for (int64_t c0 = 0; c0 < c; c0 += VW) {
                    const bool partial = c0 >= full;
                    if (np == DP)
                        depthwise_pixels<DP>(s, origin, w, cpad, c0, partial, st, y);
                    else
                        for (int p = 0; p < np; ++p) depthwise_pixels<1>(s, origin + p, w, cpad, c0, partial, st, y + p);
                }
            }
        }
    }, static_cast<double>(s.ow * taps * cpad / VW) / 2.0);
}

// ---- The int8 input layer (core.h, Int8Stage) ----
// A register tile of IP pixels x IL output channels (IV vectors of 32-bit lanes, each lane the sum of
// 4 byte products per step). Each pixel's window is read in place, run by run (Int8Runs), 4 codes as one
// word. (Gathering the windows into rows first cost a quarter of ResNet's stem on AVX2, more than the
// 14 % more multiply-adds of the padded runs.)
constexpr int IV = 4, IL = IV * VW, IP = VBYTES == 64 ? 6 : 3;

// Per 32-bit lane: acc + the sum of the 4 products (u8(a byte) - kCodeBias) x s8(w byte); defined by the unit.
static inline vint dot4(vint acc, vint a, vint w);

// weight_bias: kCodeBias x the sum of each channel's weights (IL values), added back at the end; null when
// kCodeBias is 0.
template <int NP>
static void int8_micro(const uint8_t* const* origin, const int64_t* run_offset, const Int8Runs& runs,
                       const int8_t* w, const int32_t* weight_bias, int32_t* acc_out) {
    vint acc[NP][IV];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int j = 0; j < IV; ++j) acc[p][j] = vint{};
    for (int64_t r = 0; r < runs.count; ++r) {
        const uint8_t* run[NP];
#pragma GCC unroll 8
        for (int p = 0; p < NP; ++p) run[p] = origin[p] + run_offset[r];
        for (int64_t k = 0; k < runs.padded; k += 4, w += 4 * IL) {
            vint wv[IV];
#pragma GCC unroll 4
            for (int j = 0; j < IV; ++j) __builtin_memcpy(&wv[j], w + j * VBYTES, VBYTES);
#pragma GCC unroll 8
            for (int p = 0; p < NP; ++p) {
                int32_t codes;
                __builtin_memcpy(&codes, run[p] + k, 4);
                const vint a = codes - vint{};  // all lanes = the 4 codes
#pragma GCC unroll 4
                for (int j = 0; j < IV; ++j) acc[p][j] = dot4(acc[p][j], a, wv[j]);
            }
        }
    }
    if constexpr (kCodeBias != 0)
#pragma GCC unroll 8
        for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
            for (int j = 0; j < IV; ++j) acc[p][j] = acc[p][j] + load_i(weight_bias + j * VW);
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int j = 0; j < IV; ++j) store_i(acc_out + p * IL + j * VW, acc[p][j]);
}

using Int8MicroFn = void (*)(const uint8_t* const*, const int64_t*, const Int8Runs&, const int8_t*, const int32_t*,
                             int32_t*);
template <int... I>
static constexpr std::array<Int8MicroFn, sizeof...(I)> make_int8_micro(std::integer_sequence<int, I...>) {
    return {&int8_micro<I + 1>...};
}
static constexpr auto kInt8Micro = make_int8_micro(std::make_integer_sequence<int, IP>{});

// The int8 layer's output at one position (window origin iy0, ix0 in the padded input; output position q)
// for W channels from o0 (nv of them stored): y = sum * scale + offset - the offsets of the taps on padding,
// then the float epilogue.
template <int W>
static inline void int8_output(const ConvShape& s, const Int8Stage& st, const int32_t* acc, int64_t iy0, int64_t ix0,
                               int64_t q, int64_t o0, int nv, float* out) {
    alignas(64) float y[W];
    for (int l = 0; l < W; l += VW)
        store_f(y + l, __builtin_convertvector(load_i(acc + l), vfloat) * load_f(st.scale + o0 + l) +
                           load_f(st.offset + o0 + l));
    if (iy0 < st.pad_top || ix0 < st.pad_left || iy0 + s.dh * (s.kh - 1) >= st.pad_top + st.h ||
        ix0 + s.dw * (s.kw - 1) >= st.pad_left + st.w)  // the taps on padding: codes 0, their offsets come off
        for (int64_t ky = 0; ky < s.kh; ++ky) {
            const int64_t iy = iy0 + ky * s.dh - st.pad_top;
            for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ix0 + kx * s.dw - st.pad_left;
                if (iy >= 0 && iy < st.h && ix >= 0 && ix < st.w) continue;
                const float* t = st.tap_offset + (ky * s.kw + kx) * st.ostride + o0;
                for (int l = 0; l < W; l += VW) store_f(y + l, load_f(y + l) - load_f(t + l));
            }
        }
    float* dst = out + q * s.o + o0;
    if (nv == W) {
        for (int l = 0; l < W; l += VW) store_f(dst + l, float_stage(load_f(y + l), st.post, o0 + l));
    } else {
        for (int l = 0; l < W; l += VW) store_f(y + l, float_stage(load_f(y + l), st.post, o0 + l));
        std::copy(y, y + nv, dst);
    }
}

static void int8_conv_impl(const ConvShape& s, const uint8_t* x, const int8_t* wblocks, const Int8Stage& st,
                           float* out) {
    const int64_t c = s.c, nblocks = (s.o + IL - 1) / IL;
    const Int8Runs runs(s.kh, s.kw, c, s.dw);
    const int64_t k4 = runs.k4();
    std::vector<int64_t> run_offset(static_cast<size_t>(runs.count));  // from a window's origin, in codes
    for (int64_t r = 0; r < runs.count; ++r)
        run_offset[r] = s.dw == 1 ? r * s.dh * s.w * c : ((r / s.kw) * s.dh * s.w + (r % s.kw) * s.dw) * c;
    const int64_t npix = s.n * s.oh * s.ow, ntiles = (npix + IP - 1) / IP;
    // kCodeBias x each channel's weight sum, per block: what the biased codes left out.
    std::vector<int32_t> weight_bias(kCodeBias != 0 ? static_cast<size_t>(nblocks * IL) : 0, 0);
    for (int64_t ob = 0; kCodeBias != 0 && ob < nblocks; ++ob)
        for (int64_t i = 0; i < k4 * IL; ++i) weight_bias[ob * IL + i / 4 % IL] += kCodeBias * wblocks[ob * k4 * IL + i];
    // Items are tiles of pixels; each runs every block of channels on its windows.
    parallel_for(ntiles, [&](int64_t tb, int64_t te) {
        alignas(64) int32_t acc[IP * IL];
        const uint8_t* origin[IP];
        int64_t iy0s[IP], ix0s[IP];
        for (int64_t tile = tb; tile < te; ++tile) {
            const int64_t q0 = tile * IP;
            const int np = static_cast<int>(std::min<int64_t>(IP, npix - q0));
            int64_t n = q0 / (s.oh * s.ow), oy = (q0 % (s.oh * s.ow)) / s.ow, ox = q0 % s.ow;
            for (int i = 0; i < np; ++i) {
                const int64_t iy0 = oy * s.sh, ix0 = ox * s.sw;  // window origin in the padded input
                iy0s[i] = iy0;
                ix0s[i] = ix0;
                origin[i] = x + ((n * s.h + iy0) * s.w + ix0) * c;
                if (++ox == s.ow) {
                    ox = 0;
                    if (++oy == s.oh) oy = 0, ++n;
                }
            }
            for (int64_t ob = 0; ob < nblocks; ++ob) {
                kInt8Micro[np - 1](origin, run_offset.data(), runs, wblocks + ob * k4 * IL,
                                   kCodeBias != 0 ? weight_bias.data() + ob * IL : nullptr, acc);
                const int64_t o0 = ob * IL;
                const int nv = static_cast<int>(std::min<int64_t>(IL, s.o - o0));
                for (int i = 0; i < np; ++i)
                    int8_output<IL>(s, st, acc + i * IL, iy0s[i], ix0s[i], q0 + i, o0, nv, out);
            }
        }
    }, static_cast<double>(IP * k4 * nblocks * IL) / 16.0);
}

// The int8 layer's codes, VW values at a time (the last partial vector through a zero-padded copy): the
// same float operations on every unit (no contraction: -ffp-contract=off), so every unit gives the same codes.
static bool int8_codes_impl(const float* x, int64_t n, const float* mul, const float* add, uint8_t* out) {
    typedef uint8_t vbyte __attribute__((vector_size(VW)));
    const vfloat zero{}, top = splat(255.0f), magic = splat(12582912.0f);  // + 1.5 * 2^23: no fraction bits left
    vint bad{};
    alignas(64) float tail[3][VW];
    alignas(64) uint8_t tail_codes[VW];
    for (int64_t i = 0; i < n; i += VW) {
        const int m = static_cast<int>(std::min<int64_t>(VW, n - i));
        const float *xi = x + i, *mi = mul + i, *ai = add + i;
        if (m < VW) {
            for (auto* t : tail) std::fill(t, t + VW, 0.0f);
            std::copy(xi, xi + m, tail[0]), std::copy(mi, mi + m, tail[1]), std::copy(ai, ai + m, tail[2]);
            xi = tail[0], mi = tail[1], ai = tail[2];
        }
        const vfloat v = load_f(xi) * load_f(mi) + load_f(ai);
        bad |= v != v;
        // Clamp (a NaN, refused by the caller, becomes 0), then round half to even.
        const vfloat low = v > zero ? v : zero, clamped = low < top ? low : top;
        const vbyte codes = __builtin_convertvector(__builtin_convertvector((clamped + magic) - magic, vint), vbyte);
        __builtin_memcpy(m < VW ? tail_codes : out + i, &codes, VW);
        if (m < VW) std::copy(tail_codes, tail_codes + m, out + i);
    }
    bool nan = false;
    for (int l = 0; l < VW; ++l) nan |= bad[l] != 0;
    return !nan;
}

// ---- Max pooling (NHWC): the channels are the vector lanes ----
// out = max over the window's in-image taps (PyTorch: padding is -inf), NaN propagated: a lane takes v when
// v > max or v is NaN, so once NaN it stays NaN (NaN > v and v > NaN are both false).
// Pooling: out[l] = fin(op(...op(op(init, tap_0[l]), tap_1[l])..., tap_last[l])) for the c channels l of a window's
// in-image taps, a rows x cols rectangle (tap (r, q) at first + r * row_step + q * col_step, taken row by row; the
// same float operations in that order for every lane; the last partial vector scalar). Four vectors of channels at
// a time: four independent chains, so that each tap's loads overlap instead of waiting on one accumulator (a vector
// at a time, ResNet's 2x2 average pools ran at ~150 cycles per 64-channel pixel).
template <class VOp, class SOp, class VFin, class SFin>
static inline void reduce_taps(const float* first, int64_t rows, int64_t cols, int64_t row_step, int64_t col_step,
                               int64_t c, float init, VOp vop, SOp sop, VFin vfin, SFin sfin, float* out) {
    constexpr int kChains = 4;
    const int64_t full = c / VW * VW;
    int64_t j = 0;
    for (; j + kChains * VW <= full; j += kChains * VW) {
        vfloat acc[kChains];
#pragma GCC unroll 4
        for (int v = 0; v < kChains; ++v) acc[v] = splat(init);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t q = 0; q < cols; ++q) {
                const float* tap = first + r * row_step + q * col_step + j;
#pragma GCC unroll 4
                for (int v = 0; v < kChains; ++v) acc[v] = vop(acc[v], load_f(tap + v * VW));
            }
#pragma GCC unroll 4
        for (int v = 0; v < kChains; ++v) store_f(out + j + v * VW, vfin(acc[v]));
    }
    for (; j < full; j += VW) {
        vfloat acc = splat(init);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t q = 0; q < cols; ++q) acc = vop(acc, load_f(first + r * row_step + q * col_step + j));
        store_f(out + j, vfin(acc));
    }
    for (; j < c; ++j) {
        float acc = init;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t q = 0; q < cols; ++q) acc = sop(acc, first[r * row_step + q * col_step + j]);
        out[j] = sfin(acc);
    }
}

// Estimated cycles of one output row of a pool (parallel_for): a vector load and operation per tap and
// vector of channels, at about one per cycle.
static inline double pool_row_cost(const ConvShape& s) {
    return static_cast<double>(s.ow) * (s.kh * s.kw + 1) * ((s.c + VW - 1) / VW);
}

// The kernel indices k in [0, kernel) whose input index o * stride - pad + k * dilation lies in [0, size): a range.
static inline std::pair<int64_t, int64_t> in_image_taps(int64_t start, int64_t kernel, int64_t dilation,
                                                        int64_t size) {
    const int64_t lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
    const int64_t hi = start >= size ? 0 : std::min(kernel, (size - 1 - start) / dilation + 1);
    return {lo, std::max(lo, hi)};
}

static void max_pool_impl(const ConvShape& s, const float* x, float* out) {
    parallel_for(s.n * s.oh, [&](int64_t rb, int64_t re) {
        for (int64_t row = rb; row < re; ++row) {
            const int64_t b = row / s.oh, oy = row % s.oh, y0 = oy * s.sh - s.pt;
            const auto [ky0, ky1] = in_image_taps(y0, s.kh, s.dh, s.h);
            for (int64_t ox = 0; ox < s.ow; ++ox) {
                const int64_t x0 = ox * s.sw - s.pl;
                const auto [kx0, kx1] = in_image_taps(x0, s.kw, s.dw, s.w);
                const float* first = x + ((b * s.h + y0 + ky0 * s.dh) * s.w + x0 + kx0 * s.dw) * s.c;
                // NaN propagates: a NaN tap replaces the maximum and stays (NaN > v and v > NaN are false).
                reduce_taps(first, ky1 - ky0, kx1 - kx0, s.dh * s.w * s.c, s.dw * s.c, s.c,
                            -std::numeric_limits<float>::infinity(),
                            [](vfloat acc, vfloat v) { return ((v > acc) | (v != v)) ? v : acc; },
                            [](float acc, float v) { return (v > acc || v != v) ? v : acc; },
                            [](vfloat acc) { return acc; }, [](float acc) { return acc; },
                            out + (row * s.ow + ox) * s.c);
            }
        }
    }, pool_row_cost(s));
}

// Sums the in-image taps in the order iy, ix (the same float additions for every lane, as the scalar loop
// did), then multiplies by 1 / count.
static void avg_pool_impl(const ConvShape& s, const float* x, int64_t pad_bottom, int64_t pad_right,
                          bool count_include_pad, float* out) {
    parallel_for(s.n * s.oh, [&](int64_t rb, int64_t re) {
        for (int64_t row = rb; row < re; ++row) {
            const int64_t b = row / s.oh, oy = row % s.oh;
            const int64_t y0 = oy * s.sh - s.pt, y1 = std::min(y0 + s.kh, s.h + pad_bottom);
            const int64_t cy0 = std::max<int64_t>(y0, 0), cy1 = std::min(y1, s.h);
            for (int64_t ox = 0; ox < s.ow; ++ox) {
                const int64_t x0 = ox * s.sw - s.pl, x1 = std::min(x0 + s.kw, s.w + pad_right);
                const int64_t cx0 = std::max<int64_t>(x0, 0), cx1 = std::min(x1, s.w);
                const int64_t count = count_include_pad ? (y1 - y0) * (x1 - x0) : (cy1 - cy0) * (cx1 - cx0);
                const float scale = 1.0f / static_cast<float>(std::max<int64_t>(count, 1));
                const int64_t rows = std::max<int64_t>(cy1 - cy0, 0), cols = std::max<int64_t>(cx1 - cx0, 0);
                reduce_taps(x + ((b * s.h + cy0) * s.w + cx0) * s.c, rows, cols, s.w * s.c, s.c, s.c, 0.0f,
                            [](vfloat acc, vfloat v) { return acc + v; }, [](float acc, float v) { return acc + v; },
                            [scale](vfloat acc) { return acc * scale; }, [scale](float acc) { return acc * scale; },
                            out + (row * s.ow + ox) * s.c);
            }
        }
    }, pool_row_cost(s));
}

// One output row (w pixels of C channels) from the C input rows (`plane` floats apart). A compile-time C lets
// the compiler turn the interleave into vector shuffles: images have 1, 3 or 4 channels.
template <int C>
static void interleave_row(const float* src, int64_t plane, int64_t w, float* dst) {
    for (int64_t p = 0; p < w; ++p)
        for (int ch = 0; ch < C; ++ch) dst[p * C + ch] = src[ch * plane + p];
}

// Row by row, in L1: a NaN check over the C input rows (an OR of compares into an int: it vectorizes, where a
// bool flag set inside the copy loop kept the whole loop scalar, 4x slower), then the interleave into one row.
static bool to_nhwc_impl(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* out) {
    std::atomic<bool> nan{false};
    parallel_for(n * h, [&](int64_t begin, int64_t end) {
        int bad = 0;
        for (int64_t row = begin; row < end; ++row) {
            const int64_t b = row / h, y = row % h, plane = h * w;
            const float* src = x + (b * c * h + y) * w;  // channel ch's row at src + ch * plane
            float* dst = out + row * w * c;
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t p = 0; p < w; ++p) bad |= src[ch * plane + p] != src[ch * plane + p];
            switch (c) {
                case 1: std::copy(src, src + w, dst); break;
                case 3: interleave_row<3>(src, plane, w, dst); break;
                case 4: interleave_row<4>(src, plane, w, dst); break;
                default:
                    for (int64_t ch = 0; ch < c; ++ch)
                        for (int64_t p = 0; p < w; ++p) dst[p * c + ch] = src[ch * plane + p];
            }
        }
        if (bad) nan.store(true, std::memory_order_relaxed);
    }, static_cast<double>(w * c));
    return !nan.load();
}

// Separate branch-free passes over each row (in L1), so that each one vectorizes; the PReLU without a branch
// (random signs would mispredict half the time), the same values as y > 0 ? y : y*slope, NaN propagated.
static void channel_affine_impl(const float* x, int64_t rows, int64_t c, const float* mul, const float* add,
                                const float* slope, bool relu, float* out) {
    parallel_for(rows, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const float* xi = x + i * c;
            float* yi = out + i * c;
            if (mul) for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] * mul[j];
            else std::copy(xi, xi + c, yi);
            if (add) for (int64_t j = 0; j < c; ++j) yi[j] = yi[j] + add[j];
            if (slope) for (int64_t j = 0; j < c; ++j) yi[j] = std::max(yi[j], 0.0f) + std::min(yi[j], 0.0f) * slope[j];
            else if (relu) for (int64_t j = 0; j < c; ++j) yi[j] = std::max(yi[j], 0.0f);  // -inf -> 0, NaN kept
        }
    }, static_cast<double>(c) / 4);
}

static const IsaKernels kTable = {kIsaName, L, &pack_impl, &conv_impl, FL, &float_conv_impl,
                                  &float_depthwise_impl, kWeightLayout, IL, &int8_conv_impl, &int8_codes_impl,
                                  &max_pool_impl, &avg_pool_impl, &to_nhwc_impl, &channel_affine_impl};
