#include "common/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace forge {
namespace {

using ::testing::HasSubstr;

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-paths-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  unsigned ModeOf(const std::string& p) {
    struct stat st {};
    stat(p.c_str(), &st);
    return st.st_mode & 07777;
  }
  std::string dir_;
};

TEST_F(PathsTest, MakeDirsCreatesParentsWithMode) {
  std::string deep = dir_ + "/a/b/c";
  ASSERT_TRUE(MakeDirs(deep, 0750).ok());
  EXPECT_TRUE(std::filesystem::is_directory(deep));
  mode_t mask = umask(0);
  umask(mask);
  EXPECT_EQ(ModeOf(dir_ + "/a"), 0750u & ~mask);
  EXPECT_TRUE(MakeDirs(deep).ok());  // existing is fine
  EXPECT_TRUE(MakeDirs(deep + "/").ok());
}

// The leaf is tried first and the parents made only when it has none: every
// shape of path still ends as a directory.
TEST_F(PathsTest, MakeDirsMakesMissingParentsOfAnyShape) {
  ASSERT_TRUE(MakeDirs(dir_ + "/x//y///z/", 0700).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/x/y/z"));
  ASSERT_TRUE(MakeDirs(dir_ + "/x/y/z/w").ok());  // only the leaf is new
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/x/y/z/w"));
  std::string cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  Status relative = MakeDirs("r1/r2/r3");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(relative.ok()) << relative.error().message;
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/r1/r2/r3"));
}

// As exec searches: the first directory with an executable regular file of
// the name; an empty entry is "." and a relative one is relative_to's,
// skipped when that is not known.
TEST_F(PathsTest, FindInPathFindsWhatExecWould) {
  for (const char* d : {"/a", "/b", "/ws", "/ws/rel"})
    ASSERT_EQ(::mkdir((dir_ + d).c_str(), 0755), 0);
  auto make = [&](const std::string& path, unsigned mode) {
    std::ofstream(dir_ + path) << "#!/bin/sh\n";
    ASSERT_EQ(::chmod((dir_ + path).c_str(), mode), 0);
  };
  make("/a/tool", 0644);  // not executable: passed over
  make("/b/tool", 0755);
  make("/ws/tool", 0755);
  make("/ws/rel/tool", 0755);
  ASSERT_EQ(::mkdir((dir_ + "/a/dir").c_str(), 0755), 0);  // a directory: passed over
  const std::string a = dir_ + "/a", b = dir_ + "/b", ws = dir_ + "/ws";
  EXPECT_EQ(FindInPath("tool", a + ":" + b, ""), b + "/tool");
  EXPECT_EQ(FindInPath("tool", a, ""), "");
  EXPECT_EQ(FindInPath("dir", a, ""), "");
  EXPECT_EQ(FindInPath("tool", a + "::" + b, ws), ws + "/./tool");
  EXPECT_EQ(FindInPath("tool", a + "::" + b, ""), b + "/tool");
  EXPECT_EQ(FindInPath("tool", "rel:" + b, ws), ws + "/rel/tool");
  EXPECT_EQ(FindInPath("tool", "", ws), ws + "/./tool");
  EXPECT_EQ(FindInPath("tool", "", ""), "");
}

// With no PATH, exec (common/process.cc) searches kDefaultPath, and so does
// every check of where a command is: before, the worker's looked in the
// workspace only and the config's warning judged nothing. A PATH set but
// empty is the current directory, as exec takes it.
TEST_F(PathsTest, AnUnsetPathIsExecsDefault) {
  EXPECT_EQ(ExecPath(nullptr), "/usr/local/bin:/usr/bin:/bin");
  EXPECT_EQ(ExecPath(""), "");
  EXPECT_EQ(ExecPath("/opt/bin"), "/opt/bin");
  EXPECT_EQ(ExecPath(std::vector<std::string>{"HOME=/h"}), kDefaultPath);
  EXPECT_EQ(ExecPath(std::vector<std::string>{"PATH="}), "");
  EXPECT_EQ(ExecPath(std::vector<std::string>{"PATHS=x", "PATH=/a", "PATH=/b"}), "/a");
  EXPECT_NE(FindInPath("sh", ExecPath(nullptr), ""), "") << "sh is in /bin or /usr/bin";
}

TEST_F(PathsTest, MakeDirsThroughAFileFails) {
  std::ofstream(dir_ + "/file") << "x";
  Status s = MakeDirs(dir_ + "/file/sub");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr(dir_ + "/file"));
  // Deeper under the file: still refused, still naming the path.
  Status deeper = MakeDirs(dir_ + "/file/a/b");
  ASSERT_FALSE(deeper.ok());
  EXPECT_THAT(deeper.error().message, HasSubstr(dir_ + "/file/a"));
  EXPECT_FALSE(MakeDirs("").ok());
  // The path is wrong, not the system: callers tell that to their operator.
  EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(deeper.error().code, ErrorCode::kInvalid);
  Status itself = MakeDirs(dir_ + "/file");
  ASSERT_FALSE(itself.ok());
  EXPECT_EQ(itself.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(itself.error().message, HasSubstr("a file is there, not a directory"));
}

TEST_F(PathsTest, MakeDirsOnABrokenSymlinkSaysSo) {
  ASSERT_EQ(::symlink((dir_ + "/nowhere").c_str(), (dir_ + "/dangling").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ + "/loop2").c_str(), (dir_ + "/loop1").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ + "/loop1").c_str(), (dir_ + "/loop2").c_str()), 0);
  Status dangling = MakeDirs(dir_ + "/dangling");
  ASSERT_FALSE(dangling.ok());
  EXPECT_EQ(dangling.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(dangling.error().message,
              HasSubstr("a symlink is there whose target cannot be used (No such file"));
  Status loop = MakeDirs(dir_ + "/loop1");
  ASSERT_FALSE(loop.ok());
  EXPECT_THAT(loop.error().message, HasSubstr("(Too many levels of symbolic links)"));
}

