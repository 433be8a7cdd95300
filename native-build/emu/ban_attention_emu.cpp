// CPU emulation harness for cuda/BanAttention.cu (the BAN attention maps and DeviceObjectMask.fromZeroRows).
//
// Compiles the kernel source unchanged against the shim in this directory (cuda_runtime.h) and replays the
// exact launch sequence and buffer layout of java/src/main/java/io/bifuse/cuda/BanAttentionCuda.java: the
// uploaded p and bias (zeros when the layer has none), the fused / tiled choice (N <= 128 and M <= 16, or the
// package-private forceTiled switch), the workspace (tiled logits, dp partials), the grid formulas, the mask
// pointers (xp as the never-read placeholder without a mask), the memset of the bias gradient; and the mask
// built on the device by ban_att_zero_rows from the raw objects, as DeviceObjectMask.fromZeroRows launches it.
// Compared with the operator computed from its definition in double precision (written here, independently
// of the kernels): attention maps, logits (-inf exactly at padded objects), dX', dY' (throughRelu included),
// dp, dbias (exact zeros), and the device mask against the host rule (ObjectMask.zeroRows, -1 tail included).
//
// Device buffers carry NaN guard zones (checked after every launch); every output, gradient and workspace
// starts as NaN, inputs and weights are checked unmodified, and with row strides ld > K the columns past K of
// the gradient buffers must still hold their NaN poison (nothing written outside the rows' K columns). Each
// case runs with the Java grids and with tiny grids (the unit loops iterate), which must give the same bits;
// the fused and tiled paths must give bit-identical logits (one per-entry order of the K sum).
//
// Build and run: native-build/emulate-kernels.sh ban_attention
#include <cuda_runtime.h>

#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // the kernels' #pragma unroll means nothing to g++
#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/BanAttention.cu"
#endif

#include "emu_harness.h"

#include <iomanip>
#include <sstream>

