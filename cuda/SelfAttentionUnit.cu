// SelfAttentionUnit: MCAN's self-attention unit (mcan-vqa's SA), the kernels between the attention
// (io.bifuse.cuda.MultiHeadAttentionCuda) and the feed-forward GEMMs of io.bifuse.cuda.SelfAttentionUnitCuda;
// io.bifuse.cuda.GuidedAttentionUnitCuda launches them too (its guided step's residual + LayerNorm).
//
// Math (rows r of width H, F the feed-forward width), variant 0 = MCAN, 1 = PyTorch (io.bifuse.LayerNorm):
//   s1 = x + MHA(x);  y = LN1(s1);  r = relu(W1 y + b1);  s2 = y + W2 r + b2;  out = LN2(s2)
//   LN(s) = a (s - mu) / scale + b,  scale = sqrt(sum (s - mu)^2 / (H - 1)) + eps   (MCAN)
//                                     scale = sqrt(sum (s - mu)^2 / H + eps)         (PyTorch)
//   backward of LN given gy, c = s - mu, g^ = gy a:  gc = g^/scale - (sum g^ c)/scale^2 * k c,
//     k = 1/((H - 1)(scale - eps)) (MCAN) or 1/(H scale) (PyTorch);  gs = gc - mean(gc);
//     da = sum_rows gy c/scale (written per row as gy c/scale, summed by lin_bias_grad_tiled), db = sum_rows gy.
//
// Shapes (row-major floats): x, a, s, y, out, gy, gs, gxhat rows x H; the feed-forward hidden rows x F.
//
// Kernels:
//   sau_residual_norm   s = x + a (kept for the backward) and y = LN(s); one block of SAU_BLOCK = 128 threads per
//                       row (a loop over rows with a stride of gridDim.x), the mean and the sum of squares in double
//                       through bf_block_sum (a fixed tree: deterministic).       grid min(rows, 65535), block 128
//   sau_norm_backward   gs = LN's input gradient from s (the scale recomputed) and gy, and gxhat = gy (s - mu)/scale,
//                       the rows whose column sums are the gain's gradient.   same geometry
//   sau_bias_relu       r = relu(r + b1) in place after the bias-free GEMM: one pass.              grid-stride
//   sau_relu_backward   dr = dr [r > 0] in place.                                                   grid-stride
//   sau_add4            dx = ds1 + dq + dk + dv (the three attention inputs' gradients and the residual). grid-stride
//
// Bytes and FLOPs per call (R rows of H; floats): residual_norm reads 8 R H + 8 H, writes 8 R H, ~8 R H FLOPs;
// norm_backward reads 8 R H + 4 H, writes 8 R H, ~12 R H FLOPs; bias_relu reads and writes 4 R F; add4 reads 16 R H,
// writes 4 R H. The GEMMs (cuBLAS): 4 R H F multiply-adds forward (W1, W2) and twice that backward, plus the
// attention's.
#include "bifuse_device.cuh"

#define SAU_BLOCK 128

// The normalization's scale from the row's sum of squared deviations.
static __device__ __forceinline__ double sau_scale(double ss, int n, int variant, float eps) {
    return variant == 0 ? sqrt(ss / (n - 1)) + (double)eps : sqrt(ss / n + (double)eps);
}

extern "C" __global__ void __launch_bounds__(SAU_BLOCK) sau_residual_norm(const float* __restrict__ x, const float* __restrict__ a,
                                                                          const float* __restrict__ gain, const float* __restrict__ bias,
                                                                          float* __restrict__ s, float* __restrict__ y, int rows, int n,
                                                                          int variant, float eps) {
    for (int row = blockIdx.x; row < rows; row += gridDim.x) {
        const int64_t o = (int64_t)row * n;
        double sum = 0;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) {
            const float v = x[o + c] + a[o + c];
            s[o + c] = v;
            sum += v;
        }
        const double mu = bf_block_sum<SAU_BLOCK>(sum) / n;
        double ss = 0;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) { // this thread's own elements of s
            const double d = s[o + c] - mu;
            ss += d * d;
        }
        const double inv = 1.0 / sau_scale(bf_block_sum<SAU_BLOCK>(ss), n, variant, eps);
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) y[o + c] = gain[c] * (float)((s[o + c] - mu) * inv) + bias[c];
    }
}

extern "C" __global__ void __launch_bounds__(SAU_BLOCK) sau_norm_backward(const float* __restrict__ s, const float* __restrict__ gy,
                                                                          const float* __restrict__ gain, float* __restrict__ gs,
                                                                          float* __restrict__ gxhat, int rows, int n, int variant, float eps) {
    for (int row = blockIdx.x; row < rows; row += gridDim.x) {
        const int64_t o = (int64_t)row * n;
        double sum = 0;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) sum += s[o + c];
        const double mu = bf_block_sum<SAU_BLOCK>(sum) / n;
        double ss = 0, dot = 0;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) {
            const double d = s[o + c] - mu;
            ss += d * d;
            dot += (double)gy[o + c] * gain[c] * d;
        }
        const double2 t = bf_block_sum2<SAU_BLOCK>(ss, dot);
        const double scale = sau_scale(t.x, n, variant, eps), inv = 1.0 / scale;
        const double k = variant == 0 ? 1.0 / ((n - 1) * (scale - (double)eps)) : 1.0 / (n * scale);
        const double coef = t.y * inv * inv * k;
        double gsum = 0;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) {
            const double d = s[o + c] - mu;
            gsum += (double)gy[o + c] * gain[c] * inv - coef * d;
        }
        const double gmean = bf_block_sum<SAU_BLOCK>(gsum) / n;
        for (int c = threadIdx.x; c < n; c += SAU_BLOCK) {
            const double d = s[o + c] - mu;
            gs[o + c] = (float)((double)gy[o + c] * gain[c] * inv - coef * d - gmean);
            gxhat[o + c] = (float)(gy[o + c] * d * inv);
        }
    }
}

extern "C" __global__ void sau_bias_relu(float* __restrict__ r, const float* __restrict__ bias, int rows, int f) {
    const int64_t total = (int64_t)rows * f;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const float v = r[t] + bias[t % f];
        r[t] = v > 0.f ? v : 0.f;
    }
}

extern "C" __global__ void sau_relu_backward(float* __restrict__ dr, const float* __restrict__ r, int64_t total) {
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        if (!(r[t] > 0.f)) dr[t] = 0.f;
    }
}

extern "C" __global__ void sau_add4(float* __restrict__ dx, const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ c,
                                    const float* __restrict__ d, int64_t total) {
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) dx[t] = (a[t] + b[t]) + (c[t] + d[t]);
}
