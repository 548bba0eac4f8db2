#include "common/lockfile.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace forge {
namespace {

std::string TempPath() {
  char dir[] = "/tmp/forge-lock-XXXXXX";
  EXPECT_NE(::mkdtemp(dir), nullptr);
  return std::string(dir) + "/supervisor.lock";
}

TEST(LockFileTest, NobodyHoldsAFreshFile) {
  EXPECT_FALSE(LockFile::Holder(TempPath()).has_value());
}

// The file says the holder's pid and nothing else, whatever an earlier
// holder left: the cut is skipped only when the pid covers it (lockfile.cc).
TEST(LockFileTest, TheFileHoldsTheHoldersPidAlone) {
  const std::string pid = std::to_string(::getpid()) + "\n";
  auto contents = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  for (const std::string& before : {std::string(), std::string(pid.size(), '9'),
                                    std::string(pid.size() + 1, '9'), std::string(100, '9')}) {
    std::string path = TempPath();
    std::ofstream(path) << before;
    auto lock = LockFile::Acquire(path);
    ASSERT_TRUE(lock.ok()) << lock.error().ToString();
    EXPECT_EQ(contents(path), pid) << "over " << before.size() << " bytes";
  }
}

TEST(LockFileTest, SecondProcessIsRefusedAndNamesTheHolder) {
  std::string path = TempPath();
  auto lock = LockFile::Acquire(path);
  ASSERT_TRUE(lock.ok()) << lock.error().ToString();
  // POSIX locks do not conflict within one process, so ask from a child.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    auto second = LockFile::Acquire(path);
    auto holder = LockFile::Holder(path);
    bool refused = !second.ok() && second.error().code == ErrorCode::kConflict &&
                   second.error().message.find(std::to_string(::getppid())) != std::string::npos;
    bool named = holder && *holder == ::getppid();
    _exit(refused && named ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(LockFileTest, LockDiesWithItsProcess) {
  std::string path = TempPath();
  pid_t child = ::fork();
  if (child == 0) {
    auto lock = LockFile::Acquire(path);
    ::kill(::getpid(), SIGKILL);
    _exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(LockFile::Holder(path).has_value());
  EXPECT_TRUE(LockFile::Acquire(path).ok());
}

}  // namespace
}  // namespace forge
