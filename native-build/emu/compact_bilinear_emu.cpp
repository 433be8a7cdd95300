// CPU emulation harness for cuda/CompactBilinear.cu.
//
// Compiles the kernel source unchanged against the shim in this directory (cuda_runtime.h), replays the
// exact launch sequence and buffer layout of java/src/main/java/io/bifuse/cuda/CompactBilinearCuda.java
// (forward, backward, sketchBoth, HashTable) with cuFFT replaced by a naive double-precision DFT that
// follows cuFFT's R2C / C2R conventions, and compares against compact bilinear pooling computed straight
// from its definition in double precision (no FFT).
//
// Device buffers carry guard zones filled with NaN on both sides (checked after every launch), workspaces
// are refilled with NaN before every call (garbage, as uninitialized or stale device memory may be), and
// the C2R input is NaN-filled after each C2R (cuFFT may clobber it), so any read of data the sequence did
// not produce shows up as NaN in the results.
//
// Build and run: native-build/emulate-kernels.sh
#include <cuda_runtime.h>

#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/CompactBilinear.cu"
#endif

#include "emu_harness.h"
#include "emu_reference.h"

#include <iomanip>
#include <map>
#include <sstream>

namespace {
constexpr int kBlock = 256;     // CompactBilinearCuda.BLOCK

// ---- cuFFT stand-in: naive DFT in double with cuFFT's conventions ---------------------------------------
struct Twiddles {
    int d = 0;
    std::vector<double> cs, sn;  // cos / sin of 2 pi m / d
};
const Twiddles& twiddles(int d) {
    static std::map<int, Twiddles> cache;
    auto it = cache.find(d);
    if (it != cache.end()) return it->second;
    Twiddles t;
    t.d = d;
    t.cs.resize(d);
    t.sn.resize(d);
    for (int m = 0; m < d; ++m) {
        long double a = 2.0L * 3.141592653589793238462643383279502884L * m / d;
        t.cs[m] = (double)cosl(a);
        t.sn[m] = (double)sinl(a);
    }
    return cache.emplace(d, std::move(t)).first->second;
}

// R2C: out[r][k] = sum_j in[r][j] e^{-2 pi i jk/d}, k = 0..d/2 (batch rows; in row stride d, out stride d/2+1).
void fft_r2c(const float* in, float2* out, long batch, int d) {
    const Twiddles& t = twiddles(d);
    const int freq = d / 2 + 1;
    for (long r = 0; r < batch; ++r) {
        const float* x = in + r * d;
        for (int k = 0; k < freq; ++k) {
            double re = 0, im = 0;
            for (int j = 0; j < d; ++j) {
                const int m = (int)(((int64_t)j * k) % d);
                re += (double)x[j] * t.cs[m];
                im -= (double)x[j] * t.sn[m];
            }
            if (k == 0 || 2 * k == d) im = 0;  // exactly real for a real input
            out[r * freq + k] = make_float2((float)re, (float)im);
        }
    }
}

// C2R: out[r][j] = sum_{k=0}^{d-1} X[k] e^{+2 pi i jk/d} (unnormalized) over the Hermitian extension
// X[d-k] = conj(X[k]) of the d/2+1 given bins; the imaginary parts of bin 0 and (even d) bin d/2 are ignored.
// cuFFT's C2R may overwrite its input: the input is NaN-filled afterwards.
void fft_c2r(float2* in, float* out, long batch, int d) {
    const Twiddles& t = twiddles(d);
    const int freq = d / 2 + 1;
    std::vector<double> acc(d);
    for (long r = 0; r < batch; ++r) {
        const float2* X = in + r * freq;
        for (int j = 0; j < d; ++j) {
            double v = X[0].x;
            for (int k = 1; k < freq; ++k) {
                const int m = (int)(((int64_t)j * k) % d);
                if (2 * k == d) v += (double)X[k].x * t.cs[m];  // Nyquist: counted once, real part only
                else v += 2.0 * ((double)X[k].x * t.cs[m] - (double)X[k].y * t.sn[m]);
            }
            acc[j] = v;
        }
        for (int j = 0; j < d; ++j) out[r * d + j] = (float)acc[j];
    }
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (long q = 0; q < batch * freq; ++q) in[q] = make_float2(nan, nan);
}

// ---- the op ----------------------------------------------------------------------------------------------
struct Op {
    int dx, dy, d;
    std::vector<int> h1, h2;
    std::vector<float> s1, s2;
    EmuNorm n;
};

enum class Sketch { DETERMINISTIC, ATOMIC };
enum class GridPolicy { FULL, SMALL };  // FULL: CompactBilinearCuda.grid()/rowGrid(); SMALL: 3 blocks, 2 per rows

struct HashTable {  // CompactBilinearCuda.HashTable, byte for byte
    DevBuf h, s, binStart, binIndex, binSign;
    HashTable(const std::vector<int>& hash, const std::vector<float>& sign, int d)
        : h("h", hash.size()), s("s", sign.size()), binStart("bin_start", (size_t)d + 1), binIndex("bin_index", hash.size()),
          binSign("bin_sign", hash.size()) {
        const int c = (int)hash.size();
        std::vector<int> start(d + 1, 0);
        for (int v : hash) start[v + 1]++;
        for (int j = 0; j < d; ++j) start[j + 1] += start[j];
        std::vector<int> next(start.begin(), start.begin() + d);
        std::vector<int> index(c);
        std::vector<float> bsign(c);
        for (int i = 0; i < c; ++i) {  // ascending i within each bin
            int k = next[hash[i]]++;
            index[k] = i;
            bsign[k] = sign[i];
        }
        h.put(hash);
        s.put(sign);
        binStart.put(start);
        binIndex.put(index);
        binSign.put(bsign);
    }
};

struct Workspace {  // CompactBilinearCuda.Workspace (sizes in floats)
    DevBuf sketches, spectra, product, pooled, gradPooled, gradSpectrum;
    Workspace(long B, long d)
        : sketches("sketches", 2 * B * d), spectra("spectra", 2 * 2 * B * (d / 2 + 1)), product("product", 2 * 2 * B * (d / 2 + 1)),
          pooled("pooled", B * d), gradPooled("gradPooled", B * d), gradSpectrum("gradSpectrum", 2 * B * (d / 2 + 1)) {}
    void garbage() {
        for (DevBuf* b : {&sketches, &spectra, &product, &pooled, &gradPooled, &gradSpectrum}) b->fill_nan();
    }
};

struct CudaOp {  // CompactBilinearCuda
    const Op& op;
    Sketch sketch;
    GridPolicy policy;
    HashTable hx, hy;
    CudaOp(const Op& o, Sketch s, GridPolicy p) : op(o), sketch(s), policy(p), hx(o.h1, o.s1, o.d), hy(o.h2, o.s2, o.d) {}

