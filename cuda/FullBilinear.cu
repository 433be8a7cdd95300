// FullBilinear: full bilinear pooling (bilinear CNN; homologous / second-order pooling when Y = X),
// the normalization kernels around cuBLAS, forward and backward.
//
// Math (spec §2). Per sample b, X_b L x C1, Y_b L x C2 (row-major, position-major):
//   Z_b = alpha * X_b^T Y_b (C1 x C2, alpha = 1/L when averaging, else 1), z_b = vec(Z_b) (index c1*C2 + c2),
//   u = ssqrt(z) = sign(z) sqrt|z| (optional), o = l2(u) over the sample's d = C1*C2 entries (optional):
//     l2_mode 0 none; 1 u / max(|u|, eps) (PyTorch F.normalize); 2 u * (|u|^2 + eps)^-1/2 (Caffe).
// Backward, g = dL/do: with s the scale (inv) and c = 1 while the norm is active (0 under the eps clamp),
//   du = s * (g - c * s^2 * <u, g> * u),   dz = du * 0.5 / (sqrt|z| + ssqrt_eps)   (0 where that is 0),
// exactly io.bifuse.reference.NormalizationReference. Then (cuBLAS, in FullBilinearCuda.java)
//   dX_b = alpha Y_b G_b^T, dY_b = alpha X_b G_b; homologous dX_b = alpha X_b (G_b + G_b^T).
//
// Division of labour: the GEMMs (Z, dX, dY) are cuBLAS strided-batched calls; these kernels do the
// normalization. One sample is long (d = 512*512 = 262144 at the spec's size) and the batch is short
// (B = 32), so one block per sample (cbp_normalize_*) would use 32 blocks of a 132-SM GPU. Instead a
// deterministic two-stage reduction over a 2-D grid (x: chunks of a sample, y: samples):
//   fbp_partial_forward   per (chunk k, sample b): sum of u^2 over the chunk, in double, fixed tree order,
//                         to partial[b*chunks + k].
//   fbp_normalize_forward per (chunk k, sample b): every block first combines its sample's `chunks`
//                         partials in one fixed order (so all blocks of a sample agree bit for bit),
//                         then o = ssqrt(z) * inv over its chunk. out may alias z (in place).
//   fbp_partial_backward  the same with two sums per chunk: u^2 and u*g, to partial[2*(b*chunks + k) + {0,1}].
//   fbp_normalize_backward combine, then the elementwise chain rule above. gz may alias z (in place).
// The chunking (chunk, chunks) is chosen by the host from d alone (FullBilinearCuda.chunks: ~4096 entries
// per chunk, at most 1024 chunks), never from the GPU, so results are bit-identical run to run and
// device to device. Samples are a grid-stride loop over blockIdx.y (any B); chunks over blockIdx.x.
// Launch: grid (chunks, min(B, 65535)), block FBP_BLOCK = 256. Indices b*d are 64-bit.
//
// Bytes and FLOPs per call (d = C1*C2; 4-byte floats):
//   forward:  GEMM reads 4BL(C1+C2) (4BLC1 homologous), writes 4Bd, 2BLd FLOPs; partial reads 4Bd,
//             normalize reads 4Bd + writes 4Bd (~4 FLOPs/entry + a sqrt). Compulsory: 4B(L(C1+C2) + d).
//   backward: recomputes Z (the forward's GEMM, into a B x d workspace; skipped without normalization),
//             partial reads 8Bd, normalize reads 8Bd + writes 4Bd, then dX and dY GEMMs (2 x 2BLd FLOPs;
//             homologous: two GEMMs into dX, the second with beta = 1). Compulsory: 4B(2L(C1+C2) + d).
#include "bifuse_device.cuh"

#define FBP_BLOCK 256

// The sample's totals from its chunks' partials (width doubles per chunk): each thread sums a strided
// subset in ascending order, then the fixed tree. Same data, same order in every block of the sample.
static __device__ __forceinline__ double2 fbp_combine(const double* partial, int chunks, int width) {
    double a = 0.0, b = 0.0;
    for (int k = threadIdx.x; k < chunks; k += blockDim.x) {
        a += partial[(int64_t)k * width];
        if (width > 1) b += partial[(int64_t)k * width + 1];
    }
    return bf_block_sum2<FBP_BLOCK>(a, b);
}

