// CPU emulation harness for cuda/Mlb.cu (with cuda/Linear.cu, whose bias kernels MlbCuda launches through
// LinearCuda).
//
// Compiles the kernel sources unchanged against the shim in this directory (cuda_runtime.h), replays the exact
// launch sequence and buffer layout of java/src/main/java/io/bifuse/cuda/MlbCuda.java (forward, backward,
// project, and LinearCuda's project / forward / backwardInput / backwardParameters) with cuBLAS replaced by
// emu_gemm (double accumulation, operands rounded as the chosen Precision), and compares against MLB computed
// from its definition in double precision: the output and all eight gradients (dx, dy, dU, db_u, dV, db_v,
// dP, db_p).
//
// Device buffers carry NaN guard zones (checked after every launch and GEMM); the workspace is refilled with
// NaN before every call and every output buffer starts as NaN, so a read of data the sequence did not produce,
// or an element it did not write, shows up in the results. Inputs are checked to be unmodified.
//
// Build and run: native-build/emulate-kernels.sh mlb
#include <cuda_runtime.h>

#include "../../cuda/Linear.cu"
#ifdef EMU_KERNEL_SOURCE  // e.g. -DEMU_KERNEL_SOURCE='"/tmp/mutant.cu"' to check that the harness catches a bug
#include EMU_KERNEL_SOURCE
#else
#include "../../cuda/Mlb.cu"
#endif

#include "emu_harness.h"
#include "emu_reference.h"

#include <iomanip>
#include <sstream>

namespace {
constexpr int kBlock = 256;    // MlbCuda.BLOCK and LinearCuda.BLOCK

enum class GridPolicy { FULL, SMALL };  // FULL: the Java grid() formula; SMALL: at most 3 blocks (grid-stride loops iterate)

struct Op {
    int dx, dy, j, out, act;  // act: 0 none, 1 relu, 2 tanh (Activation.code())
    EmuLayer u, v, p;
};

struct Size { int B, dx, dy, j, out; };

std::string describe(const Size& s) {
    char buf[96];
    snprintf(buf, sizeof buf, "B=%d Dx=%d Dy=%d J=%d Out=%d", s.B, s.dx, s.dy, s.j, s.out);
    return buf;
}

struct LinearDev {  // LinearCuda: weight and bias uploaded once
    const EmuLayer& l;
    DevBuf w, b;
    explicit LinearDev(const EmuLayer& layer, const std::string& name)
        : l(layer), w(name + ".weight", (size_t)layer.out * layer.in), b(name + ".bias", (size_t)layer.out) {
        w.put(layer.w);
        b.put(layer.bias_or_zeros());
    }
};

struct Grads {  // MlbCuda.DeviceGradients (bias buffers only for layers with a bias)
    DevBuf dx, dy, u, bu, v, bv, p, bp;
    Grads(const Op& op, int B)
        : dx("grads.dx", (size_t)B * op.dx), dy("grads.dy", (size_t)B * op.dy), u("grads.u", (size_t)op.j * op.dx),
          bu("grads.bu", op.u.has_bias ? op.j : 0), v("grads.v", (size_t)op.j * op.dy), bv("grads.bv", op.v.has_bias ? op.j : 0),
          p("grads.p", (size_t)op.out * op.j), bp("grads.bp", op.p.has_bias ? op.out : 0) {}
};

struct CudaOp {  // MlbCuda
    const Op& op;
    int precision;
    GridPolicy policy;
    LinearDev u, v, p;
    DevBuf proj, h, gh;  // the workspace for (stream, B)
    int B;
    CudaOp(const Op& o, int prec, GridPolicy pol, int batch)
        : op(o), precision(prec), policy(pol), u(o.u, "U"), v(o.v, "V"), p(o.p, "P"), proj("proj", 2L * batch * o.j),
          h("h", (size_t)batch * o.j), gh("gh", (size_t)batch * o.j), B(batch) {}

    unsigned grid(long threads) const { return emu_grid(threads, kBlock, policy == GridPolicy::FULL); }  // MlbCuda.grid, LinearCuda.grid
    void garbage() { for (DevBuf* b : {&proj, &h, &gh}) b->fill_nan(); }
    float* projRight() { return proj.f() + op.j; }

