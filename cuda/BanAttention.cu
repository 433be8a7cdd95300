// BanAttention: the attention maps of bilinear attention networks (Kim et al. 2018, jnhwkim/ban-vqa's
// BiAttention), forward and backward, for io.bifuse.cuda.BanAttentionCuda; plus the device-side object
// mask builder of io.bifuse.cuda.DeviceObjectMask.fromZeroRows.
//
// Math (spec §3), per sample b and glimpse g < G, for the real objects i (the mask) and every token j:
//   l[b,g,i,j] = sum_k p[g,k] X'[b,i,k] Y'[b,j,k] + bias[g]          (padded objects: l = -inf)
//   A[b,g]     = softmax over the flattened N*M map of l[b,g]          (a sample without real objects: A = 0)
// Backward, given dA = dL/dA:
//   dl = A (dA - c_g),  c_g = sum_{i real, j} A dA                     (softmax Jacobian; padded entries: 0)
//   dX'[b,i,k] = sum_g p[g,k] sum_j dl[b,g,i,j] Y'[b,j,k]              (padded rows written 0)
//   dY'[b,j,k] = sum_g p[g,k] sum_i dl[b,g,i,j] X'[b,i,k]
//   dp[g,k]    = sum_b sum_i X'[b,i,k] sum_j dl[b,g,i,j] Y'[b,j,k]     (per-sample partials, then a fixed-order sum over b)
//   dbias[g]   = sum dl = 0 exactly (the map sums to 1): written as zeros by the Java side (a memset)
// throughRelu (relu = 1): X', Y' are ReLU outputs and the gradients written are those of the
// pre-activations, g * [X' > 0].
//
// Shapes (row-major floats): xp rows b*N + i with row stride ldx >= K; yp rows b*M + j, stride ldy; p G x K;
// bias G; att and logits B x G x N x M dense; gx / gy like xp / yp (strides ldgx, ldgy); dpart B x G x K.
// Mask (masked = 1): counts[b] real objects, indices[b*N + r] their ascending indices (r < counts[b]); the
// kernels only ever touch real objects' rows of X' (padded objects cost no work). masked = 0: all real, and
// the counts / indices pointers are placeholders that are never read.
//
// Kernels:
//   ban_att_fused     (N <= BAN_FUSED_N = 128, M <= BAN_FUSED_M = 16) one block of 256 per (b, g) map, units
//                     b*G + g (the G blocks of a sample run together, so X'[b] comes from L2 after the first):
//                     the real rows of X' and p[g] * Y' staged in K tiles of 32 columns in shared memory, each
//                     thread <= 8 map entries in registers (a fixed k order), the map kept in shared memory,
//                     block max / sum (fixed tree), then one coalesced write of A (and l if asked) over all N*M
//                     entries (padded rows: A = 0, l = -inf). No B x G x N x K or B x G x M x K intermediate.
//   ban_att_logits    (any N, M) one block of 256 per (b, g, tile of 64 object slots, tile of 16 tokens): the
//                     same K loop (the same per-entry order: the logits are bit-identical to the fused
//                     kernel's); writes l, and -inf into the padded rows of the gaps before its slots.
//   ban_att_softmax   one block of 256 per (b, g): softmax over the map's N*M entries of any length (the -inf
//                     of padded rows give 0; a map of nothing but -inf gives A = 0).
//   ban_att_backward  one block of 128 per (b, 128 columns k), a thread per column: c_g (block sums over the
//                     real entries), dl staged per (8 object slots x 16 tokens x G) from A and dA, Y'[:, k] of
//                     16 tokens in registers; per real row: dX' (written once, or accumulated over token
//                     tiles by the same thread when M > 16), dY' and the dp partials in registers. X' and Y'
//                     are read once (M <= 16), dX', dY' written once; padded rows of dX' written 0.
//   ban_att_dp_reduce dp[g,k] = sum_b dpart[b,g,k] in order b = 0..B-1 (deterministic).   grid-stride, 256
//   ban_att_zero_rows the mask from the zero rows of the RAW objects x (B*N rows of dim floats, stride ldx):
//                     one block of 256 per sample, 8 rows at a time, 32 lanes per row; a row with any entry
//                     != 0 (NaN included) is real; thread 0 appends in ascending order, -1 past the count.
//
// Bytes and FLOPs per call (B samples, N objects of which n real on average, M tokens, width K, G glimpses):
//   fused / logits   reads 4 B n K (X', once per glimpse, from L2 after the first) + 4 B M K + 4 G K;
//                    writes 4 B G N M (A, and as much for l if asked); 2 B G n M K FLOPs.
//   softmax          reads 4 B G N M, writes 4 B G N M (tiled path only; plus the logits' write and read).
//   backward         reads 4 B (n + M) K + 2 * 4 B G n M (A, dA; per column tile, from L2); writes
//                    4 B (N + M) K + 4 B G K (partials); ~4 B G n M K FLOPs.  dp_reduce reads 4 B G K.
//   zero_rows        reads at most 4 B N dim (padded rows in full, real rows up to their first nonzero).
//
// Parameters: ban_att_fused, ban_att_logits and ban_att_backward each take ONE struct by value
// (BanAttFusedParams, BanAttLogitsParams, BanAttBackwardParams), as flash-attention's Flash_fwd_params:
// one kernelParams entry instead of 15 to 21. The short-listed kernels keep positional parameters.
// The fields keep the former positional order in C layout (8-byte aligned; an int before a pointer leaves
// 4 bytes of padding), so the Java side's KernelSpec "{...}" lists them as the old signature did and the
// launch sites pass the same arguments; KernelCatalogTest checks that description against the PTX (the
// struct's .align and size, and the offset and width of every field the kernel loads). Each kernel first
// copies the fields into __restrict__ locals of the old parameters' names: its body is unchanged.
#include "bifuse_device.cuh"

