// McanEncoderDecoder: MCAN's encoder-decoder with its reductions (mcan-vqa's MCA_ED, AttFlat, proj_norm), the
// attentional-reduction kernels of io.bifuse.cuda.McanEncoderDecoderCuda. The layers are SelfAttentionUnitCuda and
// GuidedAttentionUnitCuda; the reductions' MLP and merge are cuBLAS GEMMs (bias + ReLU by SelfAttentionUnit.cu's
// sau_bias_relu); the final LayerNorm of the reductions' sum is sau_residual_norm over O-wide rows.
//
// Math of one reduction (AttFlat), per sample b over its L rows z_l (H wide), G glimpses, R_b its real rows:
//   a_{l,g} = (W2 relu(W1 z_l + b1) + b2)_g      (the GEMMs; a is B*L x G)
//   alpha_{l,g} = exp(a_{l,g} - m_g) / sum_{t in R_b} exp(a_{t,g} - m_g) for l in R_b, 0 for a padded row
//                 (mcan-vqa's masked_fill(-1e9): exp(-1e9 - m) is 0 in float); 1/L for every row when R_b is empty
//   p_g = sum_l alpha_{l,g} z_l                   (B x G*H, the glimpses concatenated)
//   backward, given dp:  dz_l = sum_g alpha_{l,g} dp_g;  dalpha_{l,g} = dp_g . z_l;
//                        da_{l,g} = alpha_{l,g} (dalpha_{l,g} - sum_t alpha_{t,g} dalpha_{t,g}), 0 for a padded row
//
// Shapes (row-major floats): z B*L x H; a, da B*L x G; alpha B x G x L; p, dp B x G*H; dz B*L x H.
// counts (B) and indices (B x L): the DeviceObjectMask; masked = 0 treats every row as real.
//
// Kernels (one block of MCF_BLOCK = 128 threads per sample, a loop over samples with a stride of gridDim.x;
// G <= MCF_MAX_G, L <= MCF_MAX_L rows staged in shared memory):
//   mcan_flat_pool           the masked softmax over the rows per glimpse (block max and sum through
//                            bf_block_reduce: a fixed tree) into alpha, then p by columns.   grid min(B, 65535), block 128
//   mcan_flat_pool_backward  dz (written, the MLP's W1^T dr is added after by a GEMM with beta = 1), and da.
//
// Bytes and FLOPs per call (B samples of L rows of H, G glimpses): pool reads 4 B L (H + G), writes 4 B (G L + G H),
// 2 B G L H FLOPs; backward reads 4 B (L H + G L + G H), writes 4 B L (H + G), 4 B G L H FLOPs.
#include "bifuse_device.cuh"

#define MCF_BLOCK 128
#define MCF_MAX_G 8
#define MCF_MAX_L 1024

// Whether row l of sample b is real, walking the ascending index list with the cursor *next.
static __device__ __forceinline__ bool mcf_real(const int* idx, int n, int masked, int l, int* next) {
    if (!masked) return true;
    if (*next < n && idx[*next] == l) { (*next)++; return true; }
    return false;
}

