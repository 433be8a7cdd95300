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
#include "bifuse_cbp.cuh"

#define CBP_BLOCK 256

// out[b*d + j] for all b < rows, j < d. in is rows x cols (row stride cols).
extern "C" __global__ void cbp_sketch_gather(const float* __restrict__ in, const int* __restrict__ bin_start,
                                             const int* __restrict__ bin_index, const float* __restrict__ bin_sign,
                                             float* __restrict__ out, int rows, int cols, int d) {
    const int64_t total = (int64_t)rows * d;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int64_t b = t / d;
        const int j = (int)(t - b * d);
        out[t] = cbp_sketch_bin(in + b * cols, bin_start, bin_index, bin_sign, j);
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


// spectra: 2*rows x freq (x's then y's); out: rows x freq.
extern "C" __global__ void cbp_spectral_product(const float2* __restrict__ spectra, float2* __restrict__ out,
                                                int rows, int freq, float scale) {
    const int64_t total = (int64_t)rows * freq;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        float2 p = bf_cmul(spectra[t], spectra[t + total]);
        out[t] = make_float2(p.x * scale, p.y * scale);
    }
}

// g: rows x freq; spectra: 2*rows x freq (X then Y); out: 2*rows x freq (dX then dY).
extern "C" __global__ void cbp_spectral_grad(const float2* __restrict__ g, const float2* __restrict__ spectra,
                                             float2* __restrict__ out, int rows, int freq, float scale) {
    const int64_t total = (int64_t)rows * freq;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const float2 gv = g[t];
        const float2 gx = bf_cmul_conj(gv, spectra[t + total]);
        const float2 gy = bf_cmul_conj(gv, spectra[t]);
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
            // z is only read (and only has to be initialized) when it matters
            outr[j] = identity ? gr[j] : bf_norm_grad(zr[j], gr[j], inv, coef, signed_sqrt, ssqrt_eps);
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

// ---- One-pass compact bilinear pooling: one block per sample, the sample's spectrum in shared memory.
//
// Why: the pipeline above makes 5 (forward) or 9 (backward) passes over B x d arrays in global memory,
// 3 of them inside cuFFT; these kernels read x, y (and g) once and write the output once. Both count
// sketches go into ONE complex sequence c = Psi_x + i Psi_y (bin j at pos(j): bifuse_fft.cuh), one
// forward FFT gives C, and the two real spectra separate as X[k] = (C[k] + conj C[d-k]) / 2,
// Y[k] = (C[k] - conj C[d-k]) / 2i. Z = X Y / d is Hermitian; its inverse transform (dit = 0) is z at
// pos(). For d whose prime factors are all <= 7 and whose 8 d bytes (forward) or 12 d + 8 (backward) fit
// in the opt-in shared memory (d = 16000: 128 KB and 192 KB of the 227 KB), chosen by
// io.bifuse.cuda.SharedMemoryFft; other d take the pipeline, which stays as the cross-check.
//
// Backward, per sample: g_z = dL/dz through the normalization (z recomputed as in the forward when
// there is one), G = FFT(g_z) (its half k <= d/2 kept in the second shared region), C again, then
//   dPsi_x + i dPsi_y = corr(g_z, Psi_y + i Psi_x) = IFFT( G . i conj(C) ) / d
// (corr(g, a)[i] = sum_j g[j] a[j - i] has spectrum G[k] sum_m a[m] w^(-mk), and Psi_y + i Psi_x = i conj(c)),
// and the two gathers read the real and the imaginary part at pos(h[a]) (the host's ph1, ph2 tables).
//
// Launch: grid min(B, 65535) blocks (grid-stride over samples), CBP_FUSED_BLOCK threads, dynamic shared
// memory 8 d (forward) or 8 d + 8 (d/2 + 1) (backward) bytes, raised by cuFuncSetAttribute.
// Bytes per call: forward 4 B (Dx + Dy + d) plus the tables (~20 d + 12 C bytes, cached): the compulsory
// traffic. Backward 4 B (2 Dx + 2 Dy + d). FLOPs: each length-d FFT ~ 5 d log2 d (radix 4) to
// ~ 8 d log_r d (radix 5, 7); forward 2 FFTs, backward 3 (5 with a normalization), plus O(C + d) per sample.
#define CBP_FUSED_BLOCK 512

struct CbpFusedForwardParams {
    const float* x;
    const float* y;
    float* out;
    const int* bin_start_x;
    const int* bin_index_x;
    const float* bin_sign_x;
    const int* bin_start_y;
    const int* bin_index_y;
    const float* bin_sign_y;
    const int* perm;
    const float2* tw;
    const int* radix;
    int rows, dx, dy, d, stages, signed_sqrt, l2_mode;
    float l2_eps;
};

struct CbpFusedBackwardParams {
    const float* x;
    const float* y;
    const float* g;
    float* gx;
    float* gy;
    const int* bin_start_x;
    const int* bin_index_x;
    const float* bin_sign_x;
    const int* bin_start_y;
    const int* bin_index_y;
    const float* bin_sign_y;
    const int* ph1;
    const float* s1;
    const int* ph2;
    const float* s2;
    const int* perm;
    const float2* tw;
    const int* radix;
    float ssqrt_eps, l2_eps;  // the floats side by side: nvcc loads neighbouring fields as one vector
    int rows, dx, dy, d, stages, signed_sqrt, l2_mode;
};

extern "C" __global__ void __launch_bounds__(CBP_FUSED_BLOCK) cbp_fused_forward(const CbpFusedForwardParams prm) {
    // The fields as locals first (as mfb_forward does): direct parameter loads, which KernelCatalogTest matches.
    const float* __restrict__ x = prm.x;
    const float* __restrict__ y = prm.y;
    float* __restrict__ out = prm.out;
    const int* __restrict__ bin_start_x = prm.bin_start_x;
    const int* __restrict__ bin_index_x = prm.bin_index_x;
    const float* __restrict__ bin_sign_x = prm.bin_sign_x;
    const int* __restrict__ bin_start_y = prm.bin_start_y;
    const int* __restrict__ bin_index_y = prm.bin_index_y;
    const float* __restrict__ bin_sign_y = prm.bin_sign_y;
    const int* __restrict__ perm = prm.perm;
    const float2* __restrict__ tw = prm.tw;
    const int* __restrict__ radix = prm.radix;
    const int rows = prm.rows;
    const int dx = prm.dx;
    const int dy = prm.dy;
    const int d = prm.d;
    const int stages = prm.stages;
    const int signed_sqrt = prm.signed_sqrt;
    const int l2_mode = prm.l2_mode;
    const float l2_eps = prm.l2_eps;
    BF_DYNAMIC_SHARED(float2, a);
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        cbp_fused_sketch(a, x + b * dx, y + b * dy, perm, bin_start_x, bin_index_x, bin_sign_x, bin_start_y,
                         bin_index_y, bin_sign_y, d);
        cbp_fused_convolve(a, radix, stages, tw, d);
        double ss = 0.0;
        if (l2_mode != 0) {
            for (int n = threadIdx.x; n < d; n += blockDim.x) {
                const float z = a[perm[n]].x;
                const float u = signed_sqrt ? bf_ssqrt(z) : z;
                ss += (double)u * u;
            }
        }
        int active;
        const float inv = bf_inv_norm(bf_block_sum<CBP_FUSED_BLOCK>(ss), l2_mode, l2_eps, &active);
        float* orow = out + b * d;
        for (int n = threadIdx.x; n < d; n += blockDim.x) {
            const float z = a[perm[n]].x;
            orow[n] = (signed_sqrt ? bf_ssqrt(z) : z) * inv;
        }
        __syncthreads();  // the next sample's sketch overwrites a
    }
}

