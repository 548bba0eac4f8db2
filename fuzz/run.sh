#!/bin/sh
# Builds the libFuzzer targets (clang++, ASan+UBSan, build dir build-fuzz) and
# runs each for SECONDS (default 60) from its committed corpus fuzz/corpus/<t>.
# A crash is copied to fuzz/regressions/<t>/ (replayed by the test
# tests/reliability/fuzz_regressions_test.cc) by fuzz/fuzz_one.sh; the script
# then exits 1. CI runs the same targets through CTest (label `fuzz`).
#   fuzz/run.sh [seconds] [target...]     e.g. fuzz/run.sh 10 codec plan
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"codec control config plan agent_output critic"}
build=${FORGE_FUZZ_BUILD:-$root/build-fuzz}
jobs=${FORGE_FUZZ_JOBS:-2}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFORGE_FUZZ=ON -DFORGE_SANITIZE=ON -DFORGE_SANITIZE_OPTIMIZE=-O1 -DFORGE_BUILD_TESTS=OFF \
  -DFORGE_BUILD_BENCH=OFF >/dev/null
fuzz_bins=""
for t in $targets; do fuzz_bins="$fuzz_bins ${t}_fuzz"; done
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target $fuzz_bins

status=0
for t in $targets; do
  "$root/fuzz/fuzz_one.sh" "$build/bin/${t}_fuzz" "$root/fuzz/corpus/$t" "$seconds" \
    "$root/fuzz/regressions/$t" || status=1
done
exit $status
