// Stacked attention (SAN, Yang et al. 2016): io.bifuse.StackedAttention. Per sample, the cells
// v_s (s < L, d wide), the question u_0 (d), K attention layers l, each with W_I, b_I (k x d), W_Q, b_Q
// (k x d), w_P, b_P (1 x k); placement 0 = paper, 1 = the public (Theano) code:
//   q     = W_Q u_l + b_Q                     (paper)      tanh(W_Q u_l + b_Q)              (public)   k
//   h_s   = tanh(W_I v_s + b_I + q)           (paper)      tanh(W_I v_s + b_I) + q          (public)   k
//   a_s   = w_P . h_s + b_P                   (paper)      tanh(w_P . h_s + b_P)            (public)
//   alpha = softmax over s of a_s;  u_{l+1} = u_l + sum_s alpha_s v_s                                  d
//
// Shapes (row-major, floats): u B x d; v B x L x d; pi B*L x K*k, every layer's image projection
// W_I v_s (no bias) from ONE GEMM with the K layers' W_I stacked (they do not depend on u); qp B x k per
// layer, W_Q u_l from one GEMM per layer (u_l is the previous layer's output), the question side
// written over it in place by the layer's kernel; logits, alpha B x K x L (layer l's row of sample b at
// (b K + l) L); the K - 1 intermediate u's B x d each.
//
// Kernels (one block per sample and layer: rowGrid(B) blocks striding over the samples, block 256):
//   san_layer           the whole layer but its two GEMMs: the question side in place (bias, tanh);
//                       per group of SAN_CELLS = 8 cells, 32 lanes per cell over k (coalesced rows of
//                       pi) accumulated in double and reduced in a fixed tree through shared memory to the
//                       logit; the softmax over the L cells (bf_block_reduce max, the exponentials' sum in
//                       double); alpha; u_{l+1} = u_l + sum_s alpha_s v_s,
//                       one thread per column of d (v read once, coalesced).
//   backward (recomputing the forward: the op keeps nothing between calls), layers from the last:
//   san_layer_backward  g = dL/du_{l+1}: dalpha_s = g . v_s (8 cells at a time, 32 lanes over d); the
//                       softmax Jacobian da = alpha (dalpha - sum alpha dalpha) in double (it cancels
//                       where alpha is nearly one-hot: in float, 10x the CPU path's gradient error at a
//                       sharp softmax, measured on the simulated device) and, public, the logit
//                       tanh's derivative: dz (B x L per layer); then one thread per column j of k
//                       looping over the cells: h recomputed from pi, dp = dz w_P[j] tanh' written over
//                       pi in place, and the per-sample sums over cells in double: dq (the question side's
//                       pre-activation gradient) and T = sum_s dz_s h_s (the rows of dw_P); g copied to
//                       the previous layer's gradient, which the GEMM g_l = g + dq W_Q then completes.
//   san_cells_backward  dv = sum_l alpha_{l,s} g_{l+1} over the B x L x d cells (grid-stride, block 256);
//                       the GEMM dv += dp W_I (all layers' dp at once, beta 1) follows.
// The parameter gradients are GEMMs over rows (dW_I = dp^T v, dW_Q = dq^T u_l) and fixed-order column
// sums (lin_bias_grad_tiled: db_I, db_Q, dw_P from T, and db_P from dz in the public placement; in the
// paper's it is exactly zero and written as zeros). No atomics: every run gives the same bits.
//
// Bytes and FLOPs per call (B samples, L cells, K layers; 4-byte floats), the fused kernels only (the
// GEMMs are cuBLAS: B L d K k + K B d k multiply-adds in the forward, about twice that again backward):
//   san_layer           reads 4 B L k (pi) + 4 B L d (v) + 4 B d, writes 4 B (2 L + d + k); 2 B L (k + d) FLOPs
//                       and B L k tanh (twice that public)                                     per layer
//   san_layer_backward  reads 4 B L (d + k) + 8 B L, writes 4 B L k (dp over pi) + 4 B (L + 2k + d);
//                       about B L (2d + 8k) FLOPs and B L k tanh                               per layer
//   san_cells_backward  reads 4 B K (L + d), writes 4 B L d; 2 B L d K FLOPs.
//
// Parameters: san_layer and san_layer_backward take ONE struct by value each (SanLayerParams,
// SanLayerBackwardParams: pointers, then the ints), copied into __restrict__ locals at the top; the
// Java side's KernelSpec "{...}" lists the fields in this order and KernelCatalogTest checks it against
// the PTX.
#include "bifuse_device.cuh"

#define SAN_BLOCK 256   // every kernel
#define SAN_LANES 32    // threads per cell in the per-cell dot products
#define SAN_CELLS 8     // cells per group: SAN_BLOCK / SAN_LANES

// The hidden unit of cell s at column j: p = W_I v_s + b_I (pre-activation), q the question side.
static __device__ __forceinline__ float san_hidden(float p, float q, int placement) {
    return placement ? tanhf(p) + q : tanhf(p + q);
}

