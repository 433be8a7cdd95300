package io.bifuse.reference;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import java.util.stream.IntStream;

/**
 * The oracle for {@link Mfb} (MFB, and MFH with several blocks): straight from the definition, double
 * accumulation. Per sample, block {@code i}:
 * <pre>
 *   a_i = σ(x·U_iᵀ + bu_i),  c_i = σ(y·V_iᵀ + bv_i),  h_i = a_i ⊙ c_i,  e_i = h_i ⊙ e_{i−1} (e_0 = 1)
 *   z_i[u] = Σ_{t<k} e_i[u·k + t],  n_i = normalize(z_i),  n = concat(n_i)
 *   out = n, or with an output layer  out = σ_out(n·Wᵀ + b)
 * </pre>
 * With an output layer, {@code gpre = ∂L/∂out ⊙ σ_out'(out)}, {@code ∂L/∂W = gpreᵀ·n},
 * {@code ∂L/∂b = Σ_b gpre} and {@code ∂L/∂n = gpre·W} feeds the backward below.
 * Backward, with {@code gz_i = ∂L/∂z_i} from {@link NormalizationReference#backward}:
 * <pre>
 *   ∂L/∂e_i = gz_i[j / k] + ∂L/∂e_{i+1} ⊙ h_{i+1}      (i = n down to 1; the last block has no successor)
 *   ∂L/∂h_i = ∂L/∂e_i ⊙ e_{i−1}
 *   ∂L/∂p_i = ∂L/∂h_i ⊙ c_i ⊙ σ'(a_i),   ∂L/∂q_i = ∂L/∂h_i ⊙ a_i ⊙ σ'(c_i)
 *   ∂L/∂x = Σ_i ∂L/∂p_i·U_i,  ∂L/∂U_i = Σ_b ∂L/∂p_iᵀ x,  ∂L/∂bu_i = Σ_b ∂L/∂p_i   (and the same for y, V)
 * </pre>
 * O(B·n·o·k·(Dx + Dy)) per call; samples run in parallel, each in one fixed order.
 */
public final class MfbReference {
    private MfbReference() {}

    /**
     * The parameters in double, {@code uw[i]} ({@code o·k × Dx}, nn.Linear layout), {@code ub[i]}
     * ({@code o·k}, zeros for a layer without bias), and V's: the finite-difference tests perturb them.
     */
    public record Params(double[][] uw, double[][] ub, double[][] vw, double[][] vb, double[] ow, double[] ob) {
        /** Without an output layer. */
        public Params(double[][] uw, double[][] ub, double[][] vw, double[][] vb) {
            this(uw, ub, vw, vb, null, null);
        }

        /** The op's parameters, the output layer's ({@code ow}: Out × n·o, {@code ob}: Out, zeros without bias) null without one. */
        public static Params of(Mfb op) {
            int n = op.blocks();
            double[][] uw = new double[n][], ub = new double[n][], vw = new double[n][], vb = new double[n][];
            for (int i = 0; i < n; i++) {
                uw[i] = op.u(i).weightAsDouble();
                ub[i] = op.u(i).biasAsDouble();
                vw[i] = op.v(i).weightAsDouble();
                vb[i] = op.v(i).biasAsDouble();
            }
            Linear lo = op.linearOut();
            return lo == null ? new Params(uw, ub, vw, vb) : new Params(uw, ub, vw, vb, lo.weightAsDouble(), lo.biasAsDouble());
        }
    }

    /**
     * Gradients in double: {@code dx (B × Dx)}, {@code dy (B × Dy)}, per block {@code du[i] (o·k × Dx)},
     * {@code dbu[i] (o·k)}, and V's; the output layer's {@code dout (Out × n·o)}, {@code dbout (Out)}, null without one.
     */
    public record Grads(double[] dx, double[] dy, double[][] du, double[][] dbu, double[][] dv, double[][] dbv, double[] dout, double[] dbout) {
        /** Without an output layer. */
        public Grads(double[] dx, double[] dy, double[][] du, double[][] dbu, double[][] dv, double[][] dbv) {
            this(dx, dy, du, dbu, dv, dbv, null, null);
        }

