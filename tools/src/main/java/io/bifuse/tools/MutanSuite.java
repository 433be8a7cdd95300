package io.bifuse.tools;

import io.bifuse.Mutan;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.MutanCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.MutanCuda;
import io.bifuse.reference.MutanReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Mutan} (block.bootstrap's {@code Mutan}: Tucker fusion with a rank-R core) in check and bench, as
 * {@link FusionSuite} describes. Its defaults: no normalization, layers not shared. Bench: block.bootstrap's
 * VQA2 options (mm_dim 700, rank 10), inputs 4800 and 4096, 3000 outputs, B = 256.
 */
final class MutanSuite extends FusionSuite<Mutan, Mutan.Gradients, MutanSuite.Size> {
    record Size(int batch, int dx, int dy, int mm, int rank, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " M=" + mm + " R=" + rank + " Out=" + out; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",M=" + mm + ",R=" + rank + ",Out=" + out; }
        @Override public int longestSum() { return Math.max(Math.max(dx, dy), Math.max(mm, batch)); }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), mm) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 9, 3, 5), new Size(8, 120, 96, 70, 4, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 175, 10, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 70, 4, 50) : new Size(256, 4800, 4096, 700, 10, 3000); }

    @Override Mutan make(Size s, long seed) { return Mutan.random(s.dx(), s.dy(), s.mm(), s.rank(), s.out(), false, io.bifuse.Normalization.NONE, seed); }

    @Override FusionBackend<Mutan, Mutan.Gradients> cpu(Mutan op) { return new MutanCpu(op); }

    @Override CudaOp<Mutan> cuda(Mutan op, CudaContext ctx, Precision p) { return new MutanCuda(op, ctx, p); }

    @Override List<float[]> tensors(Mutan.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(Mutan op, float[] x, float[] y, float[] g, int batch) {
        return joined(MutanReference.forward(op, x, y, batch), MutanReference.backward(op, x, y, g, batch).tensors());
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), m = s.mm(), r = s.rank(), o = s.out();
        double w = m * c + 2 * m + 2 * (m * m * r + m * r) + o * m + o; // linear0, linear1, the two R·M × M merges, linear_out
        return new double[] {b * c, w, b * o, b * (m * c + 2 * r * m * m + o * m)};
    }
}