namespace {
constexpr int kBlock = 256, kTileR = 64, kTileJ = 16, kBwdBlock = 128, kMaskBlock = 256;  // BanAttentionCuda
constexpr int kFusedN = 128, kFusedM = 16;

enum class GridPolicy { FULL, SMALL };
enum class MaskKind { NONE, COUNTS, ZERO_ROWS };

struct Case {
    int B, N, M, K, G;
    bool bias;
    MaskKind mask;
    int ldExtra;   // ld = K + ldExtra for xp, yp, gx, gy
    bool relu;     // inputs are ReLU outputs, backward throughRelu
    bool tiled;    // force the tiled path
    float sharp;   // p's scale
    std::vector<int> counts;  // COUNTS: per sample; ZERO_ROWS: the real count per sample, rows scattered
};

std::string describe(const Case& c) {
    std::ostringstream s;
    s << "B=" << c.B << " N=" << c.N << " M=" << c.M << " K=" << c.K << " G=" << c.G << (c.bias ? "" : " no-bias")
      << (c.mask == MaskKind::NONE ? " mask=none" : c.mask == MaskKind::COUNTS ? " mask=counts" : " mask=zeroRows");
    if (c.mask != MaskKind::NONE) {
        s << "[";
        for (size_t i = 0; i < c.counts.size() && i < 6; ++i) s << (i ? "," : "") << c.counts[i];
        s << (c.counts.size() > 6 ? ",...]" : "]");
    }
    if (c.ldExtra) s << " ld=K+" << c.ldExtra;
    if (c.relu) s << " relu";
    if (c.sharp != 1.f) s << " sharp";
    return s.str();
}

struct Inputs {
    int ld;
    std::vector<float> xp, yp, ga, w, b, xraw;  // xraw: the raw objects (B*N x dx) for fromZeroRows
    int dx = 0;
    std::vector<char> real;                      // B*N, the host rule
    std::vector<int> counts, indices;            // the host compact form (indices -1 past the count)
};

// ---- reference: the definition in double ----------------------------------------------------------------
struct Ref {
    std::vector<double> att, logits, dxp, dyp, dw;
};

Ref reference(const Case& c, const Inputs& in) {
    const int B = c.B, N = c.N, M = c.M, K = c.K, G = c.G, ld = in.ld;
    Ref r;
    r.att.assign((size_t)B * G * N * M, 0.0);
    r.logits.assign((size_t)B * G * N * M, -INFINITY);
    r.dxp.assign((size_t)B * N * K, 0.0);
    r.dyp.assign((size_t)B * M * K, 0.0);
    r.dw.assign((size_t)G * K, 0.0);
    for (int b = 0; b < B; ++b) {
        for (int g = 0; g < G; ++g) {
            const size_t map = ((size_t)b * G + g) * N * M;
            double mx = -INFINITY;
            for (int i = 0; i < N; ++i) {
                if (!in.real[(size_t)b * N + i]) continue;
                for (int j = 0; j < M; ++j) {
                    double s = 0;
                    for (int k = 0; k < K; ++k)
                        s += (double)in.w[(size_t)g * K + k] * in.xp[((size_t)b * N + i) * ld + k] * in.yp[((size_t)b * M + j) * ld + k];
                    s += c.bias ? in.b[g] : 0.0;
                    r.logits[map + (size_t)i * M + j] = s;
                    mx = std::max(mx, s);
                }
            }
            if (mx == -INFINITY) continue;  // no real object: A = 0, no gradient
            double z = 0;
            for (int e = 0; e < N * M; ++e)
                if (in.real[(size_t)b * N + e / M]) z += std::exp(r.logits[map + e] - mx);
            double cg = 0;
            for (int e = 0; e < N * M; ++e) {
                if (!in.real[(size_t)b * N + e / M]) continue;
                r.att[map + e] = std::exp(r.logits[map + e] - mx) / z;
                cg += r.att[map + e] * in.ga[map + e];
            }
            for (int i = 0; i < N; ++i) {
                if (!in.real[(size_t)b * N + i]) continue;
                for (int j = 0; j < M; ++j) {
                    const double dl = r.att[map + (size_t)i * M + j] * (in.ga[map + (size_t)i * M + j] - cg);
                    for (int k = 0; k < K; ++k) {
                        const double p = in.w[(size_t)g * K + k], x = in.xp[((size_t)b * N + i) * ld + k], y = in.yp[((size_t)b * M + j) * ld + k];
                        r.dxp[((size_t)b * N + i) * K + k] += p * dl * y;
                        r.dyp[((size_t)b * M + j) * K + k] += p * dl * x;
                        r.dw[(size_t)g * K + k] += dl * x * y;
                    }
                }
            }
        }
    }
    if (c.relu) {  // gradients of the pre-activations: X' = relu(pre), so d pre = d X' [X' > 0]
        for (size_t t = 0; t < r.dxp.size(); ++t)
            if (!(in.xp[(t / K) * ld + t % K] > 0)) r.dxp[t] = 0;
        for (size_t t = 0; t < r.dyp.size(); ++t)
            if (!(in.yp[(t / K) * ld + t % K] > 0)) r.dyp[t] = 0;
    }
    return r;
}

// ---- BanAttentionCuda --------------------------------------------------------------------------------------
struct RunOut {
    std::vector<float> att, logits, logits_fwd_no_logits_att, gx, gy, gw, gb;
    std::vector<int> counts, indices;  // the device mask (ZERO_ROWS)
    bool padding_untouched = true;     // gx / gy columns past K still NaN
    long errors = 0;
};

struct CudaOp {
    const Case& c;
    GridPolicy policy;
    DevBuf weight, bias;
    DevBuf wsLogits, wsPartials;  // Workspace.logits / partials

    CudaOp(const Case& cs, const Inputs& in, GridPolicy pol)
        : c(cs), policy(pol), weight("p", in.w.size()), bias("bias", (size_t)cs.G), wsLogits("ws.logits", (size_t)cs.B * cs.G * cs.N * cs.M),
          wsPartials("ws.partials", (size_t)cs.B * cs.G * cs.K) {
        weight.put(in.w);
        bias.put(cs.bias ? in.b : std::vector<float>((size_t)cs.G, 0.f));
    }

    unsigned units(long n) const { return (unsigned)std::max(1L, std::min(n, policy == GridPolicy::FULL ? 64L * kEmuSmCount : 2L)); }
    bool fused() const { return !c.tiled && c.N <= kFusedN && c.M <= kFusedM; }

