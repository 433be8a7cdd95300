#!/usr/bin/env python3
"""PyTorch peer benchmark for BLOCK fusion (block-superdiagonal tensor decomposition, Ben-younes et al. 2019), to compare against bifuse's Block.

The module timed is block.bootstrap.pytorch's own Block (block/models/networks/fusions/fusions.py,
imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see bootstrap_fusions.py),
used as its VQA models use it: Block([Dx, Dy], Out, mm_dim=M, chunks=C, rank=R) with its defaults
otherwise (shared False, pos_norm 'before_cat', every dropout 0), called as fusion([x, y]) in eval
mode, in float32; autograd for the backward. Timed eagerly and under torch.compile (default mode).
Without a checkout it prints "SKIPPED Block: ..." and exits with code 3 (peers.py: skipped).

Math (block.bootstrap's Block), weights in nn.Linear layout (out x in):
    x0 = W0 x + b0,  x1 = W1 y + b1                                  (M units each)
    chunks c < C of widths s_c (get_sizes_list(M, C): ceil(M/C) each, the last ones narrower),
    x0_c, x1_c the s_c units of chunk c:
    m_c = (Q0_c x0_c + q0_c) * (Q1_c x1_c + q1_c)                    (merge_linears0/1[c]: s_c -> R*s_c)
    z_c[j] = sum_{r < R} m_c[r*s_c + j]                              (view(B, R, s_c).sum(1))
    out = P concat_c( l2( ssqrt(z_c) ) ) + b_p                       (each chunk normalized, then
                                                                      concatenated; linear_out: M -> Out)
    ssqrt(z) = sign(z) sqrt(|z|), l2(u) = u / max(||u||, 1e-12)     (F.normalize)

Rows: Block.forward (under torch.no_grad()) and Block.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size label "Dx=4800,Dy=4096,M=1600,C=18,R=15,Out=3000", batch 256 (block.bootstrap's VQA2 fusion).
Cost model (bifuse's): I = B(Dx+Dy), W = (Dx+1)M + (Dy+1)M + sum_c 2(s_c+1)R s_c + (M+1)Out (every
parameter float), O = B*Out, M_adds = B(M(Dx+Dy) + 2R sum_c s_c^2 + Out*M).

--check: the float64 module against the definition above (numpy, from its state dict; 1e-10), and
the float32 module against its float64 run: output to 1e-4, gradients to --check-grad-tol 5e-2. The
gradients' error is set by the smallest |z_c[j]| among the B*M values under the signed square root
(float32's rounding of z over 2|z|), so it varies a lot with the seed: at B = 4 and the default sizes,
seeds 1..5 and 42 gave 4e-4 to 1.7e-2 on the CPU (seed 42, the default: 1.6e-2), --check-batch 2 up to
3.5e-2. A chunk 1 wide is normalized to +-1 whatever its value, so the gradients of its parameters are
exactly 0: those are checked by absolute norm.

Examples:
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/block_peer.py --csv out.csv
    python3 benchmarks/python/block_peer.py --device cpu --runs 2 --warmup 1 --batches 4 --mm-dim 64 --chunks 4 --rank 3
    python3 benchmarks/python/block_peer.py --check
"""

import sys

import numpy as np

import bootstrap_fusions as bf
import peer_common as pc


class BlockPeer(pc.Peer):
    op = "Block"
    csv_prefix = "peer-block"
    default_batches = "256"
    default_check_batch = 4
    # The gradients go through the signed square root: 0.5/sqrt|z| amplifies float32 rounding at the smallest |z|
    # of the B*M pre-norm values, so their error is heavy-tailed over seeds (see the docstring), as full bilinear's.
    default_check_grad_tol = 5e-2

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=4800, help="question features (default 4800)")
        p.add_argument("--dy", type=int, default=4096, help="image features (default 4096)")
        p.add_argument("--mm-dim", type=int, default=1600, help="M, the fusion's mm_dim (default 1600)")
        p.add_argument("--chunks", type=int, default=18, help="C, the number of blocks (default 18)")
        p.add_argument("--rank", type=int, default=15, help="R, the rank of each block (default 15)")
        p.add_argument("--out", type=int, default=3000, help="output dimension (default 3000)")

    def setup(self, args):
        self.exact_zero_grads = bf.width_one_chunks(
            bf.chunk_sizes(args.mm_dim, args.chunks),
            lambda c: ["fusion.merge_linears%d.%d.%s" % (i, c, p) for i in (0, 1) for p in ("weight", "bias")])
        return bf.require(self.op)

    def cases(self, args, batches):
        Dx, Dy, M, C, R, Out = args.dx, args.dy, args.mm_dim, args.chunks, args.rank, args.out
        sizes = bf.chunk_sizes(M, C)
        size = "Dx=%d,Dy=%d,M=%d,C=%d,R=%d,Out=%d" % (Dx, Dy, M, C, R, Out)
        W = (bf.linear_params(Dx, M) + bf.linear_params(Dy, M) + sum(2 * bf.linear_params(s, R * s) for s in sizes)
             + bf.linear_params(M, Out))
        mac = M * (Dx + Dy) + 2 * R * sum(s * s for s in sizes) + Out * M
        return [pc.Case(size, B, (B * (Dx + Dy), W, B * Out, B * mac), dict(W=W, R=R, sizes=sizes)) for B in batches]

    def build(self, case, args, device, dtype, seed):
        return bf.build(lambda f: f.Block([args.dx, args.dy], args.out, mm_dim=args.mm_dim, chunks=args.chunks,
                                          rank=args.rank),
                        case, args.dx, args.dy, args.out, device, dtype, seed, case.dims["W"], case.dims["sizes"])

    def definition(self, case, built):
        w = bf.weights(built)
        x, y = bf.inputs(built)
        R = case.dims["R"]
        out = []
        for b in range(x.shape[0]):
            x0 = bf.affine(w, "linear0", x[b])
            x1 = bf.affine(w, "linear1", y[b])
            parts, begin = [], 0
            for c, s in enumerate(case.dims["sizes"]):
                m = (bf.affine(w, "merge_linears0.%d" % c, x0[begin:begin + s])
                     * bf.affine(w, "merge_linears1.%d" % c, x1[begin:begin + s]))
                parts.append(pc.ssqrt_l2_np(m.reshape(R, s).sum(0)))     # unit r*s + j belongs to output j
                begin += s
            out.append(bf.affine(w, "linear_out", np.concatenate(parts)))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(BlockPeer, __doc__))