// The 32 lanes of each cell group hold partial sums in red[]: a fixed tree within each group of 32.
// Every thread of the block calls it (it has barriers); lane 0 of each group gets its cell's sum.
static __device__ __forceinline__ float san_lane_sum(float* red, float v, int lane) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int w = SAN_LANES / 2; w > 0; w >>= 1) {
        if (lane < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    const float r = red[threadIdx.x];
    __syncthreads();
    return r;
}

// The same tree in double, for the per-cell sums whose rounding the softmax Jacobian would amplify.
static __device__ __forceinline__ double san_lane_sum_d(double* red, double v, int lane) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int w = SAN_LANES / 2; w > 0; w >>= 1) {
        if (lane < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    const double r = red[threadIdx.x];
    __syncthreads();
    return r;
}

struct SanLayerParams {
    const float* pi;             // B*L rows of stride ldpi: this layer's image projections (no bias)
    const float* image_bias;     // k
    float* qp;                   // B x k: in, W_Q u_l (no bias); out, the question side q
    const float* question_bias;  // k
    const float* wp;             // k
    const float* bp;             // 1
    const float* v;              // B x L x d
    const float* u_in;           // B x d
    float* u_out;                // B x d
    float* logits;               // B x K x L
    float* alpha;                // B x K x L
    int ldpi, batch, cells, d, k, layers, layer, placement;
};

extern "C" __global__ void san_layer(const SanLayerParams prm) {
    const float* __restrict__ pi = prm.pi;
    const float* __restrict__ image_bias = prm.image_bias;
    float* __restrict__ qp = prm.qp;
    const float* __restrict__ question_bias = prm.question_bias;
    const float* __restrict__ wp = prm.wp;
    const float* __restrict__ bp = prm.bp;
    const float* __restrict__ v = prm.v;
    const float* __restrict__ u_in = prm.u_in;
    float* __restrict__ u_out = prm.u_out;
    float* __restrict__ logits = prm.logits;
    float* __restrict__ alpha = prm.alpha;
    const int ldpi = prm.ldpi, batch = prm.batch, cells = prm.cells, d = prm.d, k = prm.k, layers = prm.layers, layer = prm.layer,
              placement = prm.placement;
    __shared__ float red[SAN_BLOCK];
    __shared__ double redd[SAN_BLOCK];
    const int lane = threadIdx.x % SAN_LANES, c = threadIdx.x / SAN_LANES;
    for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
        float* q = qp + b * k;
        for (int j = threadIdx.x; j < k; j += SAN_BLOCK) {
            const float x = q[j] + question_bias[j];
            q[j] = placement ? tanhf(x) : x;
        }
        __syncthreads();  // q is read by every group below
        float* lg = logits + (b * layers + layer) * cells;
        float* al = alpha + (b * layers + layer) * cells;
        const float bias = bp[0];
        for (int s0 = 0; s0 < cells; s0 += SAN_CELLS) {
            const int s = s0 + c;
            double acc = 0.0;
            if (s < cells) {
                const float* row = pi + (b * cells + s) * ldpi;
                for (int j = lane; j < k; j += SAN_LANES) acc = fma((double)wp[j], (double)san_hidden(row[j] + image_bias[j], q[j], placement), acc);
            }
            acc = san_lane_sum_d(redd, acc, lane);
            if (lane == 0 && s < cells) {
                const double z = acc + (double)bias;
                lg[s] = (float)(placement ? tanh(z) : z);
            }
        }
        __syncthreads();  // the logits, written by the groups' lane 0, are read by every thread
        float m = -INFINITY;
        for (int s = threadIdx.x; s < cells; s += SAN_BLOCK) m = fmaxf(m, lg[s]);
        m = bf_block_reduce(red, m, 1, SAN_BLOCK);
        double z = 0.0;
        for (int s = threadIdx.x; s < cells; s += SAN_BLOCK) z += exp((double)(lg[s] - m));
        z = bf_block_sum<SAN_BLOCK>(z);
        for (int s = threadIdx.x; s < cells; s += SAN_BLOCK) al[s] = (float)(exp((double)(lg[s] - m)) / z);
        __syncthreads();  // alpha is read by every column below
        const float* vb = v + b * cells * d;
        for (int j = threadIdx.x; j < d; j += SAN_BLOCK) {
            float acc = 0.f;
            for (int s = 0; s < cells; ++s) acc = fmaf(al[s], vb[(int64_t)s * d + j], acc);
            u_out[b * d + j] = u_in[b * d + j] + acc;
        }
        __syncthreads();  // the block's next sample starts only when this one's columns are done (cheap beside the loops)
    }
}

struct SanLayerBackwardParams {
    float* pi;                   // B*L rows of stride ldpi: in, this layer's image projections; out, dp
    const float* image_bias;     // k
    const float* q;              // B x k: the question side, as san_layer left it
    const float* wp;             // k
    const float* v;              // B x L x d
    const float* logits;         // B x K x L
    const float* alpha;          // B x K x L
    const float* g;              // B x d: dL/du_{l+1}
    float* g_prev;               // B x d: written with g (the residual path of dL/du_l)
    float* dz;                   // B x L: the logits' pre-activation gradient
    float* dq;                   // B x k: the question side's pre-activation gradient
    float* tw;                   // B x k: sum over cells of dz_s h_s
    int ldpi, batch, cells, d, k, layers, layer, placement;
};

