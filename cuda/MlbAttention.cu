// MlbAttention: MLB attention (Kim et al. 2017), the fused kernels between the cuBLAS GEMMs of
// io.bifuse.cuda.MlbAttentionCuda, forward and backward.
//
// Math (spec §2), per sample b, sigma the activation (act: 0 none, 1 relu, 2 tanh):
//   q'    = sigma(W_q q + b_q)                  J      once per sample
//   v'_s  = sigma(W_v v_s + b_v)                J      per cell s < L
//   a_s   = W_a (q' * v'_s) + b_a               G      per cell
//   alpha = softmax over s of a_{s,g}           G x L
//   vh_g  = sum_s alpha_{g,s} v_s               G x Dv
//   z     = [sigma(W_g vh_g + b_g)]_g * sigma(W_f q + b_f)    G*J;   out = W_o z + b_o
//
// Shapes (row-major, floats): q B x Dq; v B x L x Dv; qp B x (J + GJ) = [q' | f] (the question and
// question-fusion layers are stacked into one (J + GJ) x Dq weight, so one GEMM projects both);
// pv B*L x J, the cells' projection: the only B x L x J tensor, written ONCE by its GEMM in the
// forward and never tiled with the question (the kernels read q'[b] as a broadcast row);
// logits, alpha B x G x L; vhat B x G x Dv; up B x GJ (glimpse projections, then z in place).
//
// Kernels (G <= MLBA_MAX_G: per-glimpse accumulators live in registers):
//   mlb_att_question    qp = sigma(qp + bias) in place over B x (J + GJ).      grid-stride, block 256
//   mlb_att_logits      one block per (b, group of MLBA_CELLS = 8 cells); 32 lanes per cell stride
//                       over j (coalesced rows of pv), h = q'[b,j] sigma(pv + b_v) never stored, G
//                       partial dots reduced through shared memory in a fixed tree. Writes only
//                       B x G x L logits.             units B*ceil(L/8), block 256 (8 cells x 32 lanes)
//   mlb_att_pool        one block per (b, 256 columns of Dv): softmax statistics over the L cells
//                       (block max and sum, fixed tree), alpha staged per tile of 32 cells in shared
//                       memory, each thread sums G glimpses of its column: v is read once. The blocks
//                       with column 0 also write alpha.                units B*ceil(Dv/256), block 256
//   mlb_att_fuse        z = sigma(up + b_g) * f, in place.                     grid-stride, block 256
//   backward:
//   mlb_att_fuse_backward   u, f, z recomputed; writes z, dp_u = dz f sigma'(u) (over up) and
//                       dp_f = dz u sigma'(f) into the dp buffer's columns [J, J + GJ).  block 256
//   mlb_att_cells_backward  one block per (b, 128 columns j), a loop over all L cells: the softmax
//                       Jacobian da = alpha (dalpha - sum_t alpha dalpha) (row sums per block, tiles
//                       of da in shared memory), v' recomputed from pv, dp_v = (sum_g da_g W_a[g,j]) q'
//                       sigma'(v') written over pv in place, and per (b, j) the sums over cells:
//                       dp_q = sigma'(q') sum_s dh v' (into dp's columns [0, J)), T_g = sum_s da_g v'
//                       stored as q' T_g (the logits-weight gradient's rows: dW_a = sum_b q' T) and
//                       sum_s dp_v (the cells-bias gradient's rows).    units B*ceil(J/128), block 128
//
// Bytes and FLOPs per call (B samples, L cells; 4-byte floats), the fused kernels only (the GEMMs are
// cuBLAS: M = B J Dq + B L J Dv + B G J Dv + B G J Dq + B Out G J multiply-adds in the forward):
//   question   reads + writes 4 B (J+GJ) each.     logits  reads 4 B L J (pv), writes 4 B G L; 2 B L J G FLOPs
//   pool       reads 4 B L Dv (v), 4 B G L; writes 4 B G Dv; 2 B G L Dv FLOPs.    fuse 12 B GJ bytes
//   backward:  fuse_backward reads 12 B GJ, writes 12 B GJ; cells_backward reads and writes 4 B L J
//              (pv -> dp_v) plus B (2J + GJ) outputs, ~(4G + 6) B L J FLOPs.
//   The B x L x J tensor is written once in the forward (the pv GEMM) and twice in the backward (the
//   recomputed pv GEMM, then dp_v in place, which the dW_v and dv GEMMs read).
//
// Parameters: mlb_att_cells_backward takes ONE struct by value (MlbAttCellsBackwardParams), as
// flash-attention's Flash_fwd_params: one kernelParams entry instead of 15. The others stay positional.
// The fields keep the former positional order in C layout (8-byte aligned; an int before a pointer leaves
// 4 bytes of padding), so the Java side's KernelSpec "{...}" lists them as the old signature did and the
// launch sites pass the same arguments; KernelCatalogTest checks that description against the PTX (the
// struct's .align and size, and the offset and width of every field the kernel loads). The kernel first
// copies the fields into __restrict__ locals of the old parameters' names: its body is unchanged.
#include "bifuse_device.cuh"

