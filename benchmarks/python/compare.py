#!/usr/bin/env python3
"""Compare benchmark CSVs from bifuse and from the PyTorch peer, side by side.

Every input CSV has the header
    op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops
(bifuse's bench writes backends such as bifuse-cuda, bifuse-cpu, bifuse-reference; the peer writes
torch-eager-<dev> and torch-compile-<dev>). For each (op, size, batch) one table lists every backend's
median, GB/s and GFLOP/s, and the ratio of its median to the baseline's (default bifuse-cuda):
ratio > 1 means the baseline (bifuse) is faster. Rows missing on either side are shown as '-'.
Both sides call the training step (forward, then backward) CompactBilinear.fwd+bwd.

Usage:
    python3 benchmarks/python/compare.py bifuse.csv peer-cuda.csv [more.csv ...] [--baseline bifuse-cpu]

Standard library only.
"""

import argparse
import csv
import sys

# Older peer CSVs named the training step "CompactBilinear.backward"; read them under today's name.
OP_ALIASES = {"CompactBilinear.backward": "CompactBilinear.fwd+bwd"}

REQUIRED = ["op", "backend", "size", "batch", "median_ms", "gbps", "gflops"]


def to_float(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN counts as missing


def read_rows(paths):
    """{(op, size, batch): {backend: row}}, the order in which groups and backends first appear."""
    groups = {}
    backends = []
    for path in paths:
        try:
            f = open(path, newline="")
        except OSError as e:
            print("warning: cannot read %s: %s" % (path, e), file=sys.stderr)
            continue
        with f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                print("warning: %s: skipped, missing columns %s" % (path, ", ".join(missing)), file=sys.stderr)
                continue
            for line, row in enumerate(reader, start=2):
                if not row.get("op") or not row.get("backend"):
                    print("warning: %s:%d: skipped, no op/backend" % (path, line), file=sys.stderr)
                    continue
                op = row["op"].strip()
                key = (OP_ALIASES.get(op, op), (row.get("size") or "").strip(), (row.get("batch") or "").strip())
                backend = row["backend"].strip()
                group = groups.setdefault(key, {})
                if backend in group:
                    print("warning: %s:%d: second row for %s %s %s batch %s; using this one"
                          % (path, line, backend, key[0], key[1], key[2]), file=sys.stderr)
                group[backend] = row
                if backend not in backends:
                    backends.append(backend)
    return groups, backends


def backend_order(backend, baseline, first_seen):
    """Baseline first, then other bifuse backends, then torch ones, then the rest."""
    if backend == baseline:
        rank = 0
    elif backend.startswith("bifuse-"):
        rank = 1
    elif backend.startswith("torch-"):
        rank = 2
    else:
        rank = 3
    return rank, first_seen.index(backend)


def batch_key(b):
    try:
        return 0, int(b)
    except ValueError:
        return 1, b


def fmt(v, spec):
    return "-" if v is None else spec % v


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare bifuse and PyTorch peer benchmark CSVs.")
    p.add_argument("csv", nargs="+", help="CSV files with the common header")
    p.add_argument("--baseline", default="bifuse-cuda",
                   help="backend the ratios are taken against (default bifuse-cuda)")
    args = p.parse_args(argv)

    groups, backends = read_rows(args.csv)
    if not groups:
        print("no rows found", file=sys.stderr)
        return 1

    # Groups: ops and sizes in order of first appearance, then batch numerically.
    op_seen, size_seen = [], []
    for op, size, batch in groups:
        if op not in op_seen:
            op_seen.append(op)
        if size not in size_seen:
            size_seen.append(size)
    keys = sorted(groups, key=lambda k: (op_seen.index(k[0]), size_seen.index(k[1]), batch_key(k[2])))

    ratio_head = "x %s" % args.baseline
    line = "  %-22s %12s %10s %10s %14s"
    missing_baseline = 0
    for op, size, batch in keys:
        rows = groups[(op, size, batch)]
        base = to_float(rows[args.baseline]["median_ms"]) if args.baseline in rows else None
        if base is None or base <= 0:
            base = None
            missing_baseline += 1
        print("%s  [%s]  batch=%s" % (op, size, batch))
        print(line % ("backend", "median_ms", "GB/s", "GFLOP/s", ratio_head))
        for backend in sorted(rows, key=lambda b: backend_order(b, args.baseline, backends)):
            row = rows[backend]
            med = to_float(row.get("median_ms"))
            if backend == args.baseline:
                ratio = "1 (baseline)" if med is not None else "-"
            elif med is None or base is None:
                ratio = "-"
            else:
                ratio = "%.2f" % (med / base)
            print(line % (backend, fmt(med, "%.4f"), fmt(to_float(row.get("gbps")), "%.2f"),
                          fmt(to_float(row.get("gflops")), "%.2f"), ratio))
        if args.baseline not in rows:
            print("  (no %s row for this size)" % args.baseline)
        print()
    print("ratio = backend median / %s median; > 1 means %s is faster." % (args.baseline, args.baseline))
    if missing_baseline:
        print("%d of %d groups have no usable %s row." % (missing_baseline, len(keys), args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
