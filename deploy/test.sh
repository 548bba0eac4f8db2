#!/usr/bin/env bash
# Sets everything up and runs the whole test suite through CTest: first the
# normal build (g++), then (unless FORGE_TEST_SANITIZE=0) the same suite built
# by clang++ with AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer
# coverage (build-sanitize/, setup.sh --fuzz), where CTest also runs every
# libFuzzer target for FORGE_FUZZ_SECONDS (here 10 unless set: CI's 30
# minutes; fuzz/run.sh fuzzes for longer) from its committed
# corpus (tests Fuzz.*, label fuzz). Every committed fuzz input (fuzz/corpus,
# fuzz/regressions) is also replayed by both builds (FuzzReplay.*).
#
#   deploy/test.sh [extra ctest arguments]      e.g. -LE fuzz, -R Store
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc)

"$here/deploy/setup.sh" --build-dir "$here/build"
ctest --test-dir "$here/build" --output-on-failure -j "$jobs" "$@"

if [ "${FORGE_TEST_SANITIZE:-1}" != 0 ]; then
  export FORGE_FUZZ_SECONDS=${FORGE_FUZZ_SECONDS:-10}
  "$here/deploy/setup.sh" --build-dir "$here/build-sanitize" --fuzz
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$here/build-sanitize" --output-on-failure -j "$jobs" "$@"
fi
