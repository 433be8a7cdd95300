// MultiHeadAttention: multi-head scaled dot-product attention as MCAN uses it (mcan-vqa's MHAtt), the
// attention core between the cuBLAS projections of io.bifuse.cuda.MultiHeadAttentionCuda, forward and
// backward. FP32 throughout (the projections are cuBLAS, in the op's Precision).
//
// Math, per sample b and head h (d = H / n columns [h*d, (h+1)*d) of the projections, s = 1/sqrt(d)),
// R_b the real keys (a DeviceObjectMask's ascending index list, or every key when masked = 0):
//   S[i,j] = s Q[i] . K[j]  for j in R_b;  -1e9 for a padded key (mcan-vqa's masked_fill)
//   P = softmax_j S,  O[i] = sum_j P[i,j] V[j],  lse[i] = log sum_j exp S[i,j]  (the row statistic)
//   backward, given dO:  D[i] = dO[i] . O[i];  dP[i,j] = dO[i] . V[j];  dS = P (dP - D) for j in R_b, 0 else
//                        dQ[i] = s sum_j dS[i,j] K[j];  dK[j] = s sum_i dS[i,j] Q[i];  dV[j] = sum_i P[i,j] dO[i]
// A padded key's exp(-1e9 - max) is exactly 0 in float when the sample has a real key, so the fused kernels
// skip padded keys altogether (no work for padding). A sample with NO real key gets, as mcan-vqa, the same
// score -1e9 on every key: uniform P = 1/Lk over all Lk keys, dS = 0 (the scores are constants); the fused
// kernels run it as every key with score 0 (the same softmax).
//
// Shapes (row-major floats): q B*Lq x H; k, v B*Lk x H (dense rows, H = heads * dh); o, dout, dq B*Lq x H;
// dk, dv B*Lk x H; lse, delta B x n x Lq; probs (the maps, or the unfused path's scores) and dscores (the unfused
// path's dP, then dS in place) B x n x Lq x Lk.
// counts B, indices B x Lk (DeviceObjectMask). Offsets are 64-bit.
//
// Kernels. The fused ones (head width d <= MHA_MAX_D = 64) never write a score matrix: one block of
// MHA_THREADS = 128 threads per work unit, a 1-D grid looping over the units with a stride of gridDim.x.
// A tile is MHA_TILE = 32 rows (queries or keys), one row per group of MHA_PARTS = 4 threads; each thread
// of a row holds 8 of the tile's 32 scores and 16 of the d <= 64 output columns (c = part + 4t) in
// registers. Shared memory: the row tiles, padded by one float per row so that the 8 rows a warp touches
// fall in different banks; every reduction over a row's 4 partials is in one fixed order (deterministic).
//   mha_fused_forward      unit = (b, h, 32 queries). Q tile once; per tile of 32 real keys (gathered through
//                          the index list): scores, the tile max, the online-softmax rescale of the running
//                          (max, sum, O accumulators) as flash-attention does, P tile through shared memory,
//                          O += P V. Writes O / sum and lse = max + log(sum).   units B*n*ceil(Lq/32), 29 KB smem
//   mha_fused_probs        the attention maps when asked for: P = exp(s Q.K - lse) on real keys, 0 on padded
//                          ones, thread per (b, h, query) walking the ascending index list. grid-stride
//   mha_fused_delta        D = dO . O per (b, h, query).                                          grid-stride
//   mha_fused_backward_kv  unit = (b, h, 32 real keys): K, V tile once; per tile of 32 queries (Q, dO, lse, D):
//                          P recomputed from lse (no probabilities stored), dP, dS; dV += P^T dO and
//                          dK += dS^T Q in registers, each key's rows written once by its owner. Padded keys'
//                          rows are left to the caller (zeroed before the launch).  units B*n*ceil(Lk/32), 42 KB
//   mha_fused_backward_q   unit = (b, h, 32 queries): Q, dO once; per key tile P, dP, dS; dQ += dS K.
//                          Two passes (kv, then q) instead of atomics: the reruns are bitwise identical.
//   The unfused path (any d; the fused kernels' cross-check) runs the products as cuBLAS GEMMs batched over
//   the samples, one per head, with the scores in `probs`, and two row kernels between them:
//   mha_softmax            in place on the scores: padded keys 0, real keys exp(S - max)/sum, an empty sample
//                          uniform 1/Lk; thread per (b, h, query), walking the index list.        grid-stride
//   mha_softmax_backward   in place on dP: dS = P (dP - sum_t P dP) on real keys, 0 on padded.   grid-stride
//
// Bytes and FLOPs per call (B samples, n heads of d, Lq queries, Lk keys of which Rk real per sample; floats):
//   fused forward:  reads 4 B n (Lq + 2 Rk ceil(Lq/32)) d (K, V per query tile, from L2 after the first),
//                   writes 4 B Lq H + 4 B n Lq; 4 B n Lq Rk d FLOPs (QK^T and PV) + B n Lq Rk exps.
//   fused backward: reads Q, dO, K, V about twice (kv and q passes), writes dQ, dK, dV (4 B (Lq + 2 Lk) H);
//                   10 B n Lq Rk d FLOPs (scores twice, dP twice, dV, dK, dQ) + 2 B n Lq Rk exps.
//   The unfused path writes and reads the B x n x Lq x Lk score tensor (4 B n Lq Lk bytes) three times forward
//   and five times backward; the fused path never materializes it.
//
// Parameters: the fused kernels take their pointers, then their sizes as ONE struct by value (MhaDims: every
// field read by each of them); the row kernels take theirs positionally. H = n d: the projections are dense.
#include "bifuse_device.cuh"