extern "C" __global__ void __launch_bounds__(MCF_BLOCK) mcan_flat_pool(const float* __restrict__ z, const float* __restrict__ a,
                                                                       const int* __restrict__ counts, const int* __restrict__ indices,
                                                                       float* __restrict__ alpha, float* __restrict__ p, int batch, int rows,
                                                                       int hidden, int glimpses, int masked) {
    __shared__ float red[MCF_BLOCK];
    __shared__ float w[MCF_MAX_G][MCF_MAX_L];
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        const int n = masked ? counts[b] : rows;
        const int* idx = indices + (int64_t)b * rows;
        for (int g = 0; g < glimpses; g++) {
            if (n == 0) { // every logit -1e9: uniform
                for (int l = threadIdx.x; l < rows; l += MCF_BLOCK) w[g][l] = 1.f / rows;
                __syncthreads();
                continue;
            }
            float m = -INFINITY;
            for (int t = threadIdx.x; t < n; t += MCF_BLOCK) m = fmaxf(m, a[((int64_t)b * rows + (masked ? idx[t] : t)) * glimpses + g]);
            m = bf_block_reduce(red, m, 1, MCF_BLOCK);
            float s = 0.f;
            for (int l = threadIdx.x; l < rows; l += MCF_BLOCK) w[g][l] = 0.f;
            __syncthreads();
            for (int t = threadIdx.x; t < n; t += MCF_BLOCK) {
                const int l = masked ? idx[t] : t;
                const float e = expf(a[((int64_t)b * rows + l) * glimpses + g] - m);
                w[g][l] = e;
                s += e;
            }
            s = bf_block_reduce(red, s, 0, MCF_BLOCK);
            const float inv = 1.f / s;
            for (int l = threadIdx.x; l < rows; l += MCF_BLOCK) w[g][l] *= inv; // rows other threads wrote: bf_block_reduce's barriers order them
            __syncthreads();
        }
        for (int t = threadIdx.x; t < glimpses * rows; t += MCF_BLOCK) alpha[(int64_t)b * glimpses * rows + t] = w[t / rows][t % rows];
        for (int c = threadIdx.x; c < glimpses * hidden; c += MCF_BLOCK) {
            const int g = c / hidden, col = c % hidden;
            float acc = 0.f;
            for (int l = 0; l < rows; l++) acc += w[g][l] * z[((int64_t)b * rows + l) * hidden + col];
            p[(int64_t)b * glimpses * hidden + c] = acc;
        }
        __syncthreads(); // the next sample rewrites w
    }
}

extern "C" __global__ void __launch_bounds__(MCF_BLOCK) mcan_flat_pool_backward(const float* __restrict__ z, const float* __restrict__ alpha,
                                                                                const float* __restrict__ dp, const int* __restrict__ counts,
                                                                                const int* __restrict__ indices, float* __restrict__ dz,
                                                                                float* __restrict__ da, int batch, int rows, int hidden, int glimpses,
                                                                                int masked) {
    __shared__ float red[MCF_BLOCK];
    __shared__ float dal[MCF_MAX_G][MCF_MAX_L];
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        const int n = masked ? counts[b] : rows;
        const int* idx = indices + (int64_t)b * rows;
        const float* al = alpha + (int64_t)b * glimpses * rows;
        const float* dpb = dp + (int64_t)b * glimpses * hidden;
        // dalpha_{l,g} = dp_g . z_l, one row per thread
        for (int t = threadIdx.x; t < glimpses * rows; t += MCF_BLOCK) {
            const int g = t / rows, l = t % rows;
            const float* zr = z + ((int64_t)b * rows + l) * hidden;
            float acc = 0.f;
            for (int c = 0; c < hidden; c++) acc += dpb[g * hidden + c] * zr[c];
            dal[g][l] = acc;
        }
        __syncthreads();
        for (int g = 0; g < glimpses; g++) {
            float s = 0.f;
            for (int l = threadIdx.x; l < rows; l += MCF_BLOCK) s += al[g * rows + l] * dal[g][l];
            s = bf_block_reduce(red, s, 0, MCF_BLOCK);
            for (int l = threadIdx.x; l < rows; l += MCF_BLOCK) dal[g][l] = al[g * rows + l] * (dal[g][l] - s);
            __syncthreads();
        }
        // da, 0 for the padded rows (a masked logit is a constant) and for every row of an empty sample
        if (threadIdx.x == 0) {
            int next = 0;
            for (int l = 0; l < rows; l++) {
                const bool real = n > 0 && mcf_real(idx, n, masked, l, &next);
                for (int g = 0; g < glimpses; g++) da[((int64_t)b * rows + l) * glimpses + g] = real ? dal[g][l] : 0.f;
            }
        }
        for (int t = threadIdx.x; t < rows * hidden; t += MCF_BLOCK) {
            const int l = t / hidden, c = t % hidden;
            float acc = 0.f;
            for (int g = 0; g < glimpses; g++) acc += al[g * rows + l] * dpb[g * hidden + c];
            dz[((int64_t)b * rows + l) * hidden + c] = acc;
        }
        __syncthreads(); // the next sample rewrites dal
    }
}
