#!/usr/bin/env python3
"""PyTorch peer benchmark for the linear-sum fusion (two projections added), to compare against bifuse's LinearSum.

The module timed is block.bootstrap.pytorch's own LinearSum (block/models/networks/fusions/fusions.py,
imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see bootstrap_fusions.py),
used as its VQA models use it: LinearSum([Dx, Dy], Out, mm_dim=M) with its defaults otherwise
(activ_input = activ_output = 'relu', normalize False, every dropout 0), called as fusion([x, y]) in
eval mode, in float32; autograd for the backward. Timed eagerly and under torch.compile (default
mode). Without a checkout it prints "SKIPPED LinearSum: ..." and exits with code 3 (peers.py: skipped).

Math (block.bootstrap's LinearSum), weights in nn.Linear layout (out x in):
    z = act(W0 x + b0) + act(W1 y + b1)                              (M units)
    out = act(P z + b_p)                                             (linear_out: M -> Out)
    act = relu (activ_input and activ_output; --activation tanh sets both to tanh)

Rows: LinearSum.forward (under torch.no_grad()) and LinearSum.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size label "Dx=4800,Dy=4096,M=1200,Out=3000,relu", batch 256 (block.bootstrap's VQA2 fusion sizes).
Cost model (bifuse's): I = B(Dx+Dy), W = (Dx+1)M + (Dy+1)M + (M+1)Out (every parameter float),
O = B*Out, M_adds = B(M(Dx+Dy) + Out*M).

Examples:
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/linear_sum_peer.py --csv out.csv
    python3 benchmarks/python/linear_sum_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/linear_sum_peer.py --check
"""

import sys

import numpy as np

import bootstrap_fusions as bf
import peer_common as pc


class LinearSumPeer(pc.Peer):
    op = "LinearSum"
    csv_prefix = "peer-linear-sum"
    default_batches = "256"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=4800, help="question features (default 4800)")
        p.add_argument("--dy", type=int, default=4096, help="image features (default 4096)")
        p.add_argument("--mm-dim", type=int, default=1200, help="M, the fusion's mm_dim (default 1200)")
        p.add_argument("--out", type=int, default=3000, help="output dimension (default 3000)")
        p.add_argument("--activation", choices=("relu", "tanh"), default="relu",
                       help="activ_input and activ_output (default relu, block.bootstrap's)")

    def setup(self, args):
        return bf.require(self.op)

    def cases(self, args, batches):
        Dx, Dy, M, Out = args.dx, args.dy, args.mm_dim, args.out
        size = "Dx=%d,Dy=%d,M=%d,Out=%d,%s" % (Dx, Dy, M, Out, args.activation)
        W = bf.linear_params(Dx, M) + bf.linear_params(Dy, M) + bf.linear_params(M, Out)
        return [pc.Case(size, B, (B * (Dx + Dy), W, B * Out, B * (M * (Dx + Dy) + Out * M)),
                        dict(W=W, act=args.activation))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        act = args.activation
        return bf.build(lambda f: f.LinearSum([args.dx, args.dy], args.out, mm_dim=args.mm_dim,
                                              activ_input=act, activ_output=act),
                        case, args.dx, args.dy, args.out, device, dtype, seed, case.dims["W"])

    def definition(self, case, built):
        w = bf.weights(built)
        act = pc.activation_np(case.dims["act"])
        x, y = bf.inputs(built)
        out = []
        for b in range(x.shape[0]):
            z = act(bf.affine(w, "linear0", x[b])) + act(bf.affine(w, "linear1", y[b]))
            out.append(act(bf.affine(w, "linear_out", z)))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(LinearSumPeer, __doc__))
