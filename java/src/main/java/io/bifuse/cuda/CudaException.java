package io.bifuse.cuda;

/**
 * A CUDA driver, cuFFT or cuBLAS call that did not return success. The message names the call and the
 * library's result code (number and name), e.g. {@code cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)}.
 */
public final class CudaException extends RuntimeException {
    private final String call;
    private final int code;

    public CudaException(String call, int code, String codeName) {
        super(call + " failed: " + codeName + " (" + code + ")");
        this.call = call;
        this.code = code;
    }

    public CudaException(String message, Throwable cause) {
        super(message, cause);
        this.call = "";
        this.code = 0;
    }

    /** The call that failed, e.g. {@code cufftExecR2C}. */
    public String call() { return call; }

    /** The raw result code (CUresult, cufftResult or cublasStatus_t). */
    public int code() { return code; }
}
