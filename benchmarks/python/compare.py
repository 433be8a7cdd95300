#!/usr/bin/env python3
"""Compare benchmark CSVs from bifuse and from the PyTorch peer, side by side.

Every input CSV has the header
    op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops[,peak_mem_bytes]
(bifuse's bench writes backends such as bifuse-cuda-fp32, bifuse-cpu-fp32; the peers write
torch-eager-<dev> and torch-compile-<dev>; the trailing peak_mem_bytes column is empty on CPU).
Any further columns are ignored. For each (op, size, batch) one table lists every backend's median,
GB/s and GFLOP/s, its peak device memory in MiB when some row of the table has one, and the ratio
of its median to the baseline's (default bifuse-cuda-fp32): ratio > 1 means the baseline (bifuse) is
faster. Rows missing on either side are shown as '-'. Rows pair on the exact op name and size
string: both sides call the training step (forward, then backward) <Op>.fwd+bwd, for every
operator (the op names are the descriptors' names, io.bifuse.Operators; nothing here lists them).

Usage:
    python3 benchmarks/python/compare.py bifuse.csv peer-cuda.csv [more.csv ...] [--baseline bifuse-cpu-fp32]

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


def summary(groups, keys, backends, baseline):
    """One table for everything: a line per (op, size, batch) with the baseline's median and every
    other backend's ratio to it (only where the baseline has a row)."""
    others = sorted((b for b in backends if b != baseline), key=lambda b: backend_order(b, baseline, backends))
    lines = []
    for op, size, batch in keys:
        rows = groups[(op, size, batch)]
        base = to_float(rows[baseline]["median_ms"]) if baseline in rows else None
        if base is None or base <= 0:
            continue
        cells = []
        for b in others:
            med = to_float(rows[b].get("median_ms")) if b in rows else None
            cells.append("-" if med is None else "%.2f" % (med / base))
        lines.append(("%s [%s] B=%s" % (op, size, batch), "%.4f" % base, cells))
    if not lines:
        return
    used = [i for i, _ in enumerate(others) if any(l[2][i] != "-" for l in lines)]
    w = max(len(l[0]) for l in lines)
    widths = [max(8, len(others[i])) for i in used]
    print("Summary: ratio to %s (> 1: %s faster)" % (baseline, baseline))
    print("  %-*s %12s  %s" % (w, "op [size] batch", baseline + " ms", "  ".join("%*s" % (wd, others[i]) for i, wd in zip(used, widths))))
    for name, base, cells in lines:
        print("  %-*s %12s  %s" % (w, name, base, "  ".join("%*s" % (wd, cells[i]) for i, wd in zip(used, widths))))
    print()


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare bifuse and PyTorch peer benchmark CSVs.")
    p.add_argument("csv", nargs="+", help="CSV files with the common header")
    p.add_argument("--baseline", default="bifuse-cuda-fp32",
                   help="backend the ratios are taken against (default bifuse-cuda-fp32)")
    p.add_argument("--no-summary", action="store_true",
                   help="leave out the closing one-line-per-size table of ratios")
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
    line = "  %-24s %12s %10s %10s %14s"
    mem_line = line + " %10s"
    missing_baseline = 0
    any_mem = False
    for op, size, batch in keys:
        rows = groups[(op, size, batch)]
        base = to_float(rows[args.baseline]["median_ms"]) if args.baseline in rows else None
        if base is None or base <= 0:
            base = None
            missing_baseline += 1
        # The memory column only where a row has a number (bifuse's bench and CPU peers have none).
        with_mem = any(to_float(r.get("peak_mem_bytes")) is not None for r in rows.values())
        any_mem |= with_mem
        print("%s  [%s]  batch=%s" % (op, size, batch))
        head = ("backend", "median_ms", "GB/s", "GFLOP/s", ratio_head)
        print(mem_line % (head + ("peak MiB",)) if with_mem else line % head)
        for backend in sorted(rows, key=lambda b: backend_order(b, args.baseline, backends)):
            row = rows[backend]
            med = to_float(row.get("median_ms"))
            if backend == args.baseline:
                ratio = "1 (baseline)" if med is not None else "-"
            elif med is None or base is None:
                ratio = "-"
            else:
                ratio = "%.2f" % (med / base)
            cells = (backend, fmt(med, "%.4f"), fmt(to_float(row.get("gbps")), "%.2f"),
                     fmt(to_float(row.get("gflops")), "%.2f"), ratio)
            if with_mem:
                mem = to_float(row.get("peak_mem_bytes"))
                print(mem_line % (cells + (fmt(None if mem is None else mem / 2.0 ** 20, "%.1f"),)))
            else:
                print(line % cells)
        if args.baseline not in rows:
            print("  (no %s row for this size)" % args.baseline)
        print()
    if not args.no_summary:
        summary(groups, keys, backends, args.baseline)
    print("ratio = backend median / %s median; > 1 means %s is faster." % (args.baseline, args.baseline))
    if any_mem:
        print("peak MiB (where shown) = torch.cuda.max_memory_allocated over the timed calls (peers), or the most device memory\n"
              "bifuse's own buffers held over them (DeviceBuffer.peakBytes: cuBLAS/cuFFT internal workspaces not counted);\n"
              "inputs, outputs and parameters included on both sides.")
    if missing_baseline:
        print("%d of %d groups have no usable %s row." % (missing_baseline, len(keys), args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
