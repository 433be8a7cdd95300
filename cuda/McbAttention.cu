// McbAttention: MCB attention (Fukui et al. 2016), the kernels between the cuBLAS GEMMs of
// io.bifuse.cuda.McbAttentionCuda, forward and backward.
//
// Math (spec §1), per sample b and cell s < L (row c = b L + s of the B L cells), glimpse g < G:
//   z_c = MCB(q_b, I_c)  (d1)        u_c = ssqrt(z_c) or z_c        ss_c = sum_j u_c[j]^2
//   inv_c = l2 scale of ss_c (scope CELL) or of sum_s ss_{b,s} (scope MAP, one per sample)
//   P_c = W1 u_c (GEMM, H)           h_c = relu(inv_c P_c + b1)     A_c = W2 h_c (GEMM, G)
//   logits[b, g, s] = A_c[g] + b2[g]  -> MlbAttention.cu's mlb_att_pool: alpha, vhat = sum_s alpha I
//   then MCB(vhat, q), ssqrt, l2 and the answer layer: CompactBilinearCuda and LinearCuda.
// The backward's cell kernel pools each cell with its question in one sequence (Psi_q + i Psi_I), so one
// inverse transform gives both sketch gradients (bifuse_cbp.cuh's cbp_fused_correlate): 5 FFTs per cell.
// Backward (given dvhat from the fusion's backward, dalpha = dvhat I^T and dI = alpha^T dvhat by GEMMs):
//   da = alpha (dalpha - sum_s alpha dalpha)       (mcb_att_softmax_backward, written c-major: B L x G)
//   dh = da W2 (GEMM); dp = dh [h > 0]; dps = inv dp; pd_c = <P_c, dp_c>      (mcb_att_hidden_backward)
//   dW1 = sum_c dps_c u_c^T, dt_c = W1^T dp_c (GEMMs, chunked); the l2 step's coefficient on u:
//   coef_c = active ? inv^2 <u, dt> : 0 with <u_c, dt_c> = pd_c (summed over the sample's cells for MAP)
//   dz_c = bf_norm_grad(z_c, dt_c, inv_c, coef_c) then the MCB backward of cell c (cbp_fused_correlate):
//   dI_c += s2 . Im(..)[ph2],  dq_b += sum_s s1 . Re(..)[ph1]  (partials per cell, summed in cell order).
//
// Shapes (row-major floats): q B x Dq; image B x L x Dv; U (the chunk's u rows) R x d1; P, H, dp, dps
// B L x H; ss (double), inv, active, pd, coef: B L; A, da: B L x G; logits, alpha: B x G x L.
//
// Never written: the B x L x d1 pooled map. Cells go through mcb_att_cells_forward and the P GEMM in
// chunks of R rows (R from the caller's workspace budget), and the backward recomputes each chunk's u
// (for dW1) and z (for the signed sqrt's derivative) instead of storing them.
//
// Kernels:
//   mcb_att_question_spectrum  one block per sample: qhat_b = FFT(Psi(q_b)), natural order, B x d1 complex:
//                           the question is sketched and transformed once per sample, never per cell.
//   mcb_att_cells_forward   one block per PAIR of cells of the chunk (grid-stride): both cells' sketches
//                           as one complex sequence in dynamic shared memory, one in-block FFT, the two
//                           spectra separated and multiplied by their samples' qhat, one inverse FFT
//                           giving both z (real and imaginary parts), then u (natural order) and ss_c.
//                           8 d1 bytes of dynamic shared memory, MCBA_BLOCK threads.
//   mcb_att_inv             inv_c and active_c, one thread per cell.                      block 256
//   mcb_att_hidden          h = relu(inv P + b1), elementwise.                              grid-stride
//   mcb_att_logits          logits[b, g, s] = A[c, g] + b2[g].                               grid-stride
//   mcb_att_softmax_backward  one thread per (b, g): the sum over s, then da for each s.    block 256
//   mcb_att_hidden_backward one block per cell row: dp, dps, and pd_c (fixed-tree double sum).  block 256
//   mcb_att_coef            coef_c, one thread per cell.                                    block 256
//   mcb_att_cells_backward  one block per cell of the chunk: z again, dz, G, C, the correlation, the
//                           gathers (dI_c added, dq partial row written). 12 d1 + 8 bytes of dynamic
//                           shared memory.
//   mcb_att_dq_accumulate   dq[b] += the chunk's partial rows of sample b, in cell order.   grid-stride
//
// Bytes and FLOPs per call (B L = N cells; 4-byte floats): question_spectrum reads 4 B Dq, writes 8 B d1,
// one FFT per sample; cells_forward reads 4 N Dv + 8 N d1 (qhat, cached: L cells share it) + its tables,
// writes 4 R d1 per chunk (4 N d1 in all), one complex FFT per cell (~5 d1 log2 d1 FLOPs each);
// the P GEMM 2 N d1 H FLOPs. Backward: cells_forward again, the dW1 and dt GEMMs (4 N d1 H FLOPs),
// cells_backward ~5 FFTs per cell, reading 4 R d1 (dt) and writing 4 N (Dv + Dq); the rest is
// O(N (H + G)) bytes.
#include "bifuse_cbp.cuh"

