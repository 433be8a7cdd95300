#!/usr/bin/env python3
"""PyTorch peer benchmark for MCB attention (Fukui et al. 2016), to compare against bifuse's McbAttention.

Written the way the PyTorch users of vqa-mcb write it: a CompactBilinearPooling module in the manner
of gdlg/pytorch_compact_bilinear_pooling (the count sketch a matmul by a {-1, 0, +1} sketch matrix
built as a sparse COO tensor and stored dense, torch.fft.rfft of both sketches, their product,
torch.fft.irfft), the question TILED over the L cells (expand to B x Dq x h x w, as the Caffe model's
Tile layer) so that the attention MCB materializes the whole B x L x d1 tensor (this is the point of
the comparison: bifuse never holds it), the signed square root, F.normalize, nn.Conv2d 1x1 layers
d1 -> H, ReLU, H -> G, F.softmax over the cells per glimpse, the glimpse-weighted sums of the cells
(torch.bmm), the glimpses concatenated, a second CompactBilinearPooling (glimpses, question), the
signed square root, F.normalize and an nn.Linear to the answers; autograd for the backward. Timed
eagerly and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 1; java/src/main/java/io/bifuse/McbAttention.java):
    z_s = MCB_att(q, I_s)                     d1    per cell s < L   (x = q: h1, s1; y = I_s: h2, s2)
    t   = l2(ssqrt(z))                        l2 over the sample's whole L x d1 map (--scope map, the
                                              Caffe original) or over each cell's d1 values (--scope cell)
    a_s = W2 ReLU(W1 t_s + b1) + b2           G     (1x1 convs d1 -> H -> G)
    alpha_g = softmax over the L cells of a_{.,g};   vhat_g = sum_s alpha_{g,s} I_s          Dv
    u   = l2(ssqrt(MCB_fus([vhat_0 .. vhat_{G-1}], q)))   d2   (x = the glimpses, G*Dv, g major; y = q)
    out = W3 u + b3                           A
    MCB(x, y) = irfft(rfft(Psi(x; h1, s1)) * rfft(Psi(y; h2, s2)), n=d) (irfft includes 1/d);
    ssqrt(z) = sqrt(relu(z)) - sqrt(relu(-z)); l2 = F.normalize(eps=1e-12): bifuse's Normalization.pytorch().
    q: B x Dq, I: B x L x Dv (the cells, as bifuse takes them; the model views them as the NCHW
    feature map B x Dv x h x w, h x w = 14 x 14 for L = 196, 1 x L when L is no square).

Parameters are bifuse's, bit for bit: for a seed S the peer builds exactly bifuse's
McbAttention.random(Dq, Dv, d1, H, G, d2, A, S): the attention hashes are
CompactBilinear.seeded(Dq, Dv, d1, S), the fusion hashes seeded(G*Dv, Dq, d2, S + 1) (SplitMix64, see
compact_bilinear_peer.bifuse_hashes), and the layers Linear.random(out, in, bias, S + 2 / S + 3 / S + 4)
(Java's SplittableRandom(seed), which is the same SplitMix64 stream: weight then bias, each
(float) nextDouble(-1/sqrt(in), 1/sqrt(in)); see java_uniform). The inputs are torch.randn.

Rows: McbAttention.forward (under torch.no_grad()) and McbAttention.fwd+bwd (forward with autograd,
then loss = (out * g).sum() for a fixed random g, loss.backward() into q, I and every parameter; the
sketch matrices are buffers, never trained). Size label
"L=196,Dq=2048,Dv=2048,d1=16000,H=512,G=2,d2=16000,A=3000,map", batch 64 on CUDA; on CPU the same
layers at batch 1 (bifuse's CPU row, the float64 reference, is at that size too). The peak device
memory of each row (torch.cuda.max_memory_allocated over the timed calls) is the CSV's last column.

Cost model (bifuse's, tools/src/main/java/io/bifuse/tools/McbAttentionSuite.java; R = B*L rows,
F_d = d/2 + 1 bins, fft(d) = 2.5 d log2 d for one real FFT, C2 = G*Dv + Dq):
    I = B*Dq + B*L*Dv, W = H*d1 + H + G*H + G + A*d2 + A, O = B*A
    forward:  bytes = 4(I + W + O)
              flops = B(2Dq + fft(d1)) + R(2Dv + 2 fft(d1) + 6 F_d1)    attention MCB: q's sketch and
                                                                        R2C once per sample, per cell
                                                                        a sketch, an R2C, the product, a C2R
                    + 2R d1 H + 2R H G + 2B G L Dv                      1x1 convs, weighted sums
                    + B(2 C2 + 3 fft(d2) + 6 F_d2) + 2B d2 A            fusion MCB, answer layer
    fwd+bwd:  bytes = 4(3I + 3W + 2O)
              flops = forward + B(3Dq + fft(d1)) + R(3Dv + 4 fft(d1) + 12 F_d1)
                    + 2(2R d1 H + 2R H G + 2B G L Dv + 2B d2 A) + B(3 C2 + 5 fft(d2) + 12 F_d2)
    (the dense sketch matmuls this peer does, 2 R Dq d1 + 2 R Dv d1 per forward, are not counted:
    the cost model is the operator's, the same for every backend).

Examples:
    python3 benchmarks/python/mcb_attention_peer.py --csv out.csv
    python3 benchmarks/python/mcb_attention_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/mcb_attention_peer.py --check
    python3 benchmarks/python/mcb_attention_peer.py --check --cells 9 --dq 24 --dv 20 --d1 50 --hidden 12 --d2 40 --answers 7
    python3 benchmarks/python/mcb_attention_peer.py --params      # bifuse's parameters for --seed, at small sizes
"""

