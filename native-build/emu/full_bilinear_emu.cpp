// CPU emulation harness for cuda/FullBilinear.cu.
//
// Compiles the kernel source unchanged against the shim in this directory (cuda_runtime.h), replays the
// exact launch sequence and buffer layout of java/src/main/java/io/bifuse/cuda/FullBilinearCuda.java
// (forwardChecked, backwardChecked, pooled, Workspace, chunks()) with cuBLAS replaced by emu_gemm (same
// row-major strided-batched semantics, double accumulation, operand rounding per precision), and compares
// against full bilinear pooling computed from its definition in double precision.
//
// Device buffers carry NaN guard zones (checked after every launch and GEMM); the workspaces (partials and
// the backward's Z/G buffer) and every output are NaN-filled before every call, so a read of anything the
// sequence did not produce shows up as NaN. Two launch policies: the Java one (chunks from d, grid =
// (chunks, min(B, 65535))) and a small one (chunks of ~37 entries on a 2 x 2 grid) that makes both
// grid-stride loops and the multi-chunk combine iterate even at small d.
//
// Build and run: native-build/emulate-kernels.sh full_bilinear
#include <cuda_runtime.h>

#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/FullBilinear.cu"
#endif

#include "emu_harness.h"
#include "emu_reference.h"

#include <iomanip>
#include <sstream>

namespace {
constexpr int kBlock = 256;          // FullBilinearCuda.BLOCK
constexpr int kChunkTarget = 4096;   // FullBilinearCuda.CHUNK_TARGET
constexpr int kMaxChunks = 1024;     // FullBilinearCuda.MAX_CHUNKS

struct Op {
    int c1, c2;
    bool homologous, average;
    EmuNorm n;
    int d() const { return c1 * c2; }
    float alpha(int L) const { return (float)(average ? 1.0 / L : 1.0); }  // (float) op.scale(positions)
};

enum class Policy { JAVA, SMALL };

struct Geometry {
    int chunks, chunk;
    unsigned gridX, gridY;
};

Geometry geometry(int d, int B, Policy p) {
    const long target = p == Policy::JAVA ? kChunkTarget : 37;
    long c = (d + target - 1) / target;
    c = std::max(1L, std::min(c, (long)kMaxChunks));
    Geometry g;
    g.chunks = (int)c;
    g.chunk = (int)((d + c - 1) / c);
    g.gridX = p == Policy::JAVA ? (unsigned)g.chunks : (unsigned)std::min(g.chunks, 2);
    g.gridY = (unsigned)std::min(B, p == Policy::JAVA ? 65535 : 2);
    return g;
}

struct Workspace {  // FullBilinearCuda.Workspace: B x chunks x 2 doubles, B x d floats
    DevBuf partial, pooled;
    Workspace(long B, long chunks, long d) : partial("partial", 4 * B * chunks), pooled("pooled", B * d) {}
    double* p() { return reinterpret_cast<double*>(partial.raw()); }
    void garbage() { partial.fill_nan(); pooled.fill_nan(); }
};

struct CudaOp {  // FullBilinearCuda
    const Op& op;
    int precision;  // 0 FP32, 1 TF32, 2 BF16
    Geometry geo;
    CudaOp(const Op& o, int prec, const Geometry& g) : op(o), precision(prec), geo(g) {}

    void pooled(const float* x, const float* y, float* z, int B, int L) {
        emu_gemm(precision, true, false, op.c1, op.c2, L, op.alpha(L), x, op.c1, y, op.c2, 0.f, z, op.c2, B, (long)L * op.c1,
                 (long)L * op.c2, (long)op.c1 * op.c2);
    }

    // y == x for a homologous op (FullBilinearCuda passes x twice).
    void forward(Workspace& w, const float* x, const float* y, float* out, int B, int L) {
        pooled(x, y, out, B, L);
        const EmuNorm& n = op.n;
        if (n.identity()) return;
        if (n.l2_mode != 0)
            emu::launch2d(fbp_partial_forward, geo.gridX, geo.gridY, kBlock, out, w.p(), B, op.d(), geo.chunk, geo.chunks, n.signed_sqrt);
        emu::launch2d(fbp_normalize_forward, geo.gridX, geo.gridY, kBlock, out, w.p(), out, B, op.d(), geo.chunk, geo.chunks,
                      n.signed_sqrt, n.l2_mode, n.l2_eps);
    }

