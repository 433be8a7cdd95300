// GuidedAttentionUnit: MCAN's guided-attention unit (mcan-vqa's SGA), launched by io.bifuse.cuda.GuidedAttentionUnitCuda.
//
// Math (rows of width H; the x sequence Lx rows per sample, the guiding y sequence Ly rows):
//   s1 = x + MHA1(x, x, x);  x1 = LN1(s1);  s2 = x1 + MHA2(q = x1, k = v = y);  x2 = LN2(s2)
//   s3 = x2 + W2 relu(W1 x2 + b1) + b2;  out = LN3(s3)
// The attentions are cuda/MultiHeadAttention.cu's, the residual + LayerNorm steps, the feed-forward step's
// bias + ReLU and their backwards cuda/SelfAttentionUnit.cu's (GuidedAttentionUnitCuda is an SA unit with the
// guided step between its two halves). This file holds the one pass the guided step adds to the backward:
//   gau_add2   dx = a + b: dy = dKey + dValue of MHA2 (k = v = y), and dx1 = ds2 + dQuery of MHA2.   grid-stride, block 256
//
// Bytes and FLOPs per call: reads 8 n, writes 4 n bytes, n FLOPs, for n = B Ly H or B Lx H floats.
#include "bifuse_device.cuh"

extern "C" __global__ void gau_add2(float* __restrict__ dx, const float* __restrict__ a, const float* __restrict__ b, int64_t total) {
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) dx[t] = a[t] + b[t];
}
