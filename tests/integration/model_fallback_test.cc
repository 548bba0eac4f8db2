// agent.fallback_model end to end: a claude-format fake agent that answers
// "overloaded" (API status 529) unless it runs on the fallback model.
#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;

TEST(ModelFallback, TheAttemptAfterAnOverloadedModelUsesTheFallback) {
  ForgeOptions o;
  o.workers = 1;
  o.profile = "claude";
  o.agent_yaml = "  model: primary-m\n  fallback_model: backup-m\n";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("overloaded", {{"FAKE_FALLBACK", "backup-m"}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].model, "primary-m");
  EXPECT_EQ(attempts[0].outcome, "failed");
  EXPECT_NE(attempts[0].error.find("529"), std::string::npos) << attempts[0].error;
  EXPECT_EQ(attempts[1].model, "backup-m");
  EXPECT_EQ(attempts[1].outcome, "passed");
  auto failures = forge.Events(id, "attempt.model_failure");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].attempt, 1);
  EXPECT_EQ(failures[0].payload["model"], "primary-m");
  auto fallbacks = forge.Events(id, "attempt.model_fallback");
  ASSERT_EQ(fallbacks.size(), 1u);
  EXPECT_EQ(fallbacks[0].attempt, 2);
  EXPECT_EQ(fallbacks[0].payload["model"], "backup-m");
  EXPECT_EQ(fallbacks[0].payload["instead_of"], "primary-m");
}

TEST(ModelFallback, WithoutAFallbackTheSameModelIsRetried) {
  ForgeOptions o;
  o.workers = 1;
  o.profile = "claude";
  o.max_attempts = 2;
  o.agent_yaml = "  model: primary-m\n";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("overloaded", {{"FAKE_FALLBACK", "backup-m"}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  for (const auto& a : forge.Attempts(id)) EXPECT_EQ(a.model, "primary-m");
  EXPECT_TRUE(forge.Events(id, "attempt.model_fallback").empty());
}

}  // namespace
}  // namespace forge::itest
