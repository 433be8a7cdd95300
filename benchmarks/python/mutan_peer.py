#!/usr/bin/env python3
"""PyTorch peer benchmark for MUTAN fusion (Ben-younes et al. 2017), to compare against bifuse's Mutan.

The module timed is block.bootstrap.pytorch's own Mutan (block/models/networks/fusions/fusions.py,
imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see bootstrap_fusions.py),
used as its VQA models use it: Mutan([Dx, Dy], Out, mm_dim=M, rank=R) with its defaults otherwise
(shared False, normalize False, every dropout 0), called as fusion([x, y]) in eval mode, in float32;
autograd for the backward. Timed eagerly and under torch.compile (default mode). Without a checkout
it prints "SKIPPED Mutan: ..." and exits with code 3 (peers.py reports it as skipped).

Math (block.bootstrap's Mutan), weights in nn.Linear layout (out x in), no activation anywhere:
    x0 = W0 x + b0,  x1 = W1 y + b1                                  (M units each)
    m = (Q0 x0 + c0) * (Q1 x1 + c1)                                  (merge_linear0/1: M -> R*M)
    z_j = sum_{r < R} m[r*M + j]                                     (m.view(B, R, M).sum(1))
    out = P z + b_p                                                  (linear_out: M -> Out)
    x: B x Dx (question), y: B x Dy (image)

Rows: Mutan.forward (under torch.no_grad()) and Mutan.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size label "Dx=4800,Dy=4096,M=700,R=10,Out=3000", batch 256 (block.bootstrap's VQA2 fusion sizes).
Cost model (bifuse's): I = B(Dx+Dy), W = (Dx+1)M + (Dy+1)M + 2(M+1)RM + (M+1)Out (every parameter
float), O = B*Out, M_adds = B(M(Dx+Dy) + 2RM*M + Out*M).

Examples:
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/mutan_peer.py --csv out.csv
    python3 benchmarks/python/mutan_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/mutan_peer.py --check
"""

import sys

import numpy as np

import bootstrap_fusions as bf
import peer_common as pc


class MutanPeer(pc.Peer):
    op = "Mutan"
    csv_prefix = "peer-mutan"
    default_batches = "256"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=4800, help="question features (default 4800)")
        p.add_argument("--dy", type=int, default=4096, help="image features (default 4096)")
        p.add_argument("--mm-dim", type=int, default=700, help="M, the fusion's mm_dim (default 700)")
        p.add_argument("--rank", type=int, default=10, help="R, the rank (default 10)")
        p.add_argument("--out", type=int, default=3000, help="output dimension (default 3000)")

    def setup(self, args):
        return bf.require(self.op)

    def cases(self, args, batches):
        Dx, Dy, M, R, Out = args.dx, args.dy, args.mm_dim, args.rank, args.out
        size = "Dx=%d,Dy=%d,M=%d,R=%d,Out=%d" % (Dx, Dy, M, R, Out)
        W = bf.linear_params(Dx, M) + bf.linear_params(Dy, M) + 2 * bf.linear_params(M, R * M) + bf.linear_params(M, Out)
        return [pc.Case(size, B, (B * (Dx + Dy), W, B * Out, B * (M * (Dx + Dy) + 2 * R * M * M + Out * M)), dict(W=W, R=R))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        return bf.build(lambda f: f.Mutan([args.dx, args.dy], args.out, mm_dim=args.mm_dim, rank=args.rank),
                        case, args.dx, args.dy, args.out, device, dtype, seed, case.dims["W"])

    def definition(self, case, built):
        w = bf.weights(built)
        x, y = bf.inputs(built)
        R = case.dims["R"]
        out = []
        for b in range(x.shape[0]):
            x0 = bf.affine(w, "linear0", x[b])
            x1 = bf.affine(w, "linear1", y[b])
            m = bf.affine(w, "merge_linear0", x0) * bf.affine(w, "merge_linear1", x1)
            z = m.reshape(R, x0.shape[0]).sum(0)           # unit r*M + j belongs to output j
            out.append(bf.affine(w, "linear_out", z))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MutanPeer, __doc__))
