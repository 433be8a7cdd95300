package io.bifuse.testing;

import io.bifuse.BanBlock;
import io.bifuse.FullBilinear;
import io.bifuse.ObjectMask;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.Mlb;
import io.bifuse.MlbAttention;
import io.bifuse.cuda.BanBlockCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceMemory;
import io.bifuse.cuda.DeviceObjectMask;
import io.bifuse.cuda.FullBilinearCuda;
import io.bifuse.cuda.MfbCuda;
import io.bifuse.cuda.MlbAttentionCuda;
import io.bifuse.cuda.MlbCuda;
import java.util.ArrayList;
import java.util.List;

/**
 * One forward and one backward of an op on the GPU, the way {@code check} and the GPU tests verify it:
 * inputs uploaded, every output and gradient buffer NaN-poisoned first (so an unwritten element shows
 * as NaN in the error), results read back. On a private stream whose workspaces are released after.
 * The inputs and gradOut are read back too and must come back bit for bit: an op that writes into its
 * inputs (a kernel using one as scratch, an in-place cuFFT C2R on the caller's buffer) fails loudly here
 * instead of corrupting a caller's activations.
 */
public final class DeviceRuns {
    private DeviceRuns() {}

    public record MlbRun(float[] out, Mlb.Gradients grads) {}

    public record MfbRun(float[] out, Mfb.Gradients grads) {}

    public record MlbAttentionRun(float[] out, float[] attention, MlbAttention.Gradients grads) {}

    public record McbAttentionRun(float[] out, float[] attention, io.bifuse.McbAttention.Gradients grads) {}

    public record MultiHeadAttentionRun(float[] out, float[] attention, io.bifuse.MultiHeadAttention.Gradients grads) {}

    public record SelfAttentionUnitRun(float[] out, io.bifuse.SelfAttentionUnit.Gradients grads) {}

    public record GuidedAttentionUnitRun(float[] out, io.bifuse.GuidedAttentionUnit.Gradients grads) {}

    public record McanEncoderDecoderRun(float[] out, io.bifuse.McanEncoderDecoder.Gradients grads) {}

    /** {@code attention}: every level's weights concatenated ({@code Σ_ℓ N_ℓ}). */
    public record HierarchicalAttentionRun(float[] out, float[] attention, io.bifuse.HierarchicalAttention.Gradients grads) {}

    public record StackedAttentionRun(float[] out, float[] attention, io.bifuse.StackedAttention.Gradients grads) {}

    /** {@code gradY} is null when the op is homologous. */
    public record FullBilinearRun(float[] out, float[] gradX, float[] gradY) {}

    public record BanBlockRun(float[] out, float[] attention, BanBlock.Gradients grads) {}

