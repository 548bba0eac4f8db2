// Spec expansion end to end: an `expand` task's agent writes a spec with the
// PO brief; a spec missing a section fails the attempt naming it; a complete
// spec becomes a new task that runs only after `approve`.
#include <gmock/gmock.h>

#include <fstream>
#include <sstream>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json ExpandTask(const std::string& title) {
  return json{{"title", title},
              {"brief", "Add a greeting to greet.sh."},
              {"kind", "expand"},
              {"verify", json::array({"true"})}};
}

bool RanTask(Forge& forge, const std::string& id) {
  for (const auto& run : forge.Runs()) {
    if (run.rfind(id + " ", 0) == 0) return true;
  }
  return false;
}

TEST(Expand, SpecMissingASectionIsRetriedThenBecomesATaskThatWaitsForApproval) {
  Forge forge;
  forge.Start();
  std::string expand = forge.Submit("spec", {{"FAKE_FAILS", "1"}}, ExpandTask("Greet the user"));
  ASSERT_TRUE(forge.WaitState(expand, TaskState::kDone)) << forge.SupervisorLog();

  auto attempts = forge.Attempts(expand);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, "failed");
  EXPECT_THAT(attempts[0].error, HasSubstr("missing required section 'Test matrix'"));
  EXPECT_EQ(attempts[1].outcome, "passed");

  // Both attempts were briefed as a product owner; the retry names what was missing.
  std::string first = Slurp(forge.fake_state() + "/prompt." + expand + ".1");
  EXPECT_THAT(first, HasSubstr("Write a specification: Greet the user"));
  EXPECT_THAT(first, HasSubstr("Add a greeting to greet.sh."));
  std::string retry = Slurp(forge.fake_state() + "/prompt." + expand + ".2");
  EXPECT_THAT(retry, HasSubstr("Attempt 1 (failed): the spec is missing required section "
                               "'Test matrix'"));

  // The spec became a new task, gated on approval, carrying the spec as its brief.
  std::string spec_task;
  for (const auto& e : forge.Events(expand)) {
    if (e.kind == "task.expanded") spec_task = e.payload["spec_task"].get<std::string>();
  }
  ASSERT_FALSE(spec_task.empty()) << "no task.expanded event";
  proto::TaskInfo t = forge.Task(spec_task);
  EXPECT_EQ(t.parent, expand);
  EXPECT_EQ(t.kind, "work");
  EXPECT_EQ(t.title, "Greet the user");
  EXPECT_THAT(t.brief, StartsWith("## Problem\nThe greeting is missing."));
  EXPECT_THAT(t.brief, HasSubstr("## Test matrix"));
  EXPECT_EQ(t.verify, std::vector<std::string>{"true"});
  EXPECT_TRUE(t.needs_approval);
  EXPECT_EQ(t.state, TaskState::kPending);
  EXPECT_FALSE(RanTask(forge, spec_task));
  EXPECT_TRUE(forge.Attempts(spec_task).empty());

  auto approved = forge.ctl().Call("approve", json{{"id", spec_task}});
  ASSERT_TRUE(approved.ok()) << approved.error().message;
  ASSERT_TRUE(forge.WaitState(spec_task, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_TRUE(RanTask(forge, spec_task));
  // The approved task was briefed as work, with the spec as its task.
  std::string work = Slurp(forge.fake_state() + "/prompt." + spec_task + ".1");
  EXPECT_THAT(work, HasSubstr("# Task " + spec_task + ": Greet the user"));
  EXPECT_THAT(work, HasSubstr("## Acceptance criteria\n1. greet prints hello"));
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

// An expand task queued before the store refused env names that are no
// variable's still expands: its spec task keeps the valid names only (the
// store would refuse the others, and the attempt would fail every time).
TEST(Expand, ATaskQueuedWithAnEnvNameNowRefusedStillExpands) {
  Forge forge;
  forge.Start();
  json task = ExpandTask("Greet the user");
  task["needs_approval"] = true;  // held until the row is rewritten
  std::string expand = forge.Submit("spec", {{"KEEP", "1"}}, task);
  ASSERT_FALSE(expand.empty());
  ASSERT_EQ(forge.Signal(SIGTERM).exit_code, 0);
  Sql(forge.state_dir() + "/forge.db",
      R"(UPDATE tasks SET env = '{"FAKE_MODE":"spec","KEEP":"1","A=B":"y"}' WHERE id = ')" +
          expand + "'");
  forge.Start();
  auto approved = forge.ctl().Call("approve", json{{"id", expand}});
  ASSERT_TRUE(approved.ok()) << approved.error().message;
  ASSERT_TRUE(forge.WaitState(expand, TaskState::kDone)) << forge.Task(expand).last_error << "\n"
                                                         << forge.SupervisorLog();
  std::string spec_task;
  for (const auto& e : forge.Events(expand)) {
    if (e.kind == "task.expanded") spec_task = e.payload["spec_task"].get<std::string>();
  }
  ASSERT_FALSE(spec_task.empty()) << "no task.expanded event";
  std::map<std::string, std::string> env = {{"FAKE_MODE", "spec"}, {"KEEP", "1"}};
  EXPECT_EQ(forge.Task(spec_task).env, env);
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

TEST(Expand, ASpecThatKeepsMissingASectionBlocksNamingIt) {
  Forge forge;
  forge.Start();
  std::string expand = forge.Submit("spec", {{"FAKE_FAILS", "99"}}, ExpandTask("Never complete"));
  ASSERT_TRUE(forge.WaitState(expand, TaskState::kBlocked)) << forge.SupervisorLog();
  proto::TaskInfo t = forge.Task(expand);
  EXPECT_THAT(t.last_error, HasSubstr("'Test matrix'"));
  EXPECT_EQ(forge.Attempts(expand).size(), 2u);  // the same failure twice
  EXPECT_FALSE(forge.HasEvent(expand, "task.expanded"));
  EXPECT_EQ(forge.db().ListTasks(store::ListFilter{}).value().size(), 1u);
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

}  // namespace
}  // namespace forge::itest
