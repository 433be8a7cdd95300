// Block: BLOCK, the block-superdiagonal fusion (Ben-younes et al. 2019, block.bootstrap's fusions.Block),
// and MUTAN (its one-chunk case: MutanCuda runs Mutan.asBlock() here): the rank-R cores between the GEMMs.
//
// Math (io.bifuse.Block; M = mm_dim cut into C chunks, chunk c of s_c units at offset o_c, R = rank):
//   x~ = x W0^T + b0, y~ = y W1^T + b1                         (B x M)       cuBLAS + lin_bias_act
//   p_c = x~[o_c, o_c + s_c) A_c^T + a_c, q_c likewise          (B x R s_c)   cuBLAS + lin_bias_act
//   z[o_c + j] = sum_{r<R} p_c[r s_c + j] q_c[r s_c + j]        (B x M)       block_core_forward
//   normalize per chunk (before_cat) or per row (after_cat)     nseg_forward (Normalization.cu)
//   f = z^ W_out^T + b_out                                      (B x Out)     cuBLAS + lin_bias_act
// Backward, gz = dL/dz (after the normalization's backward):
//   gp_c[r s_c + j] = gz[o_c + j] q_c[r s_c + j],  gq_c[r s_c + j] = gz[o_c + j] p_c[r s_c + j]   block_core_backward
// then every layer's dW = g^T in, db = colsum g, g_in = g W (cuBLAS, lin_bias_grad_tiled).
//
// Shapes (row-major): P, Q: rows x R*M, chunk c's p_c at columns [R o_c, R (o_c + s_c)) (the merge
// layers' GEMMs write there, each into its column window). z, gz: rows x M. unit_chunk: M ints, the
// chunk of each unit; seg: C + 1 ints, the chunks' offsets (seg[C] = M). Both uploaded once per op.
//
// Launch geometry: one thread per (row, unit), grid-stride over 64-bit indices, block 256, grid
// min(ceil(BM/256), the device's cap). Consecutive threads take consecutive units of a row: within a
// chunk their p, q, z and gz accesses are consecutive (coalesced), R strided passes of s_c floats.
// The core sums r in order in float (as the CPU path does); no shared memory, no atomics: deterministic.
//   block_core_forward   reads 8 B R M bytes, writes 4 B M; 2 B R M FLOPs.
//   block_core_backward  reads 8 B R M + 4 B M, writes 8 B R M IN PLACE over P and Q; 2 B R M FLOPs.
// The GEMMs dominate: forward 2BM(Dx + Dy) + 4 B R M s (merges, s ~ M/C) + 2 B M Out FLOPs, backward
// twice that plus the recomputed forward.
#include "bifuse_device.cuh"

extern "C" __global__ void block_core_forward(const float* __restrict__ P, const float* __restrict__ Q, float* __restrict__ z,
                                              const int* __restrict__ unit_chunk, const int* __restrict__ seg, int rows, int m, int rank) {
    const int64_t total = (int64_t)rows * m;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / m;
        const int u = (int)(t - b * m);
        const int c = unit_chunk[u], o = seg[c], s = seg[c + 1] - o;
        const int64_t at = b * ((int64_t)rank * m) + (int64_t)rank * o + (u - o);
        float acc = P[at] * Q[at];
        for (int r = 1; r < rank; ++r) acc += P[at + (int64_t)r * s] * Q[at + (int64_t)r * s];
        z[t] = acc;
    }
}

extern "C" __global__ void block_core_backward(float* __restrict__ P, float* __restrict__ Q, const float* __restrict__ gz,
                                               const int* __restrict__ unit_chunk, const int* __restrict__ seg, int rows, int m, int rank) {
    const int64_t total = (int64_t)rows * m;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / m;
        const int u = (int)(t - b * m);
        const int c = unit_chunk[u], o = seg[c], s = seg[c + 1] - o;
        const int64_t at = b * ((int64_t)rank * m) + (int64_t)rank * o + (u - o);
        const float g = gz[t];
        for (int r = 0; r < rank; ++r) {
            const int64_t i = at + (int64_t)r * s;
            const float p = P[i], q = Q[i];
            P[i] = g * q;
            Q[i] = g * p;
        }
    }
}
