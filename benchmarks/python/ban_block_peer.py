#!/usr/bin/env python3
"""PyTorch peer benchmark for one BAN block (bilinear attention networks), to compare against bifuse's BanBlock.

Written the way jnhwkim/ban-vqa writes it (the model classes are those of ban_fixture.py, which the
parity fixtures come from): weight_norm(nn.Linear, dim=None) FCNets with ReLU, the BiAttention
BCNet (k = 3) with h_mat weight-normed as one tensor and the logits as one einsum, the zero-row mask
(masked_fill with -inf) and a softmax over the flattened N x M map, then per glimpse the BCNet (k = 1)
forward_with_weights einsum, the q_prj FCNet (no activation) and the residual update of every token,
and the sum over the tokens. Eval mode (no dropout), no counting module. Autograd for the backward.
Timed eagerly and under torch.compile (default mode).

Math (bifuse's BanBlock; x: B x N x Dx objects, padded objects all-zero rows; y: B x M x Dy tokens):
    X' = relu(WN(W_x) x + b_x), Y' = relu(WN(W_y) y + b_y)                    K
    A_g = softmax over (i, j) of sum_K p_g X'_i Y'_j + c_g  (-inf at padded objects)
    for g < G: Y <- Y + WN(Q_g) (sum over groups of k of sum_ij A_g,ij relu(U_g x_i) relu(T_g Y_j)) + q_g
    out = sum_j Y_j                                                          B x Dy

Rows: BanBlock.forward (under torch.no_grad()) and BanBlock.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter). Size label
"N=36,M=14,Dx=2048,Dy=1280,K=3840,G=8,Kp=1280,group=1" (and N=100), batch 256; each sample has
10..N real objects (uniform), the rest zero rows, as bifuse's bench draws them (PyTorch computes the
padded rows anyway; bifuse skips them).
Cost model (bifuse's): I = B*N*Dx + B*M*Dy, W = every parameter float (weight_v, weight_g, bias of
each layer, h_mat_v, h_mat_g, h_bias), O = B*Dy,
Mac = B*N*Dx*(K + G*Kp) + B*M*Dy*(K + G*Kp) + B*G*N*M*K + G*B*N*Kp*(M+1) + G*B*Dy*Kp/group;
forward: bytes = 4(I + W + O), flops = 2 Mac; fwd+bwd: bytes = 4(3I + 3W + 2O), flops = 6 Mac.

Examples:
    python3 benchmarks/python/ban_block_peer.py --csv out.csv
    python3 benchmarks/python/ban_block_peer.py --device cpu --quick --runs 3 --warmup 1
    python3 benchmarks/python/ban_block_peer.py --check --quick
"""

import copy
import sys

import numpy as np
import torch
from torch.nn.utils.weight_norm import WeightNorm

import peer_common as pc
from ban_fixture import Block

QUICK = dict(objects="12", tokens=5, dx=64, dy=48, width=96, glimpses=2, glimpse_width=48, group=1, batches="4")


class PeerBlock(Block):
    """The block's output only (the attention maps are an optional output in bifuse too)."""

    def forward(self, v, q):
        return Block.forward(self, v, q)[0]

    def __deepcopy__(self, memo):
        # torch.nn.utils.weight_norm keeps the last computed weight as a non-leaf tensor attribute, which
        # deepcopy refuses (pytorch/pytorch#103001); --check deep-copies the model for its float64 run.
        # The hook recomputes that attribute on every forward, so a detached copy of it is harmless.
        for m in self.modules():
            for hook in m._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm):
                    setattr(m, hook.name, getattr(m, hook.name).detach())
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new


