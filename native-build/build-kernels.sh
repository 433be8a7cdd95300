#!/usr/bin/env bash
# Called by Maven (java module, generate-resources): builds cuda/*.cu into bifuse.fatbin + bifuse.ptx
# in the directory given as $1, through CMake. Without nvcc or cmake it says so once and succeeds:
# the library then builds without kernels and every op runs on the CPU backend.
set -euo pipefail
out=${1:?usage: build-kernels.sh OUTPUT_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/cuda"

nvcc=""
for cand in "${CUDA_HOME:-}/bin/nvcc" "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc /usr/local/cuda-13.0/bin/nvcc; do
  if [ -n "$cand" ] && [ -x "$cand" ]; then nvcc=$cand; break; fi
done
if [ "${BIFUSE_SKIP_KERNELS:-0}" = 1 ] || [ -z "$nvcc" ] || ! command -v cmake >/dev/null; then
  why="nvcc not found"
  [ "${BIFUSE_SKIP_KERNELS:-0}" = 1 ] && why="BIFUSE_SKIP_KERNELS=1"
  command -v cmake >/dev/null || why="cmake not found"
  echo "[bifuse] CUDA kernels NOT built ($why): the jar has no fatbin and every op runs on the CPU backend."
  echo "[bifuse] To build them, install the CUDA toolkit (nvcc >= 12) and CMake >= 3.20, or set CUDA_HOME."
  rm -f "$out/bifuse.fatbin" "$out/bifuse.ptx"
  exit 0
fi
cmake -S "$root" -B "$build" -DBIFUSE_KERNEL_OUT="$out" -DNVCC_EXECUTABLE="$nvcc" >/dev/null
rm -f "$out/bifuse.fatbin" "$out/bifuse.ptx"
cmake --build "$build"
test -s "$out/bifuse.fatbin" && test -s "$out/bifuse.ptx" || { echo "[bifuse] kernel build failed" >&2; exit 1; }
echo "[bifuse] CUDA kernels built: $(du -h "$out/bifuse.fatbin" | cut -f1) fatbin ($nvcc)"
