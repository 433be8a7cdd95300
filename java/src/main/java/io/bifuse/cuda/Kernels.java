package io.bifuse.cuda;

import io.bifuse.Operators;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.List;
import java.util.stream.Stream;

/** The embedded kernels: the fatbin and PTX resources, and the catalog of every kernel Java launches. */
public final class Kernels {
    private Kernels() {}

    static final String FATBIN = "/io/bifuse/cuda/bifuse.fatbin";
    static final String PTX = "/io/bifuse/cuda/bifuse.ptx";

    /**
     * Every kernel any op launches: each operator's ({@link Operators#all()} and
     * {@link Operators#incomplete()}: the static {@code KERNELS} of {@code io.bifuse.cuda.XCuda}, found by
     * the operator's name) and the shared layers' ({@link LinearCuda}, {@link NormalizationCuda}). {@link CudaContext#launch} refuses kernels not listed here, so a
     * kernel the PTX test has not seen cannot run.
     */
    public static List<KernelSpec> all() { return Catalog.ALL; }

    private static final class Catalog {
        static final List<KernelSpec> ALL = Stream.concat(Stream.concat(Operators.all().stream(), Operators.incomplete().stream()).map(Kernels::declaredBy),
                Stream.of(LinearCuda.KERNELS, NormalizationCuda.KERNELS)).flatMap(List::stream).toList();
    }

    /** The {@code KERNELS} of the operator's CUDA class. */
    @SuppressWarnings("unchecked")
    private static List<KernelSpec> declaredBy(Class<?> op) {
        String name = Kernels.class.getPackageName() + "." + op.getSimpleName() + "Cuda";
        try {
            Field f = Class.forName(name, false, Kernels.class.getClassLoader()).getDeclaredField("KERNELS");
            if (!Modifier.isStatic(f.getModifiers()) || !List.class.isAssignableFrom(f.getType())) {
                throw new IllegalStateException(name + ".KERNELS: expected a static List<KernelSpec>");
            }
            List<?> kernels = (List<?>) f.get(null);
            for (Object k : kernels) {
                if (!(k instanceof KernelSpec)) throw new IllegalStateException(name + ".KERNELS: expected KernelSpecs, got " + k);
            }
            return (List<KernelSpec>) kernels;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(op.getSimpleName() + ": expected " + name + " with a static List<KernelSpec> KERNELS: " + e, e);
        }
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