    unsigned grid(long threads) const { return emu_grid(threads, kBlock, policy == GridPolicy::FULL); }
    unsigned rowGrid(int rows) const { return (unsigned)std::min(rows, policy == GridPolicy::FULL ? 65535 : 2); }

    void sketchBoth(Workspace& w, DevBuf& x, DevBuf& y, int B) {
        const int d = op.d;
        float* psiY = w.sketches.f() + (long)B * d;
        if (sketch == Sketch::DETERMINISTIC) {
            emu::launch(cbp_sketch_gather, grid((long)B * d), kBlock, x.f(), hx.binStart.i(), hx.binIndex.i(), hx.binSign.f(),
                        w.sketches.f(), B, op.dx, d);
            emu::launch(cbp_sketch_gather, grid((long)B * d), kBlock, y.f(), hy.binStart.i(), hy.binIndex.i(), hy.binSign.f(),
                        psiY, B, op.dy, d);
        } else {
            w.sketches.zero(0, 2L * B * d);
            emu::launch(cbp_sketch_atomic, grid((long)B * op.dx), kBlock, x.f(), hx.h.i(), hx.s.f(), w.sketches.f(), B, op.dx, d);
            emu::launch(cbp_sketch_atomic, grid((long)B * op.dy), kBlock, y.f(), hy.h.i(), hy.s.f(), psiY, B, op.dy, d);
        }
    }

    // aligned_out: the Java side lets the C2R write `out` directly when normalization is the identity and
    // out is 256-byte aligned; otherwise it goes through pooled and cbp_normalize_forward.
    void forward(Workspace& w, DevBuf& x, DevBuf& y, DevBuf& out, int B, bool aligned_out) {
        sketchBoth(w, x, y, B);
        fft_r2c(w.sketches.f(), w.spectra.c(), 2L * B, op.d);
        const long freq = op.d / 2 + 1;
        emu::launch(cbp_spectral_product, grid((long)B * freq), kBlock, w.spectra.c(), w.product.c(), B, (int)freq, 1.f / op.d);
        if (op.n.identity() && aligned_out) {
            fft_c2r(w.product.c(), out.f(), B, op.d);
        } else {
            fft_c2r(w.product.c(), w.pooled.f(), B, op.d);
            emu::launch(cbp_normalize_forward, rowGrid(B), kBlock, w.pooled.f(), out.f(), B, op.d, op.n.signed_sqrt, op.n.l2_mode,
                        op.n.l2_eps);
        }
    }

