// Hierarchical attention pooling (HAN's attention, Yang et al. 2016, without the GRUs):
// io.bifuse.HierarchicalAttention. Level l has N items x_i (d wide) in G groups given by offsets
// (group g holds items offsets[g] <= i < offsets[g+1]), a projection W, b (k x d) and a logits layer
// c, b_c (1 x k):
//   u_i   = tanh(W x_i + b)                                        k   per item
//   a_i   = c . u_i + b_c                                              per item
//   alpha = softmax of a over the items of each group                  per item
//   s_g   = sum_{i in g} alpha_i x_i                               d   per group (0 for an empty group)
// and the G pooled vectors s are the items of level l + 1.
//
// Shapes (row-major, floats; offsets int32): x N x d; p N x k, W x_i from ONE GEMM over all the level's
// items (no bias: the kernel adds it); offsets G + 1; logits, alpha N (item i's within its group); s G x d.
//
// Kernels (one block per group: rowGrid(G) blocks striding over the groups, block 256; a group costs
// work in proportion to its items, and nothing is padded):
//   han_level           per chunk of HAN_ITEMS = 8 items, 32 lanes per item over k (coalesced rows of p)
//                       reduced in a fixed tree through shared memory to the logit; the group's
//                       softmax (bf_block_reduce max and sum); alpha; s_g = sum_i alpha_i x_i, one
//                       thread per column of d (x read once, coalesced). An empty group writes s_g = 0.
//   backward (recomputing the forward: the op keeps nothing between calls), levels from the last,
//   g = dL/ds (G x d):
//   han_level_backward  dalpha_i = g_g . x_i (8 items at a time, 32 lanes over d); the softmax Jacobian
//                       da_i = alpha_i (dalpha_i - sum_j alpha_j dalpha_j); then one thread per column j
//                       of k looping over the group's items: u recomputed from p, dp = da c_j (1 - u^2)
//                       written over p in place, and T_g = sum_i da_i u_i (the group's row of dc); last
//                       dx_i = alpha_i g_g over the group's items, one thread per column of d.
// The GEMM dx += dp W (beta 1) completes the items' gradient; the parameter gradients are a GEMM
// (dW = dp^T x) and fixed-order column sums (lin_bias_grad_tiled: db from dp, dc from T). db_c is exactly
// zero (the softmax of every group ignores it) and written as zeros. No atomics: every run gives the
// same bits.
//
// Bytes and FLOPs per call and level (N items, G groups; 4-byte floats), the fused kernels only (the
// GEMMs are cuBLAS: N d k multiply-adds forward, twice that backward):
//   han_level           reads 4 N k (p) + 4 N d (x) + 4 (G + 1) (offsets), writes 4 (2 N + G d);
//                       2 N (k + d) FLOPs and N k tanh
//   han_level_backward  reads 4 N (k + d + 1) + 4 G d + 4 (G + 1), writes 4 N k (dp over p) + 4 N (d + 1)
//                       + 4 G k; about N (2 d + 6 k + d) FLOPs and N k tanh
//
// Parameters: one struct by value each (HanLevelParams, HanLevelBackwardParams: pointers, then the
// ints), copied into __restrict__ locals at the top; the Java side's KernelSpec "{...}" lists the
// fields in this order and KernelCatalogTest checks it against the PTX.
#include "bifuse_device.cuh"

#define HAN_BLOCK 256   // every kernel
#define HAN_LANES 32    // threads per item in the per-item dot products
#define HAN_ITEMS 8     // items per chunk: HAN_BLOCK / HAN_LANES

