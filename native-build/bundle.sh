#!/usr/bin/env bash
# Makes a self-contained folder that runs bifuse's GPU tests, compute-sanitizer and the benchmarks on
# a Linux x86-64 host that has an NVIDIA driver, the CUDA toolkit libraries (libcufft, libcublas,
# compute-sanitizer) and Python/PyTorch, but no JDK and no network. The folder holds:
#   jre/       a jlink'd Java 25 runtime (only the modules the jars need)
#   lib/       bifuse, its tests, the JMH benchmarks, JCuda (driver natives only), JMH and the
#              JUnit Platform console launcher
#   python/    the PyTorch peers, their runner and compare.py (benchmarks/python/*.py)
#   run        the launcher: gpu-tests, sanitize, check, bench, main, jmh, peer, compare, env
#   README.txt
# It builds the project first (native-build/bifuse mvn package; with nvcc present the jar carries
# the CUDA kernels), and fails if the folder comes out over 60 MiB.
#
#   native-build/bundle.sh [DIR]     DIR defaults to .bundle at the repository root (git-ignored)
#
# Then carry DIR to the GPU host (with the repository, or alone: tar -C .bundle -czf bundle.tgz .)
# and run, for example:
#   .bundle/run env                  Java version, GPUs, what bifuse found
#   .bundle/run gpu-tests            the whole test suite (JUnit reports under $OUT or .bundle/out)
#   .bundle/run sanitize memcheck    the gpu-tagged CUDA tests under compute-sanitizer
#   .bundle/run main                 check, then bench;  .bundle/run jmh Ops.gpu -p gpuCase=ID (ids: jmh -lp)
# Environment: BIFUSE_BUNDLE_NO_BUILD=1 reuses the jars already under */target;
# BIFUSE_BUNDLE_ALLOW_NO_KERNELS=1 accepts a jar built without nvcc (its GPU tests would all skip).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=${1:-$root/.bundle}
case "$bundle" in /*) ;; *) bundle=$PWD/$bundle ;; esac   # relative to where it was called from
cd "$root"
limit_mib=60

say() { echo "[bundle] $*"; }
die() { echo "[bundle] error: $*" >&2; exit 1; }

# --- a JDK >= 25 (same search order as native-build/bifuse) ---------------------------------------
java_feature() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1
}
find_jdk() {
  local dirs=() d v
  [ -n "${JAVA_HOME:-}" ] && dirs+=("$JAVA_HOME")
  command -v javac >/dev/null && dirs+=("$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")")
  for d in /usr/lib/jvm/* /opt/java/* /opt/jdk* "$HOME"/.sdkman/candidates/java/*; do [ -d "$d" ] && dirs+=("$d"); done
  for d in "${dirs[@]}"; do
    [ -x "$d/bin/jlink" ] && [ -x "$d/bin/jdeps" ] && [ -x "$d/bin/jar" ] || continue
    v=$(java_feature "$d/bin/java")
    if [ -n "$v" ] && [ "${v%%.*}" -ge 25 ] 2>/dev/null; then echo "$d"; return 0; fi
  done
  return 1
}
JDK=$(find_jdk) || die "no JDK >= 25 with jlink found (JAVA_HOME, javac on PATH, /usr/lib/jvm/*); see native-build/bifuse"
say "JDK $JDK"

# --- the output folder: only ever delete one this script made -------------------------------------
marker=.bifuse-bundle
if [ -e "$bundle" ]; then
  if [ -f "$bundle/$marker" ] || [ -z "$(ls -A "$bundle")" ]; then
    rm -rf "$bundle"
  else
    die "$bundle exists and is not a bifuse bundle (no $marker in it): not touching it"
  fi
fi
mkdir -p "$bundle"/lib "$bundle"/python
bundle=$(cd "$bundle" && pwd)
touch "$bundle/$marker"

# --- build -----------------------------------------------------------------------------------------
if [ "${BIFUSE_BUNDLE_NO_BUILD:-0}" = 1 ]; then
  say "BIFUSE_BUNDLE_NO_BUILD=1: using the jars already built"
else
  say "building: native-build/bifuse mvn -q -B -DskipTests package"
  "$root/native-build/bifuse" mvn -q -B -DskipTests package
fi
version=$(sed -n 's:^  <version>\(.*\)</version>.*:\1:p' pom.xml | head -n1)
main_jar=java/target/bifuse-$version.jar
tests_jar=java/target/bifuse-$version-tests.jar
tools_jar=tools/target/bifuse-tools-$version.jar
tools_tests_jar=tools/target/bifuse-tools-$version-tests.jar
bench_jar=benchmarks/target/bifuse-benchmarks-$version.jar
for f in "$main_jar" "$tests_jar" "$tools_jar" "$tools_tests_jar" "$bench_jar"; do [ -s "$f" ] || die "$f is missing (did the build run?)"; done
if "$JDK/bin/jar" tf "$main_jar" | grep -q 'bifuse\.fatbin$'; then
  say "$main_jar carries the CUDA kernels (bifuse.fatbin)"
elif [ "${BIFUSE_BUNDLE_ALLOW_NO_KERNELS:-0}" = 1 ]; then
  say "WARNING: $main_jar has no bifuse.fatbin (built without nvcc): every GPU test will skip"
else
  die "$main_jar has no bifuse.fatbin: the kernels were not built (no nvcc/cmake?). Install the CUDA toolkit, or set BIFUSE_BUNDLE_ALLOW_NO_KERNELS=1"
fi

# --- jars ------------------------------------------------------------------------------------------
# JCuda's natives jar carries every JNI library it has (24 MB of them for the PTX compiler); bifuse
# only calls the driver API, whose library JCuda loads from the class path resource
# /lib/libJCudaDriver-<version>-linux-x86_64.so. Keep that, the manifest and the Maven metadata.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repack_natives() { # $1: the natives jar, $2: where to write the slim one
  local tmp=$work/natives
  rm -rf "$tmp" "$tmp.MF"; mkdir -p "$tmp"
  (cd "$tmp" && "$JDK/bin/jar" xf "$root/$1")
  ls "$tmp"/lib/libJCudaDriver-*-linux-x86_64.so >/dev/null 2>&1 || die "$1 has no lib/libJCudaDriver-*-linux-x86_64.so"
  find "$tmp/lib" -type f ! -name 'libJCudaDriver-*' -delete
  local args=(--create --file "$2")
  if [ -f "$tmp/META-INF/MANIFEST.MF" ]; then
    mv "$tmp/META-INF/MANIFEST.MF" "$tmp.MF"; args+=(--manifest "$tmp.MF")
  else
    args+=(--no-manifest)
  fi
  args+=(-C "$tmp" lib)
  [ -d "$tmp/META-INF/maven" ] && args+=(-C "$tmp" META-INF/maven)
  "$JDK/bin/jar" "${args[@]}"
}
cp "$main_jar" "$tests_jar" "$tools_jar" "$tools_tests_jar" "$bench_jar" "$bundle/lib/"
for j in java/target/lib/*.jar tools/target/lib/*.jar benchmarks/target/lib/*.jar; do
  name=$(basename "$j")
  [ -e "$bundle/lib/$name" ] && continue   # bifuse and JCuda appear in both lists
  case "$name" in
    jcuda-natives-*) repack_natives "$j" "$bundle/lib/$name"
                     say "$name: $(du -k "$j" | cut -f1) KiB -> $(du -k "$bundle/lib/$name" | cut -f1) KiB (driver library only)" ;;
    *) cp "$j" "$bundle/lib/" ;;
  esac
done
ls "$bundle"/lib/jcuda-natives-*.jar >/dev/null 2>&1 || die "no jcuda-natives jar under java/target/lib"
"$JDK/bin/jar" tf "$bundle"/lib/jcuda-natives-*.jar | grep -q '^lib/libJCudaDriver-.*-linux-x86_64\.so$' \
  || die "the repacked jcuda-natives jar lost lib/libJCudaDriver-*.so"

# The JUnit Platform console launcher matching the project's JUnit (5.x.y -> platform 1.x.y).
junit=$(sed -n 's:.*<junit.version>\(.*\)</junit.version>.*:\1:p' pom.xml | head -n1)
[ -n "$junit" ] || die "no <junit.version> in pom.xml"
case "$junit" in 5.*) platform=1.${junit#5.} ;; *) platform=$junit ;; esac
platform=${JUNIT_PLATFORM_VERSION:-$platform}
say "JUnit $junit: junit-platform-console-standalone $platform"
"$root/native-build/bifuse" mvn -q -B -N dependency:copy \
  -Dartifact="org.junit.platform:junit-platform-console-standalone:$platform" -DoutputDirectory="$bundle/lib"
[ -s "$bundle/lib/junit-platform-console-standalone-$platform.jar" ] || die "junit-platform-console-standalone-$platform.jar was not fetched"

# --- Java runtime ----------------------------------------------------------------------------------
# Modules: every module the jars use directly (jdeps --list-deps: unlike --print-module-deps it does
# not fold java.xml into java.sql, which requires it), less two that only unused corners need, plus
# what is reached by reflection or service lookup, which jdeps cannot see:
#   dropped java.desktop: commons-math3's geometry (java.awt.geom); JMH uses only its statistics
#   dropped java.sql:     the CSV "routines" of the univocity parser shaded into junit-jupiter-params
#   kept    java.xml:     the console launcher's XML reports (--reports-dir)
#   added   jdk.zipfs:    the console launcher scans the tests jar through the zip file system
#   added   jdk.management: com.sun.management, for JMH's -prof gc and friends
#   java.logging (JCuda), java.management and jdk.unsupported (JMH) come from jdeps; listed anyway.
# The library jar is a module requiring JCuda's (a file-name module): jdeps resolves it on the module
# path, and reads JCuda's jar on its own (given both ways it would report JCuda's packages as split).
jcuda_jar=$(ls "$bundle"/lib/jcuda-[0-9]*.jar)
others=()
for j in "$bundle"/lib/*.jar; do [ "$j" = "$jcuda_jar" ] || others+=("$j"); done
found=$( { "$JDK/bin/jdeps" --list-deps --ignore-missing-deps --multi-release 25 --module-path "$jcuda_jar" "${others[@]}"
           "$JDK/bin/jdeps" --list-deps --ignore-missing-deps --multi-release 25 "$jcuda_jar"; } | sed 's/^ *//' | grep -v / | grep -E '^(java|jdk)\.' | sort -u)
