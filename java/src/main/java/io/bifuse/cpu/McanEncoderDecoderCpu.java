package io.bifuse.cpu;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LinearGradients;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.SelfAttentionUnit;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link McanEncoderDecoder} on the CPU in float32 ({@code cpu-fp32}): n {@link SelfAttentionUnitCpu} layers on
 * the question, n {@link GuidedAttentionUnitCpu} layers on the image each guided by the question's final
 * encoding, the two AttFlat reductions and the final LayerNorm.
 *
 * <p>How: the layers are the float32 units themselves (their projections, attention cores, LayerNorms and
 * FFNs as GEMMs and fused row passes). An AttFlat: its MLP as two GEMMs over all rows with the ReLU in
 * place, the masked softmax over each sample's rows (max and sum in double; a padded row gets exactly 0, a
 * sample without real rows uniform weights), the glimpses' pooling {@code αᵀ z} as one GEMM per sample, the
 * merge as one GEMM over the batch (the image's accumulated onto the question's). Backward: the forward with
 * every layer's input kept and as many layers' intermediates as fit in an eighth of the heap (the decoder's
 * first); each other layer's forward is recomputed from its input when the backward reaches it (the same
 * code on the same inputs: the same bits); then the final norm's, each reduction's
 * and the layers' transposes from the last, each decoder layer adding its guiding gradient to the
 * question's. AttFlat's logit-bias gradient and every attention's key-bias gradient are exact zeros (the
 * softmax cancels them). Gradients: one fresh buffer per state-dict tensor.
 *
 * <p>Threads: {@link #runtime()}; work is split by shape only and no sum is split, so results are bitwise
 * the same for every thread count. Weights are prepared once here, intermediates come from a per-backend
 * {@link Scratch}. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class McanEncoderDecoderCpu extends CpuBackend<McanEncoderDecoder> implements McanEncoderDecoder.Backend {
    private final List<SelfAttentionUnitCpu> encoder = new ArrayList<>();
    private final List<GuidedAttentionUnitCpu> decoder = new ArrayList<>();
    private final Flatten questionFlatten, imageFlatten;
    private final McanKernels.Norm norm;
    private final Scratch scratch = new Scratch();
    private final long keepLimit;

    public McanEncoderDecoderCpu(McanEncoderDecoder op) {
        this(op, CpuRuntime.defaults());
    }

    public McanEncoderDecoderCpu(McanEncoderDecoder op, CpuRuntime runtime) {
        this(op, runtime, Runtime.getRuntime().maxMemory() / 8);
    }

    /** {@code keepLimit}: the most bytes of layers' intermediates the backward keeps from its forward (the others it recomputes); tests set 0. */
    McanEncoderDecoderCpu(McanEncoderDecoder op, CpuRuntime runtime, long keepLimit) {
        super(op, "a McanEncoderDecoder", Backends.FP32, runtime);
        this.keepLimit = keepLimit;
        for (SelfAttentionUnit u : op.encoder()) encoder.add(new SelfAttentionUnitCpu(u, runtime));
        for (GuidedAttentionUnit u : op.decoder()) decoder.add(new GuidedAttentionUnitCpu(u, runtime));
        McanEncoderDecoder.Weights w = op.weights();
        questionFlatten = new Flatten(w.questionFlatten());
        imageFlatten = new Flatten(w.imageFlatten());
        norm = new McanKernels.Norm(op.norm(), w.norm());
    }

    @Override public float[] forward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int qTokens, int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        checkSizes(batch, qTokens, vTokens);
        float[] out = new float[McanKernels.elements("output", batch, op.out())];
        try (Scratch.Lease l = scratch.lease()) {
            Pass p = forward(l, q, McanKernels.Mask.of(qMask, batch, qTokens), v, McanKernels.Mask.of(vMask, batch, vTokens), batch, qTokens, vTokens, false,
                    new boolean[2 * op.layers()]);
            McanKernels.Arena top = region(l, 1);
            reduce(top, p, top.floats(batch * op.out()), out);
        }
        return out;
    }

    @Override public McanEncoderDecoder.Gradients backward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, float[] gradOut, int batch,
                                                           int qTokens, int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        checkSizes(batch, qTokens, vTokens);
        int n = op.layers(), h = op.hidden(), o = op.out(), lq = qTokens, lv = vTokens;
        float[] dq = new float[q.length], dv = new float[v.length];
        try (Scratch.Lease l = scratch.lease()) {
            McanKernels.Mask qm = McanKernels.Mask.of(qMask, batch, lq), vm = McanKernels.Mask.of(vMask, batch, lv);
            Pass p = forward(l, q, qm, v, vm, batch, lq, lv, true, keptLayers(batch, lq, lv));
            float[] ones = CpuLinear.ones(l, 0, batch * Math.max(lq, lv));
            McanKernels.Arena top = region(l, 1);
            float[] sum = top.floats(batch * o), out = top.floats(batch * o);
            Reduced red = reduce(top, p, sum, out);
            float[] dg = new float[o], db = new float[o], ds = top.floats(batch * o);
            norm.backward(runtime, batch, red.norm(), gradOut, ds, dg, db);
            float[] dxn = top.floats(batch * lq * h), dyA = top.floats(batch * lv * h), dyB = top.floats(batch * lv * h);
            float[] dxA = top.floats(batch * lq * h), dxB = top.floats(batch * lq * h);
            List<float[]> fq = questionFlatten.backward(runtime, top, red.question(), p.x[n], qm, batch, lq, ds, dxn, ones);
            List<float[]> fv = imageFlatten.backward(runtime, top, red.image(), p.y[n], vm, batch, lv, ds, dyA, ones);
            List<List<float[]>> dec = new ArrayList<>();
            float[] dy = dyA;
            for (int i = n - 1; i >= 0; i--) {
                GuidedAttentionUnitCpu u = decoder.get(i);
                McanKernels.Arena t = p.decoderArena[i];
                GuidedAttentionUnitCpu.State s = p.decoder[i];
                if (s == null) { // recomputed: the same code on the same input, the same bits
                    t = region(l, 2);
                    s = u.forward(t, p.y[i], vm, p.x[n], qm, batch, lv, lq, t.floats(batch * lv * h));
                } else if (t == null) {
                    t = region(l, 2 + 2 * n); // a kept layer's backward temporaries: one region for all
                }
                float[] dyPrev = i == 0 ? dv : (dy == dyA ? dyB : dyA);
                List<float[]> g = u.backward(t, s, p.y[i], vm, p.x[n], qm, batch, lv, lq, dy, ones, dyPrev, dxn, true).tensors();
                dec.add(0, g.subList(2, g.size()));
                dy = dyPrev;
            }
            List<List<float[]>> enc = new ArrayList<>();
            float[] dx = dxn;
            for (int i = n - 1; i >= 0; i--) {
                SelfAttentionUnitCpu u = encoder.get(i);
                McanKernels.Arena t = p.encoderArena[i];
                SelfAttentionUnitCpu.State s = p.encoder[i];
                if (s == null) {
                    t = region(l, 2);
                    s = u.forward(t, p.x[i], qm, batch, lq, t.floats(batch * lq * h));
                } else if (t == null) {
                    t = region(l, 2 + 2 * n);
                }
                float[] dxPrev = i == 0 ? dq : (dx == dxA ? dxB : dxA);
                List<float[]> g = u.backward(t, s, p.x[i], qm, batch, lq, dx, ones, dxPrev).tensors();
                enc.add(0, g.subList(1, g.size()));
                dx = dxPrev;
            }
            List<float[]> par = new ArrayList<>();
            enc.forEach(par::addAll);
            dec.forEach(par::addAll);
            par.addAll(fq);
            par.addAll(fv);
            par.addAll(List.of(dg, db));
            return new McanEncoderDecoder.Gradients(dq, dv, par);
        }
    }

    /**
     * Region {@code k} of a lease's slots: 0 the layers' inputs, 1 the reductions and the backward's running
     * gradients, 2 the recomputed layers' intermediates and backward temporaries (and the last decoder layer's),
     * 3 + i kept layer i's intermediates (encoder layers first, then decoder layers), 2 + 2n the kept layers'
     * backward temporaries. A region takes fewer than 100 slots of each kind.
     */
    private static McanKernels.Arena region(Scratch.Lease l, int k) {
        return new McanKernels.Arena(l, 1 + 100 * k, 100 * k);
    }

    /** Every intermediate's size, refused by name before anything is allocated. */
    private void checkSizes(int batch, int lq, int lv) {
        encoder.get(0).checkSizes(batch, lq);
        decoder.get(0).checkSizes(batch, lv, lq);
        questionFlatten.checkSizes(batch, lq);
        imageFlatten.checkSizes(batch, lv);
    }

    /**
     * Which layers' intermediates the backward keeps from the forward (encoder layers 0..n−1, then decoder layers
     * n..2n−1), the rest being recomputed when the backward reaches them: as many as fit in {@code keepLimit} bytes
     * (roughly counted), the decoder's first (they cost the most to recompute) from the second-last down. The last
     * decoder layer needs neither: its intermediates are the forward's last.
     */
    private boolean[] keptLayers(int batch, int lq, int lv) {
        int n = op.layers();
        long h = op.hidden(), f = op.encoder().get(0).ffn(), heads = op.encoder().get(0).heads(), rq = (long) batch * lq, rv = (long) batch * lv;
        long sa = 4 * (rq * (7 * h + f) + heads * batch * (long) lq * lq);
        long ga = 4 * (rv * (11 * h + f) + rq * 2 * h + heads * batch * ((long) lv * lv + (long) lv * lq));
        boolean[] keep = new boolean[2 * n];
        long left = keepLimit;
        for (int i = n - 2; i >= 0; i--) if (ga <= left) { keep[n + i] = true; left -= ga; }
        for (int i = n - 1; i >= 0; i--) if (sa <= left) { keep[i] = true; left -= sa; }
        return keep;
    }

    /** A forward through the layers: x_0..x_n and y_0..y_n (x_0 = q, y_0 = v), and each layer's state (null where not kept) with its arena. */
    private static final class Pass {
        float[][] x, y;
        SelfAttentionUnitCpu.State[] encoder;
        GuidedAttentionUnitCpu.State[] decoder;
        McanKernels.Arena[] encoderArena, decoderArena;
        McanKernels.Mask qm, vm;
        int batch, lq, lv;
    }

    /**
     * The layers. {@code keepInputs}: every x_i and y_i in its own slots (else two alternating buffers per
     * side); {@code keep[k]}: layer k's intermediates in a region of their own (else in region 2, where the
     * last decoder layer's stay valid for the backward).
     */
    private Pass forward(Scratch.Lease l, float[] q, McanKernels.Mask qm, float[] v, McanKernels.Mask vm, int batch, int lq, int lv, boolean keepInputs,
            boolean[] keep) {
        int n = op.layers(), h = op.hidden();
        Pass p = new Pass();
        p.x = new float[n + 1][];
        p.y = new float[n + 1][];
        p.encoder = new SelfAttentionUnitCpu.State[n];
        p.decoder = new GuidedAttentionUnitCpu.State[n];
        p.encoderArena = new McanKernels.Arena[n];
        p.decoderArena = new McanKernels.Arena[n];
        p.qm = qm;
        p.vm = vm;
        p.batch = batch;
        p.lq = lq;
        p.lv = lv;
        p.x[0] = q;
        p.y[0] = v;
        McanKernels.Arena inputs = region(l, 0);
        float[][] xs = new float[keepInputs ? n : 2][], ys = new float[keepInputs ? n : 2][];
        for (int i = 0; i < xs.length; i++) xs[i] = inputs.floats(batch * lq * h);
        for (int i = 0; i < ys.length; i++) ys[i] = inputs.floats(batch * lv * h);
        for (int i = 0; i < n; i++) {
            p.x[i + 1] = xs[keepInputs ? i : i % 2];
            McanKernels.Arena a = region(l, keep[i] ? 3 + i : 2);
            SelfAttentionUnitCpu.State s = encoder.get(i).forward(a, p.x[i], qm, batch, lq, p.x[i + 1]);
            if (keep[i]) p.encoder[i] = s;
        }
        for (int i = 0; i < n; i++) {
            p.y[i + 1] = ys[keepInputs ? i : i % 2];
            boolean own = keep[n + i] && i < n - 1;
            McanKernels.Arena a = region(l, own ? 3 + n + i : 2);
            GuidedAttentionUnitCpu.State s = decoder.get(i).forward(a, p.y[i], vm, p.x[n], qm, batch, lv, lq, p.y[i + 1]);
            if (own) p.decoder[i] = s;
            if (i == n - 1) { // region 2's last occupant stays valid: its backward continues in that arena
                p.decoder[i] = s;
                p.decoderArena[i] = a;
            }
        }
        return p;
    }

    /** The two reductions' states and the final norm's. */
    private record Reduced(Flatten.State question, Flatten.State image, McanKernels.Norm.State norm) {}

    /** {@code sum = flat_q(x_n) + flat_v(y_n)}, {@code out = LN(sum)}. */
    private Reduced reduce(McanKernels.Arena a, Pass p, float[] sum, float[] out) {
        int n = op.layers();
        Flatten.State fq = questionFlatten.forward(runtime, a, p.x[n], p.qm, p.batch, p.lq, sum, false);
        Flatten.State fv = imageFlatten.forward(runtime, a, p.y[n], p.vm, p.batch, p.lv, sum, true);
        return new Reduced(fq, fv, norm.forward(runtime, a, p.batch, sum, out));
    }

    /**
     * mcan-vqa's AttFlat prepared once: {@code r = relu(W1 z + b1)}, logits {@code W2 r + b2} (rows × G), the masked
     * softmax over each sample's rows per glimpse, {@code p_g = Σ_l α_{l,g} z_l} (one GEMM {@code αᵀ z} per sample),
     * {@code out = Wm [p_g]_g + bm}.
     */
    static final class Flatten {
        private final CpuLinear mlpHidden, mlpOut, merge;
        private final int h, m, g, o;

        Flatten(McanEncoderDecoder.Flatten f) {
            mlpHidden = new CpuLinear(f.mlpHidden());
            mlpOut = new CpuLinear(f.mlpOut());
            merge = new CpuLinear(f.merge());
            h = f.mlpHidden().in();
            m = f.mlpHidden().out();
            g = f.glimpses();
            o = f.merge().out();
        }

        void checkSizes(int batch, int l) {
            McanKernels.elements("AttFlat activations", batch, l, m);
            McanKernels.elements("AttFlat pooled glimpses", batch, g, h);
        }

        /** The MLP's activations r (rows × M), the weights α (rows × G) and the pooled glimpses (B × G·H). */
        static final class State {
            float[] r, alpha, pooled;
        }

        State forward(CpuRuntime rt, McanKernels.Arena a, float[] z, McanKernels.Mask mask, int batch, int l, float[] out, boolean accumulate) {
            int rows = batch * l;
            State s = new State();
            s.r = a.floats(rows * m);
            s.alpha = a.floats(rows * g);
            s.pooled = a.floats(batch * g * h);
            float[] r = s.r, alpha = s.alpha, pooled = s.pooled;
            mlpHidden.forward(rt, rows, z, 0, h, r, 0, m, false);
            McanKernels.relu(rt, r, rows * m);
            mlpOut.forward(rt, rows, r, 0, m, alpha, 0, g, false);
            rt.parallelFor(batch, b -> {
                for (int c = 0; c < g; c++) softmaxColumn(alpha, b * l * g + c, l, g, mask, b);
                Sgemm.gemm(rt, true, false, g, h, l, 1f, alpha, b * l * g, g, z, b * l * h, h, 0f, pooled, b * g * h, h);
            });
            merge.forward(rt, batch, pooled, 0, g * h, out, 0, o, accumulate);
            return s;
        }

        /**
         * dz (written) given {@code gOut} (B × O) and a forward's state; the layers' gradients fresh, in state-dict order
         * (mlp.fc.linear, mlp.linear, linear_merge; weight then bias), the logits' bias gradient exact zeros.
         */
        List<float[]> backward(CpuRuntime rt, McanKernels.Arena a, State s, float[] z, McanKernels.Mask mask, int batch, int l, float[] gOut, float[] dz,
                float[] ones) {
            int rows = batch * l;
            float[] dp = a.floats(batch * g * h), da = a.floats(rows * g), dr = a.floats(rows * m);
            float[] alpha = s.alpha, pooled = s.pooled;
            merge.backwardInput(rt, batch, gOut, 0, o, dp, 0, g * h, false);
            LinearGradients gm = McanKernels.parameterGradients(rt, batch, gOut, 0, o, o, pooled, g * h, g * h, true, ones);
            rt.parallelFor(batch, b -> {
                // dα = z dpᵀ (L × G), then the softmax's Jacobian per glimpse; dz = α dp (L × H)
                Sgemm.gemm(rt, false, true, l, g, h, 1f, z, b * l * h, h, dp, b * g * h, h, 0f, da, b * l * g, g);
                for (int c = 0; c < g; c++) softmaxColumnBackward(alpha, da, b * l * g + c, l, g, mask, b);
                Sgemm.gemm(rt, false, false, l, h, g, 1f, alpha, b * l * g, g, dp, b * g * h, h, 0f, dz, b * l * h, h);
            });
            mlpOut.backwardInput(rt, rows, da, 0, g, dr, 0, m, false);
            McanKernels.reluBackward(rt, s.r, dr, rows * m);
            LinearGradients g2 = McanKernels.parameterGradients(rt, rows, da, 0, g, g, s.r, m, m, false, ones);
            LinearGradients g1 = McanKernels.parameterGradients(rt, rows, dr, 0, m, m, z, h, h, true, ones);
            mlpHidden.backwardInput(rt, rows, dr, 0, m, dz, 0, h, true);
            // the logits' bias shifts a glimpse's logits over the rows alike, which the softmax cancels: exactly zero
            return List.of(g1.weight(), g1.bias(), g2.weight(), new float[g], gm.weight(), gm.bias());
        }

        /** The softmax over a sample's l rows of one glimpse (stride G), masked as mcan-vqa's AttFlat: max and sum in double. */
        private static void softmaxColumn(float[] a, int off, int l, int stride, McanKernels.Mask mask, int b) {
            int count = mask.count(b);
            if (count == 0) {
                for (int t = 0; t < l; t++) a[off + t * stride] = (float) (1.0 / l);
                return;
            }
            float mx = Float.NEGATIVE_INFINITY;
            for (int t = 0; t < l; t++) if (mask.real(b, t)) mx = Math.max(mx, a[off + t * stride]);
            double sum = 0;
            for (int t = 0; t < l; t++) {
                float e = mask.real(b, t) ? (float) Math.exp(a[off + t * stride] - mx) : 0f;
                a[off + t * stride] = e;
                sum += e;
            }
            float inv = (float) (1 / sum);
            for (int t = 0; t < l; t++) a[off + t * stride] *= inv;
        }

        /** {@code d ← α (d − Σ α d)} over the column; 0 on padded rows and in a sample without real rows. */
        private static void softmaxColumnBackward(float[] alpha, float[] d, int off, int l, int stride, McanKernels.Mask mask, int b) {
            if (mask.count(b) == 0) {
                for (int t = 0; t < l; t++) d[off + t * stride] = 0f;
                return;
            }
            double dot = 0;
            for (int t = 0; t < l; t++) dot += (double) alpha[off + t * stride] * d[off + t * stride];
            float c = (float) dot;
            for (int t = 0; t < l; t++) d[off + t * stride] = mask.real(b, t) ? alpha[off + t * stride] * (d[off + t * stride] - c) : 0f;
        }
    }
}
