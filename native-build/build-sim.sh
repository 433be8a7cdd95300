#!/usr/bin/env bash
# Builds the simulated CUDA device (native-build/sim) into build/sim: the stand-in driver libcuda.so.1,
# the kernel library libbifuse_simkernels.so (cuda/*.cu compiled for the host with g++), and the
# cuBLAS and cuFFT stand-ins libcublas.so.13 and libcufft.so.12, plus their self-tests. Needs g++ >= 12,
# python3 and the CUDA toolkit's headers (cuda.h); nvcc is optional: with it (and ptxas), each kernel's
# sm_90 register count and static shared memory are known and checked at every launch.
#
#   native-build/build-sim.sh [--jcuda-natives JAR] [--fatbin FILE] [--kernels DIR] [--out DIR]
#     --jcuda-natives  JCuda's natives jar (its libJCudaDriver's imports decide which cu* symbols the
#                      stand-in must export); default: the one in ~/.m2
#     --fatbin         the built fatbin (its .ptx beside it gives, through ptxas, each kernel's sm_90
#                      registers and static shared memory); default: java/target/generated-resources/...
#     --kernels DIR    the kernel sources (default cuda/; a mutant copy for mutation testing)
#     --out DIR        default build/sim
#     --kernels-only   build only the kernel library (a mutant's: see native-build/sim/mutate.sh)
# Exits 0 without building (saying why) when g++ or cuda.h is missing: GPU tests then skip with that reason.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/build/sim"
kernels="$root/cuda"
fatbin="$root/java/target/generated-resources/cuda/io/bifuse/cuda/bifuse.fatbin"
natives=""
only_kernels=0
while [ $# -gt 0 ]; do
  case "$1" in
    --jcuda-natives) natives=$2; shift 2 ;;
    --fatbin) fatbin=$2; shift 2 ;;
    --kernels) kernels=$(cd "$2" && pwd); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kernels-only) only_kernels=1; shift ;;
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
if [ -z "$natives" ] && [ $only_kernels = 0 ]; then
  natives=$(ls "${MAVEN_REPO:-$HOME/.m2/repository}"/org/jcuda/jcuda-natives/*/jcuda-natives-*-linux-x86_64.jar 2>/dev/null | sort | tail -n1 || true)
fi
[ $only_kernels = 1 ] || [ -f "$natives" ] || { echo "[bifuse] build-sim: JCuda's natives jar not found (pass --jcuda-natives)" >&2; exit 1; }
gen="$out/gen"
mkdir -p "$gen"
sim="$root/native-build/sim"
flags=(-std=c++20 -O2 -fPIC -pthread -fvisibility=hidden -Wall -Wextra -U_FORTIFY_SOURCE -I"$cuda_inc" -I"$sim")

if [ $only_kernels = 0 ]; then
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

fi

# 2. The kernel library: cuda/*.cu (or --kernels DIR) for the host, on the fiber shim, with each kernel's
#    sm_90 registers and static shared memory from the fatbin when nvcc built one.
res_args=()
ptxas=""
for c in "${CUDA_HOME:-}/bin/ptxas" "$(command -v ptxas || true)" /usr/local/cuda/bin/ptxas; do
  if [ -n "$c" ] && [ -x "$c" ]; then ptxas=$c; break; fi
done
ptx="${fatbin%.fatbin}.ptx"
if [ -n "$ptxas" ] && [ -s "$ptx" ] && [ "$kernels" = "$root/cuda" ]; then
  # The same PTX through the same ptxas as the fatbin's sm_90 code: each kernel's registers and smem.
  "$ptxas" -arch=sm_90 -v "$ptx" -o /dev/null 2> "$gen/resource-usage.txt"
  res_args=(-r "$gen/resource-usage.txt")
elif [ "$kernels" != "$root/cuda" ] && [ -s "$root/build/sim/gen/resource-usage.txt" ]; then
  res_args=(-r "$root/build/sim/gen/resource-usage.txt")  # a mutant copy: the originals' resources are close enough
fi
bash "$sim/gen-kernel-table.sh" -o "$gen" "${res_args[@]}" "$kernels" >/dev/null
echo '{ global: bifuse_sim_*; local: *; };' > "$gen/kernels.map"  # only the table's API, no libstdc++ copies
"$CXX" -std=c++20 -O2 -fPIC -shared -pthread -fvisibility=hidden -Wno-unknown-pragmas -U_FORTIFY_SOURCE \
  -I"$sim" -I"$kernels" -I"$root/cuda" -I"$gen" -I"$cuda_inc" -Wl,--version-script="$gen/kernels.map" \
  -o "$out/libbifuse_simkernels.so" "$sim/kernels.cpp"
# The module image Java loads when the jar has no fatbin (built without nvcc): the kernels' names.
{ echo "BIFUSE-SIM-MODULE"; perl -0777 -ne 's{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g; while (/extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(/g) { print "$1\n" }' "$kernels"/*.cu; } > "$out/bifuse.simmodule"
printf '\0' >> "$out/bifuse.simmodule"

if [ $only_kernels = 1 ]; then echo "[bifuse] simulated-device kernel library built: $out/libbifuse_simkernels.so (from $kernels)"; exit 0; fi

# 3. The cuBLAS and cuFFT stand-ins (each links the stand-in driver by its soname).
"$CXX" "${flags[@]}" -Wl,-soname,libcublas.so.13 -shared -o "$out/libcublas.so.13" "$sim/cublas.cpp" -L"$out" -l:libcuda.so.1
"$CXX" "${flags[@]}" -Wl,-soname,libcufft.so.12 -shared -o "$out/libcufft.so.12" "$sim/cufft.cpp" -L"$out" -l:libcuda.so.1

# 4. Their self-tests (run by native-build/bifuse test): hand-worked examples, not bifuse's Java code.
for t in cublas cufft kernels; do
  src="$sim/tests/${t}_selftest.cpp"
  [ -f "$src" ] || continue
  "$CXX" -std=c++20 -O2 -pthread -I"$cuda_inc" -I"$sim" -o "$out/${t}_selftest" "$src" \
    -L"$out" -l:libcublas.so.13 -l:libcufft.so.12 -l:libcuda.so.1 -ldl -Wl,--no-as-needed -Wl,-rpath,'$ORIGIN'
done
info=$(grep -o 'without ptxas resource data' "$gen/sim_kernel_table.inc" 2>/dev/null | head -n1 || true)
echo "[bifuse] simulated device built in $out: $(grep -c '^BIFUSE_SIM_KERNEL(' "$gen/sim_kernel_table.inc") kernels$([ -n "$info" ] && echo " ($info: register and static shared memory limits not checked)")"
