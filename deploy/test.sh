#!/usr/bin/env bash
# Sets everything up and runs the whole test suite through CTest: first the
# normal build, then (unless FORGE_TEST_SANITIZE=0) the same suite built with
# AddressSanitizer + UndefinedBehaviorSanitizer. Every committed fuzz input
# (fuzz/corpus, fuzz/regressions) is replayed by both (FuzzReplay.*). With
# FORGE_TEST_FUZZ_SECONDS=N it then also builds the libFuzzer targets (clang,
# build-fuzz/) and fuzzes each for N seconds (fuzz/run.sh); off by default
# because that build alone takes longer than CI's remaining time budget (see
# docs/reliability.md).
#
#   deploy/test.sh [extra ctest arguments]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc)

"$here/deploy/setup.sh" --build-dir "$here/build"
ctest --test-dir "$here/build" --output-on-failure -j "$jobs" "$@"

if [ "${FORGE_TEST_SANITIZE:-1}" != 0 ]; then
  "$here/deploy/setup.sh" --build-dir "$here/build-asan" --sanitize
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$here/build-asan" --output-on-failure -j "$jobs" "$@"
fi

if [ "${FORGE_TEST_FUZZ_SECONDS:-0}" != 0 ]; then
  FORGE_FUZZ_JOBS=$jobs "$here/fuzz/run.sh" "$FORGE_TEST_FUZZ_SECONDS"
fi