        Grads withOutput(double[] dout, double[] dbout) { return new Grads(dx, dy, du, dbu, dv, dbv, dout, dbout); }

        /** The tensors in the order of {@link Mfb#gradientNames()} (biases only where {@code op}'s layer has one). */
        public java.util.List<double[]> tensors(Mfb op) {
            java.util.List<double[]> t = new java.util.ArrayList<>(java.util.List.of(dx, dy));
            for (int i = 0; i < op.blocks(); i++) {
                t.add(du[i]);
                if (op.u(i).hasBias()) t.add(dbu[i]);
                t.add(dv[i]);
                if (op.v(i).hasBias()) t.add(dbv[i]);
            }
            if (op.hasOutput()) {
                t.add(dout);
                if (op.linearOut().hasBias()) t.add(dbout);
            }
            return t;
        }
    }

    public static double[] forward(Mfb op, float[] x, float[] y, int batch) {
        return forward(op, toDouble(x), toDouble(y), batch);
    }

    /** {@code B × outputWidth}: every block's pooled vector, normalized per block, then the output layer if the op has one. */
    public static double[] forward(Mfb op, double[] x, double[] y, int batch) {
        return forward(op, Params.of(op), x, y, batch);
    }

    /** The forward with the parameters {@code w} in place of the op's own (the op gives shapes, σ and the normalization). */
    public static double[] forward(Mfb op, Params w, double[] x, double[] y, int batch) {
        double[] n = normalized(op, w, x, y, batch);
        return op.hasOutput() ? output(op, w, n, batch) : n;
    }

    /**
     * The forward from given pooled vectors {@code z} ({@code B × n·o}, before normalization): normalized
     * per block, then the output layer if the op has one (the forward baselines perturb z).
     */
    public static double[] forwardFromPooled(Mfb op, Params w, double[] z, int batch) {
        double[] n = z.clone();
        if (!op.normalization().isIdentity()) {
            for (int r = 0; r < batch * op.blocks(); r++) NormalizationReference.forward(op.normalization(), z, r * op.o(), op.o(), n);
        }
        return op.hasOutput() ? output(op, w, n, batch) : n;
    }

