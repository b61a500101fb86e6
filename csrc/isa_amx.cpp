// AMX unit (Sapphire Rapids and later: amx_tile, amx_int8): the binary convolutions as int8 tile products,
// everything else as the AVX-512 unit (avx512_unit.h), which every CPU with AMX has.
//
// A binary dot product is an int8 one: with the signs s = ±1 of the activations and w = ±1 of the weights as
// signed bytes, TDPBSSD sums 16 x 16 x 64 products s·w per instruction (1024 per cycle, three times
// AVX-512's XOR + VPOPCNTQ + ADD). Padding bytes hold the pad value itself (0 for zero padding), so every
// window is exact with no correction. So a convolution
//   1. expands its packed input into a spatially padded image of sign bytes (expand_signs; one AVX-512
//      blend per 64 channels of a pixel), its weights expanded once at load (WeightLayout::SignBytes), or,
//      for a large deep layer, a B tile per step as the tiles multiply (AmxK::bits);
//   2. multiplies tiles: A = 16 output positions x kc input channels of one tap (rows a fixed stride apart
//      in the padded image, so a tile loads in place, no im2col), B = kc channels x 16 output channels;
//      a work item is 2 A tiles x 2 B tiles (32 positions x 32 channels, 4 accumulator tiles), or for a deep
//      layer 4 A tiles x 1 B tile (AmxK::tall: each B tile loaded once for 64 positions);
//   3. stores the accumulators and runs the fused output stage of the other units (kernels_impl.h) while
//      the tiles compute the next item.
// Positions: with stride 1, a tile's 16 rows are 16 consecutive positions of the padded image's rows,
// the positions past a row's last output column included (computed and dropped), so a 7x7 output takes 4
// tiles instead of 7; with other strides a tile is up to 16 output columns of one output row.
// Linux grants the tile state to a process only on request (dispatch.cpp: arch_prctl); each thread loads
// its tile configuration at the start of its share of a call.
// Built with the AVX-512 unit's flags and -mamx-tile -mamx-int8 (csrc/units.def).
#include "core.h"

#include <immintrin.h>

