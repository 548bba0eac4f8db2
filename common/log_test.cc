#include "common/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/utf8.h"

namespace forge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-log-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test"));
    std::filesystem::remove_all(dir_);
  }
  std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(LogTest, WritesPatternToFile) {
  LogOptions o;
  o.name = "supervisor";
  o.file = dir_ + "/forge.log";
  o.console = false;
  ASSERT_TRUE(SetupLogging(o).ok());
  spdlog::info("hello {}", 42);
  spdlog::warn("careful");
  std::string text = Slurp(o.file);
  EXPECT_THAT(text, HasSubstr("info supervisor[" + std::to_string(getpid()) + "]: hello 42\n"));
  EXPECT_THAT(text, HasSubstr("warning supervisor["));
  // Starts with an ISO date: "YYYY-MM-DDTHH:MM:SS.mmm".
  ASSERT_GE(text.size(), 23u);
  EXPECT_EQ(text[4], '-');
  EXPECT_EQ(text[10], 'T');
  EXPECT_EQ(text[19], '.');
}

TEST_F(LogTest, LevelFilters) {
  LogOptions o;
  o.file = dir_ + "/forge.log";
  o.console = false;
  o.level = spdlog::level::warn;
  ASSERT_TRUE(SetupLogging(o).ok());
  spdlog::info("quiet");
  spdlog::error("loud");
  std::string text = Slurp(o.file);
  EXPECT_THAT(text, Not(HasSubstr("quiet")));
  EXPECT_THAT(text, HasSubstr("loud"));
}

TEST_F(LogTest, RotatesBySize) {
  LogOptions o;
  o.file = dir_ + "/forge.log";
  o.console = false;
  o.max_file_bytes = 2048;
  o.max_files = 2;
  ASSERT_TRUE(SetupLogging(o).ok());
  for (int i = 0; i < 200; ++i) spdlog::info("line {} {}", i, std::string(50, 'x'));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/forge.1.log"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/forge.2.log"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/forge.3.log"));
  EXPECT_LE(std::filesystem::file_size(o.file), 2048u);
  EXPECT_THAT(Slurp(o.file), HasSubstr("line 199 "));
}

// A message carries others' text (a control request's cmd, an agent's last
// line): each line of the log is its own, and one line of UTF-8, however
// the text was made.
TEST_F(LogTest, AMessageIsOneLineOfUtf8WithControlsAndBadBytesEscaped) {
  LogOptions o;
  o.name = "supervisor";
  o.file = dir_ + "/forge.log";
  o.console = false;
  ASSERT_TRUE(SetupLogging(o).ok());
  const std::string forged =
      "x\n2026-01-01T00:00:00.000+00:00 error supervisor[1]: FORGED LINE\x1b[31m";
  spdlog::info("control: {} refused", forged);
  spdlog::info("agent: {}", "\x1b]0;OSC\x07 tab\t cr\r del\x7f bad\xff\xc3 c1\xc2\x9b nul" +
                                std::string(1, '\0') + " ok \xc3\xa9\xe2\x82\xac");
  spdlog::info("plain {}", 1);
  const std::string text = Slurp(o.file);
  EXPECT_EQ(FindInvalidUtf8(text), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
  EXPECT_THAT(text, Not(HasSubstr("\nFORGED")));
  EXPECT_THAT(text, HasSubstr("]: control: x\\n2026-01-01T00:00:00.000+00:00 error supervisor[1]: "
                              "FORGED LINE\\x1b[31m refused\n"));
  EXPECT_THAT(text, HasSubstr("]: agent: \\x1b]0;OSC\\x07 tab\\t cr\\r del\\x7f bad\\xff\\xc3 "
                              "c1\\u009b nul\\x00 ok \xc3\xa9\xe2\x82\xac\n"));
  EXPECT_THAT(text, HasSubstr("]: plain 1\n"));
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    EXPECT_TRUE(c == '\n' || (b >= 0x20 && b != 0x7f)) << "raw byte " << int(b) << " in " << text;
  }
}

// An agent's last line with a right-to-left override would draw the rest of
// the log line reversed, in a terminal or a viewer: escaped, so it reads as
// the agent wrote it, with the override named.
TEST_F(LogTest, BidirectionalControlsInAMessageAreEscaped) {
  LogOptions o;
  o.name = "supervisor";
  o.file = dir_ + "/forge.log";
  o.console = false;
  ASSERT_TRUE(SetupLogging(o).ok());
  spdlog::info("t1 last line: {} (attempt 2)", "all tests \u202Edeliaf\u202C \u2067x\u2069 ok");
  const std::string text = Slurp(o.file);
  EXPECT_THAT(text, HasSubstr("]: t1 last line: all tests \\u202edeliaf\\u202c \\u2067x\\u2069 "
                              "ok (attempt 2)\n"));
  EXPECT_THAT(text, Not(HasSubstr("\u202E")));
}

TEST_F(LogTest, UnopenableFileIsAnErrorNamingThePath) {
  LogOptions o;
  // spdlog creates missing directories, so block it with a regular file.
  std::ofstream(dir_ + "/not-a-dir") << "x";
  o.file = dir_ + "/not-a-dir/forge.log";
  o.console = true;
  Status s = SetupLogging(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kIo);
  EXPECT_THAT(s.error().message, HasSubstr(o.file));
  // The console sink is still installed.
  ASSERT_EQ(spdlog::default_logger()->sinks().size(), 1u);
  EXPECT_EQ(spdlog::default_logger()->name(), "forge");
}

}  // namespace
}  // namespace forge
