// Linear: the small kernels around cuBLAS for a linear layer y = x W^T + b (nn.Linear layout:
// W out x in, row-major), shared by the low-rank bilinear operators (MLB, MFB, MFH, MLB attention).
// The GEMMs themselves run in cuBLAS (io.bifuse.cuda.CublasHandle); bias and activation of the
// projections that feed a Hadamard product are fused into each operator's own kernels, so these two
// are only for the layers whose output is the operator's output (MLB's P, the answer layer).
//
//   lin_bias_rows   out[r, c] = bias[c]  for r < rows, c < cols (row stride ld): initializes C so that
//                   the GEMM that follows (beta = 1) adds x W^T to it. One thread per element,
//                   grid-stride; writes 4*rows*cols bytes, reads 4*cols.        grid ~rows*cols/256
//   lin_bias_grad   db[c] = sum_r g[r, c]: one thread per column, rows summed in a fixed order in
//                   double (deterministic, no atomics); consecutive threads read consecutive columns
//                   of a row, so loads coalesce. Reads 4*rows*cols bytes, rows*cols FLOPs.
//                   grid ceil(cols/256), block 256.
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" __global__ void lin_bias_rows(float* __restrict__ out, const float* __restrict__ bias, int rows, int cols, int ld) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / cols;
        const int c = (int)(t - r * cols);
        out[r * ld + c] = bias[c];
    }
}

extern "C" __global__ void lin_bias_grad(const float* __restrict__ g, float* __restrict__ db, int rows, int cols, int ld) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
        double acc = 0.0;
        for (int r = 0; r < rows; ++r) acc += g[(int64_t)r * ld + c];
        db[c] = (float)acc;
    }
}