#define MCBA_BLOCK 512   // the fused cell kernels (CBP_FUSED_BLOCK)
#define MCBA_SMALL 256   // the row kernels

// One block per sample: qhat[b] = FFT(Psi_q[b]) in natural order, the question's spectrum that every cell
// of the sample multiplies (computed once per sample, never per cell).
extern "C" __global__ void __launch_bounds__(MCBA_BLOCK) mcb_att_question_spectrum(const float* __restrict__ q, float2* __restrict__ qhat,
        const int* __restrict__ bin_start_q, const int* __restrict__ bin_index_q, const float* __restrict__ bin_sign_q,
        const int* __restrict__ perm, const float2* __restrict__ tw, const int* __restrict__ radix, int batch, int dq, int d, int stages) {
    BF_DYNAMIC_SHARED(float2, a);
    for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
        const float* qr = q + b * dq;
        for (int j = threadIdx.x; j < d; j += blockDim.x) a[perm[j]] = make_float2(cbp_sketch_bin(qr, bin_start_q, bin_index_q, bin_sign_q, j), 0.f);
        __syncthreads();
        bf_fft(a, radix, stages, tw, d, 1, 0);
        float2* out = qhat + b * d;
        for (int k = threadIdx.x; k < d; k += blockDim.x) out[k] = a[k];
        __syncthreads();
    }
}

struct McbAttCellsForwardParams {
    const float* image;
    const float2* qhat;
    float* u;
    double* ss;
    const int* bin_start_i;
    const int* bin_index_i;
    const float* bin_sign_i;
    const int* perm;
    const float2* tw;
    const int* radix;
    int r0, rows, cells, dv, d, stages, signed_sqrt;
};