TEST_F(PathsTest, MakePrivateDirForcesMode) {
  std::string p = dir_ + "/state";
  ASSERT_EQ(mkdir(p.c_str(), 0777), 0);
  chmod(p.c_str(), 0755);
  ASSERT_TRUE(MakePrivateDir(p).ok());
  EXPECT_EQ(ModeOf(p), 0700u);
  ASSERT_TRUE(MakePrivateDir(dir_ + "/new/private").ok());
  EXPECT_EQ(ModeOf(dir_ + "/new/private"), 0700u);
}

// A directory others write to (a --state-dir /tmp by mistake) is refused
// and left as it was.
TEST_F(PathsTest, MakePrivateDirLeavesASharedDirectoryAlone) {
  for (unsigned mode : {01777u, 0777u, 01700u}) {
    std::string p = dir_ + "/shared" + std::to_string(mode);
    ASSERT_EQ(mkdir(p.c_str(), 0700), 0);
    ASSERT_EQ(chmod(p.c_str(), mode), 0);
    Status s = MakePrivateDir(p);
    ASSERT_FALSE(s.ok()) << mode;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    EXPECT_THAT(s.error().message, HasSubstr("'" + p + "' is shared (mode " + octal));
    EXPECT_EQ(ModeOf(p), mode);
  }
}