#define MHA_TILE 32
#define MHA_PARTS 4
#define MHA_THREADS (MHA_TILE * MHA_PARTS)
#define MHA_MAX_D 64
#define MHA_COLS (MHA_MAX_D / MHA_PARTS)   // output columns per thread
#define MHA_KEYS (MHA_TILE / MHA_PARTS)    // scores per thread and tile
#define MHA_PITCH (MHA_MAX_D + 1)

// The sizes every fused kernel reads, one by-value parameter (six ints, then the float: KernelCatalogTest's layout rule).
struct MhaDims {
    int batch, lq, lk, heads, dh, masked;
    float scale;
};

// Rows of a tile that starts `left` rows before the end.
static __device__ __forceinline__ int mha_tile_rows(int left) { return left < MHA_TILE ? left : MHA_TILE; }

// Keys of sample b that the fused kernels visit: the real ones, or all Lk when unmasked or when none is real.
static __device__ __forceinline__ int mha_visited(const int* counts, int masked, int b, int lk, int* empty) {
    const int c = masked ? counts[b] : lk;
    *empty = c == 0;
    return c == 0 ? lk : c;
}

// The key at position t of sample b's visiting order.
static __device__ __forceinline__ int mha_key(const int* indices, int masked, int empty, int b, int lk, int t) {
    return masked && !empty ? indices[(int64_t)b * lk + t] : t;
}

// One head's d columns of row `row` of a (rows x hidden) matrix into tile row `i` (zeros past the last row).
static __device__ __forceinline__ void mha_load_tile(float (*tile)[MHA_PITCH], const float* src, int64_t base_row, const int* rows_of,
                                                     int n, int dh, int hidden, int col0) {
    for (int t = threadIdx.x; t < MHA_TILE * dh; t += MHA_THREADS) {
        const int i = t / dh, c = t % dh;
        tile[i][c] = i < n ? src[(base_row + (rows_of ? rows_of[i] : i)) * hidden + col0 + c] : 0.f;
    }
}

