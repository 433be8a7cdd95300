package io.bifuse.tools;

import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.CudaContext;

/** Lets tests in other packages reuse check's NaN-poisoned GPU run. */
public final class CheckAccess {
    private CheckAccess() {}

    public static float[][] runCuda(CudaContext ctx, CompactBilinearCuda cuda, float[] x, float[] y, float[] g, int batch) {
        return Check.runCuda(ctx, cuda, x, y, g, batch);
    }

    public static boolean backwardComparable(io.bifuse.Normalization n, int batch, int dx, int dy, int d) {
        return Check.backwardComparable(n, new Sizes(batch, dx, dy, d));
    }

    public static double forwardTolerance(io.bifuse.CompactBilinear op, float[] x, float[] y, int batch, double[] zRef, long seed) {
        return Check.forwardTolerance(op, x, y, batch, zRef, seed);
    }

    public static double backwardTolerance(io.bifuse.CompactBilinear op, float[] x, float[] y, float[] g, int batch, double[][] gRef, long seed) {
        return Check.backwardTolerance(op, x, y, g, batch, gRef, seed);
    }

    public static Conditioning mfbConditioning(io.bifuse.Mfb op, io.bifuse.Precision p, float[] x, float[] y, float[] g, int batch, double[] zRef,
                                               io.bifuse.reference.MfbReference.Grads ref, io.bifuse.reference.MfbReference.Grads scale, long seed) {
        return MfbSuite.conditioning(op, p, x, y, g, batch, zRef, ref, scale, seed);
    }

    public static double mfbBackwardTolerance(io.bifuse.Mfb op, io.bifuse.Precision p, float[] x, float[] y, float[] g, int batch,
                                              io.bifuse.reference.MfbReference.Grads ref, io.bifuse.reference.MfbReference.Grads scale, long seed) {
        return MfbSuite.backwardTolerance(op, p, x, y, g, batch, ref, scale, seed);
    }
}
