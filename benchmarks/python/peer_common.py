"""Machinery shared by the PyTorch peer benchmarks (benchmarks/python/*_peer.py).

A peer supplies the operator and its sizes; this module supplies the rest, the same for every peer:
the command line, the device, the eager and torch.compile modes, the timing loop (CUDA event pairs
or time.perf_counter), the peak device memory of each row, bifuse's cost model, the CSV, and the
--check comparison of the float32 peer with its own float64 run.

CSV columns (bifuse's Java bench writes the first twelve; compare.py reads both):
    op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops,peak_mem_bytes
peak_mem_bytes is torch.cuda.max_memory_allocated over the timed calls of that row (the counter is
reset after the warmup calls), so it counts the resident inputs and parameters too; empty on CPU.

A peer module defines a subclass of Peer and calls peer_common.main(ThePeer(), argv).
Runs on PyTorch 1.13 (no torch.compile: that mode is reported as skipped) up to 2.x.
"""

import argparse
import copy
import csv
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

CSV_HEADER = ["op", "backend", "size", "batch", "median_ms", "p10_ms", "p90_ms", "runs",
              "bytes", "flops", "gbps", "gflops", "peak_mem_bytes"]

RESULTS_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "results"))

ACTIVATIONS = ("none", "relu", "tanh")


# --------------------------------------------------------------------------------------------
# Small helpers used by the operators.
# --------------------------------------------------------------------------------------------

def activation(name):
    """The function PyTorch users apply for bifuse's Activation name (none, relu, tanh)."""
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return F.relu
    if name == "none":
        return lambda t: t
    raise ValueError("activation: expected one of %s, got %r" % (", ".join(ACTIVATIONS), name))


def activation_np(name):
    """The same activation on float64 numpy arrays (for the definitions in --check)."""
    return {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "none": lambda a: a}[name]


def ssqrt_l2(z):
    """Signed square root, then F.normalize over dim 1 (eps 1e-12): bifuse's Normalization.pytorch().

    The signed root is written sqrt(relu(z)) - sqrt(relu(-z)), as the MFB and block.bootstrap ports
    write it: the same value as sign(z)*sqrt(|z|), and autograd gives 0 (not NaN) where z == 0,
    which is the derivative bifuse uses there."""
    z = torch.sqrt(F.relu(z)) - torch.sqrt(F.relu(-z))
    return F.normalize(z, dim=1)


def ssqrt_l2_np(z):
    """float64 definition of ssqrt_l2 for one sample (a vector)."""
    u = np.sign(z) * np.sqrt(np.abs(z))
    return u / max(np.linalg.norm(u), 1e-12)


def rel_l2(a, ref):
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(a - ref) / den) if den > 0 else float(np.linalg.norm(a))


def short_error(e):
    msg = str(e).strip().splitlines()
    return "%s: %s" % (type(e).__name__, msg[0][:160] if msg else "")


def parse_int_list(s):
    return [int(v) for v in str(s).split(",") if v.strip()]


# --------------------------------------------------------------------------------------------
# Cost model: bifuse's, per call (see the cost model in the bench of each operator).
# --------------------------------------------------------------------------------------------

def gemm_cost(op, I, W, O, M):
    """(bytes, flops) per call for the low-rank operators, GEMM FLOPs only: I input floats, W
    parameter floats, O output floats, M multiply-adds of the forward GEMMs.
        forward:  bytes = 4(I + W + O),     flops = 2M
        fwd+bwd:  bytes = 4(3I + 3W + 2O),  flops = 6M"""
    if op == "forward":
        return 4 * (I + W + O), 2 * M
    if op == "fwd+bwd":
        return 4 * (3 * I + 3 * W + 2 * O), 6 * M
    raise ValueError("op: expected forward or fwd+bwd, got %r" % op)


# --------------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------------

def time_calls(step, device, warmup, runs):
    """(per-call times in ms, peak device bytes or None) of step() after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(runs)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events], torch.cuda.max_memory_allocated(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, None


def quantile(xs, q):
    """Nearest-rank quantile, as bifuse's Stats.quantile: sorted[min(n-1, round(q*(n-1)))] with
    Java's Math.round (half up)."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(math.floor(q * (len(s) - 1) + 0.5)))]


def summarize(times):
    return quantile(times, 0.5), quantile(times, 0.1), quantile(times, 0.9)


def reset_compiler():
    """Fresh compile caches per size, so each size gets its own static-shape graph."""
    if hasattr(torch, "compiler") and hasattr(torch.compiler, "reset"):
        torch.compiler.reset()
    elif hasattr(torch, "_dynamo") and hasattr(torch._dynamo, "reset"):
        torch._dynamo.reset()