say "jdeps: $(paste -sd, - <<<"$found")"
modules=$(printf '%s\n' $found java.base java.logging java.management jdk.unsupported jdk.management jdk.zipfs \
  | grep -vx -e java.desktop -e java.sql | sort -u | paste -sd, -)
say "jlink --add-modules $modules"
"$JDK/bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --compress=zip-6 \
  --output "$bundle/jre"
# The JDK's libjvm.so keeps its full symbol table (5 MB); the dynamic symbols are all it needs.
if command -v strip >/dev/null; then
  find "$bundle/jre/lib" -name '*.so' -exec strip --strip-unneeded {} +
else
  say "(strip not found: the runtime keeps its native symbol tables, about 5 MB more)"
fi

# --- the simulated device, for the bring-up's dry run (run bringup --dry-run) ------------------------
mkdir -p "$bundle/sim"
for f in libcuda.so.1 libcublas.so.13 libcufft.so.12 libbifuse_simkernels.so bifuse.simmodule; do
  if [ -f "$root/build/sim/$f" ]; then cp "$root/build/sim/$f" "$bundle/sim/"; else say "(no build/sim/$f: run bringup --dry-run will not work)"; fi
done

# --- Python peers ----------------------------------------------------------------------------------
cp benchmarks/python/*.py "$bundle/python/"
# block.bootstrap's fusions (networks/, .py files only), which the mutan, block, tucker, ... peers import
# (python/bootstrap_fusions.py finds them in python/block_bootstrap/); without them those peers skip.
if [ -n "${BLOCK_BOOTSTRAP:-}" ] && [ -d "$BLOCK_BOOTSTRAP/block/models/networks" ]; then
  (cd "$BLOCK_BOOTSTRAP/block/models" && find networks -name '*.py') | while IFS= read -r f; do
    mkdir -p "$bundle/python/block_bootstrap/block/models/$(dirname "$f")"
    cp "$BLOCK_BOOTSTRAP/block/models/$f" "$bundle/python/block_bootstrap/block/models/$f"
  done
  say "block.bootstrap fusions: $BLOCK_BOOTSTRAP/block/models/networks -> python/block_bootstrap/"
else
  say "(BLOCK_BOOTSTRAP is not a block.bootstrap.pytorch checkout: the peers of its fusions will skip)"
fi

# --- launcher --------------------------------------------------------------------------------------
cat >"$bundle/run" <<'RUN'
#!/usr/bin/env bash
# bifuse bundle launcher (made by native-build/bundle.sh). Needs no JDK: it runs the jlink'd runtime
# in jre/. Reports and logs go to ${OUT:-<bundle>/out}. Extra JVM options: BIFUSE_JAVA_OPTS.
#
#   run gpu-tests [junit args]            every test (gpu-tagged ones too); exit code = JUnit's
#   run sanitize [memcheck|racecheck|initcheck|synccheck] [junit args]
#                                         the gpu-tagged tests of io.bifuse.cuda under compute-sanitizer
#                                         (exit 9 on a sanitizer error); narrow with e.g.
#                                         --select-method io.bifuse.cuda.CudaRuntimeTest#deviceBuffersRoundTripAndFailLoudly
#   run check [--quick]                   every op on every backend vs the reference
#   run bench [--quick] [--csv FILE] [--runs N]
#   run main [--quick]                    check, then bench
#   run jmh [jmh args]                    JMH (e.g. -lp, or Ops.gpuForward -p gpuCase="Mlb/B=512/.../tf32")
#   run peer [PEER ...] [args]            the PyTorch peers (python/peers.py): all of them, or the named ones
#                                         (compact_bilinear mlb mfb mlb_attention full_bilinear); --csv F: one CSV
#   run compare A.csv B.csv [...]         python/compare.py
#   run env                               java -version, nvidia-smi -L, what bifuse found
#   run java [args]                       the bundle's java with bifuse's class path
#   run bringup [--dry-run]               first contact with a GPU host, every phase time-boxed (about 8 min
#                                         on an H200), strict GPU mode: env, the GPU tests, compute-sanitizer
#                                         memcheck + racecheck on one test class per operator, check, bench
#                                         beside the PyTorch peers; at most 8 files in $OUT/bringup, summary.md
#                                         first. --dry-run: the same on the bundled simulated device
#                                         (sanitizer and peers not run, check and bench at --quick sizes),
#                                         time boxes x BRINGUP_SCALE (4)
#   run all                               env, gpu-tests, main (CSV), peer-check, peer (CSV, every peer),
#                                         compare: each logged to $OUT/<step>.log, going on past failures;
#                                         sanitizers run apart (minutes each): run sanitize memcheck|racecheck
set -euo pipefail
B=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
OUT=${OUT:-$B/out}
PY=${PYTHON:-python3}
read -r -a extra <<<"${BIFUSE_JAVA_OPTS:-}"
# Strict GPU mode (io.bifuse.cuda.Cuda.requireGpu): the bundle is for GPU hosts, where a test or check row
# that cannot reach the GPU (driver, kernels, cuBLAS, cuFFT) must fail, not skip. BIFUSE_REQUIRE_GPU=0: off.
strict=true; [ "${BIFUSE_REQUIRE_GPU:-1}" = 0 ] && strict=false
JAVA=("$B/jre/bin/java" --enable-native-access=ALL-UNNAMED -Xss4m -Dbifuse.requireGpu=$strict ${extra[@]+"${extra[@]}"} -cp "$B/lib/*")
# The library's tests and the tools' tests (check, bench), scanned together.
tests_jar=$(ls "$B"/lib/bifuse-*-tests.jar 2>/dev/null | paste -sd: -)

usage() { echo "usage: $0 COMMAND [args]"; sed -n '5,21p' "$B/run" | sed 's/^# \{0,1\}//'; exit 2; }

has_selector() { # does the argument list already pick tests (then no class path scan)?
  local a
  for a in "$@"; do
    case "$a" in --select*|-[cmpdfuori]|--scan-*) return 0 ;; esac
  done
  return 1
}

junit_args() { # DEFAULT_SELECTORS... -- USER_ARGS...: sets ARGS, the console launcher's command line
  local defaults=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do defaults+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  has_selector "$@" && defaults=()
  [ -t 1 ] || defaults+=(--disable-ansi-colors)   # plain text in logs and CI output
  mkdir -p "$OUT/junit"
  ARGS=(org.junit.platform.console.ConsoleLauncher execute --disable-banner --details=tree --fail-if-no-tests
        --reports-dir "$OUT/junit" --class-path "$tests_jar" ${defaults[@]+"${defaults[@]}"} "$@")
}

find_sanitizer() {
  local c
  for c in "$(command -v compute-sanitizer || true)" "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" \
           /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer /opt/cuda/bin/compute-sanitizer; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  gpu-tests)
    junit_args --scan-classpath -- "$@"
    exec "${JAVA[@]}" "${ARGS[@]}"
    ;;
  sanitize)
    tool=memcheck
    case "${1:-}" in memcheck|racecheck|initcheck|synccheck) tool=$1; shift ;; esac
    cs=$(find_sanitizer) || { echo "run: compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)" >&2; exit 2; }
    junit_args --select-package io.bifuse.cuda -- --include-tag gpu "$@"
    mkdir -p "$OUT"
    log="$OUT/sanitize-$tool.log"
    echo "run: $cs --tool $tool (the JVM runs slowly under it; output also in $log)"
    set +e
    # --launch-timeout: the JVM takes longer than the default 10 s to reach the sanitizer's hook.
    # -Dbifuse.sanitize: the GPU tests skip their largest sizes (B·d > 64·16000), which would take too long.
    "$cs" --tool "$tool" --error-exitcode 9 --target-processes all --launch-timeout 300 \
      "${JAVA[@]}" -Dbifuse.sanitize=true "${ARGS[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    echo "run: sanitize $tool exit code $rc"
    exit "$rc"
    ;;
  check|bench|main)
    exec "${JAVA[@]}" io.bifuse.tools.Main "$cmd" "$@" ;;
  jmh) # JMH 1.37 reads fields through sun.misc.Unsafe: allow it, quietly (forks inherit the flag)
    exec "${JAVA[@]}" --sun-misc-unsafe-memory-access=allow io.bifuse.bench.Jmh "$@" ;;
  peer)
    exec "$PY" "$B/python/peers.py" "$@" ;;
  compare)
    exec "$PY" "$B/python/compare.py" "$@" ;;
  env)
    "$B/jre/bin/java" -version 2>&1
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; else echo "nvidia-smi: not found"; fi
    exec "${JAVA[@]}" io.bifuse.tools.Main env ;;
  java)
    exec "${JAVA[@]}" "$@" ;;
  bringup)
    dry=0; [ "${1:-}" = --dry-run ] && { dry=1; shift; }
    scale=${BRINGUP_SCALE:-1}
    if [ "$dry" = 1 ]; then
      scale=${BRINGUP_SCALE:-4}   # the simulator runs kernels on one CPU core
      export BIFUSE_DEVICE=sim BIFUSE_SIM_DIR=$B/sim
    fi
    dir=$OUT/bringup; rm -rf "$dir"; mkdir -p "$dir"
    rows=(); t0=$(date +%s)
    # The boxes add up to 480 s (8 minutes) on a GPU host; a phase that fails or runs out does not stop
    # the next one, and the summary says which did what.
    # phase NAME SECONDS LOG COMMAND...: runs COMMAND under a time box of SECONDS x scale, its output
    # appended to LOG, and records the outcome for the summary (124: the time box ran out).
    phase() {
      local name=$1 box=$(( $2 * scale )) logname=$3 log=$dir/$3 rc start; shift 3
      echo "=== $name (time box ${box} s): $*" | tee -a "$log"
      start=$(date +%s); set +e
      timeout --kill-after=10 "$box" "$@" >>"$log" 2>&1; rc=$?; set -e
      local took=$(( $(date +%s) - start )) what=pass
      [ "$rc" = 0 ] || what="FAIL (exit $rc)"
      [ "$rc" = 124 ] || [ "$rc" = 137 ] && what="TIME BOX (${box} s) ran out"
      rows+=("| $name | $what | $took s | $logname |"); echo "=== $name: $what in $took s"
    }
    skip() { rows+=("| $1 | not run: $2 | | |"); echo "=== $1: not run: $2"; }
    phase env 15 env.log "$B/run" env
    junit_args --select-package io.bifuse -- --include-tag gpu
    phase gpu-tests 150 gpu-tests.log "${JAVA[@]}" "${ARGS[@]}"
    if [ "$dry" = 1 ]; then
      skip sanitize "the simulated device has no compute-sanitizer"
    elif cs=$(find_sanitizer); then
      # Sanitizer support on these hosts is unproven: one method first, the subset only if that works.
      junit_args --select-method io.bifuse.cuda.MlbCudaTest#bitIdenticalAcrossRuns --
      phase sanitize-probe 45 sanitize.log "$cs" --tool memcheck --error-exitcode 9 --target-processes all --launch-timeout 120 \
        "${JAVA[@]}" -Dbifuse.sanitize=true "${ARGS[@]}"
      probe_ok=0; case "${rows[-1]}" in *"| pass |"*) probe_ok=1 ;; esac
      if [ "$probe_ok" = 1 ]; then
        # Every operator's own GPU test (io.bifuse.cuda.<Op>CudaTest, LinearCudaTest's shared layer too):
        # found by the name, so a new operator's test joins without an edit here.
        junit_args --select-package io.bifuse.cuda -- --include-classname '.+CudaTest$' --include-tag gpu
        for tool in memcheck racecheck; do
          phase "sanitize-$tool" 45 sanitize.log "$cs" --tool "$tool" --error-exitcode 9 --target-processes all --launch-timeout 120 \
            "${JAVA[@]}" -Dbifuse.sanitize=true "${ARGS[@]}"
        done
      else
        skip sanitize-subset "the one-method probe did not pass (see sanitize.log)"
      fi
    else
      skip sanitize "compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)"
    fi
    # The dry run checks and benches at the quick sizes: the simulator's CPU is no place for the spec's.
    quick=(); [ "$dry" = 1 ] && quick=(--quick)
    phase check 75 check.log "${JAVA[@]}" io.bifuse.tools.Main check ${quick[@]+"${quick[@]}"}
    phase bench 45 bench.log "${JAVA[@]}" io.bifuse.tools.Main bench ${quick[@]+"${quick[@]}"} --csv "$dir/bifuse.csv"
    if [ "$dry" = 1 ]; then
      skip peers "the dry run times nothing"
    else
      phase peers 50 bench.log "$PY" "$B/python/peers.py" --csv "$dir/peer.csv"
      phase compare 10 bench.log "$PY" "$B/python/compare.py" "$dir/bifuse.csv" "$dir/peer.csv"
    fi
    {
      echo "# bifuse bring-up$( [ "$dry" = 1 ] && echo ': DRY RUN on the simulated device (no GPU result)')"
      echo
      echo "$(date -u +%Y-%m-%dT%H:%MZ), $(head -n1 "$B/README.txt" | sed 's/^bifuse //'), $(( $(date +%s) - t0 )) s in all, time boxes x$scale"
      echo "GPU: $(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | head -n1 || echo 'nvidia-smi not found')"
      grep -m1 '^CUDA' "$dir/env.log" || true
      echo
      echo "| phase | result | time | log |"
      echo "|---|---|---|---|"
      printf '%s\n' "${rows[@]}"
      echo
      echo "Tests: $(grep -E '^\[ *[0-9]+ tests (successful|failed|skipped)' "$dir/gpu-tests.log" | tr -s ' []' ' ' | paste -sd, - || true)"
      echo "$(grep -m1 '^check: [0-9]* passed' "$dir/check.log" || echo 'check: no total (see check.log)')"
    } > "$dir/summary.md"
    cat "$dir/summary.md"
    for r in "${rows[@]}"; do case "$r" in *"| pass |"*|*"not run"*) ;; *) exit 1 ;; esac; done ;;
  all)
    mkdir -p "$OUT"
    status=()
    step() { # NAME COMMAND...: runs one step, logs it, records its exit code
      local name=$1 rc; shift
      echo "=== $name: $*"
      set +e; "$@" 2>&1 | tee "$OUT/$name.log"; rc=${PIPESTATUS[0]}; set -e
      status+=("$name=$rc")
    }
    step env "$B/run" env
    step gpu-tests "$B/run" gpu-tests
    step main "$B/run" main --csv "$OUT/bifuse.csv"
    step peer-check "$B/run" peer --check
    step peer "$B/run" peer --csv "$OUT/peer.csv"
    step compare "$B/run" compare "$OUT/bifuse.csv" "$OUT/peer.csv"
    echo "=== exit codes: ${status[*]}"
    for s in "${status[@]}"; do [ "${s#*=}" = 0 ] || exit 1; done ;;
  *) usage ;;
esac
RUN
chmod +x "$bundle/run"

cat >"$bundle/README.txt" <<README
bifuse $version, bundled by native-build/bundle.sh on $(date -u +%Y-%m-%d) from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "a working tree")

Runs bifuse's tests (GPU ones included), compute-sanitizer and the benchmarks on a Linux x86-64
host with an NVIDIA driver and the CUDA libraries (libcufft, libcublas; compute-sanitizer for
"sanitize"; Python 3 + PyTorch + numpy for "peer"). No JDK and no network are needed.

  jre/      Java runtime (jlink'd from the JDK 25 that built it; modules: $modules)
  lib/      bifuse and its tests, the tools (check, bench) and theirs, the JMH benchmarks, JCuda $( (cd "$bundle/lib" && ls jcuda-[0-9]*.jar) | sed 's/^jcuda-//; s/\.jar$//') (driver natives only), JMH,
            junit-platform-console-standalone $platform
  python/   the PyTorch peers (*_peer.py, run together by peers.py) and compare.py
  run       the launcher

Commands (reports and logs go to \$OUT, default <bundle>/out):
  ./run env                          java -version, nvidia-smi -L, what bifuse found
  ./run gpu-tests [junit args]       the whole test suite; in strict GPU mode (the default here; BIFUSE_REQUIRE_GPU=0
                                     turns it off) a GPU test that cannot reach the GPU fails with the reason
  ./run sanitize [memcheck|racecheck|initcheck|synccheck] [junit args]
                                     the gpu-tagged tests of io.bifuse.cuda under compute-sanitizer
                                     (exit code 9 when it finds an error; slow: the JVM runs under it)
  ./run check [--quick]              every op on every backend vs the reference
  ./run bench [--quick] [--csv FILE] [--runs N]
  ./run main [--quick]               check, then bench
  ./run jmh [jmh args]               JMH, e.g. ./run jmh -lp (every benchmark and case), ./run jmh Ops.cpuForward -p cpuCase=ID
  ./run peer [PEER ...] [args]       python3 python/peers.py: every PyTorch peer (python/*_peer.py: ban_attention,
                                     ban_block, ban_pooling, compact_bilinear, full_bilinear, mfb,
                                     mlb, mlb_attention) or the named ones; --csv F writes one
                                     combined CSV; --check compares each with its float64 run
  ./run compare A.csv B.csv          python3 python/compare.py
  ./run java [args]                  the bundled java with bifuse's class path

Extra JVM options: BIFUSE_JAVA_OPTS="..."; another Python: PYTHON=/path/to/python3.
README

# --- smoke test: the runtime has every module the launchers need -----------------------------------
say "smoke test: run env; run jmh -l"
"$bundle/run" env 2>&1 | sed 's/^/[bundle]   /'
jmh_list=$("$bundle/run" jmh -l 2>&1) || { echo "$jmh_list" >&2; die "run jmh -l failed"; }
grep -q 'io.bifuse.bench.Ops.gpuTrainingStep' <<<"$jmh_list" || { echo "$jmh_list" >&2; die "run jmh -l lists no io.bifuse.bench.Ops.gpuTrainingStep"; }
rm -rf "$bundle/out"

# --- size --------------------------------------------------------------------------------------------
say "contents:"
du -sh "$bundle"/jre "$bundle"/lib "$bundle"/python | sed "s:$bundle/::; s/^/[bundle]   /"
(cd "$bundle/lib" && ls -S | while read -r f; do printf '[bundle]     %6s  %s\n' "$(du -h "$f" | cut -f1)" "$f"; done)
bytes=$(du -sb "$bundle" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
say "total: $mib MiB in $bundle (limit $limit_mib MiB)"
if [ "$bytes" -gt $((limit_mib * 1048576)) ]; then
  die "the bundle is $mib MiB, over the $limit_mib MiB limit"
fi
