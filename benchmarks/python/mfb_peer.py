#!/usr/bin/env python3
"""PyTorch peer benchmark for MFB and MFH (factorized bilinear pooling, Yu et al.), to compare against bifuse's Mfb.

Written the way the MFB/MFH PyTorch ports write it: per block two nn.Linear projections to o*k
units, the activation (none in the original MFB, relu in block.bootstrap), an elementwise product,
sum pooling over groups of k ADJACENT units with .view(B, o, k).sum(-1), the signed square root
and F.normalize; autograd for the backward. Timed eagerly and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 2), weights in nn.Linear layout (out x in):
    e_1 = act(U_1 x + b_1) * act(V_1 y + c_1)                    (o*k units)
    e_i = act(U_i x + b_i) * act(V_i y + c_i) * e_{i-1}          (MFH: block i times block i-1's
                                                                  pre-pooling product)
    z_i[j] = sum_{t < k} e_i[j*k + t]                            (o outputs per block)
    out = concat_i( l2( ssqrt(z_i) ) )                           (each block normalized, then
                                                                  concatenated, as MFH does)
    ssqrt(z) = sign(z) sqrt(|z|), l2(u) = u / max(||u||, 1e-12)  (F.normalize)
MFB is 1 block; MFH here is 2 blocks (--blocks 1,2 gives both, as separate size labels).

Rows: Mfb.forward (under torch.no_grad()) and Mfb.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size labels "Dx=1024,Dy=2048,o=1000,k=5,blocks=1,none" and "...,blocks=2,none", batch 512.
Cost model (bifuse's, n blocks): I = B(Dx+Dy), W = n*o*k(Dx+Dy), O = B*n*o, M = B*n*o*k(Dx+Dy).

--bootstrap: block.bootstrap.pytorch's own MFB (blocks=1) and MFH (blocks=2) instead
(block/models/networks/fusions/fusions.py, imported at run time from $BLOCK_BOOTSTRAP or the bundle's
block_bootstrap/; see bootstrap_fusions.py), as its VQA2 classifier uses them (options/vqa2/mfb.yaml,
mfh.yaml, classif.fusion): MFB([Dx, Dy], Out, mm_dim=o, factor=k, normalize=True) and
MFH([Dx, Dy], Out, mm_dim=o, factor=k, normalize=True), their defaults otherwise (activ_input =
activ_output = relu, every dropout 0), called as fusion([x, y]) in eval mode, float32. The math above
with act = relu, n = 1 or 2 blocks, then the output layer:
    out = relu(P concat_i( l2( ssqrt(z_i) ) ) + b_p)                 (linear_out: n*o -> Out)
Defaults then Dx 4800, Dy 4096, k 5, Out 3000, --blocks 1,2, o 1000 for MFB and 340 for MFH (each its
own; --o sets both), batch 256; size labels "Dx=4800,Dy=4096,o=1000,k=5,blocks=1,bootstrap,Out=3000" and
"Dx=4800,Dy=4096,o=340,k=5,blocks=2,bootstrap,Out=3000". Cost model (GEMM work, biases not counted):
I = B(Dx+Dy), W = n*o*k(Dx+Dy) + Out*n*o, O = B*Out, M = B*n*o*k(Dx+Dy) + B*Out*n*o. Without a checkout it
prints "SKIPPED Mfb: ..." and exits with code 3 (peers.py: skipped). --check holds the float64 module to a
numpy definition of that math (1e-10) and the float32 module to its float64 run (gradients to
--check-grad-tol, as without --bootstrap).

Examples:
    python3 benchmarks/python/mfb_peer.py --csv out.csv
    python3 benchmarks/python/mfb_peer.py --device cpu --runs 3 --warmup 1 --blocks 1
    python3 benchmarks/python/mfb_peer.py --check
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/mfb_peer.py --bootstrap --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import bootstrap_fusions as bf
import peer_common as pc

# (own peer's default, --bootstrap default) of each size option; --bootstrap's o is per block count.
DEFAULTS = dict(dx=(1024, 4800), dy=(2048, 4096), k=(5, 5), activation=("none", "relu"), batches=("512", "256"))
BOOTSTRAP_O = {1: 1000, 2: 340}      # options/vqa2/mfb.yaml, mfh.yaml: mm_dim
BOOTSTRAP_OUT = 3000


class MFH(nn.Module):
    """MFB when blocks == 1."""

    def __init__(self, dx, dy, o, k, blocks=1, act="none"):
        super().__init__()
        self.o, self.k = o, k
        self.linear_x = nn.ModuleList([nn.Linear(dx, o * k) for _ in range(blocks)])
        self.linear_y = nn.ModuleList([nn.Linear(dy, o * k) for _ in range(blocks)])
        self.act = pc.activation(act)

    def forward(self, x, y):
        outs = []
        prev = None
        for lx, ly in zip(self.linear_x, self.linear_y):
            e = self.act(lx(x)) * self.act(ly(y))
            if prev is not None:
                e = e * prev
            prev = e
            z = e.view(e.shape[0], self.o, self.k).sum(-1)
            outs.append(pc.ssqrt_l2(z))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class MfbPeer(pc.Peer):
    op = "Mfb"
    csv_prefix = "peer-mfb"
    default_batches = "512"
    default_check_batch = 4
    default_check_grad_tol = 1e-2

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=None, help="question features (default 1024, the LSTM; --bootstrap 4800)")
        p.add_argument("--dy", type=int, default=None, help="image features (default 2048; --bootstrap 4096)")
        p.add_argument("--o", type=int, default=None,
                       help="outputs per block (default 1000; --bootstrap: 1000 for MFB, 340 for MFH)")
        p.add_argument("--k", type=int, default=None, help="factor: units summed per output (default 5)")
        p.add_argument("--blocks", default="1,2", help="block counts, comma-separated: 1 = MFB, 2 = MFH (default 1,2)")
        p.add_argument("--activation", choices=pc.ACTIVATIONS, default=None,
                       help="on the projections (default none, as the original MFB; with --bootstrap only relu)")
        p.add_argument("--bootstrap", action="store_true",
                       help="time block.bootstrap's own MFB / MFH (normalize=True, relu in and out, linear_out), "
                            "from $BLOCK_BOOTSTRAP or block_bootstrap/; batch default 256")
        p.add_argument("--out", type=int, default=None,
                       help="with --bootstrap: the output layer's width (default %d)" % BOOTSTRAP_OUT)
        p.set_defaults(batches=None)     # 512, or 256 with --bootstrap (setup)

    def setup(self, args):
        if args.bootstrap:
            if args.activation not in (None, "relu"):
                return self.refuse("--bootstrap times block.bootstrap's MFB/MFH, relu in and out; "
                                   "--activation %s does not apply" % args.activation)
            bad = [n for n in pc.parse_int_list(args.blocks) if n not in BOOTSTRAP_O]
            if bad:
                return self.refuse("--bootstrap: block.bootstrap has MFB (1 block) and MFH (2 blocks); --blocks %s"
                                   % ",".join(map(str, bad)))
        elif args.out is not None:
            return self.refuse("--out is the output layer of --bootstrap's modules; this peer has none without it")
        for name, values in DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, values[1 if args.bootstrap else 0])
        if args.bootstrap:
            if args.out is None:
                args.out = BOOTSTRAP_OUT
            return bf.require(self.op)
        if args.o is None:
            args.o = 1000
        return None

    @staticmethod
    def refuse(why):
        print("mfb_peer.py: " + why, file=sys.stderr)
        return 2

    def cases(self, args, batches):
        if args.bootstrap:
            return self.bootstrap_cases(args, batches)
        Dx, Dy, o, k = args.dx, args.dy, args.o, args.k
        out = []
        for n in pc.parse_int_list(args.blocks):
            size = "Dx=%d,Dy=%d,o=%d,k=%d,blocks=%d,%s" % (Dx, Dy, o, k, n, args.activation)
            for B in batches:
                out.append(pc.Case(size, B, (B * (Dx + Dy), n * o * k * (Dx + Dy), B * n * o,
                                             B * n * o * k * (Dx + Dy)), dict(blocks=n, act=args.activation)))
        return out

    @staticmethod
    def bootstrap_cases(args, batches):
        Dx, Dy, k, Out = args.dx, args.dy, args.k, args.out
        out = []
        for n in pc.parse_int_list(args.blocks):
            o = args.o if args.o is not None else BOOTSTRAP_O[n]
            size = "Dx=%d,Dy=%d,o=%d,k=%d,blocks=%d,bootstrap,Out=%d" % (Dx, Dy, o, k, n, Out)
            # every parameter float of the module (checked against its own count): the cost model counts the GEMMs'
            n_params = n * (bf.linear_params(Dx, o * k) + bf.linear_params(Dy, o * k)) + bf.linear_params(n * o, Out)
            for B in batches:
                out.append(pc.Case(size, B, (B * (Dx + Dy), n * o * k * (Dx + Dy) + Out * n * o, B * Out,
                                             B * n * o * k * (Dx + Dy) + B * Out * n * o),
                                   dict(blocks=n, o=o, k=k, out=Out, n_params=n_params)))
        return out

    def build(self, case, args, device, dtype, seed):
        if args.bootstrap:
            n, o, k, Out = (case.dims[v] for v in ("blocks", "o", "k", "out"))
            cls = "MFB" if n == 1 else "MFH"
            return bf.build(lambda f: getattr(f, cls)([args.dx, args.dy], Out, mm_dim=o, factor=k, normalize=True),
                            case, args.dx, args.dy, Out, device, dtype, seed, case.dims["n_params"])
        torch.manual_seed(seed)
        model = MFH(args.dx, args.dy, args.o, args.k, case.dims["blocks"], args.activation).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.dx, generator=gen, dtype=dtype).to(device)
        y = torch.randn(case.batch, args.dy, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, case.dims["blocks"] * args.o, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (x, y), g, input_names=("x", "y"))

    def definition(self, case, built):
        if isinstance(built.fn, bf.ListCall):
            return self.bootstrap_definition(case, built)
        w = pc.params_np(built.fn)
        act = pc.activation_np(case.dims["act"])
        o, k = built.fn.o, built.fn.k
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(x.shape[0]):
            prev, parts = None, []
            for i in range(case.dims["blocks"]):
                e = (act(w["linear_x.%d.weight" % i] @ x[b] + w["linear_x.%d.bias" % i])
                     * act(w["linear_y.%d.weight" % i] @ y[b] + w["linear_y.%d.bias" % i]))
                if prev is not None:
                    e = e * prev
                prev = e
                z = np.zeros(o)
                np.add.at(z, np.arange(o * k) // k, e)      # unit u belongs to output u // k
                parts.append(pc.ssqrt_l2_np(z))
            out.append(np.concatenate(parts))
        return np.array(out)

    @staticmethod
    def bootstrap_definition(case, built):
        """block.bootstrap's MFB / MFH (normalize=True, relu in and out), float64 numpy, from its state dict.
        Its names: MFB linear0, linear1; MFH linear0_i, linear1_i for block i; linear_out."""
        w = bf.weights(built)
        x, y = bf.inputs(built)
        n, o, k = case.dims["blocks"], case.dims["o"], case.dims["k"]
        names = [("linear0", "linear1")] if n == 1 else [("linear0_%d" % i, "linear1_%d" % i) for i in range(n)]
        out = []
        for b in range(x.shape[0]):
            prev, parts = None, []
            for n0, n1 in names:
                e = bf.relu_np(bf.affine(w, n0, x[b])) * bf.relu_np(bf.affine(w, n1, y[b]))
                if prev is not None:
                    e = e * prev                                # times the previous block's un-pooled product
                prev = e
                z = np.zeros(o)
                np.add.at(z, np.arange(o * k) // k, e)          # unit u belongs to output u // k
                parts.append(pc.ssqrt_l2_np(z))
            out.append(bf.relu_np(bf.affine(w, "linear_out", np.concatenate(parts))))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MfbPeer, __doc__))
