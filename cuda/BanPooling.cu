// BanPooling: bilinear attention pooling (BAN, ban-vqa's BCNet.forward_with_weights), forward and backward,
// launched by io.bifuse.cuda.BanPoolingCuda. FP32 throughout, no cuBLAS: the op is two bilinear maps per
// column, which no GEMM shape covers without materializing an N x K' or M x K' intermediate.
//
// Math, per sample b, R_b the real objects (a DeviceObjectMask's index list, or every object when unmasked):
//   F[b,c]  = sum_{i in R_b} sum_{j<M} A[b,i,j] X[b,i,c] Y[b,j,c]            c < K'  (= width)
//   f[b,u]  = sum_{t<k} F[b, u*k + t]                                        u < K'/k (k = group)
//   dF[b,c] = g[b, c/k]
//   dA[b,i,j] = sum_c dF[b,c] X[b,i,c] Y[b,j,c]      (i in R_b; padded rows written 0)
//   dX[b,i,c] = dF[b,c] sum_j A[b,i,j] Y[b,j,c]       (i in R_b; padded rows written 0)
//   dY[b,j,c] = dF[b,c] sum_{i in R_b} A[b,i,j] X[b,i,c]
//   through_relu: X, Y are ReLU outputs and dX, dY are taken w.r.t. the pre-activations (times [X > 0], [Y > 0]).
//
// Shapes and strides (floats): A sample b's map at att + b*att_stride, row-major N x M (att_stride = N*M for a
// dense B x N x M map, G*N*M for glimpse g of a B x G x N x M tensor); X row b*N+i at x + (b*N+i)*ldx, Y row
// b*M+j at y + (b*M+j)*ldy, the same for dX (ldgx) and dY (ldgy); only columns [0, K') are read or written.
// out and g are dense B x K'/k. counts (B) and indices (B x N) are the DeviceObjectMask; masked = 0 ignores them.
// Offsets are 64-bit.
//
// Kernels (1-D grids; each loops over its work units with a stride of gridDim.x, so any B, N, M, K'):
//   ban_pool_forward       unit = (b, column tile). BP_BLOCK = 128 threads, one column each: the tile holds
//                          per = BP_BLOCK / k whole groups (per*k columns), or one group of k > BP_BLOCK columns
//                          that each thread walks in steps of BP_BLOCK. Y[b, j-tile, c] sits in BP_TJ = 16
//                          registers; A[b, real rows, j-tile] is staged in shared memory BP_TI = 32 rows at a
//                          time; F[c] = sum_i X[i,c] (sum_j A[i,j] Y[j,c]) accumulates in one register. Then
//                          the group sums over shared memory, one write of f.   units B*ceil((K'/k)/per)
//   ban_pool_backward_xy   unit = (b, 128 columns), one column per thread, the same A tiles: per real row i,
//                          s = sum_j A[i,j] Y[j,c] gives dX[i,c] = dF s and A[i,j] X[i,c] accumulates the
//                          BP_TJ dY[j,c] in registers. dX is written at the first j tile and added to at the
//                          next ones (M > 16 only), by the thread that owns it: deterministic. Padded rows of
//                          dX are zeroed by walking the gaps of the ascending index list.  units B*ceil(K'/128)
//   ban_pool_grad_attention unit = (b, 16 real rows, 16 tokens), 256 threads, one dA entry each: the K'
//                          reduction over shared tiles of 32 columns of dF*X[real rows] and Y (padded by one
//                          to spread the banks), as the attention logits are tiled. The units of row tile 0
//                          zero the padded rows.           units B*ceil(N/16)*ceil(M/16), block 256
//
// Bytes and FLOPs per call (B samples, N objects of which R real in total, M tokens, K' columns; 4-byte floats):
//   forward:      reads 4(B N M + R K' + B M K') once from HBM (A again per column tile, from L2), writes 4 B K'/k;
//                 2 R K'(M + 1) FLOPs. The cost model's Mac = B N K'(M + 1) counts every object.
//   backward_xy:  reads 4(B N M + R K' + B M K' + B K'/k), writes 4(B N K' + B M K'); ~4 R M K' FLOPs.
//   grad_attention: reads 4(R K' + B M K') (each again per other tile, from L2), writes 4 B N M; 2 R M K' FLOPs.
//
// Parameters: each kernel takes ONE struct by value (BanPoolForwardParams, BanPoolBackwardXyParams,
// BanPoolGradAttentionParams), as flash-attention's Flash_fwd_params: one kernelParams entry instead of 15 or 20.
// The fields keep the former positional order in C layout (8-byte aligned; an int before a pointer leaves
// 4 bytes of padding), so the Java side's KernelSpec "{...}" lists them as the old signature did and the
// launch sites pass the same arguments; KernelCatalogTest checks that description against the PTX (the
// struct's .align and size, and the offset and width of every field the kernel loads). Each kernel first
// copies the fields into __restrict__ locals of the old parameters' names: its body is unchanged.
#include "bifuse_device.cuh"

