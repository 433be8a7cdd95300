// Mfb: multi-modal factorized bilinear pooling (MFB) and its high-order cascade (MFH), forward and backward:
// everything between the cuBLAS GEMMs, fused into one kernel per direction.
//
// Math (spec §2). n blocks, block i has projections of width w = o*k (units). With P = x U^T and Q = y V^T
// (all blocks' weights stacked, so ONE GEMM per input projects every block; the biases are added here):
//   a_i = act(P_i + bu_i),  c_i = act(Q_i + bv_i),  h_i = a_i * c_i,  e_i = h_i * e_{i-1}  (e_0 = 1)
//   z_i[u] = sum_{t<k} e_i[u*k + t]         (sum pooling over k ADJACENT units, u < o)
//   out_i = normalize(z_i)                   (optional signed sqrt, optional l2; per block i)
// Backward, g_i = dL/dout_i, gz_i = dL/dz_i through the normalization (as cbp_normalize_backward):
//   ge_i = gz_i[j/k] + ge_{i+1} * h_{i+1}    (from the last block down to the first: e_{i+1} = h_{i+1} e_i)
//   gh_i = ge_i * e_{i-1},  gP_i = gh_i * c_i * act'(a_i),  gQ_i = gh_i * a_i * act'(c_i)
// The host (MfbCuda.java) then runs dx = gP U, dy = gQ V, dU = gP^T x, dV = gQ^T y (one GEMM each over all
// blocks) and the bias column sums (lin_bias_grad in Linear.cu).
//
// Shapes (row-major): P, Q, gP, gQ: rows x n*w (block i at columns [i*w, (i+1)*w)); bu, bv: n*w (zeros for a
// layer without bias); out, g, zbuf: rows x n*o (block i at columns [i*o, (i+1)*o)).
// act: 0 none, 1 relu, 2 tanh (io.bifuse.Activation.code). l2_mode: 0 none, 1 F.normalize, 2 Caffe.
//
// Kernels and launch geometry: one thread block of MFB_BLOCK threads per sample (grid-stride over samples,
// grid = min(rows, 65535)); within a sample, thread u owns output units u, u + 256, ...: it walks the k
// adjacent projection units of its group and all n blocks, carrying the MFH chain e in a register, so the
// chain, the pooling and the Hadamard products never touch memory. A thread keeps one float per block (the
// group's z_i) and, in the backward, a[i], c[i] and the prefix products: n <= MFB_MAX_BLOCKS (8) blocks, which
// MfbCuda checks. The per-block norms are fixed-order shared-memory tree reductions in double (deterministic).
//   mfb_forward   pass 1: z_i for every group (written raw to out) and sum_u ssqrt(z_i[u])^2 per block;
//                 pass 2 (skipped without normalization): out = ssqrt(z) / norm_i, re-reading the thread's
//                 own pass-1 values.
//   mfb_backward  pass 1 (skipped without normalization): z_i into zbuf, |u_i|^2 and <u_i, g_i> per block;
//                 pass 2: gz_i per group, then for each of its k units the chain forward (prefix products),
//                 the reverse recursion above, and gP, gQ written once.
//
// Bytes and FLOPs per call (B rows, n blocks, w = o*k; 4-byte floats; GEMMs excluded):
//   forward:  reads P, Q (8 B n w) and the biases, writes out (4 B n o; with normalization read back and
//             rewritten: +8 B n o). ~6 B n w FLOPs (+ ~5 B n o for the normalization).
//   backward: reads P, Q (8 B n w), g (4 B n o), writes gP, gQ (8 B n w), zbuf (4 B n o, read back).
//             ~(12 + 2n) B n w FLOPs. GEMMs (cuBLAS): forward 2 B n w (Dx + Dy); backward the two
//             projections again plus dx, dy, dU, dV: 6 B n w (Dx + Dy).
//
// Parameters: mfb_forward and mfb_backward each take ONE struct by value (MfbForwardParams,
// MfbBackwardParams), as flash-attention's Flash_fwd_params: one kernelParams entry instead of 13 or 17.
// The fields keep the former positional order in C layout (8-byte aligned; an int before a pointer leaves
// 4 bytes of padding), so the Java side's KernelSpec "{...}" lists them as the old signature did and the
// launch sites pass the same arguments; KernelCatalogTest checks that description against the PTX (the
// struct's .align and size, and the offset and width of every field the kernel loads). Each kernel first
// copies the fields into __restrict__ locals of the old parameters' names: its body is unchanged.
#include "bifuse_device.cuh"

