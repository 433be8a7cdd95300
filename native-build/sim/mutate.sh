#!/usr/bin/env bash
# Mutation testing on the simulated device: runs the Java GPU tests against a deliberately broken copy
# of a kernel (cuda/*.cu) or of the Java host code (java/src/...), and says whether they caught it.
#
#   native-build/sim/mutate.sh NAME...        the mutants of native-build/sim/mutants.txt with these names
#   native-build/sim/mutate.sh --all          every mutant there; a table at the end
#   native-build/sim/mutate.sh --list         the catalogue
#
# A kernel mutant is built into its own kernel library (build-sim.sh --kernels-only) and loaded with
# BIFUSE_SIM_KERNELS, under the real Java code. A Java mutant is a copy of the working tree with one
# file changed, built and tested on its own. Either way the change is a perl substitution that must
# change its file, and the mutant is CAUGHT when the listed test classes fail, SURVIVED when they pass.
# Needs the simulated device built (native-build/bifuse test, or build-sim.sh) and the main build.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
catalogue="$root/native-build/sim/mutants.txt"
work=${MUTATE_WORK:-/tmp/bifuse-mutants}
[ -f "$root/build/sim/libcuda.so.1" ] || { echo "mutate: build the simulated device first (native-build/build-sim.sh)" >&2; exit 2; }

entries() { grep -v '^\s*#' "$catalogue" | grep -v '^\s*$'; }
field() { printf '%s' "$1" | awk -F ' \\| ' -v i="$2" '{print $i}'; }

case "${1:-}" in
  --list) entries | awk -F ' \\| ' '{printf "%-28s %-7s %-44s %s\n", $1, $2, $3, $6}'; exit 0 ;;
  --all) mapfile -t names < <(entries | awk -F ' \\| ' '{print $1}') ;;
  "") sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  *) names=("$@") ;;
esac

results=()
for name in "${names[@]}"; do
  line=$(entries | awk -F ' \\| ' -v n="$name" '$1 == n' | head -n1)
  [ -n "$line" ] || { echo "mutate: no mutant named $name in $catalogue" >&2; exit 2; }
  kind=$(field "$line" 2); file=$(field "$line" 3); expr=$(field "$line" 4); tests=$(field "$line" 5); what=$(field "$line" 6)
  read -r -a extra_env <<< "$(field "$line" 7)"  # e.g. BIFUSE_SIM_RACECHECK=1
  dir="$work/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  log="$dir/test.log"
  echo "== $name ($kind, $file): $what"
  if [ "$kind" = kernel ]; then
    cp -r "$root/cuda" "$dir/cuda"
    target="$dir/cuda/$(basename "$file")"
  else
    (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$dir/") 2>/dev/null
    mkdir -p "$dir/java/target" && cp -r "$root/java/target/generated-resources" "$dir/java/target/" 2>/dev/null
    target="$dir/$file"
  fi
  before=$(md5sum < "$target")
  perl -0pi -e "$expr" "$target"
  if [ "$(md5sum < "$target")" = "$before" ]; then
    echo "   the substitution changed nothing: the mutant is stale, fix the catalogue"; results+=("$name|STALE|$what"); continue
  fi
  if [ "$kind" = kernel ]; then
    "$root/native-build/build-sim.sh" --kernels-only --kernels "$dir/cuda" --out "$dir/sim" > "$dir/build.log" 2>&1 \
      || { echo "   mutant does not build (see $dir/build.log)"; results+=("$name|NOBUILD|$what"); continue; }
    (cd "$root" && env "${extra_env[@]}" BIFUSE_DEVICE=sim BIFUSE_SIM_KERNELS="$dir/sim/libbifuse_simkernels.so" \
      native-build/bifuse mvn -o -pl java -Dexec.skip=true surefire:test -Dtest="$tests" -Dsurefire.failIfNoSpecifiedTests=false > "$log" 2>&1)
  else
    (cd "$dir" && env "${extra_env[@]}" BIFUSE_DEVICE=sim BIFUSE_SIM_DIR="$root/build/sim" \
      native-build/bifuse mvn -o -pl java -Dexec.skip=true test -Dtest="$tests" -Dsurefire.failIfNoSpecifiedTests=false > "$log" 2>&1)
  fi
  rc=$?
  summary=$(grep -E "Tests run: [0-9]+, Failures" "$log" | tail -n1 | sed 's/^\[[A-Z]*\] *//')
  if [ $rc -ne 0 ] && grep -q -E "Tests run: .*(Failures: [1-9]|Errors: [1-9])" "$log"; then
    first=$(grep -m1 -E "^\[ERROR\]   |FAILURE!|AssertionFailed|expected" "$log" | cut -c1-160)
    echo "   CAUGHT: $summary"; echo "   first failure: $first"; results+=("$name|CAUGHT|$what")
  elif [ $rc -ne 0 ]; then
    echo "   the run failed without a test failure (see $log)"; results+=("$name|BROKEN|$what")
  else
    echo "   SURVIVED: $summary"; results+=("$name|SURVIVED|$what")
  fi
done
echo
printf '%-28s %-9s %s\n' mutant result what
for r in "${results[@]}"; do IFS='|' read -r n res w <<< "$r"; printf '%-28s %-9s %s\n' "$n" "$res" "$w"; done
! printf '%s\n' "${results[@]}" | grep -q -E '\|(SURVIVED|STALE|NOBUILD|BROKEN)\|'
