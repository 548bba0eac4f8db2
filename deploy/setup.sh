#!/usr/bin/env bash
# Installs every build and run dependency of Forge from Debian packages (only
# what is missing, so a second run is quick), then configures and builds.
#
#   deploy/setup.sh [--build-dir DIR] [--sanitize] [--fuzz] [--no-build]
#
# --sanitize: AddressSanitizer + UndefinedBehaviorSanitizer (g++).
# --fuzz: clang++ with ASan + UBSan and libFuzzer coverage in every library,
#   plus the fuzz targets, each registered as CTest test Fuzz.<target>
#   (label fuzz, $FORGE_FUZZ_SECONDS each, default 30); what CI's sanitizer
#   half builds (deploy/test.sh). Without the benchmarks: their smoke test
#   runs in the normal build.
# Exit codes: 0 built, 1 a step failed (the failing command is printed),
# 2 bad arguments.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$here/build"
sanitize=OFF
fuzz=OFF
do_build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --sanitize) sanitize=ON; shift ;;
    --fuzz) fuzz=ON; sanitize=ON; shift ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

packages=(
  # build
  g++ cmake ninja-build pkg-config git
  libzmq3-dev cppzmq-dev libsqlite3-dev nlohmann-json3-dev libyaml-cpp-dev
  libspdlog-dev libcli11-dev libkainjow-mustache-dev libsystemd-dev libmimalloc-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev sqlite3 procps util-linux tmux
  clang libclang-rt-14-dev dpkg-dev systemd faketime
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$do_build" -eq 1 ] || exit 0
compiler=()
if [ "$fuzz" = ON ]; then
  compiler=(-DCMAKE_CXX_COMPILER=clang++ -DFORGE_BUILD_BENCH=OFF)
  [ -z "${FORGE_FUZZ_SECONDS:-}" ] || compiler+=(-DFORGE_FUZZ_SECONDS="$FORGE_FUZZ_SECONDS")
  # A build directory keeps the compiler it was first configured with.
  if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang++' "$build_dir/CMakeCache.txt"; then
    echo "setup.sh: $build_dir was configured with another compiler; use a fresh --build-dir for --fuzz" >&2
    exit 2
  fi
fi
cmake -S "$here" -B "$build_dir" -G Ninja "${compiler[@]}" -DFORGE_SANITIZE="$sanitize" \
  -DFORGE_FUZZ="$fuzz" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