#define MFB_BLOCK 256
#define MFB_MAX_BLOCKS 8

// z_i[u] for every block i of one group u (k adjacent units), the chain carried in a register.
static __device__ __forceinline__ void mfb_group_pool(const float* pr, const float* qr, const float* bu, const float* bv,
                                                      int u, int n, int w, int k, int act, float* z) {
    for (int i = 0; i < n; ++i) z[i] = 0.f;
    for (int t = 0; t < k; ++t) {
        const int j = u * k + t;
        float e = 1.f;
        for (int i = 0; i < n; ++i) {
            const int col = i * w + j;
            e *= bf_act(pr[col] + bu[col], act) * bf_act(qr[col] + bv[col], act);
            z[i] += e;
        }
    }
}

struct MfbForwardParams {
    const float* P;
    const float* Q;
    const float* bu;
    const float* bv;
    float* out;
    int rows, n, o, k, act, signed_sqrt, l2_mode;
    float l2_eps;
};

struct MfbBackwardParams {
    const float* P;
    const float* Q;
    const float* bu;
    const float* bv;
    const float* g;
    float* zbuf;
    float* gP;
    float* gQ;
    int rows, n, o, k, act, signed_sqrt;
    float ssqrt_eps;
    int l2_mode;
    float l2_eps;
};

extern "C" __global__ void mfb_forward(const MfbForwardParams prm) {
    const float* __restrict__ P = prm.P;
    const float* __restrict__ Q = prm.Q;
    const float* __restrict__ bu = prm.bu;
    const float* __restrict__ bv = prm.bv;
    float* __restrict__ out = prm.out;
    const int rows = prm.rows, n = prm.n, o = prm.o, k = prm.k, act = prm.act, signed_sqrt = prm.signed_sqrt, l2_mode = prm.l2_mode;
    const float l2_eps = prm.l2_eps;
    const int w = o * k;
    const bool identity = !signed_sqrt && l2_mode == 0;
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        const float* pr = P + b * ((int64_t)n * w);
        const float* qr = Q + b * ((int64_t)n * w);
        float* orow = out + b * ((int64_t)n * o);
        double ss[MFB_MAX_BLOCKS];
        for (int i = 0; i < n; ++i) ss[i] = 0.0;
        for (int u = threadIdx.x; u < o; u += blockDim.x) {
            float z[MFB_MAX_BLOCKS];
            mfb_group_pool(pr, qr, bu, bv, u, n, w, k, act, z);
            for (int i = 0; i < n; ++i) {
                orow[i * o + u] = z[i];
                const float s = signed_sqrt ? bf_ssqrt(z[i]) : z[i];
                ss[i] += (double)s * s;
            }
        }
        if (identity) continue;  // uniform across the block: no barrier is skipped by only some threads
        float inv[MFB_MAX_BLOCKS];
        for (int i = 0; i < n; ++i) {
            int active;
            inv[i] = bf_inv_norm(bf_block_sum2<MFB_BLOCK>(ss[i], 0.0).x, l2_mode, l2_eps, &active);
        }
        for (int u = threadIdx.x; u < o; u += blockDim.x) {  // the same u as pass 1: this thread's own values
            for (int i = 0; i < n; ++i) {
                const float zv = orow[i * o + u];
                orow[i * o + u] = (signed_sqrt ? bf_ssqrt(zv) : zv) * inv[i];
            }
        }
    }
}

