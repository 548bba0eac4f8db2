#include "supervisor/child_pool.h"

#include <gtest/gtest.h>

namespace forge::supervisor {
namespace {

using E = ChildEvent;
using S = ChildState;

TEST(ChildStateTable, LifecycleOfAWorker) {
  EXPECT_EQ(NextChildState(S::kStarting, E::kHello), S::kIdle);
  EXPECT_EQ(NextChildState(S::kIdle, E::kJobAssigned), S::kBusy);
  EXPECT_EQ(NextChildState(S::kBusy, E::kHeartbeat), S::kBusy);
  EXPECT_EQ(NextChildState(S::kBusy, E::kJobDone), S::kIdle);
  EXPECT_EQ(NextChildState(S::kBusy, E::kShutdown), S::kStopping);
  EXPECT_EQ(NextChildState(S::kStopping, E::kJobDone), S::kStopping);
  EXPECT_EQ(NextChildState(S::kStopping, E::kExited), S::kExited);
}

TEST(ChildStateTable, RefusedEvents) {
  EXPECT_FALSE(NextChildState(S::kStarting, E::kJobAssigned));  // no job before hello
  EXPECT_FALSE(NextChildState(S::kBusy, E::kJobAssigned));      // one job at a time
  EXPECT_FALSE(NextChildState(S::kIdle, E::kJobDone));          // result without a job
  for (int e = 0; e <= static_cast<int>(E::kShutdown); ++e) {
    EXPECT_FALSE(NextChildState(S::kExited, static_cast<E>(e))) << e;
    EXPECT_FALSE(NextChildState(static_cast<S>(e % 4), E::kSpawned));
  }
  // Every live state can exit, time out and be shut down.
  for (S s : {S::kStarting, S::kIdle, S::kBusy, S::kStopping}) {
    EXPECT_EQ(NextChildState(s, E::kExited), S::kExited);
    EXPECT_EQ(NextChildState(s, E::kKilled), S::kStopping);
    EXPECT_EQ(NextChildState(s, E::kShutdown), S::kStopping);
  }
}

TEST(ChildPool, BookkeepingByPidRoutingIdAndAttempt) {
  ChildPool pool;
  Child& w = pool.Add(Role::kWorker, 100, 7, 0);
  EXPECT_EQ(w.routing_id, "worker-100");
  pool.Add(Role::kCritic, 200, 8, 0);
  EXPECT_EQ(pool.FindIdle(Role::kWorker), nullptr);  // still starting
  ASSERT_TRUE(pool.Apply(100, E::kHello, 5).ok());
  ASSERT_EQ(pool.FindIdle(Role::kWorker), pool.Find(100));
  EXPECT_FALSE(pool.HoldsTask("t1"));
  ASSERT_TRUE(pool.AssignJob(100, 42, "t1", 1, 6, 1000).ok());
  EXPECT_TRUE(pool.HoldsTask("t1"));
  EXPECT_FALSE(pool.HoldsTask("t2"));
  EXPECT_EQ(pool.FindByAttempt(42), pool.Find(100));
  EXPECT_EQ(pool.FindByRoutingId("worker-100")->task_id, "t1");
  EXPECT_EQ(pool.FindIdle(Role::kWorker), nullptr);
  auto again = pool.AssignJob(100, 43, "t2", 1, 6, 1000);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().message, "worker-100: event 'job_assigned' not allowed in state 'busy'");
  ASSERT_TRUE(pool.FinishJob(100, 7).ok());
  EXPECT_FALSE(pool.HoldsTask("t1"));
  EXPECT_EQ(pool.FindByAttempt(42), nullptr);
  EXPECT_EQ(pool.Find(100)->state, S::kIdle);
  EXPECT_EQ(pool.Count(Role::kWorker), 1);
  EXPECT_EQ(pool.Count(Role::kCritic), 1);
  EXPECT_FALSE(pool.Apply(999, E::kHello, 0).ok());
}

TEST(ChildPool, AnExitedChildStaysForItsLastWords) {
  ChildPool pool;
  pool.Add(Role::kWorker, 100, 7, 0);
  ASSERT_TRUE(pool.Apply(100, E::kHello, 1).ok());
  ASSERT_TRUE(pool.AssignJob(100, 42, "t1", 1, 2, 1000).ok());
  ASSERT_TRUE(pool.Apply(100, E::kExited, 3).ok());
  EXPECT_EQ(pool.Exited(), std::vector<pid_t>{100});
  EXPECT_EQ(pool.Count(Role::kWorker), 0);
  EXPECT_FALSE(pool.Empty());
  EXPECT_TRUE(pool.Silent(1'000'000, 1000).empty());  // the dead are not watched
  EXPECT_FALSE(pool.NextSilenceDeadline(1000).has_value());
  EXPECT_EQ(pool.FindByRoutingId("worker-100"), pool.Find(100));
  // Its result, read after the exit, ends the job; the child stays exited.
  ASSERT_TRUE(pool.FinishJob(100, 4).ok());
  EXPECT_EQ(pool.FindByAttempt(42), nullptr);
  EXPECT_EQ(pool.Find(100)->state, S::kExited);
  EXPECT_FALSE(pool.Apply(100, E::kHeartbeat, 5).ok());
  pool.Remove(100);
  EXPECT_TRUE(pool.Exited().empty());
  EXPECT_TRUE(pool.Empty());
}

TEST(ChildPool, SilenceDetection) {
  ChildPool pool;
  pool.Add(Role::kWorker, 1, 0, 0);
  pool.Add(Role::kWorker, 2, 0, 0);
  ASSERT_TRUE(pool.Apply(2, E::kHeartbeat, 500).ok());
  EXPECT_EQ(pool.NextSilenceDeadline(1000), 1001);
  EXPECT_TRUE(pool.Silent(1000, 1000).empty());
  EXPECT_EQ(pool.Silent(1001, 1000), std::vector<pid_t>{1});
  EXPECT_EQ(pool.Silent(1501, 1000), (std::vector<pid_t>{1, 2}));
  ASSERT_TRUE(pool.Apply(1, E::kKilled, 1501).ok());
  EXPECT_EQ(pool.NextSilenceDeadline(1000), 1501);  // only child 2 is still watched
}

// A child spawned under a longer timeout (a reload shortened it since) is
// judged by its own: it still beats at the interval it was started with.
TEST(ChildPool, AChildKeepsTheTimeoutItWasSpawnedUnder) {
  ChildPool pool;
  pool.Add(Role::kWorker, 1, 0, 0).spawn_heartbeat_timeout_ms = 20'000;
  pool.Add(Role::kWorker, 2, 0, 0).spawn_heartbeat_timeout_ms = 3'000;
  EXPECT_EQ(pool.Silent(5'000, 3'000), std::vector<pid_t>{2});
  EXPECT_EQ(pool.NextSilenceDeadline(3'000), 3'001);
  EXPECT_EQ(pool.Silent(20'001, 3'000), (std::vector<pid_t>{1, 2}));
  // A longer timeout than its own applies to it too.
  EXPECT_TRUE(pool.Silent(20'001, 30'000).empty());
}

TEST(ChildPool, RespawnThrottleDoublesAndRecovers) {
  ChildPool pool;
  int64_t t = 0;
  for (int i = 0; i < kMaxRestarts; ++i) EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += 100), 0);
  EXPECT_FALSE(pool.Degraded(Role::kWorker));
  EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += 100), 1000);
  EXPECT_TRUE(pool.Degraded(Role::kWorker));
  EXPECT_FALSE(pool.Degraded(Role::kCritic));
  EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += 1000), 2000);
  EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += 2000), 4000);
  for (int i = 0; i < 10; ++i) pool.RecordRestart(Role::kWorker, t += 100);
  EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += 100), kRespawnDelayMaxMs);
  EXPECT_EQ(pool.Restarts(Role::kWorker), kMaxRestarts + 14);
  // A restart after a quiet window goes at once again.
  EXPECT_EQ(pool.RecordRestart(Role::kWorker, t += kRestartWindowMs + 1), 0);
  EXPECT_FALSE(pool.Degraded(Role::kWorker));
}

}  // namespace
}  // namespace forge::supervisor
