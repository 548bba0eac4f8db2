// What real agents print reaches the attempts ledger: a fake agent emitting
// Claude Code's JSON result or Codex's JSONL events, run through the claude
// and codex profiles by the real binaries. And a broken brief template blocks
// the task with an error naming the template and its line.
#include <gmock/gmock.h>

#include <filesystem>
#include <fstream>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;

TEST(AgentFormats, ClaudeResultObjectLandsInTheLedger) {
  ForgeOptions o;
  o.profile = "claude";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("claude_json");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_DOUBLE_EQ(attempts[0].cost_usd, 0.4213);
  EXPECT_EQ(attempts[0].tokens_in, 1200);
  EXPECT_EQ(attempts[0].tokens_out, 340);
  EXPECT_EQ(attempts[0].num_turns, 7);
  EXPECT_EQ(attempts[0].session_id, "sess-claude-1");
  proto::TaskInfo t = forge.Task(id);
  EXPECT_DOUBLE_EQ(t.cost_usd, 0.4213);
  EXPECT_EQ(t.tokens_in, 1200);
  EXPECT_EQ(t.tokens_out, 340);
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

TEST(AgentFormats, CodexEventsAreSummedIntoTheLedger) {
  ForgeOptions o;
  o.profile = "codex";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("codex_jsonl");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].tokens_in, 750);
  EXPECT_EQ(attempts[0].tokens_out, 100);
  EXPECT_EQ(attempts[0].num_turns, 2);
  EXPECT_EQ(attempts[0].session_id, "thread-codex-1");
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

TEST(AgentFormats, BrokenBriefTemplateBlocksNamingTheTemplateAndLine) {
  Forge forge;
  forge.Start();
  // The operator's override in <state>/briefs/ wins over the installed one.
  std::filesystem::create_directories(forge.state_dir() + "/briefs");
  std::ofstream(forge.state_dir() + "/briefs/worker.mustache")
      << "# {{task.title}}\n\n{{#verify}}\n- {{command}}\n";  // section never closed
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  proto::TaskInfo t = forge.Task(id);
  EXPECT_THAT(t.last_error, HasSubstr("worker.mustache"));
  EXPECT_THAT(t.last_error, HasSubstr("line"));
  EXPECT_EQ(forge.Attempts(id).size(), 1u);  // not retryable: blocked at once
  EXPECT_TRUE(forge.Runs().empty());         // the agent never ran
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

}  // namespace
}  // namespace forge::itest
