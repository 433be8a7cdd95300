// BanBlock: the kernels of the BAN block (io.bifuse.cuda.BanBlockCuda) that are neither cuBLAS GEMMs
// nor the attention maps (BanAttention.cu) nor the pooling (BanPooling.cu): the ReLU epilogue of the
// stacked projections, the residual glimpse update, the token sums, and the weight-norm backward.
//
// Block math (B samples, N objects, M tokens; every projection weight-normed, W = g V / |V|_F):
//   Zx = relu(X [U; U_0..U_{G-1}]^T + b)     B*N x (K + G*K')   one GEMM for every glimpse-free projection
//   Zy = relu(Y [V; V_0]^T + b)              B*M x (K + K')     the original question's two projections
//   A  = softmax(masked logits)             B x G x N x M       (BanAttention)
//   for g: Y''_g = relu(Y_g V_g^T + b) (g >= 1), f_g = pool(A_g, X''_g, Y''_g) (BanPooling),
//          Y_{g+1}[b, j] = Y_g[b, j] + (W_g f_g + b_g)[b]      for every token j
//   out[b] = sum_j Y_G[b, j]                                   B x Dy
//
//   bnb_bias_relu      z[r, c] = max(z[r, c] + bias[c], 0) in place (row stride ld): the epilogue of a
//                      projection GEMM. One thread per element, grid-stride; reads and writes
//                      4*rows*cols bytes.                                          grid ~rows*cols/256
//   bnb_residual       out[b, j, :] = y[b, j, :] + r[b, :]: the glimpse's projected pooled feature added
//                      to every token. One thread per output element; reads 4*(B*M*D + B*D), writes
//                      4*B*M*D bytes.                                              grid ~B*M*D/256
//   bnb_token_sum      out[b, :] = sum_j y[b, j, :], j in a fixed order (deterministic): the block's
//                      output, and in backward the gradient of a glimpse's residual term. One thread per
//                      (b, d); reads 4*B*M*D bytes, writes 4*B*D.                  grid ~B*D/256
//   bnb_broadcast      out[b, j, :] = g[b, :]: the output gradient seen by every token of Y_G.
//   bnb_wn_partial     weight-norm backward, step 1: per-block partial sums (double, fixed order) of
//                      <dW, W> over n elements; BNB_WN_BLOCKS blocks of 256 threads, grid-stride.
//   bnb_wn_finish      step 2: dg = (sum of the partials in a fixed order) / g, one block of 256.
//                      From W = g V/|V|: dg = <dW, V>/|V| = <dW, W>/g.
//   bnb_wn_grad        step 3: dV = (g/|V|) (dW - (dg/g) W), one thread per element, grid-stride;
//                      reads 8n bytes, writes 4n. The three steps need only the effective weight W
//                      (already on the device for the forward), not V.
//   Weight-norm backward of a layer out x in: reads 12*out*in bytes, writes 4*out*in; ~4*out*in FLOPs.
#include "bifuse_device.cuh"

#define BNB_WN_BLOCKS 256
#define BNB_THREADS 256

extern "C" __global__ void bnb_bias_relu(float* __restrict__ z, const float* __restrict__ bias, int rows, int cols, int ld) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t r = t / cols;
        const int c = (int)(t - r * cols);
        const float v = z[r * ld + c] + bias[c];
        z[r * ld + c] = v > 0.f ? v : 0.f;
    }
}

extern "C" __global__ void bnb_residual(const float* __restrict__ y, const float* __restrict__ r, float* __restrict__ out,
                                        int batch, int tokens, int dim) {
    const int64_t total = (int64_t)batch * tokens * dim;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t row = t / dim;
        const int d = (int)(t - row * dim);
        const int64_t b = row / tokens;
        out[t] = y[t] + r[b * dim + d];
    }
}

extern "C" __global__ void bnb_token_sum(const float* __restrict__ y, float* __restrict__ out, int batch, int tokens, int dim) {
    const int64_t total = (int64_t)batch * dim;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / dim;
        const int d = (int)(t - b * dim);
        const float* p = y + b * tokens * dim + d;
        float acc = 0.f;
        for (int j = 0; j < tokens; ++j) acc += p[(int64_t)j * dim];
        out[t] = acc;
    }
}

extern "C" __global__ void bnb_broadcast(const float* __restrict__ g, float* __restrict__ out, int batch, int tokens, int dim) {
    const int64_t total = (int64_t)batch * tokens * dim;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t row = t / dim;
        const int d = (int)(t - row * dim);
        out[t] = g[(row / tokens) * dim + d];
    }
}

extern "C" __global__ void bnb_wn_partial(const float* __restrict__ dw, const float* __restrict__ w, int64_t n,
                                          double* __restrict__ partial) {
    double acc = 0.0;
    for (int64_t t = (int64_t)blockIdx.x * BNB_THREADS + threadIdx.x; t < n; t += (int64_t)BNB_WN_BLOCKS * BNB_THREADS) {
        acc += (double)dw[t] * (double)w[t];
    }
    const double sum = bf_block_sum<BNB_THREADS>(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

extern "C" __global__ void bnb_wn_finish(const double* __restrict__ partial, float g, float* __restrict__ dg) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < BNB_WN_BLOCKS; i += BNB_THREADS) acc += partial[i];
    const double sum = bf_block_sum<BNB_THREADS>(acc);
    if (threadIdx.x == 0) dg[0] = (float)(sum / (double)g);
}

extern "C" __global__ void bnb_wn_grad(const float* __restrict__ dw, const float* __restrict__ w, int64_t n,
                                       const float* __restrict__ dg, float g, float scale, float* __restrict__ dv) {
    const float c = dg[0] / g;
    for (int64_t t = bf_tid(); t < n; t += bf_stride()) dv[t] = scale * (dw[t] - c * w[t]);
}
