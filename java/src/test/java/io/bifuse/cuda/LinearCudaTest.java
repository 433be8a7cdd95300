package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/Linear.cu}'s bias gradient {@code db[c] = Σ_r g[r, c]}: the tiled kernel the ops launch and
 * the simple one-thread-per-column kernel beside it, each against the float64 sum. Both sum in double
 * and round once, so each element must be within one float ulp of the rounded float64 sum (the only
 * difference the summation order can make is the double rounding of a sum that lies within 1e-16 of a
 * float rounding boundary). Outputs NaN-poisoned; rows of stride ld > cols with NaN in the gap, so a
 * read past a row shows.
 */
@Tag("gpu")
class LinearCudaTest {
    @BeforeEach void requireGpu() { RequireGpu.device(); }

    @ParameterizedTest(name = "rows={0} cols={1} ld={2} gridCap={3}")
    @CsvSource({"25600,40,41,0", "1,1,1,0", "31,9,9,0", "33,17,20,0", "100,1000,1003,0", "3,7,7,1", "700,300,300,2"})
    void tiledAndSimpleMatchTheFloat64Sum(int rows, int cols, int ld, int gridCap) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        float[] g = new float[rows * ld];
        java.util.Arrays.fill(g, Float.NaN);
        float[] dense = Stats.gaussian(r, rows * cols);
        double[] ref = new double[cols];
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < cols; c++) {
                g[i * ld + c] = dense[i * cols + c];
                ref[c] += dense[i * cols + c];
            }
        }
        int before = DeviceArgs.gridCap;
        try (CudaContext ctx = CudaContext.open(0); CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dg = DeviceBuffer.of(ctx, g); DeviceBuffer tiled = DeviceBuffer.allocateFloats(ctx, cols);
             DeviceBuffer simple = DeviceBuffer.allocateFloats(ctx, cols)) {
            tiled.fill(Float.NaN);
            simple.fill(Float.NaN);
            DeviceArgs.gridCap = gridCap; // 1 or 2 blocks: the tiled kernel's loop over column groups makes several trips
            LinearCuda.biasGradient(ctx, new DeviceMatrix("g", dg, rows, cols, ld), tiled, st);
            ctx.launch(LinearCuda.BIAS_GRAD_SIMPLE, (cols + 255) / 256, 1, 256, 0, st, dg, simple, rows, cols, ld);
            float[] a = new float[cols], b = new float[cols];
            tiled.read(a, st);
            simple.read(b, st);
            for (int c = 0; c < cols; c++) {
                float want = (float) ref[c];
                String what = "column " + c + " of " + cols + ", rows " + rows + ", seed " + seed;
                assertTrue(Math.abs(a[c] - want) <= Math.ulp(want), what + ": tiled " + a[c] + " vs " + want);
                assertTrue(Math.abs(b[c] - want) <= Math.ulp(want), what + ": simple " + b[c] + " vs " + want);
            }
        } finally {
            DeviceArgs.gridCap = before;
        }
    }
}
