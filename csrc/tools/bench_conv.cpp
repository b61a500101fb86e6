// Development benchmark: binary MACs per cycle of each instruction-set unit's convolution on the
// ResNet-18 3x3 layer shapes (batch 1, packed input), timed in interleaved rounds, best round, with
// four output stages: int32 dot products; the fused float stage (a factored Γ as ResNet-18's gamma-o-h-w
// reaches the kernel: per-row and per-position scales; bias, PReLU); the same stage with an affine and the
// output packed to bits (a layer that hands over bits); and the float stage with a residual added and the
// bits beside it (ResNet's second conv of a block). With 1 thread, time is the thread's CPU time (a shared
// machine's other jobs do not count) and the clock is measured on it with a dependent-add chain; with more
// threads, wall time and the same clock.
//
//   cmake -S . -B build/tools -DXNORPP_PYTHON_MODULE=OFF -DXNORPP_TOOLS=ON && make -C build/tools bench_conv
//   build/tools/bench_conv avx2 [threads] [rounds]      (the units' flags: csrc/units.def)
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../core.h"
#include "../dispatch.h"

using namespace xnorpp;

static double now(bool cpu) {
    timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double clock_hz() {  // cycles per second of this thread's CPU time: 1 cycle per dependent add
    double best = 0.0;
    for (int run = 0; run < 7; ++run) {
        uint64_t x = run;
        const uint64_t iters = 4'000'000;
        const double t0 = now(true);
        for (uint64_t i = 0; i < iters; ++i) {
#define DEP_ADD x += i; asm volatile("" : "+r"(x));
            DEP_ADD DEP_ADD DEP_ADD DEP_ADD DEP_ADD DEP_ADD DEP_ADD DEP_ADD
#undef DEP_ADD
        }
        const double dt = now(true) - t0;
        asm volatile("" : : "r"(x));
        best = std::max(best, 8.0 * iters / dt);
    }
    return best;
}

int main(int argc, char** argv) {
    const std::string name = argc > 1 ? argv[1] : "avx2";
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 30;
    if (!isa_supported(name)) {
        std::printf("%s: not supported by this CPU\n", name.c_str());
        return 1;
    }
    const IsaKernels* k = isa_by_name(name);
    set_num_threads(threads);
    struct Layer { const char* name; int hw, c, o, stride; };
    const Layer layers[] = {{"56x56x64", 56, 64, 64, 1},       {"28x28x128", 28, 128, 128, 1},
                            {"14x14x256", 14, 256, 256, 1},    {"7x7x512", 7, 512, 512, 1},
                            {"s2 56>28 64>128", 56, 64, 128, 2}, {"s2 28>14 128>256", 28, 128, 256, 2},
                            {"s2 14>7 256>512", 14, 256, 512, 2}};
    std::mt19937 rng(1);
    std::uniform_int_distribution<uint32_t> bits;
    // The output stages timed: int32, float, bits, and float with a residual and the bits too.
    constexpr int kModes = 4;
    const OutMode modes[kModes] = {OutMode::Int32, OutMode::Float, OutMode::Packed, OutMode::Float};
    struct Case {
        ConvShape s;
        std::vector<uint32_t> x, out, bits_out;
        std::vector<float> residual;
        PreparedWeights w;
        std::vector<float> scale_rows, scale_pos, bias, slope, post_mul, post_add;
        double best[kModes] = {1e30, 1e30, 1e30, 1e30};
    };
    std::vector<Case> cases;
    for (const Layer& l : layers) {
        Case c;
        ConvShape& s = c.s;
        s.h = s.w = l.hw;
        s.c = l.c;
        s.o = l.o;
        s.kh = s.kw = 3;
        s.sh = s.sw = l.stride;
        s.pt = s.pl = 1;
        s.oh = s.ow = (l.hw + 2 - 3) / l.stride + 1;
        s.ostride = padded_channels(s.o);
        c.x.resize(s.h * s.w * s.pixel_words());
        for (auto& v : c.x) v = bits(rng);
        std::vector<uint32_t> words(s.o * 9 * s.cw());
        for (auto& v : words) v = bits(rng);
        c.w = prepare_weights(words.data(), s.o, s.c, 3, 3, 1, *k);
        c.out.resize(s.oh * s.ow * s.o);
        c.bits_out.resize(s.oh * s.ow * words_for(s.o));
        c.residual.assign(s.oh * s.ow * s.o, 0.75f);
        c.scale_rows.assign(s.oh * s.ostride, 0.5f);
        c.scale_pos.assign(s.oh * s.ow, 1.5f);
        c.bias.assign(s.ostride, 0.1f);
        c.slope.assign(s.ostride, 0.25f);
        c.post_mul.assign(s.ostride, 1.5f);
        c.post_add.assign(s.ostride, -0.2f);
        cases.push_back(std::move(c));
    }
    for (int r = 0; r < rounds; ++r)
        for (Case& c : cases)
            for (int m = 0; m < kModes; ++m) {
                Stage st;
                st.mode = modes[m];
                if (st.mode != OutMode::Int32)
                    st.scale_rows = c.scale_rows.data(), st.scale_pos = c.scale_pos.data(), st.bias = c.bias.data(),
                    st.slope = c.slope.data();
                if (m >= 2) st.post_mul = c.post_mul.data(), st.post_add = c.post_add.data();
                if (m == 3) st.residual = c.residual.data(), st.bits = c.bits_out.data();
                st.out = c.out.data();
                const double t0 = now(threads == 1);
                k->conv(c.s, c.x.data(), c.w.blocks.data(), c.w.tapsum.data(), st);
                const double dt = now(threads == 1) - t0;
                if (r > 0) c.best[m] = std::min(c.best[m], dt);
            }
    const double hz = clock_hz();
    std::printf("%s, %d thread(s), clock %.2f GHz, %s time (best of %d rounds)\n", k->name, threads, hz / 1e9,
                threads == 1 ? "thread CPU" : "wall", rounds - 1);
    std::printf("  %-18s %10s %10s %10s %10s  %s\n", "layer", "int32 us", "float us", "bits us", "f+r+b us",
                "binary MACs/cycle/thread (int32 output)");
    for (size_t i = 0; i < cases.size(); ++i) {
        const ConvShape& s = cases[i].s;
        const double macs = double(s.oh * s.ow) * s.o * s.c * 9;
        const double* b = cases[i].best;
        std::printf("  %-18s %10.1f %10.1f %10.1f %10.1f  %6.1f\n", layers[i].name, b[0] * 1e6, b[1] * 1e6,
                    b[2] * 1e6, b[3] * 1e6, macs / b[0] / hz / threads);
    }
    return 0;
}