    /** {@code σ_out(n·Wᵀ + b)} ({@code B × Out}) from the normalized pooled vectors {@code n} ({@code B × n·o}). */
    private static double[] output(Mfb op, Params w, double[] n, int batch) {
        int in = op.pooledWidth(), out = op.outputWidth();
        double[] f = new double[batch * out];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] r = MlbReference.affine(n, b, in, w.ow(), w.ob(), out);
            for (int o = 0; o < out; o++) f[b * out + o] = op.outputActivation().apply(r[o]);
        });
        return f;
    }

    /** {@code B × n·o}: every block's pooled vector, normalized per block (the output layer's input; the output without one). */
    public static double[] normalized(Mfb op, Params w, double[] x, double[] y, int batch) {
        double[] z = pooled(op, w, x, y, batch);
        if (op.normalization().isIdentity()) return z;
        double[] out = new double[z.length];
        for (int r = 0; r < batch * op.blocks(); r++) NormalizationReference.forward(op.normalization(), z, r * op.o(), op.o(), out);
        return out;
    }

    /** The pooled vectors before normalization, {@code B × n·o} (block i at columns {@code [i·o, (i+1)·o)}). */
    public static double[] pooled(Mfb op, double[] x, double[] y, int batch) {
        return pooled(op, Params.of(op), x, y, batch);
    }

    public static double[] pooled(Mfb op, Params pw, double[] x, double[] y, int batch) {
        int n = op.blocks(), o = op.o(), k = op.k(), w = op.width();
        double[] z = new double[batch * n * o];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][][] ac = activations(op, pw, x, y, b);
            double[] e = new double[w];
            java.util.Arrays.fill(e, 1);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < w; j++) {
                    e[j] *= ac[0][i][j] * ac[1][i][j];
                    z[(b * n + i) * o + j / k] += e[j];
                }
            }
        });
        return z;
    }

    public static Grads backward(Mfb op, float[] x, float[] y, float[] gradOut, int batch) {
        return backward(op, toDouble(x), toDouble(y), toDouble(gradOut), batch);
    }

    public static Grads backward(Mfb op, double[] x, double[] y, double[] gradOut, int batch) {
        return backward(op, Params.of(op), x, y, gradOut, batch);
    }

    public static Grads backward(Mfb op, Params w, double[] x, double[] y, double[] gradOut, int batch) {
        OutputPass p = outputPass(op, w, x, y, gradOut, batch);
        Grads g = backwardFromPooled(op, w, x, y, op.normalization().isIdentity() ? null : pooled(op, w, x, y, batch), p.gn, batch);
        return p.with(g);
    }

    /** The output layer's backward: {@code gn = ∂L/∂n} and its parameters' gradients (null without an output layer: gn is gradOut). */
    private record OutputPass(double[] gn, double[] dout, double[] dbout) {
        Grads with(Grads g) { return dout == null ? g : g.withOutput(dout, dbout); }
    }

    private static OutputPass outputPass(Mfb op, Params w, double[] x, double[] y, double[] gradOut, int batch) {
        if (!op.hasOutput()) return new OutputPass(gradOut, null, null);
        int in = op.pooledWidth(), out = op.outputWidth();
        Activation act = op.outputActivation();
        double[] n = normalized(op, w, x, y, batch), f = output(op, w, n, batch), gpre = new double[batch * out], gn = new double[batch * in];
        for (int i = 0; i < gpre.length; i++) gpre[i] = gradOut[i] * act.derivativeFromOutput(f[i]);
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int o = 0; o < out; o++) {
                double g = gpre[b * out + o];
                for (int j = 0; j < in; j++) gn[b * in + j] += g * w.ow()[o * in + j];
            }
        });
        return new OutputPass(gn, MlbReference.outerSum(gpre, n, batch, out, in), MlbReference.columnSums(gpre, batch, out));
    }

    /**
     * The backward with the pooled vectors {@code z} ({@code B × n·o}, before normalization) supplied
     * rather than recomputed: with a perturbed {@code z} it measures how much the signed sqrt's derivative
     * amplifies an error in z (the conditioning baseline of the float32 tolerance). Unused without normalization.
     * {@code gradOut} is {@code ∂L/∂n}, the normalized pooled vectors' gradient (the output layer, if any,
     * is not in this backward and its gradients are null).
     */
    public static Grads backwardFromPooled(Mfb op, Params pw, double[] x, double[] y, double[] z, double[] gradOut, int batch) {
        int n = op.blocks(), o = op.o();
        double[] gz = gradOut;
        if (!op.normalization().isIdentity()) {
            gz = new double[gradOut.length];
            for (int r = 0; r < batch * n; r++) NormalizationReference.backward(op.normalization(), z, gradOut, r * o, o, gz);
        }
        return backwardFromGz(op, pw, x, y, gz, batch);
    }

    /**
     * The error scale of a float backward: this backward with the l2 normalization's projection term left
     * out, i.e. {@code ∂L/∂u = s·g} instead of {@code s·g + s'·u·<u, g>} (s the l2 scale; the signed sqrt
     * and everything after it unchanged). The l2 backward is a difference of two terms of size
     * {@code ~s·|g|}, and a float32 implementation is off by ~2⁻²⁴ of them; where they cancel the gradient
     * itself can be arbitrarily smaller (one output per block: {@code F.normalize} of one value is
     * {@code ±1}, gradient exactly 0; Caffe's gives {@code s·g·eps/(u² + eps)}, ~1e-6 of the terms), so a
     * relative error against the gradient alone measures noise there. See {@link #maxScaledError}.
     * Equal to {@link #backward} without l2 normalization. Not a gradient of anything.
     */
    public static Grads backwardScale(Mfb op, float[] x, float[] y, float[] gradOut, int batch) {
        double[] xd = toDouble(x), yd = toDouble(y);
        Params pw = Params.of(op);
        OutputPass op0 = outputPass(op, pw, xd, yd, toDouble(gradOut), batch); // the output layer's part is exact: its own scale
        double[] g = op0.gn;
        Normalization norm = op.normalization();
        if (norm.isIdentity()) return op0.with(backwardFromGz(op, pw, xd, yd, g, batch));
        int o = op.o();
        double[] z = pooled(op, pw, xd, yd, batch), gz = new double[g.length], sg = new double[g.length];
        // s·g per row, then the signed sqrt's backward alone (an l2-free normalization).
        Normalization ssqrtOnly = new Normalization(norm.signedSqrt(), norm.signedSqrtGradEps(), Normalization.L2.NONE, 0f);
        for (int r = 0; r < batch * op.blocks(); r++) {
            double sumsq = 0;
            for (int j = 0; j < o; j++) {
                double v = z[r * o + j], u = norm.signedSqrt() ? Math.signum(v) * Math.sqrt(Math.abs(v)) : v;
                sumsq += u * u;
            }
            double s = switch (norm.l2()) {
                case NONE -> 1;
                case MAX_NORM -> 1 / Math.max(Math.sqrt(sumsq), norm.l2Eps());
                case SUM_SQUARES -> 1 / Math.sqrt(sumsq + norm.l2Eps());
            };
            for (int j = 0; j < o; j++) sg[r * o + j] = s * g[r * o + j];
            if (ssqrtOnly.isIdentity()) System.arraycopy(sg, r * o, gz, r * o, o);
            else NormalizationReference.backward(ssqrtOnly, z, sg, r * o, o, gz);
        }
        return op0.with(backwardFromGz(op, pw, xd, yd, gz, batch));
    }

    /** The backward from {@code gz = ∂L/∂z} ({@code B × n·o}, the pooled vectors' gradient). */
    private static Grads backwardFromGz(Mfb op, Params pw, double[] x, double[] y, double[] gzf, int batch) {
        int n = op.blocks(), o = op.o(), k = op.k(), w = op.width(), dx = op.dx(), dy = op.dy();
        Activation act = op.activation();
        // ∂L/∂p and ∂L/∂q for every sample and block: B × n × w.
        double[] gp = new double[batch * n * w], gq = new double[batch * n * w];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][][] ac = activations(op, pw, x, y, b);
            double[][] a = ac[0], c = ac[1];
            for (int j = 0; j < w; j++) {
                double[] prefix = new double[n + 1]; // prefix[i] = e_{i} in 1-based terms: e before block i (0-based)
                prefix[0] = 1;
                for (int i = 0; i < n; i++) prefix[i + 1] = prefix[i] * a[i][j] * c[i][j];
                double ge = 0;
                for (int i = n - 1; i >= 0; i--) {
                    ge = gzf[(b * n + i) * o + j / k] + (i + 1 < n ? ge * a[i + 1][j] * c[i + 1][j] : 0);
                    double gh = ge * prefix[i];
                    gp[(b * n + i) * w + j] = gh * c[i][j] * act.derivativeFromOutput(a[i][j]);
                    gq[(b * n + i) * w + j] = gh * a[i][j] * act.derivativeFromOutput(c[i][j]);
                }
            }
        });
        double[] gx = new double[batch * dx], gy = new double[batch * dy];
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int i = 0; i < n; i++) {
                double[] uw = pw.uw()[i], vw = pw.vw()[i];
                for (int j = 0; j < w; j++) {
                    double p = gp[(b * n + i) * w + j], q = gq[(b * n + i) * w + j];
                    for (int d = 0; d < dx; d++) gx[b * dx + d] += p * uw[j * dx + d];
                    for (int d = 0; d < dy; d++) gy[b * dy + d] += q * vw[j * dy + d];
                }
            }
        });
        double[][] du = new double[n][], dbu = new double[n][], dv = new double[n][], dbv = new double[n][];
        for (int i = 0; i < n; i++) {
            int blk = i;
            du[i] = new double[w * dx];
            dv[i] = new double[w * dy];
            dbu[i] = new double[w];
            dbv[i] = new double[w];
            double[] gu = du[i], gv = dv[i], gbu = dbu[i], gbv = dbv[i];
            IntStream.range(0, w).parallel().forEach(j -> {
                for (int b = 0; b < batch; b++) {
                    double p = gp[(b * n + blk) * w + j], q = gq[(b * n + blk) * w + j];
                    gbu[j] += p;
                    gbv[j] += q;
                    for (int d = 0; d < dx; d++) gu[j * dx + d] += p * x[b * dx + d];
                    for (int d = 0; d < dy; d++) gv[j * dy + d] += q * y[b * dy + d];
                }
            });
        }
        return new Grads(gx, gy, du, dbu, dv, dbv);
    }

    /** {@code {a, c}}: {@code a[i][j] = σ(x_b·U_i[j] + bu_i[j])}, {@code c[i][j]} likewise from y and V. */
    private static double[][][] activations(Mfb op, Params pw, double[] x, double[] y, int b) {
        int n = op.blocks();
        double[][] a = new double[n][], c = new double[n][];
        for (int i = 0; i < n; i++) {
            a[i] = project(pw.uw()[i], pw.ub()[i], op.dx(), x, b, op.activation());
            c[i] = project(pw.vw()[i], pw.vb()[i], op.dy(), y, b, op.activation());
        }
        return new double[][][] {a, c};
    }

    private static double[] project(double[] wt, double[] bias, int dim, double[] in, int b, Activation act) {
        int out = bias.length;
        double[] r = new double[out];
        for (int j = 0; j < out; j++) {
            double acc = bias[j];
            for (int d = 0; d < dim; d++) acc += wt[j * dim + d] * in[b * dim + d];
            r[j] = act.apply(acc);
        }
        return r;
    }

    /**
     * The largest error of any gradient tensor of {@code got} against {@code ref} (as {@link #maxRelativeL2}),
     * each measured against the larger of {@code |ref|} and {@code |scale|}, {@code scale} from
     * {@link #backwardScale}: {@code ‖got − ref‖ / max(‖ref‖, ‖scale‖)}. Where the l2 backward's two terms
     * do not cancel (no l2 normalization, or many outputs per block: the projection removes one direction of
     * o) this is the relative L2 error; where they cancel it is the error against the terms' size, which is
     * what float32 arithmetic controls, while a missing or wrong projection term still shows as O(1).
     */
    public static double maxScaledError(Mfb op, Mfb.Gradients got, Grads ref, Grads scale) {
        double e = Math.max(scaledL2(got.dx(), ref.dx(), scale.dx()), scaledL2(got.dy(), ref.dy(), scale.dy()));
        for (int i = 0; i < op.blocks(); i++) {
            e = Math.max(e, scaledL2(got.u().get(i).weight(), ref.du()[i], scale.du()[i]));
            e = Math.max(e, scaledL2(got.v().get(i).weight(), ref.dv()[i], scale.dv()[i]));
            if (op.u(i).hasBias()) e = Math.max(e, scaledL2(got.u().get(i).bias(), ref.dbu()[i], scale.dbu()[i]));
            if (op.v(i).hasBias()) e = Math.max(e, scaledL2(got.v().get(i).bias(), ref.dbv()[i], scale.dbv()[i]));
        }
        if (op.hasOutput()) {
            if (got.linearOut() == null) return Double.POSITIVE_INFINITY;
            e = Math.max(e, scaledL2(got.linearOut().weight(), ref.dout(), scale.dout()));
            if (op.linearOut().hasBias()) e = Math.max(e, scaledL2(got.linearOut().bias(), ref.dbout(), scale.dbout()));
        }
        return e;
    }

    /**
     * The largest relative L2 error of any gradient tensor of {@code got} against {@code ref}: {@code dx},
     * {@code dy}, and every block's U and V weights and biases (biases only where the layer has one).
     */
    public static double maxRelativeL2(Mfb op, Mfb.Gradients got, Grads ref) {
        double e = Math.max(relL2(got.dx(), ref.dx()), relL2(got.dy(), ref.dy()));
        for (int i = 0; i < op.blocks(); i++) {
            e = Math.max(e, relL2(got.u().get(i).weight(), ref.du()[i]));
            e = Math.max(e, relL2(got.v().get(i).weight(), ref.dv()[i]));
            if (op.u(i).hasBias()) e = Math.max(e, relL2(got.u().get(i).bias(), ref.dbu()[i]));
            if (op.v(i).hasBias()) e = Math.max(e, relL2(got.v().get(i).bias(), ref.dbv()[i]));
        }
        if (op.hasOutput()) {
            if (got.linearOut() == null) return Double.POSITIVE_INFINITY;
            e = Math.max(e, relL2(got.linearOut().weight(), ref.dout()));
            if (op.linearOut().hasBias()) e = Math.max(e, relL2(got.linearOut().bias(), ref.dbout()));
        }
        return e;
    }

    /**
     * The conditioning baseline of a float backward through the signed sqrt: the relative error (largest
     * over the gradient tensors, as {@link #maxRelativeL2}) of this float64 backward when each block's
     * pooled vector {@code z_i} carries noise {@code noise·rms(z_i)·N(0,1)} per entry, i.e. the error that
     * the derivative {@code 0.5/sqrt|z|} alone makes of an error of that size in z, measured as
     * {@link #maxScaledError} ({@code scale} from {@link #backwardScale}). 0 without normalization.
     */
    public static double conditioningBaseline(Mfb op, float[] x, float[] y, float[] gradOut, int batch, Grads ref, Grads scale, double noise,
                                              long seed) {
        if (op.normalization().isIdentity()) return 0;
        double[] xd = toDouble(x), yd = toDouble(y);
        Params pw = Params.of(op);
        double[] z = noisyPooled(op, pw, xd, yd, batch, noise, seed);
        // Noise in z only: the output layer's gradient ∂L/∂n is taken exact, and its own gradients are not part of this baseline.
        Grads base = backwardFromPooled(op, pw, xd, yd, z, outputPass(op, pw, xd, yd, toDouble(gradOut), batch).gn, batch);
        double e = Math.max(scaledL2(base.dx(), ref.dx(), scale.dx()), scaledL2(base.dy(), ref.dy(), scale.dy()));
        for (int i = 0; i < op.blocks(); i++) {
            e = Math.max(e, Math.max(scaledL2(base.du()[i], ref.du()[i], scale.du()[i]), scaledL2(base.dv()[i], ref.dv()[i], scale.dv()[i])));
            if (op.u(i).hasBias()) e = Math.max(e, scaledL2(base.dbu()[i], ref.dbu()[i], scale.dbu()[i]));
            if (op.v(i).hasBias()) e = Math.max(e, scaledL2(base.dbv()[i], ref.dbv()[i], scale.dbv()[i]));
        }
        return e;
    }

    /** Each block's pooled vector {@code z_i} plus noise {@code noise·rms(z_i)·N(0,1)} per entry (the baselines' model of a float z). */
    public static double[] noisyPooled(Mfb op, Params pw, double[] x, double[] y, int batch, double noise, long seed) {
        double[] z = pooled(op, pw, x, y, batch);
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        int o = op.o();
        for (int row = 0; row < batch * op.blocks(); row++) {
            double ss = 0;
            for (int j = 0; j < o; j++) ss += z[row * o + j] * z[row * o + j];
            double sigma = noise * Math.sqrt(ss / o);
            for (int j = 0; j < o; j++) z[row * o + j] += sigma * r.nextGaussian();
        }
        return z;
    }

    private static double relL2(float[] a, double[] ref) { return relL2(toDouble(a), ref); }

    private static double relL2(double[] a, double[] ref) {
        if (a == null || a.length != ref.length) return Double.POSITIVE_INFINITY;
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) { num += (a[i] - ref[i]) * (a[i] - ref[i]); den += ref[i] * ref[i]; }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    private static double scaledL2(float[] a, double[] ref, double[] scale) { return a == null ? Double.POSITIVE_INFINITY : scaledL2(toDouble(a), ref, scale); }

    private static double scaledL2(double[] a, double[] ref, double[] scale) {
        if (a == null || a.length != ref.length) return Double.POSITIVE_INFINITY;
        double num = 0, den = 0, sden = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
            sden += scale[i] * scale[i];
        }
        den = Math.max(den, sden);
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
