#include "supervisor/job_limits.h"

#include <gtest/gtest.h>

#include <limits>

#include "common/git.h"

namespace forge::supervisor {
namespace {

constexpr int64_t kLock = 600'000;

proto::Review Checks(int n, int64_t timeout_ms) {
  proto::Review r;
  r.verify.assign(n, "true");
  r.verify_timeout_ms = timeout_ms;
  return r;
}

TEST(JobLimitsTest, AnAgentsOverrunIsTwoKillGracesAndTheMargin) {
  EXPECT_EQ(AgentOverrunMs(300), 600 + kJobOverrunMarginMs);
  EXPECT_EQ(AgentOverrunMs(0), kJobOverrunMarginMs);
}

TEST(JobLimitsTest, ADispatchHasTheLockWaitTheAgentsTimeoutAndItsOverrun) {
  proto::Dispatch d;
  d.agent.timeout_ms = 60'000;
  d.agent.kill_grace_ms = 300;
  EXPECT_EQ(DispatchLimitMs(d, kLock), kLock + 60'000 + AgentOverrunMs(300));
  d.task.repo = "/src/repo";
  EXPECT_EQ(DispatchLimitMs(d, kLock),
            kLock + kPrepareGitCommandsMax * kGitTimeoutMs + 60'000 + AgentOverrunMs(300));
  d.sync_remote = "origin";
  EXPECT_EQ(DispatchLimitMs(d, kLock), kLock + kPrepareGitCommandsMax * kGitTimeoutMs +
                                           kGitFetchTimeoutMs + 60'000 + AgentOverrunMs(300));
}

// Without a timeout the agent is not bounded; the steps before it still are
// (`started` then clears the deadline).
TEST(JobLimitsTest, ADispatchWithoutAnAgentTimeoutBoundsOnlyItsPreparation) {
  proto::Dispatch d;
  d.agent.timeout_ms = 0;
  d.agent.kill_grace_ms = 300;
  EXPECT_EQ(DispatchLimitMs(d, kLock), kLock + kJobOverrunMarginMs);
  d.agent.timeout_ms = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(DispatchLimitMs(d, kLock), 0);
}

TEST(JobLimitsTest, AReviewWithNothingToRunHasTheLockWaitAndTheMargin) {
  EXPECT_EQ(ReviewLimitMs(proto::Review{}, kLock), kLock + kJobOverrunMarginMs);
  EXPECT_EQ(ReviewLimitMs(proto::Review{}, 0), kJobOverrunMarginMs);
}

TEST(JobLimitsTest, EachCheckAddsItsTimeoutAndKillGrace) {
  EXPECT_EQ(ReviewLimitMs(Checks(3, 1'000), 0),
            kJobOverrunMarginMs + 3 * (1'000 + proto::kCheckKillGraceMs + kStepOverheadMs));
}

TEST(JobLimitsTest, ARepoTaskAddsEveryGitCommandAReviewRuns) {
  proto::Review r = Checks(1, 1'000);
  const int64_t plain = ReviewLimitMs(r, kLock);
  r.task.repo = "/src/repo";
  EXPECT_EQ(ReviewLimitMs(r, kLock), plain + kReviewGitCommandsMax * kGitTimeoutMs);
}

TEST(JobLimitsTest, TheCriticAgentIsCountedTwiceWithItsKillGraces) {
  proto::Review r;
  r.critic = proto::AgentSpec{};
  r.critic->timeout_ms = 60'000;
  r.critic->kill_grace_ms = 10'000;
  EXPECT_EQ(ReviewLimitMs(r, 0), kJobOverrunMarginMs + 2 * (60'000 + 2 * 10'000 + kStepOverheadMs));
}

TEST(JobLimitsTest, AStepWithoutATimeoutMeansNoLimit) {
  EXPECT_EQ(ReviewLimitMs(Checks(1, 0), kLock), 0);
  proto::Review r;
  r.critic = proto::AgentSpec{};
  r.critic->timeout_ms = 0;
  EXPECT_EQ(ReviewLimitMs(r, kLock), 0);
  // Checks without a timeout are no step when there are none.
  EXPECT_GT(ReviewLimitMs(Checks(0, 0), kLock), 0);
}

TEST(JobLimitsTest, ALimitTooFarToAddIsNone) {
  constexpr int64_t kHuge = std::numeric_limits<int64_t>::max() / 2;
  EXPECT_EQ(ReviewLimitMs(Checks(4, kHuge), kLock), 0);
  EXPECT_EQ(ReviewLimitMs(Checks(1, 1'000), kHuge), 0);
  EXPECT_EQ(ReviewLimitMs(Checks(1, std::numeric_limits<int64_t>::max()), 0), 0);
}

}  // namespace
}  // namespace forge::supervisor