def make_modes(fn, no_compile):
    """[(name, callable or None, skip reason)]: fn itself, and torch.compile(fn) (default mode)."""
    modes = [("eager", fn, None)]
    if no_compile:
        modes.append(("compile", None, "--no-compile"))
    elif not hasattr(torch, "compile"):
        modes.append(("compile", None, "torch.compile not available in torch %s" % torch.__version__))
    else:
        modes.append(("compile", torch.compile(fn), None))
    return modes


# --------------------------------------------------------------------------------------------
# What a peer provides.
# --------------------------------------------------------------------------------------------

class Built(object):
    """One operator instance at one size, ready to call: fn(*inputs, *consts).

    fn is an nn.Module (its parameters are trained, so fwd+bwd computes their gradients) or a plain
    function; inputs are the tensors that get gradients; g is the fixed upstream gradient of the
    training step's loss (out * g).sum()."""

    def __init__(self, fn, inputs, g, consts=(), input_names=None):
        self.fn = fn
        self.inputs = tuple(inputs)
        self.g = g
        self.consts = tuple(consts)
        self.input_names = list(input_names or ["in%d" % i for i in range(len(self.inputs))])

    def params(self):
        return list(self.fn.parameters()) if isinstance(self.fn, torch.nn.Module) else []


class Case(object):
    """One row group: the CSV size label, the batch, and the cost model (I, W, O, M) or a function
    op -> (bytes, flops)."""

    def __init__(self, size, batch, cost, dims=None):
        self.size = size
        self.batch = batch
        self.cost = cost
        self.dims = dims or {}

    def work(self, op):
        if callable(self.cost):
            return self.cost(op)
        return gemm_cost(op, *self.cost)


class Peer(object):
    """Subclass per operator. Required: op, csv_prefix, default_batches, add_args, cases, build.
    Optional: definition (float64 numpy forward straight from the spec, for --check)."""
    op = None                 # bifuse's op name, e.g. "Mlb": rows are <op>.forward and <op>.fwd+bwd
    csv_prefix = None         # default CSV: benchmarks/results/<csv_prefix>-<device>.csv
    default_batches = ""      # --batches default
    default_check_batch = 2
    default_check_tol = 1e-4
    default_check_grad_tol = None   # None: the gradients are held to --check-tol too
    exact_zero_grads = {}           # {parameter name: why its gradient is 0 in exact arithmetic}:
                                    # checked by absolute norm (< --check-tol), a relative error is noise
    description = None        # first paragraph of the module docstring
    epilog = None             # the rest

    def add_args(self, p):
        pass

    def cases(self, args, batches):
        raise NotImplementedError

    def build(self, case, args, device, dtype, seed):
        raise NotImplementedError

    def definition(self, case, built):
        """float64 numpy output computed from the definition, or None to skip that comparison."""
        return None

    def setup(self, args):
        """Called once after argument parsing (e.g. to silence expected warnings); an int return
        value ends the program with that exit code."""
        return None

    def run_check(self, args, device, modes_for):
        return check_against_float64(self, args, device, modes_for)


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------

def parser(peer):
    p = argparse.ArgumentParser(description=peer.description, epilog=peer.epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per row (default 50 cuda, 10 cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 10 cuda, 2 cpu)")
    p.add_argument("--batches", default=peer.default_batches,
                   help="batch sizes, comma-separated (default %s)" % peer.default_batches)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    p.add_argument("--tf32", action="store_true",
                   help="let cuBLAS/cuDNN use TF32 (backends get a -tf32 suffix; default: full FP32 GEMMs)")
    p.add_argument("--csv", default=None,
                   help="output CSV (default benchmarks/results/%s-<device>.csv)" % peer.csv_prefix)
    p.add_argument("--append", action="store_true",
                   help="append rows to --csv (header only if the file is new or empty), as peers.py does")
    p.add_argument("--seed", type=int, default=42, help="seed of the inputs and parameters")
    p.add_argument("--check", action="store_true",
                   help="compare float32 outputs and gradients with a float64 run, then exit")
    p.add_argument("--check-batch", type=int, default=peer.default_check_batch)
    p.add_argument("--check-tol", type=float, default=peer.default_check_tol,
                   help="bound on the relative L2 errors (default %g)" % peer.default_check_tol)
    if peer.default_check_grad_tol is not None:
        p.add_argument("--check-grad-tol", type=float, default=peer.default_check_grad_tol,
                       help="bound on the gradients' relative L2 errors (default %g: the signed square root's "
                            "derivative 0.5/sqrt|z| amplifies float32 rounding where z is near 0)"
                       % peer.default_check_grad_tol)
    peer.add_args(p)
    return p


def select_device(args, p):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device %s: CUDA is not available in this PyTorch" % device)
    args.runs = args.runs if args.runs is not None else (50 if device.type == "cuda" else 10)
    args.warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 2)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    if device.type == "cuda":
        # Said explicitly: PyTorch's defaults changed across versions.
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    return device


