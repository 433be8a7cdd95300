// CPU emulation harness for cuda/Mfb.cu (MFB / MFH).
//
// Compiles the kernel source unchanged against the shim in this directory (cuda_runtime.h), together with
// cuda/Linear.cu (lin_bias_grad, which LinearCuda.backwardParameters launches), and replays the exact launch
// sequence and buffer layout of java/src/main/java/io/bifuse/cuda/MfbCuda.java: stacked weights (n*o*k x Dx,
// n*o*k x Dy) and biases, the projection GEMMs (cuBLAS -> emu_gemm), mfb_forward; for backward the GEMMs again,
// mfb_backward, the four gradient GEMMs and the two bias column sums. Compared with MFB/MFH computed from the
// definition in double precision, forward and every gradient tensor (forward and z by relative L2; gradients by
// their error relative to the scale of the l2 backward's terms, see scaled_err).
//
// Workspaces (P, Q, gP, gQ, pooled) are NaN-filled before every call and outputs start as NaN, device buffers
// carry NaN guard zones checked after every launch, so a read of something the sequence did not produce, or
// an out-of-bounds write, shows.
//
// Build and run: native-build/emulate-kernels.sh mfb
#include <cuda_runtime.h>

#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/Mfb.cu"
#endif
#include "../../cuda/Linear.cu"

#include "emu_harness.h"

#include <chrono>
#include <iomanip>
#include <random>
#include <sstream>

namespace {
constexpr int kBlock = 256;  // MfbCuda.BLOCK, LinearCuda.BLOCK

struct Norm {
    std::string name;
    int signed_sqrt;
    float ssqrt_eps;
    int l2_mode;  // 0 NONE, 1 MAX_NORM, 2 SUM_SQUARES
    float l2_eps;
    bool identity() const { return !signed_sqrt && l2_mode == 0; }
};

struct Size { int B, dx, dy, o, k, n; };

struct Op {
    Size s;
    int act;  // 0 none, 1 relu, 2 tanh
    Norm norm;
    std::vector<float> U, V, bu, bv;  // stacked: U n*w x dx, V n*w x dy, biases n*w
    int w() const { return s.o * s.k; }
    int nw() const { return s.n * w(); }
};

// ---- reference from the definition, in double ---------------------------------------------------------------
double act_d(double p, int act) { return act == 1 ? (p > 0 ? p : 0) : act == 2 ? std::tanh(p) : p; }
double dact_d(double a, int act) { return act == 1 ? (a > 0 ? 1 : 0) : act == 2 ? 1 - a * a : 1; }

void ref_norm_forward(const Norm& n, const double* z, int d, double* out) {
    std::vector<double> u(d);
    double ss = 0;
    for (int j = 0; j < d; ++j) {
        u[j] = n.signed_sqrt ? (z[j] < 0 ? -1 : z[j] > 0 ? 1 : 0) * std::sqrt(std::fabs(z[j])) : z[j];
        ss += u[j] * u[j];
    }
    double scale = 1;
    if (n.l2_mode == 1) scale = 1 / std::max(std::sqrt(ss), (double)n.l2_eps);
    if (n.l2_mode == 2) scale = 1 / std::sqrt(ss + n.l2_eps);
    for (int j = 0; j < d; ++j) out[j] = u[j] * scale;
}

// unprojected: leave out the l2 normalization's projection term (ds = 0), giving the magnitude of the terms
// whose difference the backward takes (see scaled_err).
void ref_norm_backward(const Norm& n, const double* z, const double* g, int d, double* gz, bool unprojected) {
    std::vector<double> u(d);
    double ss = 0, ug = 0;
    for (int j = 0; j < d; ++j) {
        u[j] = n.signed_sqrt ? (z[j] < 0 ? -1 : z[j] > 0 ? 1 : 0) * std::sqrt(std::fabs(z[j])) : z[j];
        ss += u[j] * u[j];
        ug += u[j] * g[j];
    }
    double s = 1, ds = 0;  // gu = s g + ds u <u, g>
    if (n.l2_mode == 1) {
        const double nrm = std::sqrt(ss);
        if (nrm > n.l2_eps) { s = 1 / nrm; ds = -1 / (nrm * nrm * nrm); } else { s = 1 / (double)n.l2_eps; }
    } else if (n.l2_mode == 2) {
        s = 1 / std::sqrt(ss + n.l2_eps);
        ds = -s * s * s;
    }
    if (unprojected) ds = 0;
    for (int j = 0; j < d; ++j) {
        double gu = s * g[j] + ds * u[j] * ug;
        if (n.signed_sqrt) {
            const double r = std::sqrt(std::fabs(z[j])) + n.ssqrt_eps;
            gu = r > 0 ? gu * 0.5 / r : 0;
        }
        gz[j] = gu;
    }
}

struct Ref {
    std::vector<double> z, out, gx, gy, gU, gV, gbu, gbv;
};

// a[b][c] = act(x_b . U[c] + bu[c]) for every stacked column c (all blocks).
std::vector<double> activations(const std::vector<float>& W, const std::vector<float>& bias, const std::vector<float>& in, int B, int dim,
                                int cols, int act) {
    std::vector<double> a((size_t)B * cols);
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < cols; ++c) {
            double p = bias[c];
            for (int d = 0; d < dim; ++d) p += (double)W[(size_t)c * dim + d] * in[(size_t)b * dim + d];
            a[(size_t)b * cols + c] = act_d(p, act);
        }
    return a;
}