#define MLBA_MAX_G 16
#define MLBA_BLOCK 256        // elementwise kernels, logits, pool
#define MLBA_CELLS 8          // cells per logits block: MLBA_BLOCK / MLBA_LANES
#define MLBA_LANES 32         // threads per cell in mlb_att_logits
#define MLBA_TILE 32          // cells per shared-memory tile of alpha / da
#define MLBA_BWD_BLOCK 128    // mlb_att_cells_backward

extern "C" __global__ void mlb_att_question(float* __restrict__ qp, const float* __restrict__ bias, int rows, int cols, int act) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int c = (int)(t % cols);
        qp[t] = bf_act(qp[t] + bias[c], act);
    }
}

// pv: B*L x J (pre-activation, no bias); qa: B rows of stride ldq, q' in columns [0, J).
extern "C" __global__ void mlb_att_logits(const float* __restrict__ pv, const float* __restrict__ cell_bias,
                                          const float* __restrict__ qa, int ldq, const float* __restrict__ wa,
                                          const float* __restrict__ ba, float* __restrict__ logits,
                                          int batch, int cells, int J, int G, int act) {
    __shared__ float red[MLBA_BLOCK];
    const int groups = (cells + MLBA_CELLS - 1) / MLBA_CELLS;
    const int lane = threadIdx.x % MLBA_LANES, c = threadIdx.x / MLBA_LANES;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * groups; unit += gridDim.x) {
        const int64_t b = unit / groups;
        const int s = (int)(unit - b * groups) * MLBA_CELLS + c;
        float acc[MLBA_MAX_G];
#pragma unroll
        for (int g = 0; g < MLBA_MAX_G; ++g) acc[g] = 0.f;
        if (s < cells) {
            const float* row = pv + (b * cells + s) * J;
            const float* qrow = qa + b * ldq;
            for (int j = lane; j < J; j += MLBA_LANES) {
                const float h = qrow[j] * bf_act(row[j] + cell_bias[j], act);
#pragma unroll
                for (int g = 0; g < MLBA_MAX_G; ++g)
                    if (g < G) acc[g] = fmaf(wa[(int64_t)g * J + j], h, acc[g]);
            }
        }
        for (int g = 0; g < G; ++g) {
            float a = 0.f;
#pragma unroll
            for (int k = 0; k < MLBA_MAX_G; ++k)
                if (k == g) a = acc[k];
            red[threadIdx.x] = a;
            __syncthreads();
            for (int w = MLBA_LANES / 2; w > 0; w >>= 1) {
                if (lane < w) red[threadIdx.x] += red[threadIdx.x + w];
                __syncthreads();
            }
            if (lane == 0 && s < cells) logits[(b * G + g) * cells + s] = red[threadIdx.x] + ba[g];
            __syncthreads();
        }
    }
}

