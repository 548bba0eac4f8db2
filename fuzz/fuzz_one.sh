#!/bin/sh
# Fuzzes one libFuzzer target for a bounded time from its committed seed
# corpus. Used by fuzz/run.sh (by hand) and by CTest (test Fuzz.<target>,
# label `fuzz`, in the clang build that deploy/test.sh makes for CI).
#
#   fuzz/fuzz_one.sh BINARY CORPUS_DIR SECONDS REGRESSIONS_DIR
#
# New inputs go to a temporary directory, so the committed corpus stays small
# and reviewed. On a crash, leak, timeout or out-of-memory input the script
# copies the input to REGRESSIONS_DIR, prints it (base64, so a CI log is
# enough to reproduce it) with the tail of libFuzzer's log, and exits 1.
# Commit the kept file under fuzz/regressions/<target>/: FuzzReplay replays it
# in every build from then on. Exit 2: bad arguments.
set -eu
if [ $# -ne 4 ]; then
  echo "usage: fuzz_one.sh BINARY CORPUS_DIR SECONDS REGRESSIONS_DIR" >&2
  exit 2
fi
binary=$1 corpus=$2 seconds=$3 regressions=$4
[ -x "$binary" ] || { echo "fuzz_one.sh: $binary: not an executable" >&2; exit 2; }
[ -d "$corpus" ] || { echo "fuzz_one.sh: $corpus: no such corpus directory" >&2; exit 2; }
case $seconds in
  '' | *[!0-9]*) echo "fuzz_one.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

name=$(basename "$binary")
work=$(mktemp -d "${TMPDIR:-/tmp}/forge-$name-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== $name: ${seconds}s from $corpus"
# -timeout is generous: CI runs two fuzzers beside the ASan test suite on two
# shared cores, and a slow input on a loaded box is not a hang.
if (cd "$work" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$binary" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 "$work" "$corpus" >"$work/log" 2>&1); then
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done" "$work/log" | sed 's/^/   /' || true
  exit 0
fi

mkdir -p "$regressions"
tail -n 80 "$work/log"
kept=0
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
  [ -e "$f" ] || continue
  cp "$f" "$regressions/"
  kept=$((kept + 1))
  echo "!! $name kept $regressions/$(basename "$f"); its bytes, base64:"
  base64 "$f"
done
[ "$kept" -gt 0 ] || echo "!! $name failed without leaving an input (see the log above)"
exit 1