// Cells r0 .. r0 + rows of the B L, two per block and per FFT: u[(c - r0) d + n] and ss[c].
//   a = Psi(I_c) + i Psi(I_c+1) at pos(), C = FFT(a), X and Y separated over the pairs (k, d-k), then
//   W = X qhat_b / d + i Y qhat_b' / d (b, b' the two cells' samples) and IFFT(W) = z_c + i z_c+1.
extern "C" __global__ void __launch_bounds__(MCBA_BLOCK) mcb_att_cells_forward(const McbAttCellsForwardParams prm) {
    const float* __restrict__ image = prm.image;
    const float2* __restrict__ qhat = prm.qhat;
    float* __restrict__ u = prm.u;
    double* __restrict__ ss = prm.ss;
    const int* __restrict__ bin_start_i = prm.bin_start_i;
    const int* __restrict__ bin_index_i = prm.bin_index_i;
    const float* __restrict__ bin_sign_i = prm.bin_sign_i;
    const int* __restrict__ perm = prm.perm;
    const float2* __restrict__ tw = prm.tw;
    const int* __restrict__ radix = prm.radix;
    const int r0 = prm.r0, rows = prm.rows, cells = prm.cells, dv = prm.dv, d = prm.d, stages = prm.stages;
    const int signed_sqrt = prm.signed_sqrt;
    BF_DYNAMIC_SHARED(float2, a);
    const float scale = 1.f / d;
    for (int64_t pr = blockIdx.x; pr < (rows + 1) / 2; pr += gridDim.x) {
        const int64_t r = 2 * pr, c = r0 + r;
        const bool two = r + 1 < rows;
        const float* i0 = image + c * dv;
        const float* i1 = i0 + dv;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            a[perm[j]] = make_float2(cbp_sketch_bin(i0, bin_start_i, bin_index_i, bin_sign_i, j),
                                     two ? cbp_sketch_bin(i1, bin_start_i, bin_index_i, bin_sign_i, j) : 0.f);
        __syncthreads();
        bf_fft(a, radix, stages, tw, d, 1, 0);
        const float2* q0 = qhat + c / cells * d;
        const float2* q1 = qhat + (two ? (c + 1) / cells : c / cells) * d;
        for (int k = threadIdx.x; k <= d / 2; k += blockDim.x) {
            const int k2 = k == 0 ? 0 : d - k;
            const float2 cc = a[k], e = a[k2];
            const float2 x = make_float2((cc.x + e.x) * 0.5f, (cc.y - e.y) * 0.5f);  // the first cell's spectrum at k
            const float2 y = make_float2((cc.y + e.y) * 0.5f, (e.x - cc.x) * 0.5f);  // the second's: (c - conj e) / 2i
            const float2 z0 = bf_cmul(x, q0[k]), z1 = bf_cmul(y, q1[k]);
            a[k] = make_float2((z0.x - z1.y) * scale, (z0.y + z1.x) * scale);        // z0 + i z1
            if (k2 != k) a[k2] = make_float2((z0.x + z1.y) * scale, (z1.x - z0.y) * scale);  // conj z0 + i conj z1
        }
        __syncthreads();
        bf_fft(a, radix, stages, tw, d, 0, 1);
        float* u0 = u + r * d;
        float* u1 = u0 + d;
        double p0 = 0.0, p1 = 0.0;
        for (int n = threadIdx.x; n < d; n += blockDim.x) {
            const float2 z = a[perm[n]];
            const float v0 = signed_sqrt ? bf_ssqrt(z.x) : z.x, v1 = signed_sqrt ? bf_ssqrt(z.y) : z.y;
            u0[n] = v0;
            p0 += (double)v0 * v0;
            if (two) {
                u1[n] = v1;
                p1 += (double)v1 * v1;
            }
        }
        const double2 sums = bf_block_sum2<MCBA_BLOCK>(p0, p1);  // ends with a barrier: a may be overwritten next
        if (threadIdx.x == 0) {
            ss[c] = sums.x;
            if (two) ss[c + 1] = sums.y;
        }
    }
}

// inv[c], active[c] (1 or 0) by l2_mode (io.bifuse.Normalization.L2.code()) over scope 0 = CELL, 1 = MAP.
extern "C" __global__ void mcb_att_inv(const double* __restrict__ ss, float* __restrict__ inv, float* __restrict__ active, int batch,
                                       int cells, int scope, int l2_mode, float l2_eps) {
    const int64_t total = (int64_t)batch * cells;
    for (int64_t c = bf_tid(); c < total; c += bf_stride()) {
        double sum = 0.0;
        if (scope == 0) {
            sum = ss[c];
        } else {
            const int64_t first = c / cells * cells;
            for (int s = 0; s < cells; ++s) sum += ss[first + s];  // the same order in every cell of the sample
        }
        int on;
        inv[c] = bf_inv_norm(sum, l2_mode, l2_eps, &on);
        active[c] = on ? 1.f : 0.f;
    }
}

// h[c, j] = relu(inv[c] P[c, j] + b1[j]) over rows x hdim.
extern "C" __global__ void mcb_att_hidden(const float* __restrict__ P, const float* __restrict__ inv, const float* __restrict__ b1,
                                          float* __restrict__ h, int rows, int hdim) {
    const int64_t total = (int64_t)rows * hdim;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t c = t / hdim;
        const float p = fmaf(inv[c], P[t], b1[t - c * hdim]);
        h[t] = p > 0.f ? p : 0.f;
    }
}