    /** {@code mask} null: the block finds padding from the zero rows of {@code x} on the device (ban-vqa's rule). */
    public static BanBlockRun banBlock(CudaContext ctx, BanBlockCuda cuda, float[] x, float[] y, ObjectMask mask, float[] g,
                                       int batch, int objects, int tokens) {
        BanBlock op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceObjectMask m = mask == null ? null : DeviceObjectMask.upload(ctx, mask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dy());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) batch * op.glimpses() * objects * tokens);
             BanBlockCuda.OwnedGradients gr = cuda.allocateGradients(batch, objects, tokens)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dx, dy, m, batch, objects, tokens, out, att, st);
                cuda.backward(dx, dy, m, batch, objects, tokens, dg, gr.buffers(), st);
                BanBlockRun run = new BanBlockRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "x", dx, x, "y", dy, y, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    public static MlbRun mlb(CudaContext ctx, MlbCuda cuda, float[] x, float[] y, float[] g, int batch) {
        Mlb op = cuda.op();
        List<DeviceBuffer> bufs = new ArrayList<>();
        try (CudaStream st = CudaStream.create(ctx)) {
            try {
                DeviceBuffer dx = keep(bufs, DeviceBuffer.of(ctx, x)), dy = keep(bufs, DeviceBuffer.of(ctx, y));
                DeviceBuffer dg = keep(bufs, DeviceBuffer.of(ctx, g));
                DeviceBuffer out = keep(bufs, DeviceBuffer.allocateFloats(ctx, (long) batch * op.out()));
                try (MlbCuda.OwnedGradients gr = cuda.allocateGradients(batch)) {
                    out.fill(Float.NaN);
                    gr.fill(Float.NaN);
                    cuda.forward(dx, dy, out, batch, st);
                    cuda.backward(dx, dy, dg, gr.buffers(), batch, st);
                    MlbRun run = new MlbRun(read(out, st), gr.read(st));
                    unchanged(st, "x", dx, x, "y", dy, y, "gradOut", dg, g);
                    return run;
                }
            } finally {
                cuda.release(st);
                for (int i = bufs.size() - 1; i >= 0; i--) bufs.get(i).close();
            }
        }
    }

    public static MfbRun mfb(CudaContext ctx, MfbCuda cuda, float[] x, float[] y, float[] g, int batch) {
        Mfb op = cuda.op();
        int nw = op.blocks() * op.width();
        boolean lo = op.hasOutput(), lob = lo && op.linearOut().hasBias();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * op.outputWidth());
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dx());
             DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dy());
             DeviceBuffer gu = DeviceBuffer.allocateFloats(ctx, (long) nw * op.dx());
             DeviceBuffer gv = DeviceBuffer.allocateFloats(ctx, (long) nw * op.dy());
             DeviceBuffer gbu = DeviceBuffer.allocateFloats(ctx, nw); DeviceBuffer gbv = DeviceBuffer.allocateFloats(ctx, nw);
             DeviceBuffer go = lo ? DeviceBuffer.allocateFloats(ctx, (long) op.outputWidth() * op.pooledWidth()) : null;
             DeviceBuffer gbo = lob ? DeviceBuffer.allocateFloats(ctx, op.outputWidth()) : null) {
            try {
                for (DeviceBuffer d : new DeviceBuffer[] {out, gx, gy, gu, gv, gbu, gbv, go, gbo}) if (d != null) d.fill(Float.NaN);
                cuda.forward(dx, dy, out, batch, st);
                cuda.backward(dx, dy, dg, new MfbCuda.DeviceGradients(gx, gy, gu, gbu, gv, gbv, go, gbo), batch, st);
                Mfb.Gradients gr = cuda.split(read(gx, st), read(gy, st), read(gu, st), read(gbu, st), read(gv, st), read(gbv, st));
                if (lo) gr = new Mfb.Gradients(gr.dx(), gr.dy(), gr.u(), gr.v(), new io.bifuse.LinearGradients(read(go, st), lob ? read(gbo, st) : null));
                MfbRun run = new MfbRun(read(out, st), gr);
                unchanged(st, "x", dx, x, "y", dy, y, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    public static MlbAttentionRun mlbAttention(CudaContext ctx, MlbAttentionCuda cuda, float[] q, float[] v, float[] g, int batch, int cells) {
        MlbAttention op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dq = DeviceBuffer.of(ctx, q); DeviceBuffer dv = DeviceBuffer.of(ctx, v); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * op.out());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) batch * op.glimpses() * cells);
             MlbAttentionCuda.OwnedGradients gr = cuda.allocateGradients(batch, cells)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dq, dv, out, att, batch, cells, st);
                cuda.backward(dq, dv, dg, gr.buffers(), batch, cells, st);
                MlbAttentionRun run = new MlbAttentionRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "q", dq, q, "v", dv, v, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    public static McbAttentionRun mcbAttention(CudaContext ctx, io.bifuse.cuda.McbAttentionCuda cuda, float[] q, float[] image, float[] g,
                                               int batch, int cells) {
        io.bifuse.McbAttention op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dq = DeviceBuffer.of(ctx, q); DeviceBuffer di = DeviceBuffer.of(ctx, image); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * op.answers());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) batch * op.glimpses() * cells);
             io.bifuse.cuda.McbAttentionCuda.OwnedGradients gr = cuda.allocateGradients(batch, cells)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dq, di, out, att, batch, cells, st);
                cuda.backward(dq, di, dg, gr.buffers(), batch, cells, st);
                McbAttentionRun run = new McbAttentionRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "q", dq, q, "image", di, image, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /** {@code mask} null: every key real. */
    public static MultiHeadAttentionRun multiHeadAttention(CudaContext ctx, io.bifuse.cuda.MultiHeadAttentionCuda cuda, float[] query, float[] key,
                                                           float[] value, ObjectMask mask, float[] g, int batch, int queries, int keys) {
        io.bifuse.MultiHeadAttention op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, query); DeviceBuffer dk = DeviceBuffer.of(ctx, key); DeviceBuffer dv = DeviceBuffer.of(ctx, value);
             DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceObjectMask m = mask == null ? null : DeviceObjectMask.upload(ctx, mask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * queries * op.out());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) batch * op.heads() * queries * keys);
             io.bifuse.cuda.MultiHeadAttentionCuda.OwnedGradients gr = cuda.allocateGradients(batch, queries, keys)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dx, dk, dv, m, out, att, batch, queries, keys, st);
                cuda.backward(dx, dk, dv, m, dg, gr.buffers(), batch, queries, keys, st);
                MultiHeadAttentionRun run = new MultiHeadAttentionRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "query", dx, query, "key", dk, key, "value", dv, value, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /** Masks null: every row real. */
    public static McanEncoderDecoderRun mcanEncoderDecoder(CudaContext ctx, io.bifuse.cuda.McanEncoderDecoderCuda cuda, float[] q, ObjectMask qMask,
                                                           float[] v, ObjectMask vMask, float[] g, int batch, int lq, int lv) {
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dq = DeviceBuffer.of(ctx, q); DeviceBuffer dv = DeviceBuffer.of(ctx, v); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceObjectMask qm = qMask == null ? null : DeviceObjectMask.upload(ctx, qMask);
             DeviceObjectMask vm = vMask == null ? null : DeviceObjectMask.upload(ctx, vMask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, g.length);
             io.bifuse.cuda.McanEncoderDecoderCuda.OwnedGradients gr = cuda.allocateGradients(batch, lq, lv)) {
            try {
                out.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dq, qm, dv, vm, out, batch, lq, lv, st);
                cuda.backward(dq, qm, dv, vm, dg, gr.buffers(), batch, lq, lv, st);
                McanEncoderDecoderRun run = new McanEncoderDecoderRun(read(out, st), gr.read(st));
                unchanged(st, "q", dq, q, "v", dv, v, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /** Masks null: every token real. */
    public static GuidedAttentionUnitRun guidedAttentionUnit(CudaContext ctx, io.bifuse.cuda.GuidedAttentionUnitCuda cuda, float[] x, ObjectMask xMask,
                                                             float[] y, ObjectMask yMask, float[] g, int batch, int lx, int ly) {
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceObjectMask xm = xMask == null ? null : DeviceObjectMask.upload(ctx, xMask);
             DeviceObjectMask ym = yMask == null ? null : DeviceObjectMask.upload(ctx, yMask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, x.length);
             io.bifuse.cuda.GuidedAttentionUnitCuda.OwnedGradients gr = cuda.allocateGradients(batch, lx, ly)) {
            try {
                out.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dx, xm, dy, ym, out, batch, lx, ly, st);
                cuda.backward(dx, xm, dy, ym, dg, gr.buffers(), batch, lx, ly, st);
                GuidedAttentionUnitRun run = new GuidedAttentionUnitRun(read(out, st), gr.read(st));
                unchanged(st, "x", dx, x, "y", dy, y, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /** {@code mask} null: every token real. */
    public static SelfAttentionUnitRun selfAttentionUnit(CudaContext ctx, io.bifuse.cuda.SelfAttentionUnitCuda cuda, float[] x, ObjectMask mask,
                                                         float[] g, int batch, int tokens) {
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceObjectMask m = mask == null ? null : DeviceObjectMask.upload(ctx, mask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, x.length);
             io.bifuse.cuda.SelfAttentionUnitCuda.OwnedGradients gr = cuda.allocateGradients(batch, tokens)) {
            try {
                out.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dx, m, out, batch, tokens, st);
                cuda.backward(dx, m, dg, gr.buffers(), batch, tokens, st);
                SelfAttentionUnitRun run = new SelfAttentionUnitRun(read(out, st), gr.read(st));
                unchanged(st, "x", dx, x, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    public static StackedAttentionRun stackedAttention(CudaContext ctx, io.bifuse.cuda.StackedAttentionCuda cuda, float[] u, float[] v, float[] g,
                                                       int batch, int cells) {
        io.bifuse.StackedAttention op = cuda.op();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer du = DeviceBuffer.of(ctx, u); DeviceBuffer dv = DeviceBuffer.of(ctx, v); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) batch * op.dim());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) batch * op.layers() * cells);
             io.bifuse.cuda.StackedAttentionCuda.OwnedGradients gr = cuda.allocateGradients(batch, cells)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(du, dv, out, att, batch, cells, st);
                cuda.backward(du, dv, dg, gr.buffers(), batch, cells, st);
                StackedAttentionRun run = new StackedAttentionRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "u", du, u, "v", dv, v, "gradOut", dg, g);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    public static HierarchicalAttentionRun hierarchicalAttention(CudaContext ctx, io.bifuse.cuda.HierarchicalAttentionCuda cuda, float[] x, float[] g,
                                                                 int items, int[][] offsets) {
        io.bifuse.HierarchicalAttention op = cuda.op();
        int[] groups = op.groupCounts(items, offsets);
        int[] flat = io.bifuse.HierarchicalAttention.flatOffsets(offsets);
        long all = items;
        for (int l = 0; l + 1 < groups.length; l++) all += groups[l];
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer off = DeviceBuffer.of(ctx, flat);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) groups[groups.length - 1] * op.dim());
             DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, all);
             io.bifuse.cuda.HierarchicalAttentionCuda.OwnedGradients gr = cuda.allocateGradients(items)) {
            try {
                out.fill(Float.NaN);
                att.fill(Float.NaN);
                gr.fill(Float.NaN);
                cuda.forward(dx, off, out, att, items, groups, st);
                cuda.backward(dx, off, dg, gr.buffers(), items, groups, st);
                HierarchicalAttentionRun run = new HierarchicalAttentionRun(read(out, st), read(att, st), gr.read(st));
                unchanged(st, "x", dx, x, "gradOut", dg, g);
                int[] now = new int[flat.length];
                off.read(now, st);
                if (!java.util.Arrays.equals(now, flat)) throw new AssertionError("offsets changed on the device");
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /** {@code y} is ignored (may be null) when the op is homologous. */
    public static FullBilinearRun fullBilinear(CudaContext ctx, FullBilinearCuda cuda, float[] x, float[] y, float[] g, int batch, int positions) {
        FullBilinear op = cuda.op();
        boolean h = op.isHomologous();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, h ? new float[1] : y);
             DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, (long) batch * op.outputSize());
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, x.length);
             DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, h ? 1 : y.length)) {
            try {
                z.fill(Float.NaN);
                gx.fill(Float.NaN);
                gy.fill(Float.NaN);
                if (h) {
                    cuda.forward(dx, z, batch, positions, st);
                    cuda.backward(dx, dg, gx, batch, positions, st);
                } else {
                    cuda.forward(dx, dy, z, batch, positions, st);
                    cuda.backward(dx, dy, dg, gx, gy, batch, positions, st);
                }
                FullBilinearRun run = new FullBilinearRun(read(z, st), read(gx, st), h ? null : read(gy, st));
                unchanged(st, "x", dx, x, "gradOut", dg, g);
                if (!h) unchanged(st, "y", dy, y);
                return run;
            } finally {
                cuda.release(st);
            }
        }
    }

    /**
     * Each (name, device buffer, host array it was uploaded from) triple read back after the work on
     * {@code s}, compared bit for bit; the first difference names the argument and the element.
     */
    public static void unchanged(CudaStream s, Object... nameBufferHost) {
        for (int t = 0; t < nameBufferHost.length; t += 3) {
            String name = (String) nameBufferHost[t];
            DeviceBuffer d = (DeviceBuffer) nameBufferHost[t + 1];
            float[] host = (float[]) nameBufferHost[t + 2];
            float[] now = new float[host.length];
            d.read(now, s);
            for (int i = 0; i < host.length; i++) {
                if (Float.floatToRawIntBits(now[i]) != Float.floatToRawIntBits(host[i])) {
                    throw new IllegalStateException(name + ": the op wrote into this input (element " + i + " of " + host.length
                            + " was " + host[i] + ", is " + now[i] + " after forward and backward)");
                }
            }
        }
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    /** The whole memory as floats, after the work queued on {@code s}; null for null. */
    /**
     * A block.bootstrap fusion through its device call forms ({@link io.bifuse.cuda.DeviceFusion}): the
     * output ({@code B × out}) then every gradient in {@code gradientNames()} order, each buffer
     * NaN-poisoned first, so an element the kernels never write shows.
     */
    public static List<float[]> fusion(CudaContext ctx, io.bifuse.cuda.DeviceFusion op, int out, float[] x, float[] y, float[] g, int batch) {
        List<Long> sizes = op.sizes(batch);
        List<DeviceBuffer> grads = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); DeviceBuffer bx = DeviceBuffer.of(ctx, x); DeviceBuffer by = DeviceBuffer.of(ctx, y);
             DeviceBuffer bg = DeviceBuffer.of(ctx, g); DeviceBuffer bo = DeviceBuffer.allocateFloats(ctx, (long) batch * out)) {
            bo.fill(Float.NaN, s);
            for (long n : sizes) {
                DeviceBuffer b = DeviceBuffer.allocateFloats(ctx, n);
                grads.add(b);
                b.fill(Float.NaN, s);
            }
            try {
                op.forward(bx, by, bo, batch, s);
                op.backward(bx, by, bg, grads, batch, s);
                List<float[]> t = new ArrayList<>();
                t.add(read(bo, s));
                for (DeviceBuffer b : grads) t.add(read(b, s));
                unchanged(s, "x", bx, x, "y", by, y, "gradOut", bg, g);
                return t;
            } finally {
                if (op instanceof io.bifuse.cuda.CudaOp<?> c) c.release(s);
            }
        } finally {
            for (DeviceBuffer b : grads) b.close();
        }
    }

    private static float[] read(DeviceMemory m, CudaStream s) {
        if (m == null) return null;
        float[] r = new float[(int) (m.byteSize() / 4)];
        ((DeviceBuffer) m).read(r, s);
        return r;
    }
}
