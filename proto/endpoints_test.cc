#include "proto/endpoints.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "common/paths.h"

namespace forge::proto {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class EndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-ep-test-XXXXXX";
    root_ = mkdtemp(tmpl);
    if (const char* x = getenv("XDG_RUNTIME_DIR")) saved_xdg_ = x;
    xdg_ = root_ + "/xdg";
    ASSERT_EQ(mkdir(xdg_.c_str(), 0700), 0);
    setenv("XDG_RUNTIME_DIR", xdg_.c_str(), 1);
  }
  void TearDown() override {
    if (saved_xdg_) {
      setenv("XDG_RUNTIME_DIR", saved_xdg_->c_str(), 1);
    } else {
      unsetenv("XDG_RUNTIME_DIR");
    }
    for (const auto& d : cleanup_) std::filesystem::remove_all(d);
    std::filesystem::remove_all(root_);
  }
  // A state directory whose socket paths exceed 107 bytes.
  std::string LongStateDir() {
    std::string dir = root_ + "/" + std::string(60, 'a') + "/" + std::string(60, 'b');
    EXPECT_TRUE(MakeDirs(dir).ok());
    return dir;
  }
  std::string root_;
  std::string xdg_;
  std::optional<std::string> saved_xdg_;
  std::vector<std::string> cleanup_;
};

TEST_F(EndpointsTest, ShortStateDirHoldsTheSockets) {
  std::string state = root_ + "/state";
  ASSERT_TRUE(MakeDirs(state).ok());
  auto ep = PrepareEndpoints(state);
  ASSERT_TRUE(ep.ok()) << ep.error().ToString();
  EXPECT_EQ(ep->control, "ipc://" + state + "/control.sock");
  EXPECT_EQ(ep->children, "ipc://" + state + "/children.sock");
  EXPECT_EQ(ep->socket_dir, state);
  EXPECT_FALSE(std::filesystem::exists(state + "/sockets.path"));
  EXPECT_EQ(ResolveEndpoints(state).control, ep->control);
}

TEST_F(EndpointsTest, RelativeStateDirIsMadeAbsolute) {
  std::string state = root_ + "/rel";
  ASSERT_TRUE(MakeDirs(state).ok());
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(root_);
  auto ep = PrepareEndpoints("rel");
  auto resolved = ResolveEndpoints("./rel/");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->control, "ipc://" + state + "/control.sock");
  EXPECT_EQ(resolved.control, ep->control);
}

TEST_F(EndpointsTest, LongStateDirUsesPrivateRuntimeDir) {
  std::string state = LongStateDir();
  auto ep = PrepareEndpoints(state);
  ASSERT_TRUE(ep.ok()) << ep.error().ToString();
  EXPECT_THAT(ep->socket_dir, StartsWith(xdg_ + "/forge-"));
  EXPECT_EQ(ep->socket_dir.size(), xdg_.size() + 7 + 16);
  EXPECT_LE(ep->control.size() - 6, 107u);
  EXPECT_LE(ep->children.size() - 6, 107u);
  struct stat st {};
  ASSERT_EQ(stat(ep->socket_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  auto recorded = ReadFile(state + "/sockets.path");
  ASSERT_TRUE(recorded.ok());
  EXPECT_EQ(*recorded, ep->socket_dir + "\n");
  Endpoints resolved = ResolveEndpoints(state);
  EXPECT_EQ(resolved.control, ep->control);
  EXPECT_EQ(resolved.children, ep->children);

  // Stable: a restart picks the same directory.
  auto again = PrepareEndpoints(state);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->socket_dir, ep->socket_dir);

  // The endpoint really binds.
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_REP);
  EXPECT_EQ(zmq_bind(sock, ep->control.c_str()), 0) << zmq_strerror(zmq_errno());
  zmq_close(sock);
  zmq_ctx_term(ctx);
}

TEST_F(EndpointsTest, FallsBackToTmpWithoutRuntimeDir) {
  unsetenv("XDG_RUNTIME_DIR");
  std::string state = LongStateDir();
  auto ep = PrepareEndpoints(state);
  ASSERT_TRUE(ep.ok()) << ep.error().ToString();
  cleanup_.push_back(ep->socket_dir);
  EXPECT_THAT(ep->socket_dir, StartsWith("/tmp/forge-" + std::to_string(geteuid()) + "-"));
  EXPECT_EQ(ResolveEndpoints(state).control, ep->control);
}

TEST_F(EndpointsTest, RefusesAnUnsafeExistingDir) {
  std::string state = LongStateDir();
  auto ep = PrepareEndpoints(state);
  ASSERT_TRUE(ep.ok());
  chmod(ep->socket_dir.c_str(), 0755);
  auto bad = PrepareEndpoints(state);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kIo);
  EXPECT_THAT(bad.error().message, HasSubstr(ep->socket_dir));
  EXPECT_THAT(bad.error().message, HasSubstr("mode 0755, expected 0700"));

  // A symlink planted where the directory should be is refused too.
  std::filesystem::remove_all(ep->socket_dir);
  std::filesystem::create_directory_symlink(root_, ep->socket_dir);
  auto link = PrepareEndpoints(state);
  ASSERT_FALSE(link.ok());
  EXPECT_THAT(link.error().message, HasSubstr("is not a directory"));
  std::filesystem::remove(ep->socket_dir);
}

TEST_F(EndpointsTest, StaleRecordIsRemovedWhenNotNeeded) {
  std::string state = root_ + "/state";
  ASSERT_TRUE(MakeDirs(state).ok());
  ASSERT_TRUE(WriteFileAtomic(state + "/sockets.path", "/somewhere/else\n").ok());
  EXPECT_EQ(ResolveEndpoints(state).socket_dir, "/somewhere/else");
  auto ep = PrepareEndpoints(state);
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->socket_dir, state);
  EXPECT_EQ(ResolveEndpoints(state).socket_dir, state);
}

}  // namespace
}  // namespace forge::proto
