package io.bifuse.tools;

import io.bifuse.ConcatMlp;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.ConcatMlpCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.ConcatMlpCuda;
import io.bifuse.reference.ConcatMlpReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link ConcatMlp} (block.bootstrap's {@code ConcatMLP}: an MLP over {@code [x, y]}) in check and bench,
 * as {@link FusionSuite} describes. Its default: relu between the layers. Bench: block.bootstrap's VQA2
 * options (hidden layers 1600 and 1600), inputs 4800 and 4096, 3000 outputs, B = 256.
 */
final class ConcatMlpSuite extends FusionSuite<ConcatMlp, ConcatMlp.Gradients, ConcatMlpSuite.Size> {
    record Size(int batch, int dx, int dy, int h1, int h2, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " H=" + h1 + "x" + h2 + " Out=" + out + " relu"; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",H=" + h1 + "x" + h2 + ",Out=" + out + ",relu"; }
        @Override public int longestSum() { return Math.max(dx + dy, Math.max(Math.max(h1, h2), batch)); }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), Math.min(h1, h2)) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 9, 7, 5), new Size(8, 120, 96, 160, 160, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 400, 400, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 160, 160, 50) : new Size(256, 4800, 4096, 1600, 1600, 3000); }

    @Override ConcatMlp make(Size s, long seed) {
        return ConcatMlp.random(s.dx(), s.dy(), new int[] {s.h1(), s.h2()}, s.out(), io.bifuse.Activation.RELU, seed);
    }

    @Override FusionBackend<ConcatMlp, ConcatMlp.Gradients> cpu(ConcatMlp op) { return new ConcatMlpCpu(op); }

    @Override CudaOp<ConcatMlp> cuda(ConcatMlp op, CudaContext ctx, Precision p) { return new ConcatMlpCuda(op, ctx, p); }

    @Override List<float[]> tensors(ConcatMlp.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(ConcatMlp op, float[] x, float[] y, float[] g, int batch) {
        return joined(ConcatMlpReference.forward(op, x, y, batch), ConcatMlpReference.backward(op, x, y, g, batch));
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), h1 = s.h1(), h2 = s.h2(), o = s.out();
        return new double[] {b * c, c * h1 + h1 + h1 * h2 + h2 + h2 * o + o, b * o, b * (c * h1 + h1 * h2 + h2 * o)};
    }
}