// partial[b*chunks + k] = sum over chunk k of sample b of u^2.   z: rows x d.
extern "C" __global__ void fbp_partial_forward(const float* __restrict__ z, double* __restrict__ partial, int rows, int d,
                                               int chunk, int chunks, int signed_sqrt) {
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const float* zr = z + b * d;
        for (int k = blockIdx.x; k < chunks; k += gridDim.x) {
            const int64_t start = (int64_t)k * chunk, end = start + chunk < d ? start + chunk : d;
            double ss = 0.0;
            for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
            }
            const double2 s = bf_block_sum2<FBP_BLOCK>(ss, 0.0);
            if (threadIdx.x == 0) partial[b * chunks + k] = s.x;
        }
    }
}

// out = ssqrt(z) * inv per sample; partial only read when l2_mode != 0. out may alias z.
extern "C" __global__ void fbp_normalize_forward(const float* z, const double* __restrict__ partial, float* out, int rows, int d,
                                                 int chunk, int chunks, int signed_sqrt, int l2_mode, float l2_eps) {
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const double sumsq = l2_mode != 0 ? fbp_combine(partial + b * chunks, chunks, 1).x : 0.0;
        int active;
        const float inv = bf_inv_norm(sumsq, l2_mode, l2_eps, &active);
        const float* zr = z + b * d;
        float* orow = out + b * d;
        for (int k = blockIdx.x; k < chunks; k += gridDim.x) {
            const int64_t start = (int64_t)k * chunk, end = start + chunk < d ? start + chunk : d;
            for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                orow[j] = u * inv;
            }
        }
    }
}

// partial[2*(b*chunks + k)] = sum u^2, partial[2*(b*chunks + k) + 1] = sum u*g over chunk k of sample b.
extern "C" __global__ void fbp_partial_backward(const float* __restrict__ z, const float* __restrict__ g, double* __restrict__ partial,
                                                int rows, int d, int chunk, int chunks, int signed_sqrt) {
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const float* zr = z + b * d;
        const float* gr = g + b * d;
        for (int k = blockIdx.x; k < chunks; k += gridDim.x) {
            const int64_t start = (int64_t)k * chunk, end = start + chunk < d ? start + chunk : d;
            double ss = 0.0, ug = 0.0;
            for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
                const float u = signed_sqrt ? bf_ssqrt(zr[j]) : zr[j];
                ss += (double)u * u;
                ug += (double)u * gr[j];
            }
            const double2 s = bf_block_sum2<FBP_BLOCK>(ss, ug);
            if (threadIdx.x == 0) {
                partial[2 * (b * chunks + k)] = s.x;
                partial[2 * (b * chunks + k) + 1] = s.y;
            }
        }
    }
}

// gz = dL/dz from z (pre-normalization) and g = dL/do; partial only read when l2_mode != 0. gz may alias z.
extern "C" __global__ void fbp_normalize_backward(const float* z, const float* __restrict__ g, const double* __restrict__ partial,
                                                  float* gz, int rows, int d, int chunk, int chunks, int signed_sqrt,
                                                  float ssqrt_eps, int l2_mode, float l2_eps) {
    for (int64_t b = blockIdx.y; b < rows; b += gridDim.y) {
        const double2 sums = l2_mode != 0 ? fbp_combine(partial + 2 * b * chunks, chunks, 2) : make_double2(0.0, 0.0);
        int active;
        const float inv = bf_inv_norm(sums.x, l2_mode, l2_eps, &active);
        // s^2 <u, g>, folded into one coefficient on u.
        const float coef = active ? (float)(sums.y * (double)inv * (double)inv) : 0.f;
        const float* zr = z + b * d;
        const float* gr = g + b * d;
        float* outr = gz + b * d;
        for (int k = blockIdx.x; k < chunks; k += gridDim.x) {
            const int64_t start = (int64_t)k * chunk, end = start + chunk < d ? start + chunk : d;
            for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
                const float zv = zr[j];
                const float u = signed_sqrt ? bf_ssqrt(zv) : zv;
                float du = inv * (gr[j] - coef * u);
                if (signed_sqrt) {
                    const float r = sqrtf(fabsf(zv)) + ssqrt_eps;
                    du = r > 0.f ? du * 0.5f / r : 0.f;
                }
                outr[j] = du;
            }
        }
    }
}
