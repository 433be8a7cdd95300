// CPU emulation harness for cuda/BanPooling.cu.
//
// Compiles the kernel source unchanged against the shim in this directory (cuda_runtime.h) and replays the launch
// sequence of java/src/main/java/io/bifuse/cuda/BanPoolingCuda.java: ban_pool_forward on units(B * forwardTiles()),
// then for backward ban_pool_backward_xy on units(B * ceil(K'/128)) and ban_pool_grad_attention on
// units(B * ceil(N/16) * ceil(M/16)), with the same argument order, the mask passed as ObjectMask's compact form
// (counts, ascending index lists padded with -1) or not at all (masked = 0, the attention pointer as placeholder).
// Compared against bilinear attention pooling computed from its definition in double (a boolean mask per object,
// independent of the index lists), forward and every gradient (dA, dX, dY), relative L2 <= 1e-5.
//
// Layouts as the BAN block uses them: the attention maps are glimpse g of a B x G x N x M tensor (attStride = G*N*M)
// or dense (G = 1); X and Y are column slices of wider rows (ld > K'); the gradients have their own strides. What
// the kernels must NOT read is NaN (the other glimpses' maps, the columns past K', the padded objects' rows of A and
// X), so reading any of it poisons the results; every output starts as NaN and what they must NOT write (the other
// glimpses of dA, the columns past K' of dX, dY) must still hold NaN's exact bits afterwards. Padded rows of dA and
// dX must be exactly zero. Inputs must come back unmodified. Each case runs with the Java grid and with a 3-block
// grid (the unit loops iterate) and the two must agree bit for bit (no result depends on which block did what).
//
// Build and run: native-build/emulate-kernels.sh ban_pooling
#include <cuda_runtime.h>

#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // the kernels' #pragma unroll means nothing to g++
#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/BanPooling.cu"
#endif

#include "emu_harness.h"

#include <iomanip>
#include <sstream>

