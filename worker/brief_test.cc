#include "worker/brief.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <kainjow/mustache.hpp>

#include "worker/test_supervisor.h"

namespace forge::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

proto::Dispatch SampleDispatch() {
  proto::Dispatch d;
  d.attempt_id = 3;
  d.n = 3;
  d.task.id = "fix-parser";
  d.task.title = "Fix the parser";
  d.task.verify = {"make test", "./lint.sh <src>"};
  d.brief = "The parser drops the last token & more.";
  d.workspace = "/state/workspaces/fix-parser";
  for (int n = 1; n <= 7; ++n) {
    proto::AttemptSummary s;
    s.n = n;
    s.outcome = n == 7 ? "rejected" : "failed";
    s.error = "error of attempt " + std::to_string(n);
    if (n == 7) {
      proto::CheckResult c;
      c.name = "make test";
      c.exit_code = 2;
      c.output_tail = "FAIL: test_last_token\nexpected 3 got 2";
      s.failing_checks.push_back(c);
      s.findings.push_back({"sev2", "tests", "parser.cc", 42, "no test for empty input"});
    }
    d.history.push_back(s);
  }
  return d;
}

std::string DefaultBrief(const proto::Dispatch& d) {
  BriefDirs dirs;
  dirs.source_dir = FORGE_SOURCE_DIR;
  auto r = RenderWorkerBrief(dirs, d);
  EXPECT_TRUE(r.ok()) << r.error().ToString();
  return r.ok() ? *r : "";
}

TEST(WorkerBrief, CarriesTaskVerifyAndRules) {
  proto::Dispatch d = SampleDispatch();
  d.history.clear();
  std::string b = DefaultBrief(d);
  EXPECT_THAT(b, HasSubstr("Fix the parser"));
  EXPECT_THAT(b, HasSubstr("fix-parser"));
  // Plain text: no HTML escaping of the operator's words or commands.
  EXPECT_THAT(b, HasSubstr("The parser drops the last token & more."));
  EXPECT_THAT(b, HasSubstr("make test"));
  EXPECT_THAT(b, HasSubstr("./lint.sh <src>"));
  EXPECT_THAT(b, HasSubstr("/state/workspaces/fix-parser"));
  EXPECT_THAT(b, HasSubstr("Do not commit"));
  EXPECT_THAT(b, Not(HasSubstr("Previous attempts")));
}

TEST(WorkerBrief, RetryCarriesTheLastFiveAttempts) {
  proto::Dispatch d = SampleDispatch();
  proto::CheckResult killed;
  killed.name = "make bench";
  killed.exit_code = -1;
  killed.signal = 9;
  killed.timed_out = true;
  d.history.back().failing_checks.push_back(killed);
  std::string b = DefaultBrief(d);
  EXPECT_THAT(b, HasSubstr("`make bench` (killed by signal 9, timed out)"));
  EXPECT_THAT(b, HasSubstr("Previous attempts"));
  EXPECT_THAT(b, Not(HasSubstr("error of attempt 2")));
  for (int n = 3; n <= 7; ++n) EXPECT_THAT(b, HasSubstr("error of attempt " + std::to_string(n)));
  EXPECT_THAT(b, HasSubstr("Attempt 7: rejected"));
  EXPECT_THAT(b, HasSubstr("`make test` (exit 2)"));
  EXPECT_THAT(b, HasSubstr("FAIL: test_last_token\nexpected 3 got 2"));
  EXPECT_THAT(b, HasSubstr("[sev2 tests] parser.cc:42: no test for empty input"));
}