// logits[(b G + g) L + s] = A[(b L + s) G + g] + b2[g].
extern "C" __global__ void mcb_att_logits(const float* __restrict__ A, const float* __restrict__ b2, float* __restrict__ logits,
                                          int batch, int cells, int G) {
    const int64_t total = (int64_t)batch * G * cells;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / ((int64_t)G * cells);
        const int rest = (int)(t - b * G * cells), g = rest / cells, s = rest - g * cells;
        logits[t] = A[(b * cells + s) * G + g] + b2[g];
    }
}

// da[(b L + s) G + g] = alpha (dalpha - sum_t alpha dalpha), alpha and dalpha B x G x L.
extern "C" __global__ void mcb_att_softmax_backward(const float* __restrict__ alpha, const float* __restrict__ dalpha,
                                                    float* __restrict__ da, int batch, int cells, int G) {
    const int64_t total = (int64_t)batch * G;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / G;
        const int g = (int)(t - b * G);
        const float* al = alpha + t * cells;
        const float* dl = dalpha + t * cells;
        float dot = 0.f;
        for (int s = 0; s < cells; ++s) dot = fmaf(al[s], dl[s], dot);
        for (int s = 0; s < cells; ++s) da[(b * cells + s) * G + g] = al[s] * (dl[s] - dot);
    }
}

// One block per row c: dp = dh [h > 0], dps = inv dp, pd[c] = <P_c, dp_c>.
extern "C" __global__ void mcb_att_hidden_backward(const float* __restrict__ dh, const float* __restrict__ h, const float* __restrict__ P,
                                                   const float* __restrict__ inv, float* __restrict__ dp, float* __restrict__ dps,
                                                   float* __restrict__ pd, int rows, int hdim) {
    for (int64_t c = blockIdx.x; c < rows; c += gridDim.x) {
        const float sc = inv[c];
        double part = 0.0;
        for (int j = threadIdx.x; j < hdim; j += blockDim.x) {
            const int64_t at = c * hdim + j;
            const float g = h[at] > 0.f ? dh[at] : 0.f;
            dp[at] = g;
            dps[at] = g * sc;
            part += (double)P[at] * g;
        }
        const double sum = bf_block_sum<MCBA_SMALL>(part);
        if (threadIdx.x == 0) pd[c] = (float)sum;
    }
}

// coef[c] = active ? inv^2 <u, dt> : 0, <u, dt> = pd[c] (CELL) or the sample's sum of pd (MAP).
extern "C" __global__ void mcb_att_coef(const float* __restrict__ pd, const float* __restrict__ inv, const float* __restrict__ active,
                                        float* __restrict__ coef, int batch, int cells, int scope) {
    const int64_t total = (int64_t)batch * cells;
    for (int64_t c = bf_tid(); c < total; c += bf_stride()) {
        double dot = 0.0;
        if (scope == 0) {
            dot = pd[c];
        } else {
            const int64_t first = c / cells * cells;
            for (int s = 0; s < cells; ++s) dot += pd[first + s];
        }
        const double iv = inv[c];
        coef[c] = active[c] != 0.f ? (float)(dot * iv * iv) : 0.f;
    }
}

struct McbAttCellsBackwardParams {
    const float* q;
    const float* image;
    const float* dt;
    const float* inv;
    const float* coef;
    float* dimage;
    float* dq_part;
    const int* bin_start_q;
    const int* bin_index_q;
    const float* bin_sign_q;
    const int* bin_start_i;
    const int* bin_index_i;
    const float* bin_sign_i;
    const int* ph_q;
    const float* s_q;
    const int* ph_i;
    const float* s_i;
    const int* perm;
    const float2* tw;
    const int* radix;
    int r0, rows, cells, dq, dv, d, stages, signed_sqrt;
    float ssqrt_eps;  // last, after an even number of ints: nvcc may load neighbouring fields as one vector
};