def backend_name(mode, device, args):
    return "torch-%s-%s%s" % (mode, device.type, "-tf32" if args.tf32 and device.type == "cuda" else "")


def banner(device, args):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu, %d threads" % torch.get_num_threads()
    gemm = ""
    if device.type == "cuda":
        gemm = "; GEMMs %s" % ("TF32 allowed" if args.tf32 else "FP32 (TF32 off)")
    print("torch %s on %s (%s); warmup %d, runs %d%s" % (torch.__version__, device, name, args.warmup, args.runs, gemm))


# --------------------------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------------------------

class RowWriter(object):
    """Prints each row and writes it to the CSV at once (a crash keeps the rows before it)."""

    def __init__(self, path, append, size_width):
        self.path = path
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fresh = not append or not os.path.exists(path) or os.path.getsize(path) == 0
        self.f = open(path, "a" if append else "w", newline="")
        self.w = csv.writer(self.f)
        if fresh:
            self.w.writerow(CSV_HEADER)
            self.f.flush()
        self.fmt = "%-25s %-24s %-" + str(max(30, size_width)) + "s %5s %10s %10s %10s %9s %9s %10s"
        print(self.fmt % ("op", "backend", "size", "batch", "median_ms", "p10_ms", "p90_ms", "GB/s", "GFLOP/s", "peak MiB"))

    def row(self, op, backend, size, batch, times, nbytes, flops, peak):
        med, p10, p90 = summarize(times)
        gbps, gflops = nbytes / med / 1e6, flops / med / 1e6
        print(self.fmt % (op, backend, size, batch, "%.4f" % med, "%.4f" % p10, "%.4f" % p90,
                          "%.2f" % gbps, "%.2f" % gflops, "-" if peak is None else "%.1f" % (peak / 2.0 ** 20)))
        self.w.writerow([op, backend, size, batch, "%.6f" % med, "%.6f" % p10, "%.6f" % p90, len(times),
                         int(nbytes), "%.0f" % flops, "%.4f" % gbps, "%.4f" % gflops,
                         "" if peak is None else int(peak)])
        self.f.flush()

    def close(self):
        self.f.close()


# --------------------------------------------------------------------------------------------
# The benchmark loop.
# --------------------------------------------------------------------------------------------

def bench(peer, args, device, modes_for):
    csv_path = os.path.normpath(args.csv or os.path.join(RESULTS_DIR, "%s-%s.csv" % (peer.csv_prefix, device.type)))
    cases = peer.cases(args, parse_int_list(args.batches))
    out = RowWriter(csv_path, args.append, max(len(c.size) for c in cases) if cases else 30)
    skipped = []
    try:
        for case in cases:
            built = peer.build(case, args, device, torch.float32, args.seed)
            fn, xs, g, consts = built.fn, built.inputs, built.g, built.consts
            xr = [x.detach().clone().requires_grad_(True) for x in xs]
            params = built.params()
            for mode, mfn, skip in modes_for(fn):
                backend = backend_name(mode, device, args)
                if mfn is None:
                    skipped.append("%s %s B=%d: %s" % (backend, case.size, case.batch, skip))
                    continue

                def forward(mfn=mfn):
                    with torch.no_grad():
                        return mfn(*xs, *consts)

                def clear_grads():
                    for t in xr + params:
                        t.grad = None

                # One training step: forward with autograd, loss = (out*g).sum(), backward into the
                # inputs and every parameter; .grad set to None first, as zero_grad(set_to_none) does.
                def train_step(mfn=mfn):
                    clear_grads()
                    out = mfn(*xr, *consts)
                    (out * g).sum().backward()

                for op, step in (("forward", forward), ("fwd+bwd", train_step)):
                    clear_grads()   # the previous row's gradients would count in this row's peak memory
                    try:
                        times, peak = time_calls(step, device, args.warmup, args.runs)
                    except Exception as e:  # e.g. torch.compile without a working toolchain, or OOM
                        skipped.append("%s %s %s B=%d: %s" % (backend, op, case.size, case.batch, short_error(e)))
                        print("  (skipped %s %s %s B=%d: %s)" % (op, backend, case.size, case.batch, short_error(e)))
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    nbytes, flops = case.work(op)
                    out.row("%s.%s" % (peer.op, op), backend, case.size, case.batch, times, nbytes, flops, peak)
            del built, fn, xs, g, xr, params
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        out.close()
    if skipped:
        print("skipped:")
        for s in skipped:
            print("  " + s)
    print("wrote %s" % csv_path)
    return 0


# --------------------------------------------------------------------------------------------
# --check: float32 (each mode) against float64 (eager), and float64 against the definition.
# --------------------------------------------------------------------------------------------

