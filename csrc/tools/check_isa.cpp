// Development check: every instruction-set unit gives bit-identical results to the portable
// one (itself tested against PyTorch float64 by tests/test_kernels.py) on random shapes: binary
// convolutions, float convolutions (within 1e-5: FMA rounds once), the int8 input layer, max pooling.
// Built by CMake with the units' own flags (csrc/units.def):
//
//   cmake -S . -B build/tools -DXNORPP_PYTHON_MODULE=OFF -DXNORPP_TOOLS=ON && make -C build/tools check_isa
//   build/tools/check_isa avx512      (or any unit of units.def this CPU runs)
//
// For aarch64 the same, cross-built and run under qemu-aarch64 (scripts/test-arm64.sh); for AVX-512 on a CPU
// without it, with SIMDe (Debian: libsimde-dev): g++ -DXNORPP_SIMDE_AVX512 -I<simde include> on isa_avx512.cpp.
//
// Result on this project's AMD EPYC (no AVX-512), 2026-11-26: avx512: 937 binary convolutions,
// 0 mismatches; 184 float convolutions, all bit-identical (SIMDe has no FMA here). avx2: the same
// binary results; float within 5.5e-7 of the portable multiply-add (FMA rounds once).
// On a Zen 4 EPYC (AVX-512 VPOPCNTDQ native, AVX2's table-select kernel), 2026-11-27: avx2 and
// avx512 both 0 mismatches on 946 binary convolutions (including K > 2^15), float within 8e-7.
// 2026-12-01, Zen 4, after the int8 input layer and max pooling joined the units: avx2 and avx512
// (native, and on SIMDe 0.7.4 with its AVX512-VNNI dpbusd) 0 mismatches on 946 binary convolutions,
// 155 int8 input layers and 146 max poolings. The same after the int8 layer read its windows in place
// (avx2, avx512 native and on SIMDe). 2026-12-02, with the int8 layer's codes (200 rows) and a float output
// with a residual and its bits too (a fifth output mode): 950 binary convolutions, 147 int8 input layers,
// 137 max poolings, 0 mismatches on avx2, avx512 native and on SIMDe.
// 2026-12-06: neon (qemu-aarch64 -cpu cortex-a72 and -cpu max) and neon-dotprod (-cpu max), 950 binary
// convolutions, 147 int8 layers, 137 max and 44 average poolings: 0 mismatches; floats within 4.8e-7.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <random>
#include <string>
#include <vector>

#include "../core.h"
#include "../dispatch.h"

using namespace xnorpp;

// This tool's own packer for its random float weights (the library gets its words from
// xnorpp.packed.bits): sign bits [O][KH][KW][words_for(Cg)], bit 1 <=> w < 0.
static void pack_weights_oihw(const float* w, int64_t o, int64_t cg, int64_t kh, int64_t kw, uint32_t* out) {
    const int64_t cw = words_for(cg);
    std::memset(out, 0, sizeof(uint32_t) * o * kh * kw * cw);
    for (int64_t oo = 0; oo < o; ++oo)
        for (int64_t c = 0; c < cg; ++c)
            for (int64_t y = 0; y < kh; ++y)
                for (int64_t x = 0; x < kw; ++x) {
                    const float v = w[((oo * cg + c) * kh + y) * kw + x];
                    if (v < 0.0f) out[((oo * kh + y) * kw + x) * cw + c / 32] |= 1u << (c % 32);
                }
}

