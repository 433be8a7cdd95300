#!/usr/bin/env python3
"""PyTorch peer benchmark for MLB attention (Kim et al. 2017), to compare against bifuse's MlbAttention.

Written the way the MLB ports (e.g. vqa.pytorch's MLB attention) write it: the question projected
once per sample and broadcast over the cells with a view (never tiled), the cells through a linear
layer (what a 1x1 convolution over the feature map computes), the activation, an elementwise
product, a linear layer to G logits per cell, softmax over the cells, the glimpse-weighted sums of
the cell features (torch.bmm), one linear layer per glimpse, concatenation, the question-fusion
linear, the product, and the answer linear; autograd for the backward. Timed eagerly and under
torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 2), weights in nn.Linear layout (out x in), act = tanh by
default and the same activation everywhere it appears:
    q' = act(W_q q + b_q)                         J,     once per sample
    v'_s = act(W_v F_s + b_v)                     J,     for each cell s < L
    a_s = W_a (q' * v'_s) + b_a                   G,     no activation
    alpha_g = softmax over the L cells of a_{.,g}
    vhat_g = sum_s alpha_{g,s} F_s                Dv
    h = concat_g( act(W_g vhat_g + b_g) )         G*J
    out = W_o ( h * act(W_f q + b_f) ) + b_o      Out,   W_f: G*J x Dq
    q: B x Dq, F: B x L x Dv (the cells, as bifuse takes them)

Rows: MlbAttention.forward (under torch.no_grad()) and MlbAttention.fwd+bwd (forward with
autograd, then loss = (out * g).sum() for a fixed random g, loss.backward() into q, F and every
parameter). Size label "L=196,Dq=2400,Dv=2048,J=1200,G=2,Out=2000,tanh", batch 64.
Cost model (bifuse's): I = B*Dq + B*L*Dv, W = J*Dq + J*Dv + G*J + G*J*Dv + G*J*Dq + Out*G*J,
O = B*Out, M = B*J*Dq + B*L*J*Dv + B*L*G*J + B*G*L*Dv + B*G*J*Dv + B*G*J*Dq + B*Out*G*J.

Examples:
    python3 benchmarks/python/mlb_attention_peer.py --csv out.csv
    python3 benchmarks/python/mlb_attention_peer.py --device cpu --runs 3 --warmup 1 --batches 16
    python3 benchmarks/python/mlb_attention_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc


class MLBAttention(nn.Module):
    def __init__(self, dq, dv, joint, glimpses, out, act="tanh"):
        super().__init__()
        self.glimpses = glimpses
        self.linear_q_att = nn.Linear(dq, joint)
        self.linear_v_att = nn.Linear(dv, joint)
        self.linear_att = nn.Linear(joint, glimpses)
        self.linear_v_fusion = nn.ModuleList([nn.Linear(dv, joint) for _ in range(glimpses)])
        self.linear_q_fusion = nn.Linear(dq, glimpses * joint)
        self.linear_out = nn.Linear(glimpses * joint, out)
        self.act = pc.activation(act)

    def forward(self, q, v):
        B, L, _ = v.shape
        # attention: the question's J vector is broadcast over the L cells, not copied
        q_att = self.act(self.linear_q_att(q)).unsqueeze(1)               # B x 1 x J
        v_att = self.act(self.linear_v_att(v))                             # B x L x J
        logits = self.linear_att(q_att * v_att)                            # B x L x G
        alpha = F.softmax(logits.transpose(1, 2), dim=-1)                  # B x G x L
        v_hat = torch.bmm(alpha, v)                                        # B x G x Dv
        # fusion of the glimpses with the question
        h = torch.cat([self.act(lin(v_hat[:, g])) for g, lin in enumerate(self.linear_v_fusion)], dim=1)
        return self.linear_out(h * self.act(self.linear_q_fusion(q)))


class MlbAttentionPeer(pc.Peer):
    op = "MlbAttention"
    csv_prefix = "peer-mlb-attention"
    default_batches = "64"
    default_check_batch = 2
    exact_zero_grads = {"linear_att.bias": "the softmax over the cells cancels a per-glimpse shift of the logits"}

    def add_args(self, p):
        p.add_argument("--cells", type=int, default=196, help="L, cells per sample (default 196 = 14x14)")
        p.add_argument("--dq", type=int, default=2400, help="question features (default 2400)")
        p.add_argument("--dv", type=int, default=2048, help="cell features (default 2048)")
        p.add_argument("--joint", type=int, default=1200, help="J (default 1200)")
        p.add_argument("--glimpses", type=int, default=2, help="G (default 2)")
        p.add_argument("--out", type=int, default=2000, help="output dimension (default 2000)")
        p.add_argument("--activation", choices=pc.ACTIVATIONS, default="tanh")

    def cases(self, args, batches):
        L, Dq, Dv, J, G, Out = args.cells, args.dq, args.dv, args.joint, args.glimpses, args.out
        size = "L=%d,Dq=%d,Dv=%d,J=%d,G=%d,Out=%d,%s" % (L, Dq, Dv, J, G, Out, args.activation)
        W = J * Dq + J * Dv + G * J + G * J * Dv + G * J * Dq + Out * G * J
        return [pc.Case(size, B, (B * Dq + B * L * Dv, W, B * Out,
                                  B * J * Dq + B * L * J * Dv + B * L * G * J + B * G * L * Dv
                                  + B * G * J * Dv + B * G * J * Dq + B * Out * G * J), dict(act=args.activation))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = MLBAttention(args.dq, args.dv, args.joint, args.glimpses, args.out, args.activation).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        q = torch.randn(case.batch, args.dq, generator=gen, dtype=dtype).to(device)
        v = torch.randn(case.batch, args.cells, args.dv, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, args.out, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (q, v), g, input_names=("q", "F"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        act = pc.activation_np(case.dims["act"])
        G = built.fn.glimpses
        q, v = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(q.shape[0]):
            qp = act(w["linear_q_att.weight"] @ q[b] + w["linear_q_att.bias"])
            a = np.array([w["linear_att.weight"] @ (qp * act(w["linear_v_att.weight"] @ f + w["linear_v_att.bias"]))
                          + w["linear_att.bias"] for f in v[b]])                        # L x G
            parts = []
            for g in range(G):
                e = np.exp(a[:, g] - a[:, g].max())
                alpha = e / e.sum()
                vhat = sum(alpha[s] * v[b][s] for s in range(v.shape[1]))
                parts.append(act(w["linear_v_fusion.%d.weight" % g] @ vhat + w["linear_v_fusion.%d.bias" % g]))
            h = np.concatenate(parts) * act(w["linear_q_fusion.weight"] @ q[b] + w["linear_q_fusion.bias"])
            out.append(w["linear_out.weight"] @ h + w["linear_out.bias"])
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MlbAttentionPeer, __doc__))