extern "C" __global__ void __launch_bounds__(CBP_FUSED_BLOCK) cbp_fused_backward(const CbpFusedBackwardParams prm) {
    const float* __restrict__ x = prm.x;
    const float* __restrict__ y = prm.y;
    const float* __restrict__ g = prm.g;
    float* __restrict__ gx = prm.gx;
    float* __restrict__ gy = prm.gy;
    const int* __restrict__ bin_start_x = prm.bin_start_x;
    const int* __restrict__ bin_index_x = prm.bin_index_x;
    const float* __restrict__ bin_sign_x = prm.bin_sign_x;
    const int* __restrict__ bin_start_y = prm.bin_start_y;
    const int* __restrict__ bin_index_y = prm.bin_index_y;
    const float* __restrict__ bin_sign_y = prm.bin_sign_y;
    const int* __restrict__ ph1 = prm.ph1;
    const float* __restrict__ s1 = prm.s1;
    const int* __restrict__ ph2 = prm.ph2;
    const float* __restrict__ s2 = prm.s2;
    const int* __restrict__ perm = prm.perm;
    const float2* __restrict__ tw = prm.tw;
    const int* __restrict__ radix = prm.radix;
    const int rows = prm.rows;
    const int dx = prm.dx;
    const int dy = prm.dy;
    const int d = prm.d;
    const int stages = prm.stages;
    const int signed_sqrt = prm.signed_sqrt;
    const float ssqrt_eps = prm.ssqrt_eps;
    const int l2_mode = prm.l2_mode;
    const float l2_eps = prm.l2_eps;
    BF_DYNAMIC_SHARED(float2, a);
    float2* gh = a + d;  // G[0 .. d/2]
    const bool identity = !signed_sqrt && l2_mode == 0;
    for (int64_t b = blockIdx.x; b < rows; b += gridDim.x) {
        const float* xr = x + b * dx;
        const float* yr = y + b * dy;
        const float* gr = g + b * d;
        if (identity) {
            for (int n = threadIdx.x; n < d; n += blockDim.x) a[perm[n]] = make_float2(gr[n], 0.f);
        } else {
            cbp_fused_sketch(a, xr, yr, perm, bin_start_x, bin_index_x, bin_sign_x, bin_start_y, bin_index_y, bin_sign_y, d);
            cbp_fused_convolve(a, radix, stages, tw, d);
            double ss = 0.0, ug = 0.0;
            if (l2_mode != 0) {
                for (int n = threadIdx.x; n < d; n += blockDim.x) {
                    const float z = a[perm[n]].x;
                    const float u = signed_sqrt ? bf_ssqrt(z) : z;
                    ss += (double)u * u;
                    ug += (double)u * gr[n];
                }
            }
            const double2 sums = bf_block_sum2<CBP_FUSED_BLOCK>(ss, ug);
            int active;
            const float inv = bf_inv_norm(sums.x, l2_mode, l2_eps, &active);
            const float coef = active ? (float)(sums.y * (double)inv * (double)inv) : 0.f;
            // Each thread rewrites only the elements it read: no barrier needed between the two.
            for (int n = threadIdx.x; n < d; n += blockDim.x) {
                const int at = perm[n];
                a[at] = make_float2(bf_norm_grad(a[at].x, gr[n], inv, coef, signed_sqrt, ssqrt_eps), 0.f);
            }
        }
        __syncthreads();
        cbp_fused_correlate(a, gh, xr, yr, perm, bin_start_x, bin_index_x, bin_sign_x, bin_start_y, bin_index_y, bin_sign_y, radix,
                            stages, tw, d);
        float* gxr = gx + b * dx;
        float* gyr = gy + b * dy;
        for (int i = threadIdx.x; i < dx; i += blockDim.x) gxr[i] = s1[i] * a[ph1[i]].x;
        for (int i = threadIdx.x; i < dy; i += blockDim.x) gyr[i] = s2[i] * a[ph2[i]].y;
        __syncthreads();
    }
}
