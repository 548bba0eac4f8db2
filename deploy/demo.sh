#!/usr/bin/env bash
# Sets everything up and runs Forge on its bundled offline demo: a
# throw-away git repository and state directory, a stand-in agent that behaves like
# `claude -p --output-format stream-json` (cost and tokens included), and four tasks
# that show a first-try pass, a pass after a rejected attempt using the
# failure evidence, a hung agent caught by the watchdog and retried, and a
# task blocked for a human. Each task works in its own git worktree on
# branch forge/<task>; a pass leaves exactly one commit there and the demo
# repository's own checkout is never touched. Ends with `forge-ctl status`,
# a `show` and the forge/* branches' logs.
#
#   deploy/demo.sh [--keep]       (--keep leaves the supervisor running)
# Environment: FORGE_BIN_DIR=DIR uses already-built binaries (skips setup).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1

if [ -z "${FORGE_BIN_DIR:-}" ]; then
  "$here/deploy/setup.sh" --build-dir "$here/build"
  FORGE_BIN_DIR="$here/build/bin"
fi
export PATH="$FORGE_BIN_DIR:$here/examples/demo:$PATH"

demo=$(mktemp -d /tmp/forge-demo-XXXXXX)
state="$demo/state"
ctl() { forge-ctl --state-dir "$state" "$@"; }
cleanup() {
  if [ "$keep" -eq 0 ]; then
    ctl stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Creating a throw-away git repository ($demo/repo)"
repo="$demo/repo"
git init -q -b main "$repo"
git -C "$repo" config user.name "Forge demo"
git -C "$repo" config user.email "forge-demo@localhost"
printf '# Demo project\n\nForge works on this repository in worktrees.\n' > "$repo/README.md"
git -C "$repo" add README.md
git -C "$repo" commit -q -m "Initial commit"
git -C "$repo" log --oneline

step "Starting the supervisor (state in $state)"
forge-supervisor start --config "$here/examples/demo/forge.yaml" --state-dir "$state"

step "Submitting the demo plan"
# Every task works in the demo repository (a worktree per task, from main).
cat > "$demo/plan.yaml" <<'PLAN'
tasks:
  - id: greet
    repo: "@REPO@"
    title: Add a greeting file
    brief: "demo:greet - create greeting.txt that says Hello."
    verify: ["grep -q Hello greeting.txt"]
  - id: add
    repo: "@REPO@"
    title: Implement add.sh
    brief: "demo:add - add.sh A B must print A+B."
    verify:
      - 'out=$(sh add.sh 2 3); [ "$out" = 5 ] || { echo "add.sh 2 3: expected 5, got $out"; exit 1; }'
  - id: hang
    repo: "@REPO@"
    title: Write recovered.txt
    brief: "demo:hang - write recovered.txt (the first attempt hangs)."
    verify: ["test -f recovered.txt"]
  - id: impossible
    repo: "@REPO@"
    title: Prove the conjecture
    brief: "demo:impossible - write a proof ending in QED to proof.txt."
    verify: ['grep -q QED proof.txt || { echo "proof.txt has no QED"; exit 1; }']
PLAN
sed -i "s|@REPO@|$repo|" "$demo/plan.yaml"
mapfile -t ids < <(ctl submit --plan "$demo/plan.yaml")
printf 'submitted: %s\n' "${ids[*]}"

step "Waiting for the three that should pass (forge-ctl wait: exit 0 when all are done)"
ctl wait "${ids[0]}" "${ids[1]}" "${ids[2]}" --timeout 5m

step "Waiting for the impossible one (exit 1: it ended blocked, a human must look)"
set +e
ctl wait "${ids[3]}" --timeout 5m
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "expected ${ids[3]} to end blocked (wait exit 1), got exit $rc"; exit 1; }

step "forge-ctl ls"
ctl ls
step "forge-ctl status"
ctl status
step "forge-ctl show ${ids[1]}   (rejected once, then fixed from the failing check's output)"
ctl show "${ids[1]}"
step "forge-ctl show ${ids[3]}   (blocked: the same failure twice)"
ctl show "${ids[3]}"

step "One commit per passing task on its forge/<task> branch"
for id in "${ids[0]}" "${ids[1]}" "${ids[2]}"; do
  n=$(git -C "$repo" rev-list --count "main..forge/$id")
  [ "$n" -eq 1 ] || { echo "expected one commit on forge/$id, found $n"; exit 1; }
  echo "\$ git log --oneline forge/$id"
  git -C "$repo" log --oneline "forge/$id"
done
echo "\$ git log -1 --format='%s%n%n%b' --stat forge/${ids[1]}"
git -C "$repo" log -1 --format='%s%n%n%b' --stat "forge/${ids[1]}"
n=$(git -C "$repo" rev-list --count "main..forge/${ids[3]}")
[ "$n" -eq 0 ] || { echo "expected no commit on forge/${ids[3]} (blocked), found $n"; exit 1; }
echo "forge/${ids[3]}: no commit (blocked)"
echo "\$ git status --short   (the demo repository's own checkout: untouched)"
git -C "$repo" status --short
[ "$(git -C "$repo" rev-parse --abbrev-ref HEAD)" = main ] || { echo "HEAD moved"; exit 1; }

if [ "$keep" -eq 1 ]; then
  echo
  echo "The supervisor is still running: forge-ctl --state-dir $state status"
fi