    // LinearCuda.project / forward / backwardInput / backwardParameters
    void lin_project(LinearDev& l, const float* x, int ldx, float* y, int ldy) {
        emu_gemm(precision, false, true, B, l.l.out, l.l.in, 1.f, x, ldx, l.w.f(), l.l.in, 0.f, y, ldy);
    }
    void lin_forward(LinearDev& l, const float* x, int ldx, float* y, int ldy) {
        emu::launch(lin_bias_rows, grid((long)B * l.l.out), kBlock, y, l.b.f(), B, l.l.out, ldy);
        emu_gemm(precision, false, true, B, l.l.out, l.l.in, 1.f, x, ldx, l.w.f(), l.l.in, 1.f, y, ldy);
    }
    void lin_backward_input(LinearDev& l, const float* g, int ldg, float* gx, int ldgx) {
        emu_gemm(precision, false, false, B, l.l.in, l.l.out, 1.f, g, ldg, l.w.f(), l.l.in, 0.f, gx, ldgx);
    }
    void lin_backward_parameters(LinearDev& l, const float* g, int ldg, const float* x, int ldx, float* gw, float* gb) {
        emu_gemm(precision, true, false, l.l.out, l.l.in, B, 1.f, g, ldg, x, ldx, 0.f, gw, l.l.in);
        if (gb) emu::launch(lin_bias_grad, emu_bias_grad_grid(l.l.out, kBlock, policy == GridPolicy::FULL), kBlock, g, gb, B, l.l.out, ldg);
    }

    void project(const float* x, const float* y) {
        lin_project(u, x, op.dx, proj.f(), 2 * op.j);
        lin_project(v, y, op.dy, projRight(), 2 * op.j);
    }

    void forward(DevBuf& x, DevBuf& y, DevBuf& out) {
        project(x.f(), y.f());
        emu::launch(mlb_forward, grid((long)B * op.j), kBlock, proj.f(), u.b.f(), v.b.f(), h.f(), B, op.j, op.act);
        lin_forward(p, h.f(), op.j, out.f(), op.out);
    }

