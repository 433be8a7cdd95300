package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.lang.module.Configuration;
import java.lang.module.ModuleDescriptor;
import java.lang.module.ModuleFinder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The library as a module, as a module-path user gets it (the other tests run on the class path,
 * where {@code module-info} is ignored): it exports exactly the API packages, holds nothing else (no
 * tools, no test support), resolves against JCuda's jar, and works from its own layer: an op computes
 * the class path's bits, and the kernels resource loads from inside the module.
 */
class ModuleTest {
    static final Set<String> API = Set.of("io.bifuse", "io.bifuse.backends", "io.bifuse.cpu", "io.bifuse.cuda", "io.bifuse.reference");

    private static Path classes() {
        Path p = Path.of("target/classes");
        assumeTrue(Files.isRegularFile(p.resolve("module-info.class")), "no compiled module here (" + p.toAbsolutePath() + ")");
        return p;
    }

    private static ModuleDescriptor descriptor() throws Exception {
        try (var in = Files.newInputStream(classes().resolve("module-info.class"))) {
            return ModuleDescriptor.read(in, () -> packagesUnder(classes()));
        }
    }

    private static Set<String> packagesUnder(Path root) {
        try (var files = Files.walk(root)) {
            return files.filter(f -> f.toString().endsWith(".class") && !f.getFileName().toString().equals("module-info.class"))
                    .map(f -> root.relativize(f.getParent()).toString().replace(File.separatorChar, '.'))
                    .collect(Collectors.toCollection(TreeSet::new));
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test void exportsTheApiAndHoldsNothingElse() throws Exception {
        ModuleDescriptor d = descriptor();
        assertEquals("io.bifuse", d.name());
        Set<String> exported = d.exports().stream().peek(e -> assertFalse(e.isQualified(), "qualified export " + e))
                .map(ModuleDescriptor.Exports::source).collect(Collectors.toCollection(TreeSet::new));
        assertEquals(new TreeSet<>(API), exported, "exports");
        // Every package of the module is one of them: tools and test support live in other jars.
        assertEquals(new TreeSet<>(API), new TreeSet<>(packagesUnder(classes())), "the packages of target/classes");
        assertTrue(d.requires().stream().anyMatch(r -> r.name().equals("jcuda")), "requires jcuda: " + d.requires());
        assertTrue(d.opens().isEmpty() && !d.isOpen(), "nothing opened for reflection");
    }

    @Test void runsFromItsOwnLayer() throws Exception {
        Path[] jcuda = Arrays.stream(System.getProperty("java.class.path").split(File.pathSeparator))
                .filter(e -> Path.of(e).getFileName().toString().startsWith("jcuda")).map(Path::of).toArray(Path[]::new);
        assumeTrue(jcuda.length > 0, "JCuda's jar is not on this class path");
        Path[] roots = new Path[jcuda.length + 1];
        roots[0] = classes();
        System.arraycopy(jcuda, 0, roots, 1, jcuda.length);
        ModuleLayer boot = ModuleLayer.boot();
        Configuration cf = boot.configuration().resolve(ModuleFinder.of(roots), ModuleFinder.of(), Set.of("io.bifuse"));
        ModuleLayer layer = boot.defineModulesWithOneLoader(cf, ClassLoader.getPlatformClassLoader());
        assertEquals(Set.of("jcuda"), layer.findModule("io.bifuse").orElseThrow().getDescriptor().requires().stream()
                .map(ModuleDescriptor.Requires::name).filter(n -> !n.startsWith("java.")).collect(Collectors.toSet()));

        ClassLoader loader = layer.findLoader("io.bifuse");
        Class<?> mlb = loader.loadClass("io.bifuse.Mlb");
        assertNotSame(Mlb.class, mlb, "the layer loads its own copy");
        Class<?> activation = loader.loadClass("io.bifuse.Activation");
        Object tanh = activation.getMethod("valueOf", String.class).invoke(null, "TANH");
        Object op = mlb.getMethod("random", int.class, int.class, int.class, int.class, activation, long.class).invoke(null, 6, 5, 8, 3, tanh, 7L);
        Object cpu = loader.loadClass("io.bifuse.cpu.MlbCpu").getConstructor(mlb).newInstance(op);
        float[] x = {0.3f, -1.2f, 0.7f, 2.1f, -0.4f, 0.9f}, y = {1.1f, -0.2f, 0.5f, -0.8f, 0.6f};
        float[] got = (float[]) cpu.getClass().getMethod("forward", float[].class, float[].class, int.class).invoke(cpu, x, y, 1);
        float[] want = new io.bifuse.cpu.MlbCpu(Mlb.random(6, 5, 8, 3, Activation.TANH, 7L)).forward(x, y, 1);
        assertArrayEquals(want, got, 0f, "the module computes the class path's bits");

        // The kernels are a resource of package io.bifuse.cuda; the module reads its own.
        Class<?> kernels = loader.loadClass("io.bifuse.cuda.Kernels");
        Object ptx = kernels.getMethod("ptx").invoke(null);
        assertEquals(io.bifuse.cuda.Kernels.ptx() == null, ptx == null, "the PTX resource from inside the module");

        // What finds an operator's parts by name (reflection inside the module, nothing opened): the
        // kernel catalog and the facade's choice.
        assertEquals(io.bifuse.cuda.Kernels.all().size(), ((List<?>) kernels.getMethod("all").invoke(null)).size(), "Kernels.all() in the module");
        Class<?> backends = loader.loadClass("io.bifuse.backends.Backends");
        Object choice = backends.getMethod("of", loader.loadClass("io.bifuse.Op"), loader.loadClass("io.bifuse.cuda.CudaContext")).invoke(null, op, null);
        Object chosen = choice.getClass().getMethod("backend").invoke(choice);
        assertEquals(loader.loadClass("io.bifuse.cpu.MlbCpu"), chosen.getClass(), "Backends.of(op, null) in the module");
        assertEquals("cpu-fp32: no CUDA context given", choice.getClass().getMethod("reason").invoke(choice));
    }
}
