#include "common/signals.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace forge {
namespace {

// Restores the thread's signal mask after a test that blocks signals.
class SignalFdTest : public ::testing::Test {
 protected:
  void SetUp() override { pthread_sigmask(SIG_SETMASK, nullptr, &saved_); }
  void TearDown() override { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

 private:
  sigset_t saved_;
};

bool WaitReadable(int fd, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

TEST_F(SignalFdTest, DeliversRaisedSignal) {
  auto sfd = SignalFd::Create({SIGUSR1, SIGUSR2});
  ASSERT_TRUE(sfd.ok()) << sfd.error().ToString();
  EXPECT_FALSE(sfd->Read().has_value());  // nothing pending yet, and no blocking

  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  EXPECT_TRUE(sigismember(&mask, SIGUSR1));
  EXPECT_TRUE(sigismember(&mask, SIGUSR2));

  ASSERT_EQ(raise(SIGUSR1), 0);  // would kill the test if not blocked
  ASSERT_TRUE(WaitReadable(sfd->fd()));
  EXPECT_EQ(sfd->Read(), SIGUSR1);
  EXPECT_FALSE(sfd->Read().has_value());

  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  ASSERT_TRUE(WaitReadable(sfd->fd()));
  EXPECT_EQ(sfd->Read(), SIGUSR2);
}

TEST_F(SignalFdTest, DeliversSigchld) {
  auto sfd = SignalFd::Create({SIGCHLD});
  ASSERT_TRUE(sfd.ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(0);
  ASSERT_TRUE(WaitReadable(sfd->fd()));
  EXPECT_EQ(sfd->Read(), SIGCHLD);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
}

TEST_F(SignalFdTest, DescriptorIsNonBlockingAndCloseOnExec) {
  auto sfd = SignalFd::Create({SIGUSR1});
  ASSERT_TRUE(sfd.ok());
  EXPECT_TRUE(fcntl(sfd->fd(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(sfd->fd(), F_GETFD) & FD_CLOEXEC);
}

TEST_F(SignalFdTest, BadSignalNumberIsAnError) {
  auto sfd = SignalFd::Create({SIGUSR1, 9999});
  ASSERT_FALSE(sfd.ok());
  EXPECT_EQ(sfd.error().code, ErrorCode::kInvalid);
  EXPECT_NE(sfd.error().message.find("9999"), std::string::npos);
}

TEST(IgnoreWriteSignalsTest, WritesFailInsteadOfKilling) {
  struct sigaction old_pipe {};
  struct sigaction old_xfsz {};
  sigaction(SIGPIPE, nullptr, &old_pipe);
  sigaction(SIGXFSZ, nullptr, &old_xfsz);
  IgnoreWriteSignals();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  errno = 0;
  EXPECT_EQ(write(fds[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  close(fds[1]);

  char path[] = "/tmp/forge-xfsz-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct rlimit old_limit {};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4;
  setrlimit(RLIMIT_FSIZE, &limit);
  errno = 0;
  EXPECT_EQ(write(fd, "12345", 5), 4);
  EXPECT_EQ(write(fd, "5", 1), -1);
  EXPECT_EQ(errno, EFBIG);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  close(fd);
  unlink(path);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(SIGXFSZ, &old_xfsz, nullptr);
}

}  // namespace
}  // namespace forge
