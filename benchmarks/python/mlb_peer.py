#!/usr/bin/env python3
"""PyTorch peer benchmark for MLB fusion (low-rank bilinear pooling, Kim et al. 2017), to compare against bifuse's Mlb.

Written the way MLB users write it in PyTorch: three nn.Linear layers, the activation on both
projections, an elementwise product, and autograd for the backward. Timed eagerly and under
torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 2), weights in nn.Linear layout (out x in):
    f = P( act(U x + b_u) * act(V y + b_v) ) + b_p       act in {tanh (the paper's), relu, none}
    x: B x Dx (question), y: B x Dy (image), U: J x Dx, V: J x Dy, P: Out x J

Rows: Mlb.forward (under torch.no_grad()) and Mlb.fwd+bwd (forward with autograd, then
loss = (f * g).sum() for a fixed random g, loss.backward() into x, y and the six parameters).
Size label "Dx=2400,Dy=2048,J=1200,Out=2000,tanh", batch 512 by default (spec section 5).
Cost model (bifuse's): I = B(Dx+Dy), W = J(Dx+Dy) + Out*J, O = B*Out, M = B*J(Dx+Dy) + B*Out*J.

--bootstrap: block.bootstrap.pytorch's own MLB instead (block/models/networks/fusions/fusions.py,
imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see bootstrap_fusions.py),
as its VQA2 classifier uses it (options/vqa2/mlb.yaml, classif.fusion):
MLB([Dx, Dy], Out, mm_dim=J, normalize=True), its defaults otherwise (activ_input = activ_output = relu,
every dropout 0), called as fusion([x, y]) in eval mode, float32:
    z = relu(W0 x + b0) * relu(W1 y + b1)                            (J units)
    out = relu(P l2(ssqrt(z)) + b_p)                                 (linear_out: J -> Out)
    ssqrt(z) = sign(z) sqrt(|z|), l2(u) = u / max(||u||, 1e-12)     (F.normalize)
Defaults then Dx 4800, Dy 4096, J 1200, Out 3000, batch 256; size label
"Dx=4800,Dy=4096,J=1200,Out=3000,bootstrap"; the cost model as above (biases not counted). Without a
checkout it prints "SKIPPED Mlb: ..." and exits with code 3 (peers.py: skipped). --check holds the float64
module to a numpy definition of the math above (1e-10) and the float32 module to its float64 run: output
to --check-tol, gradients to --check-grad-tol (default 5e-2 with --bootstrap: they go through the signed
square root, whose derivative 0.5/sqrt|z| amplifies float32 rounding at the smallest z > 0; at the default
sizes on the CPU, seeds 1..5 and 42 at --check-batch 2 and 4 gave 2e-5 to 7e-3, seed 42 at B = 4: 6e-5).

Examples:
    python3 benchmarks/python/mlb_peer.py --csv out.csv
    python3 benchmarks/python/mlb_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/mlb_peer.py --check
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/mlb_peer.py --bootstrap --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import bootstrap_fusions as bf
import peer_common as pc

# (own peer's default, --bootstrap default) of each size option.
DEFAULTS = dict(dx=(2400, 4800), dy=(2048, 4096), joint=(1200, 1200), out=(2000, 3000),
                activation=("tanh", "relu"), batches=("512", "256"))
BOOTSTRAP_GRAD_TOL = 5e-2


class MLB(nn.Module):
    def __init__(self, dx, dy, joint, out, act="tanh"):
        super().__init__()
        self.linear_x = nn.Linear(dx, joint)
        self.linear_y = nn.Linear(dy, joint)
        self.linear_out = nn.Linear(joint, out)
        self.act = pc.activation(act)

    def forward(self, x, y):
        return self.linear_out(self.act(self.linear_x(x)) * self.act(self.linear_y(y)))


class MlbPeer(pc.Peer):
    op = "Mlb"
    csv_prefix = "peer-mlb"
    default_batches = "512"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=None, help="question features (default 2400; --bootstrap 4800)")
        p.add_argument("--dy", type=int, default=None, help="image features (default 2048; --bootstrap 4096)")
        p.add_argument("--joint", type=int, default=None, help="J, the joint dimension (default 1200)")
        p.add_argument("--out", type=int, default=None, help="output dimension (default 2000; --bootstrap 3000)")
        p.add_argument("--activation", choices=pc.ACTIVATIONS, default=None,
                       help="default tanh; with --bootstrap only relu (block.bootstrap's, in and out)")
        p.add_argument("--bootstrap", action="store_true",
                       help="time block.bootstrap's own MLB (normalize=True, relu in and out, linear_out), "
                            "from $BLOCK_BOOTSTRAP or block_bootstrap/; batch default 256")
        p.add_argument("--check-grad-tol", type=float, default=None,
                       help="bound on the gradients' relative L2 errors in --check (default: --check-tol; "
                            "with --bootstrap %g, the signed square root)" % BOOTSTRAP_GRAD_TOL)
        p.set_defaults(batches=None)     # 512, or 256 with --bootstrap (setup)

    def setup(self, args):
        if args.bootstrap and args.activation not in (None, "relu"):
            print("mlb_peer.py: --bootstrap times block.bootstrap's MLB, relu in and out; --activation %s does not apply"
                  % args.activation, file=sys.stderr)
            return 2
        for name, values in DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, values[1 if args.bootstrap else 0])
        if args.bootstrap:
            if args.check_grad_tol is None:
                args.check_grad_tol = BOOTSTRAP_GRAD_TOL
            return bf.require(self.op)
        return None

    def cases(self, args, batches):
        Dx, Dy, J, Out = args.dx, args.dy, args.joint, args.out
        size = "Dx=%d,Dy=%d,J=%d,Out=%d,%s" % (Dx, Dy, J, Out, "bootstrap" if args.bootstrap else args.activation)
        return [pc.Case(size, B, (B * (Dx + Dy), J * (Dx + Dy) + Out * J, B * Out,
                                  B * J * (Dx + Dy) + B * Out * J), dict(act=args.activation))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        if args.bootstrap:
            n_params = bf.linear_params(args.dx, args.joint) + bf.linear_params(args.dy, args.joint) \
                + bf.linear_params(args.joint, args.out)
            return bf.build(lambda f: f.MLB([args.dx, args.dy], args.out, mm_dim=args.joint, normalize=True),
                            case, args.dx, args.dy, args.out, device, dtype, seed, n_params)
        torch.manual_seed(seed)
        model = MLB(args.dx, args.dy, args.joint, args.out, args.activation).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.dx, generator=gen, dtype=dtype).to(device)
        y = torch.randn(case.batch, args.dy, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, args.out, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (x, y), g, input_names=("x", "y"))

    def definition(self, case, built):
        if isinstance(built.fn, bf.ListCall):
            return self.bootstrap_definition(built)
        w = pc.params_np(built.fn)
        act = pc.activation_np(case.dims["act"])
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(x.shape[0]):
            h = act(w["linear_x.weight"] @ x[b] + w["linear_x.bias"]) * act(w["linear_y.weight"] @ y[b] + w["linear_y.bias"])
            out.append(w["linear_out.weight"] @ h + w["linear_out.bias"])
        return np.array(out)

    @staticmethod
    def bootstrap_definition(built):
        """block.bootstrap's MLB (normalize=True, relu in and out), float64 numpy, from its state dict."""
        w = bf.weights(built)
        x, y = bf.inputs(built)
        out = []
        for b in range(x.shape[0]):
            z = bf.relu_np(bf.affine(w, "linear0", x[b])) * bf.relu_np(bf.affine(w, "linear1", y[b]))
            out.append(bf.relu_np(bf.affine(w, "linear_out", pc.ssqrt_l2_np(z))))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MlbPeer, __doc__))
