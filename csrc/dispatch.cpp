// Instruction-set dispatch (chosen once from the CPU, or forced by XNORPP_ISA), the thread
// pool, and the ISA-independent weight preparation.
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <chrono>
#include <thread>
#include <algorithm>

#include "core.h"
#include "dispatch.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__linux__) && defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace xnorpp {

// ---------------------------------------------------------------- instruction sets
// The units (units.def) built into this binary: CMake names them in XNORPP_UNITS_BUILT ("amx,avx512,...");
// a build without it (by hand) has every unit of its architecture.
#if defined(__x86_64__) || defined(_M_X64)
constexpr const char* kArch = "x86_64";
#elif defined(__aarch64__) || defined(_M_ARM64)
constexpr const char* kArch = "aarch64";
#else
constexpr const char* kArch = "other";
#endif

static constexpr bool same(const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return *a == *b;
}
// Whether the comma-separated list holds the name.
static constexpr bool listed(const char* list, const char* name) {
    for (const char* p = list; *p;) {
        const char* q = name;
        while (*q && *p == *q) ++p, ++q;
        if (!*q && (*p == ',' || !*p)) return true;
        while (*p && *p != ',') ++p;
        if (*p) ++p;
    }
    return false;
}
static constexpr bool unit_built(const char* name, const char* arch) {
#if defined(XNORPP_UNITS_BUILT)
    (void)arch;
    return listed(XNORPP_UNITS_BUILT, name);
#else
    return same(arch, "any") || same(arch, kArch);
#endif
}

struct Unit {
    const char *name, *arch, *flags, *features;
    const IsaKernels* kernels;  // null when not built
};

// The table in units.def's order, with the kernels of the units built. (A unit not built is referenced only
// in a discarded statement, so it needs no definition.)
static const std::vector<Unit>& units() {
    static const std::vector<Unit> table = {
#define XNORPP_UNIT(id, name, arch, source, flags, features)                                 \
    {name, arch, flags, features, []() -> const IsaKernels* {                                \
         if constexpr (unit_built(name, arch)) return kernels_##id(); else return nullptr; \
     }()},
#include "units.def"
#undef XNORPP_UNIT
    };
    return table;
}

static const Unit* find_unit(const std::string& name) {
    for (const auto& u : units())
        if (name == u.name && u.kernels) return &u;
    return nullptr;
}

// Linux gives a process the AMX tile state (8 KiB per thread) only when asked, once; "" when granted,
// else why not.
static const std::string& amx_refusal() {
    static const std::string reason = []() -> std::string {
#if defined(__x86_64__) && defined(__linux__)
        constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
        if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0) return "";
        return std::string("Linux refused the AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM): ") +
               std::strerror(errno) + ")";
#else
        return "the AMX tile state is requested from Linux only";
#endif
    }();
    return reason;
}

// One CPU feature of units.def, read from the CPU (x86-64: CPUID, with the OS's consent for the
// registers), the kernel (Linux on aarch64: AT_HWCAP) or the system (macOS).
static bool cpu_feature(const std::string& f) {
#if defined(__x86_64__)
    __builtin_cpu_init();
#define XNORPP_X86_FEATURE(n) \
    if (f == n) return __builtin_cpu_supports(n);
    XNORPP_X86_FEATURE("avx512f") XNORPP_X86_FEATURE("avx512bw") XNORPP_X86_FEATURE("avx512vl")
    XNORPP_X86_FEATURE("avx512vpopcntdq") XNORPP_X86_FEATURE("avx512vnni") XNORPP_X86_FEATURE("avx2")
    XNORPP_X86_FEATURE("fma") XNORPP_X86_FEATURE("popcnt")
#undef XNORPP_X86_FEATURE
    if (f == "amx-tile" || f == "amx-int8") {  // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        return d >> (f == "amx-tile" ? 24 : 25) & 1u;
    }
#elif defined(__aarch64__) && defined(__linux__)
    if (f == "asimd") return getauxval(AT_HWCAP) & HWCAP_ASIMD;
    if (f == "asimddp") return getauxval(AT_HWCAP) & HWCAP_ASIMDDP;
#elif defined(__aarch64__) && defined(__APPLE__)
    if (f == "asimd") return true;  // every Apple arm64 CPU
    if (f == "asimddp") {
        int value = 0;
        size_t size = sizeof value;
        return sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, nullptr, 0) == 0 && value;
    }
