#!/usr/bin/env bash
# Profiles Forge on figure 1's workload (bench/README.md): N no-op tasks
# (agent /bin/true, verify `true`, allow_empty) submitted as one plan to a
# fresh supervisor with W workers and W critics. What each mode prints is
# per task, so runs of different N compare; the raw profiles stay in the
# output directory it names.
#
#   bench/profile.sh [--build-dir DIR | --bin-dir DIR] [--tasks N] [--workers W] MODE
#   (N: 2,000 by default, 300 for callgrind; W: 2). --build-dir builds
#   Release there first (default build-bench, as bench/run.sh);
#   --bin-dir takes the binaries already in DIR.
#
#   cpu        user and system CPU and context switches of the supervisor
#              and each child (/proc/<pid>/stat and status, threads
#              included), from the submit to the last task done
#   callgrind  every Forge process under valgrind --tool=callgrind:
#              instructions of the supervisor's loop a task, a worker's an
#              attempt, a critic's a review (exact, unlike the VM's clock)
#   perf       the supervisor's threads under perf record: its samples by
#              library and its hottest symbols (time, not instructions)
#   machine    every CPU under perf record -a: the whole machine's time by
#              command name, so Forge's processes, the commands they ran
#              (true, sh) and idle time (swapper) are shares of one total
#   sched      every CPU under perf sched record: each command name's run
#              time and run-queue wait a task, the CPUs' idle time, and how
#              much of it passed with a thread waiting in another CPU's run
#              queue (work left queued, not absent); bench/sched_report.sh
#
# The state directory is removed at the end (the profiles are kept); see
# the note on filesystems below before profiling on a disk.
#
# Exit status: 0 done; 1 a run failed (its output directory is kept and
# named); 2 bad arguments or a missing tool.
set -euo pipefail

usage() {
  echo "usage: bench/profile.sh [--build-dir DIR | --bin-dir DIR] [--tasks N] [--workers W] cpu|callgrind|perf|machine|sched" >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$here/build-bench"
from=""
tasks=""
workers=2
mode=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) [ $# -ge 2 ] || usage; build=$2; shift 2 ;;
    --bin-dir) [ $# -ge 2 ] || usage; from=$2; shift 2 ;;
    --tasks) [ $# -ge 2 ] || usage; tasks=$2; shift 2 ;;
    --workers) [ $# -ge 2 ] || usage; workers=$2; shift 2 ;;
    cpu | callgrind | perf | machine | sched) [ -z "$mode" ] || usage; mode=$1; shift ;;
    *) echo "profile.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -n "$mode" ] || usage
# /proc counts CPU in clock ticks (10 ms): 2,000 tasks make that 5 µs a
# task. Callgrind is exact and runs everything ~50 times slower.
[ -n "$tasks" ] || { [ "$mode" = callgrind ] && tasks=300 || tasks=2000; }
for n in "$tasks" "$workers"; do
  if ! [[ "$n" =~ ^[1-9][0-9]{0,5}$ ]]; then
    echo "profile.sh: --tasks and --workers must be integers from 1 to 999999, got '$n'" >&2
    exit 2
  fi
done
case "$mode" in
  callgrind) tools="valgrind callgrind_annotate" ;;
  perf | machine | sched) tools="perf" ;;
  *) tools="" ;;
esac
for t in $tools; do
  command -v "$t" >/dev/null || { echo "profile.sh: $mode needs '$t', which is not installed" >&2; exit 2; }
done

if [ -z "$from" ]; then
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="" -DFORGE_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" -j2 --target forge-supervisor forge-worker forge-critic forge-ctl >/dev/null
  from="$build/bin"
fi
for b in supervisor worker critic ctl; do
  [ -x "$from/forge-$b" ] || { echo "profile.sh: no forge-$b in $from" >&2; exit 2; }
done

out=$(mktemp -d "${TMPDIR:-/tmp}/forge-profile.XXXXXX")
bin="$out/bin"
mkdir -p "$bin"
# The supervisor starts its children from its own directory: in callgrind
# mode they are scripts there that exec the real binaries under valgrind.
cp "$from/forge-supervisor" "$from/forge-ctl" "$bin/"
for role in worker critic; do
  if [ "$mode" = callgrind ]; then
    printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file=%q/%s.%%p %q "$@"\n' \
      "$out" "$role" "$(cd "$from" && pwd)/forge-$role" >"$bin/forge-$role"
    chmod +x "$bin/forge-$role"
  else
    cp "$from/forge-$role" "$bin/"
  fi
