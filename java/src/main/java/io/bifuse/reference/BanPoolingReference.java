package io.bifuse.reference;

import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import java.util.stream.IntStream;

/**
 * The oracle for {@link BanPooling}: the definition (see its class comment) evaluated per sample in
 * double, every sum in one fixed order, the samples in parallel:
 * <pre>
 *   F[b,c] = Σ_{i real} Σ_j A[b,i,j]·X[b,i,c]·Y[b,j,c],      f[b,u] = Σ_{t &lt; k} F[b, u·k + t]
 *   dF[b,c] = g[b, c / k]
 *   dA[b,i,j] = Σ_c dF[b,c]·X[b,i,c]·Y[b,j,c]                 (real i; 0 otherwise)
 *   dX[b,i,c] = dF[b,c]·Σ_j A[b,i,j]·Y[b,j,c]                  (real i; 0 otherwise)
 *   dY[b,j,c] = dF[b,c]·Σ_{i real} A[b,i,j]·X[b,i,c]
 * </pre>
 * The real objects are read from the {@link ObjectMask} with {@link ObjectMask#isReal} (not its compact
 * form), so that the kernels' index lists are checked against an independent reading of the mask.
 * The double overloads take the inputs in double so that the tests can perturb any entry by a float64
 * step for central finite differences.
 */
public final class BanPoolingReference {
    private BanPoolingReference() {}

    /** The gradients of the three inputs, in their layouts ({@code B × N × M}, {@code B × N × K'}, {@code B × M × K'}). */
    public record Grads(double[] da, double[] dx, double[] dy) {}

    public static double[] forward(BanPooling op, float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        return forward(op, toDouble(attention), toDouble(x), toDouble(y), mask, batch, objects, tokens);
    }

    /** {@code B × K'/k}. {@code mask} null: every object real. */
    public static double[] forward(BanPooling op, double[] a, double[] x, double[] y, ObjectMask mask, int batch, int objects, int tokens) {
        int kw = op.width(), k = op.group(), out = op.outWidth();
        double[] f = new double[batch * out];
        IntStream.range(0, batch).parallel().forEach(b -> {
            boolean[] real = real(mask, b, objects);
            for (int c = 0; c < kw; c++) {
                double s = 0;
                for (int i = 0; i < objects; i++) {
                    if (!real[i]) continue;
                    double xi = x[(b * objects + i) * kw + c];
                    for (int j = 0; j < tokens; j++) s += a[(b * objects + i) * tokens + j] * xi * y[(b * tokens + j) * kw + c];
                }
                f[b * out + c / k] += s;
            }
        });
        return f;
    }

    public static Grads backward(BanPooling op, float[] attention, float[] x, float[] y, ObjectMask mask, float[] gradOut,
                                 int batch, int objects, int tokens) {
        return backward(op, toDouble(attention), toDouble(x), toDouble(y), mask, toDouble(gradOut), batch, objects, tokens);
    }

    /** Every input's gradient given {@code gradOut = ∂L/∂f} ({@code B × K'/k}). */
    public static Grads backward(BanPooling op, double[] a, double[] x, double[] y, ObjectMask mask, double[] gradOut,
                                 int batch, int objects, int tokens) {
        int kw = op.width(), k = op.group(), out = op.outWidth();
        double[] da = new double[batch * objects * tokens], dx = new double[batch * objects * kw], dy = new double[batch * tokens * kw];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] dF = new double[kw];
            for (int c = 0; c < kw; c++) dF[c] = gradOut[b * out + c / k];
            boolean[] real = real(mask, b, objects);
            for (int i = 0; i < objects; i++) {
                if (!real[i]) continue; // its rows of da and dx stay zero
                int xr = (b * objects + i) * kw, ar = (b * objects + i) * tokens;
                for (int j = 0; j < tokens; j++) {
                    int yr = (b * tokens + j) * kw;
                    double s = 0;
                    for (int c = 0; c < kw; c++) s += dF[c] * x[xr + c] * y[yr + c];
                    da[ar + j] = s;
                }
                for (int c = 0; c < kw; c++) {
                    double s = 0;
                    for (int j = 0; j < tokens; j++) s += a[ar + j] * y[(b * tokens + j) * kw + c];
                    dx[xr + c] = dF[c] * s;
                }
            }
            for (int j = 0; j < tokens; j++) {
                int yr = (b * tokens + j) * kw;
                for (int c = 0; c < kw; c++) {
                    double s = 0;
                    for (int i = 0; i < objects; i++) {
                        if (!real[i]) continue;
                        s += a[(b * objects + i) * tokens + j] * x[(b * objects + i) * kw + c];
                    }
                    dy[yr + c] = dF[c] * s;
                }
            }
        });
        return new Grads(da, dx, dy);
    }

    private static boolean[] real(ObjectMask mask, int b, int objects) {
        boolean[] r = new boolean[objects];
        for (int i = 0; i < objects; i++) r[i] = mask == null || mask.isReal(b, i);
        return r;
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
