#include "critic/findings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace forge::critic {
namespace {

using ::testing::HasSubstr;

TEST(ParseCriticReport, TakesTheLastJsonLine) {
  auto r = ParseCriticReport(
      "The change looks fine overall.\n"
      "{\"overall\":\"request_changes\",\"findings\":[{\"severity\":\"sev3\",\"category\":"
      "\"style\",\"file\":\"a.cc\",\"line\":12,\"message\":\"long line\"},{\"severity\":\"sev2\","
      "\"category\":\"tests\",\"message\":\"no test\"}]}\n\n");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->overall, "request_changes");
  ASSERT_EQ(r->findings.size(), 2u);
  EXPECT_EQ(r->findings[0].file, "a.cc");
  EXPECT_EQ(r->findings[0].line, 12);
  EXPECT_EQ(r->findings[1].severity, "sev2");
  EXPECT_EQ(r->findings[1].file, "");
  EXPECT_EQ(r->findings[1].line, 0);
}

TEST(ParseCriticReport, SkipsAClosingFence) {
  auto r = ParseCriticReport("```json\n{\"overall\":\"approve\",\"findings\":[]}\n```\n");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->overall, "approve");
}

TEST(ParseCriticReport, ErrorsNameTheProblem) {
  auto empty = ParseCriticReport("  \n");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.error().message, HasSubstr("empty"));

  auto prose = ParseCriticReport("{\"overall\":\"approve\"}\nLooks good to me!");
  ASSERT_FALSE(prose.ok());
  EXPECT_THAT(prose.error().message, HasSubstr("does not end with a JSON object line"));
  EXPECT_THAT(prose.error().message, HasSubstr("Looks good to me!"));

  auto overall = ParseCriticReport(R"({"overall":"lgtm","findings":[]})");
  ASSERT_FALSE(overall.ok());
  EXPECT_THAT(overall.error().message, HasSubstr("overall 'lgtm' is not one of"));

  auto missing = ParseCriticReport(R"({"findings":[]})");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("'overall' is missing"));

  auto sev = ParseCriticReport(
      R"({"overall":"approve","findings":[{"severity":"sev3","category":"docs","message":"x"},{"severity":"high","category":"docs","message":"y"}]})");
  ASSERT_FALSE(sev.ok());
  EXPECT_THAT(sev.error().message, HasSubstr("finding 2: severity 'high'"));

  auto cat = ParseCriticReport(
      R"({"overall":"approve","findings":[{"severity":"sev3","category":"vibes","message":"x"}]})");
  ASSERT_FALSE(cat.ok());
  EXPECT_THAT(cat.error().message, HasSubstr("category 'vibes'"));

  auto line = ParseCriticReport(
      R"({"overall":"approve","findings":[{"severity":"sev3","category":"docs","message":"x","line":"7"}]})");
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(line.error().message, HasSubstr("'line' must be an integer"));

  for (const char* huge : {"4294967303", "18446744073709551615", "-2147483649"}) {
    auto wide = ParseCriticReport(
        std::string(R"({"overall":"approve","findings":[{"severity":"sev3","category":"docs",)") +
        R"("message":"x","line":)" + huge + "}]}");
    ASSERT_FALSE(wide.ok()) << huge;
    EXPECT_THAT(wide.error().message, HasSubstr("'line' is out of range")) << huge;
  }

  auto notarray = ParseCriticReport(R"({"overall":"approve","findings":{}})");
  ASSERT_FALSE(notarray.ok());
  EXPECT_THAT(notarray.error().message, HasSubstr("'findings' must be an array"));
}

CriticReport Report(std::string overall, std::vector<std::string> severities) {
  CriticReport r;
  r.overall = std::move(overall);
  for (auto& s : severities) r.findings.push_back({s, "correctness", "f.cc", 3, "problem " + s});
  return r;
}

TEST(Decide, Rules) {
  EXPECT_TRUE(Decide(Report("approve", {})).pass);
  EXPECT_TRUE(Decide(Report("approve", {"sev2", "sev3"})).pass);
  EXPECT_TRUE(Decide(Report("request_changes", {"sev3"})).pass);
  Decision sev2 = Decide(Report("request_changes", {"sev3", "sev2"}));
  EXPECT_FALSE(sev2.pass);
  EXPECT_THAT(sev2.reason, HasSubstr("sev2 correctness at f.cc:3: problem sev2"));
  Decision sev1 = Decide(Report("approve", {"sev1"}));
  EXPECT_FALSE(sev1.pass);
  EXPECT_THAT(sev1.reason, HasSubstr("problem sev1"));
  Decision block = Decide(Report("block", {}));
  EXPECT_FALSE(block.pass);
  EXPECT_THAT(block.reason, HasSubstr("blocked"));
}

}  // namespace
}  // namespace forge::critic
