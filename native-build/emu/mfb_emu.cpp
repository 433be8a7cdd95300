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
#include "emu_reference.h"

#include <iomanip>
#include <sstream>

namespace {
constexpr int kBlock = 256;  // MfbCuda.BLOCK, LinearCuda.BLOCK

struct Size { int B, dx, dy, o, k, n; };

struct Op {
    Size s;
    int act;  // 0 none, 1 relu, 2 tanh
    EmuNorm norm;
    std::vector<float> U, V, bu, bv;  // stacked: U n*w x dx, V n*w x dy, biases n*w
    int w() const { return s.o * s.k; }
    int nw() const { return s.n * w(); }
};

// ---- reference from the definition, in double ---------------------------------------------------------------
// From the activation's output a (activations() keeps no pre-activation): 1 - a^2 for tanh.
double dact_d(double a, int act) { return act == 1 ? (a > 0 ? 1 : 0) : act == 2 ? 1 - a * a : 1; }

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
            a[(size_t)b * cols + c] = emu_act(act, p);
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
    r.out = emu_ref_norm_forward_rows(op.norm, r.z, o);
    const std::vector<double> gz = emu_ref_norm_backward_rows(op.norm, z_override ? *z_override : r.z, g, o, unprojected).gz;
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
    const EmuNorm& n = op.norm;
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
    if (!dx.holds(x) || !dy.holds(y) || !dg.holds(g)) emu::report_error("an input buffer was modified");
    r.errors = emu_case_errors(e0);
    return r;
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

bool same_run(const Run& a, const Run& b) {
    return emu_same_bits(a.out, b.out) && emu_same_bits(a.gx, b.gx) && emu_same_bits(a.gy, b.gy) && emu_same_bits(a.gU, b.gU) && emu_same_bits(a.gV, b.gV) &&
           emu_same_bits(a.gbu, b.gbu) && emu_same_bits(a.gbv, b.gbv);
}

Op make_op(const Size& s, int act, const EmuNorm& n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    Op op{s, act, n, {}, {}, {}, {}};
    // nn.Linear's scale: weights ~ 1/sqrt(in)
    op.U = emu_gaussian((size_t)op.nw() * s.dx, rng, 1.f / std::sqrt((float)s.dx));
    op.V = emu_gaussian((size_t)op.nw() * s.dy, rng, 1.f / std::sqrt((float)s.dy));
    op.bu = emu_gaussian(op.nw(), rng, 0.3f);
    op.bv = emu_gaussian(op.nw(), rng, 0.3f);
    return op;
}

constexpr double kTol = 1e-5;

}  // namespace

int main() {
    emu_start();
    emu::expect_block(mfb_forward, "mfb_forward", MFB_BLOCK);
    emu::expect_block(mfb_backward, "mfb_backward", MFB_BLOCK);
    emu::expect_block(lin_bias_grad, "lin_bias_grad", kBlock);
    printf("CPU emulation of cuda/Mfb.cu (%d threads per block, shared section %zu bytes), tolerance %.0e (relative L2; gradients: scaled_err)\n", kBlock,
           emu::shared_bytes(), kTol);

    const std::vector<EmuNorm> norms = {
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
            const EmuNorm& n = norms[ni];
            const int act = (int)((idx + ni) % 3);
            ++seed;
            const Op op = make_op(s, act, n, seed);
            std::mt19937_64 rng(seed * 7919);
            const std::vector<float> x = emu_gaussian((size_t)s.B * s.dx, rng), y = emu_gaussian((size_t)s.B * s.dy, rng),
                                     g = emu_gaussian((size_t)s.B * s.n * s.o, rng);
            const Ref ref = reference(op, x, y, g);
            const Ref scale = n.identity() ? ref : reference(op, x, y, g, nullptr, true);
            // Conditioning: the exact gradients' change when z moves by 3e-7·rms(z) per entry (about the float32
            // error of the projections summed k at a time); end-to-end errors are held to max(1e-5, 10× that).
            double sens = 0;
            if (n.signed_sqrt) {
                const std::vector<double> zp = emu_perturb_rows(ref.z, s.o, 3e-7, seed ^ 0x5eed);
                sens = grad_err_ref(reference(op, x, y, g, &zp), ref, scale);
            }
            const double tol_e2e = std::max(kTol, 10 * sens);
            std::ostringstream base;
            base << "B=" << s.B << " Dx=" << s.dx << " Dy=" << s.dy << " o=" << s.o << " k=" << s.k << " n=" << s.n << " act=" << emu_act_name(act)
                 << " norm=" << n.name;
            Run java_grid;
            for (GridPolicy policy : {GridPolicy::JAVA, GridPolicy::SMALL}) {
                const std::string name = base.str() + (policy == GridPolicy::JAVA ? " grid=java" : " grid=2");
                g_current = name;
                const Run r = run_once(op, 0, policy, x, y, g);
                const double ef = emu_rel_l2(r.out, ref.out);
                // the kernels' own z (the backward's pooled workspace) against the definition
                double ez = 0;
                if (!n.identity()) ez = emu_rel_l2(r.pooled, ref.z);
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
                emu_record(ok, name + msg.str());
                if (policy == GridPolicy::JAVA) {
                    java_grid = r;
                    const Run again = run_once(op, 0, policy, x, y, g);
                    emu_record(same_run(r, again), base.str() + ": two runs bit-identical");
                } else {
                    emu_record(same_run(java_grid, r), base.str() + ": java grid vs grid=2 bit-identical");
                }
            }
        }
        ++idx;
    }

    // Reduced-precision GEMMs (operands rounded as TF32 / BF16): the forward stays within Precision.bound().
    {
        const Size s{4, 64, 48, 20, 5, 2};
        for (int p = 1; p <= 2; ++p) {
            const Op op = make_op(s, 1, norms[1], 777 + p);
            std::mt19937_64 rng(99 + p);
            const std::vector<float> x = emu_gaussian((size_t)s.B * s.dx, rng), y = emu_gaussian((size_t)s.B * s.dy, rng),
                                     g = emu_gaussian((size_t)s.B * s.n * s.o, rng);
            const Ref ref = reference(op, x, y, g);
            g_current = "reduced precision";
            const Run r = run_once(op, p, GridPolicy::JAVA, x, y, g);
            const double ef = emu_rel_l2(r.out, ref.out);
            std::ostringstream msg;
            msg << (p == 1 ? "TF32" : "BF16") << " GEMMs, MFH n=2 relu pytorch-norm B=4: fwd " << std::scientific << std::setprecision(2) << ef
                << " (bound " << emu_precision_bound(p) << ")";
            emu_record(ef <= emu_precision_bound(p) && r.errors == 0, msg.str());
        }
    }

    return emu_finish();
}
