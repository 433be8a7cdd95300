// CompactBilinear: compact bilinear pooling (MCB) by count sketch + FFT, forward and backward.
//
// Math (spec §1). Count sketch Psi(x; h, s)[j] = sum_{i: h[i]=j} s[i] x[i], x in R^C, out in R^d.
//   z = irfft( rfft(Psi(x;h1,s1)) * rfft(Psi(y;h2,s2)), n = d )          (irfft includes 1/d)
//   optional u = ssqrt(z) = sign(z) sqrt|z|, then o = l2(u) over each sample.
// Backward, g = dL/dz:  dPsi_x = irfft(rfft(g) * conj(rfft(Psi_y))),  dx[a] = s1[a] dPsi_x[h1[a]]
//                       dPsi_y = irfft(rfft(g) * conj(rfft(Psi_x))),  dy[b] = s2[b] dPsi_y[h2[b]]
//
// Shapes (row-major): x B x Dx, y B x Dy, z B x d; spectra B x (d/2+1) complex (float2).
// The host (CompactBilinearCuda.java) stacks x's and y's sketches in one 2B x d buffer so that one
// batched cuFFT R2C plan (batch 2B) transforms both; these kernels do everything but the FFTs.
//
// Kernels and launch geometry (every kernel is a grid-stride loop over 64-bit indices, so any B, d):
//   cbp_sketch_gather   DETERMINISTIC count sketch, one thread per output bin (b, j): sums its inputs
//                       through a CSR inverse of h (bin_start[d+1], bin_index[C], bin_sign[C]) in a
//                       fixed order. No atomics, bit-identical run to run.      grid ~B*d/256, block 256
//   cbp_sketch_atomic   the obvious scatter: one thread per input (b, i), atomicAdd into out[b, h[i]];
//                       output must be zeroed first. Float atomics make it NON-deterministic; it exists
//                       as the simple cross-check and as the opt-in fast mode.   grid ~B*C/256, block 256
//   cbp_spectral_product   Z[r] = X[r] * Y[r] * scale  (X = rows [0,B), Y = rows [B,2B))  B*(d/2+1) threads
//   cbp_spectral_grad      out[r] = G[r]*conj(Y[r])*scale, out[B+r] = G[r]*conj(X[r])*scale
//   cbp_normalize_forward  one block per sample: ssqrt, sum of squares (double, fixed tree), scale.
//   cbp_normalize_backward one block per sample: recomputes u, |u|^2 and <o, g>, then the chain rule.
//   cbp_sketch_grad     dx[b, a] = s[a] * dpsi[b, h[a]]: a gather, one thread per (b, a).
//
// Bytes and FLOPs per call (B rows, C = Dx + Dy, F = d/2+1; 4-byte floats, FFTs counted 2.5 d log2 d):
//   forward:  sketches read 4BC + write 8Bd; R2C(2B) ~ read 8Bd, write 16BF; product reads 16BF,
//             writes 8BF; C2R(B) reads 8BF, writes 4Bd; normalize reads + writes 4Bd each.
//             Compulsory (x, y in, z out): 4B(C + d). FLOPs ~ 2BC + 3 * 2.5 B d log2 d + 6BF (+5Bd norm).
//   backward: forward's sketches and R2C, then R2C(B) of g, grad product (2 x 6BF), C2R(2B), gathers.
//             Compulsory: 4B(2C + d). FLOPs ~ 3BC + 5 * 2.5 B d log2 d + 12BF (+10Bd norm)
//             (the backward alone; the benchmarks' fwd+bwd row adds the forward's count).
#include "bifuse_device.cuh"

#define CBP_BLOCK 256

// out[b*d + j] for all b < rows, j < d. in is rows x cols (row stride cols).
extern "C" __global__ void cbp_sketch_gather(const float* __restrict__ in, const int* __restrict__ bin_start,
                                             const int* __restrict__ bin_index, const float* __restrict__ bin_sign,
                                             float* __restrict__ out, int rows, int cols, int d) {
    const int64_t total = (int64_t)rows * d;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / d;
        const int j = (int)(t - b * d);
        const float* row = in + b * cols;
        float acc = 0.f;
        for (int k = bin_start[j], e = bin_start[j + 1]; k < e; ++k) acc = fmaf(bin_sign[k], row[bin_index[k]], acc);
        out[t] = acc;
    }
}

