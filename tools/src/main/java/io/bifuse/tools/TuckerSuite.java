package io.bifuse.tools;

import io.bifuse.Tucker;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.TuckerCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.TuckerCuda;
import io.bifuse.reference.TuckerReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Tucker} (block.bootstrap's {@code Tucker}: a full M × M × M bilinear core) in check and bench, as
 * {@link FusionSuite} describes. Its defaults: no normalization, layers not shared. Bench: block.bootstrap's
 * VQA2 options (mm_dim 235), inputs 4800 and 4096, 3000 outputs, B = 256.
 */
final class TuckerSuite extends FusionSuite<Tucker, Tucker.Gradients, TuckerSuite.Size> {
    record Size(int batch, int dx, int dy, int mm, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " M=" + mm + " Out=" + out; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",M=" + mm + ",Out=" + out; }
        @Override public int longestSum() { return Math.max(Math.max(dx, dy), Math.max(mm * mm, batch)); }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), mm) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 7, 5), new Size(8, 120, 96, 40, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 90, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 40, 50) : new Size(256, 4800, 4096, 235, 3000); }

    @Override Tucker make(Size s, long seed) { return Tucker.random(s.dx(), s.dy(), s.mm(), s.out(), io.bifuse.Normalization.NONE, seed); }

    @Override FusionBackend<Tucker, Tucker.Gradients> cpu(Tucker op) { return new TuckerCpu(op); }

    @Override CudaOp<Tucker> cuda(Tucker op, CudaContext ctx, Precision p) { return new TuckerCuda(op, ctx, p); }

    @Override List<float[]> tensors(Tucker.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(Tucker op, float[] x, float[] y, float[] g, int batch) {
        return joined(TuckerReference.forward(op, x, y, batch), TuckerReference.backward(op, x, y, g, batch));
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), m = s.mm(), o = s.out();
        double w = m * c + 2 * m + m * m * m + m + o * m + o; // linear0, linear1, the bilinear core and its bias, linear_out
        return new double[] {b * c, w, b * o, b * (m * c + m * m * m + o * m)};
    }
}