// logits, alpha: B x G x L; v: B x L x Dv; vhat: B x G x Dv.
extern "C" __global__ void mlb_att_pool(const float* __restrict__ logits, const float* __restrict__ v, float* __restrict__ alpha,
                                        float* __restrict__ vhat, int batch, int cells, int dv, int G) {
    __shared__ float red[MLBA_BLOCK];
    __shared__ float mx[MLBA_MAX_G], inv[MLBA_MAX_G];
    __shared__ float tile[MLBA_MAX_G][MLBA_TILE];
    const int chunks = (dv + MLBA_BLOCK - 1) / MLBA_BLOCK;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * chunks; unit += gridDim.x) {
        const int64_t b = unit / chunks;
        const int chunk = (int)(unit - b * chunks);
        const int d = chunk * MLBA_BLOCK + threadIdx.x;
        for (int g = 0; g < G; ++g) {
            const float* a = logits + (b * G + g) * cells;
            float m = -INFINITY;
            for (int s = threadIdx.x; s < cells; s += MLBA_BLOCK) m = fmaxf(m, a[s]);
            m = bf_block_reduce(red, m, 1, MLBA_BLOCK);
            float z = 0.f;
            for (int s = threadIdx.x; s < cells; s += MLBA_BLOCK) z += expf(a[s] - m);
            z = bf_block_reduce(red, z, 0, MLBA_BLOCK);
            if (threadIdx.x == 0) { mx[g] = m; inv[g] = 1.f / z; }
        }
        __syncthreads();
        float acc[MLBA_MAX_G];
#pragma unroll
        for (int g = 0; g < MLBA_MAX_G; ++g) acc[g] = 0.f;
        for (int s0 = 0; s0 < cells; s0 += MLBA_TILE) {
            const int n = cells - s0 < MLBA_TILE ? cells - s0 : MLBA_TILE;
            for (int i = threadIdx.x; i < G * MLBA_TILE; i += MLBA_BLOCK) {
                const int g = i / MLBA_TILE, c = i % MLBA_TILE;
                if (c < n) {
                    const int64_t at = (b * G + g) * cells + s0 + c;
                    const float p = expf(logits[at] - mx[g]) * inv[g];
                    tile[g][c] = p;
                    if (chunk == 0) alpha[at] = p;
                }
            }
            __syncthreads();
            if (d < dv) {
                const float* col = v + (b * cells + s0) * dv + d;
                for (int c = 0; c < n; ++c) {
                    const float x = col[(int64_t)c * dv];
#pragma unroll
                    for (int g = 0; g < MLBA_MAX_G; ++g)
                        if (g < G) acc[g] = fmaf(tile[g][c], x, acc[g]);
                }
            }
            __syncthreads();
        }
        if (d < dv) {
#pragma unroll
            for (int g = 0; g < MLBA_MAX_G; ++g)
                if (g < G) vhat[(b * G + g) * dv + d] = acc[g];
        }
    }
}

// up: B x gj glimpse pre-activations (no bias), overwritten with z; f = qa[b, f_off + k] (activated).
extern "C" __global__ void mlb_att_fuse(float* __restrict__ up, const float* __restrict__ glimpse_bias, const float* __restrict__ qa,
                                        int ldq, int f_off, int batch, int gj, int act) {
    const int64_t total = (int64_t)batch * gj;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / gj;
        const int k = (int)(t - b * gj);
        up[t] = bf_act(up[t] + glimpse_bias[k], act) * qa[b * ldq + f_off + k];
    }
}

// up: in, glimpse pre-activations; out, dp_u. dz: B x gj. z: B x gj (out). dp: B rows of stride ldq,
// dp_f written at columns [f_off, f_off + gj).
extern "C" __global__ void mlb_att_fuse_backward(float* __restrict__ up, const float* __restrict__ glimpse_bias,
                                                 const float* __restrict__ qa, int ldq, int f_off, const float* __restrict__ dz,
                                                 float* __restrict__ z, float* __restrict__ dp, int batch, int gj, int act) {
    const int64_t total = (int64_t)batch * gj;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / gj;
        const int k = (int)(t - b * gj);
        const float u = bf_act(up[t] + glimpse_bias[k], act), f = qa[b * ldq + f_off + k], g = dz[t];
        z[t] = u * f;
        up[t] = g * f * bf_act_grad(u, act);
        dp[b * ldq + f_off + k] = g * u * bf_act_grad(f, act);
    }
}