#define BAN_MAX_G 32          // BanAttention.MAX_GLIMPSES: the backward keeps per-glimpse values in registers
#define BAN_FUSED_N 128       // BanAttentionCuda.FUSED_MAX_OBJECTS
#define BAN_FUSED_M 16        // BanAttentionCuda.FUSED_MAX_TOKENS
#define BAN_BLOCK 256         // fused, logits, softmax, dp_reduce
#define BAN_KT 32             // K columns per shared-memory tile
#define BAN_FUSED_NS 8        // map entries per thread in ban_att_fused: 128 * 16 / 256
#define BAN_TILE_R 64         // ban_att_logits: object slots per tile
#define BAN_TILE_J 16         // ban_att_logits: tokens per tile
#define BAN_TILE_NS 4         // 64 * 16 / 256
#define BAN_BWD_BLOCK 128     // ban_att_backward: columns (threads) per block
#define BAN_BWD_R 8           // ban_att_backward: object slots per staged dl tile
#define BAN_BWD_J 16          // ban_att_backward: tokens per pass (register arrays)
#define BAN_MASK_BLOCK 256    // ban_att_zero_rows
#define BAN_MASK_LANES 32     // threads per row in ban_att_zero_rows

// The object index of real slot r of sample b.
static __device__ __forceinline__ int ban_object(const int* __restrict__ indices, int masked, int64_t b, int N, int r) {
    return masked ? indices[b * N + r] : r;
}

// acc[s] += sum_k X'[xrow0 + rows[e_s / nj], k] * (p_g[k] * Y'[yrow0 + e_s % nj, k]) for the entries
// e_s = threadIdx.x + s * BAN_BLOCK < nr * nj, k ascending (one order for every path and grid). rows: nr
// object indices in shared memory. xs, ys: shared tiles of at least nr and nj rows. Every thread of the
// block calls it (it synchronizes); nr == 0 skips the loop for the whole block.
template <int NS>
static __device__ __forceinline__ void ban_logit_tiles(const float* __restrict__ xp, int ldx, int64_t xrow0, const float* __restrict__ yp,
                                                       int ldy, int64_t yrow0, const float* __restrict__ pg, const int* rows, int nr,
                                                       int nj, int K, float (*xs)[BAN_KT + 1], float (*ys)[BAN_KT + 1], float* acc) {
    if (nr == 0) return;
    int er[NS], ej[NS];
#pragma unroll
    for (int s = 0; s < NS; ++s) {
        const int e = threadIdx.x + s * BAN_BLOCK;
        er[s] = e < nr * nj ? e / nj : -1;
        ej[s] = e < nr * nj ? e - (e / nj) * nj : 0;
    }
    for (int k0 = 0; k0 < K; k0 += BAN_KT) {
        const int kw = K - k0 < BAN_KT ? K - k0 : BAN_KT;
        for (int t = threadIdx.x; t < nr * BAN_KT; t += BAN_BLOCK) {
            const int r = t / BAN_KT, c = t % BAN_KT;
            xs[r][c] = c < kw ? xp[(xrow0 + rows[r]) * ldx + k0 + c] : 0.f;
        }
        for (int t = threadIdx.x; t < nj * BAN_KT; t += BAN_BLOCK) {
            const int j = t / BAN_KT, c = t % BAN_KT;
            ys[j][c] = c < kw ? pg[k0 + c] * yp[(yrow0 + j) * ldy + k0 + c] : 0.f;
        }
        __syncthreads();
        for (int c = 0; c < BAN_KT; ++c) {  // the tail of the last tile is zeros: 0 * 0 leaves acc unchanged
#pragma unroll
            for (int s = 0; s < NS; ++s)
                if (er[s] >= 0) acc[s] = fmaf(xs[er[s]][c], ys[ej[s]][c], acc[s]);
        }
        __syncthreads();
    }
}