// Forward and backward from the definition; z_override (B x n*o) replaces the pooled z in the backward's
// normalization (to evaluate the exact chain rule at the kernels' own z); unprojected drops the l2 projection
// term from the backward (the error scale of scaled_err, not a gradient).
Ref reference(const Op& op, const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& g,
              const std::vector<double>* z_override = nullptr, bool unprojected = false) {
    const Size& s = op.s;
    const int B = s.B, n = s.n, o = s.o, k = s.k, w = op.w(), nw = op.nw(), no = n * o;
    const std::vector<double> A = activations(op.U, op.bu, x, B, s.dx, nw, op.act), C = activations(op.V, op.bv, y, B, s.dy, nw, op.act);
    Ref r;
    r.z.assign((size_t)B * no, 0);
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < w; ++j) {
            double e = 1;
            for (int i = 0; i < n; ++i) {
                const size_t c = (size_t)b * nw + (size_t)i * w + j;
                e *= A[c] * C[c];
                r.z[(size_t)b * no + (size_t)i * o + j / k] += e;
            }
        }
    r.out.resize(r.z.size());
    for (int row = 0; row < B * n; ++row) ref_norm_forward(op.norm, &r.z[(size_t)row * o], o, &r.out[(size_t)row * o]);
    const std::vector<double>& zb = z_override ? *z_override : r.z;
    std::vector<double> gd(g.begin(), g.end()), gz(gd.size());
    for (int row = 0; row < B * n; ++row) ref_norm_backward(op.norm, &zb[(size_t)row * o], &gd[(size_t)row * o], o, &gz[(size_t)row * o], unprojected);
    std::vector<double> gp((size_t)B * nw), gq((size_t)B * nw);
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < w; ++j) {
            std::vector<double> pre(n + 1, 1.0), h(n);
            for (int i = 0; i < n; ++i) {
                const size_t c = (size_t)b * nw + (size_t)i * w + j;
                h[i] = A[c] * C[c];
                pre[i + 1] = pre[i] * h[i];
            }
            double ge = 0;
            for (int i = n - 1; i >= 0; --i) {
                ge = gz[(size_t)b * no + (size_t)i * o + j / k] + (i + 1 < n ? ge * h[i + 1] : 0);
                const size_t c = (size_t)b * nw + (size_t)i * w + j;
                gp[c] = ge * pre[i] * C[c] * dact_d(A[c], op.act);
                gq[c] = ge * pre[i] * A[c] * dact_d(C[c], op.act);
            }
        }
    r.gx.assign((size_t)B * s.dx, 0);
    r.gy.assign((size_t)B * s.dy, 0);
    r.gU.assign((size_t)nw * s.dx, 0);
    r.gV.assign((size_t)nw * s.dy, 0);
    r.gbu.assign(nw, 0);
    r.gbv.assign(nw, 0);
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < nw; ++c) {
            const double p = gp[(size_t)b * nw + c], q = gq[(size_t)b * nw + c];
            r.gbu[c] += p;
            r.gbv[c] += q;
            for (int d = 0; d < s.dx; ++d) {
                r.gx[(size_t)b * s.dx + d] += p * op.U[(size_t)c * s.dx + d];
                r.gU[(size_t)c * s.dx + d] += p * x[(size_t)b * s.dx + d];
            }
            for (int d = 0; d < s.dy; ++d) {
                r.gy[(size_t)b * s.dy + d] += q * op.V[(size_t)c * s.dy + d];
                r.gV[(size_t)c * s.dy + d] += q * y[(size_t)b * s.dy + d];
            }
        }
    return r;
}

