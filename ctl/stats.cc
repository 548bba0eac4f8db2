#include "ctl/stats.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/clock.h"
#include "common/redact.h"
#include "proto/control.h"
#include "supervisor/store/store.h"

namespace forge::ctl {

int64_t Percentile(std::vector<int64_t>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

Result<Stats> ComputeStats(store::Store& store, int64_t now_ms, int64_t window_ms) {
  Stats s;
  s.since_ms = window_ms > 0 ? now_ms - window_ms : 0;
  for (auto state : proto::AllStates()) s.tasks_by_state[std::string(proto::StateName(state))] = 0;

  FORGE_ASSIGN_OR_RETURN(auto tasks, store.ListTasks(store::ListFilter{}));
  int64_t done_attempts = 0;
  double done_cost = 0;
  int64_t done_tokens = 0;
  for (const auto& t : tasks) {
    if (t.updated_at_ms < s.since_ms) continue;
    ++s.tasks_by_state[std::string(proto::StateName(t.state))];
    if (t.state == proto::TaskState::kDone) {
      ++s.done;
      done_attempts += t.total_attempts;
      done_cost += t.cost_usd;
      done_tokens += t.tokens_in + t.tokens_out;
    } else if (t.state == proto::TaskState::kBlocked) {
      ++s.blocked;
    }
  }
  if (s.done + s.blocked > 0) {
    s.success_rate = static_cast<double>(s.done) / static_cast<double>(s.done + s.blocked);
  }
  if (s.done > 0) {
    s.attempts_per_done = static_cast<double>(done_attempts) / static_cast<double>(s.done);
    s.cost_per_done_usd = done_cost / static_cast<double>(s.done);
    s.tokens_per_done = done_tokens / s.done;
  }

  // RecentAttempts is newest first: the first attempt of a fingerprint group
  // is its most recent one.
  FORGE_ASSIGN_OR_RETURN(auto attempts, store.RecentAttempts(1'000'000));
  std::vector<int64_t> durations;
  std::map<std::string, FailureGroup> groups;
  for (const auto& a : attempts) {
    if (a.ended_at_ms == 0 || a.ended_at_ms < s.since_ms) continue;
    ++s.attempts;
    ++s.attempts_by_outcome[a.outcome];
    int64_t d = a.duration_ms > 0 ? a.duration_ms : a.ended_at_ms - a.started_at_ms;
    durations.push_back(std::max<int64_t>(0, d));
    s.cost_usd += a.cost_usd;
    s.tokens_in += a.tokens_in;
    s.tokens_out += a.tokens_out;
    if (a.outcome != "passed" && !a.fingerprint.empty()) {
      auto [it, fresh] = groups.try_emplace(a.fingerprint);
      if (fresh) it->second = FailureGroup{a.fingerprint, 0, a.outcome, a.error, a.task_id};
      ++it->second.count;
    }
  }
  s.duration_p50_ms = Percentile(durations, 50);
  s.duration_p95_ms = Percentile(durations, 95);
  for (auto& [fp, g] : groups) s.top_failures.push_back(std::move(g));
  std::stable_sort(s.top_failures.begin(), s.top_failures.end(),
                   [](const auto& a, const auto& b) { return a.count > b.count; });
  if (s.top_failures.size() > 5) s.top_failures.resize(5);
  // An error may quote a failed check's command, which may quote a secret
  // of its task's env.
  for (auto& g : s.top_failures) {
    FORGE_ASSIGN_OR_RETURN(
        auto secrets, proto::TaskSecrets(
                          g.task_id, {}, [&](const std::string& id) { return store.TaskEnv(id); },
                          "its failure"));
    g.error = RedactText(std::move(g.error), secrets);
  }
  return s;
}

namespace {
std::string Percent(double ratio) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", ratio * 100);
  return buf;
}
std::string Fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}
}  // namespace

