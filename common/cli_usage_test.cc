#include "common/cli_usage.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace forge {
namespace {

// The message a parse of `args` (after the program name) ends with, or ""
// when it parsed.
std::string ParseMessage(std::vector<std::string> args) {
  CLI::App app{"test"};
  app.require_subcommand(1);
  std::string dir, name;
  app.add_option("--dir", dir);
  app.add_option("--name", name)->check(NonEmpty());
  app.add_subcommand("start", "");
  app.add_subcommand("check", "")->add_flag("--quick");
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    RefuseEmptyEqualsValues(static_cast<int>(argv.size()), argv.data());
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return UsageError(app, e);
  }
  return "";
}

TEST(CliUsage, AMistypedCommandIsNamedWithTheCommandsThereAre) {
  EXPECT_EQ(ParseMessage({"strat"}), "unknown command 'strat' (commands: start, check)");
  EXPECT_EQ(ParseMessage({"--dir", "d", "strat"}),
            "unknown command 'strat' (commands: start, check)");
}

TEST(CliUsage, NoCommandAndAnUnknownLeadingFlagAreToldApart) {
  EXPECT_EQ(ParseMessage({}), "no command given (commands: start, check)");
  EXPECT_EQ(ParseMessage({"--dir", "d"}), "no command given (commands: start, check)");
  EXPECT_EQ(ParseMessage({"--verbose"}), "unknown flag '--verbose'");
}

TEST(CliUsage, OtherErrorsKeepCli11sMessage) {
  EXPECT_EQ(ParseMessage({"start"}), "");
  EXPECT_EQ(ParseMessage({"--dir"}), "--dir: 1 required TEXT missing");
  EXPECT_EQ(ParseMessage({"check", "--slow"}), "The following argument was not expected: --slow");
}

TEST(CliUsage, AnIntegerOutsideItsRangeOrNotDecimalIsNamed) {
  CLI::App app{"test"};
  int64_t n = 0;
  app.add_option("--n", n)->check(IntegerIn(1, 100));
  auto parse = [&](std::vector<std::string> args) -> std::string {
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::ParseError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(parse({"--n", "100"}), "");
  EXPECT_EQ(n, 100);
  for (std::string bad : {"101", "0", "99999999999999999999", "0x10", " 5", "5 ", "+5", "1.5"}) {
    EXPECT_EQ(parse({"--n", bad}), "--n: must be an integer from 1 to 100, got '" + bad + "'")
        << bad;
  }
}

TEST(CliUsage, AnEmptyValueOfANonEmptyOptionIsNamed) {
  EXPECT_EQ(ParseMessage({"--name", "", "start"}), "--name: must not be empty");
  EXPECT_EQ(ParseMessage({"--name", "x", "start"}), "");
  EXPECT_EQ(ParseMessage({"--dir", "", "start"}), "");  // no check: CLI11 takes ""
  // "--name=" would take the next argument as its value: refused whatever
  // comes next, for any option.
  EXPECT_EQ(ParseMessage({"--name=", "start"}), "--name: must not be empty");
  EXPECT_EQ(ParseMessage({"check", "--dir=", "--quick"}), "--dir: must not be empty");
  EXPECT_EQ(ParseMessage({"--dir=x=", "start"}), "");  // a value that ends in '='
  EXPECT_EQ(ParseMessage({"--name=x", "start"}), "");
}

}  // namespace
}  // namespace forge
