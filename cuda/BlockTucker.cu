// BlockTucker: block-superdiagonal Tucker fusion (block.bootstrap's fusions.BlockTucker), and Tucker (its
// one-chunk case: TuckerCuda runs Tucker.asBlockTucker() here): the outer products and contractions
// around each chunk's core GEMM.
//
// Math (io.bifuse.BlockTucker; chunk c of s units at offset o, core A_c s x s x s as nn.Bilinear):
//   U[r, i s + j] = x~[r, o + i] y~[r, o + j]              (n x s^2, rows [row0, row0 + n))   btucker_outer
//   z[r, o + k] = U[r] . A_c[k] + a_c[k]                    cuBLAS, A_c as an s x s^2 Linear
// Backward, gz = dL/dz (after the normalization's backward): dA_c = gz^T U (accumulated over the row
// blocks in order), gU = gz A_c (cuBLAS), then                                               btucker_contract
//   gx~[r, o + i] = sum_j gU[r, i s + j] y~[r, o + j],   gy~[r, o + j] = sum_i gU[r, i s + j] x~[r, o + i]
// The outer products are made for at most BlockTuckerCuda.MAX_OUTER floats of rows at a time.
//
// Shapes: xt, yt, gxt, gyt: rows x m (row stride m); U, gU: n x s*s dense.
// Launch geometry: one thread per output element, grid-stride over 64-bit indices, block 256.
//   btucker_outer     thread (r, i, j): consecutive threads consecutive j (coalesced U writes and y~
//                     reads, x~ broadcast). Reads ~8 n s^2 bytes (cached), writes 4 n s^2.
//   btucker_contract  thread (r, i): walks j for gx~ (U row i: consecutive threads read s floats apart)
//                     and i' for gy~ (U column i: consecutive threads read consecutive floats), in order,
//                     in float, as the CPU path. Reads 8 n s^2 bytes, writes 8 n s; 4 n s^2 FLOPs.
// The core GEMMs dominate: 2 B s^3 per chunk forward, 4 B s^3 backward (dA_c and gU).
#include "bifuse_device.cuh"

extern "C" __global__ void btucker_outer(const float* __restrict__ xt, const float* __restrict__ yt, float* __restrict__ U,
                                         int row0, int n, int m, int o, int s) {
    const int64_t s2 = (int64_t)s * s, total = (int64_t)n * s2;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t r = t / s2;
        const int k = (int)(t - r * s2), i = k / s, j = k - i * s;
        const int64_t row = (row0 + r) * (int64_t)m + o;
        U[t] = xt[row + i] * yt[row + j];
    }
}

extern "C" __global__ void btucker_contract(const float* __restrict__ gU, const float* __restrict__ xt, const float* __restrict__ yt,
                                            float* __restrict__ gxt, float* __restrict__ gyt, int row0, int n, int m, int o, int s) {
    const int64_t s2 = (int64_t)s * s, total = (int64_t)n * s;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t r = t / s;
        const int i = (int)(t - r * s);
        const int64_t row = (row0 + r) * (int64_t)m + o;
        const float* gu = gU + r * s2;
        float ax = 0.f, ay = 0.f;
        for (int j = 0; j < s; ++j) ax += gu[(int64_t)i * s + j] * yt[row + j];
        for (int k = 0; k < s; ++k) ay += gu[(int64_t)k * s + i] * xt[row + k];
        gxt[row + i] = ax;
        gyt[row + i] = ay;
    }
}
