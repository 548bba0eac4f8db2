#include "worker/workspace_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/test_lock_holder.h"

namespace forge::worker {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  char dir[] = "/tmp/forge-wslock-XXXXXX";
  EXPECT_NE(::mkdtemp(dir), nullptr);
  return dir;
}

// Another process holding the workspace's lock.
struct Holder : forge::testing::LockHolder {
  explicit Holder(const std::string& workspace)
      : forge::testing::LockHolder(WorkspaceLockPath(workspace)) {}
};

TEST(WorkspaceLockTest, TheLockFileLiesBesideTheWorkspace) {
  EXPECT_EQ(WorkspaceLockPath("/s/worktrees/t1"), "/s/worktrees/t1.lock");
  EXPECT_EQ(WorkspaceLockPath("/s/worktrees/t1/"), "/s/worktrees/t1.lock");
}

TEST(WorkspaceLockTest, AFreeWorkspaceIsLockedAtOnce) {
  std::string ws = TempDir() + "/worktrees/t1";  // its parent does not exist yet
  int waits = 0;
  auto lock = LockWorkspace(ws, 60000, [&](pid_t, int64_t) {
    ++waits;
    return Status::Ok();
  });
  ASSERT_TRUE(lock.ok()) << lock.error().ToString();
  EXPECT_EQ(waits, 0);
  // Seen from another process: held, by us.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    pid_t holder = LockFile::Holder(WorkspaceLockPath(ws)).value_or(0);
    (void)::write(pipefd[1], &holder, sizeof holder);
    _exit(0);
  }
  pid_t holder = 0;
  EXPECT_EQ(::read(pipefd[0], &holder, sizeof holder), static_cast<ssize_t>(sizeof holder));
  EXPECT_EQ(holder, ::getpid());
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
}

TEST(WorkspaceLockTest, WithoutAWaitAHeldLockIsRefusedNamingItsHolder) {
  std::string ws = TempDir() + "/t1";
  Holder holder(ws);
  auto lock = LockWorkspace(ws, 0, nullptr);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.error().code, ErrorCode::kConflict);
  EXPECT_THAT(lock.error().message, HasSubstr("workspace '" + ws + "' is in use"));
  EXPECT_THAT(lock.error().message, HasSubstr("pid " + std::to_string(holder.pid())));
}

// The old process finishes its git step and exits while the new one waits.
TEST(WorkspaceLockTest, TheLockIsTakenOnceItsHolderExits) {
  std::string ws = TempDir() + "/t1";
  Holder holder(ws);
  std::vector<pid_t> waited_for;
  auto lock = LockWorkspace(ws, 60000, [&](pid_t pid, int64_t) {
    waited_for.push_back(pid);
    holder.Release();
    return Status::Ok();
  });
  ASSERT_TRUE(lock.ok()) << lock.error().ToString();
  ASSERT_EQ(waited_for.size(), 1u);
  EXPECT_EQ(waited_for[0], holder.pid());
}

TEST(WorkspaceLockTest, AHolderThatStaysIsAConflictAfterTheWait) {
  std::string ws = TempDir() + "/t1";
  Holder holder(ws);
  const int64_t before = SystemClock::Get().MonotonicMs();
  int64_t first_call = -1, latest = 0;
  // Waits as a holder that never exits does: until the deadline given.
  auto lock = LockWorkspace(ws, 300, [&](pid_t, int64_t until_ms) {
    if (first_call < 0) first_call = SystemClock::Get().MonotonicMs();
    latest = std::max(latest, until_ms);
    int64_t left = until_ms - SystemClock::Get().MonotonicMs();
    if (left > 0) ::poll(nullptr, 0, static_cast<int>(left));
    return Status::Ok();
  });
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.error().code, ErrorCode::kConflict);
  EXPECT_THAT(lock.error().message, HasSubstr("pid " + std::to_string(holder.pid())));
  EXPECT_THAT(lock.error().message, HasSubstr("; waited 300ms"));
  EXPECT_LE(latest, first_call + 300);  // no wait runs past the deadline
  EXPECT_GE(SystemClock::Get().MonotonicMs() - before, 300);
}

TEST(WorkspaceLockTest, AFailedWaitEndsIt) {
  std::string ws = TempDir() + "/t1";
  Holder holder(ws);
  auto lock = LockWorkspace(ws, 60000, [](pid_t, int64_t) -> Status {
    return MakeError(ErrorCode::kUnavailable, "supervisor gone");
  });
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace forge::worker
