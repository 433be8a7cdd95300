package io.bifuse.cuda;

import jcuda.driver.CUresult;

/** Checks every JCuda driver result: a failure becomes a {@link CudaException} naming the call. */
final class Driver {
    private Driver() {}

    static void check(String call, int result) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException(call, result, CUresult.stringFor(result));
        }
    }
}
