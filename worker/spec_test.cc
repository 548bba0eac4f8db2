#include "worker/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace forge::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char* kFullSpec =
    "## Problem\nThe parser drops the last token.\n\n"
    "## Acceptance criteria\n1. `parse(\"a b\")` returns two tokens.\n\n"
    "## Test matrix\n- empty input\n- one token\n\n"
    "## Out of scope\nThe lexer.\n\n"
    "## File pointers\n- parser.cc: Parse()\n";

TEST(Spec, CompleteSpecHasNothingMissing) {
  EXPECT_TRUE(MissingSpecSections(kFullSpec).empty());
}

TEST(Spec, HeadingLevelCaseAndTrailingPunctuationDoNotMatter) {
  std::string spec =
      "# PROBLEM\nx\n### acceptance criteria:\nx\n## Test Matrix ##\nx\n"
      "#### Out of scope\nx\n## File pointers\nx\n";
  EXPECT_TRUE(MissingSpecSections(spec).empty());
}

TEST(Spec, MissingSectionsAreNamedInOrder) {
  std::string spec = "## Problem\nx\n## Acceptance criteria\nx\n## File pointers\nx\n";
  EXPECT_THAT(MissingSpecSections(spec), ElementsAre("Test matrix", "Out of scope"));
  auto r = ExtractSpec(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("missing required sections 'Test matrix', "
                                           "'Out of scope'"));
}

TEST(Spec, SectionNamesInProseOrCodeDoNotCount) {
  std::string spec =
      "The Problem is below.\n##Problem\n- Test matrix\n  ## Acceptance criteria\n"
      "#######  Out of scope\n";
  // "##Problem" lacks the space, "- Test matrix" is a list item, 7 hashes is
  // not a heading; an indented heading still is one.
  EXPECT_THAT(MissingSpecSections(spec),
              ElementsAre("Problem", "Test matrix", "Out of scope", "File pointers"));
}

TEST(Spec, ExtractDropsChatterBeforeTheFirstSection) {
  auto r = ExtractSpec(std::string("Sure! Here is the spec.\n\n") + kFullSpec + "\n\n");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, kFullSpec);
}

TEST(Spec, OversizeSpecIsRefused) {
  std::string big = std::string(kFullSpec) + std::string(2000, 'x');
  auto r = ExtractSpec(big, 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("over the limit of 1000"));
}

TEST(Spec, EmptyTextMissesEverything) {
  EXPECT_EQ(MissingSpecSections("").size(), RequiredSpecSections().size());
  EXPECT_FALSE(ExtractSpec("").ok());
}

}  // namespace
}  // namespace forge::worker