// An existing directory with other files and no state of ours is refused and
// left as it was (`--state-dir /` as root made / 0700); an empty one, or one
// holding a marker, is taken and tightened.
TEST_F(PathsTest, MakePrivateDirTakesOnlyAnEmptyDirectoryOrOneOfOurs) {
  const OwnDirNames ours = {.markers = {"forge.db", "supervisor.lock"},
                            .layout = {"briefs", "lost+found"}};
  std::string project = dir_ + "/project";
  ASSERT_EQ(mkdir(project.c_str(), 0755), 0);
  ASSERT_EQ(chmod(project.c_str(), 0755), 0);
  std::ofstream(project + "/README") << "x";
  Status s = MakePrivateDir(project, ours);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(s.error().message,
              HasSubstr("'" + project + "' already holds 'README' and no forge.db"));
  EXPECT_EQ(ModeOf(project), 0755u);
  EXPECT_TRUE(MakePrivateDir(project).ok()) << "no markers given: as before";

  std::string state = dir_ + "/state";
  ASSERT_EQ(mkdir(state.c_str(), 0755), 0);
  ASSERT_EQ(chmod(state.c_str(), 0755), 0);
  EXPECT_TRUE(MakePrivateDir(state, ours).ok()) << "empty";
  EXPECT_EQ(ModeOf(state), 0700u);
  ASSERT_EQ(chmod(state.c_str(), 0755), 0);
  std::ofstream(state + "/other") << "";
  ASSERT_EQ(::symlink("/nonexistent/supervisor.lock", (state + "/supervisor.lock").c_str()), 0);
  EXPECT_TRUE(MakePrivateDir(state, ours).ok()) << "a marker, a symlink not yet resolvable";
  EXPECT_EQ(ModeOf(state), 0700u);
  EXPECT_TRUE(MakePrivateDir(dir_ + "/fresh", ours).ok());
  // Prepared before the first start: layout names only (a volume's
  // lost+found, briefs to override the templates).
  std::string prepared = dir_ + "/prepared";
  std::filesystem::create_directories(prepared + "/briefs");
  std::filesystem::create_directories(prepared + "/lost+found");
  EXPECT_TRUE(MakePrivateDir(prepared, ours).ok());
}

// ParentPath is std::filesystem's parent_path with a shortcut (paths.cc).
TEST(ParentPath, IsTheLibrarysParentPath) {
  for (const std::string p : {"/state/logs/t1/1.log",
                              "a/b",
                              "/a",
                              "a",
                              "",
                              "/",
                              "//",
                              "//a",
                              "//a/b",
                              "/a//b",
                              "a/",
                              "/a/b/",
                              "a/.",
                              "a/..",
                              "./a",
                              "../a",
                              "/a/./b",
                              "a///b",
                              "///a",
                              "/a/b//"}) {
    EXPECT_EQ(ParentPath(p), std::filesystem::path(p).parent_path().string()) << p;
  }
}

TEST_F(PathsTest, ReadAndWriteAtomic) {
  std::string p = dir_ + "/f.txt";
  std::string content = std::string("line\n") + std::string(200000, 'z') + '\0' + "tail";
  ASSERT_TRUE(WriteFileAtomic(p, content).ok());
  auto back = ReadFile(p);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, content);
  EXPECT_EQ(ModeOf(p), 0600u);
  ASSERT_TRUE(WriteFileAtomic(p, "short", 0644).ok());
  EXPECT_EQ(*ReadFile(p), "short");
  // No temp files left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(PathsTest, Errors) {
  auto missing = ReadFile(dir_ + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message, HasSubstr(dir_ + "/nope"));
  Status s = WriteFileAtomic(dir_ + "/no-dir/f", "x");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr("no-dir"));
}

// Only a regular file is read, checked on the file opened: a FIFO (whose
// open would wait for a writer), a device and a directory are refused at
// once, whoever stat'ed the path before.
TEST_F(PathsTest, ReadFileReadsOnlyARegularFile) {
  std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {dir_, std::string("/dev/zero"), fifo}) {
    auto read = ReadFile(path, 1 << 20);
    ASSERT_FALSE(read.ok()) << path;
    EXPECT_EQ(read.error().code, ErrorCode::kInvalid) << path;
    EXPECT_EQ(read.error().message,
              "'" + path + "' is not a regular file (a directory, a FIFO or a device)");
  }
}

TEST(PathHelpers, Join) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a", "/abs"), "/abs");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", ""), "a");
}

TEST(PathHelpers, Absolute) {
  std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(AbsolutePath("x/./y/../z"), cwd + "/x/z");
  EXPECT_EQ(AbsolutePath("/a/b/"), "/a/b");
  EXPECT_EQ(AbsolutePath("/"), "/");
  EXPECT_EQ(AbsolutePath(""), cwd);
}

TEST(PathHelpers, SelfExeDir) {
  std::string dir = SelfExeDir();
  EXPECT_TRUE(std::filesystem::exists(dir + "/forge_common_test")) << dir;
}

}  // namespace
}  // namespace forge