#define BP_BLOCK 128      // ban_pool_forward, ban_pool_backward_xy: one thread per column
#define BP_TI 32          // real rows of A per shared tile
#define BP_TJ 16          // tokens per tile (registers per thread)
#define BP_GA_BLOCK 256   // ban_pool_grad_attention: BP_GA_TI x BP_GA_TJ entries
#define BP_GA_TI 16
#define BP_GA_TJ 16
#define BP_GA_TK 32       // columns per shared tile of the K' reduction

// Row of the r-th real object of a sample (the r-th entry of its index list, or r itself unmasked).
static __device__ __forceinline__ int bp_row(const int* idx, int masked, int r) { return masked ? idx[r] : r; }

// Stages A[b, rows r0.. of the real list, tokens j0..] (zeros outside) and the rows' indices.
static __device__ __forceinline__ void bp_stage_a(float (*a_sh)[BP_TJ], int* rows_sh, const float* ab, const int* idx, int masked,
                                                  int count, int tokens, int r0, int j0) {
    for (int e = threadIdx.x; e < BP_TI * BP_TJ; e += blockDim.x) {
        const int ii = e / BP_TJ, jj = e % BP_TJ;
        float v = 0.f;
        if (r0 + ii < count && j0 + jj < tokens) v = ab[(int64_t)bp_row(idx, masked, r0 + ii) * tokens + j0 + jj];
        a_sh[ii][jj] = v;
    }
    for (int e = threadIdx.x; e < BP_TI; e += blockDim.x) rows_sh[e] = r0 + e < count ? bp_row(idx, masked, r0 + e) : 0;
}

struct BanPoolForwardParams {
    const float* att;
    int64_t att_stride;
    const float* x;
    int ldx;
    const float* y;
    int ldy;
    const int* counts;
    const int* indices;
    int masked, batch, objects, tokens, width, group;
    float* out;
};

extern "C" __global__ void ban_pool_forward(const BanPoolForwardParams prm) {
    const float* __restrict__ att = prm.att;
    const int64_t att_stride = prm.att_stride;
    const float* __restrict__ x = prm.x;
    const int ldx = prm.ldx;
    const float* __restrict__ y = prm.y;
    const int ldy = prm.ldy;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked, batch = prm.batch, objects = prm.objects, tokens = prm.tokens, width = prm.width, group = prm.group;
    float* __restrict__ out = prm.out;
    __shared__ float a_sh[BP_TI][BP_TJ];
    __shared__ int rows_sh[BP_TI];
    __shared__ float red[BP_BLOCK];
    const int out_width = width / group;
    const int per = group >= BP_BLOCK ? 1 : BP_BLOCK / group;  // output units per tile
    const int cols = per * group;
    const int tiles = (out_width + per - 1) / per;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * tiles; unit += gridDim.x) {
        const int64_t b = unit / tiles;
        const int u0 = (int)(unit - b * tiles) * per;
        const int count = masked ? counts[b] : objects;
        const int* idx = indices + b * objects;
        const float* ab = att + b * att_stride;
        float part = 0.f;  // this thread's columns' share of its group
        for (int p0 = 0; p0 < cols; p0 += BP_BLOCK) {  // more than one pass only when group > BP_BLOCK
            const int p = p0 + threadIdx.x;
            const int c = u0 * group + p;
            const bool live = p < cols && c < width;
            float acc = 0.f;
            for (int j0 = 0; j0 < tokens; j0 += BP_TJ) {
                float yr[BP_TJ];
#pragma unroll
                for (int jj = 0; jj < BP_TJ; ++jj) yr[jj] = live && j0 + jj < tokens ? y[(b * tokens + j0 + jj) * ldy + c] : 0.f;
                for (int r0 = 0; r0 < count; r0 += BP_TI) {
                    __syncthreads();  // the previous tile has been read
                    bp_stage_a(a_sh, rows_sh, ab, idx, masked, count, tokens, r0, j0);
                    __syncthreads();
                    if (live) {
                        const int n = count - r0 < BP_TI ? count - r0 : BP_TI;
                        for (int ii = 0; ii < n; ++ii) {
                            float s = 0.f;
#pragma unroll
                            for (int jj = 0; jj < BP_TJ; ++jj) s = fmaf(a_sh[ii][jj], yr[jj], s);
                            acc = fmaf(x[(b * objects + rows_sh[ii]) * ldx + c], s, acc);
                        }
                    }
                }
            }
            part += acc;
        }
        red[threadIdx.x] = part;
        __syncthreads();
        if ((int)threadIdx.x < per) {
            const int u = u0 + threadIdx.x, len = group < BP_BLOCK ? group : BP_BLOCK;
            if (u < out_width) {
                float s = 0.f;
                for (int t = 0; t < len; ++t) s += red[threadIdx.x * len + t];
                out[b * out_width + u] = s;
            }
        }
        __syncthreads();  // red is rewritten by the next unit
    }
}