extern "C" __global__ void mfb_backward(const MfbBackwardParams prm) {
    const float* __restrict__ P = prm.P;
    const float* __restrict__ Q = prm.Q;
    const float* __restrict__ bu = prm.bu;
    const float* __restrict__ bv = prm.bv;
    const float* __restrict__ g = prm.g;
    float* __restrict__ zbuf = prm.zbuf;
    float* __restrict__ gP = prm.gP;
    float* __restrict__ gQ = prm.gQ;
    const int rows = prm.rows, n = prm.n, o = prm.o, k = prm.k, act = prm.act, signed_sqrt = prm.signed_sqrt, l2_mode = prm.l2_mode;
    const float ssqrt_eps = prm.ssqrt_eps, l2_eps = prm.l2_eps;
    const int w = o * k;
    const bool identity = !signed_sqrt && l2_mode == 0;
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        const float* pr = P + b * ((int64_t)n * w);
        const float* qr = Q + b * ((int64_t)n * w);
        const float* grow = g + b * ((int64_t)n * o);
        float* zrow = zbuf + b * ((int64_t)n * o);
        float* gpr = gP + b * ((int64_t)n * w);
        float* gqr = gQ + b * ((int64_t)n * w);
        float inv[MFB_MAX_BLOCKS], coef[MFB_MAX_BLOCKS];
        if (!identity) {
            double ss[MFB_MAX_BLOCKS], ug[MFB_MAX_BLOCKS];
            for (int i = 0; i < n; ++i) ss[i] = ug[i] = 0.0;
            for (int u = threadIdx.x; u < o; u += blockDim.x) {
                float z[MFB_MAX_BLOCKS];
                mfb_group_pool(pr, qr, bu, bv, u, n, w, k, act, z);
                for (int i = 0; i < n; ++i) {
                    zrow[i * o + u] = z[i];
                    const float s = signed_sqrt ? bf_ssqrt(z[i]) : z[i];
                    ss[i] += (double)s * s;
                    ug[i] += (double)s * grow[i * o + u];
                }
            }
            for (int i = 0; i < n; ++i) {
                const double2 sums = bf_block_sum2<MFB_BLOCK>(ss[i], ug[i]);
                int active;
                inv[i] = bf_inv_norm(sums.x, l2_mode, l2_eps, &active);
                // <o, g>·inv = <u, g>·inv²: one coefficient on u, as in cbp_normalize_backward.
                coef[i] = active ? (float)(sums.y * (double)inv[i] * (double)inv[i]) : 0.f;
            }
        }
        for (int u = threadIdx.x; u < o; u += blockDim.x) {
            float gz[MFB_MAX_BLOCKS];
            for (int i = 0; i < n; ++i) {
                float du = grow[i * o + u];
                if (!identity) {
                    const float zv = zrow[i * o + u];  // this thread's own pass-1 value
                    const float s = signed_sqrt ? bf_ssqrt(zv) : zv;
                    du = inv[i] * (du - coef[i] * s);
                    if (signed_sqrt) {
                        const float r = sqrtf(fabsf(zv)) + ssqrt_eps;
                        du = r > 0.f ? du * 0.5f / r : 0.f;
                    }
                }
                gz[i] = du;
            }
            for (int t = 0; t < k; ++t) {
                const int j = u * k + t;
                float a[MFB_MAX_BLOCKS], c[MFB_MAX_BLOCKS], pre[MFB_MAX_BLOCKS];
                float e = 1.f;
                for (int i = 0; i < n; ++i) {
                    const int col = i * w + j;
                    a[i] = bf_act(pr[col] + bu[col], act);
                    c[i] = bf_act(qr[col] + bv[col], act);
                    pre[i] = e;  // e_{i-1}: the chain before block i
                    e *= a[i] * c[i];
                }
                float ge = 0.f;
                for (int i = n - 1; i >= 0; --i) {
                    ge = i + 1 < n ? gz[i] + ge * (a[i + 1] * c[i + 1]) : gz[i];
                    const float gh = ge * pre[i];
                    const int col = i * w + j;
                    gpr[col] = gh * c[i] * bf_act_grad(a[i], act);
                    gqr[col] = gh * a[i] * bf_act_grad(c[i], act);
                }
            }
        }
    }
}
