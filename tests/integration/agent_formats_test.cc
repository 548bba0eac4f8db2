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
  EXPECT_EQ(attempts[0].cost_usd, 0);  // codex reports no cost, and no prices are set
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

// With budget.token_prices, codex's tokens are priced, so the budgets bound
// it: 750 in at $1,000 and 100 out at $2,000 a million are $0.95 a task.
TEST(AgentFormats, CodexTokensArePricedAndCountAgainstTheDailyBudget) {
  ForgeOptions o;
  o.profile = "codex";
  o.workers = 1;
  o.daily_usd = 1.0;
  o.token_prices = "{input: 1000, output: 2000}";
  Forge forge(o);
  forge.Start();
  std::string a = forge.Submit("codex_jsonl");
  ASSERT_TRUE(forge.WaitState(a, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_NEAR(forge.Attempts(a).at(0).cost_usd, 0.95, 1e-9);
  EXPECT_NEAR(forge.Task(a).cost_usd, 0.95, 1e-9);
  bool marked = false;
  for (const auto& e : forge.Events(a)) {
    if (e.kind == "attempt.result") marked = e.payload.value("cost_estimated", false);
  }
  EXPECT_TRUE(marked) << "attempt.result does not say its cost is an estimate";
  EXPECT_FALSE(forge.PausedBy("budget"));
  std::string b = forge.Submit("codex_jsonl");
  ASSERT_TRUE(forge.WaitState(b, TaskState::kDone)) << forge.SupervisorLog();
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("budget"); }, 2000)) << forge.Status().dump();
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 1.9, 1e-6);
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