struct BanAttFusedParams {
    const float* xp;
    int ldx;
    const float* yp;
    int ldy;
    const float* p;
    const float* bias;
    const int* counts;
    const int* indices;
    int masked;
    float* att;
    float* logits;
    int write_logits, batch, N, M, K, G;
};

extern "C" __global__ void ban_att_fused(const BanAttFusedParams prm) {
    const float* __restrict__ xp = prm.xp;
    const int ldx = prm.ldx;
    const float* __restrict__ yp = prm.yp;
    const int ldy = prm.ldy;
    const float* __restrict__ p = prm.p;
    const float* __restrict__ bias = prm.bias;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked;
    float* __restrict__ att = prm.att;
    float* __restrict__ logits = prm.logits;
    const int write_logits = prm.write_logits, batch = prm.batch, N = prm.N, M = prm.M, K = prm.K, G = prm.G;
    __shared__ float xs[BAN_FUSED_N][BAN_KT + 1];
    __shared__ float ys[BAN_FUSED_M][BAN_KT + 1];
    __shared__ float map[BAN_FUSED_N * BAN_FUSED_M];
    __shared__ int rows[BAN_FUSED_N];
    __shared__ int slot[BAN_FUSED_N];  // the slot of object i, -1 when it is padding
    __shared__ float red[BAN_BLOCK];
    const int nm = N * M;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * G; unit += gridDim.x) {
        const int64_t b = unit / G;
        const int g = (int)(unit - b * G);
        const int cnt = masked ? counts[b] : N;
        for (int i = threadIdx.x; i < N; i += BAN_BLOCK) slot[i] = -1;
        __syncthreads();
        for (int r = threadIdx.x; r < cnt; r += BAN_BLOCK) {
            const int i = ban_object(indices, masked, b, N, r);
            rows[r] = i;
            slot[i] = r;
        }
        __syncthreads();
        float acc[BAN_FUSED_NS];
#pragma unroll
        for (int s = 0; s < BAN_FUSED_NS; ++s) acc[s] = 0.f;
        ban_logit_tiles<BAN_FUSED_NS>(xp, ldx, b * N, yp, ldy, b * M, p + (int64_t)g * K, rows, cnt, M, K, xs, ys, acc);
        const float bg = bias[g];
        float m = -INFINITY;
#pragma unroll
        for (int s = 0; s < BAN_FUSED_NS; ++s) {
            const int e = threadIdx.x + s * BAN_BLOCK;
            if (e < cnt * M) {
                map[e] = acc[s] + bg;
                m = fmaxf(m, acc[s] + bg);
            }
        }
        m = bf_block_reduce(red, m, 1, BAN_BLOCK);
        float z = 0.f;
#pragma unroll
        for (int s = 0; s < BAN_FUSED_NS; ++s) {
            const int e = threadIdx.x + s * BAN_BLOCK;
            if (e < cnt * M) z += expf(map[e] - m);
        }
        z = bf_block_reduce(red, z, 0, BAN_BLOCK);  // also orders the map's writes before the reads below
        const float inv = 1.f / z;                     // cnt == 0: never used (every slot is -1)
        float* a = att + unit * nm;
        float* l = logits + unit * nm;
        for (int e = threadIdx.x; e < nm; e += BAN_BLOCK) {
            const int i = e / M, j = e - i * M, r = slot[i];
            const float v = r >= 0 ? map[r * M + j] : -INFINITY;
            a[e] = r >= 0 ? expf(v - m) * inv : 0.f;
            if (write_logits) l[e] = v;
        }
        __syncthreads();  // slot, rows and map are reused by the next unit
    }
}

struct BanAttLogitsParams {
    const float* xp;
    int ldx;
    const float* yp;
    int ldy;
    const float* p;
    const float* bias;
    const int* counts;
    const int* indices;
    int masked;
    float* logits;
    int batch, N, M, K, G;
};

