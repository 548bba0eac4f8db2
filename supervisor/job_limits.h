// How long a child may take over its job before the supervisor gives up on
// it: a worker that has not ended its agent, a critic that has not replied
// to its review (Supervisor::KillOverdueChildren kills it as lost). A child
// whose heartbeats stop is judged by the watchdog instead; these limits are
// for one that keeps heartbeating while the process it waits for cannot be
// ended (stuck in the kernel on a hung mount: SIGKILL does not end it), or
// that never answers for a fault of its own. Each limit is the sum of the
// timeouts of every step the job may take, so a job that runs each step to
// its timeout still ends within it.
#pragma once

#include <cstdint>

#include "proto/messages.h"

namespace forge::supervisor {

// Slack on every limit, past the sum of its steps: the child's own loop,
// the messages' way back.
inline constexpr int64_t kJobOverrunMarginMs = 5'000;
// A review's per-run slack, for each check and critic agent run: the
// critic kills and waits for the orphans a run left (proto::KillOrphans).
inline constexpr int64_t kStepOverheadMs = 1'000;

// After its agent's timeout (or a cancel), how long a worker has to report
// the agent's end: it sends SIGTERM, SIGKILL kill_grace_ms later, then
// reads what is left of the output.
int64_t AgentOverrunMs(int64_t kill_grace_ms);

// From its sending, how long a worker has to end `dispatch` (its agent's
// end reported, by `started` and then `result` or by the result alone):
// workspace_lock_wait_ms, for a repo task kPrepareGitCommandsMax git
// commands of kGitTimeoutMs and the sync's fetch of kGitFetchTimeoutMs,
// then the agent's timeout and AgentOverrunMs. Without an agent timeout,
// only the steps before the agent (a worker reports `started` at most
// 20 ms after its agent starts, which replaces this deadline). 0: past
// any sensible bound (none).
int64_t DispatchLimitMs(const proto::Dispatch& dispatch, int64_t workspace_lock_wait_ms);

// From its sending, how long a critic has to reply to `review`:
// workspace_lock_wait_ms (the wait for the workspace's lock its critic was
// started with), kReviewGitCommandsMax git commands of kGitTimeoutMs for a
// repo task, each check's verify_timeout_ms and kCheckKillGraceMs, two runs
// of the critic agent (it is asked again once when it gives no verdict)
// with its timeout and two kill graces (as AgentOverrunMs), kStepOverheadMs
// a check and a run, and the margin. 0: no limit, when a step
// has none (a verify or critic agent timeout of 0).
int64_t ReviewLimitMs(const proto::Review& review, int64_t workspace_lock_wait_ms);

}  // namespace forge::supervisor
