package io.bifuse.reference;

import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import io.bifuse.WeightNormLinear;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link BanBlock}: the definition (see its class comment) evaluated per sample in
 * double, straight from the weight-normalized parameters (V, g, bias), and its gradient by the chain
 * rule written out by hand. It shares no code with the attention and pooling operators.
 *
 * <p>Forward, per sample, over the real objects {@code i ∈ R_b} only ({@code N_b = |R_b|}):
 * <pre>
 *   X'_i = relu(W_x x_i + b_x),   Y'_j = relu(W_y y_j + b_y)                       K
 *   l_{g,i,j} = Σ_k p_{g,k} X'_{i,k} Y'_{j,k} + c_g,   A_g = softmax over (i ∈ R_b, j) of l_g
 *   Y_0 = y;  for g: X''_i = relu(U_g x_i + u_g),  Y''_j = relu(T_g Y_{g,j} + t_g)      K'
 *                    f_k = Σ_i Σ_j A_{g,i,j} X''_{i,k} Y''_{j,k},  s_c = Σ_{k ∈ group c} f_k    K'/k
 *                    Y_{g+1,j} = Y_{g,j} + Q_g s + q_g     (every token j alike)
 *   out = Σ_j Y_{G,j}
 * </pre>
 * with every weight the effective {@code g·V/‖V‖} of its layer. Padded objects are never read: their
 * attention is 0, their input gradient 0. A sample without a real object has all-zero attention, so
 * {@code s = 0} and its output is {@code Σ_j (y_j + Σ_g q_g)} (the residual path alone).
 *
 * <p>Backward, per sample, given {@code dout}:
 * <pre>
 *   dY_{G,j} = dout;  for g = G−1 .. 0:
 *     dr = Σ_j dY_{g+1,j};  dQ_g += dr sᵀ,  dq_g += dr;  ds = Q_gᵀ dr;  df_k = ds_{⌊k/group⌋}
 *     dA_{g,i,j} = Σ_k df_k X''_{i,k} Y''_{j,k}
 *     dX''_i = df ⊙ Σ_j A_{g,i,j} Y''_j,   dY''_j = df ⊙ Σ_i A_{g,i,j} X''_i   (then ⊙ [· > 0]: the ReLU)
 *     dU_g, du_g, dT_g, dt_g from those and x_i, Y_{g,j};  dx_i += U_gᵀ dX''pre_i
 *     dY_{g,j} = dY_{g+1,j} + T_gᵀ dY''pre_j
 *   dl_g = A_g ⊙ (dA_g − Σ A_g ⊙ dA_g)                                             (softmax Jacobian)
 *   dp_{g,k} += Σ_{i,j} dl_{g,i,j} X'_{i,k} Y'_{j,k};  dX'_i = Σ_g p_g ⊙ Σ_j dl Y'_j;  dY'_j = Σ_g p_g ⊙ Σ_i dl X'_i
 *   dW_x, db_x, dW_y, db_y from the ReLU-masked dX', dY';  dx_i += W_xᵀ ·,  dy_j = dY_{0,j} + W_yᵀ ·
 * </pre>
 * then, for every layer, the weight-norm chain {@code dg = ⟨dW, V⟩/‖V‖},
 * {@code dV = (g/‖V‖)(dW − (dg/‖V‖)V)}. The logits bias gradient {@code dc_g = Σ dl_g} is exactly zero
 * (the softmax ignores a per-glimpse shift): returned as exact zeros, not as the rounding noise of that
 * sum, so that backends writing zeros compare exactly.
 *
 * <p>The parameters are held in double ({@link Params}) so that the tests can perturb any of them
 * (V, g, bias) by a float64 step for central finite differences. Samples run in parallel; within a
 * sample, and across samples for the parameter gradients, every sum runs in one fixed order.
 */
public final class BanBlockReference {
    private BanBlockReference() {}

    /** One weight-normalized layer in double: {@code v} ({@code out × in}), {@code g} (one entry), {@code bias} ({@code out} or null). */
    public record Layer(int out, int in, double[] v, double[] g, double[] bias) {
        public static Layer of(WeightNormLinear l) {
            return new Layer(l.out(), l.in(), toDouble(l.weightVArray()), new double[] {l.g()}, l.hasBias() ? toDouble(l.bias()) : null);
        }

