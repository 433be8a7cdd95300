// CPU emulation harness for cuda/MlbAttention.cu (with cuda/Linear.cu, whose bias kernels MlbAttentionCuda
// launches through LinearCuda).
//
// Compiles the kernel sources unchanged against the shim in this directory (cuda_runtime.h) and replays the
// exact launch sequence and buffer layout of java/src/main/java/io/bifuse/cuda/MlbAttentionCuda.java: the
// stacked [W_q; W_f] question weight, the concatenated glimpse weights, the workspace (qp, pv, logits, alpha,
// vhat, up; dz, z, dp, vhat2, dalpha, tq, dbv on backward), the grid formulas, and every GEMM with its
// strides and batch strides (cuBLAS replaced by emu_gemm: double accumulation, operands rounded as the chosen
// Precision). Compared against MLB attention computed from its definition in double precision (a plain
// per-sample chain rule written independently of the kernels): the output, the attention maps and every
// gradient (dq, dv, and weight and bias of question, cells, logits, each glimpse, questionFusion, answer).
//
// Device buffers carry NaN guard zones (checked after every launch and GEMM); the workspace is refilled with
// NaN before every call and every output and gradient buffer starts as NaN, so a read of data the sequence
// did not produce, or an element it did not write, shows up. Inputs and the uploaded weights are checked to
// be unmodified. Each case also runs with tiny grids (grid-stride and unit loops iterate) and must give the
// same bits, and the forward without an attention buffer must give the same output bits.
//
// Build and run: native-build/emulate-kernels.sh mlb_attention   (EMU_TIMES=1 in the environment: each case's
// time on stderr)
#include <cuda_runtime.h>

#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // the kernels' #pragma unroll means nothing to g++
#include "../../cuda/Linear.cu"
#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/MlbAttention.cu"
#endif

#include "emu_harness.h"
#include "emu_reference.h"

#include <iomanip>
#include <memory>
#include <sstream>

namespace {
constexpr int kBlock = 256;     // MlbAttentionCuda.BLOCK and LinearCuda.BLOCK
constexpr int kCells = 8;       // MlbAttentionCuda.CELLS_PER_BLOCK
constexpr int kBwdBlock = 128;  // MlbAttentionCuda.BWD_BLOCK

enum class GridPolicy { FULL, SMALL };  // FULL: the Java formulas; SMALL: at most 3 blocks (loops over units iterate)

struct Size { int B, L, dq, dv, j, G, out; };

struct Op {
    Size s;
    int act;  // 0 none, 1 relu, 2 tanh (Activation.code())
    EmuLayer question, cells, logits;
    std::vector<EmuLayer> glimpses;
    EmuLayer fusion, answer;
};

std::string describe(const Size& s) {
    char buf[128];
    snprintf(buf, sizeof buf, "B=%d L=%d Dq=%d Dv=%d J=%d G=%d Out=%d", s.B, s.L, s.dq, s.dv, s.j, s.G, s.out);
    return buf;
}

std::vector<float> concat(const std::vector<std::vector<float>>& parts) {
    std::vector<float> r;
    for (const auto& p : parts) r.insert(r.end(), p.begin(), p.end());
    return r;
}

struct Uploaded {  // a weight on the device, with the host copy it must still equal after a run
    DevBuf d;
    std::vector<float> host;
    Uploaded(const std::string& name, std::vector<float> v) : d(name, v.size()), host(std::move(v)) { d.put(host); }
    float* f() { return d.f(); }
    bool intact() const { return d.holds(host); }
};

// MlbAttentionCuda.GradientBuffers (bias buffers of 0 words, passed as null, where the layer has none)
struct LayerGrad {
    DevBuf w, b;
    bool has_bias;
    LayerGrad(const std::string& name, const EmuLayer& l)
        : w(name + ".weight", (size_t)l.out * l.in), b(name + ".bias", l.has_bias ? l.out : 0), has_bias(l.has_bias) {}
    float* bias() { return has_bias ? b.f() : nullptr; }
};

struct Grads {
    DevBuf dq, dv;
    LayerGrad question, cells, logits;
    std::vector<std::unique_ptr<LayerGrad>> glimpses;
    LayerGrad fusion, answer;
    Grads(const Op& op)
        : dq("grads.dq", (size_t)op.s.B * op.s.dq), dv("grads.dv", (size_t)op.s.B * op.s.L * op.s.dv), question("grads.question", op.question),
          cells("grads.cells", op.cells), logits("grads.logits", op.logits), fusion("grads.questionFusion", op.fusion),
          answer("grads.answer", op.answer) {
        for (int i = 0; i < op.s.G; ++i) glimpses.push_back(std::make_unique<LayerGrad>("grads.glimpses[" + std::to_string(i) + "]", op.glimpses[i]));
    }
    // Every tensor in the order of MlbAttention.Gradients.tensors() (biases only where the layer has one).
    std::vector<DevBuf*> tensors() {
        std::vector<DevBuf*> t = {&dq, &dv};
        std::vector<LayerGrad*> layers = {&question, &cells, &logits};
        for (auto& g : glimpses) layers.push_back(g.get());
        layers.push_back(&fusion);
        layers.push_back(&answer);
        for (LayerGrad* l : layers) {
            t.push_back(&l->w);
            if (l->has_bias) t.push_back(&l->b);
        }
        return t;
    }
};

struct CudaOp {  // MlbAttentionCuda with one workspace (one stream, one (B, L))
    const Op& op;
    int precision;
    GridPolicy policy;
    int B, L, dq, dv, j, G, gj, qcols, outDim, act;
    Uploaded questionWeight, questionBias, glimpseWeight, glimpseBias;
    Uploaded cellsW, cellsB, logitsW, logitsB, answerW, answerB;  // LinearCuda: weight and bias (zeros when none)
    // Workspace
    DevBuf qp, pv, logits, alpha, vhat, up;
    DevBuf dz, z, dp, vhat2, dalpha, tq, dbv;  // Workspace.ensureBackward

