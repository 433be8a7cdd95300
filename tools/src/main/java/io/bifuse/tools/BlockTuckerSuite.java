package io.bifuse.tools;

import io.bifuse.BlockTucker;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.BlockTuckerCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.BlockTuckerCuda;
import io.bifuse.reference.BlockTuckerReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BlockTucker} (block.bootstrap's {@code BlockTucker}: one bilinear core per chunk) in check and
 * bench, as {@link FusionSuite} describes. Its defaults: signed sqrt + l2 per chunk before the
 * concatenation, layers not shared. Bench: block.bootstrap's VQA2 options (mm_dim 1800, 10 chunks), inputs
 * 4800 and 4096, 3000 outputs, B = 256.
 */
final class BlockTuckerSuite extends FusionSuite<BlockTucker, BlockTucker.Gradients, BlockTuckerSuite.Size> {
    record Size(int batch, int dx, int dy, int mm, int chunks, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " M=" + mm + " C=" + chunks + " Out=" + out; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",M=" + mm + ",C=" + chunks + ",Out=" + out; }
        @Override public int longestSum() {
            int s = (mm + chunks - 1) / chunks;
            return Math.max(Math.max(dx, dy), Math.max(Math.max(mm, s * s), batch));
        }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), mm / chunks) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 11, 3, 5), new Size(8, 120, 96, 96, 3, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 450, 10, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 96, 3, 50) : new Size(256, 4800, 4096, 1800, 10, 3000); }

    @Override BlockTucker make(Size s, long seed) {
        return BlockTucker.random(s.dx(), s.dy(), s.mm(), s.chunks(), s.out(), false, io.bifuse.Normalization.pytorch(), io.bifuse.Block.NormPosition.BEFORE_CAT,
                seed);
    }

    @Override FusionBackend<BlockTucker, BlockTucker.Gradients> cpu(BlockTucker op) { return new BlockTuckerCpu(op); }

    @Override CudaOp<BlockTucker> cuda(BlockTucker op, CudaContext ctx, Precision p) { return new BlockTuckerCuda(op, ctx, p); }

    @Override List<float[]> tensors(BlockTucker.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(BlockTucker op, float[] x, float[] y, float[] g, int batch) {
        return joined(BlockTuckerReference.forward(op, x, y, batch), BlockTuckerReference.backward(op, x, y, g, batch).tensors());
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), m = s.mm(), o = s.out(), cube = 0, core = 0;
        for (int cs : io.bifuse.Block.chunkSizes(s.mm(), s.chunks())) {
            cube += (double) cs * cs * cs;
            core += (double) cs * cs * cs + cs; // one bilinear core and its bias
        }
        double w = m * c + 2 * m + core + o * m + o;
        return new double[] {b * c, w, b * o, b * (m * c + cube + o * m)};
    }
}
