#!/usr/bin/env bash
# Builds the simulated CUDA device (native-build/sim) into build/sim: the stand-in driver libcuda.so.1,
# the kernel library libbifuse_simkernels.so (cuda/*.cu compiled for the host with g++), and the
# cuBLAS and cuFFT stand-ins libcublas.so.13 and libcufft.so.12, plus their self-tests. Needs g++ >= 12,
# python3 and the CUDA toolkit's headers (cuda.h); nvcc is optional: with it, each kernel's sm_90
# register count and static shared memory (from the fatbin, cuobjdump) are checked at every launch.
#
#   native-build/build-sim.sh [--jcuda-natives JAR] [--fatbin FILE] [--kernels DIR] [--out DIR]
#     --jcuda-natives  JCuda's natives jar (its libJCudaDriver's imports decide which cu* symbols the
#                      stand-in must export); default: the one in ~/.m2
#     --fatbin         the built fatbin, for the resource table; default: java/target/generated-resources/...
#     --kernels DIR    the kernel sources (default cuda/; a mutant copy for mutation testing)
#     --out DIR        default build/sim
# Exits 0 without building (saying why) when g++ or cuda.h is missing: GPU tests then skip with that reason.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/build/sim"
kernels="$root/cuda"
fatbin="$root/java/target/generated-resources/cuda/io/bifuse/cuda/bifuse.fatbin"
natives=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jcuda-natives) natives=$2; shift 2 ;;
    --fatbin) fatbin=$2; shift 2 ;;
    --kernels) kernels=$(cd "$2" && pwd); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
CXX=${CXX:-g++}
cuda_inc=""
for c in "${CUDA_HOME:-}/include" /usr/local/cuda/include /usr/local/cuda-13.0/include /usr/include; do
  if [ -f "$c/cuda.h" ]; then cuda_inc=$c; break; fi
done
why=""
command -v "$CXX" >/dev/null || why="no C++ compiler ($CXX)"
command -v python3 >/dev/null || why="no python3"
[ -n "$cuda_inc" ] || why="no cuda.h (install the CUDA toolkit's headers or set CUDA_HOME)"
if [ -n "$why" ]; then
  echo "[bifuse] simulated device NOT built ($why): GPU tests will skip."
  exit 0
fi
if [ -z "$natives" ]; then
  natives=$(ls "${MAVEN_REPO:-$HOME/.m2/repository}"/org/jcuda/jcuda-natives/*/jcuda-natives-*-linux-x86_64.jar 2>/dev/null | sort | tail -n1 || true)
fi
[ -f "$natives" ] || { echo "[bifuse] build-sim: JCuda's natives jar not found (pass --jcuda-natives)" >&2; exit 1; }
gen="$out/gen"
mkdir -p "$gen"
sim="$root/native-build/sim"
flags=(-std=c++20 -O2 -fPIC -pthread -fvisibility=hidden -Wall -Wextra -U_FORTIFY_SOURCE -I"$cuda_inc" -I"$sim")

# 1. The driver, and a stub for every other cu* symbol JCuda's driver library imports.
(cd "$gen" && rm -rf jcuda && mkdir jcuda && cd jcuda && python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); [z.extract(n) for n in z.namelist() if 'libJCudaDriver' in n and n.endswith('.so')]" "$natives")
jdriver=$(find "$gen/jcuda" -name 'libJCudaDriver*.so' | head -n1)
nm -D --undefined-only "$jdriver" > "$gen/jcuda-imports.txt"
"$CXX" "${flags[@]}" -c "$sim/driver.cpp" -o "$gen/driver.o"
nm --defined-only "$gen/driver.o" | awk '$2=="T"{print $3}' > "$gen/driver-defined.txt"
printf '#define __CUDA_API_VERSION_INTERNAL 1\n#include <cuda.h>\n#include <cudaProfiler.h>\n#include <cudaGL.h>\n' \
  | "$CXX" -x c++ -E -I"$cuda_inc" -I"$sim/gl" - > "$gen/driver-headers.i"
python3 "$sim/gen-driver-stubs.py" "$gen/jcuda-imports.txt" "$gen/driver-defined.txt" "$gen/driver-headers.i" "$gen/driver_stubs.gen.cpp" >/dev/null
"$CXX" "${flags[@]}" -Wno-unused-parameter -I"$sim/gl" -c "$gen/driver_stubs.gen.cpp" -o "$gen/driver_stubs.o"
"$CXX" -shared -pthread -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" "$gen/driver.o" "$gen/driver_stubs.o" -ldl
missing=$(comm -23 <(awk '/ cu/{print $2}' "$gen/jcuda-imports.txt" | sed 's/@.*//' | sort -u) <(nm -D --defined-only "$out/libcuda.so.1" | awk '{print $3}' | sort -u))
[ -z "$missing" ] || { echo "[bifuse] build-sim: the stand-in driver lacks: $missing" >&2; exit 1; }
echo "[bifuse] simulated device: libcuda.so.1 ($(grep -c ' cu' "$gen/jcuda-imports.txt") JCuda imports exported)"
