#!/usr/bin/env bash
# Reads `perf sched timehist` output (bench/profile.sh sched) and prints
# the CPUs' idle time, how much of it a thread spent waiting in another
# CPU's run queue, and each command name's run time and run-queue delay a
# task.
#
#   bench/sched_report.sh TIMEHIST TASKS CPUS
#
# timehist prints a line a switch-out: time (s), [cpu], name[tid/pid], then
# the wait, the scheduling delay (woken to running) and the run time (ms);
# <idle> lines are a CPU's idle periods. A delay that overlaps another
# CPU's idle period is work the scheduler left queued behind a running
# thread while a CPU sat idle: idle time that was not for lack of work.
#
# Exit status: 0 done; 1 no scheduler events in TIMEHIST; 2 bad arguments.
set -euo pipefail

if [ $# -ne 3 ] || [ ! -r "$1" ] || ! [[ "$2" =~ ^[1-9][0-9]*$ && "$3" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bench/sched_report.sh TIMEHIST TASKS CPUS (a readable file, two positive integers)" >&2
  exit 2
fi
timehist=$1
tasks=$2
cpus=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Pass 1: the span, the idle total and each name's totals; the idle
# periods and the delays as +1/-1 events for pass 2.
awk -v events="$work/events" -v rows="$work/rows" -v idle_file="$work/idle_ms" \
  -v n="$tasks" -v ncpu="$cpus" '
  $2 ~ /^\[[0-9]+\]$/ && $NF ~ /^[0-9.]+$/ {
    cpu = substr($2, 2, length($2) - 2); run = $NF / 1000; delay = $(NF - 1) / 1000
    name = $3; sub(/\[.*/, "", name); if (name ~ /^ZMQbg/) name = "ZMQbg/* (I/O threads)"
    start = $1 - run
    if (first == "" || start < first) first = start
    if (last == "" || $1 > last) last = $1
    if (name == "<idle>") {
      idle += run
      printf "%.6f %s idle 1\n%.6f %s idle -1\n", start, cpu, $1, cpu >events
      next
    }
    ran[name] += run; queued[name] += delay
    if (delay > 0) printf "%.6f %s wait 1\n%.6f %s wait -1\n", start - delay, cpu, start, cpu >events
  }
  END {
    if (first == "") { print "no scheduler events in the input" > "/dev/stderr"; exit 1 }
    span = last - first
    printf "span %.0f ms; idle %.0f ms, %.1f %% of %d CPUs\n", span * 1000, idle * 1000,
      100 * idle / (ncpu * span), ncpu
    printf "%.6f\n", idle * 1000 >idle_file
    for (k in ran)  # the run time first, for sort; cut drops it
      if (ran[k] * 1000 / n >= 0.001)
        printf "%.6f\t%-24s %10.3f ms %12.3f ms\n", ran[k], k, ran[k] * 1000 / n,
          queued[k] * 1000 / n >rows
  }' "$timehist"
touch "$work/events"

# Pass 2: the events in time order; the time during which some CPU idles
# while a thread waits in another CPU's run queue.
sort -g "$work/events" | awk -v idle_ms="$(cat "$work/idle_ms")" '
  function misplaced(c, x) {
    for (c in idle) if (idle[c] > 0) for (x in wait) if (x != c && wait[x] > 0) return 1
    return 0
  }
  NR > 1 && misplaced() { both += $1 - prev }
  { if ($3 == "idle") idle[$2] += $4; else wait[$2] += $4; prev = $1 }
  END {
    share = idle_ms > 0 ? 100 * both * 1000 / idle_ms : 0
    printf "idle while a thread waited in another CPU\47s run queue: %.0f ms, %.0f %% of the idle time\n",
      both * 1000, share
  }'
printf '%-24s %13s %15s\n' "command" "run a task" "queued a task"
sort -g -r "$work/rows" | cut -f2- | head -15
