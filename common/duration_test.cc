#include "common/duration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace forge {
namespace {

using ::testing::HasSubstr;

TEST(ParseDuration, AcceptsEveryUnit) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  for (const Case& c :
       {Case{"250ms", 250}, Case{"30s", 30000}, Case{"10m", 600000}, Case{"2h", 7200000},
        Case{"7d", 604800000}, Case{"0", 0}, Case{"0s", 0}, Case{"007s", 7000}, Case{"1ms", 1}}) {
    auto d = ParseDuration(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.error().ToString();
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
}

std::string ErrorOf(std::string_view text) {
  auto d = ParseDuration(text);
  EXPECT_FALSE(d.ok()) << text;
  if (d.ok()) return "";
  EXPECT_EQ(d.error().code, ErrorCode::kInvalid);
  return d.error().message;
}

TEST(ParseDuration, ErrorsNameTheText) {
  EXPECT_EQ(ErrorOf("abc"),
            "invalid duration 'abc': expected an integer followed by ms, s, m, h or d");
  EXPECT_EQ(ErrorOf(""), "invalid duration '': expected an integer followed by ms, s, m, h or d");
  EXPECT_EQ(ErrorOf("-5s"), "invalid duration '-5s': durations cannot be negative");
  EXPECT_THAT(ErrorOf("10"), HasSubstr("invalid duration '10': missing unit"));
  EXPECT_THAT(ErrorOf("10w"), HasSubstr("invalid duration '10w': unknown unit 'w'"));
  EXPECT_THAT(ErrorOf("1.5h"), HasSubstr("unknown unit '.5h'"));
  EXPECT_THAT(ErrorOf("30 s"), HasSubstr("unknown unit ' s'"));
  EXPECT_THAT(ErrorOf("5S"), HasSubstr("unknown unit 'S'"));
  EXPECT_THAT(ErrorOf("s"), HasSubstr("invalid duration 's'"));
}

TEST(ParseDuration, Overflow) {
  EXPECT_EQ(ErrorOf("99999999999999999999ms"),
            "invalid duration '99999999999999999999ms': too large");
  EXPECT_EQ(ErrorOf("9223372036854775807d"), "invalid duration '9223372036854775807d': too large");
  auto max = ParseDuration("9223372036854775807ms");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->count(), INT64_MAX);
}

TEST(FormatDuration, ShortestExactForm) {
  EXPECT_EQ(FormatDuration(Millis(0)), "0");
  EXPECT_EQ(FormatDuration(Millis(250)), "250ms");
  EXPECT_EQ(FormatDuration(Millis(90000)), "90s");
  EXPECT_EQ(FormatDuration(Millis(5400000)), "90m");
  EXPECT_EQ(FormatDuration(Millis(7200000)), "2h");
  EXPECT_EQ(FormatDuration(Millis(604800000)), "7d");
  EXPECT_EQ(FormatDuration(Millis(1001)), "1001ms");
  EXPECT_EQ(FormatDuration(Millis(-30000)), "-30s");
}

TEST(FormatDuration, RoundTripsThroughParse) {
  for (int64_t ms :
       {int64_t{1}, int64_t{999}, int64_t{60000}, int64_t{86400000 * 3}, int64_t{123456789}}) {
    auto back = ParseDuration(FormatDuration(Millis(ms)));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->count(), ms);
  }
}

}  // namespace
}  // namespace forge
