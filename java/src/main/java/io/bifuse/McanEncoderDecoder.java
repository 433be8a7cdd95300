package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * MCAN's encoder-decoder with its attentional reductions and fusion (MILVLG/mcan-vqa's {@code MCA_ED},
 * {@code AttFlat} and {@code proj_norm}, everything of its {@code Net} between the question's LSTM and the image
 * projection on one side and the classifier on the other): an immutable op descriptor.
 * <pre>
 *   x_0 = q (B × Lq × H),  x_i = SA_i(x_{i−1}, qMask)              i = 1..n    the question's encoder ({@link SelfAttentionUnit})
 *   y_0 = v (B × Lv × H),  y_i = GA_i(y_{i−1}, vMask, x_n, qMask)  i = 1..n    the image's decoder, every layer guided by x_n ({@link GuidedAttentionUnit})
 *   flat(z, mask) = W_m [Σ_l α_{l,g} z_l]_{g &lt; G} + b_m,  α_g = softmax over the real rows l of (W_2 relu(W_1 z_l + b_1) + b_2)_g
 *   out = LN(flat_q(x_n, qMask) + flat_v(y_n, vMask))                                B × O
 * </pre>
 * The reductions ({@link Flatten}: mcan-vqa's {@code AttFlat}, an MLP H → M → G with ReLU, padded rows −1e9 before the
 * softmax over the rows, the G glimpses concatenated and merged to O) give a padded row exactly zero weight, and
 * a sample whose rows are all padding the uniform weights mcan-vqa gives it; the final LayerNorm is the op's
 * {@link LayerNorm} over O. Dropout is identity here.
 *
 * <p>Shapes, row-major: {@code q} {@code B × Lq × H}, {@code v} {@code B × Lv × H}, masks {@link ObjectMask}s over
 * their rows (null: none), the output {@code B × O}. MCAN's sizes: n = 6, H = 512, 8 heads, F = 2048, M = 512,
 * G = 1, O = 1024, Lq = 14, Lv = 100.
 *
 * <p>mcan-vqa's state-dict names: {@code backbone.enc_list.i.*} (SA), {@code backbone.dec_list.i.*} (SGA),
 * {@code attflat_lang.*} and {@code attflat_img.*} ({@code mlp.fc.linear}, {@code mlp.linear}, {@code linear_merge}),
 * {@code proj_norm.a_2 / b_2} ({@link #stateDictNames()}).
 *
 * <p>Backends: {@code io.bifuse.cpu.McanEncoderDecoderCpu}, the float64 definition rounded to float, and
 * {@code io.bifuse.cuda.McanEncoderDecoderCuda}. Every layer has a bias, as mcan-vqa's.
 */
public final class McanEncoderDecoder implements Op<McanEncoderDecoder.Backend> {
    /** What every backend offers on host arrays: the forward {@code B × O} and every gradient, written. */
    public interface Backend extends OpBackend {
        float[] forward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int qTokens, int vTokens);
        Gradients backward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, float[] gradOut, int batch, int qTokens, int vTokens);

        /** The descriptor this backend runs. */
        McanEncoderDecoder op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): q (B × Lq × H), v (B × Lv × H) → out (B × O), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView q, ObjectMask qMask, FloatView v, ObjectMask vMask, FloatView out, int batch, int qTokens, int vTokens) {
            FloatView.requireLength("out", out, (long) batch * op().out());
            float[] r = forward(FloatView.input("q", q, (long) batch * qTokens * op().hidden()), qMask, FloatView.input("v", v, (long) batch * vTokens * op().hidden()), vMask, batch, qTokens, vTokens);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** One attentional reduction (mcan-vqa's AttFlat): {@code mlpHidden} M × H, {@code mlpOut} G × M, {@code merge} O × (G·H). */
    public record Flatten(Linear mlpHidden, Linear mlpOut, Linear merge) {
        public Flatten {
            Linear.require("mlpHidden", mlpHidden);
            Linear.require("mlpOut", mlpOut);
            if (mlpOut.in() != mlpHidden.out()) {
                throw new IllegalArgumentException("mlpOut: expected " + mlpHidden.out() + " inputs (mlpHidden's outputs), got a layer " + mlpOut.in() + " → " + mlpOut.out());
            }
            Linear.require("merge", merge);
            if (merge.in() != mlpOut.out() * mlpHidden.in()) {
                throw new IllegalArgumentException("merge: expected " + mlpOut.out() * mlpHidden.in() + " inputs (G·H = " + mlpOut.out() + "·" + mlpHidden.in()
                        + "), got a layer " + merge.in() + " → " + merge.out());
            }
        }

        public int glimpses() { return mlpOut.out(); }
        public List<Linear> layers() { return List.of(mlpHidden, mlpOut, merge); }
    }

    /** Every parameter: n encoder and n decoder layers, the two reductions and the final normalization, validated by name; every layer has a bias. */
    public record Weights(List<SelfAttentionUnit.Weights> encoder, List<GuidedAttentionUnit.Weights> decoder, Flatten questionFlatten,
                          Flatten imageFlatten, LayerNorm.Affine norm) {
        public Weights {
            if (encoder == null || encoder.isEmpty()) throw new IllegalArgumentException("encoder: expected n >= 1 SA layers, got " + (encoder == null ? "null" : "none"));
            if (decoder == null || decoder.size() != encoder.size()) {
                throw new IllegalArgumentException("decoder: expected " + encoder.size() + " GA layers (one per encoder layer), got "
                        + (decoder == null ? "null" : decoder.size()));
            }
            int h = -1;
            for (int i = 0; i < encoder.size(); i++) {
                if (encoder.get(i) == null) throw new IllegalArgumentException("encoder[" + i + "]: expected SelfAttentionUnit.Weights, got null");
                if (decoder.get(i) == null) throw new IllegalArgumentException("decoder[" + i + "]: expected GuidedAttentionUnit.Weights, got null");
                int he = encoder.get(i).attention().query().out(), hd = decoder.get(i).selfAttention().query().out();
                if (h < 0) h = he;
                if (he != h) throw new IllegalArgumentException("encoder[" + i + "]: expected H = " + h + " (encoder[0]'s), got " + he);
                if (hd != h) throw new IllegalArgumentException("decoder[" + i + "]: expected H = " + h + " (encoder[0]'s), got " + hd);
            }
            requireFlatten("questionFlatten", questionFlatten, h);
            requireFlatten("imageFlatten", imageFlatten, h);
            if (imageFlatten.merge().out() != questionFlatten.merge().out()) {
                throw new IllegalArgumentException("imageFlatten: expected " + questionFlatten.merge().out() + " outputs (questionFlatten's O), got "
                        + imageFlatten.merge().out());
            }
            SelfAttentionUnit.requireNorm("norm", norm, questionFlatten.merge().out());
            // mcan-vqa's layers all have biases, and the state-dict names (and the CUDA gradient list) count on them
            for (int i = 0; i < encoder.size(); i++) {
                SelfAttentionUnit.Weights e = encoder.get(i);
                requireBiases("encoder[" + i + "]", List.of(e.attention().query(), e.attention().key(), e.attention().value(), e.attention().merge(),
                        e.ffnHidden(), e.ffnOut()));
                GuidedAttentionUnit.Weights d = decoder.get(i);
                List<Linear> dl = new ArrayList<>(d.selfAttention().layers());
                dl.addAll(d.guidedAttention().layers());
                dl.addAll(List.of(d.ffnHidden(), d.ffnOut()));
                requireBiases("decoder[" + i + "]", dl);
            }
            requireBiases("questionFlatten", questionFlatten.layers());
            requireBiases("imageFlatten", imageFlatten.layers());
            encoder = List.copyOf(encoder);
            decoder = List.copyOf(decoder);
        }

        private static void requireBiases(String name, List<Linear> layers) {
            for (Linear l : layers) {
                if (!l.hasBias()) throw new IllegalArgumentException(name + ": expected every layer with a bias (as mcan-vqa's), got " + l);
            }
        }

        private static void requireFlatten(String name, Flatten f, int h) {
            if (f == null) throw new IllegalArgumentException(name + ": expected a Flatten, got null");
            if (f.mlpHidden().in() != h) throw new IllegalArgumentException(name + ": expected " + h + " inputs (H), got " + f.mlpHidden().in());
        }
    }

    /** The gradients of {@code q}, {@code v} and every parameter, in the order of {@link #gradientNames()}. */
    public record Gradients(float[] dq, float[] dv, List<float[]> parameters) {
        public Gradients { parameters = List.copyOf(parameters); }

        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dq, dv));
            t.addAll(parameters);
            return t;
        }
    }

    private final Weights weights;
    private final List<SelfAttentionUnit> encoder;
    private final List<GuidedAttentionUnit> decoder;
    private final LayerNorm norm;

    private McanEncoderDecoder(Weights weights, List<SelfAttentionUnit> encoder, List<GuidedAttentionUnit> decoder, LayerNorm norm) {
        this.weights = weights;
        this.encoder = encoder;
        this.decoder = decoder;
        this.norm = norm;
    }

    /** The model with these weights, {@code heads} heads in every attention and {@code norm} for every LayerNorm. */
    public static McanEncoderDecoder of(Weights weights, int heads, LayerNorm norm) {
        if (weights == null) throw new IllegalArgumentException("weights: expected McanEncoderDecoder.Weights, got null");
        if (norm != null && norm.variant() == LayerNorm.Variant.MCAN && weights.norm().width() < 2) {
            throw new IllegalArgumentException("norm: the MCAN variant's unbiased std needs O >= 2 outputs, got O = " + weights.norm().width());
        }
        List<SelfAttentionUnit> enc = new ArrayList<>();
        List<GuidedAttentionUnit> dec = new ArrayList<>();
        for (SelfAttentionUnit.Weights w : weights.encoder()) enc.add(SelfAttentionUnit.of(w, heads, norm));
        for (GuidedAttentionUnit.Weights w : weights.decoder()) dec.add(GuidedAttentionUnit.of(w, heads, norm));
        return new McanEncoderDecoder(weights, List.copyOf(enc), List.copyOf(dec), norm);
    }

    /**
     * Random layers ({@link SelfAttentionUnit#random} and {@link GuidedAttentionUnit#random} from {@code seed + 100 i}
     * and {@code seed + 100 i + 50}; the reductions' layers as nn.Linear initializes them; the final norm's gain and bias
     * around 1 and 0).
     */
    public static McanEncoderDecoder random(int layers, int hidden, int heads, int ffn, int flatMlp, int glimpses, int out, LayerNorm norm, long seed) {
        if (layers < 1) throw new IllegalArgumentException("layers: expected >= 1, got " + layers);
        List<SelfAttentionUnit.Weights> enc = new ArrayList<>();
        List<GuidedAttentionUnit.Weights> dec = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            enc.add(SelfAttentionUnit.random(hidden, heads, ffn, norm, seed + 100L * i).weights());
            dec.add(GuidedAttentionUnit.random(hidden, heads, ffn, norm, seed + 100L * i + 50).weights());
        }
        long s = seed + 100L * layers;
        Flatten fq = new Flatten(Linear.random(flatMlp, hidden, true, s), Linear.random(glimpses, flatMlp, true, s + 1), Linear.random(out, glimpses * hidden, true, s + 2));
        Flatten fv = new Flatten(Linear.random(flatMlp, hidden, true, s + 3), Linear.random(glimpses, flatMlp, true, s + 4), Linear.random(out, glimpses * hidden, true, s + 5));
        return of(new Weights(enc, dec, fq, fv, SelfAttentionUnit.randomNorm(new SplittableRandom(s + 6), out)), heads, norm);
    }

    public Weights weights() { return weights; }
    public List<SelfAttentionUnit> encoder() { return encoder; }
    public List<GuidedAttentionUnit> decoder() { return decoder; }
    public LayerNorm norm() { return norm; }
    public int layers() { return encoder.size(); }
    public int hidden() { return encoder.get(0).hidden(); }
    public int out() { return weights.questionFlatten().merge().out(); }

    /** mcan-vqa's names of the parameter tensors, in the order of {@link Gradients#parameters()}. */
    public List<String> stateDictNames() {
        List<String> n = new ArrayList<>();
        for (int i = 0; i < layers(); i++) for (String s : SelfAttentionUnit.STATE_DICT_NAMES) n.add("backbone.enc_list." + i + "." + s);
        for (int i = 0; i < layers(); i++) for (String s : GuidedAttentionUnit.STATE_DICT_NAMES) n.add("backbone.dec_list." + i + "." + s);
        for (String f : List.of("attflat_lang", "attflat_img")) {
            for (String l : List.of("mlp.fc.linear", "mlp.linear", "linear_merge")) n.addAll(List.of(f + "." + l + ".weight", f + "." + l + ".bias"));
        }
        n.addAll(List.of("proj_norm.a_2", "proj_norm.b_2"));
        return n;
    }

    /** {@code dq}, {@code dv}, then {@link #stateDictNames()}. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dq", "dv"));
        n.addAll(stateDictNames());
        return n;
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int qTokens, int vTokens) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (qTokens < 1) throw new IllegalArgumentException("qTokens: expected >= 1, got " + qTokens);
        if (vTokens < 1) throw new IllegalArgumentException("vTokens: expected >= 1, got " + vTokens);
        if ((long) batch * Math.max(qTokens, vTokens) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, qTokens, vTokens: expected batch·tokens <= " + Integer.MAX_VALUE);
        }
        CompactBilinear.checkLength("q", q, batch * qTokens, hidden());
        if (qMask != null) qMask.requireShape("qMask", batch, qTokens);
        CompactBilinear.checkLength("v", v, batch * vTokens, hidden());
        if (vMask != null) vMask.requireShape("vMask", batch, vTokens);
    }

    @Override public String toString() {
        return "McanEncoderDecoder[n=" + layers() + ", H=" + hidden() + ", heads=" + encoder.get(0).heads() + ", F=" + encoder.get(0).ffn() + ", O=" + out() + "]";
    }
}