    void backward(DevBuf& x, DevBuf& y, DevBuf& g, Grads& gr) {
        const int ld = 2 * op.j;
        project(x.f(), y.f());
        lin_backward_input(p, g.f(), op.out, gh.f(), op.j);
        emu::launch(mlb_backward, grid((long)B * op.j), kBlock, proj.f(), u.b.f(), v.b.f(), gh.f(), h.f(), B, op.j, op.act);
        lin_backward_parameters(p, g.f(), op.out, h.f(), op.j, gr.p.f(), op.p.has_bias ? gr.bp.f() : nullptr);
        lin_backward_parameters(u, proj.f(), ld, x.f(), op.dx, gr.u.f(), op.u.has_bias ? gr.bu.f() : nullptr);
        lin_backward_parameters(v, projRight(), ld, y.f(), op.dy, gr.v.f(), op.v.has_bias ? gr.bv.f() : nullptr);
        lin_backward_input(u, proj.f(), ld, gr.dx.f(), op.dx);
        lin_backward_input(v, projRight(), ld, gr.dy.f(), op.dy);
    }
};

// ---- reference: the definition, in double ------------------------------------------------------------
struct Ref { std::vector<double> out, dx, dy, u, bu, v, bv, p, bp; };

Ref reference(const Op& op, int B, const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& g) {
    const int J = op.j, O = op.out;
    Ref r;
    r.out.assign((size_t)B * O, 0);
    r.dx.assign((size_t)B * op.dx, 0);
    r.dy.assign((size_t)B * op.dy, 0);
    r.u.assign((size_t)J * op.dx, 0);
    r.bu.assign(J, 0);
    r.v.assign((size_t)J * op.dy, 0);
    r.bv.assign(J, 0);
    r.p.assign((size_t)O * J, 0);
    r.bp.assign(O, 0);
    std::vector<double> pu(J), pv(J), h(J), gh(J);
    for (int b = 0; b < B; ++b) {
        for (int k = 0; k < J; ++k) {
            double a = op.u.has_bias ? op.u.b[k] : 0, c = op.v.has_bias ? op.v.b[k] : 0;
            for (int i = 0; i < op.dx; ++i) a += (double)op.u.w[(size_t)k * op.dx + i] * x[(size_t)b * op.dx + i];
            for (int i = 0; i < op.dy; ++i) c += (double)op.v.w[(size_t)k * op.dy + i] * y[(size_t)b * op.dy + i];
            pu[k] = a;
            pv[k] = c;
            h[k] = emu_act(op.act, a) * emu_act(op.act, c);
        }
        for (int o = 0; o < O; ++o) {
            double f = op.p.has_bias ? op.p.b[o] : 0;
            for (int k = 0; k < J; ++k) f += (double)op.p.w[(size_t)o * J + k] * h[k];
            r.out[(size_t)b * O + o] = f;
        }
        std::fill(gh.begin(), gh.end(), 0.0);
        for (int o = 0; o < O; ++o) {
            const double go = g[(size_t)b * O + o];
            r.bp[o] += go;
            for (int k = 0; k < J; ++k) {
                gh[k] += go * op.p.w[(size_t)o * J + k];
                r.p[(size_t)o * J + k] += go * h[k];
            }
        }
        for (int k = 0; k < J; ++k) {
            const double dpu = gh[k] * emu_act(op.act, pv[k]) * emu_act_grad(op.act, pu[k]);
            const double dpv = gh[k] * emu_act(op.act, pu[k]) * emu_act_grad(op.act, pv[k]);
            r.bu[k] += dpu;
            r.bv[k] += dpv;
            for (int i = 0; i < op.dx; ++i) {
                r.u[(size_t)k * op.dx + i] += dpu * x[(size_t)b * op.dx + i];
                r.dx[(size_t)b * op.dx + i] += dpu * op.u.w[(size_t)k * op.dx + i];
            }
            for (int i = 0; i < op.dy; ++i) {
                r.v[(size_t)k * op.dy + i] += dpv * y[(size_t)b * op.dy + i];
                r.dy[(size_t)b * op.dy + i] += dpv * op.v.w[(size_t)k * op.dy + i];
            }
        }
    }
    return r;
}

struct RunOut {
    std::vector<std::vector<float>> t;  // out, dx, dy, dU, db_u, dV, db_v, dP, db_p (empty where no bias)
    long errors = 0;
};

RunOut run_once(const Op& op, int B, int precision, GridPolicy policy, const std::vector<float>& x, const std::vector<float>& y,
                const std::vector<float>& g) {
    const long e0 = emu::runtime_errors();
    CudaOp cop(op, precision, policy, B);
    DevBuf dx("x", x.size()), dy("y", y.size()), dg("gradOut", g.size()), out("out", (size_t)B * op.out);
    Grads gr(op, B);
    dx.put(x);
    dy.put(y);
    dg.put(g);
    cop.garbage();
    cop.forward(dx, dy, out);
    cop.garbage();  // backward must not rely on anything the forward left in the workspace
    cop.backward(dx, dy, dg, gr);
    check_guards("the host sequence");
    RunOut r;
    for (DevBuf* b : {&out, &gr.dx, &gr.dy, &gr.u, &gr.bu, &gr.v, &gr.bv, &gr.p, &gr.bp}) r.t.push_back(b->get(b->words));
    if (!dx.holds(x) || !dy.holds(y) || !dg.holds(g)) emu::report_error("an input buffer was modified");
    r.errors = emu_case_errors(e0);
    return r;
}

}  // namespace

