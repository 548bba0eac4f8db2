// forge-ctl stats: what the queue has done, computed from the database
// (read-only, whether or not the supervisor runs).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ctl/commands.h"
#include "proto/types.h"

namespace forge::store {
class Store;
}

namespace forge::ctl {

struct FailureGroup {
  std::string fingerprint;
  int64_t count = 0;
  std::string outcome;  // of the most recent attempt with it
  std::string error;    // of the most recent attempt with it
  std::string task_id;  // of the most recent attempt with it
};

struct Stats {
  int64_t since_ms = 0;                           // window start, 0: all time
  std::map<std::string, int64_t> tasks_by_state;  // tasks updated in the window
  int64_t done = 0;
  int64_t blocked = 0;
  double success_rate = 0;       // done / (done + blocked); cancelled are left out
  double attempts_per_done = 0;  // every attempt of done tasks, infra retries included
  int64_t attempts = 0;          // closed attempts in the window
  std::map<std::string, int64_t> attempts_by_outcome;
  int64_t duration_p50_ms = 0;
  int64_t duration_p95_ms = 0;
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  double cost_per_done_usd = 0;
  int64_t tokens_per_done = 0;             // in + out
  std::vector<FailureGroup> top_failures;  // most frequent first, at most 5
};

// window_ms 0: everything; else tasks and attempts of the last window_ms.
Result<Stats> ComputeStats(store::Store& store, int64_t now_ms, int64_t window_ms);
// Nearest-rank percentile of values (sorted in place), 0 for none.
int64_t Percentile(std::vector<int64_t>& values, double p);
std::string RenderStats(const Stats& stats, const Style& style);
proto::json StatsJson(const Stats& stats);

int CmdStats(Env& env, int64_t window_ms);

}  // namespace forge::ctl