struct BanPoolBackwardXyParams {
    const float* att;
    int64_t att_stride;
    const float* x;
    int ldx;
    const float* y;
    int ldy;
    const int* counts;
    const int* indices;
    int masked, batch, objects, tokens, width, group;
    const float* grad_out;
    float* grad_x;
    int ldgx;
    float* grad_y;
    int ldgy, through_relu;
};

extern "C" __global__ void ban_pool_backward_xy(const BanPoolBackwardXyParams prm) {
    const float* __restrict__ att = prm.att;
    const int64_t att_stride = prm.att_stride;
    const float* __restrict__ x = prm.x;
    const int ldx = prm.ldx;
    const float* __restrict__ y = prm.y;
    const int ldy = prm.ldy;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked, batch = prm.batch, objects = prm.objects, tokens = prm.tokens, width = prm.width, group = prm.group;
    const float* __restrict__ grad_out = prm.grad_out;
    float* __restrict__ grad_x = prm.grad_x;
    const int ldgx = prm.ldgx;
    float* __restrict__ grad_y = prm.grad_y;
    const int ldgy = prm.ldgy, through_relu = prm.through_relu;
    __shared__ float a_sh[BP_TI][BP_TJ];
    __shared__ int rows_sh[BP_TI];
    const int out_width = width / group;
    const int tiles = (width + BP_BLOCK - 1) / BP_BLOCK;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * tiles; unit += gridDim.x) {
        const int64_t b = unit / tiles;
        const int c = (int)(unit - b * tiles) * BP_BLOCK + threadIdx.x;
        const bool live = c < width;
        const int count = masked ? counts[b] : objects;
        const int* idx = indices + b * objects;
        const float* ab = att + b * att_stride;
        const float df = live ? grad_out[b * out_width + c / group] : 0.f;
        if (live && masked && count < objects) {  // padded rows: the gaps of the ascending index list
            int next = 0;
            for (int q = 0; q <= count; ++q) {
                const int r = q < count ? idx[q] : objects;
                for (; next < r; ++next) grad_x[(b * objects + next) * ldgx + c] = 0.f;
                next = r + 1;
            }
        }
        for (int j0 = 0; j0 < tokens; j0 += BP_TJ) {
            float yr[BP_TJ], ya[BP_TJ];
#pragma unroll
            for (int jj = 0; jj < BP_TJ; ++jj) {
                yr[jj] = live && j0 + jj < tokens ? y[(b * tokens + j0 + jj) * ldy + c] : 0.f;
                ya[jj] = 0.f;
            }
            for (int r0 = 0; r0 < count; r0 += BP_TI) {
                __syncthreads();
                bp_stage_a(a_sh, rows_sh, ab, idx, masked, count, tokens, r0, j0);
                __syncthreads();
                if (live) {
                    const int n = count - r0 < BP_TI ? count - r0 : BP_TI;
                    for (int ii = 0; ii < n; ++ii) {
                        const int64_t row = b * objects + rows_sh[ii];
                        const float xv = x[row * ldx + c];
                        float s = 0.f;
#pragma unroll
                        for (int jj = 0; jj < BP_TJ; ++jj) {
                            s = fmaf(a_sh[ii][jj], yr[jj], s);
                            ya[jj] = fmaf(a_sh[ii][jj], xv, ya[jj]);
                        }
                        const float g = through_relu && !(xv > 0.f) ? 0.f : df * s;
                        float* gx = grad_x + row * ldgx + c;
                        *gx = j0 == 0 ? g : *gx + g;
                    }
                }
            }
            if (live) {
#pragma unroll
                for (int jj = 0; jj < BP_TJ; ++jj) {
                    if (j0 + jj < tokens) grad_y[(b * tokens + j0 + jj) * ldgy + c] = through_relu && !(yr[jj] > 0.f) ? 0.f : df * ya[jj];
                }
            }
        }
    }
}

