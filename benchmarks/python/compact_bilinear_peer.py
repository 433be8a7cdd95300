#!/usr/bin/env python3
"""PyTorch peer benchmark for compact bilinear pooling (MCB), to compare against bifuse.

The operator is written the way MCB users write it in PyTorch: a count sketch by scatter_add_ into
a zero tensor, torch.fft.rfft of both sketches, an elementwise complex product, torch.fft.irfft(n=d),
and autograd for the backward. It is timed eagerly and under torch.compile (default mode).

Math (bifuse spec):
    Psi(x; h, s)[j] = sum_{i : h[i] == j} s[i] * x[i]            x in R^C -> R^d
    z = irfft( rfft(Psi(x; h1, s1)) * rfft(Psi(y; h2, s2)), n=d )    (irfft includes 1/d)
    optional: u = sign(z) * sqrt(|z|), then F.normalize(u, dim=1, eps=1e-12)   (--norm pytorch)

The hashes come from bifuse's documented seeded generator (SplitMix64, see bifuse_hashes), so for
the same seed both libraries compute exactly the same operator and their outputs can be compared.

Rows written (CSV columns: see peer_common.py, which also does the command line and timing):
    CompactBilinear.forward   forward only, under torch.no_grad() (inference).
    CompactBilinear.fwd+bwd   one full training step: forward with autograd recording, then
                              loss = (z * g).sum() for a fixed random g, loss.backward() to x and y.
                              It therefore includes the forward; the name matches bifuse's rows.

Works on CUDA (timed with torch.cuda.Event pairs) and on CPU (time.perf_counter). Runs on
PyTorch 1.13 (no torch.compile there: that mode is reported as skipped) up to 2.x.

--bootstrap: block.bootstrap.pytorch's own MCB instead (block/models/networks/fusions/fusions.py and its
compactbilinearpooling.py, imported at run time from $BLOCK_BOOTSTRAP or the bundle's block_bootstrap/; see
bootstrap_fusions.py), as its VQA2 classifier uses it (options/vqa2/mcb.yaml, classif.fusion):
MCB([Dx, Dy], Out, mm_dim=d), its defaults otherwise (activ_output relu, dropout 0), called as
fusion([x, y]) in eval mode, float32; its hand-written backward (CompactBilinearPoolingFn) for the
sketches' part, autograd for linear_out. Its hashes are its own (h = LongTensor.random_, s = +-1, drawn
under torch.manual_seed(--seed), kept as the buffers mcb.sketch1/2.h, .s), not bifuse's. It calls
torch.rfft / torch.irfft (gone since PyTorch 1.8) and torch.addcmul's positional value: bootstrap_fusions.
legacy_torch() gives those back with their old semantics. Math:
    z = irfft( rfft(Psi(x; h1, s1)) * rfft(Psi(y; h2, s2)), n=d )    (as above, no normalization)
    out = relu(P z + b_p)                                            (linear_out: d -> Out)
Defaults then Dx 4800, Dy 4096, d 16000, Out 3000, batch 256, no --extra-d; size label
"Dx=4800,Dy=4096,d=16000,Out=3000,bootstrap". Cost model: the one below plus the output layer's GEMM,
    forward:  bytes 4(B(Dx+Dy) + Out*d + B*Out)        flops (forward below) + 2B*Out*d
    fwd+bwd:  bytes 4(2B(Dx+Dy) + 3*Out*d + 2B*Out)    flops (fwd+bwd below) + 6B*Out*d
Without a checkout it prints "SKIPPED CompactBilinear: ..." and exits with code 3 (peers.py: skipped).
--check holds the float64 module to a numpy definition (the count sketches from the module's own buffers,
their circular convolution by numpy's FFT, linear_out, relu; 1e-10) and the float32 module's output and
gradients (x, y, linear_out) to its float64 run (--check-tol).

Examples:
    python3 benchmarks/python/compact_bilinear_peer.py --csv out.csv
    python3 benchmarks/python/compact_bilinear_peer.py --device cpu --runs 3 --warmup 1 --batches 1,64
    python3 benchmarks/python/compact_bilinear_peer.py --check
    python3 benchmarks/python/compact_bilinear_peer.py --hashes          # seed 42, Dx=4, Dy=3, d=10
    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 benchmarks/python/compact_bilinear_peer.py --bootstrap --check
"""

