#include "supervisor/store/submit_check.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include "common/process.h"
#include "common/utf8.h"
#include "proto/types.h"

namespace forge::store {

namespace {

bool IsBlank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

bool HasNul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

// The first field holding a NUL byte ("title", "verify[0]", "env 'A'"), or
// "". A NUL ends a C string: passed on in argv or the environment
// (common/process.cc, the critic's `sh -c`), what follows it would be
// dropped unseen, and a check shown as `true\0; false` would run `true`.
std::string FieldWithNul(const proto::SubmitTask& t) {
  const std::pair<const char*, const std::string*> scalars[] = {
      {"id", &t.id},     {"title", &t.title}, {"brief", &t.brief}, {"kind", &t.kind},
      {"repo", &t.repo}, {"base", &t.base},   {"agent", &t.agent}, {"model", &t.model}};
  for (const auto& [name, text] : scalars) {
    if (HasNul(*text)) return name;
  }
  auto in_list = [](const std::vector<std::string>& items, const std::string& name) {
    for (size_t i = 0; i < items.size(); ++i) {
      if (HasNul(items[i])) return name + "[" + std::to_string(i) + "]";
    }
    return std::string();
  };
  if (std::string f = in_list(t.verify, "verify"); !f.empty()) return f;
  if (std::string f = in_list(t.depends_on, "depends_on"); !f.empty()) return f;
  for (const auto& [name, value] : t.env) {
    if (HasNul(value)) return "env '" + ShowBytes(name) + "'";  // names: IsEnvName
  }
  return "";
}

Status CheckOne(const std::vector<proto::SubmitTask>& tasks, size_t i) {
  const auto& t = tasks[i];
  std::string label = TaskLabel(tasks, i);
  if (IsBlank(t.title)) return MakeError(ErrorCode::kInvalid, label + ": title is empty");
  if (size_t size = EncodedBriefSize(t.brief); size > kMaxBriefBytes) {
    return MakeError(ErrorCode::kInvalid, label + ": brief is " + std::to_string(size) +
                                              " bytes as sent, more than the " +
                                              std::to_string(kMaxBriefBytes) + " a brief may be");
  }
  if (size_t size = EncodedTaskTextSize(t); size > kMaxTaskTextBytes) {
    return MakeError(ErrorCode::kInvalid,
                     label + ": its text besides the brief is " + std::to_string(size) +
                         " bytes as sent (title, verify, env, depends_on, ...), more than the " +
                         std::to_string(kMaxTaskTextBytes) + " a task may have");
  }
  if (std::string field = FieldWithNul(t); !field.empty()) {
    return MakeError(ErrorCode::kInvalid, label + ": " + field + " contains a NUL byte");
  }
  if (t.kind != "work" && t.kind != "expand") {
    return MakeError(ErrorCode::kInvalid,
                     label + ": kind must be 'work' or 'expand', got '" + t.kind + "'");
  }
  // A base is a ref of the task's repo: without one it would be ignored.
  if (!t.base.empty() && t.repo.empty()) {
    return MakeError(ErrorCode::kInvalid, label + ": base '" + t.base + "' needs a repo");
  }
  // As forge-ctl and the config check them: a profile no worker runs would
  // spend an attempt to fail, a name that is not one would reach the agent
  // as another variable ("A=B" as A) or as none ("=x").
  if (!t.agent.empty() && !proto::IsAgentProfile(t.agent)) {
    return MakeError(ErrorCode::kInvalid, label + ": agent must be " +
                                              proto::AgentProfileChoices() + ", got '" +
                                              ShowBytes(t.agent) + "'");
  }
  for (const auto& [name, value] : t.env) {
    if (!IsEnvName(name)) {
      return MakeError(ErrorCode::kInvalid,
                       label + ": env name '" + ShowBytes(name) +
                           "' is not a variable name (letters, digits and _, not led by a digit)");
    }
  }
  if (t.max_attempts && *t.max_attempts < 1) {
    return MakeError(ErrorCode::kInvalid, label + ": max_attempts must be at least 1, got " +
                                              std::to_string(*t.max_attempts));
  }
  for (const auto& dep : t.depends_on) {
    if (IsBlank(dep)) return MakeError(ErrorCode::kInvalid, label + ": empty dependency id");
  }
  // `sh -c ''` exits 0: an empty check would pass every attempt.
  for (size_t c = 0; c < t.verify.size(); ++c) {
    if (IsBlank(t.verify[c])) {
      return MakeError(ErrorCode::kInvalid,
                       label + ": verify command " + std::to_string(c + 1) + " is empty");
    }
  }
  return Status::Ok();
}

// Depth-first search over the batch-local dependency edges, without
// recursion (a plan can be a chain of 100,000 declared from its end); the
// first back edge found is reported with the path that closes it.
Status FindCycle(const std::vector<proto::SubmitTask>& tasks,
                 const std::map<std::string, size_t>& local) {
  enum Mark { kNew, kOnPath, kDone };
  std::vector<Mark> mark(tasks.size(), kNew);
  struct Frame {
    size_t task;
    size_t next_dep = 0;
  };
  std::vector<Frame> path;
  for (size_t start = 0; start < tasks.size(); ++start) {
    if (mark[start] != kNew) continue;
    mark[start] = kOnPath;
    path.push_back({start});
    while (!path.empty()) {
      Frame& top = path.back();
      const auto& deps = tasks[top.task].depends_on;
      if (top.next_dep == deps.size()) {
        mark[top.task] = kDone;
        path.pop_back();
        continue;
      }
      auto it = local.find(deps[top.next_dep++]);
      if (it == local.end()) continue;
      size_t j = it->second;
      if (mark[j] == kOnPath) {
        auto from =
            std::find_if(path.begin(), path.end(), [j](const Frame& f) { return f.task == j; });
        std::string cycle;
        for (auto p = from; p != path.end(); ++p) cycle += tasks[p->task].id + " -> ";
        cycle += tasks[j].id;
        return MakeError(ErrorCode::kInvalid, "dependency cycle: " + cycle);
      }
      if (mark[j] == kNew) {
        mark[j] = kOnPath;
        path.push_back({j});
      }
    }
  }
  return Status::Ok();
}

}  // namespace

size_t EncodedBriefSize(std::string_view brief) {
  size_t n = brief.size();
  for (unsigned char c : brief) n += c == '"' || c == '\\' ? 1 : c < 0x20 ? 5 : 0;
  return n;
}

std::string TaskLabel(const std::vector<proto::SubmitTask>& tasks, size_t index) {
  if (!tasks[index].id.empty()) return "task '" + tasks[index].id + "'";
  return "task #" + std::to_string(index + 1);
}

size_t EncodedTaskTextSize(const proto::SubmitTask& t) {
  size_t size = 0;
  for (const std::string* s : {&t.id, &t.title, &t.kind, &t.repo, &t.base, &t.agent, &t.model}) {
    size += EncodedBriefSize(*s);
  }
  for (const auto& v : t.verify) size += EncodedBriefSize(v);
  for (const auto& d : t.depends_on) size += EncodedBriefSize(d);
  for (const auto& [k, v] : t.env) size += EncodedBriefSize(k) + EncodedBriefSize(v);
  return size;
}

Status CheckBatch(const std::vector<proto::SubmitTask>& tasks) {
  if (tasks.empty()) return MakeError(ErrorCode::kInvalid, "no tasks to submit");
  std::map<std::string, size_t> local;
  for (size_t i = 0; i < tasks.size(); ++i) {
    FORGE_RETURN_IF_ERROR(CheckOne(tasks, i));
    const std::string& id = tasks[i].id;
    if (id.empty()) continue;
    auto [it, inserted] = local.emplace(id, i);
    if (!inserted) {
      return MakeError(ErrorCode::kInvalid, "duplicate task id '" + id + "' (tasks #" +
                                                std::to_string(it->second + 1) + " and #" +
                                                std::to_string(i + 1) + ")");
    }
  }
  return FindCycle(tasks, local);
}

Status CheckIdempotencyKey(const std::string& key, const std::string& what) {
  if (key.empty()) return MakeError(ErrorCode::kInvalid, what + " is empty");
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return MakeError(ErrorCode::kInvalid, what + " is " + std::to_string(key.size()) +
                                              " bytes; at most " +
                                              std::to_string(kMaxIdempotencyKeyBytes));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c == 0x7f) {
      char where[48];
      std::snprintf(where, sizeof where, " (byte 0x%02x at %zu)", c, i + 1);
      return MakeError(ErrorCode::kInvalid, what + " has a control character" + where);
    }
  }
  return Status::Ok();
}

}  // namespace forge::store
