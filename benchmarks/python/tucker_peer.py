#!/usr/bin/env python3
"""PyTorch peer benchmark for Tucker fusion (a full bilinear core between two projections), to compare against bifuse's Tucker.

The module timed is block.bootstrap.pytorch's own Tucker (block/models/networks/fusions/fusions.py,
imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see bootstrap_fusions.py),
used as its VQA models use it: Tucker([Dx, Dy], Out, mm_dim=M) with its defaults otherwise (shared
False, normalize False, every dropout 0), called as fusion([x, y]) in eval mode, in float32; autograd
for the backward. Timed eagerly and under torch.compile (default mode). Without a checkout it prints
"SKIPPED Tucker: ..." and exits with code 3 (peers.py reports it as skipped).

Math (block.bootstrap's Tucker), weights in nn.Linear / nn.Bilinear layout, no activation anywhere:
    x0 = W0 x + b0,  x1 = W1 y + b1                                  (M units each)
    z_k = x0^T T_k x1 + t_k                                          (nn.Bilinear(M, M, M), T: M x M x M)
    out = P z + b_p                                                  (linear_out: M -> Out)

Rows: Tucker.forward (under torch.no_grad()) and Tucker.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size label "Dx=4800,Dy=4096,M=235,Out=3000", batch 256 (block.bootstrap's VQA2 fusion sizes).
Cost model (bifuse's): I = B(Dx+Dy), W = (Dx+1)M + (Dy+1)M + M^3 + M + (M+1)Out (every parameter
float), O = B*Out, M_adds = B(M(Dx+Dy) + M^3 + Out*M).

Examples:
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/tucker_peer.py --csv out.csv
    python3 benchmarks/python/tucker_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/tucker_peer.py --check
"""

import sys

import numpy as np

import bootstrap_fusions as bf
import peer_common as pc


class TuckerPeer(pc.Peer):
    op = "Tucker"
    csv_prefix = "peer-tucker"
    default_batches = "256"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=4800, help="question features (default 4800)")
        p.add_argument("--dy", type=int, default=4096, help="image features (default 4096)")
        p.add_argument("--mm-dim", type=int, default=235, help="M, the fusion's mm_dim (default 235)")
        p.add_argument("--out", type=int, default=3000, help="output dimension (default 3000)")

    def setup(self, args):
        return bf.require(self.op)

    def cases(self, args, batches):
        Dx, Dy, M, Out = args.dx, args.dy, args.mm_dim, args.out
        size = "Dx=%d,Dy=%d,M=%d,Out=%d" % (Dx, Dy, M, Out)
        W = bf.linear_params(Dx, M) + bf.linear_params(Dy, M) + M ** 3 + M + bf.linear_params(M, Out)
        return [pc.Case(size, B, (B * (Dx + Dy), W, B * Out, B * (M * (Dx + Dy) + M ** 3 + Out * M)), dict(W=W))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        return bf.build(lambda f: f.Tucker([args.dx, args.dy], args.out, mm_dim=args.mm_dim),
                        case, args.dx, args.dy, args.out, device, dtype, seed, case.dims["W"])

    def definition(self, case, built):
        w = bf.weights(built)
        x, y = bf.inputs(built)
        out = []
        for b in range(x.shape[0]):
            z = bf.bilinear(w, "bilinear", bf.affine(w, "linear0", x[b]), bf.affine(w, "linear1", y[b]))
            out.append(bf.affine(w, "linear_out", z))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(TuckerPeer, __doc__))