extern "C" __global__ void ban_att_logits(const BanAttLogitsParams prm) {
    const float* __restrict__ xp = prm.xp;
    const int ldx = prm.ldx;
    const float* __restrict__ yp = prm.yp;
    const int ldy = prm.ldy;
    const float* __restrict__ p = prm.p;
    const float* __restrict__ bias = prm.bias;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked;
    float* __restrict__ logits = prm.logits;
    const int batch = prm.batch, N = prm.N, M = prm.M, K = prm.K, G = prm.G;
    __shared__ float xs[BAN_TILE_R][BAN_KT + 1];
    __shared__ float ys[BAN_TILE_J][BAN_KT + 1];
    __shared__ int rows[BAN_TILE_R];
    // slots 0..N: slot s < count is a real object, and owns the gap of padded objects just before it; the
    // slot s == count owns the gap after the last real object
    const int rtiles = (N + BAN_TILE_R) / BAN_TILE_R, jtiles = (M + BAN_TILE_J - 1) / BAN_TILE_J;
    const int64_t units = (int64_t)batch * G * rtiles * jtiles;
    for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
        const int jt = (int)(unit % jtiles);
        const int64_t rest = unit / jtiles;
        const int rt = (int)(rest % rtiles);
        const int64_t bg = rest / rtiles, b = bg / G;
        const int g = (int)(bg - b * G);
        const int cnt = masked ? counts[b] : N, r0 = rt * BAN_TILE_R;
        if (r0 > cnt) continue;  // the same for every thread of the block
        const int nr = cnt - r0 < BAN_TILE_R ? cnt - r0 : BAN_TILE_R;
        const int j0 = jt * BAN_TILE_J, nj = M - j0 < BAN_TILE_J ? M - j0 : BAN_TILE_J;
        float* map = logits + bg * N * M;
        for (int r = threadIdx.x; r < nr; r += BAN_BLOCK) rows[r] = ban_object(indices, masked, b, N, r0 + r);
        for (int s = r0; s < r0 + BAN_TILE_R && s <= cnt; ++s) {
            const int lo = s == 0 ? 0 : ban_object(indices, masked, b, N, s - 1) + 1;
            const int hi = s < cnt ? ban_object(indices, masked, b, N, s) : N;
            for (int e = threadIdx.x; e < (hi - lo) * nj; e += BAN_BLOCK) map[(int64_t)(lo + e / nj) * M + j0 + e % nj] = -INFINITY;
        }
        __syncthreads();
        float acc[BAN_TILE_NS];
#pragma unroll
        for (int s = 0; s < BAN_TILE_NS; ++s) acc[s] = 0.f;
        ban_logit_tiles<BAN_TILE_NS>(xp, ldx, b * N, yp, ldy, b * M + j0, p + (int64_t)g * K, rows, nr, nj, K, xs, ys, acc);
        const float bgv = bias[g];
#pragma unroll
        for (int s = 0; s < BAN_TILE_NS; ++s) {
            const int e = threadIdx.x + s * BAN_BLOCK;
            if (e < nr * nj) map[(int64_t)rows[e / nj] * M + j0 + e % nj] = acc[s] + bgv;
        }
        __syncthreads();  // rows is reused by the next unit
    }
}

// logits, att: B*G maps of len = N*M floats.
extern "C" __global__ void ban_att_softmax(const float* __restrict__ logits, float* __restrict__ att, int maps, int len) {
    __shared__ float red[BAN_BLOCK];
    for (int64_t unit = blockIdx.x; unit < maps; unit += gridDim.x) {
        const float* l = logits + unit * len;
        float* a = att + unit * len;
        float m = -INFINITY;
        for (int e = threadIdx.x; e < len; e += BAN_BLOCK) m = fmaxf(m, l[e]);
        m = bf_block_reduce(red, m, 1, BAN_BLOCK);
        if (m == -INFINITY) {  // no real object: the documented all-zero map (the same for every thread)
            for (int e = threadIdx.x; e < len; e += BAN_BLOCK) a[e] = 0.f;
            continue;
        }
        float z = 0.f;
        for (int e = threadIdx.x; e < len; e += BAN_BLOCK) z += expf(l[e] - m);
        z = bf_block_reduce(red, z, 0, BAN_BLOCK);
        const float inv = 1.f / z;
        for (int e = threadIdx.x; e < len; e += BAN_BLOCK) a[e] = expf(l[e] - m) * inv;
    }
}