import math
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import bootstrap_fusions as bf
import peer_common as pc

# (own peer's default, --bootstrap default) of the options whose defaults differ.
DEFAULTS = dict(dx=(2048, 4800), dy=(2048, 4096), extra_d=("15999,15838", ""), batches=("1,64,512", "256"))
BOOTSTRAP_OUT = 3000

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


# --------------------------------------------------------------------------------------------
# Hashes: bifuse's SplitMix64 generator, reproduced exactly.
# --------------------------------------------------------------------------------------------

class SplitMix64:
    """Scalar SplitMix64 over unsigned 64-bit arithmetic (the readable definition)."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + GOLDEN) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        return z ^ (z >> 31)


def splitmix64_stream(seed, n):
    """The first n outputs of SplitMix64(seed) as a uint64 array (vectorised; numpy uint64
    array arithmetic wraps mod 2^64 and >> on unsigned is a logical shift)."""
    seed = np.uint64(seed & MASK64)
    with np.errstate(over="ignore"):
        k = np.arange(1, n + 1, dtype=np.uint64)
        z = k * np.uint64(GOLDEN) + seed              # state after the k-th increment
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    return z


def bifuse_hashes(Dx, Dy, d, seed=42):
    """h1, s1, h2, s2 exactly as bifuse's CompactBilinear.seeded(Dx, Dy, d, seed) draws them:
    one generator, in the order h1[0..Dx), s1[0..Dx), h2[0..Dy), s2[0..Dy);
    h = next() mod d (unsigned), s = +1 if the top bit of next() is 0 else -1.
    Returns (h1 int64, s1 float32, h2 int64, s2 float32) numpy arrays. seed is taken mod 2^64,
    so a negative Java long seed maps to the same state."""
    z = splitmix64_stream(seed, 2 * Dx + 2 * Dy)
    parts = np.split(z, [Dx, 2 * Dx, 2 * Dx + Dy])
    h = lambda u: (u % np.uint64(d)).astype(np.int64)
    s = lambda u: np.where((u >> np.uint64(63)) == 0, 1.0, -1.0).astype(np.float32)
    return h(parts[0]), s(parts[1]), h(parts[2]), s(parts[3])


def bifuse_hashes_scalar(Dx, Dy, d, seed=42):
    """Same as bifuse_hashes, one next() at a time (a cross-check of the vectorised version)."""
    r = SplitMix64(seed)
    h1 = [r.next() % d for _ in range(Dx)]
    s1 = [1.0 if (r.next() >> 63) == 0 else -1.0 for _ in range(Dx)]
    h2 = [r.next() % d for _ in range(Dy)]
    s2 = [1.0 if (r.next() >> 63) == 0 else -1.0 for _ in range(Dy)]
    return (np.array(h1, np.int64), np.array(s1, np.float32),
            np.array(h2, np.int64), np.array(s2, np.float32))


def print_hashes(Dx, Dy, d, seed):
    r = SplitMix64(seed)
    raw = [r.next() for _ in range(3)]
    h1, s1, h2, s2 = bifuse_hashes(Dx, Dy, d, seed)
    ref = bifuse_hashes_scalar(Dx, Dy, d, seed)
    same = all(np.array_equal(a, b) for a, b in zip((h1, s1, h2, s2), ref))
    print("SplitMix64(seed=%d): first next() values: %s" % (seed, ", ".join("0x%016x" % v for v in raw)))
    print("bifuse_hashes(Dx=%d, Dy=%d, d=%d, seed=%d):" % (Dx, Dy, d, seed))
    print("  h1 =", h1.tolist())
    print("  s1 =", [int(v) for v in s1])
    print("  h2 =", h2.tolist())
    print("  s2 =", [int(v) for v in s2])
    print("  vectorised == scalar generator:", same)
    return same


# --------------------------------------------------------------------------------------------
# The peer: compact bilinear pooling as PyTorch users write it.
# --------------------------------------------------------------------------------------------

def count_sketch(x, h, s, d):
    """Psi(x; h, s) for each row of x (B x C): scatter_add_ of s*x into a B x d zero tensor."""
    out = x.new_zeros(x.shape[0], d)
    return out.scatter_add_(1, h.unsqueeze(0).expand(x.shape[0], -1), x * s)


def compact_bilinear(x, y, h1, s1, h2, s2, d, normalize=False):
    """z = irfft(rfft(Psi(x)) * rfft(Psi(y)), n=d), optionally signed sqrt + l2 normalisation."""
    fx = torch.fft.rfft(count_sketch(x, h1, s1, d), dim=1)
    fy = torch.fft.rfft(count_sketch(y, h2, s2, d), dim=1)
    z = torch.fft.irfft(fx * fy, n=d, dim=1)
    if normalize:
        z = torch.sign(z) * torch.sqrt(torch.abs(z))
        z = F.normalize(z, dim=1, eps=1e-12)
    return z


# --------------------------------------------------------------------------------------------
# Float64 reference straight from the definition (for --check).
# --------------------------------------------------------------------------------------------

def reference_forward_backward(x, y, g, h1, s1, h2, s2, d, normalize):
    """float64 numpy: z[(h1[a] + h2[b]) % d] += s1[a] s2[b] x[a] y[b] for every pair (a, b),
    per sample; and the gradients of sum(z * g) w.r.t. x and y from the same pair sum:
    gx[a] = s1[a] sum_b s2[b] y[b] gz[(h1[a] + h2[b]) % d] (gy likewise), gz = dL/dz_raw."""
    x, y, g = (np.asarray(t, np.float64) for t in (x, y, g))
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    idx = (h1[:, None] + h2[None, :]) % d                       # Dx x Dy bin of each pair
    sign = s1[:, None] * s2[None, :]
    B = x.shape[0]
    z = np.zeros((B, d))
    gx = np.zeros_like(x)
    gy = np.zeros_like(y)
    for b in range(B):
        raw = np.bincount(idx.ravel(), weights=(sign * np.outer(x[b], y[b])).ravel(), minlength=d)
        gz = g[b]
        if normalize:
            u = np.sign(raw) * np.sqrt(np.abs(raw))
            n = max(np.linalg.norm(u), 1e-12)
            o = u / n
            gu = (gz - o * np.dot(o, gz)) / n if np.linalg.norm(u) > 1e-12 else gz / n
            with np.errstate(divide="ignore", invalid="ignore"):
                gz = np.where(raw != 0, gu * 0.5 / np.sqrt(np.abs(raw)), 0.0)
            z[b] = o
        else:
            z[b] = raw
        G = gz[idx]                                             # Dx x Dy
        gx[b] = s1 * (G @ (s2 * y[b]))
        gy[b] = s2 * (G.T @ (s1 * x[b]))
    return z, gx, gy


# --------------------------------------------------------------------------------------------
# Work model (same as bifuse's bench; keep in sync with cuda/CompactBilinear.cu's header).
# --------------------------------------------------------------------------------------------

def fft_flops(d):
    """One real FFT (rfft or irfft) of length d, counted as 2.5 d log2 d."""
    return 2.5 * d * math.log2(d)


def work_model(op, B, Dx, Dy, d, normalize):
    """(bytes, flops) per call, 4-byte floats; C = Dx + Dy, F = d/2+1 complex bins. This is the cost
    model of bifuse's bench (tools/src/main/java/io/bifuse/tools/CompactBilinearSuite.java, cost()), so GB/s and
    GFLOP/s mean the same thing on both sides:
      count sketch 2 flops per input element, each real FFT (R2C or C2R) 2.5 d log2 d,
      complex product 6 per bin, gather (sketch gradient) 1 per input element.
      forward:  bytes 4B(C + d)    (read x, y; write z)
                flops B(2C + 3*fft + 6F)                       (2 sketches, 2 R2C, 1 product, 1 C2R)
      backward (the fwd+bwd training step):
                bytes 4B(2C + 2d)  (read x, y, g; write z, gx, gy)
                flops forward + B(3C + 5*fft + 12F)            (sketches again, 2 R2C for x, y,
                                                                1 R2C of g, 2 conjugate products,
                                                                2 C2R, gathers)
      With --norm pytorch the same numbers are used (bifuse's model has no term for it)."""
    C = Dx + Dy
    Fb = d // 2 + 1
    fft = fft_flops(d)
    fwd = B * (2 * C + 3 * fft + 6 * Fb)
    if op == "forward":
        return 4 * B * (C + d), fwd
    return 4 * B * (2 * C + 2 * d), fwd + B * (3 * C + 5 * fft + 12 * Fb)


def bootstrap_work_model(op, B, Dx, Dy, d, out):
    """work_model plus block.bootstrap's MCB output layer (linear_out: d -> out, the weights Out*d read once):
      forward:  bytes 4(B(Dx+Dy) + Out*d + B*Out)       (read x, y, the weights; write the output)
                flops work_model's + 2B*Out*d
      fwd+bwd:  bytes 4(2B(Dx+Dy) + 3*Out*d + 2B*Out)   (x, y read and their gradients written; the weights
                                                         read twice and their gradient written; the output
                                                         written and g read)
                flops work_model's + 6B*Out*d           (the layer's forward, input gradient, weight gradient)
    The Out biases and the relu are not counted (as bifuse's CompactBilinearSuite.bootstrapCase)."""
    C = Dx + Dy
    flops = work_model(op, B, Dx, Dy, d, False)[1]
    if op == "forward":
        return 4 * (B * C + out * d + B * out), flops + 2 * B * out * d
    return 4 * (2 * B * C + 3 * out * d + 2 * B * out), flops + 6 * B * out * d


def make_inputs(B, Dx, Dy, d, seed, device):
    h1, s1, h2, s2 = bifuse_hashes(Dx, Dy, d, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, Dx, generator=gen)
    y = torch.randn(B, Dy, generator=gen)
    g = torch.randn(B, d, generator=gen)
    t = lambda a: torch.as_tensor(a).to(device)
    return (t(x), t(y), t(g)), (t(h1), t(s1), t(h2), t(s2))


# --------------------------------------------------------------------------------------------
# The peer's description for peer_common (command line, timing, CSV).
# --------------------------------------------------------------------------------------------

class CompactBilinearPeer(pc.Peer):
    op = "CompactBilinear"
    csv_prefix = "peer"
    default_batches = "1,64,512"
    default_check_batch = 2
    default_check_tol = 1e-5

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=None, help="default 2048; --bootstrap 4800")
        p.add_argument("--dy", type=int, default=None, help="default 2048; --bootstrap 4096")
        p.add_argument("--d", type=int, default=16000, help="main output dimension (default 16000)")
        p.add_argument("--extra-d", default=None,
                       help="further d values run at --extra-batch (default 15999,15838 = odd, 2*7919; "
                            "--bootstrap: none); '' for none")
        p.add_argument("--extra-batch", type=int, default=64)
        p.add_argument("--norm", choices=["none", "pytorch"], default="none",
                       help="post-processing: none, or pytorch = signed sqrt then F.normalize(eps=1e-12); "
                            "with pytorch the size column gets ',norm=pytorch'")
        p.add_argument("--hashes", action="store_true",
                       help="print the hashes for --hash-dx/--hash-dy/--hash-d and --seed, then exit")
        p.add_argument("--hash-dx", type=int, default=4)
        p.add_argument("--hash-dy", type=int, default=3)
        p.add_argument("--hash-d", type=int, default=10)
        p.add_argument("--bootstrap", action="store_true",
                       help="time block.bootstrap's own MCB (its count sketches, linear_out, relu), from "
                            "$BLOCK_BOOTSTRAP or block_bootstrap/; batch default 256")
        p.add_argument("--out", type=int, default=None,
                       help="with --bootstrap: the output layer's width (default %d)" % BOOTSTRAP_OUT)
        p.set_defaults(batches=None)     # 1,64,512, or 256 with --bootstrap (setup)

    def setup(self, args):
        args.normalize = args.norm == "pytorch"
        for name, values in DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, values[1 if args.bootstrap else 0])
        if args.hashes:
            return 0 if print_hashes(args.hash_dx, args.hash_dy, args.hash_d, args.seed) else 1
        if args.bootstrap and args.normalize:
            print("compact_bilinear_peer.py: block.bootstrap's MCB has no normalization; --norm pytorch does not apply "
                  "with --bootstrap", file=sys.stderr)
            return 2
        if not args.bootstrap and args.out is not None:
            print("compact_bilinear_peer.py: --out is the output layer of --bootstrap's MCB; this peer has none "
                  "without it", file=sys.stderr)
            return 2
        # Inductor leaves the FFTs and the complex product to eager kernels and says so on every
        # compile; the message is expected for this operator, so it is silenced here.
        warnings.filterwarnings("ignore", message=".*does not support code generation for complex.*")
        if args.bootstrap:
            if args.out is None:
                args.out = BOOTSTRAP_OUT
            bf.legacy_torch()
            return bf.require(self.op)
        return None

    def cases(self, args, batches):
        """(B, Dx, Dy, d): the main d over --batches, then each --extra-d at --extra-batch."""
        dims = [(B, args.dx, args.dy, args.d) for B in batches]
        dims += [(args.extra_batch, args.dx, args.dy, dd) for dd in pc.parse_int_list(args.extra_d)]
        if args.bootstrap:
            Out = args.out
            return [pc.Case("Dx=%d,Dy=%d,d=%d,Out=%d,bootstrap" % (Dx, Dy, d, Out), B,
                            lambda op, B=B, Dx=Dx, Dy=Dy, d=d: bootstrap_work_model(op, B, Dx, Dy, d, Out),
                            dict(dx=Dx, dy=Dy, d=d, out=Out))
                    for B, Dx, Dy, d in dims]
        suffix = ",norm=pytorch" if args.normalize else ""
        return [pc.Case("Dx=%d,Dy=%d,d=%d" % (Dx, Dy, d) + suffix, B,
                        lambda op, B=B, Dx=Dx, Dy=Dy, d=d: work_model(op, B, Dx, Dy, d, args.normalize),
                        dict(dx=Dx, dy=Dy, d=d))
                for B, Dx, Dy, d in dims]

    def build(self, case, args, device, dtype, seed):
        if args.bootstrap:
            Dx, Dy, d, Out = (case.dims[v] for v in ("dx", "dy", "d", "out"))
            return bf.build(lambda f: f.MCB([Dx, Dy], Out, mm_dim=d), case, Dx, Dy, Out, device, dtype, seed,
                            bf.linear_params(d, Out))
        d = case.dims["d"]
        (x, y, g), (h1, s1, h2, s2) = make_inputs(case.batch, case.dims["dx"], case.dims["dy"], d, seed, device)
        return pc.Built(compact_bilinear, (x, y), g, consts=(h1, s1, h2, s2, d, args.normalize),
                        input_names=("x", "y"))

    bootstrap_grads_ok = True

    def definition(self, case, built):
        """block.bootstrap's MCB, float64 numpy: the count sketches of x and y from the module's own hash and
        sign buffers, their circular convolution (numpy's FFT), linear_out, relu. Only with --bootstrap (the
        own peer's --check below has its own pair-sum definition).

        The check machinery holds only the forward to the definition; MCB's sketch gradients come from its
        hand-written backward (CompactBilinearPoolingFn.backward), which float32-vs-float64 alone would not
        test, so here the float64 module's gradients (x, y, linear_out) are also held to the definition's
        (1e-10): linear_out's by hand, x's and y's by reference_forward_backward's pair sum (no FFT)."""
        w = bf.weights(built)
        x, y = bf.inputs(built)
        d = case.dims["d"]
        h1, h2 = (w["mcb.sketch%d.h" % i].astype(np.int64) for i in (1, 2))
        s1, s2 = w["mcb.sketch1.s"], w["mcb.sketch2.s"]
        W, bias = w["linear_out.weight"], w["linear_out.bias"]
        z = np.zeros((x.shape[0], d))
        for b in range(x.shape[0]):
            px = np.bincount(h1, weights=s1 * x[b], minlength=d)       # Psi(x)[j] = sum_{h1[i] == j} s1[i] x[i]
            py = np.bincount(h2, weights=s2 * y[b], minlength=d)
            z[b] = np.fft.irfft(np.fft.rfft(px) * np.fft.rfft(py), n=d)  # z[j] = sum_m px[m] py[(j - m) mod d]
        pre = z @ W.T + bias
        out = bf.relu_np(pre)
        # Gradients of sum(out * g): through the relu and linear_out, then the pooling's pair sum.
        go = built.g.detach().cpu().double().numpy() * (pre > 0)
        ref = {"x": None, "y": None, "fusion.linear_out.weight": go.T @ z, "fusion.linear_out.bias": go.sum(0)}
        z_pairs, ref["x"], ref["y"] = reference_forward_backward(x, y, go @ W, h1, s1, h2, s2, d, False)
        _, grads = pc.forward_backward(built.fn, built.inputs, built.consts, built.g, built.input_names)
        errs = [("d" + n, pc.rel_l2(t.cpu().numpy(), ref[n])) for n, t in grads]
        errs.append(("z FFT vs pair sum", pc.rel_l2(z, z_pairs)))
        good = all(e < 1e-10 for _, e in errs)
        self.bootstrap_grads_ok &= good
        print("  %-8s %s: float64 gradients (its hand-written backward) vs definition, rel L2 %s  %s"
              % ("eager64", case.size, "  ".join("%s %.3e" % ne for ne in errs), "ok" if good else "FAIL"))
        return out

    def run_check(self, args, device, modes_for):
        """Peer vs the float64 definition, forward and gradients, B = --check-batch.

        Each mode runs in float32 (what is benchmarked); eager also runs in float64, which must
        agree with the definition to ~1e-12 and so proves the peer computes the same operator. With
        --norm pytorch the float32 gradients are ill-conditioned (d ssqrt/dz = 0.5/sqrt|z| blows up
        for z near 0), so there only the float32 forward and the float64 run are held to a tolerance."""
        if args.bootstrap:     # block.bootstrap's MCB: float32 vs float64 of the module, float64 vs definition()
            ok = pc.check_against_float64(self, args, device, modes_for)
            if not self.bootstrap_grads_ok:
                print("check: FAIL (not the PASS above: the float64 gradients vs the definition failed)")
            return ok and self.bootstrap_grads_ok
        print("== check: peer vs float64 definition (B=%d, seed=%d, norm=%s)"
              % (args.check_batch, args.seed, args.norm))
        ok = True
        for d in [args.d] + pc.parse_int_list(args.extra_d):
            (x, y, g), hs = make_inputs(args.check_batch, args.dx, args.dy, d, args.seed, device)
            h1, s1, h2, s2 = (a.cpu().numpy() for a in hs)
            z_ref, gx_ref, gy_ref = reference_forward_backward(
                x.cpu().numpy(), y.cpu().numpy(), g.cpu().numpy(), h1, s1, h2, s2, d, args.normalize)
            runs = [(name, fn, skip, torch.float32) for name, fn, skip in modes_for(compact_bilinear)]
            runs.insert(1, ("eager64", compact_bilinear, None, torch.float64))
            for name, fn, skip, dtype in runs:
                if fn is None:
                    print("  %-8s d=%-6d skipped (%s)" % (name, d, skip))
                    continue
                try:
                    pc.reset_compiler()
                    xr = x.detach().to(dtype).clone().requires_grad_(True)
                    yr = y.detach().to(dtype).clone().requires_grad_(True)
                    z = fn(xr, yr, hs[0], hs[1].to(dtype), hs[2], hs[3].to(dtype), d, args.normalize)
                    (z * g.to(dtype)).sum().backward()
                except Exception as e:  # torch.compile failing on this host is reported, not fatal
                    print("  %-8s d=%-6d skipped (%s)" % (name, d, pc.short_error(e)))
                    continue
                ez = pc.rel_l2(z.detach().cpu().numpy(), z_ref)
                egx = pc.rel_l2(xr.grad.cpu().numpy(), gx_ref)
                egy = pc.rel_l2(yr.grad.cpu().numpy(), gy_ref)
                if dtype == torch.float64:
                    good = max(ez, egx, egy) < 1e-10
                    note = ""
                elif args.normalize:
                    good = ez < args.check_tol
                    note = " (float32 gradients through ssqrt are ill-conditioned: not held to tol)"
                else:
                    good = max(ez, egx, egy) < args.check_tol
                    note = ""
                ok &= good
                print("  %-8s Dx=%d,Dy=%d,d=%-6d rel L2 error: z %.3e  gx %.3e  gy %.3e  %s%s"
                      % (name, args.dx, args.dy, d, ez, egx, egy, "ok" if good else "FAIL", note))
        print("check:", "PASS" if ok else "FAIL")
        return ok


def main(argv=None):
    return pc.run(CompactBilinearPeer, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