// The 32 lanes of each item hold partial sums: a fixed tree within each group of 32 lanes. Every
// thread of the block calls it (it has barriers); every lane gets its item's sum.
static __device__ __forceinline__ float han_lane_sum(float* red, float v, int lane) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int w = HAN_LANES / 2; w > 0; w >>= 1) {
        if (lane < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    const float r = red[threadIdx.x - lane];
    __syncthreads();
    return r;
}

struct HanLevelParams {
    const float* p;        // N x k: W x_i, no bias
    const float* bias;     // k
    const float* wc;       // k: the context vector c
    const float* bc;       // 1
    const float* x;        // N x d: the level's items
    const int* offsets;    // G + 1
    float* logits;         // N
    float* alpha;          // N
    float* pooled;         // G x d
    int groups, d, k;
};

extern "C" __global__ void han_level(const HanLevelParams prm) {
    const float* __restrict__ p = prm.p;
    const float* __restrict__ bias = prm.bias;
    const float* __restrict__ wc = prm.wc;
    const float* __restrict__ bc = prm.bc;
    const float* __restrict__ x = prm.x;
    const int* __restrict__ offsets = prm.offsets;
    float* __restrict__ logits = prm.logits;
    float* __restrict__ alpha = prm.alpha;
    float* __restrict__ pooled = prm.pooled;
    const int groups = prm.groups, d = prm.d, k = prm.k;
    __shared__ float red[HAN_BLOCK];
    const int lane = threadIdx.x % HAN_LANES, c = threadIdx.x / HAN_LANES;
    for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
        const int lo = offsets[g], n = offsets[g + 1] - lo;
        const float b0 = bc[0];
        for (int s0 = 0; s0 < n; s0 += HAN_ITEMS) {
            const int s = s0 + c;
            float acc = 0.f;
            if (s < n) {
                const float* row = p + (int64_t)(lo + s) * k;
                for (int j = lane; j < k; j += HAN_LANES) acc = fmaf(wc[j], tanhf(row[j] + bias[j]), acc);
            }
            acc = han_lane_sum(red, acc, lane);
            if (lane == 0 && s < n) logits[lo + s] = acc + b0;
        }
        __syncthreads();  // the logits, written by the chunks' lane 0, are read by every thread
        const float* lg = logits + lo;
        float m = -INFINITY;
        for (int s = threadIdx.x; s < n; s += HAN_BLOCK) m = fmaxf(m, lg[s]);
        m = bf_block_reduce(red, m, 1, HAN_BLOCK);
        float z = 0.f;
        for (int s = threadIdx.x; s < n; s += HAN_BLOCK) z += expf(lg[s] - m);
        z = bf_block_reduce(red, z, 0, HAN_BLOCK);
        const float inv = 1.f / z;  // inf for an empty group, and then never used
        float* al = alpha + lo;
        for (int s = threadIdx.x; s < n; s += HAN_BLOCK) al[s] = expf(lg[s] - m) * inv;
        __syncthreads();  // alpha is read by every column below
        const float* xg = x + (int64_t)lo * d;
        for (int j = threadIdx.x; j < d; j += HAN_BLOCK) {
            float acc = 0.f;  // stays 0 for an empty group: the documented zero vector
            for (int s = 0; s < n; ++s) acc = fmaf(al[s], xg[(int64_t)s * d + j], acc);
            pooled[g * d + j] = acc;
        }
        __syncthreads();  // the block's next group reuses red and reads its own logits only after this one is done
    }
}

struct HanLevelBackwardParams {
    float* p;              // N x k: in, W x_i; out, dp
    const float* bias;     // k
    const float* wc;       // k
    const float* x;        // N x d
    const int* offsets;    // G + 1
    const float* alpha;    // N
    const float* g;        // G x d: dL/ds
    float* dx;             // N x d: written with alpha_i g (the pooling's part of dL/dx)
    float* da;             // N: the logits' gradient
    float* tw;             // G x k: sum over the group's items of da_i u_i
    int groups, d, k;
};

extern "C" __global__ void han_level_backward(const HanLevelBackwardParams prm) {
    float* __restrict__ p = prm.p;
    const float* __restrict__ bias = prm.bias;
    const float* __restrict__ wc = prm.wc;
    const float* __restrict__ x = prm.x;
    const int* __restrict__ offsets = prm.offsets;
    const float* __restrict__ alpha = prm.alpha;
    const float* __restrict__ g = prm.g;
    float* __restrict__ dx = prm.dx;
    float* __restrict__ da = prm.da;
    float* __restrict__ tw = prm.tw;
    const int groups = prm.groups, d = prm.d, k = prm.k;
    __shared__ float red[HAN_BLOCK];
    const int lane = threadIdx.x % HAN_LANES, c = threadIdx.x / HAN_LANES;
    for (int64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
        const int lo = offsets[grp], n = offsets[grp + 1] - lo;
        const float* gg = g + grp * d;
        const float* xg = x + (int64_t)lo * d;
        const float* al = alpha + lo;
        float* dag = da + lo;
        for (int s0 = 0; s0 < n; s0 += HAN_ITEMS) {
            const int s = s0 + c;
            float acc = 0.f;
            if (s < n) {
                const float* row = xg + (int64_t)s * d;
                for (int j = lane; j < d; j += HAN_LANES) acc = fmaf(gg[j], row[j], acc);
            }
            acc = han_lane_sum(red, acc, lane);
            if (lane == 0 && s < n) dag[s] = acc;  // dalpha for now
        }
        __syncthreads();
        float cs = 0.f;
        for (int s = threadIdx.x; s < n; s += HAN_BLOCK) cs = fmaf(al[s], dag[s], cs);
        cs = bf_block_reduce(red, cs, 0, HAN_BLOCK);
        for (int s = threadIdx.x; s < n; s += HAN_BLOCK) dag[s] = al[s] * (dag[s] - cs);
        __syncthreads();  // da is read by every column below
        for (int j = threadIdx.x; j < k; j += HAN_BLOCK) {
            const float w = wc[j], bj = bias[j];
            float st = 0.f;
            float* col = p + (int64_t)lo * k + j;
            for (int s = 0; s < n; ++s) {
                const float ds = dag[s], u = tanhf(col[(int64_t)s * k] + bj);
                st = fmaf(ds, u, st);
                col[(int64_t)s * k] = ds * w * (1.f - u * u);
            }
            tw[grp * k + j] = st;
        }
        for (int s = 0; s < n; ++s) {
            const float a = al[s];
            float* row = dx + (int64_t)(lo + s) * d;
            for (int j = threadIdx.x; j < d; j += HAN_BLOCK) row[j] = a * gg[j];
        }
        __syncthreads();  // the block's next group starts only when this one's columns are done (cheap beside the loops)
    }
}
