package io.bifuse.cpu;

import io.bifuse.Linear;

/**
 * One {@link Linear} layer prepared once for the float32 CPU backends: {@code y = x·Wᵀ + b}, its input
 * gradient {@code dx = dy·W} and its parameter gradients {@code dW = dyᵀ·x}, {@code db = Σ_rows dy}, all
 * through {@link Sgemm}. Row-major operands with explicit offsets and row strides, so a layer can read
 * or write a column block of a wider matrix.
 *
 * <p>With the Java GEMM it also keeps {@code Wᵀ} ({@code in × out}): the forward then reads B with unit
 * stride instead of transposing {@code W} into the GEMM's panel on every call (twice the weight memory,
 * for a forward that does not gather). With a BLAS the transpose is free and only {@code W} is kept.
 *
 * <p>Immutable after construction; every sum has one order (a GEMM's, or {@code db}'s over rows in
 * order), so results do not depend on the thread count.
 */
final class CpuLinear {
    final int out, in;
    final float[] weight;     // out × in
    private final float[] weightT; // in × out, or null (BLAS)
    final float[] bias;       // out, or null

    CpuLinear(Linear l) {
        this.out = l.out();
        this.in = l.in();
        this.weight = l.weight();
        this.bias = l.hasBias() ? l.bias() : null;
        if (Sgemm.usesBlas()) {
            weightT = null;
        } else {
            weightT = new float[in * out];
            for (int o = 0; o < out; o++) for (int i = 0; i < in; i++) weightT[i * out + o] = weight[o * in + i];
        }
    }

    /** {@code y[r, :] = x[r, :]·Wᵀ + b} for {@code rows} rows ({@code accumulate}: {@code y +=}, bias included once). */
    void forward(CpuRuntime rt, int rows, float[] x, int xOff, int ldx, float[] y, int yOff, int ldy, boolean accumulate) {
        if (rows == 0) return;
        float beta = accumulate ? 1f : 0f;
        if (bias != null) {
            for (int r = 0; r < rows; r++) {
                int at = yOff + r * ldy;
                if (accumulate) for (int o = 0; o < out; o++) y[at + o] += bias[o];
                else System.arraycopy(bias, 0, y, at, out);
            }
            beta = 1f;
        }
        if (weightT != null) Sgemm.gemm(rt, false, false, rows, out, in, 1f, x, xOff, ldx, weightT, 0, out, beta, y, yOff, ldy);
        else Sgemm.gemm(rt, false, true, rows, out, in, 1f, x, xOff, ldx, weight, 0, in, beta, y, yOff, ldy);
    }

    /** {@code dx = dy·W} ({@code accumulate}: {@code dx +=}). */
    void backwardInput(CpuRuntime rt, int rows, float[] dy, int dyOff, int lddy, float[] dx, int dxOff, int lddx, boolean accumulate) {
        if (rows == 0) return;
        Sgemm.gemm(rt, false, false, rows, in, out, 1f, dy, dyOff, lddy, weight, 0, in, accumulate ? 1f : 0f, dx, dxOff, lddx);
    }

    /**
     * {@code dW = dyᵀ·x} ({@code out × in}, row stride {@code in}) and {@code db = Σ_r dy[r, :]} (when the
     * layer has a bias and {@code db} is not null), over {@code rows} rows; {@code accumulate}: added to
     * what is there. {@code ones}: at least {@code rows} floats, all 1 (the row sum is a GEMM too, so it
     * has the GEMM's fixed order).
     */
    void backwardParameters(CpuRuntime rt, int rows, float[] dy, int dyOff, int lddy, float[] x, int xOff, int ldx, float[] dW, float[] db,
            float[] ones, boolean accumulate) {
        float beta = accumulate ? 1f : 0f;
        if (rows == 0) {
            if (!accumulate) {
                java.util.Arrays.fill(dW, 0, out * in, 0f);
                if (db != null) java.util.Arrays.fill(db, 0, out, 0f);
            }
            return;
        }
        Sgemm.gemm(rt, true, false, out, in, rows, 1f, dy, dyOff, lddy, x, xOff, ldx, beta, dW, 0, in);
        if (bias != null && db != null) Sgemm.gemm(rt, false, false, 1, out, rows, 1f, ones, 0, rows, dy, dyOff, lddy, beta, db, 0, out);
    }

    /** A copy of {@code g} (a shared layer's gradients, shown under both of its names). */
    static io.bifuse.LinearGradients copy(io.bifuse.LinearGradients g) {
        return new io.bifuse.LinearGradients(g.weight().clone(), g.bias() == null ? null : g.bias().clone());
    }

    /** {@code n} ones, from {@code lease}'s {@code slot}. */
    static float[] ones(Scratch.Lease lease, int slot, int n) {
        float[] a = lease.floats(slot, n);
        java.util.Arrays.fill(a, 0, n, 1f);
        return a;
    }
}