namespace xnorpp {
namespace isa_amx {

constexpr const char* kIsaName = "amx";
#include "avx512_unit.h"

static_assert(L == 32, "a work item covers 2 B tiles of 16 output channels: the output stage's L");
constexpr int kRows = 16;  // positions per A tile

// The tile configuration (palette 1): tiles 0-3 accumulate C[a][b] (16 positions x 16 output channels,
// int32), 4-5 hold A tiles (16 positions x kc bytes), 6-7 B tiles (kc / 4 rows x 16 channels x 4 bytes).
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
    explicit TileConfig(int64_t kc) {
        for (int t = 0; t < 4; ++t) colsb[t] = 64, rows[t] = kRows;
        for (int t = 4; t < 6; ++t) colsb[t] = static_cast<uint16_t>(kc), rows[t] = kRows;
        for (int t = 6; t < 8; ++t) colsb[t] = 64, rows[t] = static_cast<uint8_t>(kc / 4);
    }
};

// The padded image of sign bytes a convolution reads: [N][hp][wp][groups * cbg] (+ slack for the rows past
// the last position that a tile computes and drops).
struct SignImage {
    AmxK k;
    int64_t hp, wp, cb;  // padded height and width, bytes per pixel
    explicit SignImage(const ConvShape& s)
        : k(s.cg(), s.og(), s.taps(), s.groups),
          hp(std::max(s.pt + s.h, (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1)),
          wp(std::max(s.pl + s.w, (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1)),
          cb(s.groups * k.cbg) {}
    int64_t pixels(const ConvShape& s) const { return s.n * hp * wp + kRows * s.sw + s.kw * s.dw + 1; }
};

// Packed words (bit 1 <=> -1) to sign bytes, and the padding to the pad value, 64 channels at a time.
static void expand_signs(const ConvShape& s, const uint32_t* x, const SignImage& im, int8_t* out) {
    const int64_t cg = s.cg(), cw = s.cw(), pw = s.pixel_words(), cbg = im.k.cbg;
    // Per 64 bytes of a pixel: where its bits start, whether a second word follows, which bytes hold a true
    // channel (the others are 0) and which bytes of the pixel it writes.
    struct Piece { int64_t byte, word; bool two_words; __mmask64 valid, store; };
    std::vector<Piece> pieces;
    auto low_bits = [](int64_t n) { return _cvtu64_mask64(n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1); };
    for (int64_t g = 0; g < s.groups; ++g)
        for (int64_t c0 = 0; c0 < cbg; c0 += 64)
            pieces.push_back({g * cbg + c0, g * cw + c0 / 32, c0 / 32 + 1 < cw,
                              low_bits(std::clamp<int64_t>(cg - c0, 0, 64)), low_bits(std::min<int64_t>(64, cbg - c0))});
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    // A padding pixel: +1 or -1 on the true channels (0 past them), or all 0 for zero padding.
    std::vector<int8_t> pad(static_cast<size_t>(im.cb) + 64);
    for (const Piece& p : pieces) {
        const __mmask64 keep = s.pad == PadMode::Zero ? _cvtu64_mask64(0) : p.valid;
        _mm512_mask_storeu_epi8(pad.data() + p.byte, p.store,
                                _mm512_maskz_mov_epi8(keep, s.pad == PadMode::MinusOne ? minus : plus));
    }
    auto fill_pad = [&](int8_t* dst, int64_t pixels) {
        for (int64_t i = 0; i < pixels; ++i) std::memcpy(dst + i * im.cb, pad.data(), static_cast<size_t>(im.cb));
    };
    const int64_t right = im.wp - s.pl - s.w;
    parallel_for(s.n * im.hp, [&](int64_t rb, int64_t re) {
        for (int64_t row = rb; row < re; ++row) {
            const int64_t n = row / im.hp, iy = row % im.hp - s.pt;
            int8_t* dst = out + row * im.wp * im.cb;
            if (iy < 0 || iy >= s.h) {
                fill_pad(dst, im.wp);
                continue;
            }
            fill_pad(dst, s.pl);
            fill_pad(dst + (s.pl + s.w) * im.cb, right);
            const uint32_t* src = x + (n * s.h + iy) * s.w * pw;
            dst += s.pl * im.cb;
            for (const Piece& p : pieces) {  // a piece at a time: the loop over the row's pixels stays tight
                const uint32_t* w = src + p.word;
                int8_t* d = dst + p.byte;
                for (int64_t ix = 0; ix < s.w; ++ix, w += pw, d += im.cb) {
                    const uint64_t bits = p.two_words ? (uint64_t{w[1]} << 32 | w[0]) : w[0];
                    const __m512i v = _mm512_maskz_mov_epi8(p.valid, _mm512_mask_blend_epi8(_cvtu64_mask64(bits), plus, minus));
                    _mm512_mask_storeu_epi8(d, p.store, v);
                }
            }
        }
    }, static_cast<double>(im.wp * (pieces.size() + 1) * 2));
    // The slack: positions a last tile computes and drops.
    std::fill(out + s.n * im.hp * im.wp * im.cb, out + im.pixels(s) * im.cb, int8_t{0});
}

// Where the tiles of one image start and how their rows step, in pixels of the padded image.
struct TileGrid {
    bool linear;            // stride 1: tiles run along the padded rows (wp positions per output row)
    int64_t per_row;        // otherwise: tiles per output row
    int64_t count;          // tiles per image
    TileGrid(const ConvShape& s, const SignImage& im)
        : linear(s.sh == 1 && s.sw == 1), per_row((s.ow + kRows - 1) / kRows),
          count(linear ? (s.oh * im.wp + kRows - 1) / kRows : s.oh * per_row) {}
    // First position (padded-image pixel of the window origin, within the image) and first output row / column.
    void start(int64_t tile, const ConvShape& s, const SignImage& im, int64_t& pixel, int64_t& oy, int64_t& ox) const {
        if (linear) {
            const int64_t p = tile * kRows;
            pixel = p, oy = p / im.wp, ox = p % im.wp;
        } else {
            oy = tile / per_row, ox = tile % per_row * kRows;
            pixel = oy * s.sh * im.wp + ox * s.sw;
        }
    }
};

// The output positions of a tile's rows, the same in every image: the accumulator row, the position within
// the image (oy * ow + ox) and the output row.
struct TileRows {
    int count = 0;
    int8_t row[kRows];
    int32_t q[kRows], oy[kRows];
};

// The output stage of one item's accumulators [NA tiles * 16 positions][W = 32 or 16 channels], run a few
// rows at a time while the tiles compute the next item: the core's vector units and the tile unit work side
// by side (run after it, the stage took as long as the tile products on ResNet's first layers).
struct PendingRows {
    const int32_t* acc = nullptr;
    const TileRows* tiles[4] = {};
    int na = 0, a = 0, next = 0, width = 0, nv = 0;
    int64_t q0 = 0, o0 = 0;  // first output position of the image, first channel
    void run(const ConvShape& s, const Stage& st, int rows) {
        for (; a < na && rows > 0; ++a, next = 0) {
            const TileRows& t = *tiles[a];
            const int end = std::min(t.count, next + rows);
            const int32_t* tile_acc = acc + a * kRows * width;
            if (width == 16)
                output_rows<16>(s, st, tile_acc, end - next, t.row + next, t.q + next, t.oy + next, q0, o0);
            else if (nv == L)
                output_rows(s, st, tile_acc, end - next, t.row + next, t.q + next, t.oy + next, q0, o0);
            else
                for (int i = next; i < end; ++i) output_stage(s, st, tile_acc + t.row[i] * L, q0 + t.q[i], t.oy[i], o0, nv);
            rows -= end - next;
            next = end;
            if (next < t.count) return;
        }
    }
};

// What a tile product reads: its A tiles' first window origins, the byte offsets of the taps from them,
// the row stride, and the weights of its block of channels (B tiles, step after step).
struct Operands {
    const int8_t* a[4];
    const int64_t* tap_offset;
    int64_t a_stride;
    const void* weights;
};

// A wide item: NA (1 or 2) A tiles x 2 B tiles (32 channels), weights as bytes [step][2 B tiles]; stored to
// acc [NA * 16][32]. Meanwhile the previous item's output stage, rows_per_step rows per step.
template <int NA>
static void product_wide(const ConvShape& s, const Stage& st, const SignImage& im, const Operands& in, int32_t* acc,
                         PendingRows& previous, int rows_per_step) {
    const int64_t kc = im.k.kc, tile_bytes = kc * 16;
    const int8_t* wb = static_cast<const int8_t*>(in.weights);
    _tile_zero(0);
    _tile_zero(1);
    if (NA == 2) {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t t = 0; t < s.taps(); ++t)
        for (int64_t c = 0; c < im.k.chunks; ++c, wb += 2 * tile_bytes) {
            const int64_t off = in.tap_offset[t] + c * kc;
            _tile_loadd(6, wb, 64);
            _tile_loadd(7, wb + tile_bytes, 64);
            _tile_loadd(4, in.a[0] + off, in.a_stride);
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            if (NA == 2) {
                _tile_loadd(5, in.a[1] + off, in.a_stride);
                _tile_dpbssd(2, 5, 6);
                _tile_dpbssd(3, 5, 7);
            }
            previous.run(s, st, rows_per_step);
        }
    previous.run(s, st, 2 * kRows);
    _tile_stored(0, acc, 2 * 64);
    _tile_stored(1, acc + 16, 2 * 64);
    if (NA == 2) {
        _tile_stored(2, acc + kRows * 32, 2 * 64);
        _tile_stored(3, acc + kRows * 32 + 16, 2 * 64);
    }
}

// One step of a tall item: B tile TB (6 or 7, alternating so that a load never waits for the product
// before) times NA A tiles (4 and 5 alternating) into accumulators 0..NA-1. (GCC's tile intrinsics paste the
// tile number into the instruction's text: it must be a literal, hence a macro for the two B tiles.)
#define XNORPP_TALL_STEP(TB)                                                  \
    template <int NA>                                                         \
    static inline void tall_step_##TB(const Operands& in, int64_t off, const int8_t* b) { \
        _tile_loadd(TB, b, 64);                                               \
        _tile_loadd(4, in.a[0] + off, in.a_stride);                           \
        _tile_dpbssd(0, 4, TB);                                               \
        if (NA > 1) {                                                         \
            _tile_loadd(5, in.a[1] + off, in.a_stride);                       \
            _tile_dpbssd(1, 5, TB);                                           \
        }                                                                     \
        if (NA > 2) {                                                         \
            _tile_loadd(4, in.a[2] + off, in.a_stride);                       \
            _tile_dpbssd(2, 4, TB);                                           \
        }                                                                     \
        if (NA > 3) {                                                         \
            _tile_loadd(5, in.a[3] + off, in.a_stride);                       \
            _tile_dpbssd(3, 5, TB);                                           \
        }                                                                     \
    }
XNORPP_TALL_STEP(6)
XNORPP_TALL_STEP(7)
#undef XNORPP_TALL_STEP

// A B tile from its sign bits: each 64-bit row to 64 bytes of ±1.
static inline void expand_weights(const uint64_t* bits, int64_t rows, int8_t* out) {
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    for (int64_t r = 0; r < rows; ++r)
        _mm512_store_si512(out + r * 64, _mm512_mask_blend_epi8(_cvtu64_mask64(bits[r]), plus, minus));
}

// A tall item (AmxK::tall): NA (1..4) A tiles x one B tile, half `half` of a block of 32 channels, stored to
// acc [NA * 16][16]. Weights as bytes, or as bits (BITS), a B tile expanded a step ahead into one of two
// staging buffers (a tile loads what the core stored only once the stores have left).
template <int NA, bool BITS>
static void product_tall(const ConvShape& s, const Stage& st, const SignImage& im, const Operands& in, int half,
                         int32_t* acc, PendingRows& previous, int rows_per_step) {
    const int64_t kc = im.k.kc, tile_bytes = kc * 16, steps = im.k.steps;
    const int8_t* wb = static_cast<const int8_t*>(in.weights) + half * tile_bytes;
    const uint64_t* wbits = static_cast<const uint64_t*>(in.weights) + half * kc / 4;
    alignas(64) int8_t staged[2][16 * 64];
    if (BITS) expand_weights(wbits, kc / 4, staged[0]);
    _tile_zero(0);
    if (NA > 1) _tile_zero(1);
    if (NA > 2) _tile_zero(2);
    if (NA > 3) _tile_zero(3);
    for (int64_t step = 0; step < steps; ++step) {
        const int64_t off = in.tap_offset[step / im.k.chunks] + step % im.k.chunks * kc;
        const int8_t* b = BITS ? staged[step % 2] : wb + step * 2 * tile_bytes;
        if (step % 2 == 0) tall_step_6<NA>(in, off, b);
        else tall_step_7<NA>(in, off, b);
        if (BITS && step + 1 < steps) expand_weights(wbits + (step + 1) * kc / 2, kc / 4, staged[(step + 1) % 2]);
        previous.run(s, st, rows_per_step);
    }
    previous.run(s, st, 4 * kRows);
    _tile_stored(0, acc, 64);
    if (NA > 1) _tile_stored(1, acc + kRows * 16, 64);
    if (NA > 2) _tile_stored(2, acc + 2 * kRows * 16, 64);
    if (NA > 3) _tile_stored(3, acc + 3 * kRows * 16, 64);
}

static void amx_conv(const ConvShape& s, const uint32_t* x, const uint32_t* wblocks, const int32_t* /*tapsum*/,
                     const Stage& st) {
    const SignImage im(s);
    const TileGrid grid(s, im);
    // Reused: a fresh allocation would fault its pages in every call. Tile rows start on cache lines (a row
    // split over two lines loads at half speed), so the image does too.
    thread_local std::vector<int8_t, CacheLineAllocator<int8_t>> image;
    image.resize(static_cast<size_t>(im.pixels(s) * im.cb));
    int8_t* const img = image.data();
    expand_signs(s, x, im, img);

    // Each tile's first window origin (bytes into an image) and output rows, once per call.
    thread_local std::vector<TileRows> tile_rows_buffer;  // (workers see another thread_local: use the pointer)
    tile_rows_buffer.resize(static_cast<size_t>(grid.count));
    TileRows* const tiles = tile_rows_buffer.data();
    std::vector<int64_t> tile_origin(static_cast<size_t>(grid.count));
    for (int64_t t = 0; t < grid.count; ++t) {
        int64_t pixel, y, xcol;
        grid.start(t, s, im, pixel, y, xcol);
        tile_origin[t] = pixel * im.cb;
        TileRows& rows = tiles[t];
        rows.count = 0;
        for (int r = 0; r < kRows; ++r) {
            // Linear tiles step along the padded row and drop the columns past the output's.
            if (y < s.oh && xcol < s.ow) {
                rows.row[rows.count] = static_cast<int8_t>(r);
                rows.q[rows.count] = static_cast<int32_t>(y * s.ow + xcol);
                rows.oy[rows.count++] = static_cast<int32_t>(y);
            }
            if (++xcol == (grid.linear ? im.wp : s.ow)) {
                if (!grid.linear) break;  // a tile stays in one output row
                xcol = 0, ++y;
            }
        }
    }

    // Items (group, block of output channels, image, group of tiles), block-major as in the other units:
    // wide items 32 channels x 2 tiles, tall ones 16 channels (half a block of the weights) x 4 tiles.
    const bool tall = im.k.tall;
    const int width = tall ? 16 : 32, per_item = tall ? 4 : 2;
    const int64_t og = s.og(), nblocks = (og + width - 1) / width, taps = s.taps();
    const int64_t tile_groups = (grid.count + per_item - 1) / per_item, items_per_block = s.n * tile_groups;
    const int64_t block_bytes = im.k.bits ? im.k.block_bytes / 8 : im.k.block_bytes;  // per 32 channels
    const int64_t image_bytes = im.hp * im.wp * im.cb;
    std::vector<int64_t> tap_offset(static_cast<size_t>(taps));  // bytes from a window's origin
    for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx)
            tap_offset[ky * s.kw + kx] = (ky * s.dh * im.wp + kx * s.dw) * im.cb;
    const int64_t a_stride = (grid.linear ? 1 : s.sw) * im.cb;
    const int8_t* wbytes = reinterpret_cast<const int8_t*>(wblocks);
    const int rows_per_step = static_cast<int>((per_item * kRows + im.k.steps - 1) / im.k.steps);

