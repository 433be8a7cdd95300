// Compact bilinear pooling pieces shared by CompactBilinear.cu and McbAttention.cu: the deterministic
// count-sketch bin and the one-pass pooling of one sample in shared memory (see CompactBilinear.cu's
// "One-pass compact bilinear pooling" for the math and bifuse_fft.cuh for the FFT and pos()).
#ifndef BIFUSE_CBP_CUH
#define BIFUSE_CBP_CUH

#include "bifuse_fft.cuh"

// Bin j of one row's count sketch through the CSR inverse of h: its inputs in ascending index order, so
// the pipeline's and the fused kernels' sketches are the same bits.
static __device__ __forceinline__ float cbp_sketch_bin(const float* __restrict__ row, const int* __restrict__ bin_start,
                                                       const int* __restrict__ bin_index, const float* __restrict__ bin_sign, int j) {
    float acc = 0.f;
    for (int k = bin_start[j], e = bin_start[j + 1]; k < e; ++k) acc = fmaf(bin_sign[k], row[bin_index[k]], acc);
    return acc;
}

// a[pos(j)] = (Psi_x[j], Psi_y[j]) for one sample, then a barrier.
static __device__ void cbp_fused_sketch(float2* a, const float* __restrict__ xr, const float* __restrict__ yr, const int* __restrict__ perm,
                                        const int* __restrict__ sx, const int* __restrict__ ix, const float* __restrict__ wx,
                                        const int* __restrict__ sy, const int* __restrict__ iy, const float* __restrict__ wy, int d) {
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        a[perm[j]] = make_float2(cbp_sketch_bin(xr, sx, ix, wx, j), cbp_sketch_bin(yr, sy, iy, wy, j));
    __syncthreads();
}

// From the sketches at pos() to z at pos() (real parts): C = FFT(c); Z = X Y / d over the pairs (k, d-k); IFFT.
static __device__ void cbp_fused_convolve(float2* a, const int* __restrict__ radix, int stages, const float2* __restrict__ tw, int d) {
    bf_fft(a, radix, stages, tw, d, 1, 0);
    const float half_scale = 0.5f / d;  // X and Y each carry a 1/2; the 1/d of irfft goes on one of them
    for (int k = threadIdx.x; k <= d / 2; k += blockDim.x) {
        const int k2 = k == 0 ? 0 : d - k;
        const float2 c = a[k], e = a[k2];
        const float2 x = make_float2((c.x + e.x) * half_scale, (c.y - e.y) * half_scale);
        const float2 y = make_float2((c.y + e.y) * 0.5f, (e.x - c.x) * 0.5f);  // (c - conj e) / 2i
        const float2 z = bf_cmul(x, y);
        a[k] = z;
        if (k2 != k) a[k2] = bf_conj(z);
    }
    __syncthreads();
    bf_fft(a, radix, stages, tw, d, 0, 1);
}

// The backward's spectral half, from g_z = dL/dz at pos() (real parts, imaginary 0; the caller passed a
// barrier) to a = dPsi_x + i dPsi_y at pos(): G = FFT(g_z) (its half k <= d/2 into gh), the sketches
// again, C = FFT(c), a = IFFT(G . i conj(C)) / d.
static __device__ void cbp_fused_correlate(float2* a, float2* gh, const float* __restrict__ xr, const float* __restrict__ yr,
                                           const int* __restrict__ perm, const int* __restrict__ sx, const int* __restrict__ ix,
                                           const float* __restrict__ wx, const int* __restrict__ sy, const int* __restrict__ iy,
                                           const float* __restrict__ wy, const int* __restrict__ radix, int stages,
                                           const float2* __restrict__ tw, int d) {
    bf_fft(a, radix, stages, tw, d, 1, 0);  // G, natural order
    for (int k = threadIdx.x; k <= d / 2; k += blockDim.x) gh[k] = a[k];
    __syncthreads();
    cbp_fused_sketch(a, xr, yr, perm, sx, ix, wx, sy, iy, wy, d);
    bf_fft(a, radix, stages, tw, d, 1, 0);  // C
    const float scale = 1.f / d;
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
        const float2 gk = k <= d / 2 ? gh[k] : bf_conj(gh[d - k]);
        const float2 w = bf_cmul_conj(gk, a[k]);  // G conj(C), then times i and 1/d
        a[k] = make_float2(-w.y * scale, w.x * scale);
    }
    __syncthreads();
    bf_fft(a, radix, stages, tw, d, 0, 1);
}

#endif
