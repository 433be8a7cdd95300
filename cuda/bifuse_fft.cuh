// In-place mixed-radix complex FFTs of ONE length-d sequence held in shared memory, computed by the
// whole block: the building block of the one-pass compact bilinear pooling kernels (CompactBilinear.cu's
// cbp_fused_*, and the MCB attention kernels), which keep a sample's spectrum on chip instead of
// round-tripping it through global memory between cuFFT calls.
//
// Math. X[k] = sum_n x[n] w^(nk), w = exp(-2 pi i / d) (forward) or its conjugate (inverse, unscaled).
// d = r_0 r_1 ... r_{m-1}, every r_s in {2, 3, 4, 5, 7} (io.bifuse.cuda.SharedMemoryFft picks them:
// fours first, then 2, 3, 5, 7). With L_s = r_{s+1} ... r_{m-1} and N_s = r_s L_s, the digit-reversed
// position of an index k with mixed-radix digits p_s = (k / (r_0 ... r_{s-1})) mod r_s is
//     pos(k) = sum_s p_s L_s                       (the host's table perm[k] = pos(k))
// Two orderings, transposes of each other (the DFT matrix is symmetric):
//   bf_fft(.., dit = 0): decimation in frequency, stages s = 0 .. m-1: natural input -> X[k] at pos(k);
//     each butterfly (block of N_s, offset j < L_s) reads a[base + j + q L_s], q < r_s, takes the r-point
//     DFT and multiplies output p by w_{N_s}^(j p).
//   bf_fft(.., dit = 1): decimation in time, stages s = m-1 .. 0: x[n] at pos(n) -> X[k] at k; the same
//     butterflies with the twiddle w_{N_s}^(j q) applied to input q before the r-point DFT.
// So a sequence scattered to pos() (a count sketch writes its bins there for free), transformed with
// dit = 1, is in natural order for pointwise spectral work, and dit = 0 brings it back to pos() order,
// where the output pass reads it through perm[] again: no separate reordering pass.
//
// Twiddles: tw[k] = exp(-2 pi i k / d), k < d, computed in double on the host and rounded to float (one
// table per d, read through the cache); w_{N_s}^(j q) = tw[(d / N_s) j q] with j q < N_s, and the r-point
// roots w_r^m = tw[(d / r) m]. Radix 2 and 4 are written out; 3, 5, 7 are the direct r^2 sum.
//
// Cost per transform: sum_s (d / r_s) butterflies, each ~ (r_s^2 + r_s) complex multiply-adds for the
// direct radices and ~2 r_s log2 r_s adds for 2 and 4; 2 d complex shared-memory accesses per stage
// (16 d bytes), one __syncthreads per stage. Every call ends with a barrier.
#ifndef BIFUSE_FFT_CUH
#define BIFUSE_FFT_CUH

#include "bifuse_device.cuh"

// The most stages a plan may have (SharedMemoryFft.MAX_STAGES): 4^8 = 65536 > any d that fits on chip.
#define BF_FFT_MAX_STAGES 16