    void backward(Workspace& w, DevBuf& x, DevBuf& y, DevBuf& gradOut, DevBuf& gradX, DevBuf& gradY, int B) {
        const int d = op.d;
        const long freq = d / 2 + 1;
        sketchBoth(w, x, y, B);
        fft_r2c(w.sketches.f(), w.spectra.c(), 2L * B, d);
        if (!op.n.identity()) {
            emu::launch(cbp_spectral_product, grid((long)B * freq), kBlock, w.spectra.c(), w.product.c(), B, (int)freq, 1.f / d);
            fft_c2r(w.product.c(), w.pooled.f(), B, d);
        }
        emu::launch(cbp_normalize_backward, rowGrid(B), kBlock, w.pooled.f(), gradOut.f(), w.gradPooled.f(), B, d, op.n.signed_sqrt,
                    op.n.ssqrt_eps, op.n.l2_mode, op.n.l2_eps);
        fft_r2c(w.gradPooled.f(), w.gradSpectrum.c(), B, d);
        emu::launch(cbp_spectral_grad, grid((long)B * freq), kBlock, w.gradSpectrum.c(), w.spectra.c(), w.product.c(), B, (int)freq,
                    1.f / d);
        fft_c2r(w.product.c(), w.sketches.f(), 2L * B, d);
        float* gradPsiY = w.sketches.f() + (long)B * d;
        emu::launch(cbp_sketch_grad, grid((long)B * op.dx), kBlock, w.sketches.f(), hx.h.i(), hx.s.f(), gradX.f(), B, op.dx, d);
        emu::launch(cbp_sketch_grad, grid((long)B * op.dy), kBlock, gradPsiY, hy.h.i(), hy.s.f(), gradY.f(), B, op.dy, d);
    }
};

// ---- reference: the definition, in double ------------------------------------------------------------
struct RefResult {
    std::vector<double> z, out, gx, gy;
    double min_rho = 1;  // smallest rho over the rows (see emu_ref_norm_backward)
};

// zgiven: use this z (e.g. the kernels' own float z) instead of computing it from the definition.
RefResult reference(const Op& op, int B, const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& g,
                    const std::vector<double>* zgiven = nullptr) {
    const int d = op.d;
    RefResult r;
    r.z.assign((size_t)B * d, 0.0);
    r.out.assign((size_t)B * d, 0.0);
    if (zgiven) std::copy(zgiven->begin(), zgiven->end(), r.z.begin());
    else for (int b = 0; b < B; ++b)
        for (int a = 0; a < op.dx; ++a) {
            const double xa = (double)op.s1[a] * x[(size_t)b * op.dx + a];
            for (int c = 0; c < op.dy; ++c)
                r.z[(size_t)b * d + (op.h1[a] + op.h2[c]) % d] += xa * op.s2[c] * (double)y[(size_t)b * op.dy + c];
        }
    r.out = emu_ref_norm_forward_rows(op.n, r.z, d);
    const EmuNormGrad ng = emu_ref_norm_backward_rows(op.n, r.z, g, d);
    const std::vector<double>& gz = ng.gz;
    r.min_rho = ng.min_rho;
    r.gx.assign((size_t)B * op.dx, 0.0);
    r.gy.assign((size_t)B * op.dy, 0.0);
    for (int b = 0; b < B; ++b)
        for (int a = 0; a < op.dx; ++a)
            for (int c = 0; c < op.dy; ++c) {
                const double gzv = gz[(size_t)b * d + (op.h1[a] + op.h2[c]) % d];
                r.gx[(size_t)b * op.dx + a] += (double)op.s1[a] * op.s2[c] * y[(size_t)b * op.dy + c] * gzv;
                r.gy[(size_t)b * op.dy + c] += (double)op.s2[c] * op.s1[a] * x[(size_t)b * op.dx + a] * gzv;
            }
    return r;
}

// ---- test driver -------------------------------------------------------------------------------------------
constexpr double kTol = 1e-5;   // relative L2, float32 kernels vs the double reference
constexpr double kTolZ = 3e-7;  // the pooled z itself (observed <= 1.2e-7); also the z perturbation of the sensitivity estimate

struct Size { int B, dx, dy, d; };

std::string describe(const Size& s) {
    char buf[96];
    snprintf(buf, sizeof buf, "B=%d Dx=%d Dy=%d d=%d", s.B, s.dx, s.dy, s.d);
    return buf;
}

Op make_op(const Size& s, const EmuNorm& n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    Op op{s.dx, s.dy, s.d, {}, {}, {}, {}, n};
    std::uniform_int_distribution<int> hd(0, s.d - 1), sd(0, 1);
    for (int a = 0; a < s.dx; ++a) { op.h1.push_back(hd(rng)); op.s1.push_back(sd(rng) ? 1.f : -1.f); }
    for (int c = 0; c < s.dy; ++c) { op.h2.push_back(hd(rng)); op.s2.push_back(sd(rng) ? 1.f : -1.f); }
    return op;
}

struct RunOut {
    std::vector<float> out, gx, gy;
    std::vector<float> z;  // pooled after the backward: the float z the backward's normalization used (non-identity)
    long errors = 0;  // runtime errors (refused launches, guard hits, divergent barriers) during the run
};

RunOut run_once(const Op& op, const Size& s, Sketch mode, GridPolicy policy, bool aligned_out, const std::vector<float>& x,
                const std::vector<float>& y, const std::vector<float>& g) {
    const long e0 = emu::runtime_errors();
    CudaOp cop(op, mode, policy);
    Workspace w(s.B, s.d);
    DevBuf dx("x", x.size()), dy("y", y.size()), dg("gradOut", g.size());
    DevBuf out("out", (size_t)s.B * s.d), gx("gradX", (size_t)s.B * s.dx), gy("gradY", (size_t)s.B * s.dy);
    dx.put(x);
    dy.put(y);
    dg.put(g);
    w.garbage();
    cop.forward(w, dx, dy, out, s.B, aligned_out);
    w.garbage();  // backward must not rely on anything the forward left in the workspace
    cop.backward(w, dx, dy, dg, gx, gy, s.B);
    check_guards("the host sequence (FFT stand-in)");
    RunOut r{out.get(out.words), gx.get(gx.words), gy.get(gy.words), w.pooled.get(w.pooled.words), 0};
    if (!dg.holds(g) || !dx.holds(x) || !dy.holds(y)) emu::report_error("an input buffer was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

// Normalize kernels in isolation: rows > grid (grid-stride over samples), and in-place calls
// (out aliases z in the forward, gz aliases g in the backward) give the same bits as out-of-place.
void normalize_alias_test(const EmuNorm& n, int rows, int d, unsigned grid, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<float> z = emu_gaussian((size_t)rows * d, rng), g = emu_gaussian((size_t)rows * d, rng);
    for (float& v : z) v *= 3.f;
    const long e0 = emu::runtime_errors();
    DevBuf bz("z", z.size()), bout("out", z.size()), bg("g", g.size()), bgz("gz", g.size());
    bz.put(z);
    bg.put(g);
    emu::launch(cbp_normalize_forward, grid, kBlock, bz.f(), bout.f(), rows, d, n.signed_sqrt, n.l2_mode, n.l2_eps);
    emu::launch(cbp_normalize_backward, grid, kBlock, bz.f(), bg.f(), bgz.f(), rows, d, n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
    std::vector<float> out = bout.get(bout.words), gz = bgz.get(bgz.words);
    const std::vector<double> zd(z.begin(), z.end());
    const double ef = emu_rel_l2(out, emu_ref_norm_forward_rows(n, zd, d)), eb = emu_rel_l2(gz, emu_ref_norm_backward_rows(n, zd, g, d).gz);
    // in place
    emu::launch(cbp_normalize_backward, grid, kBlock, bz.f(), bg.f(), bg.f(), rows, d, n.signed_sqrt, n.ssqrt_eps, n.l2_mode, n.l2_eps);
    emu::launch(cbp_normalize_forward, grid, kBlock, bz.f(), bz.f(), rows, d, n.signed_sqrt, n.l2_mode, n.l2_eps);
    const bool inplace_ok = bz.holds(out) && bg.holds(gz);
    const long errs = emu_case_errors(e0);
    char buf[256];
    snprintf(buf, sizeof buf, "normalize kernels alone rows=%d d=%d grid=%u norm=%-11s fwd %.2e bwd %.2e in-place %s%s", rows, d, grid,
             n.name.c_str(), ef, eb, inplace_ok ? "bit-identical" : "DIFFERS", errs ? " RUNTIME ERRORS" : "");
    emu_record(ef <= kTol && eb <= kTol && inplace_ok && errs == 0, buf);
}

}  // namespace

int main() {
    emu_start();
    emu::expect_block(cbp_sketch_gather, "cbp_sketch_gather", kBlock);
    emu::expect_block(cbp_sketch_atomic, "cbp_sketch_atomic", kBlock);
    emu::expect_block(cbp_spectral_product, "cbp_spectral_product", kBlock);
    emu::expect_block(cbp_spectral_grad, "cbp_spectral_grad", kBlock);
    emu::expect_block(cbp_normalize_forward, "cbp_normalize_forward", CBP_BLOCK);
    emu::expect_block(cbp_normalize_backward, "cbp_normalize_backward", CBP_BLOCK);
    emu::expect_block(cbp_sketch_grad, "cbp_sketch_grad", kBlock);

    printf("CPU emulation of cuda/CompactBilinear.cu (%d threads per block, shared section %zu bytes), tolerance rel L2 %.0e\n", kBlock,
           emu::shared_bytes(), kTol);

    const std::vector<EmuNorm> norms = {
        {"none", 0, 0.f, 0, 0.f},
        {"pytorch", 1, 0.f, 1, 1e-12f},
        {"caffe", 1, 0.03f, 2, 1e-7f},
        {"l2max", 0, 0.f, 1, 1e-12f},
        {"l2max-clamp", 0, 0.f, 1, 1e3f},
        {"l2sumsq", 0, 0.f, 2, 1e-7f},
        {"ssqrt-only", 1, 0.03f, 0, 0.f},
    };
    const std::vector<Size> sizes = {
        {1, 1, 1, 1}, {3, 5, 7, 2}, {2, 17, 9, 16}, {4, 33, 20, 31}, {2, 64, 48, 100},
        {3, 40, 30, 97}, {5, 40, 30, 64}, {2, 256, 200, 1000},
    };

    uint64_t seed = 20240611;
    for (const Size& s : sizes) {
        for (const EmuNorm& n : norms) {
            ++seed;
            const Op op = make_op(s, n, seed);
            std::mt19937_64 rng(seed * 7919);
            const std::vector<float> x = emu_gaussian((size_t)s.B * s.dx, rng), y = emu_gaussian((size_t)s.B * s.dy, rng),
                                     g = emu_gaussian((size_t)s.B * s.d, rng);
            const RefResult ref = reference(op, s.B, x, y, g);
            // Conditioning of the gradient with respect to z. Any float32 pipeline gets z with an absolute
            // error of about 1e-7 * rms(z) in every bin (FFT rounding), and the signed-sqrt derivative
            // 0.5/(sqrt|z| + eps) amplifies that near z = 0. sens = relative change of the exact gradients
            // when z is perturbed by +-kTolZ * rms(z) per bin (the largest z error the z check lets through), in double.
            double sens = 0;
            if (!n.identity()) {
                const std::vector<double> zp = emu_perturb_rows(ref.z, s.d, kTolZ, seed ^ 0x5eed);
                const RefResult rp = reference(op, s.B, x, y, g, &zp);
                std::vector<float> pgx(rp.gx.begin(), rp.gx.end()), pgy(rp.gy.begin(), rp.gy.end());
                sens = std::max(emu_rel_l2(pgx, ref.gx), emu_rel_l2(pgy, ref.gy));
            }
            const double tol_e2e = std::max(kTol, sens);
            // With l2 normalization the component of g along o is projected out; where almost nothing is left
            // (d = 1: o = +-1, the gradient is 0 up to eps), float32 cannot resolve the remainder at all.
            const bool resolvable = ref.min_rho >= 1e-2;

            RunOut det_full;
            for (Sketch mode : {Sketch::DETERMINISTIC, Sketch::ATOMIC}) {
                for (GridPolicy policy : {GridPolicy::FULL, GridPolicy::SMALL}) {
                    for (bool aligned : {true, false}) {
                        if (!aligned && !n.identity()) continue;  // the unaligned variant differs only for the identity
                        std::ostringstream name;
                        name << describe(s) << " norm=" << n.name << " sketch=" << (mode == Sketch::DETERMINISTIC ? "gather" : "atomic")
                             << " grid=" << (policy == GridPolicy::FULL ? "java" : "small")
                             << (n.identity() ? (aligned ? " out=aligned(C2R direct)" : " out=unaligned(normalize)") : "");
                        g_current = name.str();
                        RunOut r = run_once(op, s, mode, policy, aligned, x, y, g);
                        const double ef = emu_rel_l2(r.out, ref.out);
                        bool ok = ef <= kTol && r.errors == 0;
                        std::ostringstream msg;
                        msg << std::scientific << std::setprecision(2) << "  fwd " << ef;
                        if (!n.identity()) {
                            // z: the pooled vector the backward's normalization used (the backward's own C2R output)
                            const double ez = emu_rel_l2(r.z, ref.z);
                            ok = ok && ez <= kTolZ;
                            msg << "  z " << ez;
                        }
                        // Gradients against the exact chain rule evaluated at the kernels' own z: isolates the
                        // kernels' error from the conditioning of z (for the identity this is the plain reference).
                        const std::vector<double> zk(r.z.begin(), r.z.end());
                        const RefResult rk = n.identity() ? ref : reference(op, s.B, x, y, g, &zk);
                        if (resolvable) {
                            const double ekx = emu_rel_l2(r.gx, rk.gx), eky = emu_rel_l2(r.gy, rk.gy);
                            const double eex = emu_rel_l2(r.gx, ref.gx), eey = emu_rel_l2(r.gy, ref.gy);
                            ok = ok && ekx <= kTol && eky <= kTol && eex <= tol_e2e && eey <= tol_e2e;
                            msg << "  dx " << ekx << "  dy " << eky;
                            if (!n.identity()) msg << "  | end-to-end dx " << eex << " dy " << eey << " (tol " << tol_e2e << ")";
                        } else {
                            msg << "  (grads not compared: rho " << ref.min_rho << ", g is parallel to o)";
                        }
                        // NaN anywhere in the gradients is a failure even when they are not compared
                        ok = ok && emu_all_finite(r.gx) && emu_all_finite(r.gy);
                        std::string line = name.str() + msg.str() + (r.errors ? "  RUNTIME ERRORS" : "");
                        emu_record(ok, line);

                        if (mode == Sketch::DETERMINISTIC && aligned) {
                            if (policy == GridPolicy::FULL) {
                                det_full = r;
                                RunOut again = run_once(op, s, mode, policy, aligned, x, y, g);
                                const bool same = emu_same_bits(again.out, r.out) && emu_same_bits(again.gx, r.gx) && emu_same_bits(again.gy, r.gy);
                                emu_record(same, describe(s) + " norm=" + n.name + " gather: two runs bit-identical: " + (same ? "yes" : "NO"));
                            } else {
                                const bool same = emu_same_bits(det_full.out, r.out) && emu_same_bits(det_full.gx, r.gx) && emu_same_bits(det_full.gy, r.gy);
                                emu_record(same, describe(s) + " norm=" + n.name + " gather: java grid vs small grid bit-identical: " + (same ? "yes" : "NO"));
                            }
                        }
                    }
                }
            }
        }
    }

    g_current = "normalize kernels alone";
    uint64_t nseed = 99;
    for (const EmuNorm& n : norms) {
        normalize_alias_test(n, 5, 300, 2, ++nseed);   // rows > grid, d > block: both loops iterate
        normalize_alias_test(n, 3, 7, 3, ++nseed);     // d < block: idle threads in the reduction
        normalize_alias_test(n, 4, 512, 4, ++nseed);      // Java rowGrid: one block per row
    }

    // The launcher refuses a normalize kernel with the wrong block size (the runtime check works).
    {
        g_current = "block-size check";
        DevBuf z("z", 16), o("o", 16);
        const long e0 = emu::runtime_errors();
        fprintf(stderr, "[emu] (the next error is expected: launching with block 128 on purpose)\n");
        const bool launched = emu::launch(cbp_normalize_forward, 1, 128, z.f(), o.f(), 1, 16, 0, 0, 0.f);
        const bool refused = !launched && emu::runtime_errors() == e0 + 1;
        emu::runtime_error_count().fetch_sub(refused ? 1 : 0);  // expected error: don't count it
        emu_record(refused, std::string("runtime refuses cbp_normalize_forward with block 128: ") + (refused ? "yes" : "NO"));
    }

    return emu_finish();
}
