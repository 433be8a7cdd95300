#!/usr/bin/env bash
# Runs the CUDA kernels of cuda/*.cu on the CPU (no GPU needed). Each harness native-build/emu/<name>_emu.cpp
# compiles one operator's .cu file unchanged against the shim in native-build/emu/ (cuda_runtime.h: threads,
# barriers, __shared__, atomics), replays its Java class's launch sequence with CPU stand-ins for cuFFT
# (a naive DFT) and cuBLAS (a double-accumulating GEMM), and compares with the operator computed from its
# definition in double precision.
#
#   native-build/emulate-kernels.sh [NAME...]  build with g++ -std=c++20 -O2 -pthread and run every harness
#                                              (or only native-build/emu/NAME_emu.cpp)
#   EMU_SANITIZE=address|thread|undefined ...  the same under a sanitizer (thread catches missing
#                                              __syncthreads and non-atomic scatters as data races)
#   EMU_CXXFLAGS='-DEMU_KERNEL_SOURCE="/tmp/mutant.cu"' ...  run another copy of the kernels (e.g. a
#                                              deliberately broken one, to see that the harness catches it)
#
# Exit code 0 only when every case of every harness passes; the last line is "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/build/emu"
mkdir -p "$out"
flags=(-std=c++20 -O2 -pthread -Wall -Wextra -Wno-sign-compare -Wno-unknown-pragmas)  # #pragma unroll is for nvcc
suffix=""
if [ -n "${EMU_SANITIZE:-}" ]; then
  flags+=(-g -fno-omit-frame-pointer "-fsanitize=$EMU_SANITIZE")
  suffix="_$EMU_SANITIZE"
fi
if [ $# -gt 0 ]; then
  sources=(); for n in "$@"; do sources+=("$root/native-build/emu/${n}_emu.cpp"); done
else
  sources=("$root"/native-build/emu/*_emu.cpp)
fi
passed=0; failed=0
for src in "${sources[@]}"; do
  name=$(basename "$src" .cpp)
  bin="$out/$name$suffix"
  echo "== $name"
  if ! "${CXX:-g++}" "${flags[@]}" ${EMU_CXXFLAGS:-} -I "$root/native-build/emu" -I "$root/cuda" "$src" -o "$bin"; then
    echo "$name: emulator build failed"
    failed=$((failed + 1)); continue
  fi
  log="$out/$name$suffix.log"
  "$bin" | tee "$log"
  rc=${PIPESTATUS[0]}
  last=$(tail -n 1 "$log")
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    if [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then failed=$((failed + 1)); fi
  else
    echo "$name: exited $rc without a summary line"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