extern "C" __global__ void __launch_bounds__(MHA_THREADS) mha_fused_forward(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                  const int* __restrict__ counts, const int* __restrict__ indices, float* __restrict__ o, float* __restrict__ lse, const MhaDims dims) {
    const int batch = dims.batch, lq = dims.lq, lk = dims.lk, heads = dims.heads, dh = dims.dh, hidden = heads * dh, masked = dims.masked;
    const float scale = dims.scale;
    __shared__ float qs[MHA_TILE][MHA_PITCH];
    __shared__ float ks[MHA_TILE][MHA_PITCH];
    __shared__ float vs[MHA_TILE][MHA_PITCH];
    __shared__ float ps[MHA_TILE][MHA_TILE + 1];
    __shared__ float red[MHA_TILE][MHA_PARTS];
    __shared__ int kidx[MHA_TILE];
    const int r = threadIdx.x / MHA_PARTS, part = threadIdx.x % MHA_PARTS;
    const int qtiles = (lq + MHA_TILE - 1) / MHA_TILE;
    const int64_t units = (int64_t)batch * heads * qtiles;
    for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
        const int qt = (int)(u % qtiles), h = (int)(u / qtiles % heads), b = (int)(u / qtiles / heads);
        const int q0 = qt * MHA_TILE, nq = mha_tile_rows(lq - q0), col0 = h * dh;
        int empty;
        const int nkeys = mha_visited(counts, masked, b, lk, &empty);
        mha_load_tile(qs, q, (int64_t)b * lq + q0, nullptr, nq, dh, hidden, col0);
        float m = -INFINITY, l = 0.f, acc[MHA_COLS];
#pragma unroll
        for (int t = 0; t < MHA_COLS; t++) acc[t] = 0.f;
        for (int k0 = 0; k0 < nkeys; k0 += MHA_TILE) {
            const int nk = mha_tile_rows(nkeys - k0);
            __syncthreads(); // the previous tile's readers are done with kidx, ks, vs, ps
            if (threadIdx.x < MHA_TILE) kidx[threadIdx.x] = threadIdx.x < nk ? mha_key(indices, masked, empty, b, lk, k0 + threadIdx.x) : 0;
            __syncthreads();
            mha_load_tile(ks, k, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
            mha_load_tile(vs, v, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
            __syncthreads();
            float s[MHA_KEYS], tmax = -INFINITY;
#pragma unroll
            for (int t = 0; t < MHA_KEYS; t++) {
                const int j = part + MHA_PARTS * t;
                float a = -INFINITY;
                if (j < nk) {
                    float dot = 0.f;
                    for (int c = 0; c < dh; c++) dot += qs[r][c] * ks[j][c];
                    a = empty ? 0.f : dot * scale;
                }
                s[t] = a;
                tmax = fmaxf(tmax, a);
            }
            red[r][part] = tmax;
            __syncthreads();
            const float mnew = fmaxf(m, fmaxf(fmaxf(red[r][0], red[r][1]), fmaxf(red[r][2], red[r][3])));
            const float corr = expf(m - mnew); // 0 on the first tile (m = -inf, mnew finite: the tile has a key)
            float psum = 0.f;
#pragma unroll
            for (int t = 0; t < MHA_KEYS; t++) {
                const float e = expf(s[t] - mnew); // exp(-inf) = 0 past the tile's last key
                ps[r][part + MHA_PARTS * t] = e;
                psum += e;
            }
            __syncthreads(); // every thread of the row has read red's maxima
            red[r][part] = psum;
            __syncthreads();
            l = l * corr + ((red[r][0] + red[r][1]) + (red[r][2] + red[r][3]));
            m = mnew;
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) {
                    float a = acc[t] * corr;
                    for (int j = 0; j < nk; j++) a += ps[r][j] * vs[j][c];
                    acc[t] = a;
                }
            }
        }
        if (r < nq) {
            const int64_t row = (int64_t)b * lq + q0 + r;
            const float inv = 1.f / l;
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) o[row * hidden + col0 + c] = acc[t] * inv;
            }
            if (part == 0) lse[((int64_t)b * heads + h) * lq + q0 + r] = m + logf(l);
        }
        __syncthreads(); // the next unit rewrites qs
    }
}

