#!/usr/bin/env python3
"""Runs the PyTorch peer benchmarks one after another, into one CSV.

Usage:
    python3 benchmarks/python/peers.py [PEER ...] [peer options]

PEER is one or more of the <name>_peer.py scripts next to this one, by name (ban_attention,
ban_block, ban_pooling, compact_bilinear, full_bilinear, mcb_attention, mfb, mlb, mlb_attention,
stacked_attention, hierarchical_attention, ...; block.bootstrap's fusions: mutan, block,
tucker, block_tucker, linear_sum, concat_mlp); none means all
of them, in that order. The options go to
every selected peer unchanged, so with several peers use the ones they share (--device, --runs,
--warmup, --batches, --no-compile, --tf32, --seed, --check, --check-batch); a peer's own options
(--d, --blocks, --activation, ...) need that peer alone, e.g. `peers.py mfb --blocks 2`.
With --csv FILE the file is started afresh and every peer appends its rows to it; without it each
peer writes its own default file. Each peer runs in its own Python process, so one that fails
(an out-of-memory error, a compiler crash) does not stop the others; the exit code is 1 if any
failed (with --check: if any check failed). A peer that exits with code 3 (SKIPPED_RC: the peers of
block.bootstrap's fusions without a checkout of it, see bootstrap_fusions.py) is reported as skipped
and does not count as failed.

Examples:
    python3 benchmarks/python/peers.py --csv peer.csv
    python3 benchmarks/python/peers.py --check
    python3 benchmarks/python/peers.py mlb mfb --device cpu --runs 3 --warmup 1
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUFFIX = "_peer.py"
SKIPPED_RC = 3      # a peer that cannot run here (e.g. no block.bootstrap checkout) and says so: not a failure
# Every <name>_peer.py next to this file, one per operator (the operator's name in snake case, which
# OperatorsTest holds to io.bifuse.Operators): a new peer needs no edit here.
PEERS = sorted(f[:-len(SUFFIX)] for f in os.listdir(HERE) if f.endswith(SUFFIX))


def split_args(argv):
    names = []
    rest = list(argv)
    while rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        name = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
        name = name.replace("-", "_")
        if name not in PEERS:
            raise SystemExit("peers.py: unknown peer %r; expected some of: %s" % (name, ", ".join(PEERS)))
        names.append(name)
    return names or list(PEERS), rest


def csv_option(args):
    """The value of --csv / --csv=FILE in args, or None."""
    for i, a in enumerate(args):
        if a == "--csv" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--csv="):
            return a[len("--csv="):]
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    names, rest = split_args(argv)
    extra = []
    path = csv_option(rest)
    if path is not None and "--check" not in rest:
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()              # every peer appends; the first writes the header
        extra = ["--append"]
    results = []
    for name in names:
        cmd = [sys.executable, os.path.join(HERE, name + "_peer.py")] + rest + extra
        print("=== %s: %s" % (name, " ".join(cmd[1:])), flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd)
        results.append((name, rc, time.time() - t0))
    print("=== peers: " + ", ".join("%s=skipped (%.0f s)" % (name, t) if rc == SKIPPED_RC else "%s=%d (%.0f s)" % (name, rc, t)
                                    for name, rc, t in results))
    if path is not None and extra:
        print("combined CSV: %s" % path)
    return 1 if any(rc not in (0, SKIPPED_RC) for _, rc, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
