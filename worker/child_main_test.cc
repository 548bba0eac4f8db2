#include "worker/child_main.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

namespace forge::worker {
namespace {

// Parses `args` (after the program name), capturing what CLI11 prints.
struct Parsed {
  std::optional<int> exit_code;
  ChildMainOptions options;
  std::string printed;
};
Parsed Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "forge-worker");
  Parsed p;
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  p.exit_code =
      ParseChildFlags(static_cast<int>(args.size()), args.data(), "test child", p.options);
  p.printed = ::testing::internal::GetCapturedStdout();
  p.printed += ::testing::internal::GetCapturedStderr();
  return p;
}

TEST(ChildFlags, TheSupervisorsCommandLineIsParsed) {
  ::unsetenv("FORGE_BRIEFS_DIR");
  auto p = Parse({"--connect", "ipc:///s/children", "--state-dir", "/s", "--heartbeat-ms", "50"});
  EXPECT_FALSE(p.exit_code.has_value()) << p.printed;
  EXPECT_EQ(p.options.connect, "ipc:///s/children");
  EXPECT_EQ(p.options.state_dir, "/s");
  EXPECT_EQ(p.options.heartbeat_ms, 50);
  EXPECT_EQ(p.options.briefs_dir, "");
  EXPECT_EQ(p.options.workspace_lock_wait_ms, kWorkspaceLockWaitMs);

  auto short_wait =
      Parse({"--connect", "ipc:///c", "--state-dir", "/s", "--workspace-lock-wait-ms", "300"});
  EXPECT_FALSE(short_wait.exit_code.has_value()) << short_wait.printed;
  EXPECT_EQ(short_wait.options.workspace_lock_wait_ms, 300);
}

TEST(ChildFlags, BriefsDirComesFromTheEnvironment) {
  ::setenv("FORGE_BRIEFS_DIR", "/opt/briefs", 1);
  auto p = Parse({"--connect", "ipc:///c", "--state-dir", "/s"});
  ::unsetenv("FORGE_BRIEFS_DIR");
  EXPECT_FALSE(p.exit_code.has_value()) << p.printed;
  EXPECT_EQ(p.options.briefs_dir, "/opt/briefs");
  EXPECT_EQ(p.options.heartbeat_ms, 1000);
}

TEST(ChildFlags, BadCommandLinesExitTwoNamingTheFlag) {
  auto missing = Parse({"--state-dir", "/s"});
  ASSERT_TRUE(missing.exit_code.has_value());
  EXPECT_EQ(*missing.exit_code, 2);
  EXPECT_NE(missing.printed.find("--connect"), std::string::npos) << missing.printed;

  auto zero = Parse({"--connect", "ipc:///c", "--state-dir", "/s", "--heartbeat-ms", "0"});
  ASSERT_TRUE(zero.exit_code.has_value());
  EXPECT_EQ(*zero.exit_code, 2);
  EXPECT_NE(zero.printed.find("--heartbeat-ms"), std::string::npos) << zero.printed;

  for (const char* wait : {"0", "-5", "ten", "86400001"}) {
    auto bad =
        Parse({"--connect", "ipc:///c", "--state-dir", "/s", "--workspace-lock-wait-ms", wait});
    ASSERT_TRUE(bad.exit_code.has_value()) << wait;
    EXPECT_EQ(*bad.exit_code, 2) << wait;
    EXPECT_NE(bad.printed.find("--workspace-lock-wait-ms"), std::string::npos) << bad.printed;
  }

  auto unknown = Parse({"--connect", "ipc:///c", "--state-dir", "/s", "--bogus"});
  ASSERT_TRUE(unknown.exit_code.has_value());
  EXPECT_EQ(*unknown.exit_code, 2);
  EXPECT_NE(unknown.printed.find("--bogus"), std::string::npos) << unknown.printed;
}

TEST(ChildFlags, HelpExitsZero) {
  auto p = Parse({"--help"});
  ASSERT_TRUE(p.exit_code.has_value());
  EXPECT_EQ(*p.exit_code, 0);
  EXPECT_NE(p.printed.find("test child"), std::string::npos) << p.printed;
  EXPECT_NE(p.printed.find("--heartbeat-ms"), std::string::npos) << p.printed;
}

}  // namespace
}  // namespace forge::worker
