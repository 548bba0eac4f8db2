// Test helper: another process holding a workspace's lock (POSIX record
// locks do not conflict within one process), until Release() lets it exit.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "worker/workspace_lock.h"

namespace forge::testing {

class LockHolder {
 public:
  explicit LockHolder(const std::string& workspace) {
    int held[2], release[2];
    EXPECT_EQ(::pipe(held), 0);
    EXPECT_EQ(::pipe(release), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(held[0]);
      ::close(release[1]);
      auto lock = worker::LockWorkspace(workspace, 0, nullptr);
      char c = lock.ok() ? 'y' : 'n';
      (void)::write(held[1], &c, 1);
      (void)::read(release[0], &c, 1);  // EOF once the test releases it
      _exit(0);
    }
    ::close(held[1]);
    ::close(release[0]);
    release_ = release[1];
    char c = 0;
    EXPECT_EQ(::read(held[0], &c, 1), 1);
    EXPECT_EQ(c, 'y') << "the holder could not take the lock of " << workspace;
    ::close(held[0]);
  }
  LockHolder(const LockHolder&) = delete;
  LockHolder& operator=(const LockHolder&) = delete;
  ~LockHolder() { Release(); }

  // Lets the holder exit and reaps it: its lock is gone when this returns.
  void Release() {
    if (release_ < 0) return;
    ::close(release_);
    release_ = -1;
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int release_ = -1;
};

}  // namespace forge::testing