// Every key of the brief's data (brief.h), at every level, and its truthiness.
const char* const kEveryField =
    "{{task.id}}|{{task.title}}|{{task.brief}}|{{attempt}}|{{workspace}}|"
    "{{#has_verify}}V{{/has_verify}}{{^has_verify}}v{{/has_verify}}|"
    "{{#verify}}<{{command}}>{{/verify}}|{{#retry}}R{{/retry}}{{^retry}}r{{/retry}}|"
    "{{#history}}[{{n}} {{outcome}} {{#error}}e={{error}}{{/error}} "
    "{{#has_failing_checks}}C{{/has_failing_checks}}{{^has_failing_checks}}c{{/has_failing_checks}}"
    "{{#failing_checks}}({{name}} {{exit_code}} s={{signal}}{{#signal}}!{{/signal}} "
    "{{#timed_out}}T{{/timed_out}}{{^timed_out}}t{{/timed_out}} {{output_tail}}){{/failing_checks}}"
    "{{#has_findings}}F{{/has_findings}}{{^has_findings}}f{{/has_findings}}"
    "{{#findings}}({{severity}} {{category}} {{file}}{{#file}}!{{/file}} "
    "{{line}}{{#line}}!{{/line}}"
    " {{message}}){{/findings}}]{{/history}}";

TEST(WorkerBrief, TemplatesSeeEveryKey) {
  char tmpl[] = "/tmp/forge-brief-data-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::filesystem::create_directories(dir + "/briefs");
  forge::testing::WriteExecutable(dir + "/briefs/worker.mustache", kEveryField);
  BriefDirs dirs;
  dirs.briefs_dir = dir + "/briefs";
  proto::Dispatch retried = SampleDispatch();
  proto::CheckResult killed;
  killed.name = "slow";
  killed.exit_code = -1;
  killed.signal = 9;
  killed.timed_out = true;
  retried.history.back().failing_checks.push_back(killed);
  retried.history.back().findings.push_back({"sev3", "style", "", 0, "no file"});
  proto::Dispatch first = SampleDispatch();
  first.history.clear();
  first.task.verify.clear();
  first.brief.clear();
  first.task.brief = "the task's own brief";
  // The last five attempts; an empty string is false in a section (s= and
  // the last finding's file and line).
  const std::string retried_text =
      "fix-parser|Fix the parser|The parser drops the last token & more.|3|"
      "/state/workspaces/fix-parser|V|<make test><./lint.sh <src>>|R|"
      "[3 failed e=error of attempt 3 cf][4 failed e=error of attempt 4 cf]"
      "[5 failed e=error of attempt 5 cf][6 failed e=error of attempt 6 cf]"
      "[7 rejected e=error of attempt 7 C(make test 2 s= t FAIL: test_last_token\nexpected 3 got 2)"
      "(slow -1 s=9! T )F(sev2 tests parser.cc! 42! no test for empty input)"
      "(sev3 style   no file)]";
  const std::string first_text =
      "fix-parser|Fix the parser|the task's own brief|3|/state/workspaces/fix-parser|v||r|";
  TemplateCache cache;
  EXPECT_EQ(RenderWorkerBrief(dirs, retried, &cache).value(), retried_text);
  EXPECT_EQ(RenderWorkerBrief(dirs, first, &cache).value(), first_text);
  EXPECT_EQ(RenderWorkerBrief(dirs, retried).value(), retried_text);  // without a cache
  std::filesystem::remove_all(dir);
}

TEST(WorkerBrief, WhatIsEmptyIsLeftOut) {
  proto::Dispatch d = SampleDispatch();
  d.history.resize(1);
  d.history[0].error.clear();  // e.g. a rejection whose findings say it all
  d.history[0].findings.push_back({"sev3", "style", "", 0, "names are unclear"});
  d.history[0].findings.push_back({"sev2", "bug", "a.cc", 0, "off by one"});
  std::string b = DefaultBrief(d);
  EXPECT_THAT(b, HasSubstr("### Attempt 1: failed\n"));
  EXPECT_THAT(b, Not(HasSubstr("Error:")));
  EXPECT_THAT(b, HasSubstr("- [sev3 style] names are unclear\n"));
  EXPECT_THAT(b, HasSubstr("- [sev2 bug] a.cc: off by one\n"));
}

