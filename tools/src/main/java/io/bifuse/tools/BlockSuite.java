package io.bifuse.tools;

import io.bifuse.Block;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.BlockCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.BlockCuda;
import io.bifuse.reference.BlockReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Block} (block.bootstrap's {@code Block}: block-superdiagonal fusion) in check and bench, as
 * {@link FusionSuite} describes. Its defaults: signed sqrt + l2 per chunk before the concatenation, layers
 * not shared. Bench: block.bootstrap's VQA2 options (mm_dim 1600, 18 chunks, rank 15), inputs 4800 and
 * 4096, 3000 outputs, B = 256.
 */
final class BlockSuite extends FusionSuite<Block, Block.Gradients, BlockSuite.Size> {
    record Size(int batch, int dx, int dy, int mm, int chunks, int rank, int out) implements FusionSuite.Size {
        @Override public String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " M=" + mm + " C=" + chunks + " R=" + rank + " Out=" + out; }
        @Override public String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",M=" + mm + ",C=" + chunks + ",R=" + rank + ",Out=" + out; }
        @Override public int longestSum() { return Math.max(Math.max(dx, dy), Math.max(mm, batch)); }
        @Override public boolean wide() { return Math.min(Math.min(dx, dy), mm / chunks) >= 32; }
    }

    @Override List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 17, 13, 13, 4, 3, 5), new Size(8, 120, 96, 160, 4, 5, 50)));
        if (!quick) s.add(new Size(16, 600, 512, 400, 9, 15, 375));
        return s;
    }

    @Override Size benchSize(boolean quick) { return quick ? new Size(8, 120, 96, 160, 4, 5, 50) : new Size(256, 4800, 4096, 1600, 18, 15, 3000); }

    @Override Block make(Size s, long seed) {
        return Block.random(s.dx(), s.dy(), s.mm(), s.chunks(), s.rank(), s.out(), false, io.bifuse.Normalization.pytorch(), Block.NormPosition.BEFORE_CAT, seed);
    }

    @Override FusionBackend<Block, Block.Gradients> cpu(Block op) { return new BlockCpu(op); }

    @Override CudaOp<Block> cuda(Block op, CudaContext ctx, Precision p) { return new BlockCuda(op, ctx, p); }

    @Override List<float[]> tensors(Block.Gradients g) { return g.tensors(); }

    @Override List<double[]> reference(Block op, float[] x, float[] y, float[] g, int batch) {
        return joined(BlockReference.forward(op, x, y, batch), BlockReference.backward(op, x, y, g, batch).tensors());
    }

    @Override double[] counts(Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), m = s.mm(), r = s.rank(), o = s.out(), sq = 0, lin = 0;
        for (int cs : Block.chunkSizes(s.mm(), s.chunks())) {
            sq += (double) cs * cs;
            lin += (double) cs * cs * r + cs * r; // one merge layer cs → cs·R, weight and bias
        }
        double w = m * c + 2 * m + 2 * lin + o * m + o;
        return new double[] {b * c, w, b * o, b * (m * c + 2 * r * sq + o * m)};
    }
}