        double norm() {
            double s = 0;
            for (double x : v) s += x * x;
            return Math.sqrt(s);
        }

        /** The effective weight {@code g·V/‖V‖}. */
        double[] weight() {
            double scale = g[0] / norm();
            double[] w = new double[v.length];
            for (int i = 0; i < w.length; i++) w[i] = scale * v[i];
            return w;
        }

        double b(int o) { return bias == null ? 0 : bias[o]; }
    }

    /** The block's parameters in double, layers in the order of {@link BanBlock#gradientNames()}. */
    public record Params(Layer objects, Layer tokens, Layer logits, List<Layer> glimpseObjects, List<Layer> glimpseTokens,
                         List<Layer> residuals, int group) {
        public List<Layer> layers() {
            List<Layer> l = new ArrayList<>(List.of(objects, tokens, logits));
            l.addAll(glimpseObjects);
            l.addAll(glimpseTokens);
            l.addAll(residuals);
            return l;
        }

        /** Every parameter tensor (v, g, then bias if any, per layer): the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            for (Layer l : layers()) {
                t.add(l.v);
                t.add(l.g);
                if (l.bias != null) t.add(l.bias);
            }
            return t;
        }

        int dx() { return objects.in; }
        int dy() { return tokens.in; }
        int k() { return objects.out; }
        int glimpses() { return logits.out; }
        int kp() { return glimpseObjects.get(0).out; }
    }

    public static Params params(BanBlock op) {
        BanBlock.Weights w = op.weights();
        List<Layer> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (WeightNormLinear l : w.glimpseObjects()) go.add(Layer.of(l));
        for (WeightNormLinear l : w.glimpseTokens()) gt.add(Layer.of(l));
        for (WeightNormLinear l : w.residuals()) res.add(Layer.of(l));
        return new Params(Layer.of(w.objects()), Layer.of(w.tokens()), Layer.of(w.logits()), go, gt, res, op.group());
    }

    /** Output {@code B × Dy} and attention maps {@code B × G × N × M} (zero at padded objects). */
    public record Result(double[] out, double[] attention) {}

    /** Gradients of the inputs and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] dx, double[] dy, List<double[]> parameters) {
        /** dx, dy, then the parameter gradients: the order of {@link BanBlock#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(dx, dy));
            t.addAll(parameters);
            return t;
        }
    }

    /** {@code mask} null: ban-vqa's rule, an all-zero row of {@code x} is a padded object. */
    public static Result forward(BanBlock op, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        ObjectMask m = mask != null ? mask : ObjectMask.zeroRows(x, batch, objects, op.dx());
        return forward(params(op), toDouble(x), toDouble(y), m, batch, objects, tokens);
    }

    public static Grads backward(BanBlock op, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        ObjectMask m = mask != null ? mask : ObjectMask.zeroRows(x, batch, objects, op.dx());
        return backward(params(op), toDouble(x), toDouble(y), m, toDouble(gradOut), batch, objects, tokens);
    }

    public static Result forward(Params p, double[] x, double[] y, ObjectMask mask, int batch, int objects, int tokens) {
        Effective e = new Effective(p);
        int dy = p.dy(), gs = p.glimpses(), nm = objects * tokens;
        double[] out = new double[batch * dy], att = new double[Math.multiplyExact(batch * gs, nm)];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, e, x, y, mask, b, objects, tokens);
            System.arraycopy(s.out, 0, out, b * dy, dy);
            for (int g = 0; g < gs; g++) {
                for (int c = 0; c < s.real.length; c++) {
                    System.arraycopy(s.att[g][c], 0, att, (b * gs + g) * nm + s.real[c] * tokens, tokens);
                }
            }
        });
        return new Result(out, att);
    }

    public static Grads backward(Params p, double[] x, double[] y, ObjectMask mask, double[] gradOut, int batch, int objects, int tokens) {
        Effective e = new Effective(p);
        int dx = p.dx(), dy = p.dy(), k = p.k(), gs = p.glimpses(), kp = p.kp(), group = p.group(), pooled = kp / group;
        double[] gx = new double[Math.multiplyExact(batch * objects, dx)], gy = new double[Math.multiplyExact(batch * tokens, dy)];
        // Phase 1, per sample: input gradients and the rows the parameter gradients are sums of.
        Rows[] rows = new Rows[batch];
        double[][] dpSample = new double[batch][];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, e, x, y, mask, b, objects, tokens);
            int nb = s.real.length;
            Rows r = rows[b] = new Rows(s, gs);
            double[][] dyCur = new double[tokens][];
            for (int j = 0; j < tokens; j++) dyCur[j] = java.util.Arrays.copyOfRange(gradOut, b * dy, (b + 1) * dy);
            double[][][] dA = new double[gs][][];
            for (int g = gs - 1; g >= 0; g--) {
                double[] dr = new double[dy];
                for (int j = 0; j < tokens; j++) for (int d = 0; d < dy; d++) dr[d] += dyCur[j][d];
                r.dRes[g] = dr;
                double[] ds = transposed(e.res[g], dy, pooled, dr), df = new double[kp];
                for (int kk = 0; kk < kp; kk++) df[kk] = ds[kk / group];
                double[][] xpp = s.xpp[g], ypp = s.ypp[g], a = s.att[g];
                dA[g] = new double[nb][tokens];
                double[][] dXpre = new double[nb][kp], dYpre = new double[tokens][kp];
                for (int c = 0; c < nb; c++) {
                    for (int j = 0; j < tokens; j++) {
                        double acc = 0;
                        for (int kk = 0; kk < kp; kk++) {
                            acc += df[kk] * xpp[c][kk] * ypp[j][kk];
                            dXpre[c][kk] += a[c][j] * ypp[j][kk];
                            dYpre[j][kk] += a[c][j] * xpp[c][kk];
                        }
                        dA[g][c][j] = acc;
                    }
                }
                for (int c = 0; c < nb; c++) for (int kk = 0; kk < kp; kk++) dXpre[c][kk] *= xpp[c][kk] > 0 ? df[kk] : 0;
                for (int j = 0; j < tokens; j++) for (int kk = 0; kk < kp; kk++) dYpre[j][kk] *= ypp[j][kk] > 0 ? df[kk] : 0;
                r.dGo[g] = dXpre;
                r.dGt[g] = dYpre;
                for (int c = 0; c < nb; c++) {
                    double[] t = transposed(e.go[g], kp, dx, dXpre[c]);
                    int off = (b * objects + s.real[c]) * dx;
                    for (int d = 0; d < dx; d++) gx[off + d] += t[d];
                }
                for (int j = 0; j < tokens; j++) {
                    double[] t = transposed(e.gt[g], kp, dy, dYpre[j]);
                    for (int d = 0; d < dy; d++) dyCur[j][d] += t[d];
                }
            }
            // attention: softmax Jacobian over the real part of each map, then the bilinear logits
            double[][] dXp = new double[nb][k], dYp = new double[tokens][k];
            double[] dp = new double[gs * k];
            for (int g = 0; g < gs; g++) {
                double dot = 0;
                for (int c = 0; c < nb; c++) for (int j = 0; j < tokens; j++) dot += s.att[g][c][j] * dA[g][c][j];
                for (int c = 0; c < nb; c++) {
                    for (int j = 0; j < tokens; j++) {
                        double dl = s.att[g][c][j] * (dA[g][c][j] - dot);
                        for (int kk = 0; kk < k; kk++) {
                            double pk = e.p[g * k + kk];
                            dp[g * k + kk] += dl * s.xp[c][kk] * s.yp[j][kk];
                            dXp[c][kk] += pk * dl * s.yp[j][kk];
                            dYp[j][kk] += pk * dl * s.xp[c][kk];
                        }
                    }
                }
            }
            dpSample[b] = dp;
            for (int c = 0; c < nb; c++) for (int kk = 0; kk < k; kk++) if (!(s.xp[c][kk] > 0)) dXp[c][kk] = 0;
            for (int j = 0; j < tokens; j++) for (int kk = 0; kk < k; kk++) if (!(s.yp[j][kk] > 0)) dYp[j][kk] = 0;
            r.dObj = dXp;
            r.dTok = dYp;
            for (int c = 0; c < nb; c++) {
                double[] t = transposed(e.obj, k, dx, dXp[c]);
                int off = (b * objects + s.real[c]) * dx;
                for (int d = 0; d < dx; d++) gx[off + d] += t[d];
            }
            for (int j = 0; j < tokens; j++) {
                double[] t = transposed(e.tok, k, dy, dYp[j]);
                int off = (b * tokens + j) * dy;
                for (int d = 0; d < dy; d++) gy[off + d] = dyCur[j][d] + t[d];
            }
        });
        // Phase 2: each effective weight's gradient is a sum over rows of dp xᵀ; then the weight-norm chain.
        List<double[]> par = new ArrayList<>();
        par.addAll(layerGrads(p.objects, rowsOf(rows, r -> r.dObj), rowsOf(rows, r -> r.xRows(x, objects, dx))));
        par.addAll(layerGrads(p.tokens, rowsOf(rows, r -> r.dTok), rowsOf(rows, r -> r.yRows(y, tokens, dy))));
        double[] dpSum = new double[gs * k];
        for (double[] d : dpSample) for (int i = 0; i < dpSum.length; i++) dpSum[i] += d[i];
        par.addAll(chain(p.logits, dpSum, p.logits.bias == null ? null : new double[gs])); // exactly zero: see the class comment
        for (int g = 0; g < gs; g++) {
            int gg = g;
            par.addAll(layerGrads(p.glimpseObjects.get(g), rowsOf(rows, r -> r.dGo[gg]), rowsOf(rows, r -> r.xRows(x, objects, dx))));
        }
        for (int g = 0; g < gs; g++) {
            int gg = g;
            par.addAll(layerGrads(p.glimpseTokens.get(g), rowsOf(rows, r -> r.dGt[gg]), rowsOf(rows, r -> r.s.yg[gg])));
        }
        for (int g = 0; g < gs; g++) {
            int gg = g;
            par.addAll(layerGrads(p.residuals.get(g), rowsOf(rows, r -> new double[][] {r.dRes[gg]}),
                    rowsOf(rows, r -> new double[][] {r.s.pooled[gg]})));
        }
        return new Grads(gx, gy, par);
    }

    /** The rows of every sample, in sample order. */
    private static List<double[][]> rowsOf(Rows[] rows, java.util.function.Function<Rows, double[][]> f) {
        List<double[][]> l = new ArrayList<>(rows.length);
        for (Rows r : rows) l.add(f.apply(r));
        return l;
    }

    /**
     * {@code dW = Σ_rows dp xᵀ}, {@code db = Σ_rows dp} over the rows of every sample (in order; parallel
     * over the outputs), then the weight-norm chain: the layer's [dV, dg, (db)].
     */
    private static List<double[]> layerGrads(Layer l, List<double[][]> dp, List<double[][]> x) {
        double[] gw = new double[l.out * l.in], gb = new double[l.out];
        IntStream.range(0, l.out).parallel().forEach(o -> {
            double sb = 0;
            for (int s = 0; s < dp.size(); s++) {
                double[][] d = dp.get(s), xs = x.get(s);
                for (int r = 0; r < d.length; r++) {
                    double v = d[r][o];
                    sb += v;
                    for (int i = 0; i < l.in; i++) gw[o * l.in + i] += v * xs[r][i];
                }
            }
            gb[o] = sb;
        });
        return chain(l, gw, l.bias == null ? null : gb);
    }

    /** {@code [dV, [dg], dBias (if the layer has a bias)]} from the effective weight's {@code dW}. */
    private static List<double[]> chain(Layer l, double[] dW, double[] dBias) {
        double n = l.norm(), dg = 0;
        for (int i = 0; i < dW.length; i++) dg += dW[i] * l.v[i];
        dg /= n;
        double[] dv = new double[dW.length];
        for (int i = 0; i < dW.length; i++) dv[i] = l.g[0] / n * (dW[i] - dg / n * l.v[i]);
        List<double[]> t = new ArrayList<>(List.of(dv, new double[] {dg}));
        if (l.bias != null) t.add(dBias);
        return t;
    }

    /** {@code Wᵀ d} for a row-major {@code out × in} weight. */
    private static double[] transposed(double[] w, int out, int in, double[] d) {
        double[] r = new double[in];
        for (int o = 0; o < out; o++) {
            double v = d[o];
            for (int i = 0; i < in; i++) r[i] += w[o * in + i] * v;
        }
        return r;
    }

    /** {@code relu(W v[off..] + b)} for every output, or without the ReLU. */
    private static double[] apply(double[] w, Layer l, double[] v, int off, boolean relu) {
        double[] r = new double[l.out];
        for (int o = 0; o < l.out; o++) {
            double acc = l.b(o);
            for (int i = 0; i < l.in; i++) acc += w[o * l.in + i] * v[off + i];
            r[o] = relu ? Math.max(acc, 0) : acc;
        }
        return r;
    }

    /** Every layer's effective weight, computed once per call. */
    private static final class Effective {
        final double[] obj, tok, p;
        final double[][] go, gt, res;

        Effective(Params p) {
            obj = p.objects.weight();
            tok = p.tokens.weight();
            this.p = p.logits.weight();
            int gs = p.glimpses();
            go = new double[gs][];
            gt = new double[gs][];
            res = new double[gs][];
            for (int g = 0; g < gs; g++) {
                go[g] = p.glimpseObjects.get(g).weight();
                gt[g] = p.glimpseTokens.get(g).weight();
                res[g] = p.residuals.get(g).weight();
            }
        }
    }

    /** Per-sample rows for the parameter gradients (pre-activation gradients per real object / token). */
    private static final class Rows {
        final Sample s;
        double[][] dObj, dTok;
        final double[][][] dGo, dGt;
        final double[][] dRes;

        Rows(Sample s, int gs) {
            this.s = s;
            dGo = new double[gs][][];
            dGt = new double[gs][][];
            dRes = new double[gs][];
        }

        double[][] xRows(double[] x, int objects, int dx) {
            double[][] r = new double[s.real.length][];
            for (int c = 0; c < r.length; c++) {
                int off = (s.b * objects + s.real[c]) * dx;
                r[c] = java.util.Arrays.copyOfRange(x, off, off + dx);
            }
            return r;
        }

        double[][] yRows(double[] y, int tokens, int dy) {
            double[][] r = new double[tokens][];
            for (int j = 0; j < tokens; j++) r[j] = java.util.Arrays.copyOfRange(y, (s.b * tokens + j) * dy, (s.b * tokens + j + 1) * dy);
            return r;
        }
    }

    /** Every intermediate of one sample's forward; object arrays are indexed by the rank among the real objects. */
    private static final class Sample {
        final int b;
        final int[] real;
        final double[][] xp, yp;
        final double[][][] att, yg, xpp, ypp;
        final double[][] pooled;
        final double[] out;

        Sample(Params p, Effective e, double[] x, double[] y, ObjectMask mask, int b, int objects, int tokens) {
            this.b = b;
            int dx = p.dx(), dy = p.dy(), k = p.k(), gs = p.glimpses(), kp = p.kp(), group = p.group();
            int[] idx = mask.indices();
            real = java.util.Arrays.copyOfRange(idx, b * objects, b * objects + mask.count(b));
            int nb = real.length;
            xp = new double[nb][];
            for (int c = 0; c < nb; c++) xp[c] = apply(e.obj, p.objects, x, (b * objects + real[c]) * dx, true);
            yp = new double[tokens][];
            for (int j = 0; j < tokens; j++) yp[j] = apply(e.tok, p.tokens, y, (b * tokens + j) * dy, true);
            att = new double[gs][nb][tokens];
            for (int g = 0; g < gs; g++) {
                double max = Double.NEGATIVE_INFINITY;
                double[][] l = att[g];
                for (int c = 0; c < nb; c++) {
                    for (int j = 0; j < tokens; j++) {
                        double acc = p.logits.b(g);
                        for (int kk = 0; kk < k; kk++) acc += e.p[g * k + kk] * xp[c][kk] * yp[j][kk];
                        l[c][j] = acc;
                        max = Math.max(max, acc);
                    }
                }
                double sum = 0;
                for (int c = 0; c < nb; c++) for (int j = 0; j < tokens; j++) sum += l[c][j] = Math.exp(l[c][j] - max);
                for (int c = 0; c < nb; c++) for (int j = 0; j < tokens; j++) l[c][j] /= sum;
            }
            yg = new double[gs + 1][tokens][];
            for (int j = 0; j < tokens; j++) yg[0][j] = java.util.Arrays.copyOfRange(y, (b * tokens + j) * dy, (b * tokens + j + 1) * dy);
            xpp = new double[gs][nb][];
            ypp = new double[gs][tokens][];
            pooled = new double[gs][];
            for (int g = 0; g < gs; g++) {
                for (int c = 0; c < nb; c++) xpp[g][c] = apply(e.go[g], p.glimpseObjects.get(g), x, (b * objects + real[c]) * dx, true);
                for (int j = 0; j < tokens; j++) ypp[g][j] = apply(e.gt[g], p.glimpseTokens.get(g), yg[g][j], 0, true);
                double[] f = new double[kp];
                for (int c = 0; c < nb; c++) {
                    for (int j = 0; j < tokens; j++) {
                        double a = att[g][c][j];
                        for (int kk = 0; kk < kp; kk++) f[kk] += a * xpp[g][c][kk] * ypp[g][j][kk];
                    }
                }
                double[] s = new double[kp / group];
                for (int kk = 0; kk < kp; kk++) s[kk / group] += f[kk];
                pooled[g] = s;
                double[] r = apply(e.res[g], p.residuals.get(g), s, 0, false);
                for (int j = 0; j < tokens; j++) {
                    double[] next = yg[g][j].clone();
                    for (int d = 0; d < dy; d++) next[d] += r[d];
                    yg[g + 1][j] = next;
                }
            }
            out = new double[dy];
            for (int j = 0; j < tokens; j++) for (int d = 0; d < dy; d++) out[d] += yg[gs][j][d];
        }
    }

    /**
     * The conditioning baseline of reduced-precision projections (flash-attention's "a multiple of a
     * same-precision baseline's error" rule, made without any device code): for each gradient tensor
     * (the order of {@link Grads#tensors()}), the largest relative L2 change from {@code ref} when x, y and
     * every parameter (weight_v, g, bias) are multiplied elementwise by {@code 1 ± relative} with random
     * signs, over {@code draws} draws from {@code seed}. With {@code relative} twice a precision's unit
     * roundoff this is what the math itself does when every GEMM operand moves as far as that precision
     * rounds it: the few ReLU decisions that flip (each wrong by its full size, not by O(u)) and the
     * cancelling sums of the weight-norm gains ({@code dg = ⟨dW, V⟩/‖V‖}) included.
     */
    public static double[] perturbationBaseline(BanBlock op, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects,
                                                int tokens, List<double[]> ref, double relative, int draws, long seed) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        double[] worst = new double[ref.size()];
        double[] g = toDouble(gradOut);
        for (int d = 0; d < draws; d++) {
            Params p = params(op);
            for (double[] t : p.tensors()) perturb(t, relative, r);
            double[] xp = perturb(toDouble(x), relative, r), yp = perturb(toDouble(y), relative, r);
            List<double[]> got = backward(p, xp, yp, mask, g, batch, objects, tokens).tensors();
            for (int t = 0; t < worst.length; t++) worst[t] = Math.max(worst[t], relativeL2(got.get(t), ref.get(t)));
        }
        return worst;
    }

    private static double[] perturb(double[] a, double relative, java.util.SplittableRandom r) {
        for (int i = 0; i < a.length; i++) a[i] *= r.nextBoolean() ? 1 + relative : 1 - relative;
        return a;
    }

    /** {@code ‖a − ref‖ / ‖ref‖}; 0 when both are zero, infinite when only {@code ref} is. */
    private static double relativeL2(double[] a, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        return num == 0 ? 0 : Math.sqrt(num / den);
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
