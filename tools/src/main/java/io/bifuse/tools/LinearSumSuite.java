package io.bifuse.tools;

import io.bifuse.LinearSum;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.LinearSumCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.LinearSumCuda;
import io.bifuse.reference.LinearSumReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link LinearSum} (block.bootstrap's {@code LinearSum}: {@code σ_out(W·(σ(x·U) + σ(y·V)))}) in check and
 * bench, as {@link FusionSuite} describes. Its defaults: relu in and out, no normalization. Bench:
 * block.bootstrap's VQA2 options (mm_dim 1200), inputs 4800 and 4096, 3000 outputs, B = 256.
 */
final class LinearSumSuite extends FusionSuite<LinearSum, LinearSum.Gradients, LinearSumSuite.Size> {
    record Size(int batch, int dx, int dy, int mm, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " M=" + mm + " Out=" + out + " relu"; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",M=" + mm + ",Out=" + out + ",relu"; }
        @Override public int longestSum() { return Math.max(Math.max(dx, dy), Math.max(mm, batch)); }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), mm) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 9, 5), new Size(8, 120, 96, 120, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 300, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 120, 50) : new Size(256, 4800, 4096, 1200, 3000); }

    @Override LinearSum make(Size s, long seed) {
        return LinearSum.random(s.dx(), s.dy(), s.mm(), s.out(), io.bifuse.Activation.RELU, io.bifuse.Activation.RELU, io.bifuse.Normalization.NONE, seed);
    }

    @Override FusionBackend<LinearSum, LinearSum.Gradients> cpu(LinearSum op) { return new LinearSumCpu(op); }

    @Override CudaOp<LinearSum> cuda(LinearSum op, CudaContext ctx, Precision p) { return new LinearSumCuda(op, ctx, p); }

    @Override List<float[]> tensors(LinearSum.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(LinearSum op, float[] x, float[] y, float[] g, int batch) {
        return joined(LinearSumReference.forward(op, x, y, batch), LinearSumReference.backward(op, x, y, g, batch));
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), m = s.mm(), o = s.out();
        return new double[] {b * c, m * c + 2 * m + o * m + o, b * o, b * (m * c + o * m)};
    }
}
