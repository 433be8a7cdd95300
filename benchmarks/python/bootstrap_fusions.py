"""block.bootstrap.pytorch's fusion modules, imported at run time, for the peers of the fusions bifuse ports
from it (mutan, block, tucker, block_tucker, linear_sum, concat_mlp; and mlb, mfb, compact_bilinear with
--bootstrap: its MLB, MFB, MFH and MCB; not a peer itself).

Those peers time block.bootstrap's own classes (block/models/networks/fusions/fusions.py of
Cadene/block.bootstrap.pytorch), as its models use them: fusion([x, y]), eval mode, float32. Nothing of
theirs is copied here; the checkout is found at run time:
    1. $BLOCK_BOOTSTRAP, a checkout root holding block/models/networks/fusions/fusions.py;
    2. else block_bootstrap/ next to this file (the GPU bundle's copy, native-build/bundle.sh).
<root>/block/models goes on sys.path and `from networks.fusions import fusions` imports the module
(networks/ imports nothing else from block or bootstrap). Without a checkout a peer prints one SKIPPED line
and exits with SKIPPED_RC (3), which peers.py reports as skipped, not failed.

legacy_torch() gives MCB's compactbilinearpooling.py (written for PyTorch 0.3/0.4) the two calls it makes that
later versions dropped or deprecated: torch.rfft / torch.irfft (removed in 1.8) and torch.addcmul's positional
value (deprecated, warns every call in 1.13).

Also here: the chunk sizes of Block and BlockTucker (written from their rule, so that the cost model and the
--check definitions do not lean on the module under test), the wrapper that calls a fusion with the list
[x, y], and the float64 weights of a built fusion for the definitions.
"""

import numbers
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc

ENV = "BLOCK_BOOTSTRAP"
HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.join(HERE, "block_bootstrap")
FUSIONS_PY = os.path.join("block", "models", "networks", "fusions", "fusions.py")
SKIPPED_RC = 3

_loaded = []


def find_root():
    """The block.bootstrap checkout to use, or None: $BLOCK_BOOTSTRAP, else block_bootstrap/ here."""
    env = os.environ.get(ENV)
    if env:
        if os.path.isfile(os.path.join(env, FUSIONS_PY)):
            return os.path.abspath(env)
        print("(%s=%s holds no %s)" % (ENV, env, FUSIONS_PY), file=sys.stderr)
    if os.path.isfile(os.path.join(BUNDLED, FUSIONS_PY)):
        return BUNDLED
    return None


def load():
    """block.bootstrap's fusions module (networks.fusions.fusions), or None where no checkout is found."""
    if _loaded:
        return _loaded[0]
    root = find_root()
    if root is None:
        return None
    models = os.path.join(root, "block", "models")
    if models not in sys.path:
        sys.path.insert(0, models)
    from networks.fusions import fusions
    _loaded.append(fusions)
    return fusions


def require(op):
    """For Peer.setup: None where the module loads; else prints the SKIPPED line and returns SKIPPED_RC."""
    if load() is not None:
        # block.bootstrap applies activations as getattr(F, name): F.tanh warns that it is deprecated, every call.
        warnings.filterwarnings("ignore", message=r"nn\.functional\.(tanh|sigmoid) is deprecated")
        return None
    print("SKIPPED %s: block.bootstrap.pytorch not found (set %s to a checkout of Cadene/block.bootstrap.pytorch)"
          % (op, ENV), flush=True)
    return SKIPPED_RC


def legacy_fft():
    """torch.rfft(x, 1) and torch.irfft(z, 1, signal_sizes=(n,)) as PyTorch < 1.8 defined them (used by MCB), where
    this torch has none: the last dimension, unnormalized forward, 1/n on the inverse, onesided, the complex
    values as a trailing dimension of 2 (re, im). Also what java/src/test/resources/io/bifuse/fusions/
    make_fixtures.py uses to write bifuse's MCB fixtures."""
    def rfft(x, signal_ndim):
        assert signal_ndim == 1
        return torch.view_as_real(torch.fft.rfft(x, dim=-1))

    def irfft(z, signal_ndim, signal_sizes):
        assert signal_ndim == 1 and len(signal_sizes) == 1
        return torch.fft.irfft(torch.view_as_complex(z.contiguous()), n=signal_sizes[0], dim=-1)

    if not hasattr(torch, "rfft"):
        torch.rfft, torch.irfft = rfft, irfft