import math
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc
from compact_bilinear_peer import MASK64, GOLDEN, MIX1, MIX2, bifuse_hashes

SCOPES = ("map", "cell")


# --------------------------------------------------------------------------------------------
# bifuse's Linear.random: Java's SplittableRandom(seed).nextDouble(-b, b), reproduced exactly.
# --------------------------------------------------------------------------------------------

def java_uniform(seed, n, bound, start=0):
    """The float32 values (float) r.nextDouble(-bound, bound) number start .. start + n - 1 of Java's
    new SplittableRandom(seed): that generator is SplitMix64 (state += 0x9E3779B97F4A7C15, the same
    mix as bifuse_hashes), nextDouble() = (nextLong() >>> 11) * 2^-53, and
    nextDouble(o, b) = r * (b - o) + o (then nextDown(b) if that rounds up to b); Java rounds each
    operation (no fused multiply-add) and (float) rounds to nearest even, as numpy does."""
    with np.errstate(over="ignore"):
        k = np.arange(start + 1, start + n + 1, dtype=np.uint64)
        z = k * np.uint64(GOLDEN) + np.uint64(seed & MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    r = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    r = r * (bound - (-bound)) + (-bound)
    r = np.where(r >= bound, np.nextafter(bound, -np.inf), r)
    return r.astype(np.float32)


def bifuse_linear(out, inp, seed, chunk=1 << 22):
    """(weight out x in, bias out) as bifuse's Linear.random(out, in, true, seed): weight, then bias,
    from one generator, uniform in +-1/sqrt(in) (nn.Linear's range). Chunked, so A x d2 = 48M draws
    stay a few hundred MB."""
    bound = 1.0 / math.sqrt(inp)
    n = out * inp
    w = np.empty(n, np.float32)
    for s in range(0, n, chunk):
        w[s:s + chunk] = java_uniform(seed, min(chunk, n - s), bound, start=s)
    return w.reshape(out, inp), java_uniform(seed, out, bound, start=n)


def bifuse_parameters(dq, dv, d1, hidden, glimpses, d2, answers, seed):
    """bifuse's McbAttention.random(dq, dv, d1, hidden, glimpses, d2, answers, seed): the hashes of both
    poolings and the three layers, as numpy arrays."""
    return dict(att=bifuse_hashes(dq, dv, d1, seed), fus=bifuse_hashes(glimpses * dv, dq, d2, seed + 1),
                hidden=bifuse_linear(hidden, d1, seed + 2), logits=bifuse_linear(glimpses, hidden, seed + 3),
                answer=bifuse_linear(answers, d2, seed + 4))


def print_parameters(args):
    """A few of bifuse's parameters at the --params-* sizes (to set against Java's)."""
    dq, dv, d1, hd, g, d2, a = 4, 3, 10, 5, 2, 8, 3
    p = bifuse_parameters(dq, dv, d1, hd, g, d2, a, args.seed)
    print("bifuse McbAttention.random(Dq=%d, Dv=%d, d1=%d, H=%d, G=%d, d2=%d, A=%d, seed=%d):" % (dq, dv, d1, hd, g, d2, a, args.seed))
    for name in ("att", "fus"):
        h1, s1, h2, s2 = p[name]
        print("  %s: h1 %s s1 %s h2 %s s2 %s" % (name, h1.tolist(), [int(v) for v in s1], h2.tolist(), [int(v) for v in s2]))
    for name in ("hidden", "logits", "answer"):
        w, b = p[name]
        print("  %s.weight[0, :3] %s  bias[:2] %s" % (name, [float(v).hex() for v in w[0, :3]], [float(v).hex() for v in b[:2]]))
    return 0


# --------------------------------------------------------------------------------------------
# The peer: MCB attention as vqa-mcb's PyTorch users write it.
# --------------------------------------------------------------------------------------------

def sketch_matrix(h, s, input_dim, output_dim):
    """gdlg's generate_sketch_matrix: the count sketch as an input_dim x output_dim matrix, s[i] at
    (i, h[i]), built sparse and stored dense."""
    idx = torch.stack([torch.arange(input_dim), torch.as_tensor(h, dtype=torch.long)])
    return torch.sparse_coo_tensor(idx, torch.as_tensor(s, dtype=torch.float32), [input_dim, output_dim]).to_dense()


class CompactBilinearPooling(nn.Module):
    """gdlg/pytorch_compact_bilinear_pooling's module on torch.fft, inputs N x C x H x W: the sketches
    are matmuls of the channels-last view by the sketch matrices, then rfft, product, irfft(n=d).
    sum_pool sums over H x W (B x d); otherwise the N x d x H x W map (a channels-last view).
    Hashes given (rand_h_*, rand_s_*), as to load a trained model, or drawn by torch.randint.
    sketch='scatter': the count sketch by index_add_ instead of the dense matmul (same values)."""

    def __init__(self, input_dim1, input_dim2, output_dim, sum_pool=True,
                 rand_h_1=None, rand_s_1=None, rand_h_2=None, rand_s_2=None, sketch="dense"):
        super().__init__()
        self.input_dim1, self.input_dim2, self.output_dim = input_dim1, input_dim2, output_dim
        self.sum_pool = sum_pool
        self.sketch = sketch
        if rand_h_1 is None:
            rand_h_1 = torch.randint(output_dim, size=(input_dim1,))
            rand_s_1 = 2 * torch.randint(2, size=(input_dim1,)) - 1
        if rand_h_2 is None:
            rand_h_2 = torch.randint(output_dim, size=(input_dim2,))
            rand_s_2 = 2 * torch.randint(2, size=(input_dim2,)) - 1
        # Buffers, not parameters: fixed, never trained (gdlg: nn.Parameter(requires_grad=False)).
        if sketch == "dense":
            self.register_buffer("sketch1", sketch_matrix(rand_h_1, rand_s_1, input_dim1, output_dim))
            self.register_buffer("sketch2", sketch_matrix(rand_h_2, rand_s_2, input_dim2, output_dim))
        else:
            self.register_buffer("h1", torch.as_tensor(rand_h_1, dtype=torch.long))
            self.register_buffer("s1", torch.as_tensor(rand_s_1, dtype=torch.float32))
            self.register_buffer("h2", torch.as_tensor(rand_h_2, dtype=torch.long))
            self.register_buffer("s2", torch.as_tensor(rand_s_2, dtype=torch.float32))

    def count_sketch(self, x, which):
        """x: ... x C (channels last) -> ... x d."""
        if self.sketch == "dense":
            return x.matmul(self.sketch1 if which == 1 else self.sketch2)
        h, s = (self.h1, self.s1) if which == 1 else (self.h2, self.s2)
        return x.new_zeros(x.shape[:-1] + (self.output_dim,)).index_add_(x.dim() - 1, h, x * s)

    def forward(self, x1, x2):
        fft1 = torch.fft.rfft(self.count_sketch(x1.permute(0, 2, 3, 1), 1))
        fft2 = torch.fft.rfft(self.count_sketch(x2.permute(0, 2, 3, 1), 2))
        cbp = torch.fft.irfft(fft1 * fft2, n=self.output_dim)           # N x H x W x d
        return cbp.sum(dim=(1, 2)) if self.sum_pool else cbp.permute(0, 3, 1, 2)


def signed_sqrt(x):
    """sqrt(relu(x)) - sqrt(relu(-x)): sign(x) sqrt|x|, gradient 0 (not NaN) at x == 0 (see peer_common.ssqrt_l2)."""
    return torch.sqrt(F.relu(x)) - torch.sqrt(F.relu(-x))


def grid(cells):
    """h x w of the feature map: 14 x 14 for 196 cells, a square where L is one, else 1 x L."""
    r = int(round(math.sqrt(cells)))
    return (r, r) if r * r == cells else (1, cells)


class MCBAttention(nn.Module):
    def __init__(self, dq, dv, d1, hidden, glimpses, d2, answers, scope="map", params=None, sketch="dense"):
        super().__init__()
        self.glimpses, self.scope = glimpses, scope
        att = params["att"] if params else (None,) * 4
        fus = params["fus"] if params else (None,) * 4
        self.mcb_att = CompactBilinearPooling(dq, dv, d1, False, *att, sketch=sketch)
        self.conv1 = nn.Conv2d(d1, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, glimpses, kernel_size=1)
        self.mcb_fus = CompactBilinearPooling(glimpses * dv, dq, d2, True, *fus, sketch=sketch)
        self.linear = nn.Linear(d2, answers)
        if params:
            with torch.no_grad():
                for layer, name in ((self.conv1, "hidden"), (self.conv2, "logits"), (self.linear, "answer")):
                    w, b = params[name]
                    layer.weight.copy_(torch.from_numpy(w).view(layer.weight.shape))
                    layer.bias.copy_(torch.from_numpy(b))

    def forward(self, q, v):
        B, L, Dv = v.shape
        h, w = grid(L)
        img = v.transpose(1, 2).reshape(B, Dv, h, w)                    # the NCHW feature map (a view)
        q_tiled = q.view(B, -1, 1, 1).expand(-1, -1, h, w)               # the question tiled over the cells
        x = signed_sqrt(self.mcb_att(q_tiled, img))                      # B x d1 x h x w: B*L*d1 floats
        x = F.normalize(x, dim=(1, 2, 3) if self.scope == "map" else 1)   # l2 over the map (Caffe) or per cell
        x = self.conv2(F.relu(self.conv1(x)))                            # B x G x h x w
        alpha = F.softmax(x.view(B, self.glimpses, L), dim=2)            # B x G x L
        v_hat = torch.bmm(alpha, img.flatten(2).transpose(1, 2))         # B x G x Dv
        u = self.mcb_fus(v_hat.view(B, -1, 1, 1), q.view(B, -1, 1, 1))   # B x d2
        return self.linear(F.normalize(signed_sqrt(u), dim=1))


# --------------------------------------------------------------------------------------------
# The float64 definition (for --check): the spec's pair sums, sample by sample, no FFT.
# --------------------------------------------------------------------------------------------

def mcb_definition(x, y, hashes, d):
    """z[(h1[a] + h2[b]) % d] += s1[a] s2[b] x[a] y[b] for every pair (a, b), one vector pair."""
    h1, s1, h2, s2 = hashes
    idx = (h1[:, None] + h2[None, :]) % d
    return np.bincount(idx.ravel(), weights=(np.outer(s1 * x, s2 * y)).ravel(), minlength=d)


def ssqrt_np(z):
    return np.sign(z) * np.sqrt(np.abs(z))


def l2_np(u):
    return u / max(np.linalg.norm(u), 1e-12)


# --------------------------------------------------------------------------------------------
# Cost model (bifuse's: McbAttentionSuite.cost; keep the two in sync).
# --------------------------------------------------------------------------------------------

def fft_flops(d):
    """One real FFT (rfft or irfft) of length d, counted as 2.5 d log2 d."""
    return 2.5 * d * math.log2(d)


def work_model(op, B, L, dq, dv, d1, hd, g, d2, a):
    """(bytes, flops) per call: see the module docstring."""
    R = B * L
    f1, f2 = d1 // 2 + 1, d2 // 2 + 1
    c2 = g * dv + dq
    I, W, O = B * dq + B * L * dv, hd * d1 + hd + g * hd + g + a * d2 + a, B * a
    gemm = 2.0 * R * d1 * hd + 2.0 * R * hd * g + 2.0 * B * g * L * dv + 2.0 * B * d2 * a
    fwd = (B * (2 * dq + fft_flops(d1)) + R * (2 * dv + 2 * fft_flops(d1) + 6 * f1)
           + gemm + B * (2 * c2 + 3 * fft_flops(d2) + 6 * f2))
    if op == "forward":
        return 4 * (I + W + O), fwd
    if op == "fwd+bwd":
        bwd = (B * (3 * dq + fft_flops(d1)) + R * (3 * dv + 4 * fft_flops(d1) + 12 * f1)
               + 2 * gemm + B * (3 * c2 + 5 * fft_flops(d2) + 12 * f2))
        return 4 * (3 * I + 3 * W + 2 * O), fwd + bwd
    raise ValueError("op: expected forward or fwd+bwd, got %r" % op)


# --------------------------------------------------------------------------------------------
# The peer's description for peer_common (command line, timing, CSV).
# --------------------------------------------------------------------------------------------

class McbAttentionPeer(pc.Peer):
    op = "McbAttention"
    csv_prefix = "peer-mcb-attention"
    default_batches = None          # 64 on CUDA, 1 on CPU: see setup
    default_check_batch = 2
    # The gradients go through two signed square roots, whose derivative 0.5/sqrt|z| amplifies
    # float32 rounding where z is near 0 (as for MFB and full bilinear pooling).
    default_check_grad_tol = 1e-2
    exact_zero_grads = {"conv2.bias": "the softmax over the cells cancels a per-glimpse shift of the logits"}

    def add_args(self, p):
        p.add_argument("--cells", type=int, default=196, help="L, cells per sample (default 196 = 14x14)")
        p.add_argument("--dq", type=int, default=2048, help="question features (default 2048)")
        p.add_argument("--dv", type=int, default=2048, help="cell features (default 2048)")
        p.add_argument("--d1", type=int, default=16000, help="attention MCB dimension (default 16000)")
        p.add_argument("--hidden", type=int, default=512, help="H, the first 1x1 conv's width (default 512)")
        p.add_argument("--glimpses", type=int, default=2, help="G (default 2)")
        p.add_argument("--d2", type=int, default=16000, help="fusion MCB dimension (default 16000)")
        p.add_argument("--answers", type=int, default=3000, help="A, outputs (default 3000)")
        p.add_argument("--scope", choices=SCOPES, default="map",
                       help="the attention l2 norm over the whole L x d1 map (default, the Caffe original) or per cell")
        p.add_argument("--sketch", choices=("dense", "scatter"), default="dense",
                       help="count sketch: dense = matmul by the sketch matrix (gdlg's, default); scatter = index_add_ "
                            "(the size column then gets ',sketch=scatter')")
        p.add_argument("--inductor-layout-opt", action="store_true",
                       help="leave torch.compile's layout optimization on (default off: see setup; wrong input gradients)")
        p.add_argument("--params", action="store_true",
                       help="print a few of bifuse's parameters for --seed at tiny sizes, then exit")

    def setup(self, args):
        if args.params:
            return print_parameters(args)
        if args.batches is None:
            # The device as peer_common.select_device picks it: the spec's batch on CUDA, one sample on
            # the CPU (the size of bifuse's CPU row, whose float64 reference costs B*L*Dq*Dv per forward).
            cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
            args.batches = "64" if cuda else "1"
        # Inductor leaves the FFTs and the complex product to eager kernels and says so on every compile.
        warnings.filterwarnings("ignore", message=".*does not support code generation for complex.*")
        warnings.filterwarnings("ignore", message=".*[Ss]parse invariant checks.*")
        if not args.inductor_layout_opt:
            # With inductor's layout optimization (conv inputs and outputs turned channels-last), torch
            # 2.13's compiled backward gives wrong gradients of q and I (relative errors ~1, forward and
            # parameter gradients right) whenever a 1x1 conv follows the irfft (seen on the CPU; --check
            # shows it with --inductor-layout-opt). Off here only; everything else is the default mode.
            try:
                import torch._inductor.config as inductor_config
                inductor_config.layout_optimization = False
            except (ImportError, AttributeError):   # no inductor (PyTorch 1.x): no compile mode either
                pass
        return None

    def dims(self, args):
        return (args.cells, args.dq, args.dv, args.d1, args.hidden, args.glimpses, args.d2, args.answers)

    def cases(self, args, batches):
        L, dq, dv, d1, hd, g, d2, a = self.dims(args)
        size = "L=%d,Dq=%d,Dv=%d,d1=%d,H=%d,G=%d,d2=%d,A=%d,%s" % (L, dq, dv, d1, hd, g, d2, a, args.scope)
        if args.sketch != "dense":
            size += ",sketch=" + args.sketch
        return [pc.Case(size, B, lambda op, B=B: work_model(op, B, L, dq, dv, d1, hd, g, d2, a), dict(scope=args.scope))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        L, dq, dv, d1, hd, g, d2, a = self.dims(args)
        params = bifuse_parameters(dq, dv, d1, hd, g, d2, a, seed)
        model = MCBAttention(dq, dv, d1, hd, g, d2, a, args.scope, params, args.sketch).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 5)
        q = torch.randn(case.batch, dq, generator=gen, dtype=dtype).to(device)
        v = torch.randn(case.batch, L, dv, generator=gen, dtype=dtype).to(device)
        gr = torch.randn(case.batch, a, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (q, v), gr, input_names=("q", "I"))

    def definition(self, case, built):
        """float64 numpy, straight from the spec: pair-sum sketches (no FFT, no sketch matrix), the
        layers from the module's parameters, the hashes from bifuse's generator."""
        w = pc.params_np(built.fn)
        m = built.fn
        att_h = tuple(np.asarray(t, np.float64) if i % 2 else np.asarray(t) for i, t in enumerate(built_hashes(m, "mcb_att")))
        fus_h = tuple(np.asarray(t, np.float64) if i % 2 else np.asarray(t) for i, t in enumerate(built_hashes(m, "mcb_fus")))
        d1, d2, G = m.mcb_att.output_dim, m.mcb_fus.output_dim, m.glimpses
        W1, b1 = w["conv1.weight"].reshape(w["conv1.weight"].shape[0], -1), w["conv1.bias"]
        W2, b2 = w["conv2.weight"].reshape(w["conv2.weight"].shape[0], -1), w["conv2.bias"]
        W3, b3 = w["linear.weight"], w["linear.bias"]
        q, v = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(q.shape[0]):
            u = np.array([ssqrt_np(mcb_definition(q[b], cell, att_h, d1)) for cell in v[b]])    # L x d1
            t = l2_np(u.ravel()).reshape(u.shape) if case.dims["scope"] == "map" else np.array([l2_np(r) for r in u])
            logits = np.array([W2 @ np.maximum(W1 @ r + b1, 0.0) + b2 for r in t])               # L x G
            vhat = []
            for gl in range(G):
                e = np.exp(logits[:, gl] - logits[:, gl].max())
                vhat.append((e / e.sum()) @ v[b])
            fused = l2_np(ssqrt_np(mcb_definition(np.concatenate(vhat), q[b], fus_h, d2)))
            out.append(W3 @ fused + b3)
        return np.array(out)


def built_hashes(model, name):
    """(h1, s1, h2, s2) of one of the model's poolings, read back from its buffers (the sketch matrix
    or the index/sign vectors), so that the definition checks the module as it is."""
    cbp = getattr(model, name)
    if cbp.sketch == "dense":
        out = []
        for m in (cbp.sketch1, cbp.sketch2):
            m = m.detach().cpu().double().numpy()
            h = np.abs(m).argmax(axis=1)
            out += [h, m[np.arange(m.shape[0]), h]]
        return tuple(out)
    return tuple(t.detach().cpu().numpy() for t in (cbp.h1, cbp.s1, cbp.h2, cbp.s2))


if __name__ == "__main__":
    sys.exit(pc.run(McbAttentionPeer, __doc__))
