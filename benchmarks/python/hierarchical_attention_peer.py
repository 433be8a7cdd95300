#!/usr/bin/env python3
"""PyTorch peer benchmark for hierarchical attention pooling (HAN, Yang et al. 2016), to compare against bifuse's HierarchicalAttention.

Written the way HAN ports write the attention of a level (u = tanh(Linear(h)), logits = u . u_w,
softmax over a sentence's words, the weighted sum), without the GRUs: the variable-length groups are
padded to the longest one (a gather of the packed rows, with a zero row for the padding), the padded
positions masked to the dtype's lowest value before the softmax, the weighted sum over the padded
positions (torch.bmm); two levels, words -> sentences -> documents, each with its own parameters;
autograd for the backward. Timed eagerly and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 4), weights in nn.Linear layout (out x in), per level l:
    u_i = tanh(W x_i + b),  a_i = c . u_i + b_c,  alpha = softmax of a over each group,
    s_g = sum_{i in g} alpha_i x_i  (0 for an empty group);  the s_g are the next level's items
    x: N x d (every document's words, packed); the output is B x d

Layout of a size (bifuse's HierarchicalAttentionSuite): B documents of S sentences, sentence j
(counted over all documents) of W - 1 + (j mod 3) words. Rows: HierarchicalAttention.forward (under
torch.no_grad()) and HierarchicalAttention.fwd+bwd (forward with autograd, then loss = (out * g).sum()
for a fixed random g, loss.backward() into x and every parameter). Size label "S=20,W=15,d=512,k=256",
batch 64. Cost model (bifuse's): N words, I = N*d, W = 2*(k*d + 2*k + 1), O = B*d,
M = (N + B*S)*(d*k + k + d).

Examples:
    python3 benchmarks/python/hierarchical_attention_peer.py --csv out.csv
    python3 benchmarks/python/hierarchical_attention_peer.py --device cpu --runs 3 --warmup 1 --batches 8
    python3 benchmarks/python/hierarchical_attention_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc


def sentence_lengths(batch, sentences, words):
    """Words of each of the B*S sentences: W - 1 + (j mod 3), as bifuse's suite lays them out."""
    return [words - 1 + j % 3 for j in range(batch * sentences)]


def padding_index(lengths, pad):
    """(G x T gather index into the packed rows, G x T mask of real positions); padding points at row pad."""
    t = max(1, max(lengths))
    index = torch.full((len(lengths), t), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    at = 0
    for g, n in enumerate(lengths):
        index[g, :n] = torch.arange(at, at + n)
        mask[g, :n] = True
        at += n
    return index, mask


class AttentionPool(nn.Module):
    """One HAN attention level over padded groups."""

    def __init__(self, d, k):
        super().__init__()
        self.proj = nn.Linear(d, k)
        self.context = nn.Linear(k, 1)

    def forward(self, x, index, mask):
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])[index]          # G x T x d, padding rows zero
        u = torch.tanh(self.proj(padded))                                    # G x T x k
        logits = self.context(u).squeeze(2).masked_fill(~mask, torch.finfo(x.dtype).min)
        alpha = F.softmax(logits, dim=1)                                     # an empty group: uniform over zero rows
        return torch.bmm(alpha.unsqueeze(1), padded).squeeze(1)              # G x d


class HierarchicalAttention(nn.Module):
    def __init__(self, d, k, levels=2):
        super().__init__()
        self.levels = nn.ModuleList([AttentionPool(d, k) for _ in range(levels)])

    def forward(self, x, word_index, word_mask, sent_index, sent_mask):
        s = self.levels[0](x, word_index, word_mask)
        return self.levels[1](s, sent_index, sent_mask)


class HierarchicalAttentionPeer(pc.Peer):
    op = "HierarchicalAttention"
    csv_prefix = "peer-hierarchical-attention"
    default_batches = "64"
    default_check_batch = 2
    exact_zero_grads = {"levels.%d.context.bias" % l: "the softmax over each group cancels a shift of every logit"
                        for l in range(2)}

    def add_args(self, p):
        p.add_argument("--sentences", type=int, default=20, help="S, sentences per document (default 20)")
        p.add_argument("--words", type=int, default=15, help="W, mean words per sentence (default 15; lengths W-1, W, W+1)")
        p.add_argument("--dim", type=int, default=512, help="d, word features (default 512)")
        p.add_argument("--width", type=int, default=256, help="k, attention width of both levels (default 256)")

    def cases(self, args, batches):
        S, Wd, d, k = args.sentences, args.words, args.dim, args.width
        size = "S=%d,W=%d,d=%d,k=%d" % (S, Wd, d, k)
        cases = []
        for B in batches:
            n = sum(sentence_lengths(B, S, Wd))
            cases.append(pc.Case(size, B, (n * d, 2 * (k * d + 2 * k + 1), B * d, (n + B * S) * (d * k + k + d))))
        return cases

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = HierarchicalAttention(args.dim, args.width).to(device, dtype)
        lengths = sentence_lengths(case.batch, args.sentences, args.words)
        n = sum(lengths)
        wi, wm = padding_index(lengths, n)
        si, sm = padding_index([args.sentences] * case.batch, case.batch * args.sentences)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(n, args.dim, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, args.dim, generator=gen, dtype=dtype).to(device)
        self.lengths = lengths
        return pc.Built(model, (x,), g, consts=(wi.to(device), wm.to(device), si.to(device), sm.to(device)), input_names=("x",))

    def definition(self, case, built):
        """float64, straight from the definition: each level's groups walked by their offsets."""
        w = pc.params_np(built.fn)
        x = built.inputs[0].detach().cpu().double().numpy()
        groups = [self.lengths, [len(self.lengths) // case.batch] * case.batch]
        for l, lengths in enumerate(groups):
            p = "levels.%d." % l
            out, at = [], 0
            for n in lengths:
                items = x[at:at + n]
                at += n
                if n == 0:
                    out.append(np.zeros(x.shape[1]))
                    continue
                u = np.tanh(items @ w[p + "proj.weight"].T + w[p + "proj.bias"])
                a = u @ w[p + "context.weight"][0] + w[p + "context.bias"][0]
                e = np.exp(a - a.max())
                out.append((e / e.sum()) @ items)
            x = np.array(out)
        return x


if __name__ == "__main__":
    sys.exit(pc.run(HierarchicalAttentionPeer, __doc__))