struct BanAttBackwardParams {
    const float* xp;
    int ldx;
    const float* yp;
    int ldy;
    const float* p;
    const int* counts;
    const int* indices;
    int masked;
    const float* att;
    const float* gatt;
    float* gx;
    int ldgx;
    float* gy;
    int ldgy;
    float* dpart;
    int relu, batch, N, M, K, G;
};

extern "C" __global__ void ban_att_backward(const BanAttBackwardParams prm) {
    const float* __restrict__ xp = prm.xp;
    const int ldx = prm.ldx;
    const float* __restrict__ yp = prm.yp;
    const int ldy = prm.ldy;
    const float* __restrict__ p = prm.p;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked;
    const float* __restrict__ att = prm.att;
    const float* __restrict__ gatt = prm.gatt;
    float* __restrict__ gx = prm.gx;
    const int ldgx = prm.ldgx;
    float* __restrict__ gy = prm.gy;
    const int ldgy = prm.ldgy;
    float* __restrict__ dpart = prm.dpart;
    const int relu = prm.relu, batch = prm.batch, N = prm.N, M = prm.M, K = prm.K, G = prm.G;
    __shared__ float red[BAN_BWD_BLOCK];
    __shared__ float cg[BAN_MAX_G];
    __shared__ float dls[BAN_MAX_G][BAN_BWD_R][BAN_BWD_J];
    __shared__ int rows[BAN_BWD_R];
    const int ctiles = (K + BAN_BWD_BLOCK - 1) / BAN_BWD_BLOCK;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * ctiles; unit += gridDim.x) {
        const int64_t b = unit / ctiles;
        const int k = (int)(unit - b * ctiles) * BAN_BWD_BLOCK + threadIdx.x;
        const bool live = k < K;
        const int cnt = masked ? counts[b] : N;
        for (int g = 0; g < G; ++g) {
            const float* a = att + (b * G + g) * N * M;
            const float* da = gatt + (b * G + g) * N * M;
            float c = 0.f;
            for (int e = threadIdx.x; e < cnt * M; e += BAN_BWD_BLOCK) {
                const int r = e / M;
                const int64_t at = (int64_t)ban_object(indices, masked, b, N, r) * M + (e - r * M);
                c = fmaf(a[at], da[at], c);
            }
            c = bf_block_reduce(red, c, 0, BAN_BWD_BLOCK);
            if (threadIdx.x == 0) cg[g] = c;
        }
        float pk[BAN_MAX_G], dp[BAN_MAX_G];
#pragma unroll
        for (int g = 0; g < BAN_MAX_G; ++g) {
            pk[g] = live && g < G ? p[(int64_t)g * K + k] : 0.f;
            dp[g] = 0.f;
        }
        if (live) {  // padded rows of dX': the gaps between the real objects
            int lo = 0;
            for (int s = 0; s <= cnt; ++s) {
                const int hi = s < cnt ? ban_object(indices, masked, b, N, s) : N;
                for (int i = lo; i < hi; ++i) gx[(b * N + i) * ldgx + k] = 0.f;
                lo = hi + 1;
            }
        }
        for (int j0 = 0; j0 < M; j0 += BAN_BWD_J) {
            const int nj = M - j0 < BAN_BWD_J ? M - j0 : BAN_BWD_J;
            const bool first = j0 == 0, last = j0 + BAN_BWD_J >= M;
            float yv[BAN_BWD_J], dy[BAN_BWD_J];
#pragma unroll
            for (int jj = 0; jj < BAN_BWD_J; ++jj) {
                yv[jj] = live && jj < nj ? yp[(b * M + j0 + jj) * ldy + k] : 0.f;
                dy[jj] = 0.f;
            }
            for (int r0 = 0; r0 < cnt; r0 += BAN_BWD_R) {
                const int nr = cnt - r0 < BAN_BWD_R ? cnt - r0 : BAN_BWD_R;
                __syncthreads();  // the previous tile's rows and dls are no longer read; cg is written
                if ((int)threadIdx.x < nr) rows[threadIdx.x] = ban_object(indices, masked, b, N, r0 + threadIdx.x);
                __syncthreads();
                for (int t = threadIdx.x; t < G * BAN_BWD_R * BAN_BWD_J; t += BAN_BWD_BLOCK) {
                    const int g = t / (BAN_BWD_R * BAN_BWD_J), rr = (t / BAN_BWD_J) % BAN_BWD_R, jj = t % BAN_BWD_J;
                    float d = 0.f;  // outside the tile: 0, so the unrolled loops below need no bounds
                    if (rr < nr && jj < nj) {
                        const int64_t at = ((b * G + g) * N + rows[rr]) * M + j0 + jj;
                        d = att[at] * (gatt[at] - cg[g]);
                    }
                    dls[g][rr][jj] = d;
                }
                __syncthreads();
                if (live) {
                    for (int rr = 0; rr < nr; ++rr) {
                        const int64_t row = b * N + rows[rr];
                        const float x = xp[row * ldx + k];
                        float q[BAN_BWD_J];
#pragma unroll
                        for (int jj = 0; jj < BAN_BWD_J; ++jj) q[jj] = 0.f;
                        float dx = 0.f;
#pragma unroll
                        for (int g = 0; g < BAN_MAX_G; ++g) {
                            if (g < G) {
                                float t = 0.f;
#pragma unroll
                                for (int jj = 0; jj < BAN_BWD_J; ++jj) {
                                    const float d = dls[g][rr][jj];
                                    t = fmaf(d, yv[jj], t);
                                    q[jj] = fmaf(pk[g], d, q[jj]);
                                }
                                dx = fmaf(pk[g], t, dx);
                                dp[g] = fmaf(x, t, dp[g]);
                            }
                        }
#pragma unroll
                        for (int jj = 0; jj < BAN_BWD_J; ++jj) dy[jj] = fmaf(x, q[jj], dy[jj]);
                        float* o = gx + row * ldgx + k;
                        float v = first ? dx : *o + dx;  // token tiles after the first add to what this thread wrote
                        if (last && relu && !(x > 0.f)) v = 0.f;
                        *o = v;
                    }
                }
            }
            if (live) {
#pragma unroll
                for (int jj = 0; jj < BAN_BWD_J; ++jj)
                    if (jj < nj) gy[(b * M + j0 + jj) * ldgy + k] = relu && !(yv[jj] > 0.f) ? 0.f : dy[jj];
            }
        }
        if (live) {
#pragma unroll
            for (int g = 0; g < BAN_MAX_G; ++g)
                if (g < G) dpart[(b * G + g) * K + k] = dp[g];
        }
        __syncthreads();  // cg, rows and dls are reused by the next unit
    }
}