// Names are looked up as kainjow's own context does (brief.cc has its own,
// for speed): the innermost section first, a dotted name resolved whole in
// one data or else in the next one out, and split as kainjow splits it
// ("a..b" has an empty part, "a." none).
TEST(WorkerBrief, NamesResolveAsInKainjowsOwnContext) {
  const std::string text =
      "{{a.b}}|{{#list}}[{{a.b}}/{{x.y}}/{{.}}]{{/list}}|{{a..b}}|{{a.}}|{{.a}}|"
      "{{#o}}{{a.b}}{{p.q}}{{/o}}|{{#a}}{{b}}{{/a}}|{{^a.c}}no a.c{{/a.c}}";
  const nlohmann::json json_data = {
      {"a", {{"b", "AB"}, {"", {{"b", "A_B"}}}}},
      {"list", {{{"x", {{"y", "XY"}}}, {"a", {{"c", "no b"}}}}, {{"a", {{"b", "inner"}}}}, "str"}},
      {"o", {{"p", {{"q", "PQ"}}}}},
      {"", {{"a", "_A"}}}};
  namespace mst = kainjow::mustache;
  mst::data a_empty{mst::data::type::object};
  a_empty.set("b", mst::data{"A_B"});
  mst::data a{mst::data::type::object};
  a.set("b", mst::data{"AB"});
  a.set("", a_empty);
  mst::data x{mst::data::type::object};
  x.set("y", mst::data{"XY"});
  mst::data no_b{mst::data::type::object};
  no_b.set("c", mst::data{"no b"});
  mst::data item1{mst::data::type::object};
  item1.set("x", x);
  item1.set("a", no_b);
  mst::data inner_a{mst::data::type::object};
  inner_a.set("b", mst::data{"inner"});
  mst::data item2{mst::data::type::object};
  item2.set("a", inner_a);
  mst::data list{mst::data::type::list};
  list.push_back(item1);
  list.push_back(item2);
  list.push_back(mst::data{"str"});
  mst::data p{mst::data::type::object};
  p.set("q", mst::data{"PQ"});
  mst::data o{mst::data::type::object};
  o.set("p", p);
  mst::data empty_a{mst::data::type::object};
  empty_a.set("a", mst::data{"_A"});
  mst::data data{mst::data::type::object};
  data.set("a", a);
  data.set("list", list);
  data.set("o", o);
  data.set("", empty_a);
  mst::mustache kainjow_own(text);
  ASSERT_TRUE(kainjow_own.is_valid());
  const std::string expected = kainjow_own.render(data);
  EXPECT_EQ(expected, "AB|[AB/XY/][inner//][AB//str]|A_B||_A|ABPQ|AB|no a.c");
  EXPECT_EQ(RenderTemplate("t", text, json_data).value(), expected);
}

TEST(WorkerBrief, TemplateErrorNamesTheTemplateAndLine) {
  auto r = RenderTemplate("my.mustache", "line one\nline two {{#open}}\nthree\n", nlohmann::json{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConfig);
  EXPECT_THAT(r.error().message, HasSubstr("'my.mustache' line 2"));
  EXPECT_THAT(r.error().message, HasSubstr("Unclosed section"));
  auto r2 = RenderTemplate("t", "a\nb\nc {{/x}}", nlohmann::json{});
  ASSERT_FALSE(r2.ok());
  EXPECT_THAT(r2.error().message, HasSubstr("line 3"));
}

TEST(WorkerBrief, StateDirOverridesTheInstalledTemplate) {
  char tmpl[] = "/tmp/forge-brief-test-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::filesystem::create_directories(dir + "/state/briefs");
  std::filesystem::create_directories(dir + "/installed");
  forge::testing::WriteExecutable(dir + "/installed/worker.mustache", "installed {{task.id}}");
  BriefDirs dirs{dir + "/state", dir + "/installed", FORGE_SOURCE_DIR};
  EXPECT_EQ(FindTemplate(dirs, "worker.mustache").value(), dir + "/installed/worker.mustache");
  EXPECT_EQ(RenderWorkerBrief(dirs, SampleDispatch()).value(), "installed fix-parser");
  forge::testing::WriteExecutable(dir + "/state/briefs/worker.mustache", "override {{task.title}}");
  EXPECT_EQ(RenderWorkerBrief(dirs, SampleDispatch()).value(), "override Fix the parser");
  std::filesystem::remove_all(dir);
}

TEST(TemplateCache, ParsesOnceAndRendersEachDispatchsOwnData) {
  TemplateCache cache;
  BriefDirs dirs;
  dirs.source_dir = FORGE_SOURCE_DIR;
  proto::Dispatch a = SampleDispatch();
  proto::Dispatch b = SampleDispatch();
  b.task.id = "other-task";
  b.task.title = "Another title";
  b.history.clear();
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(RenderWorkerBrief(dirs, a, &cache).value(), DefaultBrief(a));
    EXPECT_EQ(RenderWorkerBrief(dirs, b, &cache).value(), DefaultBrief(b));
  }
  EXPECT_EQ(cache.parses(), 1);
  b.task.kind = "expand";  // po.mustache: a second template, parsed once too
  EXPECT_EQ(RenderWorkerBrief(dirs, b, &cache).value(), DefaultBrief(b));
  EXPECT_EQ(RenderWorkerBrief(dirs, b, &cache).value(), DefaultBrief(b));
  EXPECT_EQ(cache.parses(), 2);
}

