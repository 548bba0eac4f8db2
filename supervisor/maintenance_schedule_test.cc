#include "supervisor/maintenance_schedule.h"

#include <gtest/gtest.h>

#include "common/clock.h"

namespace forge::supervisor {
namespace {

using proto::TaskState;
constexpr int64_t kDay = 24LL * 3600 * 1000;

MaintenanceConfig Config(int64_t interval, int64_t timeout = 60'000) {
  MaintenanceConfig c;
  c.interval_ms = interval;
  c.keep_ms = 7 * kDay;
  c.keep_logs_ms = 30 * kDay;
  c.timeout_ms = timeout;
  return c;
}

TEST(SelectRemovals, OnlySettledTasksOlderThanKeep) {
  FakeClock clock;
  clock.SetWall(100 * kDay);
  const int64_t now = clock.WallMs();
  std::vector<SettledTask> tasks = {
      {"t-old-done", TaskState::kDone, "/src/repo", now - 8 * kDay},
      {"t-old-blocked", TaskState::kBlocked, "", now - 9 * kDay},
      {"t-old-cancelled", TaskState::kCancelled, "", now - 7 * kDay - 1},
      {"t-fresh", TaskState::kDone, "", now - 6 * kDay},
      {"t-exactly-keep", TaskState::kDone, "", now - 7 * kDay},
      {"t-running", TaskState::kRunning, "", now - 30 * kDay},
      {"t-cooldown", TaskState::kCooldown, "", now - 30 * kDay},
      {"t-unfinished", TaskState::kDone, "", 0},
  };
  auto out = SelectRemovals(tasks, "/srv/state", now, 7 * kDay);
  ASSERT_EQ(out.size(), 3u);
  // Oldest first.
  EXPECT_EQ(out[0].task_id, "t-old-blocked");
  EXPECT_EQ(out[0].path, "/srv/state/workspaces/t-old-blocked");
  EXPECT_EQ(out[0].repo, "");
  EXPECT_EQ(out[0].branch, "");
  EXPECT_EQ(out[1].task_id, "t-old-done");
  EXPECT_EQ(out[1].path, "/srv/state/worktrees/t-old-done");
  EXPECT_EQ(out[1].repo, "/src/repo");
  EXPECT_EQ(out[1].branch, "forge/t-old-done");
  EXPECT_EQ(out[2].task_id, "t-old-cancelled");

  // Time passes: the fresh one becomes old.
  clock.StepWall(kDay + 1);
  out = SelectRemovals(tasks, "/srv/state", clock.WallMs(), 7 * kDay);
  EXPECT_EQ(out.size(), 5u);
}

TEST(SelectRemovals, LimitKeepsTheOldest) {
  std::vector<SettledTask> tasks;
  for (int i = 0; i < 10; ++i) {
    tasks.push_back({"t-" + std::to_string(i), TaskState::kDone, "", 1000 - i});
  }
  auto out = SelectRemovals(tasks, "/s", 10 * kDay, 1, 3);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].task_id, "t-9");
  EXPECT_EQ(out[2].task_id, "t-7");
}

TEST(LogsCutoff, KeepLogsBeforeNow) {
  EXPECT_EQ(LogsCutoff(40 * kDay, 30 * kDay), 10 * kDay);
  EXPECT_EQ(LogsCutoff(1000, 200), 800);
  EXPECT_EQ(LogsCutoff(10, 30 * kDay), 0);  // nothing can be that old
  EXPECT_EQ(LogsCutoff(10, 0), 0);
}