    // BanAttentionCuda.forward; logits may be null
    void forward(float* xp, int ldx, float* yp, int ldy, const int* counts, const int* indices, int masked, float* att, float* logits) {
        const int B = c.B, N = c.N, M = c.M, K = c.K, G = c.G;
        if (!counts) counts = indices = reinterpret_cast<const int*>(xp);  // the placeholder, never read
        if (fused()) {
            emu::launch(ban_att_fused, units((long)B * G), kBlock, (const float*)xp, ldx, (const float*)yp, ldy, (const float*)weight.f(),
                        (const float*)bias.f(), counts, indices, masked, att, logits ? logits : att, logits ? 1 : 0, B, N, M, K, G);
            return;
        }
        float* lg = logits ? logits : wsLogits.f();
        const long rtiles = (N + kTileR) / kTileR, jtiles = (M + kTileJ - 1) / kTileJ;
        emu::launch(ban_att_logits, units((long)B * G * rtiles * jtiles), kBlock, (const float*)xp, ldx, (const float*)yp, ldy,
                    (const float*)weight.f(), (const float*)bias.f(), counts, indices, masked, lg, B, N, M, K, G);
        emu::launch(ban_att_softmax, units((long)B * G), kBlock, (const float*)lg, att, B * G, N * M);
    }

