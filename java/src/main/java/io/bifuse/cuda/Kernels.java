package io.bifuse.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.stream.Stream;

/** The embedded kernels: the fatbin and PTX resources, and the catalog of every kernel Java launches. */
public final class Kernels {
    private Kernels() {}

    static final String FATBIN = "/io/bifuse/cuda/bifuse.fatbin";
    static final String PTX = "/io/bifuse/cuda/bifuse.ptx";

    /** Every kernel any op launches; {@link CudaContext#launch} refuses kernels not listed here. */
    public static List<KernelSpec> all() {
        return Stream.of(CompactBilinearCuda.KERNELS, LinearCuda.KERNELS, MlbCuda.KERNELS, MfbCuda.KERNELS, MlbAttentionCuda.KERNELS, FullBilinearCuda.KERNELS,
                        BanAttentionCuda.KERNELS, BanPoolingCuda.KERNELS, BanBlockCuda.KERNELS)
                .flatMap(List::stream).toList();
    }

    /**
     * The fatbin bytes, or null when the jar was built without nvcc. On the simulated device without a
     * fatbin, the simulator's own module image (the names of the kernels it compiled for the host).
     */
    public static byte[] fatbin() {
        byte[] f = resource(FATBIN);
        if (f == null && SimulatedDevice.requested() && SimulatedDevice.load() == null) f = SimulatedDevice.moduleImage();
        return f;
    }

    /** The fatbin nvcc built into this jar, or null: never the simulator's stand-in image. */
    static byte[] builtFatbin() { return resource(FATBIN); }

    /** The PTX text (same sources, same flags as the fatbin), or null when built without nvcc. */
    public static String ptx() {
        byte[] b = resource(PTX);
        return b == null ? null : new String(b, java.nio.charset.StandardCharsets.US_ASCII);
    }

    private static byte[] resource(String path) {
        try (InputStream in = Kernels.class.getResourceAsStream(path)) {
            return in == null ? null : in.readAllBytes();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("reading " + path, e);
        }
    }
}
