package io.bifuse.testing;

import io.bifuse.BanAttention;
import io.bifuse.LinearGradients;
import io.bifuse.ObjectMask;
import io.bifuse.cuda.DeviceMatrix;
import io.bifuse.cuda.BanAttentionCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import java.util.ArrayList;
import java.util.List;

/**
 * One forward and one backward of {@link BanAttention} on the GPU, the way {@code check} and the GPU
 * tests verify it (the {@link DeviceRuns} pattern for this op): inputs uploaded with a row stride
 * {@code ld = K + pad} (the strided layout the BAN block passes), the mask uploaded, every output and
 * gradient buffer NaN-poisoned first, the backward fed the forward's own maps, results read back densely.
 * On a private stream whose workspaces are released after.
 */
public final class BanAttentionRuns {
    private BanAttentionRuns() {}

    /**
     * The maps, the logits, the gradients ({@code dxp}, {@code dyp} dense {@code K} columns) and whether the
     * gradient buffers' padding columns {@code [K, ld)} still hold their NaN poison (nothing written there).
     */
    public record Run(float[] attention, float[] logits, BanAttention.Gradients grads, boolean paddingUntouched) {}

    public static Run run(CudaContext ctx, BanAttentionCuda cuda, float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch,
                          int objects, int tokens, int pad, boolean throughRelu) {
        BanAttention op = cuda.op();
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        op.checkMaps("gradAttention", gradAttention, batch, objects, tokens);
        int k = op.width(), g = op.glimpses(), ld = k + pad, maps = batch * g * objects * tokens;
        boolean bias = op.logits().hasBias();
        List<AutoCloseable> res = new ArrayList<>();
        try (CudaStream st = CudaStream.create(ctx)) {
            try {
                float[] hx = strided(xp, k, ld), hy = strided(yp, k, ld);
                DeviceBuffer dx = keep(res, DeviceBuffer.of(ctx, hx)), dy = keep(res, DeviceBuffer.of(ctx, hy));
                DeviceBuffer ga = keep(res, DeviceBuffer.of(ctx, gradAttention));
                DeviceObjectMask dm = mask == null ? null : keep(res, DeviceObjectMask.upload(ctx, mask));
                DeviceBuffer att = keep(res, DeviceBuffer.allocateFloats(ctx, maps)), lg = keep(res, DeviceBuffer.allocateFloats(ctx, maps));
                DeviceBuffer gx = keep(res, DeviceBuffer.allocateFloats(ctx, (long) batch * objects * ld));
                DeviceBuffer gy = keep(res, DeviceBuffer.allocateFloats(ctx, (long) batch * tokens * ld));
                DeviceBuffer gw = keep(res, DeviceBuffer.allocateFloats(ctx, (long) g * k)), gb = keep(res, DeviceBuffer.allocateFloats(ctx, g));
                for (DeviceBuffer b : new DeviceBuffer[] {att, lg, gx, gy, gw, gb}) b.fill(Float.NaN);
                DeviceMatrix mx = new DeviceMatrix("xp", dx, batch * objects, k, ld), my = new DeviceMatrix("yp", dy, batch * tokens, k, ld);
                cuda.forward(mx, my, dm, batch, objects, tokens, att, lg, st);
                cuda.backward(mx, my, dm, batch, objects, tokens, att, ga, new DeviceMatrix("gradXp", gx, batch * objects, k, ld),
                        new DeviceMatrix("gradYp", gy, batch * tokens, k, ld), gw, bias ? gb : null, throughRelu, st);
                float[] a = read(att, maps, st), l = read(lg, maps, st), rx = read(gx, batch * objects * ld, st), ry = read(gy, batch * tokens * ld, st);
                boolean untouched = nanPadding(rx, k, ld) && nanPadding(ry, k, ld);
                DeviceRuns.unchanged(st, "xp", dx, hx, "yp", dy, hy, "gradAttention", ga, gradAttention);
                return new Run(a, l, new BanAttention.Gradients(dense(rx, k, ld), dense(ry, k, ld),
                        new LinearGradients(read(gw, g * k, st), bias ? read(gb, g, st) : null)), untouched);
            } finally {
                cuda.release(st);
                for (int i = res.size() - 1; i >= 0; i--) {
                    try { res.get(i).close(); } catch (Exception ignored) { /* keep freeing */ }
                }
            }
        }
    }

    /** Rows of {@code k} floats spread to a stride of {@code ld}, the gap NaN (a kernel reading it shows). */
    public static float[] strided(float[] a, int k, int ld) {
        if (ld == k) return a;
        int rows = a.length / k;
        float[] r = new float[rows * ld];
        java.util.Arrays.fill(r, Float.NaN);
        for (int i = 0; i < rows; i++) System.arraycopy(a, i * k, r, i * ld, k);
        return r;
    }

    private static float[] dense(float[] a, int k, int ld) {
        if (ld == k) return a;
        int rows = a.length / ld;
        float[] r = new float[rows * k];
        for (int i = 0; i < rows; i++) System.arraycopy(a, i * ld, r, i * k, k);
        return r;
    }

    private static boolean nanPadding(float[] a, int k, int ld) {
        for (int i = 0; i < a.length; i++) if (i % ld >= k && !Float.isNaN(a[i])) return false;
        return true;
    }

    private static <T extends AutoCloseable> T keep(List<AutoCloseable> l, T r) {
        l.add(r);
        return r;
    }

    private static float[] read(DeviceBuffer b, int n, CudaStream s) {
        float[] r = new float[n];
        b.read(r, s);
        return r;
    }
}
