// The lock of a workspace, held by the one process working in it: a worker
// from before it prepares the workspace until it sends its result, a critic
// through its review, maintenance while it removes the workspace.
//
// The supervisor never gives one workspace to two of its children at once.
// The lock is for the children of a supervisor that was killed (SIGKILL,
// not under systemd, which waits for a unit's processes to end): they get
// PDEATHSIG, but one inside a synchronous git step (a worktree add, a
// runner-sync fetch of up to 120 s, a critic's squash) finishes that step
// before it reads the signal, while a supervisor started again at once may
// give the task to a new worker or critic. The new one waits for the old
// one's step to end instead of running git beside it: two gits in one
// worktree fail each other ("already checked out", a held index.lock), and
// an old critic's squash landing after a new attempt began would leave two
// commits where a pass leaves one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "common/git.h"
#include "common/lockfile.h"
#include "common/result.h"
#include "proto/child_link.h"

namespace forge::worker {

// <workspace>.lock, beside the workspace and never in it: a worktree's files
// are the attempt's work and get committed.
std::string WorkspaceLockPath(const std::string& workspace);

// How long to wait for it by default: kWorkspaceLockWaitMs (common/git.h).

// Waits until `holder` exits or the monotonic deadline until_ms passes,
// whichever is first (holder 0: unknown, until the deadline). An error ends
// the wait for the lock with it.
using LockWait = std::function<Status(pid_t holder, int64_t until_ms)>;

// Takes the workspace's lock (creating the workspace's parent directory).
// While another process holds it, waits with `wait` and tries again, at
// least every kRecheckMs (a holder may release the lock and live on), for up
// to wait_ms; then kConflict, naming the holder's pid and how long it
// waited. With wait_ms 0 it does not wait and `wait` may be empty.
Result<LockFile> LockWorkspace(const std::string& workspace, int64_t wait_ms, const LockWait& wait);

// A LockWait for a child's poll loop: waits on the holder's pidfd with
// link.Poll, so heartbeats keep going. It ends the wait with kUnavailable
// when the child has something else to do: a supervisor message waits (to
// a busy child only a cancel or a shutdown is sent; it stays queued for the
// caller's loop), SIGTERM or SIGINT is pending (left for the loop's
// signalfd), or the child's parent is no longer parent_pid.
LockWait HeartbeatingLockWait(proto::ChildLink& link, pid_t parent_pid);

}  // namespace forge::worker