    const double item_cost = 4.0 * im.k.steps * 16 + per_item * kRows * width / 8.0;
    parallel_for(s.groups * nblocks * items_per_block, [&](int64_t ib, int64_t ie) {
        const TileConfig config(im.k.kc);
        _tile_loadconfig(&config);
        alignas(64) int32_t acc[2][4 * kRows * 16];
        PendingRows pending[2];
        int64_t gb = ib / items_per_block, n = ib % items_per_block / tile_groups, tg = ib % tile_groups;
        for (int64_t item = ib; item < ie; ++item) {
            const int64_t g = gb / nblocks, ob = gb % nblocks, t0 = tg * per_item;
            PendingRows& rows = pending[item % 2];
            rows.acc = acc[item % 2];
            rows.na = static_cast<int>(std::min<int64_t>(per_item, grid.count - t0));
            rows.a = rows.next = 0;
            rows.width = width;
            rows.q0 = n * s.oh * s.ow;
            rows.o0 = g * og + ob * width;
            rows.nv = static_cast<int>(std::min<int64_t>(width, og - ob * width));
            Operands in;
            for (int a = 0; a < rows.na; ++a) {
                rows.tiles[a] = &tiles[t0 + a];
                in.a[a] = img + n * image_bytes + tile_origin[t0 + a] + g * im.k.cbg;
            }
            in.tap_offset = tap_offset.data();
            in.a_stride = a_stride;
            in.weights = wbytes + (g * ((og + 31) / 32) + ob * width / 32) * block_bytes;
            PendingRows& previous = pending[(item + 1) % 2];
            int32_t* out = acc[item % 2];
            if (!tall) {
                if (rows.na == 2) product_wide<2>(s, st, im, in, out, previous, rows_per_step);
                else product_wide<1>(s, st, im, in, out, previous, rows_per_step);
            } else {
                using Tall = void (*)(const ConvShape&, const Stage&, const SignImage&, const Operands&, int, int32_t*,
                                      PendingRows&, int);
                static constexpr Tall kTall[2][4] = {
                    {&product_tall<1, false>, &product_tall<2, false>, &product_tall<3, false>, &product_tall<4, false>},
                    {&product_tall<1, true>, &product_tall<2, true>, &product_tall<3, true>, &product_tall<4, true>}};
                kTall[im.k.bits][rows.na - 1](s, st, im, in, static_cast<int>(ob % 2), out, previous, rows_per_step);
            }
            if (++tg == tile_groups) {
                tg = 0;
                if (++n == s.n) n = 0, ++gb;
            }
        }
        pending[(ie - 1) % 2].run(s, st, 4 * kRows);  // the last item's
        _tile_release();
    }, item_cost);
}

// ---- The int8 input layer on tiles (TDPBUSD: u8 codes x s8 weights, the same int32 sums as VNNI) ----
// A window is read in place as runs of codes (Int8Runs), one step per run: A = 16 windows of an output row x a
// run padded to 4 (its rows sw * C bytes apart in the coded input), B = the same run's weights for 16
// channels, straight from the AVX-512 blocks (rows of IL = 64 channels x 4 bytes: a B tile is 64 bytes of
// each, 256 bytes apart). Items: 2 tiles of windows x 32 channels. Runs longer than a tile row (64 codes)
// and dilated columns take the AVX-512 kernel.
static_assert(IL == 64, "B tiles are read from the AVX-512 int8 blocks of 64 channels");

struct Int8Pending {  // an item's outputs, finished while the tiles compute the next item (as PendingRows)
    const int32_t* acc = nullptr;
    int count = 0, next = 0, nv = 0;
    int row[2 * kRows];
    int64_t q[2 * kRows], iy0[2 * kRows], ix0[2 * kRows], o0 = 0;
    void run(const ConvShape& s, const Int8Stage& st, float* out, int rows) {
        for (const int end = std::min(count, next + rows); next < end; ++next)
            int8_output<32>(s, st, acc + row[next] * 32, iy0[next], ix0[next], q[next], o0, nv, out);
    }
};

template <int NA>
static void int8_product(const int8_t* w, const uint8_t* const* a, int64_t a_stride, int64_t run_step,
                         const Int8Runs& runs, const ConvShape& s, const Int8Stage& st, float* out, int32_t* acc,
                         Int8Pending& previous, int rows_per_step) {
    _tile_zero(0);
    _tile_zero(1);
    if (NA == 2) {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t r = 0; r < runs.count; ++r, w += runs.padded * IL) {
        _tile_loadd(6, w, IL * 4);
        _tile_loadd(7, w + 64, IL * 4);
        _tile_loadd(4, a[0] + r * run_step, a_stride);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        if (NA == 2) {
            _tile_loadd(5, a[1] + r * run_step, a_stride);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
        previous.run(s, st, out, rows_per_step);
    }
    previous.run(s, st, out, 2 * kRows);
    _tile_stored(0, acc, 2 * 64);
    _tile_stored(1, acc + 16, 2 * 64);
    if (NA == 2) {
        _tile_stored(2, acc + kRows * 32, 2 * 64);
        _tile_stored(3, acc + kRows * 32 + 16, 2 * 64);
    }
}

static void amx_int8_conv(const ConvShape& s, const uint8_t* x, const int8_t* wblocks, const Int8Stage& st,
                          float* out) {
    const Int8Runs runs(s.kh, s.kw, s.c, s.dw);
    if (runs.padded > 64 || s.dw != 1) return int8_conv_impl(s, x, wblocks, st, out);
    const int64_t per_row = (s.ow + kRows - 1) / kRows, tiles = s.oh * per_row, pairs = (tiles + 1) / 2;
    const int64_t nblocks = (s.o + 31) / 32, items_per_block = s.n * pairs, k4 = runs.k4();
    const int64_t a_stride = s.sw * s.c, run_step = s.dh * s.w * s.c;
    const int rows_per_step = static_cast<int>((2 * kRows + runs.count - 1) / runs.count);
    parallel_for(nblocks * items_per_block, [&](int64_t ib, int64_t ie) {
        TileConfig config(runs.padded);  // A: a run of codes; B: its rows of 4 codes
        config.rows[6] = config.rows[7] = static_cast<uint8_t>(runs.padded / 4);
        _tile_loadconfig(&config);
        alignas(64) int32_t acc[2][2 * kRows * 32];
        Int8Pending pending[2];
        for (int64_t item = ib; item < ie; ++item) {
            const int64_t ob = item / items_per_block, n = item % items_per_block / pairs, t0 = item % pairs * 2;
            const int na = t0 + 1 < tiles ? 2 : 1;
            Int8Pending& rows = pending[item % 2];
            rows.acc = acc[item % 2];
            rows.count = rows.next = 0;
            rows.o0 = ob * 32;
            rows.nv = static_cast<int>(std::min<int64_t>(32, s.o - ob * 32));
            const uint8_t* a[2];
            for (int t = 0; t < na; ++t) {
                const int64_t oy = (t0 + t) / per_row, ox0 = (t0 + t) % per_row * kRows;
                a[t] = x + ((n * s.h + oy * s.sh) * s.w + ox0 * s.sw) * s.c;
                for (int r = 0; r < kRows && ox0 + r < s.ow; ++r) {
                    rows.row[rows.count] = t * kRows + r;
                    rows.q[rows.count] = (n * s.oh + oy) * s.ow + ox0 + r;
                    rows.iy0[rows.count] = oy * s.sh;
                    rows.ix0[rows.count++] = (ox0 + r) * s.sw;
                }
            }
            // Channels 32 * ob.. : block ob / 2 of IL = 64, its half ob % 2.
            const int8_t* w = wblocks + (ob / 2) * k4 * IL + (ob % 2) * 32 * 4;
            if (na == 2)
                int8_product<2>(w, a, a_stride, run_step, runs, s, st, out, acc[item % 2], pending[(item + 1) % 2], rows_per_step);
            else
                int8_product<1>(w, a, a_stride, run_step, runs, s, st, out, acc[item % 2], pending[(item + 1) % 2], rows_per_step);
        }
        pending[(ie - 1) % 2].run(s, st, out, 2 * kRows);  // the last item's
        _tile_release();
    }, 4.0 * runs.count * 16 + 2 * kRows * 4);
}

static const IsaKernels kAmxTable = [] {
    IsaKernels t = kTable;
    t.conv = &amx_conv;
    t.int8_conv = &amx_int8_conv;
    t.weight_layout = WeightLayout::SignBytes;
    return t;
}();

}  // namespace isa_amx

const IsaKernels* kernels_amx() { return &isa_amx::kAmxTable; }

}  // namespace xnorpp
