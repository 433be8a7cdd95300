package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;

/**
 * What the GPU tests of the cuBLAS-backed operators share: one context per test class, opened only
 * where a GPU and cuBLAS are usable; every test SKIPPED with the reason otherwise (assumed per test,
 * so that none vanishes or passes without having run).
 */
@Tag("gpu")
abstract class CublasOpTest {
    /** Set by the bundle's {@code run sanitize}: compute-sanitizer slows kernels 10-100×, so the largest sizes skip. */
    static final boolean SANITIZE = Boolean.getBoolean("bifuse.sanitize");
    static CudaContext ctx;

    @BeforeAll static void open() {
        if (Cuda.isAvailable() && CublasHandle.libraryAvailable()) ctx = CudaContext.open(0);
    }

    @BeforeEach void requireGpu() {
        RequireGpu.cublas();
    }

    @AfterAll static void close() {
        if (ctx != null) ctx.close();
        ctx = null;
    }

    /** {@code call} throws an IllegalArgumentException whose message contains {@code message}. */
    static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }

    /** {@code err <= tol}; a NaN error (an unwritten, poisoned element) fails. */
    static void assertBelow(double err, double tol, String what) {
        assertTrue(err <= tol, what + ": error " + err + " > " + tol);
    }
}