std::string RenderStats(const Stats& s, const Style& style) {
  std::ostringstream out;
  out << "window          "
      << (s.since_ms ? "since " + FormatRfc3339(s.since_ms) : std::string("all time")) << "\n";
  out << "tasks           ";
  bool first = true;
  for (auto state : proto::AllStates()) {
    std::string name(proto::StateName(state));
    out << (first ? "" : "  ") << name << " " << s.tasks_by_state.at(name);
    first = false;
  }
  out << "\n";
  out << "success rate    "
      << (s.done + s.blocked ? Percent(s.success_rate) + " (" + std::to_string(s.done) + " done, " +
                                   std::to_string(s.blocked) + " blocked)"
                             : std::string("-"))
      << "\n";
  out << "attempts/done   " << (s.done ? Fixed1(s.attempts_per_done) : "-") << "\n";
  out << "attempts        " << s.attempts;
  for (const auto& [outcome, n] : s.attempts_by_outcome) {
    out << "  " << Paint(outcome, OutcomeColor(outcome), style) << " " << n;
  }
  out << "\n";
  out << "duration        p50 " << HumanDuration(s.duration_p50_ms) << "  p95 "
      << HumanDuration(s.duration_p95_ms) << "\n";
  out << "cost            " << FormatCost(s.cost_usd) << " total";
  if (s.done) out << ", " << FormatCost(s.cost_per_done_usd) << " per done task";
  out << "\n";
  out << "tokens          " << FormatTokens(s.tokens_in) << " in / " << FormatTokens(s.tokens_out)
      << " out";
  if (s.done) out << ", " << FormatTokens(s.tokens_per_done) << " per done task";
  out << "\n";
  if (!s.top_failures.empty()) {
    out << "\ntop failures\n";
    Table t({"COUNT", "FINGERPRINT", "OUTCOME", "LAST TASK", "ERROR"}, "  ");
    t.AlignRight(0);
    for (const auto& g : s.top_failures) {
      t.AddRow({std::to_string(g.count), g.fingerprint, g.outcome, g.task_id,
                OneLine(g.error, style.wide ? 0 : 120)},
               {Color::kNone, Color::kNone, OutcomeColor(g.outcome)});
    }
    out << t.Render(style);
  }
  return out.str();
}

proto::json StatsJson(const Stats& s) {
  proto::json failures = proto::json::array();
  for (const auto& g : s.top_failures) {
    failures.push_back({{"fingerprint", g.fingerprint},
                        {"count", g.count},
                        {"outcome", g.outcome},
                        {"error", g.error},
                        {"task_id", g.task_id}});
  }
  return {{"since", s.since_ms ? proto::json(FormatRfc3339(s.since_ms)) : proto::json(nullptr)},
          {"tasks", s.tasks_by_state},
          {"done", s.done},
          {"blocked", s.blocked},
          {"success_rate", s.success_rate},
          {"attempts_per_done", s.attempts_per_done},
          {"attempts", s.attempts},
          {"attempts_by_outcome", s.attempts_by_outcome},
          {"duration_p50_ms", s.duration_p50_ms},
          {"duration_p95_ms", s.duration_p95_ms},
          {"cost_usd", s.cost_usd},
          {"tokens_in", s.tokens_in},
          {"tokens_out", s.tokens_out},
          {"cost_per_done_usd", s.cost_per_done_usd},
          {"tokens_per_done", s.tokens_per_done},
          {"top_failures", failures}};
}

int CmdStats(Env& env, int64_t window_ms) {
  if (window_ms < 0) return Usage(env, "--since must not be negative");
  auto store = OpenStoreReadOnly(env.state_dir);
  if (!store.ok()) return Fail(env, NoSupervisorNorDatabase(env.state_dir, store.error()));
  auto stats = ComputeStats(**store, env.clock->WallMs(), window_ms);
  if (!stats.ok()) return Fail(env, stats.error());
  if (env.json) {
    *env.out << StatsJson(*stats).dump(2, ' ', false, proto::json::error_handler_t::replace)
             << "\n";
  } else {
    *env.out << RenderStats(*stats, env.style);
  }
  return kExitOk;
}

}  // namespace forge::ctl