#endif
    throw std::logic_error("units.def names the CPU feature '" + f + "', which dispatch.cpp cannot read here");
}

static std::vector<std::string> words(const std::string& text) {
    std::vector<std::string> out;
    for (size_t i = 0; i < text.size();) {
        const size_t j = std::min(text.find(' ', i), text.size());
        if (j > i) out.push_back(text.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

// The CPU has the unit's features (and this build has the unit).
static bool cpu_has(const Unit& u) {
    for (const auto& f : words(u.features))
        if (!cpu_feature(f)) return false;
    return true;
}
static bool needs_tiles(const Unit& u) {
    const auto f = words(u.features);
    return std::find(f.begin(), f.end(), "amx-tile") != f.end();
}

bool isa_supported(const std::string& name) {
    const Unit* u = find_unit(name);
    return u && cpu_has(*u) && (!needs_tiles(*u) || amx_refusal().empty());
}

std::vector<std::string> isa_names() {
    std::vector<std::string> names;
    for (const auto& u : units())
        if (u.kernels) names.push_back(u.name);
    return names;
}

std::vector<IsaUnitInfo> isa_units() {
    std::vector<IsaUnitInfo> out;
    for (const auto& u : units())
        out.push_back({u.name, u.arch, u.flags, words(u.features), u.kernels != nullptr,
                       u.kernels && isa_supported(u.name)});
    return out;
}

static std::string all_names() {
    std::string text;
    for (const auto& n : isa_names()) text += (text.empty() ? "" : ", ") + n;
    return text;
}

static const IsaKernels* kernels_by_name(const std::string& name) {
    if (const Unit* u = find_unit(name)) return u->kernels;
    throw std::invalid_argument("unknown instruction set '" + name + "'; valid here: " + all_names());
}

// Why this CPU cannot run a unit, for error messages.
static std::string unsupported_reason(const std::string& name) {
    const Unit* u = find_unit(name);
    if (u && cpu_has(*u) && needs_tiles(*u)) return amx_refusal();
    std::string missing;
    if (u)
        for (const auto& f : words(u->features))
            if (!cpu_feature(f)) missing += (missing.empty() ? "" : ", ") + f;
    return "not supported by this CPU (it lacks " + missing + ")";
}

static const IsaKernels* g_isa = nullptr;
static std::mutex g_isa_mutex;

static const IsaKernels* best_isa() {
    for (const auto& u : units()) {
        if (!u.kernels || !cpu_has(u)) continue;
        if (needs_tiles(u) && !amx_refusal().empty()) {
            // The CPU has AMX but Linux refused its tiles: say so once, and run the best of the others.
            static std::once_flag told;
            std::call_once(told, [] { std::fprintf(stderr, "xnorpp: %s; using the next unit\n", amx_refusal().c_str()); });
            continue;
        }
        return u.kernels;
    }
    return kernels_portable();
}

void select_isa(const std::string& name) {
    if (name.empty() || name == "auto") {
        std::lock_guard<std::mutex> lock(g_isa_mutex);
        g_isa = best_isa();
        return;
    }
    const IsaKernels* k = kernels_by_name(name);
    if (!isa_supported(name))
        throw std::runtime_error("instruction set '" + name + "' is " + unsupported_reason(name) +
                                 "; supported here: " + supported_isas_text());
    std::lock_guard<std::mutex> lock(g_isa_mutex);
    g_isa = k;
}

std::string supported_isas_text() {
    std::string text;
    for (const auto& n : isa_names())
        if (isa_supported(n)) text += (text.empty() ? "" : ", ") + n;
    return text;
}

void init_isa_from_env() {
    const char* env = std::getenv("XNORPP_ISA");
    const std::string name = env ? env : "";
    try {
        select_isa(name);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("XNORPP_ISA=") + name + ": " + e.what());
    }
}

const IsaKernels* current_isa() {
    std::lock_guard<std::mutex> lock(g_isa_mutex);
    if (!g_isa) g_isa = best_isa();
    return g_isa;
}

const IsaKernels* isa_by_name(const std::string& name) { return kernels_by_name(name); }

// ---------------------------------------------------------------- thread pool
namespace {
// Between calls, idle workers sleep on a condition variable, after spinning for g_idle_spin_us
// (default 0: they never spin; XNORPP_SPIN_US or set_spin_us). While a call holds them
// (hold_workers: a packed model's call, whose layers follow each other within microseconds), they
// wait for its next region by spinning (at most kMaxHold): waking a sleeping worker for every layer
// cost ~10 % of a 2-thread ResNet-18 call at batch 1 (AVX2 1.59x -> 1.82x over 1 thread, AVX-512
// 1.54x -> 1.71x, measured).
// A parallel region hands out chunks from an atomic counter; the caller works too and, once no
// chunk is left, closes the region and waits only for the workers that joined it: first by
// spinning, for at most kCallerSpin, because those workers are busy with the region's last chunks
// and waking a sleeping caller costs more than a chunk on a virtual machine (measured: 2 threads /
// 1 at batch 1 on ResNet-18, 1.50x -> 1.58x); then on a condition variable. A worker that wakes
// after the region closed (its core was busy with another process) finds it closed and goes back
// to sleep, so a descheduled worker costs the caller nothing beyond the chunk it may hold.
constexpr std::chrono::microseconds kCallerSpin{50};

int64_t spin_us_from_env() {
    const char* env = std::getenv("XNORPP_SPIN_US");
    return env ? std::max<int64_t>(0, std::atoll(env)) : 0;
}
std::atomic<int64_t> g_idle_spin_us{spin_us_from_env()};
std::atomic<int> g_holds{0};  // calls in progress that keep the workers spinning between their regions
constexpr std::chrono::milliseconds kMaxHold{5};  // a held worker still sleeps after this long without work

// Polls done() with pause instructions until it holds or `limit` has passed; true if it holds.
template <class Pred>
bool spin_until(Pred done, std::chrono::microseconds limit) {
    if (limit.count() <= 0) return done();
    const auto start = std::chrono::steady_clock::now();
    while (!done()) {
        for (int i = 0; i < 32; ++i) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            asm volatile("yield");
#endif
        }
        if (std::chrono::steady_clock::now() - start > limit) return false;
    }
    return true;
}

class Pool {
public:
    explicit Pool(int n) : size_(n) {
        for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(m_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int size() const { return size_; }
    // Runs chunk(c) for every c in [0, chunks) on the caller and up to helpers workers.
    void run(int helpers, int64_t chunks, const std::function<void(int64_t)>& chunk) {
        {
            std::lock_guard<std::mutex> lock(m_);
            job_ = &chunk;
            chunks_ = chunks;
            next_.store(0, std::memory_order_relaxed);
            seats_ = helpers;
            open_ = true;
            ++generation_;
        }
        if (helpers >= size_ - 1) cv_.notify_all();
        else
            for (int i = 0; i < helpers; ++i) cv_.notify_one();
        work(chunk, chunks);
        {
            std::lock_guard<std::mutex> lock(m_);
            open_ = false;  // late workers stay out
        }
        spin_until([this] { return active_.load(std::memory_order_acquire) == 0; }, kCallerSpin);
        std::unique_lock<std::mutex> lock(m_);
        done_.wait(lock, [this] { return active_ == 0; });
        job_ = nullptr;
    }

private:
    void work(const std::function<void(int64_t)>& chunk, int64_t chunks) {
        for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < chunks;) chunk(c);
    }
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            const std::function<void(int64_t)>* job;
            int64_t chunks;
            wait_for_work(seen);
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return stop_ || (generation_ != seen && open_ && seats_ > 0); });
                if (stop_) return;
                seen = generation_;
                --seats_;
                ++active_;
                job = job_;
                chunks = chunks_;
            }
            work(*job, chunks);
            std::lock_guard<std::mutex> lock(m_);
            if (--active_ == 0) done_.notify_one();
        }
    }
    // Spins until a region newer than `seen` opens, while a call holds the workers (at most kMaxHold) or
    // for the idle spin; then returns and the worker sleeps on the condition variable.
    void wait_for_work(uint64_t seen) const {
        const auto start = std::chrono::steady_clock::now();
        const std::chrono::microseconds idle(g_idle_spin_us.load(std::memory_order_relaxed));
        spin_until([&] {
            if (generation_.load(std::memory_order_acquire) != seen) return true;
            const auto waited = std::chrono::steady_clock::now() - start;
            return g_holds.load(std::memory_order_relaxed) > 0 ? waited > kMaxHold : waited > idle;
        }, kMaxHold);
    }
    int size_;
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_, done_;
    const std::function<void(int64_t)>* job_ = nullptr;
    int64_t chunks_ = 0;
    std::atomic<int64_t> next_{0};
    int seats_ = 0;
    std::atomic<int> active_{0};  // changed under m_, read without it while the caller spins
    bool open_ = false;
    std::atomic<uint64_t> generation_{0};  // changed under m_, read without it while a worker spins
    bool stop_ = false;
};

