#!/usr/bin/env bash
# Builds Forge (Release) and runs every benchmark, printing one table
# (figure, value, baseline, ratio, target, result). See bench/README.md.
#
#   bench/run.sh [--build-dir DIR] [forge_bench args: --smoke --runs N --figures 1,2,..]
# The build uses -j2 (the machines here are shared) and the project's plain
# -Wall -Wextra -Werror (the GCC 12 -O3 false positives are avoided at the
# source; an empty CMAKE_CXX_FLAGS also clears any old workaround flags from a
# reused build directory's cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$here/build-bench"
if [ "${1:-}" = "--build-dir" ]; then
  build=$2
  shift 2
fi

cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="" -DFORGE_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target forge_bench forge_bench_stamp forge-supervisor \
  forge-worker forge-critic forge-ctl >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), fixtures on $(stat -f -c %T "${TMPDIR:-/tmp}")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)   $(date -u '+%Y-%m-%d %H:%M UTC')"
status=0
"$build/bin/forge_bench" "$@" || status=$?
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