// P[b,h,i,j] from the row statistics: thread per (b, h, i), the row's padded keys written 0.
extern "C" __global__ void mha_fused_probs(const float* __restrict__ q, const float* __restrict__ k, const int* __restrict__ counts,
                                           const int* __restrict__ indices, const float* __restrict__ lse, float* __restrict__ probs, const MhaDims dims) {
    const int batch = dims.batch, lq = dims.lq, lk = dims.lk, heads = dims.heads, dh = dims.dh, hidden = heads * dh, masked = dims.masked;
    const float scale = dims.scale;
    const int64_t rows = (int64_t)batch * heads * lq;
    for (int64_t t = bf_tid(); t < rows; t += bf_stride()) {
        const int i = (int)(t % lq), h = (int)(t / lq % heads), b = (int)(t / lq / heads);
        int empty;
        const int nkeys = mha_visited(counts, masked, b, lk, &empty);
        const float* qr = q + ((int64_t)b * lq + i) * hidden + h * dh;
        const float stat = lse[t];
        float* row = probs + t * lk;
        int next = 0; // position in the ascending index list
        for (int j = 0; j < lk; j++) {
            const bool real = !masked || empty || (next < nkeys && indices[(int64_t)b * lk + next] == j);
            float p = 0.f;
            if (real) {
                float dot = 0.f;
                const float* kr = k + ((int64_t)b * lk + j) * hidden + h * dh;
                for (int c = 0; c < dh; c++) dot += qr[c] * kr[c];
                p = expf((empty ? 0.f : dot * scale) - stat);
                if (masked && !empty) next++;
            }
            row[j] = p;
        }
    }
}

extern "C" __global__ void mha_fused_delta(const float* __restrict__ o, const float* __restrict__ dout, float* __restrict__ delta,
                                           int batch, int lq, int heads, int dh) {
    const int hidden = heads * dh;
    const int64_t rows = (int64_t)batch * heads * lq;
    for (int64_t t = bf_tid(); t < rows; t += bf_stride()) {
        const int i = (int)(t % lq), h = (int)(t / lq % heads), b = (int)(t / lq / heads);
        const int64_t off = ((int64_t)b * lq + i) * hidden + h * dh;
        float acc = 0.f;
        for (int c = 0; c < dh; c++) acc += dout[off + c] * o[off + c];
        delta[t] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(MHA_THREADS) mha_fused_backward_kv(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                      const int* __restrict__ counts, const int* __restrict__ indices, const float* __restrict__ lse, const float* __restrict__ dout,
                      const float* __restrict__ delta, float* __restrict__ dk, float* __restrict__ dv, const MhaDims dims) {
    const int batch = dims.batch, lq = dims.lq, lk = dims.lk, heads = dims.heads, dh = dims.dh, hidden = heads * dh, masked = dims.masked;
    const float scale = dims.scale;
    __shared__ float ks[MHA_TILE][MHA_PITCH];
    __shared__ float vs[MHA_TILE][MHA_PITCH];
    __shared__ float qs[MHA_TILE][MHA_PITCH];
    __shared__ float dos[MHA_TILE][MHA_PITCH];
    __shared__ float ps[MHA_TILE][MHA_TILE + 1];
    __shared__ float dss[MHA_TILE][MHA_TILE + 1];
    __shared__ float stat[MHA_TILE], dl[MHA_TILE];
    __shared__ int kidx[MHA_TILE];
    const int r = threadIdx.x / MHA_PARTS, part = threadIdx.x % MHA_PARTS;
    const int ktiles = (lk + MHA_TILE - 1) / MHA_TILE;
    const int64_t units = (int64_t)batch * heads * ktiles;
    for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
        const int kt = (int)(u % ktiles), h = (int)(u / ktiles % heads), b = (int)(u / ktiles / heads);
        int empty;
        const int nkeys = mha_visited(counts, masked, b, lk, &empty);
        const int k0 = kt * MHA_TILE;
        if (k0 >= nkeys) continue; // past the sample's real keys: the whole block skips (uniform)
        const int nk = mha_tile_rows(nkeys - k0), col0 = h * dh;
        if (threadIdx.x < MHA_TILE) kidx[threadIdx.x] = threadIdx.x < nk ? mha_key(indices, masked, empty, b, lk, k0 + threadIdx.x) : 0;
        __syncthreads();
        mha_load_tile(ks, k, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
        mha_load_tile(vs, v, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
        float gk[MHA_COLS], gv[MHA_COLS];
#pragma unroll
        for (int t = 0; t < MHA_COLS; t++) gk[t] = gv[t] = 0.f;
        for (int i0 = 0; i0 < lq; i0 += MHA_TILE) {
            const int ni = mha_tile_rows(lq - i0);
            __syncthreads(); // the previous query tile's readers are done
            mha_load_tile(qs, q, (int64_t)b * lq + i0, nullptr, ni, dh, hidden, col0);
            mha_load_tile(dos, dout, (int64_t)b * lq + i0, nullptr, ni, dh, hidden, col0);
            if (threadIdx.x < MHA_TILE) {
                const int64_t srow = ((int64_t)b * heads + h) * lq + i0 + threadIdx.x;
                stat[threadIdx.x] = threadIdx.x < ni ? lse[srow] : 0.f;
                dl[threadIdx.x] = threadIdx.x < ni ? delta[srow] : 0.f;
            }
            __syncthreads();
#pragma unroll
            for (int t = 0; t < MHA_KEYS; t++) {
                const int i = part + MHA_PARTS * t; // this thread's key is r, its queries i
                float p = 0.f, ds = 0.f;
                if (i < ni && r < nk) {
                    float dot = 0.f, dp = 0.f;
                    for (int c = 0; c < dh; c++) {
                        dot += qs[i][c] * ks[r][c];
                        dp += dos[i][c] * vs[r][c];
                    }
                    p = expf((empty ? 0.f : dot * scale) - stat[i]);
                    ds = empty ? 0.f : p * (dp - dl[i]);
                }
                ps[r][i] = p;
                dss[r][i] = ds;
            }
            __syncthreads();
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) {
                    float a = gv[t], e = gk[t];
                    for (int i = 0; i < ni; i++) {
                        a += ps[r][i] * dos[i][c];
                        e += dss[r][i] * qs[i][c];
                    }
                    gv[t] = a;
                    gk[t] = e;
                }
            }
        }
        if (r < nk) {
            const int64_t row = ((int64_t)b * lk + kidx[r]) * hidden + col0;
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) {
                    dk[row + c] = gk[t] * scale;
                    dv[row + c] = gv[t];
                }
            }
        }
        __syncthreads(); // the next unit rewrites kidx and the tiles
    }
}