struct BanPoolGradAttentionParams {
    const float* x;
    int ldx;
    const float* y;
    int ldy;
    const int* counts;
    const int* indices;
    int masked, batch, objects, tokens, width, group;
    const float* grad_out;
    float* grad_att;
    int64_t att_stride;
};

extern "C" __global__ void ban_pool_grad_attention(const BanPoolGradAttentionParams prm) {
    const float* __restrict__ x = prm.x;
    const int ldx = prm.ldx;
    const float* __restrict__ y = prm.y;
    const int ldy = prm.ldy;
    const int* __restrict__ counts = prm.counts;
    const int* __restrict__ indices = prm.indices;
    const int masked = prm.masked, batch = prm.batch, objects = prm.objects, tokens = prm.tokens, width = prm.width, group = prm.group;
    const float* __restrict__ grad_out = prm.grad_out;
    float* __restrict__ grad_att = prm.grad_att;
    const int64_t att_stride = prm.att_stride;
    __shared__ float xs[BP_GA_TI][BP_GA_TK + 1];
    __shared__ float ys[BP_GA_TJ][BP_GA_TK + 1];
    const int out_width = width / group;
    const int ti = threadIdx.x / BP_GA_TJ, tj = threadIdx.x % BP_GA_TJ;
    const int itiles = (objects + BP_GA_TI - 1) / BP_GA_TI, jtiles = (tokens + BP_GA_TJ - 1) / BP_GA_TJ;
    for (int64_t unit = blockIdx.x; unit < (int64_t)batch * itiles * jtiles; unit += gridDim.x) {
        const int64_t b = unit / ((int64_t)itiles * jtiles);
        const int rest = (int)(unit - b * itiles * jtiles);
        const int it = rest / jtiles, jt = rest % jtiles;
        const int count = masked ? counts[b] : objects;
        const int* idx = indices + b * objects;
        float* gab = grad_att + b * att_stride;
        const int j = jt * BP_GA_TJ + tj;
        if (it == 0 && masked && count < objects && ti == 0 && j < tokens) {  // padded rows, once per token
            int next = 0;
            for (int q = 0; q <= count; ++q) {
                const int r = q < count ? idx[q] : objects;
                for (; next < r; ++next) gab[(int64_t)next * tokens + j] = 0.f;
                next = r + 1;
            }
        }
        const int r0 = it * BP_GA_TI;
        if (r0 >= count) continue;  // the same for the whole block: count is per sample
        const float* gb = grad_out + b * out_width;
        float acc = 0.f;
        for (int k0 = 0; k0 < width; k0 += BP_GA_TK) {
            __syncthreads();  // the previous tile (or unit) has been read
            for (int e = threadIdx.x; e < BP_GA_TI * BP_GA_TK; e += blockDim.x) {
                const int ii = e / BP_GA_TK, kk = e % BP_GA_TK, c = k0 + kk;
                float v = 0.f;
                if (r0 + ii < count && c < width) v = x[(b * objects + bp_row(idx, masked, r0 + ii)) * ldx + c] * gb[c / group];
                xs[ii][kk] = v;
            }
            for (int e = threadIdx.x; e < BP_GA_TJ * BP_GA_TK; e += blockDim.x) {
                const int jj = e / BP_GA_TK, kk = e % BP_GA_TK, c = k0 + kk, jy = jt * BP_GA_TJ + jj;
                ys[jj][kk] = jy < tokens && c < width ? y[(b * tokens + jy) * ldy + c] : 0.f;
            }
            __syncthreads();
#pragma unroll 8
            for (int kk = 0; kk < BP_GA_TK; ++kk) acc = fmaf(xs[ti][kk], ys[tj][kk], acc);
        }
        if (r0 + ti < count && j < tokens) gab[(int64_t)bp_row(idx, masked, r0 + ti) * tokens + j] = acc;
    }
}
