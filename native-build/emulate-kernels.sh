#!/usr/bin/env bash
# Runs the CUDA kernels of cuda/CompactBilinear.cu on the CPU (no GPU needed): compiles the .cu file
# unchanged against the shim in native-build/emu/ (cuda_runtime.h: threads, barriers, __shared__, atomics),
# replays CompactBilinearCuda.java's launch sequence with a naive DFT standing in for cuFFT, and compares
# with compact bilinear pooling computed from its definition in double precision.
#
#   native-build/emulate-kernels.sh            build with g++ -std=c++20 -O2 -pthread and run
#   EMU_SANITIZE=address|thread|undefined ...  the same under a sanitizer (thread: ~70 s, catches missing
#                                              __syncthreads and non-atomic scatters as data races)
#   EMU_CXXFLAGS='-DEMU_KERNEL_SOURCE="/tmp/mutant.cu"' ...  run another copy of the kernels (e.g. a
#                                              deliberately broken one, to see that the harness catches it)
#
# Exit code 0 only when every case passes; the last line is "N passed, M failed".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/build/emu"
mkdir -p "$out"
flags=(-std=c++20 -O2 -pthread -Wall -Wextra -Wno-sign-compare)
bin="$out/compact_bilinear_emu"
if [ -n "${EMU_SANITIZE:-}" ]; then
  flags+=(-g -fno-omit-frame-pointer "-fsanitize=$EMU_SANITIZE")
  bin="$out/compact_bilinear_emu_$EMU_SANITIZE"
fi
"${CXX:-g++}" "${flags[@]}" ${EMU_CXXFLAGS:-} -I "$root/native-build/emu" "$root/native-build/emu/compact_bilinear_emu.cpp" -o "$bin" || {
  echo "emulator build failed"
  echo "0 passed, 1 failed"
  exit 1
}
exec "$bin"