TEST(MaintenanceScheduleTest, FirstJobOneIntervalAfterStartThenEveryInterval) {
  MaintenanceSchedule s;
  auto c = Config(1000);
  s.Start(5000);
  EXPECT_FALSE(s.Due(5999, c));
  EXPECT_EQ(s.NextDeadline(c), 6000);
  EXPECT_TRUE(s.Due(6000, c));
  int64_t id = s.Begin(42, 6000, 1'700'000'000'000);
  EXPECT_EQ(id, 1'700'000'000'000);
  EXPECT_TRUE(s.in_flight());
  EXPECT_FALSE(s.Due(9000, c));                 // one at a time
  EXPECT_EQ(s.NextDeadline(c), 6000 + 60'000);  // its timeout
  EXPECT_FALSE(s.Finish(43, id));               // another worker: stray
  EXPECT_FALSE(s.Finish(42, id + 1));           // another job: stray
  EXPECT_TRUE(s.Finish(42, id));
  EXPECT_FALSE(s.Finish(42, id));  // twice: ignored
  // The next is due an interval after the previous one started.
  EXPECT_TRUE(s.Due(7000, c));
  EXPECT_FALSE(s.Due(6999, c));
  // Job ids only grow, even when the wall clock steps back.
  EXPECT_EQ(s.Begin(42, 7000, 5), id + 1);
}

TEST(MaintenanceScheduleTest, AWorkerThatDiesAbandonsItsJobUntilTheNextInterval) {
  MaintenanceSchedule s;
  auto c = Config(1000);
  s.Start(0);
  int64_t id = s.Begin(42, 1000, 1);
  EXPECT_EQ(s.Abandon(43), 0);
  EXPECT_EQ(s.Abandon(42), id);
  EXPECT_FALSE(s.in_flight());
  EXPECT_FALSE(s.Finish(42, id));  // its late result is ignored
  EXPECT_FALSE(s.Due(1500, c));
  EXPECT_TRUE(s.Due(2000, c));
}

TEST(MaintenanceScheduleTest, RemovingOnlyWhileTheJobIsInFlight) {
  MaintenanceSchedule s;
  s.Start(0);
  EXPECT_FALSE(s.Removing("t-1"));
  EXPECT_EQ(s.RemovingCount(), 0u);
  int64_t id = s.Begin(42, 1000, 1, {"t-1", "t-2"});
  EXPECT_EQ(s.RemovingCount(), 2u);
  EXPECT_TRUE(s.Removing("t-1"));
  EXPECT_TRUE(s.Removing("t-2"));
  EXPECT_FALSE(s.Removing("t-3"));
  EXPECT_TRUE(s.Finish(42, id));
  EXPECT_FALSE(s.Removing("t-1"));
  EXPECT_EQ(s.RemovingCount(), 0u);
  s.Begin(42, 2000, 2, {"t-3"});
  EXPECT_GT(s.Abandon(42), 0);
  EXPECT_FALSE(s.Removing("t-3"));
  EXPECT_EQ(s.RemovingCount(), 0u);
}

TEST(MaintenanceScheduleTest, OverrunNamesTheWorkerToKill) {
  MaintenanceSchedule s;
  auto c = Config(1000, 300);
  s.Start(0);
  EXPECT_FALSE(s.Overrun(5000, c));  // nothing in flight
  s.Begin(42, 1000, 1);
  EXPECT_FALSE(s.Overrun(1299, c));
  ASSERT_TRUE(s.Overrun(1300, c));
  EXPECT_EQ(*s.Overrun(1300, c), 42);
  c.timeout_ms = 0;  // no timeout
  EXPECT_FALSE(s.Overrun(100'000, c));
}

TEST(MaintenanceScheduleTest, StarvedAfterTwoIntervalsWithoutAJob) {
  MaintenanceSchedule s;
  auto c = Config(1000);
  s.Start(0);
  EXPECT_FALSE(s.Starved(1999, c));
  EXPECT_TRUE(s.Starved(2000, c));
  c.interval_ms = 0;  // disabled
  EXPECT_FALSE(s.Due(100'000, c));
  EXPECT_FALSE(s.Starved(100'000, c));
  EXPECT_EQ(s.NextDeadline(c), INT64_MAX);  // no wake-up, and status's next_at null
}

}  // namespace
}  // namespace forge::supervisor