extern "C" __global__ void __launch_bounds__(MHA_THREADS) mha_fused_backward_q(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                     const int* __restrict__ counts, const int* __restrict__ indices, const float* __restrict__ lse, const float* __restrict__ dout,
                     const float* __restrict__ delta, float* __restrict__ dq, const MhaDims dims) {
    const int batch = dims.batch, lq = dims.lq, lk = dims.lk, heads = dims.heads, dh = dims.dh, hidden = heads * dh, masked = dims.masked;
    const float scale = dims.scale;
    __shared__ float qs[MHA_TILE][MHA_PITCH];
    __shared__ float dos[MHA_TILE][MHA_PITCH];
    __shared__ float ks[MHA_TILE][MHA_PITCH];
    __shared__ float vs[MHA_TILE][MHA_PITCH];
    __shared__ float dss[MHA_TILE][MHA_TILE + 1];
    __shared__ int kidx[MHA_TILE];
    const int r = threadIdx.x / MHA_PARTS, part = threadIdx.x % MHA_PARTS;
    const int qtiles = (lq + MHA_TILE - 1) / MHA_TILE;
    const int64_t units = (int64_t)batch * heads * qtiles;
    for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
        const int qt = (int)(u % qtiles), h = (int)(u / qtiles % heads), b = (int)(u / qtiles / heads);
        const int q0 = qt * MHA_TILE, nq = mha_tile_rows(lq - q0), col0 = h * dh;
        int empty;
        const int nkeys = mha_visited(counts, masked, b, lk, &empty);
        mha_load_tile(qs, q, (int64_t)b * lq + q0, nullptr, nq, dh, hidden, col0);
        mha_load_tile(dos, dout, (int64_t)b * lq + q0, nullptr, nq, dh, hidden, col0);
        const int64_t srow = ((int64_t)b * heads + h) * lq + q0 + r;
        const float stat = r < nq ? lse[srow] : 0.f, dl = r < nq ? delta[srow] : 0.f;
        float g[MHA_COLS];
#pragma unroll
        for (int t = 0; t < MHA_COLS; t++) g[t] = 0.f;
        for (int k0 = 0; k0 < nkeys && !empty; k0 += MHA_TILE) { // an empty sample's scores are constants: dQ = 0
            const int nk = mha_tile_rows(nkeys - k0);
            __syncthreads();
            if (threadIdx.x < MHA_TILE) kidx[threadIdx.x] = threadIdx.x < nk ? mha_key(indices, masked, empty, b, lk, k0 + threadIdx.x) : 0;
            __syncthreads();
            mha_load_tile(ks, k, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
            mha_load_tile(vs, v, (int64_t)b * lk, kidx, nk, dh, hidden, col0);
            __syncthreads();
#pragma unroll
            for (int t = 0; t < MHA_KEYS; t++) {
                const int j = part + MHA_PARTS * t;
                float ds = 0.f;
                if (j < nk && r < nq) {
                    float dot = 0.f, dp = 0.f;
                    for (int c = 0; c < dh; c++) {
                        dot += qs[r][c] * ks[j][c];
                        dp += dos[r][c] * vs[j][c];
                    }
                    ds = expf(dot * scale - stat) * (dp - dl);
                }
                dss[r][j] = ds;
            }
            __syncthreads();
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) {
                    float a = g[t];
                    for (int j = 0; j < nk; j++) a += dss[r][j] * ks[j][c];
                    g[t] = a;
                }
            }
        }
        if (r < nq) {
            const int64_t row = ((int64_t)b * lq + q0 + r) * hidden + col0;
#pragma unroll
            for (int t = 0; t < MHA_COLS; t++) {
                const int c = part + MHA_PARTS * t;
                if (c < dh) dq[row + c] = g[t] * scale;
            }
        }
        __syncthreads(); // the next unit rewrites qs, dos
    }
}