    CudaOp(const Op& o, int prec, GridPolicy pol)
        : op(o), precision(prec), policy(pol), B(o.s.B), L(o.s.L), dq(o.s.dq), dv(o.s.dv), j(o.s.j), G(o.s.G), gj(o.s.G * o.s.j),
          qcols(o.s.j + o.s.G * o.s.j), outDim(o.s.out), act(o.act),
          questionWeight("questionWeight", concat({o.question.w, o.fusion.w})),
          questionBias("questionBias", concat({o.question.bias_or_zeros(), o.fusion.bias_or_zeros()})),
          glimpseWeight("glimpseWeight", concat_glimpses(o, true)), glimpseBias("glimpseBias", concat_glimpses(o, false)),
          cellsW("cells.weight", o.cells.w), cellsB("cells.bias", o.cells.bias_or_zeros()), logitsW("logits.weight", o.logits.w),
          logitsB("logits.bias", o.logits.bias_or_zeros()), answerW("answer.weight", o.answer.w), answerB("answer.bias", o.answer.bias_or_zeros()),
          qp("qp", (size_t)B * qcols), pv("pv", (size_t)B * L * j), logits("logits", (size_t)B * G * L), alpha("alpha", (size_t)B * G * L),
          vhat("vhat", (size_t)B * G * dv), up("up", (size_t)B * gj), dz("dz", (size_t)B * gj), z("z", (size_t)B * gj), dp("dp", (size_t)B * qcols),
          vhat2("vhat2", (size_t)B * G * dv), dalpha("dalpha", (size_t)B * G * L), tq("tq", (size_t)B * gj), dbv("dbv", (size_t)B * j) {}

    static std::vector<float> concat_glimpses(const Op& o, bool weights) {
        std::vector<std::vector<float>> parts;
        for (const EmuLayer& l : o.glimpses) parts.push_back(weights ? l.w : l.bias_or_zeros());
        return concat(parts);
    }

    void garbage() { for (DevBuf* b : {&qp, &pv, &logits, &alpha, &vhat, &up, &dz, &z, &dp, &vhat2, &dalpha, &tq, &dbv}) b->fill_nan(); }
    bool weights_intact() const {
        for (const Uploaded* u : {&questionWeight, &questionBias, &glimpseWeight, &glimpseBias, &cellsW, &cellsB, &logitsW, &logitsB, &answerW, &answerB})
            if (!u->intact()) return false;
        return true;
    }

