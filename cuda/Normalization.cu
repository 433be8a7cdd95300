// Normalization over SEGMENTS of a row: io.bifuse.Normalization (optional signed sqrt, then optional l2)
// applied to each of a row's segments separately. The block.bootstrap fusions normalize either the whole
// core (one segment: MUTAN, Tucker, LinearSum, BLOCK 'after_cat') or each chunk's core on its own
// (BLOCK and BlockTucker 'before_cat', one segment per chunk); one kernel pair covers both.
//
// Math, per row b and segment [s0, s1) of its m units (u = ssqrt(z) with signed sqrt, else z):
//   forward   out = u * inv,   inv = 1 / max(|u|, eps) (PyTorch) or (|u|^2 + eps)^-1/2 (Caffe), or 1
//   backward  gz = bf_norm_grad: inv (g - <u, g> inv^2 u) through l2, then * 0.5 / (sqrt|z| + eps)
//             through the signed sqrt (0 where that is 0), exactly as cbp_normalize_backward.
// Shapes: z, out, g, gz: rows x m, row-major (row stride m). seg: nseg + 1 int offsets, seg[0] = 0,
// seg[nseg] = m, increasing (NormalizationCuda uploads them once per op).
//
// Launch geometry: grid (nseg, min(rows, 65535)), block NSEG_BLOCK = 256: block (c, y) owns segment c of
// rows y, y + gridDim.y, ...; its threads stride the segment's units (coalesced), the sums of squares
// (and of u*g) are taken in double, per thread in order, then in bf_block_sum2's fixed tree:
// deterministic. out may alias z, gz may alias g (each element is read before it is written by the
// same thread, and the sums are complete before any write).
//
// Bytes and FLOPs per call (B rows of m units): forward reads 4Bm twice (sums, then values), writes
// 4Bm, ~5Bm FLOPs; backward reads z and g twice (8Bm each pass), writes 4Bm, ~12Bm FLOPs. Next to the
// GEMMs of the fusions around it (2BmK for K-wide layers, K in the hundreds or thousands) this is noise.
#include "bifuse_device.cuh"

#define NSEG_BLOCK 256

extern "C" __global__ void nseg_forward(const float* z, float* out, const int* __restrict__ seg, int rows, int m,
                                        int signed_sqrt, int l2_mode, float l2_eps) {
    const int s0 = seg[blockIdx.x], s1 = seg[blockIdx.x + 1];
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const float* zr = z + b * m;
        float* orow = out + b * m;
        double ss = 0.0;
        if (l2_mode != 0) {
            for (int j = s0 + threadIdx.x; j < s1; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
            }
        }
        int active;
        const float inv = bf_inv_norm(bf_block_sum2<NSEG_BLOCK>(ss, 0.0).x, l2_mode, l2_eps, &active);
        for (int j = s0 + threadIdx.x; j < s1; j += blockDim.x) {
            const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
            orow[j] = u * inv;
        }
    }
}

extern "C" __global__ void nseg_backward(const float* __restrict__ z, const float* g, float* gz, const int* __restrict__ seg, int rows,
                                         int m, int signed_sqrt, float ssqrt_eps, int l2_mode, float l2_eps) {
    const int s0 = seg[blockIdx.x], s1 = seg[blockIdx.x + 1];
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const float* zr = z + b * m;
        const float* gr = g + b * m;
        float* outr = gz + b * m;
        double ss = 0.0, ug = 0.0;
        if (l2_mode != 0) {
            for (int j = s0 + threadIdx.x; j < s1; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
                ug += (double)u * gr[j];
            }
        }
        const double2 sums = bf_block_sum2<NSEG_BLOCK>(ss, ug);
        int active;
        const float inv = bf_inv_norm(sums.x, l2_mode, l2_eps, &active);
        const float coef = active ? (float)(sums.y * (double)inv * (double)inv) : 0.f;
        for (int j = s0 + threadIdx.x; j < s1; j += blockDim.x) outr[j] = bf_norm_grad(zr[j], gr[j], inv, coef, signed_sqrt, ssqrt_eps);
    }
}