extern "C" __global__ void cbp_sketch_atomic(const float* __restrict__ in, const int* __restrict__ h,
                                             const float* __restrict__ s, float* __restrict__ out,
                                             int rows, int cols, int d) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / cols;
        const int i = (int)(t - b * cols);
        atomicAdd(out + b * d + h[i], s[i] * in[t]);
    }
}

static __device__ __forceinline__ float2 cmul(float2 a, float2 b) {
    return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
static __device__ __forceinline__ float2 cmul_conj(float2 a, float2 b) {  // a * conj(b)
    return make_float2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
}

// spectra: 2*rows x freq (x's then y's); out: rows x freq.
extern "C" __global__ void cbp_spectral_product(const float2* __restrict__ spectra, float2* __restrict__ out,
                                                int rows, int freq, float scale) {
    const int64_t total = (int64_t)rows * freq;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        float2 p = cmul(spectra[t], spectra[t + total]);
        out[t] = make_float2(p.x * scale, p.y * scale);
    }
}

// g: rows x freq; spectra: 2*rows x freq (X then Y); out: 2*rows x freq (dX then dY).
extern "C" __global__ void cbp_spectral_grad(const float2* __restrict__ g, const float2* __restrict__ spectra,
                                             float2* __restrict__ out, int rows, int freq, float scale) {
    const int64_t total = (int64_t)rows * freq;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const float2 gv = g[t];
        const float2 gx = cmul_conj(gv, spectra[t + total]);
        const float2 gy = cmul_conj(gv, spectra[t]);
        out[t] = make_float2(gx.x * scale, gx.y * scale);
        out[t + total] = make_float2(gy.x * scale, gy.y * scale);
    }
}

// One block per sample b (grid-stride over samples). z, out: rows x d. out may alias z.
extern "C" __global__ void cbp_normalize_forward(const float* z, float* out, int rows, int d,
                                                 int signed_sqrt, int l2_mode, float l2_eps) {
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        const float* zr = z + b * d;
        float* orow = out + b * d;
        double ss = 0.0;
        if (l2_mode != 0) {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
            }
        }
        int active;
        const float inv = bf_inv_norm(bf_block_sum2<CBP_BLOCK>(ss, 0.0).x, l2_mode, l2_eps, &active);
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
            orow[j] = u * inv;
        }
    }
}

// Given z (pre-normalization) and g = dL/d(output), writes gz = dL/dz. gz may alias g.
//   o = u * inv;  du = inv * (g - c * o * <o, g>), c = 1 when the norm is active (else the eps clamp
//   makes the scale constant);  dz = du * 0.5 / (sqrt|z| + ssqrt_eps), and 0 where z == 0 and eps == 0.
extern "C" __global__ void cbp_normalize_backward(const float* __restrict__ z, const float* g, float* gz,
                                                  int rows, int d, int signed_sqrt, float ssqrt_eps,
                                                  int l2_mode, float l2_eps) {
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        const float* zr = z + b * d;
        const float* gr = g + b * d;
        float* outr = gz + b * d;
        double ss = 0.0, ug = 0.0;
        if (l2_mode != 0) {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
                ug += (double)u * gr[j];
            }
        }
        const double2 sums = bf_block_sum2<CBP_BLOCK>(ss, ug);
        int active;
        const float inv = bf_inv_norm(sums.x, l2_mode, l2_eps, &active);
        // <o, g> * inv = <u, g> * inv^2, folded into one coefficient on u.
        const float coef = active ? (float)(sums.y * (double)inv * (double)inv) : 0.f;
        const bool identity = !signed_sqrt && l2_mode == 0;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            float du = gr[j];
            if (!identity) {  // z is only read (and only has to be initialized) when it matters
                const float zv = zr[j];
                const float u = signed_sqrt ? bf_ssqrt(zv) : zv;
                du = inv * (du - coef * u);
                if (signed_sqrt) {
                    const float r = sqrtf(fabsf(zv)) + ssqrt_eps;
                    du = r > 0.f ? du * 0.5f / r : 0.f;
                }
            }
            outr[j] = du;
        }
    }
}

// dx[b, a] = s[a] * dpsi[b, h[a]];  dpsi: rows x d, dx: rows x cols.
extern "C" __global__ void cbp_sketch_grad(const float* __restrict__ dpsi, const int* __restrict__ h,
                                           const float* __restrict__ s, float* __restrict__ dx,
                                           int rows, int cols, int d) {
    const int64_t total = (int64_t)rows * cols;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / cols;
        const int a = (int)(t - b * cols);
        dx[t] = s[a] * dpsi[b * d + h[a]];
    }
}