int main() {
    emu_start();
    emu::expect_block(mlb_forward, "mlb_forward", kBlock);
    emu::expect_block(mlb_backward, "mlb_backward", kBlock);
    emu::expect_block(lin_bias_rows, "lin_bias_rows", kBlock);
    emu::expect_block(lin_bias_grad, "lin_bias_grad", kBlock);
    printf("CPU emulation of cuda/Mlb.cu + cuda/Linear.cu (%d threads per block); tolerance rel L2 1e-5 (fp32), "
           "4u (tf32 1.95e-3, bf16 1.56e-2)\n", kBlock);

    struct Case { Size s; int act; bool biases; int precision; };
    std::vector<Case> cases;
    const std::vector<Size> small = {{1, 1, 1, 1, 1}, {3, 5, 7, 2, 4}, {2, 17, 9, 33, 5}, {5, 40, 31, 257, 13}, {4, 64, 48, 300, 260}};
    for (const Size& s : small)
        for (int act : {0, 1, 2}) cases.push_back({s, act, true, 0});
    cases.push_back({{3, 19, 11, 29, 7}, 2, false, 0});       // no biases anywhere
    cases.push_back({{6, 33, 20, 300, 270}, 1, false, 0});
    for (int prec : {1, 2}) {
        cases.push_back({{5, 40, 31, 257, 13}, 2, true, prec});
        cases.push_back({{4, 2400, 2048, 1200, 2000}, 2, true, prec});  // the spec's dims at B = 4
    }
    cases.push_back({{4, 2400, 2048, 1200, 2000}, 2, true, 0});

    const char* names[] = {"out", "dx", "dy", "dU", "db_u", "dV", "db_v", "dP", "db_p"};
    uint64_t seed = 20170301;
    for (const Case& c : cases) {
        ++seed;
        const Size& s = c.s;
        std::mt19937_64 rng(seed);
        Op op{s.dx, s.dy, s.j, s.out, c.act, emu_make_layer(s.j, s.dx, c.biases, rng), emu_make_layer(s.j, s.dy, c.biases, rng),
              emu_make_layer(s.out, s.j, c.biases, rng)};
        const std::vector<float> x = emu_gaussian((size_t)s.B * s.dx, rng), y = emu_gaussian((size_t)s.B * s.dy, rng),
                                 g = emu_gaussian((size_t)s.B * s.out, rng);
        const Ref ref = reference(op, s.B, x, y, g);
        const std::vector<const std::vector<double>*> want = {&ref.out, &ref.dx, &ref.dy, &ref.u, &ref.bu, &ref.v, &ref.bv, &ref.p, &ref.bp};
        const double tol = emu_precision_bound(c.precision);
        const bool big = s.dx >= 2400;
        RunOut full;
        for (GridPolicy policy : {GridPolicy::FULL, GridPolicy::SMALL}) {
            if (big && policy == GridPolicy::SMALL) continue;  // the grid only changes the elementwise loops, covered at small sizes
            std::ostringstream name;
            name << describe(s) << " " << emu_act_name(c.act) << (c.biases ? "" : " no-bias") << " " << emu_precision_name(c.precision)
                 << " grid=" << (policy == GridPolicy::FULL ? "java" : "small");
            g_current = name.str();
            RunOut r = run_once(op, s.B, c.precision, policy, x, y, g);
            bool ok = r.errors == 0;
            double worst = 0;
            std::ostringstream msg;
            msg << std::scientific << std::setprecision(2);
            for (size_t t = 0; t < r.t.size(); ++t) {
                const bool is_bias = t == 4 || t == 6 || t == 8;
                if (is_bias && !c.biases) continue;  // no bias: no bias gradient buffer
                const double e = emu_rel_l2(r.t[t], *want[t]);
                ok = ok && e <= tol;  // NaN fails
                worst = std::isnan(e) || e > worst ? e : worst;
                if (t == 0 || t == 1 || t == 3 || t == 7) msg << " " << names[t] << " " << e;
            }
            msg << "  worst " << worst << " (tol " << tol << ")";
            emu_record(ok, name.str() + msg.str() + (r.errors ? "  RUNTIME ERRORS" : ""));
            if (policy == GridPolicy::FULL) {
                full = r;
            } else {
                bool same = true;
                for (size_t t = 0; t < r.t.size(); ++t) same = same && emu_same_bits(r.t[t], full.t[t]);
                emu_record(same, describe(s) + " " + emu_act_name(c.act) + ": java grid vs small grid bit-identical: " + (same ? "yes" : "NO"));
            }
        }
    }

    return emu_finish();
}
