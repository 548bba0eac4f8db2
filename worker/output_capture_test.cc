#include "worker/output_capture.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "worker/test_supervisor.h"

namespace forge::worker {
namespace {

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
  EXPECT_THAT(log, HasSubstr("earlier output dropped"));
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

TEST_F(OutputCaptureTest, MissingDirectoryIsAnErrorNamingThePath) {
  auto c = OutputCapture::Open(dir_ + "/nope/1.log");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.error().message, HasSubstr(dir_ + "/nope/1.log"));
}

}  // namespace
}  // namespace forge::worker