static __device__ __forceinline__ float2 bf_cmul(float2 a, float2 b) {
    return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
static __device__ __forceinline__ float2 bf_cmul_conj(float2 a, float2 b) {  // a * conj(b)
    return make_float2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
}
static __device__ __forceinline__ float2 bf_conj(float2 a) { return make_float2(a.x, -a.y); }
static __device__ __forceinline__ float2 bf_twiddle(const float2* __restrict__ tw, int k, int inverse) {
    const float2 w = tw[k];
    return inverse ? bf_conj(w) : w;
}

// v[p] <- sum_q v[q] w_R^(p q), w_R = tw[step] (conjugated when inverse), step = d / R.
template <int R>
static __device__ __forceinline__ void bf_small_dft(float2* v, const float2* __restrict__ tw, int step, int inverse) {
    if constexpr (R == 2) {
        const float2 a = v[0], b = v[1];
        v[0] = make_float2(a.x + b.x, a.y + b.y);
        v[1] = make_float2(a.x - b.x, a.y - b.y);
    } else if constexpr (R == 4) {
        // w_4 = -i forward, +i inverse: y0 = a0 + b0, y2 = a0 - b0, y1 = a1 + b1, y3 = a1 - b1.
        const float2 a0 = make_float2(v[0].x + v[2].x, v[0].y + v[2].y), a1 = make_float2(v[0].x - v[2].x, v[0].y - v[2].y);
        const float2 b0 = make_float2(v[1].x + v[3].x, v[1].y + v[3].y), t = make_float2(v[1].x - v[3].x, v[1].y - v[3].y);
        const float2 b1 = inverse ? make_float2(-t.y, t.x) : make_float2(t.y, -t.x);
        v[0] = make_float2(a0.x + b0.x, a0.y + b0.y);
        v[2] = make_float2(a0.x - b0.x, a0.y - b0.y);
        v[1] = make_float2(a1.x + b1.x, a1.y + b1.y);
        v[3] = make_float2(a1.x - b1.x, a1.y - b1.y);
    } else {
        float2 w[R], in[R];
        for (int m = 0; m < R; ++m) {
            w[m] = bf_twiddle(tw, step * m, inverse);
            in[m] = v[m];
        }
        for (int p = 0; p < R; ++p) {
            float2 acc = in[0];
            for (int q = 1; q < R; ++q) {
                const float2 t = bf_cmul(in[q], w[(p * q) % R]);
                acc.x += t.x;
                acc.y += t.y;
            }
            v[p] = acc;
        }
    }
}

// One stage of radix R and span L (= L_s) over the whole sequence, then a barrier.
template <int R>
static __device__ void bf_fft_stage(float2* a, const float2* __restrict__ tw, int d, int span, int dit, int inverse) {
    const int n_s = R * span, tstep = d / n_s, butterflies = d / R;
    for (int t = threadIdx.x; t < butterflies; t += blockDim.x) {
        const int blk = t / span, j = t - blk * span;
        float2* base = a + blk * n_s + j;
        float2 v[R];
        for (int q = 0; q < R; ++q) v[q] = base[q * span];
        if (dit)
            for (int q = 1; q < R; ++q) v[q] = bf_cmul(v[q], bf_twiddle(tw, tstep * j * q, inverse));
        bf_small_dft<R>(v, tw, d / R, inverse);
        if (!dit)
            for (int p = 1; p < R; ++p) v[p] = bf_cmul(v[p], bf_twiddle(tw, tstep * j * p, inverse));
        for (int p = 0; p < R; ++p) base[p * span] = v[p];
    }
    __syncthreads();
}

static __device__ void bf_fft_any_stage(int r, float2* a, const float2* __restrict__ tw, int d, int span, int dit, int inverse) {
    switch (r) {  // r is the same in every thread: the barriers inside do not diverge
        case 2: bf_fft_stage<2>(a, tw, d, span, dit, inverse); break;
        case 3: bf_fft_stage<3>(a, tw, d, span, dit, inverse); break;
        case 4: bf_fft_stage<4>(a, tw, d, span, dit, inverse); break;
        case 5: bf_fft_stage<5>(a, tw, d, span, dit, inverse); break;
        default: bf_fft_stage<7>(a, tw, d, span, dit, inverse); break;
    }
}

// The whole transform of a[0, d): radix[0 .. stages) is the plan (in global memory, read by every thread).
// The caller has put the input in place and passed a barrier; on return every thread may read any element.
static __device__ void bf_fft(float2* a, const int* __restrict__ radix, int stages, const float2* __restrict__ tw, int d, int dit,
                              int inverse) {
    if (dit) {
        int span = 1;
        for (int s = stages - 1; s >= 0; --s) {
            const int r = radix[s];
            bf_fft_any_stage(r, a, tw, d, span, 1, inverse);
            span *= r;
        }
    } else {
        int span = d;
        for (int s = 0; s < stages; ++s) {
            const int r = radix[s];
            span /= r;
            bf_fft_any_stage(r, a, tw, d, span, 0, inverse);
        }
    }
}

#endif
