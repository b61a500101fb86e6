// Development probe: how fast this core's AMX tile unit runs right now. Four independent TDPBSSD chains on
// 16x16x64 tiles, 9 steps per item as a 3x3 binary conv's (tile loads from L1, stores between items), timed;
// prints nanoseconds per TDPBSSD (16384 byte products). On a dedicated Sapphire Rapids core one takes 16 cycles.
// On the shared cloud machines of this project it took 6.7-7.6 ns at ~2.8 GHz when the tiles were free and
// 16-29 ns when another tenant used them (the vCPU's sibling thread on the host shares the tile unit), minutes
// apart: time AMX against other engines in interleaved rounds, and read this probe beside the numbers.
//
//   g++ -O2 -mamx-tile -mamx-int8 csrc/tools/amx_probe.cpp -o amx_probe && ./amx_probe
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>

struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

alignas(64) static int8_t a[9 * 2048], b[9 * 2048];
alignas(64) static int32_t c[32 * 32];

int main() {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) {
        std::printf("no AMX: Linux refused the tile state\n");
        return 1;
    }
    TileConfig config;
    for (int t = 0; t < 8; ++t) config.colsb[t] = 64, config.rows[t] = 16;
    _tile_loadconfig(&config);
    const long items = 200000;
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < items; ++i) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int k = 0; k < 9; ++k) {
            _tile_loadd(6, b + k * 2048, 64);
            _tile_loadd(7, b + k * 2048 + 1024, 64);
            _tile_loadd(4, a + k * 64, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_loadd(5, a + 1024 + k * 64, 64);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
        _tile_stored(0, c, 128);
        _tile_stored(1, c + 16, 128);
        _tile_stored(2, c + 512, 128);
        _tile_stored(3, c + 528, 128);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    _tile_release();
    std::printf("%.2f ns per TDPBSSD (%.0f GMAC/s)\n", seconds / (items * 36) * 1e9, items * 36 * 16384.0 / seconds / 1e9);
    return 0;
}