std::mutex g_pool_mutex;  // one parallel region at a time (callers may be several Python threads)
Pool* g_pool = nullptr;
int g_threads = 0;

int default_threads() {
    if (const char* env = std::getenv("XNORPP_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n > 0) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? static_cast<int>(hw) : 1;
}
}  // namespace

int num_threads() {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (g_threads == 0) g_threads = default_threads();
    return g_threads;
}

int64_t spin_us() { return g_idle_spin_us.load(); }

void hold_workers(bool hold) {
    if (hold) {
        g_holds.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    for (int held = g_holds.load(); ;) {
        if (held <= 0) throw std::invalid_argument("hold_workers(False) without a matching hold_workers(True)");
        if (g_holds.compare_exchange_weak(held, held - 1)) return;
    }
}

void set_spin_us(int64_t us) {
    if (us < 0) throw std::invalid_argument("spin must be >= 0 microseconds, got " + std::to_string(us));
    g_idle_spin_us.store(us);
}

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (g_pool && g_pool->size() < n) {  // a larger pool is kept: its extra workers just sleep
        delete g_pool;
        g_pool = nullptr;
    }
    g_threads = n;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, double cost_per_item) {
    if (n <= 0) return;
    constexpr double kMinPartCost = 20000.0;   // cycles: ~6 µs of kernel work per thread at least
    constexpr double kMinChunkCost = 5000.0;   // cycles per chunk handed out
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (g_threads == 0) g_threads = default_threads();
    const double total = static_cast<double>(n) * cost_per_item;
    const int parts = static_cast<int>(std::min<double>({static_cast<double>(g_threads), static_cast<double>(n),
                                                         std::max(1.0, total / kMinPartCost)}));
    if (parts <= 1) {
        fn(0, n);
        return;
    }
    if (!g_pool || g_pool->size() < parts) {
        delete g_pool;
        g_pool = new Pool(g_threads);
    }
    // Several chunks per thread, so that a thread slowed by another process is made up for.
    const int64_t chunks = static_cast<int64_t>(
        std::min<double>({static_cast<double>(n), 8.0 * parts, std::max<double>(parts, total / kMinChunkCost)}));
    g_pool->run(parts - 1, chunks, [&](int64_t c) { fn(n * c / chunks, n * (c + 1) / chunks); });
}

// ---------------------------------------------------------------- clock estimate
// Cycles per second of the calling core, from a chain of dependent integer adds (one cycle
// each on every x86-64 core of the last decade); best of several runs. For benchmarks only.
double estimate_cpu_hz() {
    double best = 0.0;
    for (int run = 0; run < 7; ++run) {
        uint64_t x = static_cast<uint64_t>(run);
        const uint64_t iters = 4'000'000;
        const auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < iters; ++i) {
#define XNORPP_DEP_ADD x += i; asm volatile("" : "+r"(x));
            XNORPP_DEP_ADD XNORPP_DEP_ADD XNORPP_DEP_ADD XNORPP_DEP_ADD
            XNORPP_DEP_ADD XNORPP_DEP_ADD XNORPP_DEP_ADD XNORPP_DEP_ADD
#undef XNORPP_DEP_ADD
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        asm volatile("" : : "r"(x));
        best = std::max(best, 8.0 * iters / seconds);
    }
    return best;
}

// ---------------------------------------------------------------- weights
static PreparedWeights prepare_weights_as(const uint32_t* words, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                                          int64_t groups, int lanes, WeightLayout layout) {
    const int64_t cw = words_for(cg), taps = kh * kw, og = o / groups;
    const int64_t nblocks = (og + lanes - 1) / lanes, chunk = weight_words_per_tap_word(layout, lanes);
    PreparedWeights pw;
    pw.lanes = lanes;
    pw.layout = layout;
    pw.blocks.assign(static_cast<size_t>(groups * nblocks * taps * cw * chunk), 0u);
    uint8_t* bytes = reinterpret_cast<uint8_t*>(pw.blocks.data());
    const int64_t ostride = padded_channels(o);
    pw.tapsum.assign(static_cast<size_t>(taps * ostride), 0);
    for (int64_t oo = 0; oo < o; ++oo) {
        const int64_t g = oo / og, oi = oo % og, ob = oi / lanes, l = oi % lanes;
        for (int64_t t = 0; t < taps; ++t) {
            int32_t negatives = 0;
            for (int64_t k = 0; k < cw; ++k) {
                const uint32_t word = words[(oo * taps + t) * cw + k];
                const int64_t at = (((g * nblocks + ob) * taps + t) * cw + k) * chunk;  // in words
                if (layout == WeightLayout::Words) {
                    pw.blocks[at + l] = word;
                } else {  // [byte j][lanes/32][low|high][32]: one channel per byte
                    for (int j = 0; j < 4; ++j)
                        for (int half = 0; half < 2; ++half)
                            bytes[at * 4 + (j * (lanes / 32) + l / 32) * 64 + half * 32 + l % 32] =
                                static_cast<uint8_t>((word >> (8 * j + 4 * half)) & 15u);
                }
                negatives += static_cast<int32_t>(popcount32_swar(word));
            }
            pw.tapsum[t * ostride + oo] = static_cast<int32_t>(cg) - 2 * negatives;  // Σ_c sign(w)
        }
    }
    return pw;
}

// WeightLayout::SignBytes (core.h): each weight as a signed byte, or a bit, in AMX B tiles.
static PreparedWeights prepare_sign_bytes(const uint32_t* words, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                                          int64_t groups, int lanes) {
    const int64_t cw = words_for(cg), taps = kh * kw, og = o / groups, nblocks = (og + lanes - 1) / lanes;
    const AmxK k(cg, og, taps, groups);
    PreparedWeights pw;  // no tapsum: the tiles read the padding as bytes of the pad value
    pw.lanes = lanes;
    pw.layout = WeightLayout::SignBytes;
    const int64_t bytes_per_block = k.bits ? k.block_bytes / 8 : k.block_bytes;
    pw.blocks.assign(static_cast<size_t>(groups * nblocks * bytes_per_block / 4), 0u);
    int8_t* bytes = reinterpret_cast<int8_t*>(pw.blocks.data());
    uint64_t* rows = reinterpret_cast<uint64_t*>(pw.blocks.data());
    for (int64_t oo = 0; oo < o; ++oo) {
        const int64_t g = oo / og, oi = oo % og, ob = oi / lanes, l = oi % lanes;
        for (int64_t t = 0; t < taps; ++t)
            for (int64_t c = 0; c < cg; ++c) {
                const bool negative = words[(oo * taps + t) * cw + c / 32] >> (c % 32) & 1u;
                const int64_t chunk = c / k.kc, r = c % k.kc;  // B tile row r / 4, byte r % 4 of the lane
                const int64_t tile = ((((g * nblocks + ob) * taps + t) * k.chunks + chunk) * (lanes / 16) + l / 16);
                const int64_t byte = (r / 4) * 64 + (l % 16) * 4 + r % 4;  // within the tile
                if (!k.bits)
                    bytes[tile * k.kc * 16 + byte] = negative ? -1 : 1;
                else if (negative)
                    rows[tile * k.kc / 4 + byte / 64] |= uint64_t{1} << (byte % 64);
            }
    }
    return pw;
}

PreparedWeights prepare_weights(const uint32_t* words, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                                int64_t groups, const IsaKernels& isa) {
    if (isa.weight_layout == WeightLayout::SignBytes) return prepare_sign_bytes(words, o, cg, kh, kw, groups, isa.lanes);
    return prepare_weights_as(words, o, cg, kh, kw, groups, isa.lanes, isa.weight_layout);
}

std::vector<float> block_float_weights(const float* w, int64_t o, int64_t cg, int64_t kh, int64_t kw, int64_t groups,
                                       int lanes) {
    const int64_t og = o / groups, nblocks = (og + lanes - 1) / lanes, kdim = kh * kw * cg;
    std::vector<float> blocks(static_cast<size_t>(groups * nblocks * kdim * lanes), 0.0f);
    for (int64_t oo = 0; oo < o; ++oo) {
        const int64_t g = oo / og, j = oo % og;  // output channel j of group g
        float* block = blocks.data() + ((g * nblocks + j / lanes) * kdim) * lanes + j % lanes;
        for (int64_t cc = 0; cc < cg; ++cc)
            for (int64_t ky = 0; ky < kh; ++ky)
                for (int64_t kx = 0; kx < kw; ++kx)
                    block[((ky * kw + kx) * cg + cc) * lanes] = w[((oo * cg + cc) * kh + ky) * kw + kx];
    }
    return blocks;
}

std::vector<float> block_depthwise_weights(const float* w, int64_t c, int64_t kh, int64_t kw, int lanes) {
    const int64_t cpad = (c + lanes - 1) / lanes * lanes, taps = kh * kw;
    std::vector<float> out(static_cast<size_t>(taps * cpad), 0.0f);
    for (int64_t cc = 0; cc < c; ++cc)
        for (int64_t t = 0; t < taps; ++t) out[t * cpad + cc] = w[cc * taps + t];
    return out;
}

std::vector<int8_t> block_int8_weights(const int8_t* w, int64_t o, int64_t kh, int64_t kw, int64_t c, int64_t dw,
                                       int lanes) {
    const Int8Runs runs(kh, kw, c, dw);
    const int64_t k = kh * kw * c, k4 = runs.k4(), nblocks = (o + lanes - 1) / lanes;
    std::vector<int8_t> blocks(static_cast<size_t>(nblocks * k4 * lanes), 0);
    for (int64_t oo = 0; oo < o; ++oo)
        for (int64_t kk = 0; kk < k; ++kk) {  // runs follow the (ky, kx, c) order: code kk is run kk / len
            const int64_t at = kk / runs.len * runs.padded + kk % runs.len;
            blocks[((oo / lanes * (k4 / 4) + at / 4) * lanes + oo % lanes) * 4 + at % 4] = w[oo * k + kk];
        }
    return blocks;
}

}  // namespace xnorpp
