// Linear: the small kernels around cuBLAS for a linear layer y = x W^T + b (nn.Linear layout:
// W out x in, row-major), shared by the low-rank bilinear operators (MLB, MFB, MFH, MLB attention).
// The GEMMs themselves run in cuBLAS (io.bifuse.cuda.CublasHandle); bias and activation of the
// projections that feed a Hadamard product are fused into each operator's own kernels, so these two
// are only for the layers whose output is the operator's output (MLB's P, the answer layer).
//
//   lin_bias_rows   out[r, c] = bias[c]  for r < rows, c < cols (row stride ld): initializes C so that
//                   the GEMM that follows (beta = 1) adds x W^T to it. One thread per element,
//                   grid-stride; writes 4*rows*cols bytes, reads 4*cols.        grid ~rows*cols/256
//   lin_bias_grad_tiled  db[c] = sum_r g[r, c], what the ops launch: a block of 256 threads owns
//                   LIN_COLS = 8 consecutive columns and splits the rows among LIN_LANES = 32 lanes
//                   (lane l sums rows l, l + 32, ... in double, in that order), then adds the 32 lane
//                   sums in a fixed tree in shared memory: deterministic, no atomics, no scratch. Why: the
//                   BAN block's backward sums B*N = 25,600 rows over 1,024 to 3,072 columns, where one
//                   thread per column gives 4 to 12 blocks for 132 SMs, each thread walking 25,600 rows;
//                   here 128 to 384 blocks of 32-fold shorter walks. A warp covers 8 columns of 4 rows:
//                   4 full 32-byte sectors per load. Reads 4*rows*cols bytes, rows*cols FLOPs.
//                   grid ceil(cols/8) (grid-stride over column groups), block 256.
//   lin_bias_grad   the same sums, one thread per column walking every row in order: the simple
//                   version, kept as the cross-check of the tiled one (LinearCudaTest compares them).
//                   grid ceil(cols/256), block 256.
// The block.bootstrap fusions (LinearSum, ConcatMLP, the output activation) also activate a layer's
// output and go back through that activation; these three are elementwise, one thread per element,
// grid-stride, block 256, grid ~rows*cols/256:
//   lin_bias_act    y[r, c] = act(y[r, c] + bias[c]) in place (row stride ld; bias zeros when the layer
//                   has none): after a bias-free projection GEMM, one pass instead of bias rows plus an
//                   activation pass. Reads and writes 4*rows*cols bytes; one activation per element.
//   lin_act_grad    out = g * act'(a), a = the activation's OUTPUT (bf_act_grad), all rows x cols dense;
//                   out may be g or a (each element reads its own index before writing it, so no
//                   __restrict__). Reads 8, writes 4 bytes per element.
//   lin_copy_cols   dst[r, c] = src[r, c] for c < cols (row strides lds, ldd): the concatenation
//                   [x, y] of ConcatMLP and its split in backward, and device-to-device copies of shared
//                   layers' gradients. Reads and writes 4*rows*cols bytes.
#include "bifuse_device.cuh"

#define LIN_COLS 8
#define LIN_LANES 32

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

extern "C" __global__ void lin_bias_grad_tiled(const float* __restrict__ g, float* __restrict__ db, int rows, int cols, int ld) {
    __shared__ double part[LIN_LANES][LIN_COLS];
    const int col = threadIdx.x % LIN_COLS, lane = threadIdx.x / LIN_COLS;  // blockDim.x == LIN_COLS * LIN_LANES
    const int groups = (cols + LIN_COLS - 1) / LIN_COLS;
    for (int grp = blockIdx.x; grp < groups; grp += gridDim.x) {
        const int c = grp * LIN_COLS + col;
        double acc = 0.0;
        if (c < cols)
            for (int r = lane; r < rows; r += LIN_LANES) acc += g[(int64_t)r * ld + c];
        part[lane][col] = acc;
        __syncthreads();
        for (int w = LIN_LANES / 2; w > 0; w >>= 1) {
            if (lane < w) part[lane][col] += part[lane + w][col];
            __syncthreads();
        }
        if (lane == 0 && c < cols) db[c] = (float)part[0][col];
        __syncthreads();  // part is rewritten by the next group
    }
}

extern "C" __global__ void lin_bias_act(float* __restrict__ y, const float* __restrict__ bias, int rows, int cols, int ld, int act) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t r = t / cols;
        const int c = (int)(t - r * cols);
        float* v = y + r * ld + c;
        *v = bf_act(*v + bias[c], act);
    }
}

extern "C" __global__ void lin_act_grad(const float* g, const float* a, float* out, int rows, int cols, int act) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) out[t] = g[t] * bf_act_grad(a[t], act);
}

extern "C" __global__ void lin_copy_cols(const float* __restrict__ src, int lds, float* __restrict__ dst, int ldd, int rows, int cols) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t r = t / cols;
        const int c = (int)(t - r * cols);
        dst[r * ldd + c] = src[r * lds + c];
    }
}