namespace {
constexpr int kBlock = 128;    // BanPoolingCuda.BLOCK
constexpr int kGaBlock = 256;  // BanPoolingCuda.GA_BLOCK
constexpr int kGaTi = 16, kGaTj = 16;
constexpr double kTol = 1e-5;

enum class MaskKind { NONE, COUNTS, HOLES };

struct Case {
    int B, N, M, K, group;
    int G = 1, g = 0;       // glimpse g of G (attStride = G*N*M)
    int xpad = 0, ypad = 0;  // ldx = K + xpad, ldy = K + ypad; the gradients use ld + 1 (different strides again)
    MaskKind mask = MaskKind::NONE;
    bool relu = false;
};

std::string describe(const Case& c) {
    std::ostringstream s;
    s << "B=" << c.B << " N=" << c.N << " M=" << c.M << " K'=" << c.K << " k=" << c.group;
    if (c.G > 1) s << " glimpse " << c.g << "/" << c.G;
    if (c.xpad || c.ypad) s << " ldx=" << c.K + c.xpad << " ldy=" << c.K + c.ypad;
    s << (c.mask == MaskKind::NONE ? "" : c.mask == MaskKind::COUNTS ? " mask=counts" : " mask=holes") << (c.relu ? " relu" : "");
    return s.str();
}

struct Mask {
    std::vector<char> real;  // B x N
    std::vector<int> counts, indices;
};

Mask make_mask(const Case& c, std::mt19937_64& rng) {
    Mask m;
    m.real.assign((size_t)c.B * c.N, 1);
    for (int b = 0; b < c.B; ++b) {
        if (c.mask == MaskKind::COUNTS) {
            // sample 0 empty, sample 1 a single object, then random counts (as a detector's 10..N boxes)
            const int n = b == 0 ? 0 : b == 1 ? 1 : (int)(rng() % (c.N + 1));
            for (int i = n; i < c.N; ++i) m.real[(size_t)b * c.N + i] = 0;
        } else if (c.mask == MaskKind::HOLES) {
            for (int i = 0; i < c.N; ++i) m.real[(size_t)b * c.N + i] = (rng() % 3) != 0;
        }
    }
    m.counts.assign(c.B, 0);
    m.indices.assign((size_t)c.B * c.N, -1);
    for (int b = 0; b < c.B; ++b)
        for (int i = 0; i < c.N; ++i)
            if (m.real[(size_t)b * c.N + i]) m.indices[(size_t)b * c.N + m.counts[b]++] = i;
    return m;
}

struct Inputs {
    std::vector<float> att, x, y, g;  // att: B x G x N x M; x: B*N rows of ldx; y: B*M rows of ldy; g: B x K'/k
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();

Inputs make_inputs(const Case& c, const Mask& m, std::mt19937_64& rng) {
    const int ldx = c.K + c.xpad, ldy = c.K + c.ypad, ow = c.K / c.group;
    Inputs in;
    in.att = emu_gaussian((size_t)c.B * c.G * c.N * c.M, rng);
    in.x = emu_gaussian((size_t)c.B * c.N * ldx, rng);
    in.y = emu_gaussian((size_t)c.B * c.M * ldy, rng);
    in.g = emu_gaussian((size_t)c.B * ow, rng);
    if (c.relu) {
        for (float& v : in.x) v = std::max(0.f, v);
        for (float& v : in.y) v = std::max(0.f, v);
    }
    for (int b = 0; b < c.B; ++b) {
        for (int gg = 0; gg < c.G; ++gg)
            for (int i = 0; i < c.N; ++i)
                for (int j = 0; j < c.M; ++j)
                    if (gg != c.g || !m.real[(size_t)b * c.N + i]) in.att[(((size_t)b * c.G + gg) * c.N + i) * c.M + j] = kNaN;
        for (int i = 0; i < c.N; ++i)
            for (int k = 0; k < ldx; ++k)
                if (k >= c.K || !m.real[(size_t)b * c.N + i]) in.x[((size_t)b * c.N + i) * ldx + k] = kNaN;
        for (int j = 0; j < c.M; ++j)
            for (int k = c.K; k < ldy; ++k) in.y[((size_t)b * c.M + j) * ldy + k] = kNaN;
    }
    return in;
}

struct Ref {
    std::vector<double> f, da, dx, dy;  // dense: B x K'/k, B x N x M, B x N x K', B x M x K'
};

Ref reference(const Case& c, const Mask& m, const Inputs& in) {
    const int N = c.N, M = c.M, K = c.K, k = c.group, ow = K / k, ldx = K + c.xpad, ldy = K + c.ypad;
    auto A = [&](int b, int i, int j) { return (double)in.att[(((size_t)b * c.G + c.g) * N + i) * M + j]; };
    auto X = [&](int b, int i, int col) { return (double)in.x[((size_t)b * N + i) * ldx + col]; };
    auto Y = [&](int b, int j, int col) { return (double)in.y[((size_t)b * M + j) * ldy + col]; };
    Ref r;
    r.f.assign((size_t)c.B * ow, 0.0);
    r.da.assign((size_t)c.B * N * M, 0.0);
    r.dx.assign((size_t)c.B * N * K, 0.0);
    r.dy.assign((size_t)c.B * M * K, 0.0);
    for (int b = 0; b < c.B; ++b) {
        for (int i = 0; i < N; ++i) {
            if (!m.real[(size_t)b * N + i]) continue;
            for (int j = 0; j < M; ++j) {
                double da = 0;
                for (int col = 0; col < K; ++col) {
                    const double dF = in.g[(size_t)b * ow + col / k];
                    const double t = A(b, i, j) * X(b, i, col) * Y(b, j, col);
                    r.f[(size_t)b * ow + col / k] += t;
                    da += dF * X(b, i, col) * Y(b, j, col);
                    // d/dX and d/dY of the term, times [pre-activation > 0] when the gradients go through the ReLU
                    if (!c.relu || X(b, i, col) > 0) r.dx[((size_t)b * N + i) * K + col] += dF * A(b, i, j) * Y(b, j, col);
                    if (!c.relu || Y(b, j, col) > 0) r.dy[((size_t)b * M + j) * K + col] += dF * A(b, i, j) * X(b, i, col);
                }
                r.da[((size_t)b * N + i) * M + j] = da;
            }
        }
    }
    return r;
}

enum class Grid { JAVA, SMALL };

unsigned units(long n, Grid grid) { return (unsigned)std::max(1L, std::min(n, grid == Grid::JAVA ? 64L * kEmuSmCount : 3L)); }

struct Run {
    std::vector<float> f, da, dx, dy;  // dense, extracted from the strided outputs
    bool untouched = true;             // what must not be written still holds NaN's exact bits
    bool padded_zero = true;           // padded rows of dA and dX exactly zero
    long errors = 0;
};

bool is_nan_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u == kNaNBits;
}

Run run_once(const Case& c, const Mask& m, const Inputs& in, Grid grid) {
    const long e0 = emu::runtime_errors();
    const int N = c.N, M = c.M, K = c.K, k = c.group, ow = K / k;
    const int ldx = K + c.xpad, ldy = K + c.ypad, ldgx = ldx + 1, ldgy = ldy + 1;
    const int64_t att_stride = (int64_t)c.G * N * M;
    const bool masked = c.mask != MaskKind::NONE;
    DevBuf att("attention", in.att.size()), x("x", in.x.size()), y("y", in.y.size()), g("gradOut", in.g.size());
    DevBuf counts("counts", c.B), indices("indices", (size_t)c.B * N);
    DevBuf out("out", (size_t)c.B * ow), gatt("gradAttention", in.att.size()), gx("gradX", (size_t)c.B * N * ldgx),
        gy("gradY", (size_t)c.B * M * ldgy);
    att.put(in.att);
    x.put(in.x);
    y.put(in.y);
    g.put(in.g);
    counts.put(m.counts);
    indices.put(m.indices);
    const float* a0 = att.f() + (size_t)c.g * N * M;
    float* ga0 = gatt.f() + (size_t)c.g * N * M;
    // BanPoolingCuda passes the attention memory in place of the mask's buffers when there is none.
    const int* cnt = masked ? counts.i() : reinterpret_cast<const int*>(a0);
    const int* idx = masked ? indices.i() : reinterpret_cast<const int*>(a0);

    const int per = k >= kBlock ? 1 : kBlock / k;
    const long ftiles = (ow + per - 1) / per;
    emu::launch(ban_pool_forward, units((long)c.B * ftiles, grid), kBlock, a0, att_stride, x.f(), ldx, y.f(), ldy, cnt, idx, masked ? 1 : 0,
                c.B, N, M, K, k, out.f());
    const long xytiles = (K + kBlock - 1) / kBlock;
    emu::launch(ban_pool_backward_xy, units((long)c.B * xytiles, grid), kBlock, a0, att_stride, x.f(), ldx, y.f(), ldy, cnt, idx,
                masked ? 1 : 0, c.B, N, M, K, k, g.f(), gx.f(), ldgx, gy.f(), ldgy, c.relu ? 1 : 0);
    const long maps = (long)c.B * ((N + kGaTi - 1) / kGaTi) * ((M + kGaTj - 1) / kGaTj);
    emu::launch(ban_pool_grad_attention, units(maps, grid), kGaBlock, x.f(), ldx, y.f(), ldy, cnt, idx, masked ? 1 : 0, c.B, N, M, K, k,
                g.f(), ga0, att_stride);

    Run r;
    r.f = out.get(out.words);
    const std::vector<float> ga = gatt.get(gatt.words), gxa = gx.get(gx.words), gya = gy.get(gy.words);
    r.da.resize((size_t)c.B * N * M);
    r.dx.resize((size_t)c.B * N * K);
    r.dy.resize((size_t)c.B * M * K);
    for (int b = 0; b < c.B; ++b) {
        for (int gg = 0; gg < c.G; ++gg)
            for (int e = 0; e < N * M; ++e) {
                const float v = ga[((size_t)b * c.G + gg) * N * M + e];
                if (gg == c.g) r.da[(size_t)b * N * M + e] = v;
                else r.untouched = r.untouched && is_nan_bits(v);
            }
        for (int i = 0; i < N; ++i) {
            const bool real = m.real[(size_t)b * N + i];
            for (int col = 0; col < ldgx; ++col) {
                const float v = gxa[((size_t)b * N + i) * ldgx + col];
                if (col < K) r.dx[((size_t)b * N + i) * K + col] = v;
                else r.untouched = r.untouched && is_nan_bits(v);
                if (col < K && !real) r.padded_zero = r.padded_zero && v == 0.f;
            }
            if (!real)
                for (int j = 0; j < M; ++j) r.padded_zero = r.padded_zero && r.da[((size_t)b * N + i) * M + j] == 0.f;
        }
        for (int j = 0; j < M; ++j)
            for (int col = 0; col < ldgy; ++col) {
                const float v = gya[((size_t)b * M + j) * ldgy + col];
                if (col < K) r.dy[((size_t)b * M + j) * K + col] = v;
                else r.untouched = r.untouched && is_nan_bits(v);
            }
    }
    if (!att.holds(in.att) || !x.holds(in.x) || !y.holds(in.y) || !g.holds(in.g)) emu::report_error("an input buffer was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

}  // namespace

int main() {
    emu_start();
    emu::expect_block(ban_pool_forward, "ban_pool_forward", BP_BLOCK);
    emu::expect_block(ban_pool_backward_xy, "ban_pool_backward_xy", BP_BLOCK);
    emu::expect_block(ban_pool_grad_attention, "ban_pool_grad_attention", BP_GA_BLOCK);
    printf("CPU emulation of cuda/BanPooling.cu (blocks %d / %d, shared section %zu bytes), tolerance rel L2 %.0e\n", kBlock, kGaBlock,
           emu::shared_bytes(), kTol);

    std::vector<Case> cases;
    auto add = [&](Case c) { cases.push_back(c); };
    add({1, 1, 1, 1, 1});                                   // everything 1
    add({2, 3, 4, 6, 3});                                   // group 3, one tile
    add({3, 5, 14, 12, 1, 1, 0, 0, 0, MaskKind::COUNTS});   // empty + single-object samples
    add({4, 36, 14, 20, 1, 8, 5, 3, 7, MaskKind::COUNTS, true});  // N = 36 > a 32-row tile, glimpse 5 of 8, ld > K', relu
    add({3, 40, 17, 130, 1, 2, 1, 0, 2, MaskKind::HOLES});  // M = 17 > the 16-token tile (dX accumulates), K' = 130 > one 128 block
    add({2, 33, 20, 129, 3, 1, 0, 5, 0, MaskKind::NONE, true});  // group 3, K' = 129: 43 units over tiles of 42
    add({2, 17, 33, 260, 130, 3, 2, 1, 1, MaskKind::COUNTS});    // group > 128: one group per tile, two passes per thread
    add({2, 7, 3, 256, 256, 1, 0, 0, 0, MaskKind::HOLES, true}); // the whole width one group of 2 x 128
    add({3, 100, 14, 33, 1, 2, 0, 0, 0, MaskKind::COUNTS});     // the spec's N = 100, M = 14 at a small width
    add({2, 9, 5, 384, 3, 1, 0, 0, 0, MaskKind::HOLES});         // group 3 at K' = 384 (the spec's 3840 / 10)
    add({4, 36, 14, 1280, 1, 8, 7, 2560, 0, MaskKind::COUNTS, true});  // the block's K' = 1280, a column slice of 3840-wide rows
    add({4, 100, 14, 3840, 3, 1, 0, 0, 0, MaskKind::COUNTS, true});    // K' = 3840, group 3, N = 100

    uint64_t seed = 20180501;
    for (const Case& c : cases) {
        std::mt19937_64 rng(++seed);
        const Mask m = make_mask(c, rng);
        const Inputs in = make_inputs(c, m, rng);
        const Ref ref = reference(c, m, in);
        Run java;
        for (Grid grid : {Grid::JAVA, Grid::SMALL}) {
            const std::string name = describe(c) + (grid == Grid::JAVA ? " grid=java" : " grid=small");
            g_current = name;
            Run r = run_once(c, m, in, grid);
            const double ef = emu_rel_l2(r.f, ref.f), ea = emu_rel_l2(r.da, ref.da), ex = emu_rel_l2(r.dx, ref.dx), ey = emu_rel_l2(r.dy, ref.dy);
            bool ok = ef <= kTol && ea <= kTol && ex <= kTol && ey <= kTol && r.untouched && r.padded_zero && r.errors == 0;
            std::ostringstream msg;
            msg << std::scientific << std::setprecision(2) << "  f " << ef << "  dA " << ea << "  dX " << ex << "  dY " << ey;
            if (!r.untouched) msg << "  WROTE OUTSIDE ITS COLUMNS/GLIMPSE";
            if (!r.padded_zero) msg << "  PADDED ROWS NOT ZERO";
            if (r.errors) msg << "  RUNTIME ERRORS";
            if (grid == Grid::JAVA) java = r;
            else {
                const bool same = emu_same_bits(r.f, java.f) && emu_same_bits(r.da, java.da) && emu_same_bits(r.dx, java.dx) &&
                                  emu_same_bits(r.dy, java.dy);
                ok = ok && same;
                msg << (same ? "  same bits as grid=java" : "  DIFFERS FROM grid=java");
            }
            emu_record(ok, name + msg.str());
        }
    }
    return emu_finish();
}