    void backward(float* xp, int ldx, float* yp, int ldy, const int* counts, const int* indices, int masked, float* att, float* ga, float* gx,
                  int ldgx, float* gy, int ldgy, float* gw, float* gb) {
        const int B = c.B, N = c.N, M = c.M, K = c.K, G = c.G;
        if (!counts) counts = indices = reinterpret_cast<const int*>(xp);
        const long ctiles = (K + kBwdBlock - 1) / kBwdBlock;
        emu::launch(ban_att_backward, units((long)B * ctiles), kBwdBlock, (const float*)xp, ldx, (const float*)yp, ldy, (const float*)weight.f(),
                    counts, indices, masked, (const float*)att, (const float*)ga, gx, ldgx, gy, ldgy, wsPartials.f(), c.relu ? 1 : 0, B, N, M, K,
                    G);
        emu::launch(ban_att_dp_reduce, emu_grid((long)G * K, kBlock, policy == GridPolicy::FULL), kBlock, (const float*)wsPartials.f(), gw, B,
                    G * K);
        if (gb) std::fill(gb, gb + G, 0.f);  // cuMemsetD32Async
    }
};

RunOut run_once(const Case& c, const Inputs& in, GridPolicy policy) {
    const long e0 = emu::runtime_errors();
    const int B = c.B, N = c.N, M = c.M, K = c.K, G = c.G, ld = in.ld;
    CudaOp op(c, in, policy);
    DevBuf xp("xp", in.xp.size()), yp("yp", in.yp.size()), ga("gradAttention", in.ga.size()), att("attention", (size_t)B * G * N * M),
        lg("logits", (size_t)B * G * N * M), att2("attention (no logits)", (size_t)B * G * N * M), gx("gradXp", in.xp.size()),
        gy("gradYp", in.yp.size()), gw("gradWeight", (size_t)G * K), gb("gradBias", c.bias ? G : 0);
    DevBuf xraw("x (raw objects)", std::max<size_t>(in.xraw.size(), 1)), counts("mask.counts", (size_t)B), indices("mask.indices", (size_t)B * N);
    xp.put(in.xp);
    yp.put(in.yp);
    ga.put(in.ga);
    const int* dc = nullptr;
    const int* di = nullptr;
    int masked = 0;
    if (c.mask == MaskKind::COUNTS) {  // DeviceObjectMask.upload
        counts.put(in.counts);
        indices.put(in.indices);
        dc = counts.i();
        di = indices.i();
        masked = 1;
    } else if (c.mask == MaskKind::ZERO_ROWS) {  // DeviceObjectMask.fromZeroRows
        xraw.put(in.xraw);
        const unsigned grid = policy == GridPolicy::FULL ? (unsigned)std::min<long>(B, 64L * kEmuSmCount) : 2u;
        emu::launch(ban_att_zero_rows, grid, kMaskBlock, (const float*)xraw.f(), in.dx + 3, B, N, in.dx, counts.i(), indices.i());
        dc = counts.i();
        di = indices.i();
        masked = 1;
    }
    op.forward(xp.f(), ld, yp.f(), ld, dc, di, masked, att.f(), lg.f());
    op.wsLogits.fill_nan();
    op.forward(xp.f(), ld, yp.f(), ld, dc, di, masked, att2.f(), nullptr);
    op.wsLogits.fill_nan();  // backward must not rely on anything the forward left in the workspace
    op.wsPartials.fill_nan();
    op.backward(xp.f(), ld, yp.f(), ld, dc, di, masked, att.f(), ga.f(), gx.f(), ld, gy.f(), ld, gw.f(), c.bias ? gb.f() : nullptr);
    check_guards("the host sequence");
    RunOut r;
    r.att = att.get(att.words);
    r.logits = lg.get(lg.words);
    r.logits_fwd_no_logits_att = att2.get(att2.words);
    auto dense = [&](DevBuf& buf, long rows) {
        std::vector<float> all = buf.get(buf.words), d((size_t)rows * K);
        for (long row = 0; row < rows; ++row)
            for (int k = 0; k < ld; ++k) {
                if (k < K) d[(size_t)row * K + k] = all[(size_t)row * ld + k];
                else if (!std::isnan(all[(size_t)row * ld + k])) r.padding_untouched = false;
            }
        return d;
    };
    r.gx = dense(gx, (long)B * N);
    r.gy = dense(gy, (long)B * M);
    r.gw = gw.get(gw.words);
    r.gb = gb.get(gb.words);
    if (c.mask != MaskKind::NONE) {
        r.counts.resize(B);
        r.indices.resize((size_t)B * N);
        memcpy(r.counts.data(), counts.i(), 4 * (size_t)B);
        memcpy(r.indices.data(), indices.i(), 4 * (size_t)B * N);
    }
    if (!xp.holds(in.xp) || !yp.holds(in.yp) || !ga.holds(in.ga) || (c.mask == MaskKind::ZERO_ROWS && !xraw.holds(in.xraw)))
        emu::report_error("an input buffer was modified");
    if (!op.weight.holds(in.w)) emu::report_error("the uploaded p was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

Inputs make_inputs(const Case& c, std::mt19937_64& rng) {
    Inputs in;
    const int B = c.B, N = c.N, M = c.M, K = c.K, G = c.G;
    in.ld = K + c.ldExtra;
    std::normal_distribution<float> nd(0.f, 1.f);
    auto rows = [&](long n) {
        std::vector<float> v((size_t)n * in.ld, NAN);  // the columns past K are never read: NaN shows a read
        for (long r = 0; r < n; ++r)
            for (int k = 0; k < K; ++k) {
                const float x = nd(rng);
                v[(size_t)r * in.ld + k] = c.relu ? std::max(x, 0.f) : x;
            }
        return v;
    };
    in.xp = rows((long)B * N);
    in.yp = rows((long)B * M);
    in.ga = emu_gaussian((size_t)B * G * N * M, rng);
    in.w = emu_gaussian((size_t)G * K, rng, c.sharp / std::sqrt((float)K));
    in.b = emu_gaussian((size_t)G, rng);
    in.real.assign((size_t)B * N, 1);
    if (c.mask == MaskKind::COUNTS) {
        for (int b = 0; b < B; ++b)
            for (int i = c.counts[b]; i < N; ++i) in.real[(size_t)b * N + i] = 0;
    } else if (c.mask == MaskKind::ZERO_ROWS) {  // counts[b] real rows at random places; the raw rows of padding are +-0
        in.dx = 5 + c.K % 7;
        const int ldr = in.dx + 3;
        in.xraw.assign((size_t)B * N * ldr, 7.f);  // the stride's gap is nonzero: a read past dim would make padding real
        for (int b = 0; b < B; ++b) {
            std::vector<int> order(N);
            for (int i = 0; i < N; ++i) order[i] = i;
            std::shuffle(order.begin(), order.end(), rng);
            for (int q = c.counts[b]; q < N; ++q) in.real[(size_t)b * N + order[q]] = 0;
            for (int i = 0; i < N; ++i)
                for (int d = 0; d < in.dx; ++d) {
                    float v = in.real[(size_t)b * N + i] ? (d == in.dx - 1 || nd(rng) > 0.5f ? nd(rng) : 0.f) : (d % 2 ? -0.f : 0.f);
                    if (in.real[(size_t)b * N + i] && i % 5 == 1 && d == in.dx - 1) v = NAN;  // a NaN makes a row real
                    in.xraw[((size_t)b * N + i) * ldr + d] = v;
                }
        }
    }
    in.counts.assign(B, 0);
    in.indices.assign((size_t)B * N, -1);
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < N; ++i)
            if (in.real[(size_t)b * N + i]) in.indices[(size_t)b * N + in.counts[b]++] = i;
    return in;
}

}  // namespace

int main() {
    emu_start();
    emu::expect_block(ban_att_fused, "ban_att_fused", kBlock);
    emu::expect_block(ban_att_logits, "ban_att_logits", kBlock);
    emu::expect_block(ban_att_softmax, "ban_att_softmax", kBlock);
    emu::expect_block(ban_att_backward, "ban_att_backward", kBwdBlock);
    emu::expect_block(ban_att_dp_reduce, "ban_att_dp_reduce", kBlock);
    emu::expect_block(ban_att_zero_rows, "ban_att_zero_rows", kMaskBlock);
    const double tol = 1e-5;
    printf("CPU emulation of cuda/BanAttention.cu; tolerance rel L2 %.0e (fp32) for A, the finite logits and every gradient\n", tol);

    std::vector<Case> cases = {
        {1, 1, 1, 1, 1, true, MaskKind::NONE, 0, false, false, 1.f, {}},                       // everything 1: A = 1, no gradient
        {2, 3, 4, 5, 2, true, MaskKind::NONE, 0, false, false, 1.f, {}},
        {3, 5, 3, 33, 3, false, MaskKind::COUNTS, 0, false, false, 1.f, {5, 0, 1}},             // an empty and a single-object sample
        {3, 7, 6, 37, 2, true, MaskKind::ZERO_ROWS, 3, true, false, 4.f, {4, 0, 1}},             // scattered zero rows, ld > K, relu
        {2, 9, 14, 70, 8, true, MaskKind::COUNTS, 1, false, false, 2.f, {9, 3}},                 // ban-vqa's M and G
        {2, 128, 16, 40, 2, true, MaskKind::COUNTS, 0, false, false, 1.f, {128, 77}},            // the fused limits exactly
        {2, 129, 3, 20, 2, true, MaskKind::COUNTS, 0, false, false, 1.f, {129, 65}},             // N > 128: tiled; two object tiles
        {2, 5, 17, 24, 3, true, MaskKind::ZERO_ROWS, 0, true, false, 1.f, {5, 2}},               // M > 16: tiled, two token passes in backward
        {2, 70, 33, 12, 1, true, MaskKind::COUNTS, 2, true, false, 1.f, {64, 0}},                // tiles past the count, 3 token tiles
        {2, 8, 5, 45, 32, true, MaskKind::COUNTS, 0, false, false, 1.f, {8, 1}},                 // G = MAX_GLIMPSES
        {2, 36, 14, 300, 8, true, MaskKind::COUNTS, 5, true, false, 1.f, {36, 10}},              // N = 36, several column tiles (300 > 128)
        {1, 36, 14, 3840, 8, true, MaskKind::ZERO_ROWS, 0, true, false, 1.f, {23}},              // the spec's K and G at B = 1
    };
    // the tiled path forced at small sizes, for cross-checking with the fused path
    const size_t fusedCases = cases.size();
    for (size_t i = 0; i < fusedCases; ++i) {
        const Case& c = cases[i];
        if (c.N <= kFusedN && c.M <= kFusedM && c.K < 1000) {
            Case t = c;
            t.tiled = true;
            cases.push_back(t);
        }
    }

    uint64_t seed = 20180601;
    std::vector<std::vector<float>> fusedLogits(fusedCases);
    for (size_t ci = 0; ci < cases.size(); ++ci) {
        const Case& c = cases[ci];
        const size_t base = ci < fusedCases ? ci : [&] {  // the fused case this tiled one repeats
            size_t n = 0;
            for (size_t i = 0; i < fusedCases; ++i)
                if (cases[i].N <= kFusedN && cases[i].M <= kFusedM && cases[i].K < 1000 && fusedCases + n++ == ci) return i;
            return (size_t)0;
        }();
        std::mt19937_64 rng(seed + base);
        const Inputs in = make_inputs(c, rng);
        const Ref ref = reference(c, in);
        const bool fused = !c.tiled && c.N <= kFusedN && c.M <= kFusedM;
        RunOut full;
        for (GridPolicy policy : {GridPolicy::FULL, GridPolicy::SMALL}) {
            if (c.K >= 1000 && policy == GridPolicy::SMALL) continue;  // the grid only changes loop trip counts: covered at small sizes
            const std::string name = describe(c) + (fused ? " fused" : " tiled") + (policy == GridPolicy::FULL ? " grid=java" : " grid=small");
            g_current = name;
            const auto tc = std::chrono::steady_clock::now();
            RunOut r = run_once(c, in, policy);
            if (getenv("EMU_TIMES")) fprintf(stderr, "%.2f s %s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count(), name.c_str());
            bool ok = r.errors == 0;
            std::ostringstream msg;
            msg << std::scientific << std::setprecision(2);
            double worst = 0;
            auto check = [&](const char* n, const std::vector<float>& got, const std::vector<double>& want) {
                const double e = emu_rel_l2(got, want);
                ok = ok && e <= tol;
                worst = std::isnan(e) || e > worst ? e : worst;
                msg << " " << n << " " << e;
            };
            check("att", r.att, ref.att);
            // logits: -inf exactly where the reference has it, relative L2 over the rest
            std::vector<float> lf;
            std::vector<double> lr;
            bool infOk = true;
            for (size_t t = 0; t < ref.logits.size(); ++t) {
                if (ref.logits[t] == -INFINITY) infOk = infOk && r.logits[t] == -INFINITY;
                else { lf.push_back(r.logits[t]); lr.push_back(ref.logits[t]); }
            }
            check("logits", lf, lr);
            check("dxp", r.gx, ref.dxp);
            check("dyp", r.gy, ref.dyp);
            check("dp", r.gw, ref.dw);
            bool zeros = true;
            for (float v : r.gb) zeros = zeros && v == 0.f;
            const bool sameAtt = emu_same_bits(r.att, r.logits_fwd_no_logits_att);
            bool maskOk = true;
            if (c.mask == MaskKind::ZERO_ROWS) maskOk = r.counts == in.counts && r.indices == in.indices;
            bool finite = emu_all_finite(r.att) && emu_all_finite(r.gx) && emu_all_finite(r.gy) && emu_all_finite(r.gw);
            ok = ok && infOk && zeros && sameAtt && maskOk && r.padding_untouched && finite;
            msg << "  worst " << worst;
            if (!infOk) msg << "  -inf MISPLACED";
            if (!zeros) msg << "  dbias NOT ZERO";
            if (!sameAtt) msg << "  attention without logits buffer DIFFERS";
            if (!maskOk) msg << "  device mask DIFFERS from ObjectMask.zeroRows";
            if (!r.padding_untouched) msg << "  wrote past K in a strided gradient";
            if (!finite) msg << "  NON-FINITE output";
            emu_record(ok, name + msg.str() + (r.errors ? "  RUNTIME ERRORS" : ""));
            if (policy == GridPolicy::FULL) {
                full = std::move(r);
                if (ci < fusedCases) fusedLogits[ci] = full.logits;
                else {
                    const bool same = emu_same_bits(full.logits, fusedLogits[base]);
                    emu_record(same, describe(c) + ": tiled vs fused logits bit-identical: " + (same ? "yes" : "NO"));
                }
            } else {
                const bool same = emu_same_bits(r.att, full.att) && emu_same_bits(r.logits, full.logits) && emu_same_bits(r.gx, full.gx) &&
                                  emu_same_bits(r.gy, full.gy) && emu_same_bits(r.gw, full.gw);
                emu_record(same, describe(c) + ": java grid vs small grid bit-identical: " + (same ? "yes" : "NO"));
            }
        }
    }
    return emu_finish();
}