// ---- MfbCuda's launch sequence --------------------------------------------------------------------------------
enum class GridPolicy { JAVA, SMALL };  // JAVA: MfbCuda.rowGrid (min(rows, 65535)); SMALL: 2 blocks, grid-stride over samples

struct Run {
    std::vector<float> out, gx, gy, gU, gV, gbu, gbv, pooled;
    long errors = 0;
};

Run run_once(const Op& op, int precision, GridPolicy policy, const std::vector<float>& x, const std::vector<float>& y,
             const std::vector<float>& g) {
    const long e0 = emu::runtime_errors();
    const Size& s = op.s;
    const int B = s.B, nw = op.nw(), no = s.n * s.o;
    // LinearCuda of the stacked layers
    DevBuf U("U", op.U.size()), V("V", op.V.size()), bu("bu", nw), bv("bv", nw);
    U.put(op.U);
    V.put(op.V);
    bu.put(op.bu);
    bv.put(op.bv);
    // Workspace
    DevBuf P("P", (size_t)B * nw), Q("Q", (size_t)B * nw), gP("gP", (size_t)B * nw), gQ("gQ", (size_t)B * nw), pooled("pooled", (size_t)B * no);
    // caller's buffers
    DevBuf dx("x", x.size()), dy("y", y.size()), dg("gradOut", g.size()), out("out", (size_t)B * no);
    DevBuf gx("gradX", (size_t)B * s.dx), gy("gradY", (size_t)B * s.dy), gU("gradU", (size_t)nw * s.dx), gV("gradV", (size_t)nw * s.dy);
    DevBuf gbu("gradBiasU", nw), gbv("gradBiasV", nw);
    dx.put(x);
    dy.put(y);
    dg.put(g);
    const unsigned grid = policy == GridPolicy::JAVA ? (unsigned)std::min(B, 65535) : 2u;
    const Norm& n = op.norm;
    auto project = [&] {
        emu_gemm(precision, false, true, B, nw, s.dx, 1.f, dx.f(), s.dx, U.f(), s.dx, 0.f, P.f(), nw);
        emu_gemm(precision, false, true, B, nw, s.dy, 1.f, dy.f(), s.dy, V.f(), s.dy, 0.f, Q.f(), nw);
    };
    // forward
    for (DevBuf* b : {&P, &Q, &gP, &gQ, &pooled}) b->fill_nan();
    project();
    emu::launch(mfb_forward, grid, kBlock, P.f(), Q.f(), bu.f(), bv.f(), out.f(), B, s.n, s.o, s.k, op.act, n.signed_sqrt, n.l2_mode, n.l2_eps);
    // backward: nothing from the forward's workspace may be used
    for (DevBuf* b : {&P, &Q, &gP, &gQ, &pooled}) b->fill_nan();
    project();
    emu::launch(mfb_backward, grid, kBlock, P.f(), Q.f(), bu.f(), bv.f(), dg.f(), pooled.f(), gP.f(), gQ.f(), B, s.n, s.o, s.k, op.act,
                n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
    emu_gemm(precision, false, false, B, s.dx, nw, 1.f, gP.f(), nw, U.f(), s.dx, 0.f, gx.f(), s.dx);  // backwardInput, beta 0
    emu_gemm(precision, false, false, B, s.dy, nw, 1.f, gQ.f(), nw, V.f(), s.dy, 0.f, gy.f(), s.dy);
    emu_gemm(precision, true, false, nw, s.dx, B, 1.f, gP.f(), nw, dx.f(), s.dx, 0.f, gU.f(), s.dx);  // backwardParameters
    emu::launch(lin_bias_grad, (unsigned)std::max(1, (nw + kBlock - 1) / kBlock), kBlock, gP.f(), gbu.f(), B, nw, nw);
    emu_gemm(precision, true, false, nw, s.dy, B, 1.f, gQ.f(), nw, dy.f(), s.dy, 0.f, gV.f(), s.dy);
    emu::launch(lin_bias_grad, (unsigned)std::max(1, (nw + kBlock - 1) / kBlock), kBlock, gQ.f(), gbv.f(), B, nw, nw);
    check_guards("the host sequence");
    Run r{out.get(out.words), gx.get(gx.words), gy.get(gy.words), gU.get(gU.words), gV.get(gV.words), gbu.get(nw), gbv.get(nw),
          pooled.get(pooled.words), 0};
    std::vector<float> xc = dx.get(dx.words), yc = dy.get(dy.words), gc = dg.get(dg.words);
    if (memcmp(xc.data(), x.data(), x.size() * 4) || memcmp(yc.data(), y.data(), y.size() * 4) || memcmp(gc.data(), g.data(), g.size() * 4))
        emu::report_error("an input buffer was modified");
    r.errors = emu::runtime_errors() - e0;
    g_attributed += r.errors;
    return r;
}

double rel_l2(const std::vector<float>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double e = (double)got[i] - want[i];
        num += e * e;
        den += want[i] * want[i];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Gradient error: ||got - want|| / max(||want||, ||scale||), scale being the same gradient with the l2
// normalization's projection term left out. Why not plain relative L2: the l2 backward is a difference,
// gu = s·g - s³·u·<u, g> (F.normalize: s = 1/|u|), of two terms of size ~s·|g|, and whatever reaches the
// inputs and weights is a linear image of it. Where the output is saturated along u the difference cancels:
// with one output per block (o = 1) F.normalize's output is sign(u), its gradient exactly 0, and Caffe's
// u/sqrt(u² + 1e-7) has gradient s·g·eps/(u² + eps), ~1e-6 of the terms. The float32 kernel computes
// the same difference and is off by ~2^-24 of the terms (as PyTorch's float32 autograd would be); the double
// reference's "0" is itself ~1e-16 of them. Against the result, that is an error of 0.2 (Caffe) to 3e8
// (the reference's 1e-16 against the kernel's 4e-8): noise, not a measure of the kernels. Against the terms'
// scale it is ~1e-7, and a kernel that drops or botches the projection term is still off by O(1). Without
// normalization, or with a sizeable o (the projection removes one direction of o), the two denominators agree.
double scaled_err(const std::vector<double>& got, const std::vector<double>& want, const std::vector<double>& scale) {
    double num = 0, den = 0, sden = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double e = got[i] - want[i];
        num += e * e;
        den += want[i] * want[i];
        sden += scale[i] * scale[i];
    }
    den = std::max(den, sden);
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

double scaled_err(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale) {
    return scaled_err(std::vector<double>(got.begin(), got.end()), want, scale);
}

// Largest scaled error over the gradient tensors.
double grad_err(const Run& r, const Ref& ref, const Ref& sc) {
    double e = 0;
    for (double v : {scaled_err(r.gx, ref.gx, sc.gx), scaled_err(r.gy, ref.gy, sc.gy), scaled_err(r.gU, ref.gU, sc.gU),
                     scaled_err(r.gV, ref.gV, sc.gV), scaled_err(r.gbu, ref.gbu, sc.gbu), scaled_err(r.gbv, ref.gbv, sc.gbv)})
        e = std::isnan(v) || std::isnan(e) ? NAN : std::max(e, v);
    return e;
}

double grad_err_ref(const Ref& a, const Ref& ref, const Ref& sc) {
    double e = 0;
    for (double v : {scaled_err(a.gx, ref.gx, sc.gx), scaled_err(a.gy, ref.gy, sc.gy), scaled_err(a.gU, ref.gU, sc.gU),
                     scaled_err(a.gV, ref.gV, sc.gV)})
        e = std::max(e, v);
    return e;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

bool same_run(const Run& a, const Run& b) {
    return same_bits(a.out, b.out) && same_bits(a.gx, b.gx) && same_bits(a.gy, b.gy) && same_bits(a.gU, b.gU) && same_bits(a.gV, b.gV) &&
           same_bits(a.gbu, b.gbu) && same_bits(a.gbv, b.gbv);
}

void record(bool ok, const std::string& line) {
    (ok ? g_passed : g_failed)++;
    printf("%-4s %s\n", ok ? "pass" : "FAIL", line.c_str());
    fflush(stdout);
}

std::vector<float> gaussian(size_t n, std::mt19937_64& rng, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> v(n);
    for (float& f : v) f = scale * nd(rng);
    return v;
}

Op make_op(const Size& s, int act, const Norm& n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    Op op{s, act, n, {}, {}, {}, {}};
    // nn.Linear's scale: weights ~ 1/sqrt(in)
    op.U = gaussian((size_t)op.nw() * s.dx, rng, 1.f / std::sqrt((float)s.dx));
    op.V = gaussian((size_t)op.nw() * s.dy, rng, 1.f / std::sqrt((float)s.dy));
    op.bu = gaussian(op.nw(), rng, 0.3f);
    op.bv = gaussian(op.nw(), rng, 0.3f);
    return op;
}

constexpr double kTol = 1e-5;
const char* kActs[] = {"none", "relu", "tanh"};

}  // namespace

int main() {
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
    const auto t0 = std::chrono::steady_clock::now();
    emu::expect_block(mfb_forward, "mfb_forward", MFB_BLOCK);
    emu::expect_block(mfb_backward, "mfb_backward", MFB_BLOCK);
    emu::expect_block(lin_bias_grad, "lin_bias_grad", kBlock);
    emu::after_launch() = [](const std::string& name) { check_guards(name); };
    printf("CPU emulation of cuda/Mfb.cu (%d threads per block, shared section %zu bytes), tolerance %.0e (relative L2; gradients: scaled_err)\n", kBlock,
           emu::shared_bytes(), kTol);

    const std::vector<Norm> norms = {
        {"none", 0, 0.f, 0, 0.f},          {"pytorch", 1, 0.f, 1, 1e-12f},      {"caffe", 1, 0.03f, 2, 1e-7f},
        {"l2max", 0, 0.f, 1, 1e-12f},      {"l2max-clamp", 0, 0.f, 1, 1e3f},    {"ssqrt-only", 1, 0.03f, 0, 0.f},
    };
    // B, Dx, Dy, o, k, n: MFB and MFH, k = 1 (no pooling), o > 256 (threads own several groups), prime k,
    // 8 blocks (MFB_MAX_BLOCKS); B > 2 makes the grid=2 runs stride over samples.
    const std::vector<Size> sizes = {
        {1, 1, 1, 1, 1, 1}, {3, 5, 7, 4, 2, 1}, {2, 9, 4, 5, 3, 2}, {2, 12, 10, 300, 1, 2}, {3, 8, 6, 7, 3, 3},
        {4, 16, 12, 10, 5, 2}, {2, 6, 5, 3, 7, 8}, {5, 12, 10, 37, 5, 2}, {2, 10, 8, 260, 2, 1},
    };

    uint64_t seed = 20250101;
    int idx = 0;
    for (const Size& s : sizes) {
        for (size_t ni = 0; ni < norms.size(); ++ni) {
            const Norm& n = norms[ni];
            const int act = (int)((idx + ni) % 3);
            ++seed;
            const Op op = make_op(s, act, n, seed);
            std::mt19937_64 rng(seed * 7919);
            const std::vector<float> x = gaussian((size_t)s.B * s.dx, rng), y = gaussian((size_t)s.B * s.dy, rng),
                                     g = gaussian((size_t)s.B * s.n * s.o, rng);
            const Ref ref = reference(op, x, y, g);
            const Ref scale = n.identity() ? ref : reference(op, x, y, g, nullptr, true);
            // Conditioning: the exact gradients' change when z moves by 3e-7·rms(z) per entry (about the float32
            // error of the projections summed k at a time); end-to-end errors are held to max(1e-5, 10× that).
            double sens = 0;
            if (n.signed_sqrt) {
                std::mt19937_64 prng(seed ^ 0x5eed);
                std::vector<double> zp = ref.z;
                for (int row = 0; row < s.B * s.n; ++row) {
                    double ms = 0;
                    for (int j = 0; j < s.o; ++j) ms += ref.z[(size_t)row * s.o + j] * ref.z[(size_t)row * s.o + j];
                    const double amp = 3e-7 * std::sqrt(ms / s.o);
                    for (int j = 0; j < s.o; ++j) zp[(size_t)row * s.o + j] += (prng() & 1) ? amp : -amp;
                }
                sens = grad_err_ref(reference(op, x, y, g, &zp), ref, scale);
            }
            const double tol_e2e = std::max(kTol, 10 * sens);
            std::ostringstream base;
            base << "B=" << s.B << " Dx=" << s.dx << " Dy=" << s.dy << " o=" << s.o << " k=" << s.k << " n=" << s.n << " act=" << kActs[act]
                 << " norm=" << n.name;
            Run java_grid;
            for (GridPolicy policy : {GridPolicy::JAVA, GridPolicy::SMALL}) {
                const std::string name = base.str() + (policy == GridPolicy::JAVA ? " grid=java" : " grid=2");
                g_current = name;
                const Run r = run_once(op, 0, policy, x, y, g);
                const double ef = rel_l2(r.out, ref.out);
                // the kernels' own z (the backward's pooled workspace) against the definition
                double ez = 0;
                if (!n.identity()) ez = rel_l2(r.pooled, ref.z);
                // gradients against the exact chain rule at the kernels' own z (isolates the kernels from the
                // conditioning of z), and end to end
                std::vector<double> zk(r.pooled.begin(), r.pooled.end());
                const Ref rk = n.identity() ? ref : reference(op, x, y, g, &zk);
                const Ref sk = n.identity() ? ref : reference(op, x, y, g, &zk, true);
                const double ek = grad_err(r, rk, sk), ee = grad_err(r, ref, scale);
                const bool ok = ef <= kTol && ez <= kTol && ek <= kTol && ee <= tol_e2e && r.errors == 0;
                std::ostringstream msg;
                msg << std::scientific << std::setprecision(2) << "  fwd " << ef << "  z " << ez << "  grads@own-z " << ek << "  end-to-end " << ee
                    << " (tol " << tol_e2e << ")" << (r.errors ? "  RUNTIME ERRORS" : "");
                record(ok, name + msg.str());
                if (policy == GridPolicy::JAVA) {
                    java_grid = r;
                    const Run again = run_once(op, 0, policy, x, y, g);
                    record(same_run(r, again), base.str() + ": two runs bit-identical");
                } else {
                    record(same_run(java_grid, r), base.str() + ": java grid vs grid=2 bit-identical");
                }
            }
        }
        ++idx;
    }

    // Reduced-precision GEMMs (operands rounded as TF32 / BF16): the forward stays within Precision.bound().
    {
        const Size s{4, 64, 48, 20, 5, 2};
        const double bounds[] = {0, 4 * 0x1p-11, 4 * 0x1p-8};
        for (int p = 1; p <= 2; ++p) {
            const Op op = make_op(s, 1, norms[1], 777 + p);
            std::mt19937_64 rng(99 + p);
            const std::vector<float> x = gaussian((size_t)s.B * s.dx, rng), y = gaussian((size_t)s.B * s.dy, rng),
                                     g = gaussian((size_t)s.B * s.n * s.o, rng);
            const Ref ref = reference(op, x, y, g);
            g_current = "reduced precision";
            const Run r = run_once(op, p, GridPolicy::JAVA, x, y, g);
            const double ef = rel_l2(r.out, ref.out);
            std::ostringstream msg;
            msg << (p == 1 ? "TF32" : "BF16") << " GEMMs, MFH n=2 relu pytorch-norm B=4: fwd " << std::scientific << std::setprecision(2) << ef
                << " (bound " << bounds[p] << ")";
            record(ef <= bounds[p] && r.errors == 0, msg.str());
        }
    }

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const long stray = emu::runtime_errors() - g_attributed;
    if (stray) record(false, "runtime errors outside the cases: " + std::to_string(stray));
    printf("time %.1f s\n", secs);
    emu::pool().shutdown();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