done

cat >"$out/forge.yaml" <<EOF
workers: $workers
critics: $workers
agent:
  profile: command
  command: ["/bin/true"]
  timeout: 1h
  stall_timeout: 1h
critic:
  verify_timeout: 1h
  verify: []
watchdog: {heartbeat_interval: 1s, heartbeat_timeout: 120s}
retry: {max_attempts: 3, backoff_base: 10ms, backoff_max: 10ms, max_infra_retries: 3}
circuit_breaker: {consecutive_failures: 1000, cooldown: 1s}
EOF
{
  printf '{"tasks": ['
  for ((i = 0; i < tasks; i++)); do
    [ $i -eq 0 ] || printf ', '
    printf '{"id": "p%d", "title": "noop %d", "brief": "b", "verify": ["true"], "allow_empty": true}' $i $i
  done
  printf ']}\n'
} >"$out/plan.json"

state="$out/state"
ctl() { "$bin/forge-ctl" --state-dir "$state" "$@"; }
fail() {
  echo "profile.sh: $1 (output kept in $out)" >&2
  [ -z "${sup:-}" ] || kill -TERM "$sup" 2>/dev/null || true
  exit 1
}

case "$mode" in
  callgrind)
    valgrind -q --tool=callgrind --callgrind-out-file="$out/supervisor.%p" \
      "$bin/forge-supervisor" start --foreground --config "$out/forge.yaml" \
      --state-dir "$state" >"$out/supervisor.log" 2>&1 &
    ;;
  *)
    "$bin/forge-supervisor" start --foreground --config "$out/forge.yaml" \
      --state-dir "$state" >"$out/supervisor.log" 2>&1 &
    ;;
esac
sup=$!

# Every child has said hello, so their start is not counted. There is no
# event to wait on from outside: poll the status (10 ms, up to 5 minutes:
# valgrind starts slowly).
for ((i = 0; ; i++)); do
  idle=$(ctl status --json 2>/dev/null | grep -Ec '"state": "idle"' || true)
  [ "$idle" -ne $((2 * workers)) ] || break
  kill -0 "$sup" 2>/dev/null || fail "the supervisor exited at start (see supervisor.log)"
  [ $i -lt 30000 ] || fail "the children did not all become idle"
  sleep 0.01
done

