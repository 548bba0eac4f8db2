#include "supervisor/job_limits.h"

#include <algorithm>
#include <limits>

#include "common/git.h"

namespace forge::supervisor {

namespace {

// A sum past this (timeouts of centuries) is as good as none, and a
// deadline that far adds to a clock without overflowing.
constexpr int64_t kLongestLimitMs = std::numeric_limits<int64_t>::max() / 4;

// Adds n steps of `each` ms (negatives read as 0) to `limit`; false once
// the sum passes kLongestLimitMs.
bool AddSteps(int64_t& limit, int64_t n, int64_t each) {
  each = std::max<int64_t>(each, 0);
  if (each > kLongestLimitMs || (each != 0 && n > (kLongestLimitMs - limit) / each)) return false;
  limit += n * each;
  return true;
}

}  // namespace

int64_t AgentOverrunMs(int64_t kill_grace_ms) {
  return 2 * kill_grace_ms + kJobOverrunMarginMs;
}

int64_t DispatchLimitMs(const proto::Dispatch& dispatch, int64_t workspace_lock_wait_ms) {
  int64_t limit = kJobOverrunMarginMs;
  bool bounded = AddSteps(limit, 1, workspace_lock_wait_ms);
  if (!dispatch.task.repo.empty()) {
    bounded = bounded && AddSteps(limit, kPrepareGitCommandsMax, kGitTimeoutMs);
    if (!dispatch.sync_remote.empty()) bounded = bounded && AddSteps(limit, 1, kGitFetchTimeoutMs);
  }
  if (dispatch.agent.timeout_ms > 0) {
    bounded = bounded && AddSteps(limit, 1, dispatch.agent.timeout_ms) &&
              AddSteps(limit, 2, dispatch.agent.kill_grace_ms);
  }
  return bounded ? limit : 0;
}

int64_t ReviewLimitMs(const proto::Review& review, int64_t workspace_lock_wait_ms) {
  if (!review.verify.empty() && review.verify_timeout_ms <= 0) return 0;
  if (review.critic && review.critic->timeout_ms <= 0) return 0;
  int64_t limit = kJobOverrunMarginMs;
  bool bounded = AddSteps(limit, 1, workspace_lock_wait_ms);
  if (!review.task.repo.empty())
    bounded = bounded && AddSteps(limit, kReviewGitCommandsMax, kGitTimeoutMs);
  const int64_t checks = static_cast<int64_t>(review.verify.size());
  bounded = bounded && AddSteps(limit, checks, review.verify_timeout_ms) &&
            AddSteps(limit, checks, proto::kCheckKillGraceMs + kStepOverheadMs);
  if (review.critic) {
    bounded = bounded && AddSteps(limit, 2, review.critic->timeout_ms) &&
              AddSteps(limit, 4, review.critic->kill_grace_ms) &&
              AddSteps(limit, 2, kStepOverheadMs);
  }
  return bounded ? limit : 0;
}

}  // namespace forge::supervisor
