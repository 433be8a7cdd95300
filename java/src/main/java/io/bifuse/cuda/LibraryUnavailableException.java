package io.bifuse.cuda;

/**
 * A CUDA op's construction found the library it needs (cuBLAS or cuFFT) unusable, before allocating
 * anything. {@link #reason()} is the library's own explanation (what was searched, what failed), which
 * the backend facade reports when it falls back to the CPU.
 */
public final class LibraryUnavailableException extends IllegalStateException {
    private final String reason;

    LibraryUnavailableException(String op, String library, String detail) {
        super(op + " on CUDA needs " + library + ": " + detail);
        this.reason = "no " + library + ": " + detail;
    }

    /** {@code "no cuBLAS: ..."} or {@code "no cuFFT: ..."}. */
    public String reason() { return reason; }
}