# CPU counters of the supervisor and its children: pid, name, user and
# system ticks, context switches of all threads.
snapshot() {
  local p
  for p in $sup $(pgrep -P $sup); do
    local name ticks switches=0 t
    name=$(cat "/proc/$p/comm")
    ticks=$(cut -d' ' -f14,15 "/proc/$p/stat")
    for t in "/proc/$p"/task/*/status; do
      switches=$((switches + $(awk '/ctxt_switches/ {s += $2} END {print s}' "$t")))
    done
    echo "$p $name $ticks $switches"
  done
}

[ "$mode" != cpu ] || snapshot >"$out/before"
perf_pid=""
if [ "$mode" = perf ] || [ "$mode" = machine ]; then
  # perf: the supervisor's threads, with call graphs; machine: every CPU.
  if [ "$mode" = perf ]; then scope=(-g -p "$sup"); else scope=(-a); fi
  perf record -q -F 10000 "${scope[@]}" -o "$out/perf.data" 2>"$out/perf.log" &
  perf_pid=$!
elif [ "$mode" = sched ]; then
  perf sched record -a -o "$out/perf.data" 2>"$out/perf.log" &
  perf_pid=$!
fi
ctl submit --plan "$out/plan.json" >"$out/ids" || fail "submit failed"
# The last task, then the count: `wait` on every id would ask the
# supervisor to `show` each of them while it runs the others.
ctl wait "$(tail -n 1 "$out/ids")" --timeout 3600 >/dev/null || fail "the last task did not end done"
for ((i = 0; ; i++)); do
  done_count=$(ctl status --json | grep -Eo '"done": [0-9]+' | grep -Eo '[0-9]+$' || true)
  [ "${done_count:-0}" -ne "$tasks" ] || break
  [ $i -lt 30000 ] || fail "only ${done_count:-0} of $tasks tasks ended done"
  sleep 0.01
done
[ "$mode" != cpu ] || snapshot >"$out/after"
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" 2>/dev/null || true  # gone already if it failed
  wait "$perf_pid" || true
  # perf refuses without the rights (perf_event_paranoid; -a needs more).
  [ -s "$out/perf.data" ] || fail "perf record wrote nothing: $(cat "$out/perf.log")"
fi
ctl stop >/dev/null || fail "stop failed"
wait "$sup" || fail "the supervisor exited with status $?"
rm -rf "$state"  # the tasks' workspaces and logs; the profiles stay

# The state directory's filesystem matters: on this VM's ext4 (no journal)
# a file created within minutes of many deletions scans past them, so a
# run there right after another's cleanup shows workers with three to four
# times the system time (bench/README.md fix 17). Profile on tmpfs
# (TMPDIR=/dev/shm), or minutes apart.
echo "$mode: $tasks tasks, $workers workers and $workers critics ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), state on $(stat -f -c %T "$out"))"
case "$mode" in
  cpu)
    hz=$(getconf CLK_TCK)
    # before and after, joined by pid: per-task milliseconds and switches.
    LC_ALL=C join <(LC_ALL=C sort "$out/before") <(LC_ALL=C sort "$out/after") |
      awk -v n="$tasks" -v hz="$hz" '{
        u = ($7 - $3) * 1000 / hz / n; s = ($8 - $4) * 1000 / hz / n; c = ($9 - $5) / n
        printf "%-16s %-8s user %.3f ms  system %.3f ms  switches %.1f  a task\n", $2, $1, u, s, c
        U += u; S += s
      } END { printf "%-25s user %.3f ms  system %.3f ms\n", "all", U, S }'
    rm -rf "$out"
    ;;
  callgrind)
    # Inclusive instructions of each process's loop, summed by role.
    loop_total() {
      local role=$1 fn=$2 f sum=0 v
      for f in "$out/$role".*; do
        v=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -F "$fn" | head -1 |
          awk '{gsub(",", "", $1); print $1}')
        sum=$((sum + ${v:-0}))
      done
      echo $sum
    }
    for r in "supervisor forge::supervisor::Supervisor::Run()" \
      "worker forge::worker::Worker::Run()" "critic forge::critic::Critic::Run()"; do
      read -r role fn <<<"$r"
      total=$(loop_total "$role" "$fn")
      printf '%-10s %12d instructions a task (%s)\n' "$role" $((total / tasks)) "$fn"
    done
    echo "profiles: $out/{supervisor,worker,critic}.<pid> (callgrind_annotate --inclusive=yes FILE)"
    ;;
  perf)
    perf report -i "$out/perf.data" --no-children --sort comm,dso -g none -q 2>/dev/null |
      grep -v '^$' | head -15 || true
    echo
    perf report -i "$out/perf.data" --no-children --sort dso,sym -g none -q 2>/dev/null |
      grep -v '^$' | head -25 | cut -c1-140 || true
    echo "profile: $out/perf.data (perf report -i FILE)"
    ;;
  machine)
    # Shares of all CPUs' time from the submit to the last task done. The
    # commands are `true` (the agents) and `sh` (the checks: `sh -c true`);
    # ZMQbg/* are the I/O threads of every Forge process together; idle
    # time is `swapper`; forge-ctl, bash, grep and sleep are this script
    # waiting for the run to end. Anything else running on the machine is
    # in the total too (a build shows up as cc1plus and as): run it quiet.
    perf report -i "$out/perf.data" --sort comm -q 2>/dev/null | grep -v '^$' | head -20 || true
    echo "profile: $out/perf.data (perf report -i FILE --sort comm,dso)"
    ;;
  sched)
    perf sched timehist -i "$out/perf.data" >"$out/timehist.txt" 2>"$out/timehist.log" ||
      fail "perf sched timehist failed: $(cat "$out/timehist.log")"
    "$here/bench/sched_report.sh" "$out/timehist.txt" "$tasks" "$(nproc)" ||
      fail "bench/sched_report.sh could not read the timehist"
    echo "profile: $out/perf.data (perf sched timehist -i FILE)"
    ;;
esac
