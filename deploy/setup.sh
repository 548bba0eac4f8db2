#!/usr/bin/env bash
# Installs every build and run dependency of Forge from Debian packages (only
# what is missing, so a second run is quick), then configures and builds.
#
#   deploy/setup.sh [--build-dir DIR] [--sanitize] [--no-build]
#
# Exit codes: 0 built, 1 a step failed (the failing command is printed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$here/build"
sanitize=OFF
do_build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --sanitize) sanitize=ON; shift ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

packages=(
  # build
  g++ cmake ninja-build pkg-config git
  libzmq3-dev cppzmq-dev libsqlite3-dev nlohmann-json3-dev libyaml-cpp-dev
  libspdlog-dev libcli11-dev libkainjow-mustache-dev libsystemd-dev
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
cmake -S "$here" -B "$build_dir" -G Ninja -DFORGE_SANITIZE="$sanitize" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
