package io.bifuse.cuda;

import io.bifuse.HierarchicalAttention;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link HierarchicalAttention} on one GPU: per level one cuBLAS GEMM in the op's {@link Precision} and one
 * fused kernel of {@code cuda/HierarchicalAttention.cu}.
 *
 * <p>Forward, level by level ({@code N_ℓ} items in {@code G_ℓ} groups, attention width {@code k_ℓ}):
 * the GEMM {@code x_ℓ·W_ℓᵀ} → {@code N_ℓ × k_ℓ} over all the level's items at once, then
 * {@code han_level}, one block per group walking the group's items by its offsets (no padding): the
 * tanh, the logits (only the {@code N_ℓ} logits are written, never the hidden units), the group's
 * softmax, the attention weights and the pooled vector, which is the next level's item.
 *
 * <p>Backward recomputes all of that from {@code x} (nothing is saved between calls: the op is
 * stateless, as {@link StackedAttentionCuda}), then per level from the last: {@code han_level_backward}
 * (dα, the softmax Jacobian, dp written over the level's projection in place, per group the rows of
 * {@code dc}, and {@code dx = α g}); the GEMM {@code dx += dp·W} (beta 1); the weight gradient
 * {@code dW = dpᵀ x} (one GEMM) and the bias and context-vector gradients (fixed-order column sums).
 * The logits bias's gradient is exactly zero (softmax invariance) and written as exact zeros (a memset),
 * as {@link io.bifuse.reference.HierarchicalAttentionReference} returns it. No atomics: reruns give the
 * same bits.
 *
 * <p>Device forms take the groups as {@code items} ({@code N_0}), {@code groups} ({@code G_ℓ} per level,
 * on the host: they size the launches) and {@code offsets} on the device: every level's
 * {@code G_ℓ + 1} int32 offsets concatenated, level {@code ℓ}'s from {@code Σ_{m<ℓ} (G_m + 1)}
 * ({@link HierarchicalAttention#flatOffsets}). The kernels trust their contents (as cuDNN trusts its
 * device sequence lengths): they must be what {@link HierarchicalAttention#groupCounts} accepts. The
 * host conveniences check the host offsets and upload them. The attention weights, when asked for, are
 * one buffer of {@code Σ_ℓ N_ℓ} floats, level {@code ℓ}'s from {@code Σ_{m<ℓ} N_m}.
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, N_0, G_0 … G_{L−1})
 * and kept (the {@value #MAX_WORKSPACES} most recently used): about {@code 4 Σ_ℓ (N_ℓ k_ℓ + 2 N_ℓ + G_ℓ d)}
 * bytes, plus {@code 4 Σ_ℓ (N_ℓ + G_ℓ k_ℓ + G_ℓ d)} on first backward. Calls on one stream are serialized
 * on its workspace; calls on different streams run concurrently. Every argument is checked before
 * anything is queued. Calls are asynchronous with respect to the host, except the {@code float[]}
 * conveniences.
 */
public final class HierarchicalAttentionCuda extends CudaOp<HierarchicalAttention> implements HierarchicalAttention.Backend {
    // One by-value struct parameter each (HierarchicalAttention.cu's HanLevelParams, HanLevelBackwardParams); the launches pass its fields flat, in order.
    public static final KernelSpec LEVEL = new KernelSpec("han_level", "{pppppppppiii}", "p bias wc bc x offsets logits alpha pooled groups d k");
    public static final KernelSpec LEVEL_BACKWARD = new KernelSpec("han_level_backward", "{ppppppppppiii}",
            "p bias wc x offsets alpha g dx da tw groups d k");
    static final List<KernelSpec> KERNELS = List.of(LEVEL, LEVEL_BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256; // HAN_BLOCK

    /**
     * Where {@link #backward} writes: {@code dx} ({@code N_0 × d}) and per level the projection's and the
     * logits layer's {@link MlbAttentionCuda.LayerBuffers}, as {@link HierarchicalAttention.Gradients}.
     */
    public record GradientBuffers(DeviceMemory dx, List<LevelBuffers> levels) {
        public GradientBuffers { levels = levels == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(levels)); }
    }

    /** One level's gradient buffers. */
    public record LevelBuffers(MlbAttentionCuda.LayerBuffers projection, MlbAttentionCuda.LayerBuffers logits) {}

    private final int d, levels;
    private final int[] widths;
    private final List<DeviceBuffer> projWeight = new ArrayList<>(), projBias = new ArrayList<>(), logitsWeight = new ArrayList<>(),
            logitsBias = new ArrayList<>();
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("HierarchicalAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public HierarchicalAttentionCuda(HierarchicalAttention op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept the
     * documented error of the reduced modes). Uploads the weights once; close it to free them and its
     * workspaces.
     */
    public HierarchicalAttentionCuda(HierarchicalAttention op, CudaContext context, Precision precision) {
        super("a HierarchicalAttention", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        d = op.dim();
        levels = op.levels();
        widths = new int[levels];
        try {
            for (int l = 0; l < levels; l++) {
                HierarchicalAttention.Level x = op.weights().levels().get(l);
                widths[l] = x.projection().out();
                projWeight.add(own(DeviceBuffer.of(context, x.projection().weight())));
                projBias.add(own(DeviceBuffer.of(context, x.projection().biasOrZeros())));
                logitsWeight.add(own(DeviceBuffer.of(context, x.logits().weight())));
                logitsBias.add(own(DeviceBuffer.of(context, x.logits().biasOrZeros())));
            }
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /**
     * The tensors {@link #loadWeights} takes, in the order of the op's gradient names without {@code dx}:
     * per level {@code levels[l].projection, .logits}, each {@code .weight} then {@code .bias} (a bias
     * only where that layer has one).
     */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device, each in its layer's
     * {@code nn.Linear} layout (see {@link DeviceWeights}): one device-to-device copy each, queued on
     * {@code stream}; every tensor is checked by name first. Work queued on other streams that uses this
     * op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        for (int l = 0; l < levels; l++) {
            HierarchicalAttention.Level x = op.weights().levels().get(l);
            String n = "levels[" + l + "]";
            DeviceWeights.add(e, n + ".projection", x.projection(), projWeight.get(l), projBias.get(l));
            DeviceWeights.add(e, n + ".logits", x.logits(), logitsWeight.get(l), logitsBias.get(l));
        }
        return e;
    }

    /**
     * {@code out (G_{L−1} × d) = op(x (N_0 × d))} with the groups of {@code offsets} (see the class
     * comment), and every level's attention weights into {@code attention} ({@code Σ_ℓ N_ℓ}) unless it is
     * null; queued on {@code stream}.
     */
    public void forward(DeviceMemory x, DeviceMemory offsets, DeviceMemory out, DeviceMemory attention, int items, int[] groups, CudaStream stream) {
        Sizes z = sizes(items, groups);
        DeviceArgs.memory("x", x, items, d);
        checkOffsets(offsets, z.offsetCount);
        DeviceArgs.memory("out", out, z.g[levels - 1], d);
        if (attention != null) DeviceArgs.memory("attention", attention, 1, z.itemCount);
        DeviceArgs.stream(stream);
        inWorkspace(stream, z, w -> attend(w, x, offsets, out, attention == null ? w.alpha : attention, stream));
    }

    /** Every level: its GEMM and {@code han_level}; level {@code l}'s pooled vectors to slot {@code l} of {@code w.pooled}, the last to {@code out}. */
    private void attend(Workspace w, DeviceMemory x, DeviceMemory offsets, DeviceMemory out, DeviceMemory alpha, CudaStream stream) {
        Sizes z = w.z;
        for (int l = 0; l < levels; l++) {
            DeviceMemory in = l == 0 ? x : w.pooled(l - 1), pooled = l == levels - 1 ? out : w.pooled(l), p = w.p(l);
            int k = widths[l];
            w.blas.gemm(precision, false, true, z.n[l], k, d, 1f, in, d, projWeight.get(l), d, 0f, p, k);
            context.launch(LEVEL, DeviceArgs.rowGrid(z.g[l]), 1, BLOCK, 0, stream, p, projBias.get(l), logitsWeight.get(l), logitsBias.get(l), in,
                    ints(offsets, z.offsetAt[l]), floats(w.logits, z.itemAt[l]), floats(alpha, z.itemAt[l]), pooled, z.g[l], d, k);
        }
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂out (G_{L−1} × d)} and the forward's inputs,
     * queued on {@code stream}. Gradients are written, not accumulated; {@code gradOut} is only read.
     */
    public void backward(DeviceMemory x, DeviceMemory offsets, DeviceMemory gradOut, GradientBuffers grads, int items, int[] groups, CudaStream stream) {
        Sizes z = sizes(items, groups);
        DeviceArgs.memory("x", x, items, d);
        checkOffsets(offsets, z.offsetCount);
        DeviceArgs.memory("gradOut", gradOut, z.g[levels - 1], d);
        checkGradients(grads, items);
        DeviceArgs.stream(stream);
        inWorkspace(stream, z, w -> {
            w.ensureBackward();
            CublasHandle blas = w.blas;
            Precision pr = precision;
            // The recomputed forward's output goes to the last slot of w.pooled, which nothing else uses.
            attend(w, x, offsets, w.pooled(levels - 1), w.alpha, stream);
            for (int l = levels - 1; l >= 0; l--) {
                int k = widths[l], n = z.n[l];
                DeviceMemory in = l == 0 ? x : w.pooled(l - 1), g = l == levels - 1 ? gradOut : w.g(l), dx = l == 0 ? grads.dx() : w.g(l - 1);
                DeviceMemory p = w.p(l), tw = w.tw(l);
                context.launch(LEVEL_BACKWARD, DeviceArgs.rowGrid(z.g[l]), 1, BLOCK, 0, stream, p, projBias.get(l), logitsWeight.get(l), in,
                        ints(offsets, z.offsetAt[l]), floats(w.alpha, z.itemAt[l]), g, dx, floats(w.das, z.itemAt[l]), tw, z.g[l], d, k);
                // p now holds dp, the projection's pre-activation gradient
                blas.gemm(pr, false, false, n, d, k, 1f, p, k, projWeight.get(l), d, 1f, dx, d);
                LevelBuffers lb = grads.levels().get(l);
                blas.gemm(pr, true, false, k, d, n, 1f, p, k, in, d, 0f, lb.projection().weight(), d);
                if (lb.projection().bias() != null) LinearCuda.biasGradient(context, DeviceMatrix.of("dp", p, n, k), lb.projection().bias(), stream);
                LinearCuda.biasGradient(context, DeviceMatrix.of("tw", tw, z.g[l], k), lb.logits().weight(), stream);
                // b_c shifts every logit of a group alike: its gradient cancels exactly (see HierarchicalAttention), written as exact zeros.
                if (lb.logits().bias() != null) DeviceBuffer.fillAsync(lb.logits().bias(), 0f, 1, stream);
            }
        });
    }

    /** Host convenience: copies in, runs on a private stream, copies out. */
    @Override public float[] forward(float[] x, int items, int[][] offsets) {
        return forwardWithAttention(x, items, offsets).out();
    }

    /**
     * Host convenience: the output and every level's attention weights, on a private stream of this op's
     * (kept, with its buffers, for the next call).
     */
    @Override public HierarchicalAttention.Result forwardWithAttention(float[] x, int items, int[][] offsets) {
        int[] groups = op.checkInputs(x, items, offsets);
        Sizes z = sizes(items, groups);
        int[] flat = HierarchicalAttention.flatOffsets(offsets);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), off = lane.in(flat);
            DeviceMemory out = lane.floats((long) groups[levels - 1] * d), att = lane.floats(z.itemCount);
            forward(dx, off, out, att, items, groups, lane.stream());
            float[] all = lane.read(att);
            List<float[]> perLevel = new ArrayList<>();
            for (int l = 0; l < levels; l++) perLevel.add(java.util.Arrays.copyOfRange(all, (int) z.itemAt[l], (int) z.itemAt[l] + z.n[l]));
            return new HierarchicalAttention.Result(lane.read(out), perLevel);
        });
    }

    /** Host convenience: as {@link #forwardWithAttention}. */
    @Override public HierarchicalAttention.Gradients backward(float[] x, float[] gradOut, int items, int[][] offsets) {
        int[] groups = op.checkInputs(x, gradOut, items, offsets);
        int[] flat = HierarchicalAttention.flatOffsets(offsets);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), off = lane.in(flat), dg = lane.in(gradOut);
            OwnedGradients grads = new OwnedGradients(items, lane::floats); // the lane's buffers: nothing to close
            backward(dx, off, dg, grads.buffers(), items, groups, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a call on {@code items} input rows, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int items) {
        if (items < 1) throw new IllegalArgumentException("items: expected >= 1, got " + items);
        return new OwnedGradients(items, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, HierarchicalAttention.Gradients> {
        private OwnedGradients(int items, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            layOut(() -> {
                DeviceMemory gx = floats((long) items * d);
                List<LevelBuffers> ls = new ArrayList<>();
                for (HierarchicalAttention.Level l : op.weights().levels()) ls.add(new LevelBuffers(layer(l.projection()), layer(l.logits())));
                return new GradientBuffers(gx, ls);
            });
        }

        @Override public HierarchicalAttention.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            List<HierarchicalAttention.LevelGradients> ls = new ArrayList<>();
            for (LevelBuffers l : b.levels()) ls.add(new HierarchicalAttention.LevelGradients(read(l.projection(), stream), read(l.logits(), stream)));
            return new HierarchicalAttention.Gradients(read(b.dx(), stream), ls);
        }
    }

    private static DeviceMemory floats(DeviceMemory m, long offsetFloats) { return DeviceArgs.from(m, offsetFloats); }

    /** int32 entries are 4 bytes, as floats: the same slicing. */
    private static DeviceMemory ints(DeviceMemory m, long offsetInts) { return DeviceArgs.from(m, offsetInts); }

    /** The call's sizes per level, checked by name: {@code items >= 1}, {@code groups} one count {@code >= 1} per level. */
    private Sizes sizes(int items, int[] groups) {
        if (items < 1) throw new IllegalArgumentException("items: expected >= 1, got " + items);
        if (groups == null) throw new IllegalArgumentException("groups: expected " + levels + " group counts (one per level), got null");
        if (groups.length != levels) throw new IllegalArgumentException("groups: expected " + levels + " group counts (one per level), got " + groups.length);
        for (int l = 0; l < levels; l++) {
            if (groups[l] < 1) throw new IllegalArgumentException("groups[" + l + "]: expected >= 1, got " + groups[l]);
        }
        return new Sizes(items, groups.clone());
    }

    /** {@code offsets}: at least {@code count} int32, open and 4-byte aligned. */
    private static void checkOffsets(DeviceMemory offsets, long count) {
        if (offsets == null) throw new IllegalArgumentException("offsets: expected device memory for " + count + " int32 group offsets, got null");
        if (!offsets.isOpen()) throw new IllegalArgumentException("offsets: the device buffer is closed");
        if (offsets.byteSize() < 4 * count) {
            throw new IllegalArgumentException("offsets: expected at least " + count + " int32 group offsets (" + 4 * count + " bytes), got "
                    + offsets.byteSize() + " bytes");
        }
        if (offsets.address() % 4 != 0) throw new IllegalArgumentException("offsets: expected a 4-byte aligned address, got 0x" + Long.toHexString(offsets.address()));
    }

    private void checkGradients(GradientBuffers grads, int items) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), items, d);
        if (grads.levels() == null || grads.levels().size() != levels) {
            throw new IllegalArgumentException("grads.levels: expected " + levels + " levels' buffers, got "
                    + (grads.levels() == null ? "null" : grads.levels().size()));
        }
        for (int l = 0; l < levels; l++) {
            String n = "grads.levels[" + l + "]";
            LevelBuffers b = grads.levels().get(l);
            if (b == null) throw new IllegalArgumentException(n + ": expected LevelBuffers, got null");
            HierarchicalAttention.Level x = op.weights().levels().get(l);
            MlbAttentionCuda.checkLayer(n + ".projection", b.projection(), x.projection());
            MlbAttentionCuda.checkLayer(n + ".logits", b.logits(), x.logits());
        }
    }

    /** Runs {@code body} in this op's workspace for (stream, sizes): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, Sizes z, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(z.items, List.of(java.util.Arrays.stream(z.g).boxed().toArray(Integer[]::new))), s -> new Workspace(s, z), body);
    }

    private record Shape(int items, List<Integer> groups) {}

    /** Per level: items {@code n}, groups {@code g}, and where its items, offsets, projections and pooled rows start in the concatenated buffers. */
    private final class Sizes {
        final int items;
        final int[] n, g;
        final long[] itemAt, offsetAt, pAt, pooledAt, twAt;
        final long itemCount, offsetCount, pCount, pooledCount, twCount;

        Sizes(int items, int[] groups) {
            this.items = items;
            g = groups;
            n = new int[levels];
            itemAt = new long[levels];
            offsetAt = new long[levels];
            pAt = new long[levels];
            pooledAt = new long[levels];
            twAt = new long[levels];
            long ic = 0, oc = 0, pc = 0, qc = 0, tc = 0;
            for (int l = 0; l < levels; l++) {
                n[l] = l == 0 ? items : g[l - 1];
                itemAt[l] = ic;
                offsetAt[l] = oc;
                pAt[l] = pc;
                pooledAt[l] = qc;
                twAt[l] = tc;
                ic += n[l];
                oc += g[l] + 1L;
                pc += (long) n[l] * widths[l];
                qc += (long) g[l] * d;
                tc += (long) g[l] * widths[l];
            }
            itemCount = ic;
            offsetCount = oc;
            pCount = pc;
            pooledCount = qc;
            twCount = tc;
        }
    }

    /** Buffers and the cuBLAS handle for one (stream, sizes). */
    private final class Workspace extends Workspaces.Workspace {
        final Sizes z;
        final CublasHandle blas;
        /** p: every level's N_ℓ × k_ℓ; logits, alpha: Σ N_ℓ; pooled: every level's G_ℓ × d (the last slot: the recomputed output). */
        final DeviceBuffer p, logits, alpha, pooled;
        DeviceBuffer gs, das, tws; // made on first backward: gs slot ℓ is dL/d(level ℓ's pooled), G_ℓ × d; da Σ N_ℓ; tw every level's G_ℓ × k_ℓ

        Workspace(CudaStream stream, Sizes z) {
            super(HierarchicalAttentionCuda.this.context, stream);
            this.z = z;
            try {
                blas = own(new CublasHandle(context, stream));
                p = alloc(z.pCount);
                logits = alloc(z.itemCount);
                alpha = alloc(z.itemCount);
                pooled = alloc(z.pooledCount);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (gs != null) return;
            gs = alloc(z.pooledCount);
            das = alloc(z.itemCount);
            tws = alloc(z.twCount);
        }

        DeviceMemory p(int l) { return slice(p, z.pAt[l], (long) z.n[l] * widths[l]); }
        DeviceMemory pooled(int l) { return slice(pooled, z.pooledAt[l], (long) z.g[l] * d); }
        DeviceMemory g(int l) { return slice(gs, z.pooledAt[l], (long) z.g[l] * d); }
        DeviceMemory tw(int l) { return slice(tws, z.twAt[l], (long) z.g[l] * widths[l]); }

        private DeviceMemory slice(DeviceBuffer b, long atFloats, long floats) { return b.slice(4L * atFloats, 4L * floats); }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
