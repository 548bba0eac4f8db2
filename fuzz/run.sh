#!/bin/sh
# Builds the libFuzzer targets (clang++, ASan+UBSan, build dir build-fuzz) and
# runs each for SECONDS (default 60) from its committed corpus fuzz/corpus/<t>.
# A crash is copied to fuzz/regressions/<t>/ (replayed by the GCC test
# tests/reliability/fuzz_regressions_test.cc); the script then exits 1.
#   fuzz/run.sh [seconds] [target...]     e.g. fuzz/run.sh 10 codec plan
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"codec control config plan agent_output critic"}
build=${FORGE_FUZZ_BUILD:-$root/build-fuzz}
jobs=${FORGE_FUZZ_JOBS:-2}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFORGE_FUZZ=ON -DFORGE_SANITIZE=ON -DFORGE_BUILD_TESTS=OFF -DFORGE_BUILD_BENCH=OFF >/dev/null
fuzz_bins=""
for t in $targets; do fuzz_bins="$fuzz_bins ${t}_fuzz"; done
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target $fuzz_bins

status=0
for t in $targets; do
  corpus="$root/fuzz/corpus/$t"
  work=$(mktemp -d "/tmp/forge-fuzz-$t-XXXXXX")
  echo "== $t: ${seconds}s from $corpus"
  # New inputs go to $work so the committed corpus stays small and reviewed.
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$build/bin/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "$work" "$corpus" >"$work/log" 2>&1); then
    status=1
    mkdir -p "$root/fuzz/regressions/$t"
    for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$f" ] && cp "$f" "$root/fuzz/regressions/$t/" && echo "   kept $(basename "$f")"
    done
    tail -n 60 "$work/log"
    echo "!! $t found a failure: see fuzz/regressions/$t/"
  else
    grep -E "^stat::number_of_executed_units|^Done" "$work/log" | sed 's/^/   /' || true
  fi
  rm -rf "$work"
done
exit $status