    // MlbAttentionCuda.grid and LinearCuda.grid
    unsigned grid(long threads) const { return emu_grid(threads, kBlock, policy == GridPolicy::FULL); }
    unsigned units(long n) const {  // MlbAttentionCuda.units
        long cap = policy == GridPolicy::FULL ? 64L * kEmuSmCount : 2;
        return (unsigned)std::max(1L, std::min(n, cap));
    }
    void bias_gradient(const float* g, int ldg, int rows, int cols, float* gb) {  // LinearCuda.biasGradient
        emu::launch(lin_bias_grad, emu_bias_grad_grid(cols, kBlock, policy == GridPolicy::FULL), kBlock, g, gb, rows, cols, ldg);
    }

    // Everything up to the glimpse projections (MlbAttentionCuda.attend).
    void attend(const float* q, const float* v, float* alpha_out) {
        emu_gemm(precision, false, true, B, qcols, dq, 1.f, q, dq, questionWeight.f(), dq, 0.f, qp.f(), qcols);
        emu::launch(mlb_att_question, grid((long)B * qcols), kBlock, qp.f(), questionBias.f(), B, qcols, act);
        emu_gemm(precision, false, true, B * L, j, dv, 1.f, v, dv, cellsW.f(), dv, 0.f, pv.f(), j);  // cells.project
        const long groups = (long)B * ((L + kCells - 1) / kCells);
        emu::launch(mlb_att_logits, units(groups), kBlock, pv.f(), cellsB.f(), qp.f(), qcols, logitsW.f(), logitsB.f(), logits.f(), B, L, j, G,
                    act);
        const long chunks = (long)B * ((dv + kBlock - 1) / kBlock);
        emu::launch(mlb_att_pool, units(chunks), kBlock, logits.f(), v, alpha_out, vhat.f(), B, L, dv, G);
        emu_gemm(precision, false, true, B, j, dv, 1.f, vhat.f(), G * dv, glimpseWeight.f(), dv, 0.f, up.f(), gj, G, dv, (long)j * dv, j);
    }

    void forward(const float* q, const float* v, float* out, float* attention) {
        attend(q, v, attention ? attention : alpha.f());
        emu::launch(mlb_att_fuse, grid((long)B * gj), kBlock, up.f(), glimpseBias.f(), qp.f(), qcols, j, B, gj, act);
        // answer.forward: bias rows, then the GEMM with beta 1
        emu::launch(lin_bias_rows, grid((long)B * outDim), kBlock, out, answerB.f(), B, outDim, outDim);
        emu_gemm(precision, false, true, B, outDim, gj, 1.f, up.f(), gj, answerW.f(), gj, 1.f, out, outDim);
    }

