package io.bifuse.tools;

import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.reference.CompactBilinearReference;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Every implemented op on every available backend against its reference, on fresh random inputs
 * (seed printed), GPU outputs NaN-poisoned before each run. Tolerance: relative L2 error <= 1e-5, the
 * issue's bound: float32 sketches and FFTs of length 16000 land near 1e-7, so 1e-5 leaves two orders
 * of margin while any indexing or scaling mistake shows as an error of order 1.
 *
 * <p>One exception, stated in the table: the backward through the EXACT signed-sqrt derivative
 * {@code 0.5/sqrt|z|} is ill-conditioned where {@code z ≈ 0} (a float32 rounding error δ in such a z
 * becomes a relative gradient error of order δ/|z|; the PyTorch float32 peer shows 6e-4 to 9e-3 there).
 * Those rows are held to {@link #ILL_CONDITIONED_TOLERANCE} and only run where every bin of the sketch
 * is well populated ({@code Dx·Dy >= 16·d}); in a sparse sketch an empty bin is exactly 0 in the
 * definition but ~1e-17 after an FFT, and no tolerance is meaningful.
 */
final class Check {
    static final double TOLERANCE = 1e-5;
    static final double ILL_CONDITIONED_TOLERANCE = 1e-2;

    /** The tolerance of a backward row, or NaN where the row is not meaningful (see the class comment). */
    static double backwardTolerance(Normalization n, Sizes s) {
        if (!n.signedSqrt() || n.signedSqrtGradEps() > 0) return TOLERANCE;
        return (long) s.dx() * s.dy() >= 16L * s.d() ? ILL_CONDITIONED_TOLERANCE : Double.NaN;
    }

    private Check() {}

    record Row(String op, String backend, String size, double error, double tolerance, boolean pass) {}

    static int run(boolean quick) {
        long seed = System.nanoTime();
        System.out.printf("%ncheck: relative L2 error vs the float64 reference, tolerance %.0e, input seed %d%n", TOLERANCE, seed);
        SplittableRandom rnd = new SplittableRandom(seed);
        List<Row> rows = new ArrayList<>();
        CudaContext ctx = null;
        if (Cuda.isAvailable()) ctx = CudaContext.open(0);
        else System.out.println("(GPU backend not checked: " + Cuda.status().reason() + ")");
        try {
            for (Sizes s : Sizes.compactBilinear(quick)) {
                for (Normalization n : List.of(Normalization.NONE, Normalization.pytorch(), Normalization.caffe())) {
                    if (s.batch() >= 512 && n != Normalization.NONE) continue; // the reference alone takes minutes there
                    CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), rnd.nextLong()).withNormalization(n);
                    float[] x = Stats.gaussian(rnd, s.batch() * s.dx()), y = Stats.gaussian(rnd, s.batch() * s.dy());
                    float[] g = Stats.gaussian(rnd, s.batch() * s.d());
                    double bwdTol = backwardTolerance(n, s);
                    double[] zRef = CompactBilinearReference.forward(op, x, y, s.batch());
                    double[][] gRef = Double.isNaN(bwdTol) ? null : CompactBilinearReference.backward(op, x, y, g, s.batch());
                    String size = s.label() + (n.isIdentity() ? "" : n.equals(Normalization.pytorch()) ? " +torch-norm" : " +caffe-norm");
                    int before = rows.size();
                    rows.add(row("CompactBilinear.forward", "cpu", size, op.forward(x, y, s.batch()), zRef, TOLERANCE));
                    // The CPU backend works in double: the exact-derivative conditioning costs it nothing measurable.
                    if (gRef != null) rows.add(row("CompactBilinear.backward", "cpu", size, op.backward(x, y, g, s.batch()), gRef, TOLERANCE));
                    if (ctx != null) {
                        for (CompactBilinearCuda.Sketch mode : CompactBilinearCuda.Sketch.values()) {
                            String backend = "cuda-" + mode.name().toLowerCase();
                            try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx, mode)) {
                                float[][] r = runCuda(ctx, cuda, x, y, g, s.batch());
                                rows.add(row("CompactBilinear.forward", backend, size, r[0], zRef, TOLERANCE));
                                if (gRef != null) rows.add(row("CompactBilinear.backward", backend, size, new Gradients(r[1], r[2]), gRef, bwdTol));
                            }
                        }
                    }
                    print(rows.subList(before, rows.size()), before == 0);
                }
            }
        } finally {
            if (ctx != null) ctx.close();
        }
        long failed = rows.stream().filter(r -> !r.pass()).count();
        System.out.printf("check: %d passed, %d failed%n", rows.size() - failed, failed);
        return failed == 0 ? 0 : 1;
    }

    /** Forward and backward on device buffers whose outputs were NaN-poisoned first. */
    static float[][] runCuda(CudaContext ctx, CompactBilinearCuda cuda, float[] x, float[] y, float[] g, int batch) {
        CompactBilinear op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, (long) batch * op.d());
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dx());
             DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dy())) {
            z.fill(Float.NaN);
            gx.fill(Float.NaN);
            gy.fill(Float.NaN);
            cuda.forward(dx, dy, z, batch, st);
            cuda.backward(dx, dy, dg, gx, gy, batch, st);
            float[] rz = new float[batch * op.d()], rx = new float[batch * op.dx()], ry = new float[batch * op.dy()];
            z.read(rz, st);
            gx.read(rx, st);
            gy.read(ry, st);
            cuda.release(st);
            return new float[][] {rz, rx, ry};
        }
    }

    static Row row(String op, String backend, String size, float[] got, double[] ref, double tol) {
        double e = Stats.relativeL2(got, ref);
        return new Row(op, backend, size, e, tol, e <= tol);
    }

    static Row row(String op, String backend, String size, Gradients got, double[][] ref, double tol) {
        double e = Math.max(Stats.relativeL2(got.dx(), ref[0]), Stats.relativeL2(got.dy(), ref[1]));
        return new Row(op, backend, size, e, tol, e <= tol);
    }

    private static void print(List<Row> rows, boolean header) {
        if (header) System.out.printf("%-26s %-18s %-48s %10s %8s  %s%n", "op", "backend", "size", "rel. L2", "tol", "result");
        for (Row r : rows) {
            System.out.printf("%-26s %-18s %-48s %10.2e %8.0e  %s%n", r.op(), r.backend(), r.size(), r.error(), r.tolerance(),
                    r.pass() ? "pass" : "FAIL");
        }
    }
}
