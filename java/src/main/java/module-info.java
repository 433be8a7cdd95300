/**
 * bifuse: CUDA kernels for the multimodal bilinear fusion operators, with CPU backends and float64
 * references to check them against.
 *
 * <p>Every exported package is API: {@code io.bifuse} (the operator descriptors: math, shapes, checks),
 * {@code io.bifuse.reference} (the float64 oracles), {@code io.bifuse.cpu} and {@code io.bifuse.cuda}
 * (the backends and the device resources a caller holds: context, stream, buffers), and
 * {@code io.bifuse.backends} (the facade that picks one and says why). What only the library uses (the
 * driver, cuBLAS and cuFFT bindings, the launch marshalling, workspaces, host call lanes) is
 * package-private in those packages. Tools ({@code check}, {@code bench}) and the verification support
 * the tests share are not in this module: they are the {@code bifuse-tools} jar and the tests jar.
 *
 * <p>On the module path, the JNI library of JCuda and the FFM bindings of cuBLAS and cuFFT call
 * restricted methods: run with {@code --enable-native-access=io.bifuse,jcuda} (on the class path,
 * {@code --enable-native-access=ALL-UNNAMED}).
 */
module io.bifuse {
    // JCuda's jar names no module; this is its file-name module. Its driver natives come with it.
    requires jcuda;

    exports io.bifuse;
    exports io.bifuse.backends;
    exports io.bifuse.cpu;
    exports io.bifuse.cuda;
    exports io.bifuse.reference;
}
