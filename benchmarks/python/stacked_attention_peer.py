#!/usr/bin/env python3
"""PyTorch peer benchmark for stacked attention (SAN, Yang et al. 2016), to compare against bifuse's StackedAttention.

Written the way the SAN ports (e.g. rshivansh/San-Pytorch's misc/san.py) write an attention layer:
nn.Linear layers on the question vector and on the cells, the question's k vector broadcast over
the L cells with unsqueeze (never tiled), tanh, a linear layer to one logit per cell, softmax over
the cells, the attention-weighted sum of the cells (torch.bmm) added to the question vector; K
such layers, each with its own parameters; autograd for the backward. Timed eagerly and under
torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 4), weights in nn.Linear layout (out x in), per layer l:
    paper:        h_s = tanh(W_I v_s + b_I + W_Q u_l + b_Q),     a_s = w_P . h_s + b_P
    public code:  h_s = tanh(W_I v_s + b_I) + tanh(W_Q u_l + b_Q), a_s = tanh(w_P . h_s + b_P)
                  (zcyang/imageqa-san's Theano layers with their default activations)
    alpha = softmax over the L cells of a;  u_{l+1} = u_l + sum_s alpha_s v_s
    u: B x d, v: B x L x d (the cells, as bifuse takes them); the output is u_K (B x d)

Rows: StackedAttention.forward (under torch.no_grad()) and StackedAttention.fwd+bwd (forward with
autograd, then loss = (out * g).sum() for a fixed random g, loss.backward() into u, v and every
parameter). Size label "L=196,d=1024,k=512,K=2,paper", batch 64.
Cost model (bifuse's): I = B*d + B*L*d, W = K*(2*k*d + 3*k + 1), O = B*d,
M = K*(B*L*d*k + B*d*k + B*L*k + B*L*d).

Examples:
    python3 benchmarks/python/stacked_attention_peer.py --csv out.csv
    python3 benchmarks/python/stacked_attention_peer.py --device cpu --runs 3 --warmup 1 --batches 16
    python3 benchmarks/python/stacked_attention_peer.py --check --placement public
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc

PLACEMENTS = ("paper", "public")


class AttentionLayer(nn.Module):
    def __init__(self, d, k, placement):
        super().__init__()
        self.fc_image = nn.Linear(d, k)
        self.fc_question = nn.Linear(d, k)
        self.fc_att = nn.Linear(k, 1)
        self.public = placement == "public"

    def forward(self, u, v):
        hi = self.fc_image(v)                                   # B x L x k
        hq = self.fc_question(u).unsqueeze(1)                   # B x 1 x k, broadcast over the cells
        if self.public:
            h = torch.tanh(hi) + torch.tanh(hq)
            logits = torch.tanh(self.fc_att(h)).squeeze(2)      # B x L
        else:
            h = torch.tanh(hi + hq)
            logits = self.fc_att(h).squeeze(2)
        alpha = F.softmax(logits, dim=1)
        return torch.bmm(alpha.unsqueeze(1), v).squeeze(1) + u  # B x d


class StackedAttention(nn.Module):
    def __init__(self, d, k, layers, placement):
        super().__init__()
        self.layers = nn.ModuleList([AttentionLayer(d, k, placement) for _ in range(layers)])

    def forward(self, u, v):
        for layer in self.layers:
            u = layer(u, v)
        return u


class StackedAttentionPeer(pc.Peer):
    op = "StackedAttention"
    csv_prefix = "peer-stacked-attention"
    default_batches = "64"
    default_check_batch = 2

    def add_args(self, p):
        p.add_argument("--cells", type=int, default=196, help="L, cells per sample (default 196 = 14x14)")
        p.add_argument("--dim", type=int, default=1024, help="d, question and cell features (default 1024)")
        p.add_argument("--width", type=int, default=512, help="k, attention width (default 512, imageqa-san's n_attention)")
        p.add_argument("--layers", type=int, default=2, help="K, attention layers (default 2)")
        p.add_argument("--placement", choices=PLACEMENTS, default="paper",
                       help="where the tanh's go: paper (default) or public (the Theano code's)")

    def setup(self, args):
        if args.placement == "paper":
            # an instance attribute: the public code's outer tanh makes these gradients real
            self.exact_zero_grads = {"layers.%d.fc_att.bias" % l: "the softmax over the cells cancels a shift of every logit"
                                     for l in range(args.layers)}
        return None

    def cases(self, args, batches):
        L, d, k, K = args.cells, args.dim, args.width, args.layers
        size = "L=%d,d=%d,k=%d,K=%d,%s" % (L, d, k, K, args.placement)
        W = K * (2 * k * d + 3 * k + 1)
        return [pc.Case(size, B, (B * d + B * L * d, W, B * d, K * (B * L * d * k + B * d * k + B * L * k + B * L * d)),
                        dict(placement=args.placement))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = StackedAttention(args.dim, args.width, args.layers, args.placement).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        u = torch.randn(case.batch, args.dim, generator=gen, dtype=dtype).to(device)
        v = torch.randn(case.batch, args.cells, args.dim, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, args.dim, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (u, v), g, input_names=("u", "v"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        public = case.dims["placement"] == "public"
        u, v = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(u.shape[0]):
            x = u[b]
            for l in range(len(built.fn.layers)):
                p = "layers.%d." % l
                q = w[p + "fc_question.weight"] @ x + w[p + "fc_question.bias"]
                a = []
                for f in v[b]:
                    i = w[p + "fc_image.weight"] @ f + w[p + "fc_image.bias"]
                    h = np.tanh(i) + np.tanh(q) if public else np.tanh(i + q)
                    z = float((w[p + "fc_att.weight"] @ h + w[p + "fc_att.bias"])[0])
                    a.append(np.tanh(z) if public else z)
                a = np.array(a)
                e = np.exp(a - a.max())
                alpha = e / e.sum()
                x = x + alpha @ v[b]
            out.append(x)
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(StackedAttentionPeer, __doc__))