// dw[t] = sum over b of dpart[b * gk + t], b ascending.
extern "C" __global__ void ban_att_dp_reduce(const float* __restrict__ dpart, float* __restrict__ dw, int batch, int gk) {
    for (int64_t t = bf_tid(); t < gk; t += bf_stride()) {
        float s = 0.f;
        for (int b = 0; b < batch; ++b) s += dpart[(int64_t)b * gk + t];
        dw[t] = s;
    }
}

// counts: B ints; indices: B x N ints (ascending real indices, then -1).
extern "C" __global__ void ban_att_zero_rows(const float* __restrict__ x, int ldx, int batch, int N, int dim, int* __restrict__ counts,
                                             int* __restrict__ indices) {
    __shared__ int flag[BAN_MASK_BLOCK];
    const int rows_per_pass = BAN_MASK_BLOCK / BAN_MASK_LANES;
    const int lane = threadIdx.x % BAN_MASK_LANES, w = threadIdx.x / BAN_MASK_LANES;
    for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
        int cnt = 0;  // thread 0's
        for (int i0 = 0; i0 < N; i0 += rows_per_pass) {
            const int i = i0 + w;
            int nz = 0;
            if (i < N) {
                const float* row = x + (b * N + i) * (int64_t)ldx;
                for (int d = lane; d < dim && !nz; d += BAN_MASK_LANES) nz = row[d] != 0.f;  // NaN != 0: real, as ban-vqa
            }
            flag[threadIdx.x] = nz;
            __syncthreads();
            for (int s = BAN_MASK_LANES / 2; s > 0; s >>= 1) {
                if (lane < s) flag[threadIdx.x] |= flag[threadIdx.x + s];
                __syncthreads();
            }
            if (threadIdx.x == 0) {
                for (int q = 0; q < rows_per_pass && i0 + q < N; ++q)
                    if (flag[q * BAN_MASK_LANES]) indices[b * N + cnt++] = i0 + q;
            }
            __syncthreads();  // flag is reused by the next pass
        }
        if (threadIdx.x == 0) {
            counts[b] = cnt;
            for (int r = cnt; r < N; ++r) indices[b * N + r] = -1;
        }
    }
}