extern "C" __global__ void san_layer_backward(const SanLayerBackwardParams prm) {
    float* __restrict__ pi = prm.pi;
    const float* __restrict__ image_bias = prm.image_bias;
    const float* __restrict__ q = prm.q;
    const float* __restrict__ wp = prm.wp;
    const float* __restrict__ v = prm.v;
    const float* __restrict__ logits = prm.logits;
    const float* __restrict__ alpha = prm.alpha;
    const float* __restrict__ g = prm.g;
    float* __restrict__ g_prev = prm.g_prev;
    float* __restrict__ dz = prm.dz;
    float* __restrict__ dq = prm.dq;
    float* __restrict__ tw = prm.tw;
    const int ldpi = prm.ldpi, batch = prm.batch, cells = prm.cells, d = prm.d, k = prm.k, layers = prm.layers, layer = prm.layer,
              placement = prm.placement;
    __shared__ double redd[SAN_BLOCK];
    const int lane = threadIdx.x % SAN_LANES, c = threadIdx.x / SAN_LANES;
    for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
        const float* gb = g + b * d;
        const float* vb = v + b * cells * d;
        const float* lg = logits + (b * layers + layer) * cells;
        const float* al = alpha + (b * layers + layer) * cells;
        float* dzb = dz + b * cells;
        for (int s0 = 0; s0 < cells; s0 += SAN_CELLS) {
            const int s = s0 + c;
            double acc = 0.0;
            if (s < cells) {
                const float* row = vb + (int64_t)s * d;
                for (int j = lane; j < d; j += SAN_LANES) acc = fma((double)gb[j], (double)row[j], acc);
            }
            acc = san_lane_sum_d(redd, acc, lane);
            if (lane == 0 && s < cells) dzb[s] = (float)acc;  // dalpha for now
        }
        __syncthreads();
        // sum alpha dalpha in double: da_s = alpha_s (dalpha_s - cs) cancels where alpha is nearly one-hot
        // (the largest cell's dalpha_s and cs agree to 1 - alpha_s), and rounding the sum to float would
        // then show at 1 / (1 - alpha_s) times its size. The rounded dalpha_s is harmless: it enters both.
        double cs = 0.0;
        for (int s = threadIdx.x; s < cells; s += SAN_BLOCK) cs = fma((double)al[s], (double)dzb[s], cs);
        cs = bf_block_sum<SAN_BLOCK>(cs);
        for (int s = threadIdx.x; s < cells; s += SAN_BLOCK) {
            const double da = (double)al[s] * ((double)dzb[s] - cs), a = lg[s];
            dzb[s] = (float)(placement ? da * (1.0 - a * a) : da);
        }
        __syncthreads();  // dz is read by every column below
        for (int j = threadIdx.x; j < k; j += SAN_BLOCK) {
            const float w = wp[j], qj = q[b * k + j], bj = image_bias[j];
            // sums over the cells in double: sum_s dz_s = 0 (the Jacobian's), so sq's terms cancel and, h_s
            // sharing the question side, st's in part
            double sq = 0.0, st = 0.0;
            float* col = pi + b * cells * ldpi + j;
            for (int s = 0; s < cells; ++s) {
                const float zs = dzb[s], p = col[(int64_t)s * ldpi] + bj;
                float h, dp;
                if (placement) {
                    const float i = tanhf(p);
                    h = i + qj;
                    dp = zs * w * (1.f - i * i);
                    sq += zs;
                } else {
                    h = tanhf(p + qj);
                    dp = zs * w * (1.f - h * h);
                    sq += dp;
                }
                st = fma((double)zs, (double)h, st);
                col[(int64_t)s * ldpi] = dp;
            }
            dq[b * k + j] = placement ? (float)sq * w * (1.f - qj * qj) : (float)sq;
            tw[b * k + j] = (float)st;
        }
        for (int j = threadIdx.x; j < d; j += SAN_BLOCK) g_prev[b * d + j] = gb[j];
        __syncthreads();  // the block's next sample starts only when this one's columns are done (cheap beside the loops)
    }
}

// dv[b, s, :] = sum_l alpha[b, l, s] g[l][b, :], where g holds K slots of B x d (slot l: dL/du_{l+1}).
extern "C" __global__ void san_cells_backward(const float* __restrict__ alpha, const float* __restrict__ g, float* __restrict__ dv,
                                              int batch, int cells, int d, int layers) {
    const int64_t total = (int64_t)batch * cells * d, slot = (int64_t)batch * d;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t row = t / d, b = row / cells;
        const int j = (int)(t - row * d), s = (int)(row - b * cells);
        float acc = 0.f;
        for (int l = 0; l < layers; ++l) acc = fmaf(alpha[(b * layers + l) * cells + s], g[l * slot + b * d + j], acc);
        dv[t] = acc;
    }
}
