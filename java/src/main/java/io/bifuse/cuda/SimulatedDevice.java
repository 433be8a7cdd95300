package io.bifuse.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The simulated CUDA device (native-build/sim): stand-ins for the NVIDIA driver, cuBLAS and cuFFT at
 * their C ABI, running the real kernels of {@code cuda/*.cu} compiled for the host. Selected with
 * {@code BIFUSE_DEVICE=sim} or {@code -Dbifuse.device=sim}; bifuse then loads the stand-in
 * {@code libcuda.so.1} before JCuda's JNI library (which links {@code libcuda.so.1} by soname and so
 * binds to the one already loaded), and its cuBLAS and cuFFT lookups take only the stand-ins. Everything
 * above the C ABI (JCuda, our FFM bindings, every op's host code) is the code that runs on a GPU.
 *
 * <p>A simulated device is never a GPU: its name says so, every backend label says {@code cuda-sim},
 * and its timings are not performance. The stand-ins are found in {@code bifuse.sim.dir} /
 * {@code BIFUSE_SIM_DIR}, else in {@code build/sim} of the source tree this code was built from.
 */
public final class SimulatedDevice {
    private SimulatedDevice() {}

    /** The label of every result computed on the simulated device. */
    public static final String BACKEND = "cuda-sim";

    /** Whether the simulated device was asked for (this decides before anything is loaded). */
    public static boolean requested() {
        String v = System.getProperty("bifuse.device");
        if (v == null || v.isBlank()) v = System.getenv("BIFUSE_DEVICE");
        return v != null && v.trim().equalsIgnoreCase("sim");
    }

    private static volatile Object loaded; // the Path of the sim directory, or the String reason it did not load

    /** Loads the stand-in driver once; null when loaded, else why not (one line). */
    static synchronized String load() {
        if (loaded == null) loaded = tryLoad();
        return loaded instanceof Path ? null : (String) loaded;
    }

    /** The folder the stand-ins were loaded from (after a successful {@link #load()}). */
    static Path directory() {
        return loaded instanceof Path p ? p : null;
    }

    private static Object tryLoad() {
        Path dir = findDirectory();
        if (dir == null) {
            return "simulated device requested (BIFUSE_DEVICE=sim) but not built: run native-build/build-sim.sh, "
                    + "or set BIFUSE_SIM_DIR to the folder holding its libcuda.so.1 (looked in " + searched() + ")";
        }
        try {
            System.load(dir.resolve("libcuda.so.1").toString());
        } catch (UnsatisfiedLinkError e) {
            return "simulated device: " + dir.resolve("libcuda.so.1") + " could not be loaded: " + e.getMessage();
        }
        return dir;
    }

    private static String searched() {
        StringBuilder b = new StringBuilder();
        for (Path p : candidates()) b.append(b.isEmpty() ? "" : ", ").append(p);
        // Classes outside a source tree (a jar, a copied folder) have no build/sim to look in.
        return b.isEmpty() ? "nowhere: neither is set, and these classes were not loaded from a bifuse source tree" : b.toString();
    }

    private static java.util.List<Path> candidates() {
        java.util.List<Path> c = new java.util.ArrayList<>();
        String prop = System.getProperty("bifuse.sim.dir");
        if (prop != null && !prop.isBlank()) c.add(Path.of(prop));
        String env = System.getenv("BIFUSE_SIM_DIR");
        if (env != null && !env.isBlank()) c.add(Path.of(env));
        // The source tree this class was compiled in: <root>/java/target/classes -> <root>/build/sim.
        try {
            var src = SimulatedDevice.class.getProtectionDomain().getCodeSource();
            if (src != null) {
                Path p = Path.of(src.getLocation().toURI()).toAbsolutePath();
                for (Path q = p; q != null; q = q.getParent()) {
                    if (Files.isDirectory(q.resolve("native-build/sim"))) { c.add(q.resolve("build/sim")); break; }
                }
            }
        } catch (java.net.URISyntaxException | RuntimeException e) {
            // no code source to start from: only the explicit settings count
        }
        return c;
    }

    private static Path findDirectory() {
        for (Path p : candidates()) if (Files.isRegularFile(p.resolve("libcuda.so.1"))) return p.toAbsolutePath();
        return null;
    }

    /** The stand-in library {@code name} (e.g. {@code libcublas.so.13}) in the sim folder, or null. */
    static String library(String name) {
        Path d = directory();
        if (d == null) return null;
        Path f = d.resolve(name);
        return Files.isRegularFile(f) ? f.toString() : null;
    }

    /**
     * The module image for the simulated device when the jar has no fatbin (built without nvcc): the
     * kernel names the sim library holds, in the sim's own image format. Null when there is none.
     */
    static byte[] moduleImage() {
        String f = library("bifuse.simmodule");
        if (f == null) return null;
        try {
            return Files.readAllBytes(Path.of(f));
        } catch (java.io.IOException e) {
            return null;
        }
    }

    /** One line on the loaded simulator: its folder, kernel library and how that was built. */
    public static String describe() {
        Path d = directory();
        if (d == null) return "simulated device not loaded";
        try {
            var lookup = SymbolLookup.libraryLookup(d.resolve("libcuda.so.1"), Arena.global());
            var f = lookup.find("bifuse_sim_describe").orElseThrow();
            var h = Linker.nativeLinker().downcallHandle(f, FunctionDescriptor.of(ValueLayout.ADDRESS));
            MemorySegment s = (MemorySegment) h.invokeExact();
            return "cuda-sim in " + d + ": " + s.reinterpret(4096).getString(0);
        } catch (Throwable t) {
            return "cuda-sim in " + d + " (no description: " + t + ")";
        }
    }
}
