package io.bifuse;

import java.util.List;

/**
 * Every operator of the library: the one registration a new operator makes. The CUDA kernel catalog,
 * the backend facade, the tools' check and bench, the JMH benchmarks and the PyTorch peers' runner all
 * derive their lists from this one (each part found by the operator's name, as {@link Op} describes).
 */
public final class Operators {
    private Operators() {}

    private static final List<Class<? extends Op<?>>> ALL = List.of(CompactBilinear.class, McbAttention.class, Mlb.class, Mfb.class, MlbAttention.class,
            FullBilinear.class, BanAttention.class, BanPooling.class, BanBlock.class, MultiHeadAttention.class,
            SelfAttentionUnit.class, GuidedAttentionUnit.class, McanEncoderDecoder.class, StackedAttention.class,
            HierarchicalAttention.class, Mutan.class, Block.class, Tucker.class, BlockTucker.class, LinearSum.class, ConcatMlp.class);

    /**
     * Descriptors that exist with their float64 reference and CPU backend but not yet every other part
     * ({@link #all()}'s operators each have a CUDA backend, kernels, a check and bench suite and a PyTorch
     * peer): the tools and the device testbed do not walk them. None today.
     */
    private static final List<Class<? extends Op<?>>> INCOMPLETE = List.of();

    /** See {@link #INCOMPLETE}: operators on their way into {@link #all()}. */
    public static List<Class<? extends Op<?>>> incomplete() { return INCOMPLETE; }

    /** The operators' descriptor classes, in the order the tools report them. */
    public static List<Class<? extends Op<?>>> all() { return ALL; }

    /** The operators' names (their descriptors' simple names), in {@link #all()}'s order. */
    public static List<String> names() { return ALL.stream().map(Class::getSimpleName).toList(); }
}