def forward_backward(fn, inputs, consts, g, input_names):
    """Output and [(name, gradient)] of (fn(*inputs) * g).sum() for the inputs and parameters."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    params = list(fn.named_parameters()) if isinstance(fn, torch.nn.Module) else []
    for _, t in params:
        t.grad = None
    out = fn(*xs, *consts)
    (out * g).sum().backward()
    grads = [(n, x.grad) for n, x in zip(input_names, xs)]
    grads += [(n.replace("_orig_mod.", ""), t.grad) for n, t in params]
    return out.detach(), grads


def to64(built):
    fn = copy.deepcopy(built.fn).double() if isinstance(built.fn, torch.nn.Module) else built.fn
    return Built(fn, [x.double() for x in built.inputs], built.g.double(),
                 [c.double() if torch.is_tensor(c) and c.is_floating_point() else c for c in built.consts],
                 built.input_names)


def check_against_float64(peer, args, device, modes_for):
    """Each mode in float32 (what is benchmarked) against eager float64 of the same instance:
    relative L2 error of the output, of each input's gradient, and the largest over the parameters'
    gradients (named). Where the peer has a definition, eager float64 is also compared with it
    (must agree to 1e-10: the peer computes the operator of the spec)."""
    cases = peer.cases(args, [args.check_batch])
    grad_tol = getattr(args, "check_grad_tol", None) or args.check_tol
    print("== check %s: float32 vs float64 (B=%d, seed=%d, tol %.0e, gradients %.0e)"
          % (peer.op, args.check_batch, args.seed, args.check_tol, grad_tol))
    ok = True
    for case in cases:
        built = peer.build(case, args, device, torch.float32, args.seed)
        b64 = to64(built)
        out64, grads64 = forward_backward(b64.fn, b64.inputs, b64.consts, b64.g, b64.input_names)
        ref = peer.definition(case, b64)
        if ref is not None:
            e = rel_l2(out64.cpu().numpy(), ref)
            good = e < 1e-10
            ok &= good
            print("  %-8s %s: float64 peer vs definition, rel L2 %.3e  %s" % ("eager64", case.size, e, "ok" if good else "FAIL"))
        for mode, mfn, skip in modes_for(built.fn):
            if mfn is None:
                print("  %-8s %s: skipped (%s)" % (mode, case.size, skip))
                continue
            try:
                reset_compiler()
                out, grads = forward_backward(mfn, built.inputs, built.consts, built.g, built.input_names)
            except Exception as e:  # torch.compile failing on this host is reported, not fatal
                print("  %-8s %s: skipped (%s)" % (mode, case.size, short_error(e)))
                continue
            errs = [("out", rel_l2(out.cpu().numpy(), out64.cpu().numpy()))]
            zeros = [(n, float(t.norm())) for n, t in grads if n in peer.exact_zero_grads]
            errs += [("d" + n, rel_l2(t.cpu().numpy(), t64.cpu().numpy()))
                     for (n, t), (_, t64) in zip(grads, grads64) if n not in peer.exact_zero_grads]
            n_in = len(built.inputs)
            shown = errs[:1 + n_in]
            if len(errs) > 1 + n_in:
                worst = max(errs[1 + n_in:], key=lambda ne: ne[1])
                shown.append(("dparams max (%s)" % worst[0][1:], worst[1]))
            good = (errs[0][1] < args.check_tol and all(e < grad_tol for _, e in errs[1:])
                    and all(z < args.check_tol for _, z in zeros))
            shown += [("|d%s| (exactly 0)" % n, z) for n, z in zeros]
            ok &= good
            print("  %-8s %s: rel L2 %s  %s" % (mode, case.size, "  ".join("%s %.2e" % ne for ne in shown),
                                                  "ok" if good else "FAIL"))
        del built, b64
    for n, why in sorted(peer.exact_zero_grads.items()):
        print("  |d%s| is an absolute norm: %s" % (n, why))
    print("check:", "PASS" if ok else "FAIL")
    return ok


def params_np(fn):
    """{name: float64 numpy array} of a module's parameters."""
    return {n: t.detach().cpu().double().numpy() for n, t in fn.named_parameters()}


# --------------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------------

def main(peer, argv=None):
    p = parser(peer)
    args = p.parse_args(argv)
    rc = peer.setup(args)
    if rc is not None:
        return rc
    device = select_device(args, p)
    banner(device, args)

    def modes_for(fn):
        reset_compiler()
        return make_modes(fn, args.no_compile)

    if args.check:
        return 0 if peer.run_check(args, device, modes_for) else 1
    return bench(peer, args, device, modes_for)


def run(peer_cls, doc, argv=None):
    """main() for a peer module: description and epilog from its docstring."""
    peer = peer_cls()
    parts = (doc or "").strip().split("\n\n", 1)
    peer.description = parts[0]
    peer.epilog = parts[1] if len(parts) > 1 else None
    return main(peer, argv)