    void backward(const float* q, const float* v, const float* gradOut, Grads& gr) {
        const int p = precision;
        attend(q, v, alpha.f());
        emu_gemm(p, false, false, B, gj, outDim, 1.f, gradOut, outDim, answerW.f(), gj, 0.f, dz.f(), gj);  // answer.backwardInput
        emu::launch(mlb_att_fuse_backward, grid((long)B * gj), kBlock, up.f(), glimpseBias.f(), qp.f(), qcols, j, dz.f(), z.f(), dp.f(), B, gj,
                    act);
        // answer.backwardParameters
        emu_gemm(p, true, false, outDim, gj, B, 1.f, gradOut, outDim, z.f(), gj, 0.f, gr.answer.w.f(), gj);
        if (gr.answer.bias()) bias_gradient(gradOut, outDim, B, outDim, gr.answer.bias());
        for (int i = 0; i < G; ++i) {  // up now holds dp_u
            const float* dpu = up.f() + (size_t)i * j;
            emu_gemm(p, true, false, j, dv, B, 1.f, dpu, gj, vhat.f() + (size_t)i * dv, G * dv, 0.f, gr.glimpses[i]->w.f(), dv);
            if (gr.glimpses[i]->bias()) bias_gradient(dpu, gj, B, j, gr.glimpses[i]->bias());
        }
        emu_gemm(p, false, false, B, dv, j, 1.f, up.f(), gj, glimpseWeight.f(), dv, 0.f, vhat2.f(), G * dv, G, j, (long)j * dv, dv);
        emu_gemm(p, false, true, G, L, dv, 1.f, vhat2.f(), dv, v, dv, 0.f, dalpha.f(), L, B, (long)G * dv, (long)L * dv, (long)G * L);
        const long chunks = (long)B * ((j + kBwdBlock - 1) / kBwdBlock);
        emu::launch(mlb_att_cells_backward, units(chunks), kBwdBlock, pv.f(), cellsB.f(), qp.f(), qcols, logitsW.f(), alpha.f(), dalpha.f(),
                    dp.f(), tq.f(), dbv.f(), B, L, j, G, act);
        const int rows = B * L;  // pv now holds dp_v
        emu_gemm(p, true, false, j, dv, rows, 1.f, pv.f(), j, v, dv, 0.f, gr.cells.w.f(), dv);  // cells.backwardParameters, no bias
        if (gr.cells.bias()) {
            if (act == 0) gr.cells.b.zero(0, j);  // sigma = identity: exactly zero, cuMemsetD32Async
            else bias_gradient(dbv.f(), j, B, j, gr.cells.bias());
        }
        emu_gemm(p, true, false, L, dv, G, 1.f, alpha.f(), L, vhat2.f(), dv, 0.f, gr.dv.f(), dv, B, (long)G * L, (long)G * dv, (long)L * dv);
        emu_gemm(p, false, false, rows, dv, j, 1.f, pv.f(), j, cellsW.f(), dv, 1.f, gr.dv.f(), dv);  // cells.backwardInput, beta 1
        bias_gradient(tq.f(), gj, B, gj, gr.logits.w.f());
        if (gr.logits.bias()) gr.logits.b.zero(0, G);  // cuMemsetD32Async
        emu_gemm(p, false, false, B, dq, qcols, 1.f, dp.f(), qcols, questionWeight.f(), dq, 0.f, gr.dq.f(), dq);
        emu_gemm(p, true, false, j, dq, B, 1.f, dp.f(), qcols, q, dq, 0.f, gr.question.w.f(), dq);
        if (gr.question.bias()) bias_gradient(dp.f(), qcols, B, j, gr.question.bias());
        const float* dpf = dp.f() + j;
        emu_gemm(p, true, false, gj, dq, B, 1.f, dpf, qcols, q, dq, 0.f, gr.fusion.w.f(), dq);
        if (gr.fusion.bias()) bias_gradient(dpf, qcols, B, gj, gr.fusion.bias());
    }
};

// ---- reference: the definition and its chain rule, in double, one sample at a time ----------------------
struct RefLayer {  // a layer's gradient
    std::vector<double> w, b;
    explicit RefLayer(const EmuLayer& l) : w((size_t)l.out * l.in, 0.0), b(l.has_bias ? l.out : 0, 0.0) {}
};

struct Ref {
    std::vector<double> out, att, dq, dv;
    std::vector<RefLayer> layers;  // question, cells, logits, glimpses..., questionFusion, answer
    // |d b_a|, and |d b_v| with sigma = identity, relative to the sum of the absolute values of their terms,
    // before they are replaced by their exact value 0 (softmax invariance): the definition's own check.
    double zero_grads_rel = 0;
    std::vector<const std::vector<double>*> tensors() const {  // the order of Grads::tensors()
        std::vector<const std::vector<double>*> t = {&dq, &dv};
        for (const RefLayer& l : layers) {
            t.push_back(&l.w);
            if (!l.b.empty()) t.push_back(&l.b);
        }
        return t;
    }
};

// y = W x + b for a layer (x of length in: the float inputs, or double activations)
template <class X>
std::vector<double> affine(const EmuLayer& l, const X* x) {
    std::vector<double> y(l.out);
    for (int o = 0; o < l.out; ++o) {
        double a = l.has_bias ? l.b[o] : 0.0;
        for (int i = 0; i < l.in; ++i) a += (double)l.w[(size_t)o * l.in + i] * x[i];
        y[o] = a;
    }
    return y;
}
// Backward of y = W x + b: gW += dy x^T, gb += dy, dx += W^T dy.
template <class X>
void affine_backward(const EmuLayer& l, const X* x, const std::vector<double>& dy, RefLayer& g, double* dx) {
    for (int o = 0; o < l.out; ++o) {
        const double d = dy[o];
        if (l.has_bias) g.b[o] += d;
        for (int i = 0; i < l.in; ++i) {
            g.w[(size_t)o * l.in + i] += d * x[i];
            if (dx) dx[i] += d * l.w[(size_t)o * l.in + i];
        }
    }
}

Ref reference(const Op& op, const std::vector<float>& qv, const std::vector<float>& vv, const std::vector<float>& gv) {
    const Size& s = op.s;
    const int J = s.j, G = s.G, L = s.L, Dv = s.dv;
    Ref r;
    r.out.assign((size_t)s.B * s.out, 0);
    r.att.assign((size_t)s.B * G * L, 0);
    r.dq.assign((size_t)s.B * s.dq, 0);
    r.dv.assign((size_t)s.B * L * Dv, 0);
    r.layers.emplace_back(op.question);
    r.layers.emplace_back(op.cells);
    r.layers.emplace_back(op.logits);
    for (const EmuLayer& l : op.glimpses) r.layers.emplace_back(l);
    r.layers.emplace_back(op.fusion);
    r.layers.emplace_back(op.answer);
    RefLayer &gQ = r.layers[0], &gV = r.layers[1], &gA = r.layers[2], &gF = r.layers[3 + G], &gO = r.layers[4 + G];
    std::vector<double> dba(G, 0.0), dba_abs(G, 0.0), dbv_abs(J, 0.0);
    for (int b = 0; b < s.B; ++b) {
        const float* q = &qv[(size_t)b * s.dq];
        const float* v = &vv[(size_t)b * L * Dv];
        const float* go = &gv[(size_t)b * s.out];
        // forward
        const std::vector<double> pq = affine(op.question, q), pf = affine(op.fusion, q);
        std::vector<double> qa(J), f(G * J);
        for (int k = 0; k < J; ++k) qa[k] = emu_act(op.act, pq[k]);
        for (int k = 0; k < G * J; ++k) f[k] = emu_act(op.act, pf[k]);
        std::vector<std::vector<double>> pvs(L), hs(L), logit(L);
        for (int c = 0; c < L; ++c) {
            pvs[c] = affine(op.cells, v + (size_t)c * Dv);
            hs[c].resize(J);
            for (int k = 0; k < J; ++k) hs[c][k] = qa[k] * emu_act(op.act, pvs[c][k]);
            logit[c] = affine(op.logits, hs[c].data());
        }
        std::vector<double> alpha((size_t)G * L), vhat((size_t)G * Dv, 0.0);
        for (int g = 0; g < G; ++g) {
            double m = -INFINITY, sum = 0;
            for (int c = 0; c < L; ++c) m = std::max(m, logit[c][g]);
            for (int c = 0; c < L; ++c) sum += std::exp(logit[c][g] - m);
            for (int c = 0; c < L; ++c) {
                const double a = std::exp(logit[c][g] - m) / sum;
                alpha[(size_t)g * L + c] = a;
                r.att[((size_t)b * G + g) * L + c] = a;
                for (int d = 0; d < Dv; ++d) vhat[(size_t)g * Dv + d] += a * v[(size_t)c * Dv + d];
            }
        }
        std::vector<double> pu((size_t)G * J), u((size_t)G * J), zz((size_t)G * J);
        for (int g = 0; g < G; ++g) {
            const std::vector<double> p = affine(op.glimpses[g], &vhat[(size_t)g * Dv]);
            for (int k = 0; k < J; ++k) {
                pu[(size_t)g * J + k] = p[k];
                u[(size_t)g * J + k] = emu_act(op.act, p[k]);
                zz[(size_t)g * J + k] = u[(size_t)g * J + k] * f[(size_t)g * J + k];
            }
        }
        const std::vector<double> o = affine(op.answer, zz.data());
        for (int k = 0; k < s.out; ++k) r.out[(size_t)b * s.out + k] = o[k];
        // backward
        std::vector<double> dgo(go, go + s.out), dz((size_t)G * J, 0.0);
        affine_backward(op.answer, zz.data(), dgo, gO, dz.data());
        std::vector<double> dpf((size_t)G * J), dvhat((size_t)G * Dv, 0.0);
        for (int g = 0; g < G; ++g) {
            std::vector<double> dpu(J);
            for (int k = 0; k < J; ++k) {
                const size_t at = (size_t)g * J + k;
                dpu[k] = dz[at] * f[at] * emu_act_grad(op.act, pu[at]);
                dpf[at] = dz[at] * u[at] * emu_act_grad(op.act, pf[at]);
            }
            affine_backward(op.glimpses[g], &vhat[(size_t)g * Dv], dpu, r.layers[3 + g], &dvhat[(size_t)g * Dv]);
        }
        double* dvb = &r.dv[(size_t)b * L * Dv];
        std::vector<double> dqa(J, 0.0);
        for (int g = 0; g < G; ++g) {
            std::vector<double> dal(L);
            double mean = 0;
            for (int c = 0; c < L; ++c) {
                double d = 0;
                for (int k = 0; k < Dv; ++k) {
                    d += dvhat[(size_t)g * Dv + k] * v[(size_t)c * Dv + k];
                    dvb[(size_t)c * Dv + k] += alpha[(size_t)g * L + c] * dvhat[(size_t)g * Dv + k];
                }
                dal[c] = d;
                mean += alpha[(size_t)g * L + c] * d;
            }
            for (int c = 0; c < L; ++c) dal[c] = alpha[(size_t)g * L + c] * (dal[c] - mean);  // now d logit
            for (int c = 0; c < L; ++c) {
                std::vector<double> dlog(G, 0.0);
                dlog[g] = dal[c];
                std::vector<double> dh(J, 0.0);
                affine_backward(op.logits, hs[c].data(), dlog, gA, dh.data());
                dba[g] += dal[c];
                dba_abs[g] += std::fabs(dal[c]);
                std::vector<double> dpv(J);
                for (int k = 0; k < J; ++k) {
                    const double va = emu_act(op.act, pvs[c][k]);
                    dqa[k] += dh[k] * va;
                    dpv[k] = dh[k] * qa[k] * emu_act_grad(op.act, pvs[c][k]);
                    dbv_abs[k] += std::fabs(dpv[k]);
                }
                affine_backward(op.cells, v + (size_t)c * Dv, dpv, gV, dvb + (size_t)c * Dv);
            }
        }
        std::vector<double> dpq(J);
        for (int k = 0; k < J; ++k) dpq[k] = dqa[k] * emu_act_grad(op.act, pq[k]);
        affine_backward(op.question, q, dpq, gQ, &r.dq[(size_t)b * s.dq]);
        affine_backward(op.fusion, q, dpf, gF, &r.dq[(size_t)b * s.dq]);
    }
    for (int g = 0; g < G; ++g) r.zero_grads_rel = std::max(r.zero_grads_rel, std::fabs(dba[g]) / std::max(dba_abs[g], 1e-300));
    if (op.logits.has_bias) std::fill(gA.b.begin(), gA.b.end(), 0.0);  // the exact values (MlbAttentionReference does the same)
    if (op.act == 0 && op.cells.has_bias) {
        for (int k = 0; k < J; ++k) r.zero_grads_rel = std::max(r.zero_grads_rel, std::fabs(gV.b[k]) / std::max(dbv_abs[k], 1e-300));
        std::fill(gV.b.begin(), gV.b.end(), 0.0);
    }
    return r;
}

struct RunOut {
    std::vector<float> out, att, out_no_att;
    std::vector<std::vector<float>> grads;  // Grads::tensors() order
    long errors = 0;
};

// without_attention: also a forward with a null attention buffer (the maps then go to the workspace), whose
// output must have the same bits.
RunOut run_once(const Op& op, int precision, GridPolicy policy, const std::vector<float>& q, const std::vector<float>& v,
                const std::vector<float>& g, bool without_attention) {
    const long e0 = emu::runtime_errors();
    const Size& s = op.s;
    CudaOp cop(op, precision, policy);
    DevBuf dq("q", q.size()), dv("v", v.size()), dg("gradOut", g.size()), out("out", (size_t)s.B * s.out),
        att("attention", (size_t)s.B * s.G * s.L), out2("out (no attention buffer)", (size_t)s.B * s.out);
    Grads gr(op);
    dq.put(q);
    dv.put(v);
    dg.put(g);
    cop.garbage();
    cop.forward(dq.f(), dv.f(), out.f(), att.f());
    if (without_attention) {
        cop.garbage();
        cop.forward(dq.f(), dv.f(), out2.f(), nullptr);
    }
    cop.garbage();  // backward must not rely on anything the forward left in the workspace
    cop.backward(dq.f(), dv.f(), dg.f(), gr);
    check_guards("the host sequence");
    RunOut r;
    r.out = out.get(out.words);
    r.att = att.get(att.words);
    r.out_no_att = without_attention ? out2.get(out2.words) : r.out;
    for (DevBuf* b : gr.tensors()) r.grads.push_back(b->get(b->words));
    if (!dq.holds(q) || !dv.holds(v) || !dg.holds(g)) emu::report_error("an input buffer was modified");
    if (!cop.weights_intact()) emu::report_error("an uploaded weight was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

std::vector<std::string> gradient_names(const Op& op) {  // MlbAttention.gradientNames()
    std::vector<std::string> n = {"dq", "dv"};
    auto add = [&](const std::string& name, const EmuLayer& l) {
        n.push_back(name + ".weight");
        if (l.has_bias) n.push_back(name + ".bias");
    };
    add("question", op.question);
    add("cells", op.cells);
    add("logits", op.logits);
    for (int i = 0; i < op.s.G; ++i) add("glimpses[" + std::to_string(i) + "]", op.glimpses[i]);
    add("questionFusion", op.fusion);
    add("answer", op.answer);
    return n;
}

}  // namespace

int main() {
    emu_start();
    emu::expect_block(mlb_att_question, "mlb_att_question", kBlock);
    emu::expect_block(mlb_att_logits, "mlb_att_logits", kBlock);
    emu::expect_block(mlb_att_pool, "mlb_att_pool", kBlock);
    emu::expect_block(mlb_att_fuse, "mlb_att_fuse", kBlock);
    emu::expect_block(mlb_att_fuse_backward, "mlb_att_fuse_backward", kBlock);
    emu::expect_block(mlb_att_cells_backward, "mlb_att_cells_backward", kBwdBlock);
    emu::expect_block(lin_bias_rows, "lin_bias_rows", kBlock);
    emu::expect_block(lin_bias_grad, "lin_bias_grad", kBlock);
    printf("CPU emulation of cuda/MlbAttention.cu + cuda/Linear.cu; tolerance rel L2 1e-5 (fp32), Precision.bound() "
           "(tf32 %.2e, bf16 %.2e)\n", emu_precision_bound(1), emu_precision_bound(2));

    // sharp: the logits layer's weights scaled by 8, so that the softmax is far from uniform (the attention
    // then depends strongly on which cell is which, and exp overflows without the max subtraction).
    struct Case { Size s; int act; bool biases; float sharp; std::vector<int> precisions; };
    std::vector<Case> cases;
    const std::vector<Size> small = {
        {1, 1, 1, 1, 1, 1, 1},          // everything 1: L = 1 (alpha = 1, no logit gradient), G = 1
        {2, 3, 4, 5, 6, 2, 3},
        {3, 9, 7, 5, 33, 3, 4},         // L = 9: a second logits cell group; J = 33 > 32 lanes
        {2, 40, 12, 257, 129, 2, 7},    // L > the 32-cell tile; Dv = 257 > 256 columns; J = 129 > the 128-wide backward block
        {1, 1, 5, 6, 7, 1, 2},          // L = 1 with real widths
        {1, 17, 9, 11, 13, 16, 5},      // G = MAX_GLIMPSES
    };
    for (const Size& s : small)
        for (int act : {0, 1, 2})
            if (s.G < 16 || act == 2) cases.push_back({s, act, true, 1.f, {0}});  // G = 16 is slow to emulate: one activation
    for (Case& c : cases)
        if (c.s.dv == 257 && c.act != 1) c.precisions = {0, 1, 2};  // TF32 / BF16 GEMMs at an odd size, tanh and none
    cases.push_back({{2, 33, 20, 300, 70, 4, 9}, 2, false, 1.f, {0}});  // no biases anywhere
    cases.push_back({{2, 65, 10, 40, 30, 2, 6}, 1, false, 8.f, {0}});
    cases.push_back({{3, 21, 16, 24, 40, 2, 11}, 0, true, 8.f, {0, 2}});
    cases.push_back({{1, 196, 48, 96, 80, 2, 50}, 2, true, 1.f, {0, 1, 2}});  // the paper's L = 196 (14 x 14) at small widths
    cases.push_back({{2, 3, 2400, 2048, 1200, 2, 2000}, 2, true, 1.f, {0, 1, 2}});  // the spec's widths at B = 2, L = 3

    uint64_t seed = 20170301;
    for (const Case& c : cases) {
        ++seed;
        const Size& s = c.s;
        std::mt19937_64 rng(seed);
        Op op{s, c.act, emu_make_layer(s.j, s.dq, c.biases, rng), emu_make_layer(s.j, s.dv, c.biases, rng), emu_make_layer(s.G, s.j, c.biases, rng, c.sharp),
              {}, {}, {}};
        for (int i = 0; i < s.G; ++i) op.glimpses.push_back(emu_make_layer(s.j, s.dv, c.biases, rng));
        op.fusion = emu_make_layer(s.G * s.j, s.dq, c.biases, rng);
        op.answer = emu_make_layer(s.out, s.G * s.j, c.biases, rng);
        const std::vector<float> q = emu_gaussian((size_t)s.B * s.dq, rng), v = emu_gaussian((size_t)s.B * s.L * s.dv, rng),
                                 g = emu_gaussian((size_t)s.B * s.out, rng);
        const Ref ref = reference(op, q, v, g);
        const auto want = ref.tensors();
        const std::vector<std::string> names = gradient_names(op);
        const bool big = s.dq >= 2400;
        for (int precision : c.precisions) {
        const double tol = emu_precision_bound(precision);
        RunOut full;
        for (GridPolicy policy : {GridPolicy::FULL, GridPolicy::SMALL}) {
            if ((big || precision != 0) && policy == GridPolicy::SMALL) continue;  // the grid only changes loop trip counts: covered by fp32 at small sizes
            std::ostringstream name;
            name << describe(s) << " " << emu_act_name(c.act) << (c.biases ? "" : " no-bias") << (c.sharp != 1.f ? " sharp" : "") << " "
                 << emu_precision_name(precision) << " grid=" << (policy == GridPolicy::FULL ? "java" : "small");
            g_current = name.str();
            const auto tc = std::chrono::steady_clock::now();
            RunOut r = run_once(op, precision, policy, q, v, g, policy == GridPolicy::FULL && precision == 0);
            if (getenv("EMU_TIMES")) fprintf(stderr, "%.2f s %s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count(), g_current.c_str());
            bool ok = r.errors == 0 && r.grads.size() == want.size() && want.size() == names.size();
            double worst = 0;
            std::string worst_name = "-";
            std::ostringstream msg;
            msg << std::scientific << std::setprecision(2);
            auto check = [&](const std::string& n, const std::vector<float>& got, const std::vector<double>& w, bool show) {
                const double e = emu_rel_l2(got, w);
                ok = ok && e <= tol;  // NaN fails
                if (std::isnan(e) || e > worst) { worst = e; worst_name = n; }
                if (show) msg << " " << n << " " << e;
            };
            check("out", r.out, ref.out, true);
            check("att", r.att, ref.att, true);
            for (size_t t = 0; t < std::min(want.size(), r.grads.size()); ++t) {
                if (names[t] == "logits.bias" || (names[t] == "cells.bias" && c.act == 0)) {  // exactly zero: memset, not computed
                    bool zeros = true;
                    for (float x : r.grads[t]) zeros = zeros && x == 0.f;
                    ok = ok && zeros && ref.zero_grads_rel < 1e-12;
                    if (!zeros) msg << " " << names[t] << " NOT ZERO";
                    continue;
                }
                check(names[t], r.grads[t], *want[t], names[t] == "dq" || names[t] == "dv" || names[t] == "cells.weight" || names[t] == "logits.weight");
            }
            const bool same_out = emu_same_bits(r.out, r.out_no_att);
            ok = ok && same_out;
            msg << "  worst " << worst << " (" << worst_name << ", tol " << tol << ")" << (same_out ? "" : "  forward without attention buffer DIFFERS");
            emu_record(ok, name.str() + msg.str() + (r.errors ? "  RUNTIME ERRORS" : ""));
            if (policy == GridPolicy::FULL) {
                full = std::move(r);
            } else {
                bool same = emu_same_bits(r.out, full.out) && emu_same_bits(r.att, full.att);
                for (size_t t = 0; t < r.grads.size(); ++t) same = same && emu_same_bits(r.grads[t], full.grads[t]);
                emu_record(same, describe(s) + " " + emu_act_name(c.act) + ": java grid vs small grid bit-identical: " + (same ? "yes" : "NO"));
            }
        }
        }
    }

    return emu_finish();
}