// Cells r0 .. r0 + rows: dimage[c] += the pooling's gradient, dq_part[c - r0] = its q gradient.
extern "C" __global__ void __launch_bounds__(MCBA_BLOCK) mcb_att_cells_backward(const McbAttCellsBackwardParams prm) {
    const float* __restrict__ q = prm.q;
    const float* __restrict__ image = prm.image;
    const float* __restrict__ dt = prm.dt;
    const float* __restrict__ inv = prm.inv;
    const float* __restrict__ coef = prm.coef;
    float* __restrict__ dimage = prm.dimage;
    float* __restrict__ dq_part = prm.dq_part;
    const int* __restrict__ bin_start_q = prm.bin_start_q;
    const int* __restrict__ bin_index_q = prm.bin_index_q;
    const float* __restrict__ bin_sign_q = prm.bin_sign_q;
    const int* __restrict__ bin_start_i = prm.bin_start_i;
    const int* __restrict__ bin_index_i = prm.bin_index_i;
    const float* __restrict__ bin_sign_i = prm.bin_sign_i;
    const int* __restrict__ ph_q = prm.ph_q;
    const float* __restrict__ s_q = prm.s_q;
    const int* __restrict__ ph_i = prm.ph_i;
    const float* __restrict__ s_i = prm.s_i;
    const int* __restrict__ perm = prm.perm;
    const float2* __restrict__ tw = prm.tw;
    const int* __restrict__ radix = prm.radix;
    const int r0 = prm.r0, rows = prm.rows, cells = prm.cells, dq = prm.dq, dv = prm.dv, d = prm.d, stages = prm.stages;
    const int signed_sqrt = prm.signed_sqrt;
    const float ssqrt_eps = prm.ssqrt_eps;
    BF_DYNAMIC_SHARED(float2, a);
    float2* gh = a + d;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t c = r0 + r, b = c / cells;
        const float* qr = q + b * dq;
        const float* ir = image + c * dv;
        cbp_fused_sketch(a, qr, ir, perm, bin_start_q, bin_index_q, bin_sign_q, bin_start_i, bin_index_i, bin_sign_i, d);
        cbp_fused_convolve(a, radix, stages, tw, d);
        const float iv = inv[c], cf = coef[c];
        const float* dtr = dt + r * d;
        for (int n = threadIdx.x; n < d; n += blockDim.x) {  // each thread rewrites only what it read
            const int at = perm[n];
            a[at] = make_float2(bf_norm_grad(a[at].x, dtr[n], iv, cf, signed_sqrt, ssqrt_eps), 0.f);
        }
        __syncthreads();
        cbp_fused_correlate(a, gh, qr, ir, perm, bin_start_q, bin_index_q, bin_sign_q, bin_start_i, bin_index_i, bin_sign_i, radix,
                            stages, tw, d);
        float* dir = dimage + c * dv;
        float* dqr = dq_part + r * dq;
        for (int i = threadIdx.x; i < dv; i += blockDim.x) dir[i] += s_i[i] * a[ph_i[i]].y;
        for (int i = threadIdx.x; i < dq; i += blockDim.x) dqr[i] = s_q[i] * a[ph_q[i]].x;
        __syncthreads();
    }
}

// dq[b, i] += sum over the chunk's cells c of sample b (ascending) of dq_part[c - r0, i].
extern "C" __global__ void mcb_att_dq_accumulate(const float* __restrict__ dq_part, float* __restrict__ dqo, int r0, int rows, int cells,
                                                 int dq) {
    const int64_t first = r0 / cells, last = (r0 + rows - 1) / cells;  // the samples the chunk touches
    const int64_t total = (last - first + 1) * dq;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = first + t / dq;
        const int i = (int)(t % dq);
        const int64_t c0 = b * cells > r0 ? b * cells : r0, c1 = (b + 1) * cells < (int64_t)r0 + rows ? (b + 1) * cells : (int64_t)r0 + rows;
        float acc = dqo[b * dq + i];
        for (int64_t c = c0; c < c1; ++c) acc += dq_part[(c - r0) * dq + i];
        dqo[b * dq + i] = acc;
    }
}
