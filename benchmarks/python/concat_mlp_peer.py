#!/usr/bin/env python3
"""PyTorch peer benchmark for the concatenation + MLP fusion, to compare against bifuse's ConcatMlp.

The module timed is block.bootstrap.pytorch's own ConcatMLP (block/models/networks/fusions/fusions.py
over its networks/mlp.py MLP, imported at run time from $BLOCK_BOOTSTRAP or the bundle's
block_bootstrap/; see bootstrap_fusions.py), used as its VQA models use it:
ConcatMLP([Dx, Dy], Out, dimensions=[d1, ..., dn]) with its defaults otherwise (activation 'relu',
dropout 0), called as fusion([x, y]) in eval mode, in float32; autograd for the backward. Timed
eagerly and under torch.compile (default mode). Without a checkout it prints "SKIPPED ConcatMlp: ..."
and exits with code 3 (peers.py reports it as skipped).

Math (block.bootstrap's ConcatMLP / MLP), weights in nn.Linear layout (out x in):
    h_0 = concat(x, y)                                               (Dx + Dy units)
    h_i = act(L_i h_{i-1} + b_i)      for i = 1..n                   (d_i units; act = relu)
    out = L_{n+1} h_n + b_{n+1}                                      (Out units: no activation after
                                                                      the last layer)

Rows: ConcatMlp.forward (under torch.no_grad()) and ConcatMlp.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size label "Dx=4800,Dy=4096,H=1600x1600,Out=3000,relu", batch 256 (block.bootstrap's VQA2 fusion
sizes; H lists d1..dn).
Cost model (bifuse's), with d_0 = Dx + Dy and d_{n+1} = Out: I = B(Dx+Dy),
W = sum_i (d_{i-1}+1) d_i (every parameter float), O = B*Out, M_adds = B sum_i d_{i-1} d_i.

Examples:
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/concat_mlp_peer.py --csv out.csv
    python3 benchmarks/python/concat_mlp_peer.py --device cpu --runs 3 --warmup 1 --dimensions 800
    python3 benchmarks/python/concat_mlp_peer.py --check
"""

import sys

import numpy as np

import bootstrap_fusions as bf
import peer_common as pc


def parse_dimensions(s):
    """'1600x1600' -> [1600, 1600]."""
    try:
        dims = [int(v) for v in str(s).lower().split("x")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise SystemExit("--dimensions: expected hidden widths joined by x, e.g. 1600x1600, got %r" % s)
    return dims


class ConcatMlpPeer(pc.Peer):
    op = "ConcatMlp"
    csv_prefix = "peer-concat-mlp"
    default_batches = "256"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=4800, help="question features (default 4800)")
        p.add_argument("--dy", type=int, default=4096, help="image features (default 4096)")
        p.add_argument("--dimensions", default="1600x1600",
                       help="the hidden layers' widths d1..dn, joined by x (default 1600x1600)")
        p.add_argument("--out", type=int, default=3000, help="output dimension (default 3000)")
        p.add_argument("--activation", choices=("relu", "tanh"), default="relu",
                       help="after every hidden layer (default relu, block.bootstrap's)")

    def setup(self, args):
        args.hidden = parse_dimensions(args.dimensions)
        return bf.require(self.op)

    def cases(self, args, batches):
        Dx, Dy, H, Out = args.dx, args.dy, args.hidden, args.out
        widths = [Dx + Dy] + H + [Out]
        size = "Dx=%d,Dy=%d,H=%s,Out=%d,%s" % (Dx, Dy, "x".join(str(d) for d in H), Out, args.activation)
        W = sum(bf.linear_params(a, b) for a, b in zip(widths[:-1], widths[1:]))
        mac = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        return [pc.Case(size, B, (B * (Dx + Dy), W, B * Out, B * mac), dict(W=W, act=args.activation, hidden=H))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        return bf.build(lambda f: f.ConcatMLP([args.dx, args.dy], args.out, dimensions=list(args.hidden),
                                              activation=args.activation),
                        case, args.dx, args.dy, args.out, device, dtype, seed, case.dims["W"])

    def definition(self, case, built):
        w = bf.weights(built)
        act = pc.activation_np(case.dims["act"])
        x, y = bf.inputs(built)
        layers = len(case.dims["hidden"]) + 1          # the hidden layers and the output layer
        out = []
        for b in range(x.shape[0]):
            h = np.concatenate([x[b], y[b]])
            for i in range(layers):
                h = bf.affine(w, "mlp.linears.%d" % i, h)
                if i < layers - 1:
                    h = act(h)
            out.append(h)
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(ConcatMlpPeer, __doc__))