// pv: in, the cells' pre-activations (B*L x J); out, dp_v. alpha, dalpha: B x G x L. dp: dp_q at
// columns [0, J) of rows of stride ldq. tq: B x G x J (q' T). dbv: B x J (sum over cells of dp_v).
struct MlbAttCellsBackwardParams {
    float* pv;
    const float* cell_bias;
    const float* qa;
    int ldq;
    const float* wa;
    const float* alpha;
    const float* dalpha;
    float* dp;
    float* tq;
    float* dbv;
    int batch, cells, J, G, act;
};

extern "C" __global__ void mlb_att_cells_backward(const MlbAttCellsBackwardParams prm) {
    float* __restrict__ pv = prm.pv;
    const float* __restrict__ cell_bias = prm.cell_bias;
    const float* __restrict__ qa = prm.qa;
    const int ldq = prm.ldq;
    const float* __restrict__ wa = prm.wa;
    const float* __restrict__ alpha = prm.alpha;
    const float* __restrict__ dalpha = prm.dalpha;
    float* __restrict__ dp = prm.dp;
    float* __restrict__ tq = prm.tq;
    float* __restrict__ dbv = prm.dbv;
    const int batch = prm.batch, cells = prm.cells, J = prm.J, G = prm.G, act = prm.act;
    __shared__ float red[MLBA_BWD_BLOCK];
    __shared__ float cg[MLBA_MAX_G];
    __shared__ float tile[MLBA_MAX_G][MLBA_TILE];
    const int chunks = (J + MLBA_BWD_BLOCK - 1) / MLBA_BWD_BLOCK;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * chunks; unit += gridDim.x) {
        const int64_t b = unit / chunks;
        const int j = (int)(unit - b * chunks) * MLBA_BWD_BLOCK + threadIdx.x;
        for (int g = 0; g < G; ++g) {
            const int64_t row = (b * G + g) * cells;
            float c = 0.f;
            for (int s = threadIdx.x; s < cells; s += MLBA_BWD_BLOCK) c = fmaf(alpha[row + s], dalpha[row + s], c);
            c = bf_block_reduce(red, c, 0, MLBA_BWD_BLOCK);
            if (threadIdx.x == 0) cg[g] = c;
        }
        __syncthreads();
        const bool live = j < J;
        const float qv = live ? qa[b * ldq + j] : 0.f, bias = live ? cell_bias[j] : 0.f;
        float wj[MLBA_MAX_G], t[MLBA_MAX_G];
#pragma unroll
        for (int g = 0; g < MLBA_MAX_G; ++g) {
            wj[g] = live && g < G ? wa[(int64_t)g * J + j] : 0.f;
            t[g] = 0.f;
        }
        float dq = 0.f, sb = 0.f;
        for (int s0 = 0; s0 < cells; s0 += MLBA_TILE) {
            const int n = cells - s0 < MLBA_TILE ? cells - s0 : MLBA_TILE;
            for (int i = threadIdx.x; i < G * MLBA_TILE; i += MLBA_BWD_BLOCK) {
                const int g = i / MLBA_TILE, c = i % MLBA_TILE;
                if (c < n) {
                    const int64_t at = (b * G + g) * cells + s0 + c;
                    tile[g][c] = alpha[at] * (dalpha[at] - cg[g]);
                }
            }
            __syncthreads();
            if (live) {
                float* col = pv + (b * cells + s0) * J + j;
                for (int c = 0; c < n; ++c) {
                    const float va = bf_act(col[(int64_t)c * J] + bias, act);
                    float dh = 0.f;
#pragma unroll
                    for (int g = 0; g < MLBA_MAX_G; ++g)
                        if (g < G) {
                            dh = fmaf(tile[g][c], wj[g], dh);
                            t[g] = fmaf(tile[g][c], va, t[g]);
                        }
                    const float d = dh * qv * bf_act_grad(va, act);
                    col[(int64_t)c * J] = d;
                    sb += d;
                    dq = fmaf(dh, va, dq);
                }
            }
            __syncthreads();
        }
        if (live) {
            dp[b * ldq + j] = dq * bf_act_grad(qv, act);
            dbv[b * J + j] = sb;
#pragma unroll
            for (int g = 0; g < MLBA_MAX_G; ++g)
                if (g < G) tq[(b * G + g) * J + j] = qv * t[g];
        }
    }
}
