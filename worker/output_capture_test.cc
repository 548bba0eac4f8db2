#include "worker/output_capture.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/capped_log.h"
#include "common/sanitizers.h"
#include "worker/test_supervisor.h"

namespace forge::worker {
namespace {

using forge::testing::FileSizeLimit;
using forge::testing::ReadAll;
using ::testing::HasSubstr;

class OutputCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-capture-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// The cap's rewrite copies the kept half file to file: held in memory
// (twice, as it was), a 64 MiB log took a worker from a few MiB to over
// 70 MiB at each rewrite. Measured in a child process, whose peak RSS is
// its own.
TEST_F(OutputCaptureTest, TheCapsRewriteDoesNotHoldTheLogInMemory) {
#ifdef FORGE_ASAN
  GTEST_SKIP() << "AddressSanitizer's quarantine keeps freed memory resident";
#else
  const std::string path = dir_ + "/1.log";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto c = OutputCapture::Open(path);  // the default cap, 64 MiB
    if (!c.ok()) ::_exit(3);
    const std::string chunk(64 * 1024, 'x');
    for (size_t written = 0; written < OutputCapture::kDefaultMaxBytes + chunk.size();
         written += chunk.size()) {
      if (!(*c)->Append(chunk, 1).ok()) ::_exit(4);
    }
    ::_exit((*c)->file_bytes() < static_cast<int64_t>(OutputCapture::kDefaultMaxBytes) ? 0 : 5);
  }
  int status = 0;
  struct rusage usage {};
  ASSERT_EQ(::wait4(pid, &status, 0, &usage), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the child failed to fill and rewrite the log";
  EXPECT_THAT(ReadAll(path), HasSubstr("[forge: earlier output dropped"));
  EXPECT_LT(usage.ru_maxrss, 24 * 1024) << "peak RSS in KiB";
#endif
}

// The cut's first line says how many of the bytes after it were in the log
// before (`logs --follow` skips them, common/capped_log.h): exactly the old
// file's tail, then the output that overflowed it.
TEST_F(OutputCaptureTest, TheCutSaysHowMuchOfTheOldLogItRepeats) {
  auto c = OutputCapture::Open(dir_ + "/1.log", 4096);
  ASSERT_TRUE(c.ok());
  std::string before;
  for (int i = 0; before.size() + 40 < 4096; ++i) before += "before " + std::to_string(i) + "\n";
  ASSERT_TRUE((*c)->Append(before, 1).ok());
  const std::string overflow = "overflow that does not fit: " + std::string(80, 'x') + "\n";
  ASSERT_TRUE((*c)->Append(overflow, 2).ok());
  std::string log = ReadAll(dir_ + "/1.log");
  size_t nl = log.find('\n');
  ASSERT_NE(nl, std::string::npos);
  auto repeated = RepeatedAfterCappedLogMarker(std::string_view(log).substr(0, nl));
  ASSERT_TRUE(repeated.has_value()) << log.substr(0, nl);
  EXPECT_EQ(*repeated, 2048 - overflow.size());
  EXPECT_EQ(log.substr(nl + 1), before.substr(before.size() - *repeated) + overflow);
}

TEST_F(OutputCaptureTest, AppendsAndTracksLastLineAndTime) {
  auto c = OutputCapture::Open(dir_ + "/1.log");
  ASSERT_TRUE(c.ok());
  auto& cap = **c;
  EXPECT_EQ(cap.last_output_ms(), -1);
  ASSERT_TRUE(cap.Append("first line\nsecond ", 100).ok());
  EXPECT_EQ(cap.last_line(), "first line");
  ASSERT_TRUE(cap.Append("half\n", 250).ok());
  EXPECT_EQ(cap.last_line(), "second half");
  ASSERT_TRUE(cap.Append("a\nb\nc\n", 300).ok());
  EXPECT_EQ(cap.last_line(), "c");
  EXPECT_EQ(cap.last_output_ms(), 300);
  EXPECT_EQ(ReadAll(dir_ + "/1.log"), "first line\nsecond half\na\nb\nc\n");
  EXPECT_EQ(cap.total_bytes(), 29);
}

TEST_F(OutputCaptureTest, CapKeepsTheTail) {
  const size_t cap_bytes = 64 * 1024;
  auto c = OutputCapture::Open(dir_ + "/1.log", cap_bytes);
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE((*c)->Append("line " + std::to_string(i) + "\n", i).ok());
  }
  std::string log = ReadAll(dir_ + "/1.log");
  EXPECT_LE(log.size(), cap_bytes);
  EXPECT_GE(log.size(), cap_bytes / 2);
  EXPECT_THAT(log, HasSubstr("[forge: earlier output dropped; each time this log reaches 65536 "
                             "bytes it keeps only its last 32768 bytes; the first "));
  EXPECT_EQ(log.substr(log.size() - 11), "line 19999\n");
  EXPECT_THAT(log, ::testing::Not(HasSubstr("\nline 0\n")));
  EXPECT_EQ((*c)->file_bytes(), static_cast<int64_t>(log.size()));
  EXPECT_LE((*c)->tail().size(), 2 * OutputCapture::kTailBytes);
  EXPECT_THAT((*c)->tail(), HasSubstr("line 19999\n"));
}

TEST_F(OutputCaptureTest, OneHugeChunkKeepsItsTail) {
  auto c = OutputCapture::Open(dir_ + "/1.log", 4096);
  ASSERT_TRUE(c.ok());
  std::string big(100000, 'x');
  big += "END\n";
  ASSERT_TRUE((*c)->Append(big, 1).ok());
  std::string log = ReadAll(dir_ + "/1.log");
  EXPECT_LE(log.size(), 4096u);
  EXPECT_EQ(log.substr(log.size() - 4), "END\n");
}

TEST_F(OutputCaptureTest, SecretsAreRedactedEvenWhenSplitAcrossReads) {
  auto c = OutputCapture::Open(dir_ + "/1.log");
  ASSERT_TRUE(c.ok());
  (*c)->SetSecrets({"hunter2-secret", "abc"});  // "abc": too short to redact
  ASSERT_TRUE((*c)->Append("token is hunt", 1).ok());
  ASSERT_TRUE((*c)->Append("er2-sec", 2).ok());
  ASSERT_TRUE((*c)->Append("ret; abc\nhunter2-secret\n", 3).ok());
  ASSERT_TRUE((*c)->Append("end hunter2", 4).ok());
  ASSERT_TRUE((*c)->Flush().ok());
  std::string log = ReadAll(dir_ + "/1.log");
  EXPECT_EQ(log, "token is [redacted]; abc\n[redacted]\nend hunter2");
  EXPECT_EQ((*c)->last_line(), "[redacted]");
  EXPECT_THAT((*c)->tail(), ::testing::Not(HasSubstr("hunter2-secret")));
}

// The disk fills while the agent runs: the error comes back once, output
// goes on into the tail, and write_error() says where the log stops and how
// much did not reach it; once there is room the log says so too.
TEST_F(OutputCaptureTest, AFullDiskStopsTheLogAndSaysWhere) {
  const std::string path = dir_ + "/1.log";
  auto c = OutputCapture::Open(path);
  ASSERT_TRUE(c.ok());
  auto& cap = **c;
  {
    FileSizeLimit full(1000);
    EXPECT_TRUE(cap.Append(std::string(600, 'a'), 1).ok());
    EXPECT_EQ(cap.write_error(), "");
    Status s = cap.Append(std::string(600, 'b'), 2);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.error().message, HasSubstr(path));
    EXPECT_TRUE(cap.Append(std::string(299, 'c') + "\n", 3).ok()) << "the error comes once";
  }
  EXPECT_EQ(cap.file_bytes(), 1000);
  EXPECT_EQ(cap.write_error(), "the attempt log stops after 1000 bytes: writing '" + path +
                                   "': File too large; 500 bytes of output after that were "
                                   "not written");
  EXPECT_THAT(cap.tail(), ::testing::EndsWith(std::string(299, 'c') + "\n"));
  EXPECT_EQ(cap.last_output_ms(), 3);
  cap.MarkWhereTheLogStops();
  std::string text = ReadAll(path);
  EXPECT_EQ(text.substr(0, 1000), std::string(600, 'a') + std::string(400, 'b'));
  EXPECT_EQ(text.substr(1000), "\n[forge: " + cap.write_error() + "]\n");
}

// A rewrite past the cap that fails leaves the log as it was and no half
// copy beside it.
TEST_F(OutputCaptureTest, AFailedRewriteLeavesTheLogAndNoTempFile) {
  const std::string path = dir_ + "/1.log";
  auto c = OutputCapture::Open(path, 1024);
  ASSERT_TRUE(c.ok());
  auto& cap = **c;
  ASSERT_TRUE(cap.Append(std::string(1000, 'a'), 1).ok());
  {
    FileSizeLimit full(100);
    EXPECT_FALSE(cap.Append(std::string(100, 'b'), 2).ok());  // past the cap: a rewrite
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadAll(path), std::string(1000, 'a'));
  EXPECT_THAT(cap.write_error(), HasSubstr("stops after 1000 bytes: writing '" + path + ".tmp'"));
  EXPECT_THAT(cap.write_error(), HasSubstr("; 100 bytes of output after that"));
}

TEST_F(OutputCaptureTest, MissingDirectoryIsAnErrorNamingThePath) {
  auto c = OutputCapture::Open(dir_ + "/nope/1.log");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.error().message, HasSubstr(dir_ + "/nope/1.log"));
}

}  // namespace
}  // namespace forge::worker
