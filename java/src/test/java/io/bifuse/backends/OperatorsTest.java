package io.bifuse.backends;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Op;
import io.bifuse.Operators;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The one registration holds: {@link Operators#all()} lists exactly the descriptors that exist, and
 * every listed operator X has each part that the rest of the project finds by X's name (see
 * {@link Op}): its backends with the constructors the facade calls, its kernels, its reference, its
 * tests, its kernel source, its tools suite and its PyTorch peer. A part missing or misnamed fails
 * here by name instead of as a class-not-found in the tools or a peer that never runs.
 */
class OperatorsTest {
    /** The repository root, from the library module's directory where Maven runs the tests. */
    private static Path root() {
        Path root = Path.of("..").toAbsolutePath().normalize();
        assumeTrue(Files.isDirectory(root.resolve("cuda")) && Files.isDirectory(root.resolve("tools")),
                () -> "not in the source tree (" + root + "): the file checks need it");
        return root;
    }

    @Test void theListIsEveryDescriptorThereIs() throws IOException {
        Path classes = Path.of("target/classes/io/bifuse");
        assumeTrue(Files.isDirectory(classes), () -> "no compiled classes here (" + classes.toAbsolutePath() + ")");
        TreeSet<String> found = new TreeSet<>();
        try (Stream<Path> files = Files.list(classes)) {
            for (Path f : files.toList()) {
                String n = f.getFileName().toString();
                if (!n.endsWith(".class") || n.contains("$") || n.equals("module-info.class")) continue;
                Class<?> c = forName("io.bifuse." + n.substring(0, n.length() - ".class".length()));
                if (Op.class.isAssignableFrom(c) && !c.isInterface()) found.add(c.getSimpleName());
            }
        }
        TreeSet<String> listed = new TreeSet<>(Operators.names());
        for (Class<? extends Op<?>> op : Operators.incomplete()) {
            assertTrue(listed.add(op.getSimpleName()), op.getSimpleName() + ": in both Operators.all() and Operators.incomplete()");
            // an incomplete operator still has its reference and CPU backend
            forName("io.bifuse.reference." + op.getSimpleName() + "Reference");
            assertTrue(backendType(op).isAssignableFrom(forName("io.bifuse.cpu." + op.getSimpleName() + "Cpu")), op.getSimpleName() + "Cpu implements its Backend");
        }
        assertEquals(found, listed, "the Op descriptors in io.bifuse vs Operators.all() and Operators.incomplete()");
        assertEquals(Operators.names().size(), new TreeSet<>(Operators.names()).size(), "an operator listed twice");
    }

    @Test void everyOperatorHasItsBackendsKernelsReferenceAndTests() throws Exception {
        for (Class<? extends Op<?>> op : Operators.all()) {
            String x = op.getSimpleName();
            assertTrue(Modifier.isFinal(op.getModifiers()), x + ": a descriptor is final (immutable)");
            Class<?> backend = backendType(op);
            Class<?> cpu = forName("io.bifuse.cpu." + x + "Cpu"), cuda = forName("io.bifuse.cuda." + x + "Cuda");
            assertTrue(backend.isAssignableFrom(cpu), x + "Cpu implements " + backend.getName());
            assertTrue(backend.isAssignableFrom(cuda), x + "Cuda implements " + backend.getName());
            cpu.getConstructor(op);
            cuda.getConstructor(op, CudaContext.class);
            assertTrue(CudaOp.class.isAssignableFrom(cuda), x + "Cuda extends CudaOp");
            Field kernels = cuda.getDeclaredField("KERNELS");
            assertTrue(Modifier.isStatic(kernels.getModifiers()) && List.class.isAssignableFrom(kernels.getType()), x + "Cuda.KERNELS: a static list");
            forName("io.bifuse.reference." + x + "Reference");
            for (String test : List.of("io.bifuse." + x + "Test", "io.bifuse.cuda." + x + "CudaTest", "io.bifuse.reference." + x + "ReferenceTest")) {
                forName(test);
            }
        }
    }

    @Test void everyOperatorHasItsKernelSourceSuiteAndPeer() throws IOException {
        Path root = root();
        for (String x : Operators.names()) {
            for (Path f : List.of(root.resolve("tools/src/main/java/io/bifuse/tools/" + x + "Suite.java"), root.resolve("benchmarks/python/" + snake(x) + "_peer.py"))) {
                assertTrue(Files.isRegularFile(f), "operator " + x + ": expected " + root.relativize(f));
            }
            // Its kernels' source, unless its CUDA backend launches none of its own (MUTAN runs BLOCK's, Tucker BlockTucker's).
            boolean ownKernels = !kernelsOf(x).isEmpty();
            assertEquals(ownKernels, Files.isRegularFile(root.resolve("cuda/" + x + ".cu")),
                    "operator " + x + ": cuda/" + x + ".cu expected exactly when " + x + "Cuda.KERNELS is not empty");
        }
        TreeSet<String> peers = new TreeSet<>();
        try (Stream<Path> files = Files.list(root.resolve("benchmarks/python"))) {
            files.map(f -> f.getFileName().toString()).filter(n -> n.endsWith("_peer.py")).forEach(n -> peers.add(n.substring(0, n.length() - 8)));
        }
        assertEquals(new TreeSet<>(Operators.names().stream().map(OperatorsTest::snake).toList()), peers,
                "benchmarks/python/*_peer.py (peers.py runs every one) vs the operators");
    }

    /** {@code XCuda.KERNELS}. */
    private static List<?> kernelsOf(String x) {
        try {
            Field f = forName("io.bifuse.cuda." + x + "Cuda").getDeclaredField("KERNELS");
            f.setAccessible(true);
            return (List<?>) f.get(null);
        } catch (ReflectiveOperationException e) {
            return fail(x + "Cuda.KERNELS: " + e);
        }
    }

    /** {@code MlbAttention} -> {@code mlb_attention}: the peers' file names. */
    static String snake(String camel) { return camel.replaceAll("(?<=[a-z0-9])(?=[A-Z])", "_").toLowerCase(java.util.Locale.ROOT); }

    /** B of {@code X implements Op<B>}. */
    private static Class<?> backendType(Class<?> op) {
        for (Type t : op.getGenericInterfaces()) {
            if (t instanceof ParameterizedType p && p.getRawType() == Op.class && p.getActualTypeArguments()[0] instanceof Class<?> b) return b;
        }
        return fail(op.getSimpleName() + ": expected to implement Op<" + op.getSimpleName() + ".Backend> directly");
    }

    private static Class<?> forName(String name) {
        try {
            return Class.forName(name);
        } catch (ClassNotFoundException e) {
            return fail("expected class " + name + " (an operator's part, found by the operator's name)");
        }
    }
}