TEST(TemplateCache, AnEditedTemplateIsParsedAgainEvenWithinOneClockTick) {
  char tmpl[] = "/tmp/forge-brief-cache-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::filesystem::create_directories(dir + "/briefs");
  const std::string path = dir + "/briefs/worker.mustache";
  BriefDirs dirs{dir, "", ""};
  TemplateCache cache;
  forge::testing::WriteExecutable(path, "one {{task.id}}");
  EXPECT_EQ(RenderWorkerBrief(dirs, SampleDispatch(), &cache).value(), "one fix-parser");
  // Same size, same second: only the text tells them apart.
  forge::testing::WriteExecutable(path, "two {{task.id}}");
  EXPECT_EQ(RenderWorkerBrief(dirs, SampleDispatch(), &cache).value(), "two fix-parser");
  EXPECT_EQ(cache.parses(), 2);

  // A broken edit is an error naming the template and line, every time, and
  // the fixed template renders again.
  forge::testing::WriteExecutable(path, "x\n{{#open}}");
  for (int i = 0; i < 2; ++i) {
    auto r = RenderWorkerBrief(dirs, SampleDispatch(), &cache);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kConfig);
    EXPECT_THAT(r.error().message, HasSubstr("'" + path + "'"));
    EXPECT_THAT(r.error().message, HasSubstr("Unclosed section"));
  }
  forge::testing::WriteExecutable(path, "three {{task.id}}");
  EXPECT_EQ(RenderWorkerBrief(dirs, SampleDispatch(), &cache).value(), "three fix-parser");

  std::filesystem::remove(path);
  auto gone = RenderWorkerBrief(dirs, SampleDispatch(), &cache);
  ASSERT_FALSE(gone.ok());
  std::filesystem::remove_all(dir);
}

TEST(PoBrief, ExpandTaskGetsThePoBriefWithTheIssueAndPreviousErrors) {
  proto::Dispatch d = SampleDispatch();
  d.task.kind = "expand";
  EXPECT_EQ(BriefTemplateFor(d.task), "po.mustache");
  std::string brief = DefaultBrief(d);
  EXPECT_THAT(brief, HasSubstr("Write a specification: Fix the parser"));
  EXPECT_THAT(brief, HasSubstr("The parser drops the last token & more."));
  for (const char* section : {"## Problem", "## Acceptance criteria", "## Test matrix",
                              "## Out of scope", "## File pointers"}) {
    EXPECT_THAT(brief, HasSubstr(section));
  }
  EXPECT_THAT(brief, HasSubstr("Attempt 7 (rejected): error of attempt 7"));
  EXPECT_THAT(brief, Not(HasSubstr("Workspace rules")));
  d.task.kind = "work";
  EXPECT_EQ(BriefTemplateFor(d.task), "worker.mustache");
}

TEST(WorkerBrief, MissingTemplateListsWhereItLooked) {
  BriefDirs dirs{"/nonexistent/state", "/nonexistent/installed", ""};
  auto r = FindTemplate(dirs, "worker.mustache");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("/nonexistent/state/briefs"));
  EXPECT_THAT(r.error().message, HasSubstr("/nonexistent/installed"));
}

}  // namespace
}  // namespace forge::worker