    void backward(Workspace& w, const float* x, const float* y, const float* gradOut, float* gradX, float* gradY, int B, int L) {
        const EmuNorm& n = op.n;
        const float* g = gradOut;
        if (!n.identity()) {
            float* z = w.pooled.f();
            pooled(x, y, z, B, L);
            if (n.l2_mode != 0)
                emu::launch2d(fbp_partial_backward, geo.gridX, geo.gridY, kBlock, z, gradOut, w.p(), B, op.d(), geo.chunk, geo.chunks,
                              n.signed_sqrt);
            emu::launch2d(fbp_normalize_backward, geo.gridX, geo.gridY, kBlock, z, gradOut, w.p(), z, B, op.d(), geo.chunk, geo.chunks,
                          n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
            g = z;
        }
        const int c1 = op.c1, c2 = op.c2;
        const long d = op.d();
        const float a = op.alpha(L);
        if (op.homologous) {
            emu_gemm(precision, false, false, L, c1, c1, a, x, c1, g, c1, 0.f, gradX, c1, B, (long)L * c1, d, (long)L * c1);
            emu_gemm(precision, false, true, L, c1, c1, a, x, c1, g, c1, 1.f, gradX, c1, B, (long)L * c1, d, (long)L * c1);
        } else {
            emu_gemm(precision, false, true, L, c1, c2, a, y, c2, g, c2, 0.f, gradX, c1, B, (long)L * c2, d, (long)L * c1);
            emu_gemm(precision, false, false, L, c2, c1, a, x, c1, g, c2, 0.f, gradY, c2, B, (long)L * c1, d, (long)L * c2);
        }
    }
};

// ---- reference: the definition, in double ------------------------------------------------------------
struct RefResult {
    std::vector<double> z, out, gx, gy;
    double min_rho = 1;
};

// zgiven: evaluate the normalization (and its backward) at this z instead of the exact one.
RefResult reference(const Op& op, int B, int L, const std::vector<float>& x, const std::vector<float>& yin, const std::vector<float>& g,
                    const std::vector<double>* zgiven = nullptr) {
    const std::vector<float>& y = op.homologous ? x : yin;
    const int c1 = op.c1, c2 = op.c2, d = op.d();
    const double alpha = op.average ? 1.0 / L : 1.0;
    RefResult r;
    r.z.assign((size_t)B * d, 0.0);
    r.out.assign((size_t)B * d, 0.0);
    if (zgiven) r.z = *zgiven;
    else
        for (int b = 0; b < B; ++b)
            for (int a = 0; a < c1; ++a)
                for (int c = 0; c < c2; ++c) {
                    double acc = 0;
                    for (int l = 0; l < L; ++l) acc += (double)x[((size_t)b * L + l) * c1 + a] * y[((size_t)b * L + l) * c2 + c];
                    r.z[(size_t)b * d + a * c2 + c] = alpha * acc;
                }
    r.out = emu_ref_norm_forward_rows(op.n, r.z, d);
    const EmuNormGrad ng = emu_ref_norm_backward_rows(op.n, r.z, g, d);
    const std::vector<double>& gz = ng.gz;
    r.min_rho = ng.min_rho;
    r.gx.assign((size_t)B * L * c1, 0.0);
    r.gy.assign(op.homologous ? 0 : (size_t)B * L * c2, 0.0);
    for (int b = 0; b < B; ++b)
        for (int l = 0; l < L; ++l) {
            const size_t row = (size_t)b * L + l;
            for (int a = 0; a < c1; ++a)
                for (int c = 0; c < c2; ++c) {
                    const double G = gz[(size_t)b * d + a * c2 + c];
                    // dZ[a,c]/dX[l,a] = alpha Y[l,c]; dZ[a,c]/dY[l,c] = alpha X[l,a]; homologous: both land in X.
                    r.gx[row * c1 + a] += alpha * G * y[row * c2 + c];
                    if (op.homologous) r.gx[row * c1 + c] += alpha * G * x[row * c1 + a];
                    else r.gy[row * c2 + c] += alpha * G * x[row * c1 + a];
                }
        }
    return r;
}

// Rectified inputs (ReLU conv features) draw as many numbers as signed ones, so the cases' seeds keep their data.
std::vector<float> inputs(size_t n, std::mt19937_64& rng, bool relu) {
    std::vector<float> v = emu_gaussian(n, rng);
    if (relu)
        for (float& f : v) f = std::max(0.f, f);
    return v;
}

struct RunOut {
    std::vector<float> out, gx, gy;
    long errors = 0;
};

RunOut run_once(const Op& op, int B, int L, int precision, Policy policy, const std::vector<float>& x, const std::vector<float>& y,
                const std::vector<float>& g) {
    const long e0 = emu::runtime_errors();
    const Geometry geo = geometry(op.d(), B, policy);
    CudaOp cop(op, precision, geo);
    Workspace w(B, geo.chunks, op.d());
    DevBuf dx("x", x.size()), dy("y", op.homologous ? 1 : y.size()), dg("gradOut", g.size());
    DevBuf out("out", (size_t)B * op.d()), gx("gradX", x.size()), gy("gradY", op.homologous ? 1 : y.size());
    dx.put(x);
    if (!op.homologous) dy.put(y);
    dg.put(g);
    const float* yp = op.homologous ? dx.f() : dy.f();
    w.garbage();
    cop.forward(w, dx.f(), yp, out.f(), B, L);
    w.garbage();  // backward must not rely on anything the forward left in the workspace
    cop.backward(w, dx.f(), yp, dg.f(), gx.f(), gy.f(), B, L);
    RunOut r{out.get(out.words), gx.get(gx.words), op.homologous ? std::vector<float>() : gy.get(gy.words), 0};
    if (!dg.holds(g) || !dx.holds(x) || (!op.homologous && !dy.holds(y))) emu::report_error("an input buffer was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

// The z the kernels see: emu_gemm's float output (double accumulation rounded once, FP32 operands).
std::vector<double> kernel_z(const Op& op, int B, int L, const std::vector<float>& x, const std::vector<float>& y) {
    std::vector<float> z((size_t)B * op.d());
    const float* yp = op.homologous ? x.data() : y.data();
    emu_gemm(0, true, false, op.c1, op.c2, L, op.alpha(L), x.data(), op.c1, yp, op.c2, 0.f, z.data(), op.c2, B, (long)L * op.c1,
             (long)L * op.c2, (long)op.d());
    return std::vector<double>(z.begin(), z.end());
}

struct Case {
    int B, L, c1, c2;
    bool homologous, average;
};

std::string describe(const Case& c) {
    char buf[128];
    snprintf(buf, sizeof buf, "B=%d L=%d %s%s", c.B, c.L,
             c.homologous ? ("C=" + std::to_string(c.c1) + " homologous").c_str()
                          : ("C1=" + std::to_string(c.c1) + " C2=" + std::to_string(c.c2)).c_str(),
             c.average ? " avg" : "");
    return buf;
}

constexpr double kTol = 1e-5;

}  // namespace

int main() {
    emu_start();
    emu::expect_block(fbp_partial_forward, "fbp_partial_forward", FBP_BLOCK);
    emu::expect_block(fbp_normalize_forward, "fbp_normalize_forward", FBP_BLOCK);
    emu::expect_block(fbp_partial_backward, "fbp_partial_backward", FBP_BLOCK);
    emu::expect_block(fbp_normalize_backward, "fbp_normalize_backward", FBP_BLOCK);
    printf("CPU emulation of cuda/FullBilinear.cu (%d threads per block, shared section %zu bytes), tolerance rel L2 %.0e\n", kBlock,
           emu::shared_bytes(), kTol);

    const std::vector<EmuNorm> norms = {
        {"none", 0, 0.f, 0, 0.f},           {"pytorch", 1, 0.f, 1, 1e-12f},    {"caffe", 1, 0.03f, 2, 1e-7f},
        {"l2max", 0, 0.f, 1, 1e-12f},       {"l2max-clamp", 0, 0.f, 1, 1e4f}, {"l2sumsq", 0, 0.f, 2, 1e-7f},
        {"ssqrt-only", 1, 0.03f, 0, 0.f},   {"ssqrt-exact", 1, 0.f, 0, 0.f},
    };
    // d = C1*C2 below, at, and above the Java chunk target (4096): 1, 14, 289, 660, 4096 (one full chunk),
    // 4500 and 4550 (two chunks of 2250 / 2275), 5120 (two chunks); B from 1 to 9; L from 1 to 13.
    const std::vector<Case> cases = {
        {1, 1, 1, 1, false, false},   {3, 5, 7, 2, false, true},    {2, 9, 17, 17, true, false},  {4, 3, 33, 20, false, false},
        {2, 4, 64, 64, true, true},   {2, 3, 100, 45, false, true}, {2, 2, 70, 65, false, false}, {9, 2, 5, 3, false, false},
        {2, 13, 80, 64, false, false}, {1, 2, 71, 71, true, false},
    };

    uint64_t seed = 20250101;
    for (const Case& c : cases) {
        for (const EmuNorm& n : norms) {
            ++seed;
            const Op op{c.c1, c.homologous ? c.c1 : c.c2, c.homologous, c.average, n};
            std::mt19937_64 rng(seed);
            // Rectified inputs (conv features) where the exact ssqrt derivative would meet z ~ 0, signed otherwise.
            const bool relu = n.signed_sqrt && n.ssqrt_eps == 0.f;
            const std::vector<float> x = inputs((size_t)c.B * c.L * c.c1, rng, relu);
            const std::vector<float> y = c.homologous ? std::vector<float>() : inputs((size_t)c.B * c.L * op.c2, rng, relu);
            const std::vector<float> g = emu_gaussian((size_t)c.B * op.d(), rng);
            const RefResult ref = reference(op, c.B, c.L, x, y, g);
            // The kernels' own error, isolated from z's float rounding: the exact chain rule at the kernels' z.
            const std::vector<double> zk = kernel_z(op, c.B, c.L, x, y);
            const RefResult rk = n.identity() ? ref : reference(op, c.B, c.L, x, y, g, &zk);
            const bool resolvable = ref.min_rho >= 1e-2;  // with l2 and d = 1 the gradient is 0 up to eps
            RunOut first;
            for (Policy policy : {Policy::JAVA, Policy::SMALL}) {
                const Geometry geo = geometry(op.d(), c.B, policy);
                std::ostringstream name;
                name << describe(c) << " norm=" << n.name << " grid=" << (policy == Policy::JAVA ? "java" : "small") << "(" << geo.chunks
                     << "x" << geo.chunk << ")";
                g_current = name.str();
                RunOut r = run_once(op, c.B, c.L, 0, policy, x, y, g);
                const double ef = emu_rel_l2(r.out, ref.out), efk = emu_rel_l2(r.out, rk.out);
                bool ok = ef <= kTol && efk <= kTol && r.errors == 0 && emu_all_finite(r.gx) && emu_all_finite(r.gy);
                std::ostringstream msg;
                msg << std::scientific << std::setprecision(2) << "  fwd " << ef;
                if (resolvable) {
                    const double ex = emu_rel_l2(r.gx, rk.gx), ey = c.homologous ? 0 : emu_rel_l2(r.gy, rk.gy);
                    const double eex = emu_rel_l2(r.gx, ref.gx), eey = c.homologous ? 0 : emu_rel_l2(r.gy, ref.gy);
                    ok = ok && ex <= kTol && ey <= kTol && eex <= kTol && eey <= kTol;
                    msg << "  dx " << ex << (c.homologous ? "" : "  dy ") ;
                    if (!c.homologous) msg << ey;
                    msg << "  (end-to-end " << std::max(eex, eey) << ")";
                } else {
                    msg << "  (grads not compared: rho " << ref.min_rho << ", g is parallel to o; finite: " << (ok ? "yes" : "NO") << ")";
                }
                emu_record(ok, name.str() + msg.str() + (r.errors ? "  RUNTIME ERRORS" : ""));
                if (policy == Policy::JAVA) {
                    first = r;
                    RunOut again = run_once(op, c.B, c.L, 0, policy, x, y, g);
                    const bool same = emu_same_bits(again.out, r.out) && emu_same_bits(again.gx, r.gx) && emu_same_bits(again.gy, r.gy);
                    emu_record(same, describe(c) + " norm=" + n.name + " two runs bit-identical: " + (same ? "yes" : "NO"));
                }
            }
        }
        // Reduced precision: the GEMMs round their operands; the bound is Precision.bound() (rectified inputs).
        for (int prec : {1, 2}) {
            const EmuNorm& n = norms[1];  // pytorch
            const Op op{c.c1, c.homologous ? c.c1 : c.c2, c.homologous, c.average, n};
            std::mt19937_64 rng(++seed);
            const std::vector<float> x = inputs((size_t)c.B * c.L * c.c1, rng, true);
            const std::vector<float> y = c.homologous ? std::vector<float>() : inputs((size_t)c.B * c.L * op.c2, rng, true);
            const std::vector<float> g = emu_gaussian((size_t)c.B * op.d(), rng);
            const RefResult ref = reference(op, c.B, c.L, x, y, g);
            const double bound = emu_precision_bound(prec);
            g_current = describe(c) + " precision";
            RunOut r = run_once(op, c.B, c.L, prec, Policy::JAVA, x, y, g);
            const double ef = emu_rel_l2(r.out, ref.out);
            const double eb = ref.min_rho >= 1e-2 ? std::max(emu_rel_l2(r.gx, ref.gx), c.homologous ? 0 : emu_rel_l2(r.gy, ref.gy)) : 0;
            std::ostringstream msg;
            msg << describe(c) << " norm=pytorch " << (prec == 1 ? "TF32" : "BF16") << std::scientific << std::setprecision(2) << "  fwd " << ef
                << "  bwd " << eb << "  (bound " << bound << ")";
            emu_record(ef <= bound && eb <= bound && r.errors == 0 && emu_all_finite(r.gx), msg.str());
        }
    }

    // The normalization kernels alone: out-of-place and in-place (how Java calls them) give the same bits.
    g_current = "normalize kernels alone";
    for (const EmuNorm& n : norms) {
        if (n.identity()) continue;
        const int rows = 3, d = 1000;
        const Geometry geo = geometry(d, rows, Policy::SMALL);
        std::mt19937_64 rng(++seed);
        std::vector<float> z = emu_gaussian((size_t)rows * d, rng), g = emu_gaussian((size_t)rows * d, rng);
        DevBuf bz("z", z.size()), bo("o", z.size()), bg("g", g.size()), bgz("gz", g.size()), bp("partial", 4 * rows * geo.chunks);
        double* p = reinterpret_cast<double*>(bp.raw());
        const long e0 = emu::runtime_errors();
        bz.put(z);
        bg.put(g);
        emu::launch2d(fbp_partial_forward, geo.gridX, geo.gridY, kBlock, bz.f(), p, rows, d, geo.chunk, geo.chunks, n.signed_sqrt);
        emu::launch2d(fbp_normalize_forward, geo.gridX, geo.gridY, kBlock, bz.f(), p, bo.f(), rows, d, geo.chunk, geo.chunks, n.signed_sqrt,
                      n.l2_mode, n.l2_eps);
        emu::launch2d(fbp_partial_backward, geo.gridX, geo.gridY, kBlock, bz.f(), bg.f(), p, rows, d, geo.chunk, geo.chunks, n.signed_sqrt);
        emu::launch2d(fbp_normalize_backward, geo.gridX, geo.gridY, kBlock, bz.f(), bg.f(), p, bgz.f(), rows, d, geo.chunk, geo.chunks,
                      n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
        const std::vector<float> o = bo.get(bo.words), gz = bgz.get(bgz.words);
        // in place: gz over z (backward first, since it reads z), then a fresh z for the forward in place
        emu::launch2d(fbp_normalize_backward, geo.gridX, geo.gridY, kBlock, bz.f(), bg.f(), p, bz.f(), rows, d, geo.chunk, geo.chunks,
                      n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
        const bool bwd_same = bz.holds(gz);
        bz.put(z);
        emu::launch2d(fbp_partial_forward, geo.gridX, geo.gridY, kBlock, bz.f(), p, rows, d, geo.chunk, geo.chunks, n.signed_sqrt);
        emu::launch2d(fbp_normalize_forward, geo.gridX, geo.gridY, kBlock, bz.f(), p, bz.f(), rows, d, geo.chunk, geo.chunks, n.signed_sqrt,
                      n.l2_mode, n.l2_eps);
        const bool fwd_same = bz.holds(o);
        const std::vector<double> zd(z.begin(), z.end());
        const double ef = emu_rel_l2(o, emu_ref_norm_forward_rows(n, zd, d)), eb = emu_rel_l2(gz, emu_ref_norm_backward_rows(n, zd, g, d).gz);
        const long errs = emu_case_errors(e0);
        char buf[256];
        snprintf(buf, sizeof buf, "normalize kernels alone rows=%d d=%d chunks=%dx%d norm=%-11s fwd %.2e bwd %.2e in-place %s%s", rows, d,
                 geo.chunks, geo.chunk, n.name.c_str(), ef, eb, fwd_same && bwd_same ? "bit-identical" : "DIFFERS", errs ? " RUNTIME ERRORS" : "");
        emu_record(ef <= kTol && eb <= kTol && fwd_same && bwd_same && errs == 0, buf);
    }

    return emu_finish();
}