int main(int argc, char** argv) {
    const std::string name = argc > 1 ? argv[1] : "avx512";
    const IsaKernels* ref = kernels_portable();
    const IsaKernels* test = nullptr;
    try {
        test = isa_by_name(name);
    } catch (const std::exception& e) {
        std::printf("%s\n", e.what());
        return 2;
    }
    if (!isa_supported(name)) {  // (for amx this also asks Linux for the tile state)
        std::printf("%s: skipped: this CPU does not run it; it runs: %s\n", name.c_str(), supported_isas_text().c_str());
        return 0;
    }
    std::mt19937 rng(1234);
    auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::normal_distribution<float> normal;
    int failures = 0, checked = 0;
    for (int trial = 0; trial < 400; ++trial) {
        ConvShape s;
        s.groups = uni(1, 3);
        // The last trials have K > 2^16 (AVX2 moves its 16-bit sums to 32 bits on the way).
        const bool deep = trial >= 394;
        const int64_t cg = deep ? uni(30000, 40000) : uni(1, 140), og = uni(1, 70);
        s.c = cg * s.groups;
        s.o = og * s.groups;
        s.kh = deep ? 3 : uni(1, 5);
        s.kw = uni(1, 5);
        s.sh = uni(1, 2);
        s.sw = uni(1, 2);
        s.dh = uni(1, 2);
        s.dw = uni(1, 2);
        s.n = uni(1, 3);
        s.h = uni(1, 9);
        s.w = uni(1, 9);
        s.pt = uni(0, 2);
        s.pl = uni(0, 2);
        const int64_t pb = uni(0, 2), pr = uni(0, 2);
        s.pad = static_cast<PadMode>(uni(0, 2));
        s.oh = (s.h + s.pt + pb - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        s.ow = (s.w + s.pl + pr - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        if (s.h + s.pt + pb < s.dh * (s.kh - 1) + 1 || s.w + s.pl + pr < s.dw * (s.kw - 1) + 1) continue;
        s.ostride = padded_channels(s.o);
        const int64_t npix = s.n * s.h * s.w, nout = s.n * s.oh * s.ow;
        std::vector<float> x(npix * s.c), w(s.o * cg * s.kh * s.kw);
        for (auto& v : x) v = uni(0, 9) == 0 ? 0.0f : normal(rng);
        for (auto& v : w) v = normal(rng);
        std::vector<float> mul(s.c), add(s.c);
        for (auto& v : mul) v = normal(rng);
        for (auto& v : add) v = normal(rng);
        std::vector<uint32_t> xr(npix * s.pixel_words()), xt(xr.size());
        const bool affine = trial % 2;
        ref->pack(x.data(), npix, s.c, s.groups, affine ? mul.data() : nullptr, affine ? add.data() : nullptr, xr.data());
        test->pack(x.data(), npix, s.c, s.groups, affine ? mul.data() : nullptr, affine ? add.data() : nullptr, xt.data());
        if (xr != xt) {
            std::printf("pack mismatch in trial %d (c=%lld groups=%lld)\n", trial, (long long)s.c, (long long)s.groups);
            ++failures;
        }
        std::vector<uint32_t> words(s.o * s.kh * s.kw * s.cw());
        pack_weights_oihw(w.data(), s.o, cg, s.kh, s.kw, words.data());
        PreparedWeights pr_ref = prepare_weights(words.data(), s.o, cg, s.kh, s.kw, s.groups, *ref);
        PreparedWeights pr_test = prepare_weights(words.data(), s.o, cg, s.kh, s.kw, s.groups, *test);
        std::vector<float> scale(s.ostride, 0.f), bias(s.ostride, 0.f), slope(s.ostride, 0.f), pm(s.ostride, 0.f),
            pa(s.ostride, 0.f), smap(s.oh * s.ow * s.ostride, 0.f), kmap(nout);
        for (int64_t o = 0; o < s.o; ++o) {
            scale[o] = normal(rng);
            bias[o] = normal(rng);
            slope[o] = normal(rng);
            pm[o] = normal(rng);
            pa[o] = normal(rng);
            for (int64_t p = 0; p < s.oh * s.ow; ++p) smap[p * s.ostride + o] = normal(rng);
        }
        for (auto& v : kmap) v = normal(rng);
        std::vector<float> residual(nout * s.o);
        for (auto& v : residual) v = normal(rng);
        for (int mode = 0; mode < 5; ++mode) {
            Stage st;
            if (mode == 0) st.mode = OutMode::Int32;
            if (mode == 1) st.scale_o = scale.data(), st.kmap = kmap.data(), st.bias = bias.data(), st.slope = slope.data();
            if (mode == 2) st.scale_map = smap.data(), st.slope = slope.data();
            if (mode == 3) {
                if (s.groups != 1) continue;
                st.mode = OutMode::Packed, st.scale_o = scale.data(), st.bias = bias.data(), st.post_mul = pm.data(),
                st.post_add = pa.data();
            }
            std::vector<uint32_t> bits_r(nout * words_for(s.o), 0), bits_t(bits_r.size(), 0);
            if (mode == 4) {  // float output, a residual, and its bits too
                if (s.groups != 1) continue;
                st.scale_o = scale.data(), st.slope = slope.data(), st.residual = residual.data();
                st.post_mul = pm.data(), st.post_add = pa.data();
            }
            const size_t count = mode == 3 ? nout * words_for(s.o) : nout * s.o;
            std::vector<uint32_t> out_r(count, 0xdeadbeef), out_t(count, 0x12345678);
            Stage sr = st, stt = st;
            sr.out = out_r.data();
            stt.out = out_t.data();
            if (mode == 4) sr.bits = bits_r.data(), stt.bits = bits_t.data();
            ref->conv(s, xr.data(), pr_ref.blocks.data(), pr_ref.tapsum.data(), sr);
            test->conv(s, xr.data(), pr_test.blocks.data(), pr_test.tapsum.data(), stt);
            ++checked;
            if (std::memcmp(out_r.data(), out_t.data(), count * 4) != 0 || bits_r != bits_t) {
                std::printf("conv mismatch: trial %d mode %d (c=%lld o=%lld k=%lldx%lld groups=%lld pad=%d)\n", trial,
                            mode, (long long)s.c, (long long)s.o, (long long)s.kh, (long long)s.kw,
                            (long long)s.groups, (int)s.pad);
                ++failures;
            }
        }
    }
    // Output channels, kernel, stride, dilation (up to max_dw across) and batch of a float or int8 trial.
    auto random_window = [&](ConvShape& s, int max_dw) {
        s.o = uni(1, 100);
        s.kh = uni(1, 7);
        s.kw = uni(1, 7);
        s.sh = uni(1, 2);
        s.sw = uni(1, 2);
        s.dh = uni(1, 2);
        s.dw = uni(1, max_dw);
        s.n = uni(1, 2);
    };
    // The float convolution of the real layers: FMA (AVX2, AVX-512) rounds differently from the
    // portable multiply-add, so compare within 1e-5 of the largest output; count bit-identical ones.
    int float_checked = 0, float_identical = 0;
    double worst = 0.0;
    for (int trial = 0; trial < 300; ++trial) {
        ConvShape s;
        s.c = uni(1, 70);
        random_window(s, 3);
        s.h = uni(1, 24);  // already padded
        s.w = uni(1, 24);
        if (s.h < s.dh * (s.kh - 1) + 1 || s.w < s.dw * (s.kw - 1) + 1) continue;
        s.oh = (s.h - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        s.ow = (s.w - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        std::vector<float> x(s.n * s.h * s.w * s.c), w(s.o * s.c * s.kh * s.kw);
        for (auto& v : x) v = normal(rng);
        for (auto& v : w) v = normal(rng);
        auto stage_array = [&](int lanes, int which) {
            std::vector<float> v((s.o + lanes - 1) / lanes * lanes, 0.0f);
            std::mt19937 local(trial * 8 + which);  // the same values for both kernels, different per array
            std::normal_distribution<float> nd;
            for (int64_t o = 0; o < s.o; ++o) v[o] = nd(local);
            return v;
        };
        std::vector<float> out_r(s.n * s.oh * s.ow * s.o), out_t(out_r.size());
        const IsaKernels* both[2] = {ref, test};
        std::vector<float>* outs[2] = {&out_r, &out_t};
        for (int k = 0; k < 2; ++k) {
            const int lanes = both[k]->float_lanes;
            std::vector<float> bias = stage_array(lanes, 0), scale = stage_array(lanes, 1),
                               shift = stage_array(lanes, 2), slope = stage_array(lanes, 3);
            const std::vector<float> blocks = block_float_weights(w.data(), s.o, s.c, s.kh, s.kw, 1, lanes);
            FloatStage st{trial % 4 ? bias.data() : nullptr, trial % 2 ? scale.data() : nullptr,
                          trial % 2 ? shift.data() : nullptr, trial % 3 ? slope.data() : nullptr, trial % 3 == 0};
            both[k]->float_conv(s, x.data(), blocks.data(), st, outs[k]->data());
        }
        double peak = 0.0, diff = 0.0;
        for (size_t i = 0; i < out_r.size(); ++i) {
            peak = std::max(peak, std::abs(double(out_r[i])));
            diff = std::max(diff, std::abs(double(out_r[i]) - double(out_t[i])));
        }
        worst = std::max(worst, diff / std::max(peak, 1e-30));
        ++float_checked;
        float_identical += out_r == out_t;
        if (diff > 1e-5 * peak) {
            std::printf("float conv mismatch: trial %d (c=%lld o=%lld k=%lldx%lld d=%lldx%lld) rel %.2e\n", trial,
                        (long long)s.c, (long long)s.o, (long long)s.kh, (long long)s.kw, (long long)s.dh,
                        (long long)s.dw, diff / peak);
            ++failures;
        }
    }
    // The int8 input layer: exact integer sums, then the same float operations (no FMA contraction), so
    // the outputs must be bit-identical; and max pooling, which only compares and copies.
    int int8_checked = 0, pool_checked = 0, avg_checked = 0;
    for (int trial = 0; trial < 200; ++trial) {
        ConvShape s;
        s.c = uni(1, 4);
        random_window(s, 2);
        const int64_t h = uni(1, 20), w = uni(1, 20), pt = uni(0, 3), pb = uni(0, 3), pl = uni(0, 3), pr = uni(0, 3);
        s.h = h + pt + pb;  // the coded input is already padded
        s.w = w + pl + pr;
        if (s.h < s.dh * (s.kh - 1) + 1 || s.w < s.dw * (s.kw - 1) + 1) continue;
        s.oh = (s.h - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        s.ow = (s.w - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        const int64_t k = s.kh * s.kw * s.c, ostride = (s.o + 63) / 64 * 64 + 64;
        std::vector<uint8_t> codes(s.n * s.h * s.w * s.c + int8_input_slack(s.c, s.sw), 0);
        for (int64_t b = 0; b < s.n; ++b)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t x = 0; x < w * s.c; ++x)
                    codes[((b * s.h + y + pt) * s.w + pl) * s.c + x] = static_cast<uint8_t>(uni(0, 255));
        std::vector<int8_t> wq(s.o * k);
        for (auto& v : wq) v = static_cast<int8_t>(uni(-64, 64));
        std::vector<float> scale(ostride, 0.f), offset(ostride, 0.f), taps(s.kh * s.kw * ostride, 0.f),
            bias(ostride, 0.f), slope(ostride, 0.f);
        for (int64_t o = 0; o < s.o; ++o) {
            scale[o] = 0.01f * std::abs(normal(rng)), offset[o] = normal(rng), bias[o] = normal(rng);
            slope[o] = normal(rng);
            for (int64_t t = 0; t < s.kh * s.kw; ++t) taps[t * ostride + o] = normal(rng);
        }
        Int8Stage st;
        st.scale = scale.data(), st.offset = offset.data(), st.tap_offset = taps.data(), st.ostride = ostride;
        st.pad_top = pt, st.pad_left = pl, st.h = h, st.w = w;
        st.post = FloatStage{bias.data(), nullptr, nullptr, trial % 2 ? slope.data() : nullptr, trial % 2 == 0};
        std::vector<float> out_r(s.n * s.oh * s.ow * s.o), out_t(out_r.size());
        auto blocks = [&](const IsaKernels* isa) {
            return block_int8_weights(wq.data(), s.o, s.kh, s.kw, s.c, s.dw, isa->int8_lanes);
        };
        ref->int8_conv(s, codes.data(), blocks(ref).data(), st, out_r.data());
        test->int8_conv(s, codes.data(), blocks(test).data(), st, out_t.data());
        ++int8_checked;
        if (std::memcmp(out_r.data(), out_t.data(), out_r.size() * 4) != 0) {
            std::printf("int8 conv mismatch: trial %d (c=%lld o=%lld k=%lldx%lld)\n", trial, (long long)s.c,
                        (long long)s.o, (long long)s.kh, (long long)s.kw);
            ++failures;
        }
        // Max pooling of the codes as floats (a NaN and a -inf among them), same window geometry.
        ConvShape p = s;
        p.c = p.o = uni(1, 40);
        p.h = h, p.w = w, p.pt = std::min<int64_t>(pt, (s.kh - 1) / 2), p.pl = std::min<int64_t>(pl, (s.kw - 1) / 2);
        p.oh = (h + 2 * p.pt - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        p.ow = (w + 2 * p.pl - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        if (p.oh < 1 || p.ow < 1) continue;
        std::vector<float> x(s.n * h * w * p.c);
        for (auto& v : x) v = normal(rng);
        x[uni(0, int(x.size()) - 1)] = std::nanf("");
        x[uni(0, int(x.size()) - 1)] = -std::numeric_limits<float>::infinity();
        std::vector<float> pool_r(s.n * p.oh * p.ow * p.c), pool_t(pool_r.size());
        ref->max_pool(p, x.data(), pool_r.data());
        test->max_pool(p, x.data(), pool_t.data());
        ++pool_checked;
        if (std::memcmp(pool_r.data(), pool_t.data(), pool_r.size() * 4) != 0) {
            std::printf("max pool mismatch: trial %d\n", trial);
            ++failures;
        }
        // Average pooling of the same values (dilation 1; the divisor with and without the padding).
        if (s.dh != 1 || s.dw != 1) continue;
        ref->avg_pool(p, x.data(), p.pt, p.pl, trial % 2 == 0, pool_r.data());
        test->avg_pool(p, x.data(), p.pt, p.pl, trial % 2 == 0, pool_t.data());
        ++avg_checked;
        if (std::memcmp(pool_r.data(), pool_t.data(), pool_r.size() * 4) != 0) {
            std::printf("avg pool mismatch: trial %d\n", trial);
            ++failures;
        }
    }
    // The int8 layer's codes: halves, both clamp edges, infinities, and a NaN in some rows; any length.
    int codes_checked = 0;
    for (int trial = 0; trial < 200; ++trial) {
        const int64_t n = uni(1, 100);
        std::vector<float> x(n), mul(n), add(n);
        for (int64_t i = 0; i < n; ++i) {
            x[i] = 0.5f * static_cast<float>(uni(-40, 560)), mul[i] = uni(0, 3) ? 1.0f : 0.75f, add[i] = 0.0f;
            if (uni(0, 20) == 0) x[i] = uni(0, 1) ? std::numeric_limits<float>::infinity() : -x[i] * 1e30f;
        }
        if (trial % 4 == 0) x[uni(0, int(n) - 1)] = std::nanf("");
        std::vector<uint8_t> codes_r(n), codes_t(n);
        const bool ok_r = ref->int8_codes(x.data(), n, mul.data(), add.data(), codes_r.data());
        const bool ok_t = test->int8_codes(x.data(), n, mul.data(), add.data(), codes_t.data());
        ++codes_checked;
        if (ok_r != ok_t || (ok_r && codes_r != codes_t)) {
            std::printf("int8 codes mismatch: trial %d (n=%lld)\n", trial, (long long)n);
            ++failures;
        }
    }
    // The input transpose (a NaN refused) and the real layers' per-channel affine and activation: bit-identical.
    int layout_checked = 0;
    for (int trial = 0; trial < 100; ++trial) {
        const int64_t n = uni(1, 2), c = uni(1, 70), h = uni(1, 9), w = uni(1, 9);
        std::vector<float> x(n * c * h * w), mul(c), add(c), slope(c);
        for (auto* v : {&x, &mul, &add, &slope})
            for (auto& e : *v) e = normal(rng);
        if (trial % 5 == 0) x[uni(0, int(x.size()) - 1)] = std::nanf("");
        if (trial % 7 == 0) x[uni(0, int(x.size()) - 1)] = -std::numeric_limits<float>::infinity();
        std::vector<float> out_r(x.size()), out_t(x.size());
        const bool ok_r = ref->to_nhwc(x.data(), n, c, h, w, out_r.data());
        const bool ok_t = test->to_nhwc(x.data(), n, c, h, w, out_t.data());
        const bool affine = trial % 2, prelu = trial % 3 == 0, relu = trial % 3 == 1;
        std::vector<float> aff_r(x.size()), aff_t(x.size());
        ref->channel_affine(x.data(), n * h * w, c, affine ? mul.data() : nullptr, affine ? add.data() : nullptr,
                            prelu ? slope.data() : nullptr, relu, aff_r.data());
        test->channel_affine(x.data(), n * h * w, c, affine ? mul.data() : nullptr, affine ? add.data() : nullptr,
                             prelu ? slope.data() : nullptr, relu, aff_t.data());
        ++layout_checked;
        if (ok_r != ok_t || std::memcmp(out_r.data(), out_t.data(), out_r.size() * 4) != 0 ||
            std::memcmp(aff_r.data(), aff_t.data(), aff_r.size() * 4) != 0) {
            std::printf("to_nhwc or channel_affine mismatch: trial %d\n", trial);
            ++failures;
        }
    }
    std::printf("%s vs portable: %d convolutions compared; float: %d compared, %d bit-identical, max rel diff "
                "%.1e; int8 input layer: %d compared, its codes: %d; max pool: %d, average pool: %d, input transpose "
                "and channel affine: %d compared; %d mismatches\n",
                test->name, checked, float_checked, float_identical, worst, int8_checked, codes_checked, pool_checked,
                avg_checked, layout_checked, failures);
    return failures ? 1 : 0;
}
