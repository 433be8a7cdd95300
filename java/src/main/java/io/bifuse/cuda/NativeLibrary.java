package io.bifuse.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Finds and opens one CUDA library (cuFFT, cuBLAS) by whichever major version is installed, for our
 * {@code java.lang.foreign} bindings. Order: the file named by the override variable, then each
 * {@code lib<name>.so.<major>} by the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig), then in
 * the usual toolkit folders, then in the NVIDIA pip wheels that PyTorch installs
 * ({@code <python>/site-packages/nvidia/<pkg>/lib}, e.g. {@code nvidia/cu13/lib}, {@code nvidia/cufft/lib}),
 * which is where many machines with PyTorch but no system toolkit keep them.
 */
final class NativeLibrary {
    final String file;
    private final SymbolLookup lookup;

    private NativeLibrary(String file, SymbolLookup lookup) {
        this.file = file;
        this.lookup = lookup;
    }

    /**
     * Opens {@code lib<name>.so.<major>} for the first major in {@code majors} that loads.
     * @throws IllegalStateException listing everything tried when none loads
     */
    static NativeLibrary open(String name, String overrideEnv, int... majors) {
        if (SimulatedDevice.requested()) return openSimulated(name, majors);
        List<String> candidates = new ArrayList<>();
        String override = System.getenv(overrideEnv);
        if (override != null && !override.isBlank()) candidates.add(override);
        List<Path> dirs = new ArrayList<>();
        for (String env : new String[] {"CUDA_HOME", "CUDA_PATH"}) {
            String v = System.getenv(env);
            if (v != null) dirs.add(Path.of(v, "lib64"));
        }
        dirs.add(Path.of("/usr/local/cuda/lib64"));
        dirs.add(Path.of("/usr/local/cuda/targets/x86_64-linux/lib"));
        dirs.addAll(pythonWheelLibDirs());
        for (int major : majors) {
            String soname = "lib" + name + ".so." + major;
            candidates.add(soname);
            for (Path d : dirs) if (Files.exists(d.resolve(soname))) candidates.add(d.resolve(soname).toString());
        }
        List<String> failures = new ArrayList<>();
        for (String c : candidates) {
            try {
                preloadCompanion(name, c);
                return new NativeLibrary(c, SymbolLookup.libraryLookup(c, Arena.global()));
            } catch (IllegalArgumentException | IllegalCallerException e) {
                failures.add(c);
            }
        }
        throw new IllegalStateException("lib" + name + " not found (tried " + String.join(", ", failures)
                + "); install the CUDA toolkit's " + name + " or set " + overrideEnv + " to the library file");
    }

    /**
     * libcublas.so.N needs libcublasLt.so.N, which the dynamic loader finds only on its own search path:
     * loading libcublas by full path (from a pip wheel's folder) does not add that folder. A library
     * already loaded under the soname satisfies the dependency, so the one beside {@code file} is
     * opened first. A bare soname (the loader's own search) needs nothing.
     */
    private static void preloadCompanion(String name, String file) {
        if (!name.equals("cublas") || !file.contains("/")) return;
        Path f = Path.of(file);
        String lt = f.getFileName().toString().replace("libcublas.so", "libcublasLt.so");
        Path companion = f.resolveSibling(lt);
        if (!Files.exists(companion)) return;
        try {
            SymbolLookup.libraryLookup(companion, Arena.global());
        } catch (IllegalArgumentException | IllegalCallerException e) {
            // then libcublas's own load fails and says what is missing
        }
    }

    /** On the simulated device, only its own stand-in of the library: never a real one next to it. */
    private static NativeLibrary openSimulated(String name, int... majors) {
        String why = SimulatedDevice.load();
        if (why != null) throw new IllegalStateException(why);
        for (int major : majors) {
            String f = SimulatedDevice.library("lib" + name + ".so." + major);
            if (f != null) return new NativeLibrary(f, SymbolLookup.libraryLookup(Path.of(f), Arena.global()));
        }
        throw new IllegalStateException("the simulated device has no lib" + name + " stand-in in " + SimulatedDevice.directory()
                + " (rebuild it: native-build/build-sim.sh)");
    }

    /** {@code nvidia/<pkg>/lib} folders under the Python installations we can see. */
    static List<Path> pythonWheelLibDirs() {
        List<Path> roots = new ArrayList<>(List.of(Path.of("/usr/local/lib"), Path.of("/usr/lib"), Path.of("/opt/conda/lib"),
                Path.of(System.getProperty("user.home"), ".local", "lib")));
        for (String env : new String[] {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
            String v = System.getenv(env);
            if (v != null) roots.add(Path.of(v, "lib"));
        }
        for (Path prefix : pythonPrefixesOnPath(System.getenv("PATH"))) roots.add(prefix.resolve("lib"));
        return pythonWheelLibDirs(roots);
    }

    /**
     * The installation prefix of each {@code python3} on {@code path}: the folder above its {@code bin}.
     * A virtual environment's {@code bin/python3} is a link into the base interpreter, which is not where
     * the environment's packages are, so the link is not followed: {@code <venv>/bin/python3} gives
     * {@code <venv>}, what {@code sys.prefix} says there, without running Python.
     */
    static List<Path> pythonPrefixesOnPath(String path) {
        List<Path> prefixes = new ArrayList<>();
        if (path == null) return prefixes;
        for (String dir : path.split(java.io.File.pathSeparator)) {
            if (dir.isEmpty()) continue;
            try {
                Path bin = Path.of(dir).toAbsolutePath();
                if (Files.exists(bin.resolve("python3")) && bin.getParent() != null && !prefixes.contains(bin.getParent())) prefixes.add(bin.getParent());
            } catch (RuntimeException e) {
                // a malformed PATH entry: nothing there
            }
        }
        return prefixes;
    }

    static List<Path> pythonWheelLibDirs(List<Path> roots) {
        List<Path> found = new ArrayList<>();
        for (Path root : roots) {
            try (var pythons = Files.newDirectoryStream(root, "python3*")) {
                for (Path py : pythons) {
                    for (String pkgs : new String[] {"site-packages", "dist-packages"}) {
                        Path nvidia = py.resolve(pkgs).resolve("nvidia");
                        if (!Files.isDirectory(nvidia)) continue;
                        try (var wheels = Files.newDirectoryStream(nvidia)) {
                            for (Path w : wheels) if (Files.isDirectory(w.resolve("lib"))) found.add(w.resolve("lib"));
                        }
                    }
                }
            } catch (java.io.IOException | RuntimeException e) {
                // an unreadable or missing root: nothing to find there
            }
        }
        return found;
    }

    /** What a downcall's {@code invokeExact} threw, as an unchecked exception (errors pass through). */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new CudaException("native call failed", t);
    }

    MethodHandle function(String symbol, FunctionDescriptor descriptor) {
        var address = lookup.find(symbol).orElseThrow(() -> new IllegalStateException(symbol + " not found in " + file));
        return Linker.nativeLinker().downcallHandle(address, descriptor);
    }
}
