#!/usr/bin/env bash
# Deploy checks (issue 8): the systemd units pass `systemd-analyze verify`,
# `cmake --install` into a temporary prefix lays out binaries, briefs and the
# example config where Forge looks for them, the installed binaries run from
# there, CPack builds a .deb whose metadata declares its dependencies, and
# setup.sh / fuzz/fuzz_one.sh refuse bad arguments with exit 2.
#
#   deploy_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
tmp=$(mktemp -d /tmp/forge-deploy-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Units verify, with ExecStart pointing at the binary we built.
for unit in forge-supervisor.service user/forge-supervisor.service; do
  [ -f "$build/deploy/$unit" ] || fail "unit $build/deploy/$unit was not generated"
done
sed "s|^ExecStart=[^ ]*|ExecStart=$build/bin/forge-supervisor|" "$build/deploy/forge-supervisor.service" \
  > "$tmp/forge-supervisor.service"
systemd-analyze verify "$tmp/forge-supervisor.service" || fail "system unit does not verify"
mkdir -p "$tmp/user" "$tmp/xdg" && chmod 700 "$tmp/xdg"
sed "s|^ExecStart=[^ ]*|ExecStart=$build/bin/forge-supervisor|" "$build/deploy/user/forge-supervisor.service" \
  > "$tmp/user/forge-supervisor.service"
XDG_RUNTIME_DIR="$tmp/xdg" systemd-analyze --user verify "$tmp/user/forge-supervisor.service" \
  || fail "user unit does not verify"
grep -q '^Type=notify' "$tmp/forge-supervisor.service" || fail "unit is not Type=notify"
grep -q '^WatchdogSec=' "$tmp/forge-supervisor.service" || fail "unit has no WatchdogSec"

# 2. Install into a temporary prefix.
prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/forge-supervisor bin/forge-worker bin/forge-critic bin/forge-ctl; do
  [ -x "$prefix/$f" ] || fail "$f not installed"
done
[ -f "$prefix/share/forge/briefs/worker.mustache" ] || fail "briefs not installed"
[ -f "$prefix/share/forge/forge.yaml" ] || fail "example config not installed"
"$prefix/bin/forge-supervisor" check-config --config "$prefix/share/forge/forge.yaml" >/dev/null \
  || fail "installed example config does not pass check-config"
"$prefix/bin/forge-ctl" --help >/dev/null || fail "installed forge-ctl does not run"
# The demo from the installed binaries: the worker finds its briefs in
# <prefix>/share/forge/briefs (searched before the source tree).
FORGE_BIN_DIR="$prefix/bin" "$src/deploy/demo.sh" > "$tmp/demo.log" 2>&1 \
  || { tail -40 "$tmp/demo.log" >&2; fail "the demo does not run from the install prefix"; }

# 3. A .deb with declared dependencies.
if command -v dpkg-shlibdeps >/dev/null; then
  (cd "$build" && cpack -G DEB -B "$tmp/deb" >/dev/null) || fail "cpack failed"
  deb=$(ls "$tmp"/deb/*.deb | head -n1)
  [ -n "$deb" ] || fail "no .deb produced"
  deps=$(dpkg-deb -f "$deb" Depends)
  for lib in libzmq5 libsqlite3 libyaml-cpp git; do
    echo "$deps" | grep -q "$lib" || fail ".deb Depends lacks $lib: $deps"
  done
  # Listed once into a variable: `grep -q` on the pipe would close it early
  # and pipefail would report dpkg-deb's SIGPIPE as a failure.
  contents=$(dpkg-deb -c "$deb")
  grep -q 'bin/forge-supervisor$' <<<"$contents" || fail ".deb lacks forge-supervisor"
  grep -q 'systemd/system/forge-supervisor.service$' <<<"$contents" || fail ".deb lacks the unit"
fi
# 4. Bad arguments of the setup and fuzzing scripts: exit 2 and a message
# naming what is wrong (nothing is installed or built).
expect_usage_error() {  # expect_usage_error PATTERN COMMAND...
  local pattern=$1 out status=0
  shift
  out=$("$@" 2>&1) || status=$?
  [ "$status" -eq 2 ] || fail "$* exited $status, not 2: $out"
  grep -q -- "$pattern" <<<"$out" || fail "$* did not say '$pattern': $out"
}
expect_usage_error "unknown argument '--bogus'" "$src/deploy/setup.sh" --bogus
mkdir -p "$tmp/gcc-build"
echo 'CMAKE_CXX_COMPILER:FILEPATH=/usr/bin/c++' > "$tmp/gcc-build/CMakeCache.txt"
expect_usage_error "configured with another compiler" \
  "$src/deploy/setup.sh" --build-dir "$tmp/gcc-build" --fuzz
expect_usage_error "usage: fuzz_one.sh" "$src/fuzz/fuzz_one.sh" /bin/true
expect_usage_error "not an executable" "$src/fuzz/fuzz_one.sh" "$tmp/none" "$src/fuzz/corpus/codec" 1 "$tmp/r"
expect_usage_error "no such corpus directory" "$src/fuzz/fuzz_one.sh" /bin/true "$tmp/none" 1 "$tmp/r"
expect_usage_error "whole number, got '1s'" "$src/fuzz/fuzz_one.sh" /bin/true "$src/fuzz/corpus/codec" 1s "$tmp/r"

echo "deploy checks passed"
