#!/usr/bin/env bash
# bifuse's float32 CPU backends against PyTorch on the CPU, on this machine, in one run, the same
# thread count for both (default: every processor; THREADS=N to choose), forward and training step
# at the sizes of bifuse's bench (the spec's widths, a smaller batch where a CPU training step would
# take minutes; BENCH_ARGS=--quick for small sizes, PEER_RUNS=N timed peer runs, default 5):
#
#   benchmarks/cpu-vs-torch.sh [OUT_PREFIX]     default benchmarks/results/<date>-cpu-fp32
#
# Writes OUT_PREFIX-bifuse.csv (bifuse's bench), OUT_PREFIX-torch-openblas.csv and
# OUT_PREFIX-torch-mkl.csv (the PyTorch peers, eager, under each PyTorch found: Debian's python3-torch
# runs whatever libblas.so.3 is, OpenBLAS once libopenblas0-pthread is installed; a pip wheel brings
# MKL), and OUT_PREFIX-compare.txt (compare.py, ratios to bifuse). Which BLAS each one ran is printed
# and kept in OUT_PREFIX-env.txt.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
prefix=${1:-benchmarks/results/$(date -u +%F)-cpu-fp32}
threads=${THREADS:-$(nproc)}
export BIFUSE_CPU_THREADS=$threads OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
mkdir -p "$(dirname "$prefix")"
env_file=$prefix-env.txt
{
  echo "date: $(date -u '+%F %T') UTC"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- java tools || echo ' (with uncommitted changes)')"
  echo "machine: $(nproc) processors, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads for both: $threads"
} > "$env_file"

# bifuse
native-build/bifuse tool bench ${BENCH_ARGS:-} --csv "$prefix-bifuse.csv" | tee "$prefix-bifuse.txt"
grep -m1 '^CPU: ' "$prefix-bifuse.txt" | sed 's/^CPU: /bifuse: /' >> "$env_file"

peer() { # $1 python, $2 label
  local py=$1 label=$2 out="$prefix-torch-$2.csv"
  "$py" -c 'import torch' 2>/dev/null || { echo "($py: no torch; $label peers not run)" | tee -a "$env_file"; return 0; }
  "$py" - <<'PY' | sed "s/^/torch-$label: /" | tee -a "$env_file"
import torch
torch.randn(4, 4) @ torch.randn(4, 4)
libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if any(k in l.lower() for k in ('blas', 'mkl'))})
print("torch %s, %d threads, BLAS libraries mapped: %s; MKL built in: %s" % (torch.__version__, torch.get_num_threads(),
      ", ".join(libs) or "none", torch.backends.mkl.is_available()))
PY
  rm -f "$out.tmp"
  # Each peer at the batches bifuse's CPU rows ran (some below the spec's: the suites say why), so
  # every row pairs; a peer whose op bifuse did not bench on the CPU is skipped.
  local f name batches
  for f in benchmarks/python/*_peer.py; do
    name=$(basename "$f" _peer.py)
    batches=$(python3 - "$prefix-bifuse.csv" "$name" <<'PY'
import csv, sys
op = "".join(w.capitalize() for w in sys.argv[2].split("_"))
rows = csv.DictReader(open(sys.argv[1]))
print(",".join(sorted({r["batch"] for r in rows if r["op"].split(".")[0] == op and r["backend"].startswith("bifuse-cpu")}, key=int)))
PY
)
    [ -n "$batches" ] || { echo "(no bifuse CPU rows for $name: its peer not run)"; continue; }
    echo "== $name peer ($label), B = $batches"
    "$py" "$f" --device cpu --no-compile --runs "${PEER_RUNS:-5}" --warmup 1 --batches "$batches" --csv "$out.tmp" --append \
      || echo "($name peer failed)"
  done
  sed "s/,torch-eager-cpu,/,torch-eager-cpu-$label,/" "$out.tmp" > "$out" && rm -f "$out.tmp"
}
peer /usr/bin/python3 openblas
peer "$(command -v python3)" mkl
python3 benchmarks/python/compare.py "$prefix-bifuse.csv" "$prefix"-torch-*.csv --baseline bifuse-cpu-fp32 | tee "$prefix-compare.txt"