class BanPeer(pc.Peer):
    op = "BanBlock"
    csv_prefix = "peer-ban"
    default_batches = "256"
    default_check_batch = 2
    exact_zero_grads = {"v_att.logits.h_bias": "the softmax over each map cancels a per-glimpse shift of the logits"}

    def add_args(self, p):
        p.add_argument("--objects", default="36,100", help="N, padded objects per sample, comma-separated (default 36,100)")
        p.add_argument("--min-objects", type=int, default=10, help="fewest real objects per sample (default 10, as ban-vqa's detector)")
        p.add_argument("--tokens", type=int, default=14, help="M, question tokens (default 14)")
        p.add_argument("--dx", type=int, default=2048, help="object features (default 2048)")
        p.add_argument("--dy", type=int, default=1280, help="token features (default 1280)")
        p.add_argument("--width", type=int, default=3840, help="K, attention width = 3h (default 3840)")
        p.add_argument("--glimpses", type=int, default=8, help="G (default 8)")
        p.add_argument("--glimpse-width", type=int, default=1280, help="Kp, pooling width (default 1280)")
        p.add_argument("--group", type=int, default=1, help="b_net's k: sums of k adjacent units (default 1)")
        p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run: %s" % QUICK)

    def setup(self, args):
        if args.quick:
            for k, v in QUICK.items():
                setattr(args, k, v)
            args.min_objects = 2
        if args.width % 3 or args.glimpse_width % args.group:
            print("--width must be a multiple of 3 (BCNet k = 3) and --glimpse-width of --group", file=sys.stderr)
            return 2
        return None

    def cases(self, args, batches):
        M, DX, DY, K, G, KP, k = args.tokens, args.dx, args.dy, args.width, args.glimpses, args.glimpse_width, args.group
        W = (K * DX + 1 + K) + (K * DY + 1 + K) + (G * K + 1 + G) + G * (KP * DX + 1 + KP) + G * (KP * DY + 1 + KP) \
            + G * (DY * (KP // k) + 1 + DY)
        cases = []
        for N in pc.parse_int_list(args.objects):
            size = "N=%d,M=%d,Dx=%d,Dy=%d,K=%d,G=%d,Kp=%d,group=%d" % (N, M, DX, DY, K, G, KP, k)
            for B in batches:
                mac = (B * N * DX * (K + G * KP) + B * M * DY * (K + G * KP) + B * G * N * M * K
                       + G * B * N * KP * (M + 1) + G * B * DY * (KP // k))
                cases.append(pc.Case(size, B, (B * N * DX + B * M * DY, W, B * DY, mac), dict(objects=N, group=k)))
        return cases

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = PeerBlock(args.dx, args.dy, args.width // 3, args.glimpses, args.glimpse_width // args.group, args.group)
        model = model.to(device, dtype).eval()
        B, N = case.batch, case.dims["objects"]
        gen = torch.Generator().manual_seed(seed + 1)
        lo = min(args.min_objects, N)
        counts = torch.randint(lo, N + 1, (B,), generator=gen)
        x = torch.randn(B, N, args.dx, generator=gen, dtype=dtype)
        x[torch.arange(N).unsqueeze(0) >= counts.unsqueeze(1)] = 0
        y = torch.randn(B, args.tokens, args.dy, generator=gen, dtype=dtype)
        g = torch.randn(B, args.dy, generator=gen, dtype=dtype)
        return pc.Built(model, (x.to(device), y.to(device)), g.to(device), input_names=("x", "y"))

    def definition(self, case, built):
        """bifuse's BanBlock from its definition, sample by sample, in float64 numpy."""
        w = pc.params_np(built.fn)
        group = case.dims["group"]
        relu = pc.activation_np("relu")

        def lin(prefix, t):
            v = w[prefix + "weight_v"]
            return t @ (w[prefix + "weight_g"] * v / np.linalg.norm(v)).T + w[prefix + "bias"]

        hv = w["v_att.logits.h_mat_v"]
        G = hv.shape[1]
        p = w["v_att.logits.h_mat_g"] * hv.reshape(G, -1) / np.linalg.norm(hv)
        c = w["v_att.logits.h_bias"].reshape(G)
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(x.shape[0]):
            xr = x[b][np.abs(x[b]).sum(1) != 0]
            xp, yp = relu(lin("v_att.logits.v_net.main.0.", xr)), relu(lin("v_att.logits.q_net.main.0.", y[b]))
            att = []
            for g in range(G):
                l = np.einsum("ik,jk,k->ij", xp, yp, p[g]) + c[g]
                e = np.exp(l - l.max())
                att.append(e / e.sum())
            yc = y[b].copy()
            for g in range(G):
                xpp = relu(lin("b_net.%d.v_net.main.0." % g, xr))
                ypp = relu(lin("b_net.%d.q_net.main.0." % g, yc))
                f = np.einsum("ij,ik,jk->k", att[g], xpp, ypp).reshape(-1, group).sum(1)
                yc = yc + lin("q_prj.%d.main.0." % g, f)
            out.append(yc.sum(0))
        return np.array(out)


if __name__ == "__main__":
    import warnings
    warnings.filterwarnings("ignore", message=".*weight_norm.*")  # ban-vqa's API, deprecated in torch 2.x
    sys.exit(pc.run(BanPeer, __doc__))
