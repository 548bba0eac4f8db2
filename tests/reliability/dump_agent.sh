#!/bin/sh
# Fake agent for the security tests: records exactly what it was given, then
# behaves as FAKE_MODE (from the task env) says.
#   $FAKE_STATE/<task>.stdin   the prompt read from stdin
#   $FAKE_STATE/<task>.prompt  a copy of $FORGE_PROMPT_FILE
#   $FAKE_STATE/<task>.env     the environment, NUL-separated (env -0)
#   $FAKE_STATE/<task>.pwd     the working directory
# FAKE_MODE: succeed (default) | leak (print every *KEY*/*TOKEN* value to
# stdout and stderr, then fail once and pass on the second attempt)
set -u
state=${FAKE_STATE:?}
task=${FORGE_TASK_ID:?}
cat > "$state/$task.stdin"
cp "$FORGE_PROMPT_FILE" "$state/$task.prompt"
env -0 > "$state/$task.env"
pwd > "$state/$task.pwd"
case "${FAKE_MODE:-succeed}" in
  leak)
    echo "my key is ${API_KEY:-none} and token ${GH_TOKEN:-none}"
    echo "stderr key=${API_KEY:-none}" >&2
    n=$(cat "$state/$task.count" 2>/dev/null || echo 0)
    echo $((n + 1)) > "$state/$task.count"
    if [ "$n" -eq 0 ]; then echo "failing with ${API_KEY:-none}" >&2; exit 1; fi
    exit 0 ;;
  *) exit 0 ;;
esac
