#include "worker/workspace_lock.h"

#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/fd.h"
#include "common/paths.h"
#include "common/signals.h"

namespace forge::worker {
namespace {

constexpr int64_t kRecheckMs = 200;

int64_t NowMs() {
  return SystemClock::Get().MonotonicMs();
}

}  // namespace

std::string WorkspaceLockPath(const std::string& workspace) {
  std::string path = workspace;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path + ".lock";
}

Result<LockFile> LockWorkspace(const std::string& workspace, int64_t wait_ms,
                               const LockWait& wait) {
  if (workspace.empty()) return MakeError(ErrorCode::kInvalid, "no workspace to lock");
  const std::string path = WorkspaceLockPath(workspace);
  const std::string held = "workspace '" + workspace + "' is in use by another process";
  const int64_t start = NowMs();
  bool told = false;
  bool made_parent = false;
  for (;;) {
    auto lock = LockFile::Acquire(path, held);
    // The parent (the workspaces directory) is made only when the lock file
    // could not be opened there: it exists for every attempt but a state's
    // first, and a mkdir -p of it was a mkdir and a stat an attempt. Made,
    // the lock is tried again, and fails as before if it failed for another
    // reason.
    if (!lock.ok() && lock.error().code == ErrorCode::kIo && !made_parent) {
      made_parent = true;
      FORGE_RETURN_IF_ERROR(MakeDirs(ParentPath(path), 0777));
      continue;
    }
    if (lock.ok() || lock.error().code != ErrorCode::kConflict) return lock;
    const int64_t now = NowMs();
    if (now - start >= wait_ms) {
      if (wait_ms <= 0) return lock;
      return MakeError(ErrorCode::kConflict,
                       lock.error().message + "; waited " + FormatDuration(Millis(wait_ms)));
    }
    if (!told) {
      spdlog::warn("{}; waiting up to {} for it to end", lock.error().message,
                   FormatDuration(Millis(wait_ms)));
      told = true;
    }
    pid_t holder = LockFile::Holder(path).value_or(0);
    FORGE_RETURN_IF_ERROR(wait(holder, std::min(start + wait_ms, now + kRecheckMs)));
  }
}

LockWait HeartbeatingLockWait(proto::ChildLink& link, pid_t parent_pid) {
  return [&link, parent_pid](pid_t holder, int64_t until_ms) -> Status {
    if (::getppid() != parent_pid) {
      return MakeError(ErrorCode::kUnavailable, "the supervisor went away");
    }
    if (StopSignalPending()) return MakeError(ErrorCode::kUnavailable, "stopped by a signal");
    UniqueFd pidfd(holder > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, holder, 0)) : -1);
    std::vector<proto::PollFd> fds;
    if (pidfd.valid()) fds.push_back({pidfd.get(), ZMQ_POLLIN, 0});
    FORGE_ASSIGN_OR_RETURN(bool message, link.Poll(fds, until_ms));
    if (message) {
      return MakeError(ErrorCode::kUnavailable, "a message from the supervisor came first");
    }
    return Status::Ok();
  };
}

}  // namespace forge::worker