// ---- The unfused path's row kernels (scores in probs, B x n x Lq x Lk, already scaled by the GEMM) ----

extern "C" __global__ void mha_softmax(const int* __restrict__ counts, const int* __restrict__ indices, float* __restrict__ probs,
                                       int batch, int lq, int lk, int heads, int masked) {
    const int64_t rows = (int64_t)batch * heads * lq;
    for (int64_t t = bf_tid(); t < rows; t += bf_stride()) {
        const int b = (int)(t / lq / heads);
        float* row = probs + t * lk;
        const int n = masked ? counts[b] : lk;
        const int* idx = indices + (int64_t)b * lk;
        if (n == 0) { // every score -1e9: uniform
            for (int j = 0; j < lk; j++) row[j] = 1.f / lk;
            continue;
        }
        float m = -INFINITY;
        for (int t2 = 0; t2 < n; t2++) m = fmaxf(m, row[masked ? idx[t2] : t2]);
        float sum = 0.f;
        for (int t2 = 0; t2 < n; t2++) {
            const int j = masked ? idx[t2] : t2;
            const float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.f / sum;
        int next = 0;
        for (int j = 0; j < lk; j++) {
            if (!masked || (next < n && idx[next] == j)) {
                row[j] *= inv;
                next++;
            } else {
                row[j] = 0.f; // exp(-1e9 - max) is 0 in float
            }
        }
    }
}

// dS in place over dP (dscores, B x n x Lq x Lk), given P (probs).
extern "C" __global__ void mha_softmax_backward(const int* __restrict__ counts, const int* __restrict__ indices, const float* __restrict__ probs,
                                                float* __restrict__ ds, int batch, int lq, int lk, int heads, int masked) {
    const int64_t rows = (int64_t)batch * heads * lq;
    for (int64_t t = bf_tid(); t < rows; t += bf_stride()) {
        const int b = (int)(t / lq / heads);
        const float* p = probs + t * lk;
        float* row = ds + t * lk;
        const int n = masked ? counts[b] : lk;
        const int* idx = indices + (int64_t)b * lk;
        float dot = 0.f;
        for (int j = 0; j < lk; j++) dot += p[j] * row[j];
        int next = 0;
        for (int j = 0; j < lk; j++) {
            if (!masked || (next < n && idx[next] == j)) {
                row[j] = p[j] * (row[j] - dot);
                next++;
            } else {
                row[j] = 0.f; // a padded key's score is a constant (and every score of an empty sample)
            }
        }
    }
}
