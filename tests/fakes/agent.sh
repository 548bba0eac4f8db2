#!/bin/sh
# Fake agent for the integration tests. Behaviour comes from the task's env:
#   FAKE_MODE   succeed | fail_then_succeed | fail_different | fail_same |
#               hang_silent | print_forever | ignore_term | grandchildren |
#               crash_worker | rate_limit | cost | slow_succeed | spec | overloaded |
#               claude_json | codex_jsonl | script
#   FAKE_STATE  a directory for counters and pid files (shared with the test)
#   FAKE_FAILS  fail_then_succeed: how many failures before a success (default 2);
#               spec: how many specs without a Test matrix first (default 0)
#   FAKE_COST   cost: the total_cost_usd to report (claude-style JSON)
#   FAKE_SLEEP  slow_succeed: seconds to sleep first
#   FAKE_SCRIPT script: a shell command run in the workspace as the agent's work
#   FAKE_FALLBACK overloaded: the model that works (claude profile: --model);
#               any other model gets claude's overloaded error (API status 529)
# Every run appends "<task> <attempt> <pid>" to $FAKE_STATE/runs.
set -u
state=${FAKE_STATE:-/tmp}
task=${FORGE_TASK_ID:-unknown}
echo "$task ${FORGE_ATTEMPT:-0} $$" >> "$state/runs"
counter="$state/count.$task"
n=$(cat "$counter" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$counter"
words="alpha bravo charlie delta echo foxtrot golf hotel india juliet"
word() { echo "$words" | cut -d' ' -f"$1"; }

case "${FAKE_MODE:-succeed}" in
  succeed)
    echo "working on $task"
    echo "done" > result.txt
    exit 0 ;;
  script)
    exec sh -c "$FAKE_SCRIPT" ;;
  slow_succeed)
    echo "working slowly on $task"
    sleep "${FAKE_SLEEP:-1}"
    echo "done" > result.txt
    exit 0 ;;
  fail_then_succeed)
    if [ "$n" -le "${FAKE_FAILS:-2}" ]; then
      echo "failure number $(word "$n"): the build broke in a new way" >&2
      exit 1
    fi
    echo "done" > result.txt
    exit 0 ;;
  fail_different)
    echo "failure $(word "$n") happened" >&2
    exit 1 ;;
  fail_same)
    echo "error: the same thing broke again" >&2
    exit 1 ;;
  hang_silent)
    echo "about to hang"
    exec sleep 1000 ;;
  print_forever)
    while :; do echo "tick"; sleep 0.05; done ;;
  ignore_term)
    # The trap first: a test that sends TERM once the pid file is there must
    # find it ignored (written first, a slow start lost the race).
    trap '' TERM
    echo $$ > "$state/ignore_term.pid"
    while :; do echo "still here"; sleep 0.05; done ;;
  grandchildren)
    # Background processes that keep the agent's stdout/stderr open.
    sleep 1000 &
    echo $! >> "$state/grandchildren.pids"
    sh -c 'sleep 1000' &
    echo $! >> "$state/grandchildren.pids"
    echo "left children behind"
    exit 0 ;;
  crash_worker)
    # Fault hook: kill the worker that runs us.
    kill -9 "$PPID"
    sleep 5
    exit 0 ;;
  rate_limit)
    cat > /dev/null
    if [ "$n" -le "${FAKE_FAILS:-1}" ]; then
      echo '{"type":"result","subtype":"error","is_error":true,"api_error_status":429,"result":"API Error: rate limited","total_cost_usd":0}'
      exit 1
    fi
    echo "done" > result.txt
    echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0,"num_turns":1,"session_id":"s"}'
    exit 0 ;;
  cost)
    cat > /dev/null
    echo "done" > result.txt
    echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\",\"total_cost_usd\":${FAKE_COST:-1.0},\"num_turns\":1,\"session_id\":\"s\"}"
    exit 0 ;;
  claude_json)
    # Claude Code's `claude -p --output-format stream-json --verbose`: a
    # message a line, the result object last.
    cat > /dev/null
    echo "done" > result.txt
    echo '{"type":"system","subtype":"init","session_id":"sess-claude-1"}'
    echo '{"type":"assistant","message":{"content":[{"type":"text","text":"Writing result.txt"}]}}'
    echo '{"type":"result","subtype":"success","is_error":false,"result":"Done.","total_cost_usd":0.4213,"num_turns":7,"session_id":"sess-claude-1","usage":{"input_tokens":1200,"output_tokens":340}}'
    exit 0 ;;
  codex_jsonl)
    # Codex's `codex exec --json` event stream: usage is summed over turns.
    cat > /dev/null
    echo "done" > result.txt
    echo '{"type":"thread.started","thread_id":"thread-codex-1"}'
    echo '{"type":"turn.started"}'
    echo '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"working"}}'
    echo '{"type":"turn.completed","usage":{"input_tokens":500,"cached_input_tokens":100,"output_tokens":60}}'
    echo '{"type":"turn.completed","usage":{"input_tokens":250,"output_tokens":40}}'
    exit 0 ;;
  spec)
    # An expand agent (command profile: its stdout is the spec). The first
    # FAKE_FAILS runs leave out the Test matrix section. Keeps each prompt.
    cp "$FORGE_PROMPT_FILE" "$state/prompt.$task.${FORGE_ATTEMPT:-0}"
    echo "Here is the spec you asked for."
    echo
    echo "## Problem"
    echo "The greeting is missing."
    echo "## Acceptance criteria"
    echo "1. greet prints hello"
    if [ "$n" -gt "${FAKE_FAILS:-0}" ]; then
      echo "## Test matrix"
      echo "- no arguments"
    fi
    echo "## Out of scope"
    echo "Translations."
    echo "## File pointers"
    echo "- greet.sh"
    exit 0 ;;
  overloaded)
    cat > /dev/null
    model=""
    while [ $# -gt 0 ]; do
      if [ "$1" = "--model" ] && [ $# -gt 1 ]; then model=$2; shift; fi
      shift
    done
    echo "$task ${FORGE_ATTEMPT:-0} model=$model" >> "$state/models"
    if [ "$model" != "${FAKE_FALLBACK:-}" ]; then
      echo '{"type":"result","subtype":"error","is_error":true,"api_error_status":529,"result":"API Error: Overloaded","total_cost_usd":0}'
      exit 1
    fi
    echo "done" > result.txt
    echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0,"num_turns":1,"session_id":"s"}'
    exit 0 ;;
  *)
    echo "unknown FAKE_MODE ${FAKE_MODE}" >&2
    exit 3 ;;
esac