def legacy_addcmul():
    """torch.addcmul(input, value, tensor1, tensor2), the positional-value form MCB's compactbilinearpooling.py
    calls: PyTorch 1.13 still takes it but warns (silenced here); only where calling it raises TypeError (a torch
    that dropped it) is torch.addcmul wrapped, to pass that value as value=."""
    warnings.filterwarnings("ignore", message=r"This overload of addcmul is deprecated")
    if getattr(torch.addcmul, "_bifuse_legacy", False):
        return
    t = torch.zeros(1)
    try:
        torch.addcmul(t, -1, t, t)
        return
    except TypeError:
        pass
    addcmul = torch.addcmul

    def legacy(input, *args, **kwargs):
        if len(args) == 3 and isinstance(args[0], numbers.Number) and not torch.is_tensor(args[0]):
            value, t1, t2 = args
            return addcmul(input, t1, t2, value=value, **kwargs)
        return addcmul(input, *args, **kwargs)

    legacy._bifuse_legacy = True
    torch.addcmul = legacy


def legacy_torch():
    """Both shims above, for block.bootstrap's MCB."""
    legacy_fft()
    legacy_addcmul()


def chunk_sizes(dim, chunks):
    """The chunk widths Block and BlockTucker split their dim units into (block.bootstrap's get_sizes_list):
    s = ceil(dim / chunks); if (chunks - 1) chunks of s leave r = dim - (chunks - 1) s >= 0 units, those
    chunks and then r; otherwise n = chunks*s - dim chunks are one narrower: (chunks - n) of s, then n of s - 1."""
    s = -(-dim // chunks)
    rest = dim - (chunks - 1) * s
    if rest >= 0:
        return [s] * (chunks - 1) + [rest]
    n = chunks * s - dim
    return [s] * (chunks - n) + [s - 1] * n


def width_one_chunks(sizes, names):
    """{parameter name: why} for Peer.exact_zero_grads: a chunk of width 1 is normalized to +-1 whatever its
    value, so the gradients of the parameters that only feed it (names(c) for chunk c) are exactly 0."""
    return {n: "chunk %d is 1 wide: l2 of one value is +-1, a constant" % c
            for c, s in enumerate(sizes) if s == 1 for n in names(c)}


def linear_params(n_in, n_out):
    """Weight and bias floats of nn.Linear(n_in, n_out)."""
    return (n_in + 1) * n_out


class ListCall(nn.Module):
    """fusion([x, y]), as block.bootstrap's models call their fusions; the peers' Built.fn calls fn(x, y).
    Its parameters are the fusion's, under fusion.<name>."""

    def __init__(self, fusion):
        super().__init__()
        self.fusion = fusion

    def forward(self, x, y):
        return self.fusion([x, y])


def build(fusion_factory, case, dx, dy, out, device, dtype, seed, n_params, sizes=None):
    """pc.Built of block.bootstrap's fusion: fusion_factory(fusions module) built under torch.manual_seed(seed)
    (its own initialization), in eval mode, on device in dtype; x: B x dx, y: B x dy and the upstream
    gradient g: B x out from a generator seeded seed + 1. n_params (the closed form of the cost model) must be
    the module's own count, and sizes (where given) its chunk widths."""
    fusions = load()
    torch.manual_seed(seed)
    fusion = fusion_factory(fusions)
    count = sum(p.numel() for p in fusion.parameters())
    if count != n_params or getattr(fusion, "n_params", count) != n_params:
        raise SystemExit("%s: the cost model counts %d parameters, the module has %d"
                         % (type(fusion).__name__, n_params, count))
    if sizes is not None and list(fusion.sizes_list) != list(sizes):
        raise SystemExit("%s: chunk sizes %s, the module's are %s" % (type(fusion).__name__, sizes, fusion.sizes_list))
    model = ListCall(fusion).to(device, dtype).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(case.batch, dx, generator=gen, dtype=dtype).to(device)
    y = torch.randn(case.batch, dy, generator=gen, dtype=dtype).to(device)
    g = torch.randn(case.batch, out, generator=gen, dtype=dtype).to(device)
    return pc.Built(model, (x, y), g, input_names=("x", "y"))


def weights(built):
    """{state-dict name (the fusion's own, without fusion.): float64 numpy array} of a built fusion."""
    return {n: t.detach().cpu().double().numpy() for n, t in built.fn.fusion.state_dict().items()}


def inputs(built):
    """x and y of a built fusion as float64 numpy arrays."""
    return [t.detach().cpu().double().numpy() for t in built.inputs]


def affine(w, name, v):
    """nn.Linear `name` of the state dict w applied to one sample v: W v + b."""
    return w[name + ".weight"] @ v + w[name + ".bias"]


def bilinear(w, name, a, b):
    """nn.Bilinear `name` applied to one sample: z_k = a^T W_k b + bias_k (weight: out x len(a) x len(b))."""
    return (w[name + ".weight"] @ b) @ a + w[name + ".bias"]


def relu_np(v):
    return np.maximum(v, 0.0)
