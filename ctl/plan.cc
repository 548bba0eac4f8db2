#include "ctl/plan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "common/fd.h"
#include "common/utf8.h"
#include "proto/types.h"
#include "supervisor/config/yaml_reader.h"
#include "supervisor/store/submit_check.h"

namespace forge::ctl {
namespace {

namespace fs = std::filesystem;
using Marks = std::map<std::string, YAML::Mark>;

// One task as read, with where its parts were, for the plan-wide checks.
struct Entry {
  proto::SubmitTask task;
  YAML::Mark at;                          // the task's map
  Marks present;                          // key -> value position
  std::vector<YAML::Mark> depends_marks;  // position of each depends_on item
  std::vector<YAML::Mark> verify_marks;   // position of each verify item
  Marks env_marks;                        // env name -> value position
};

// An existing task's id as the store makes them; the store checks it exists.
bool LooksLikeTaskId(const std::string& id) {
  return id.size() >= 2 && id[0] == 't' &&
         id.find_first_not_of("0123456789", 1) == std::string::npos;
}

std::vector<YAML::Mark> ItemMarks(const YAML::Node& list) {
  std::vector<YAML::Mark> marks;
  if (list.IsSequence()) {
    for (const YAML::Node& item : list) marks.push_back(item.Mark());
  }
  return marks;
}

Entry ReadTask(YamlReader& r, const YAML::Node& node, const std::string& key,
               std::string* brief_file) {
  Entry e;
  e.at = node.Mark();
  if (!node.IsMap()) {
    r.WrongValue(node, key, "a map of task keys");
    return e;
  }
  proto::SubmitTask& t = e.task;
  std::optional<int> max_attempts;
  int max_attempts_value = 0;
  e.present = r.ReadMap(
      node, key,
      {
          {"id", [&](auto& v, auto& k) { r.ReadString(v, k, &t.id); }},
          {"title", [&](auto& v, auto& k) { r.ReadString(v, k, &t.title); }},
          {"brief", [&](auto& v, auto& k) { r.ReadString(v, k, &t.brief); }},
          {"brief_file", [&](auto& v, auto& k) { r.ReadString(v, k, brief_file); }},
          {"repo", [&](auto& v, auto& k) { r.ReadString(v, k, &t.repo); }},
          {"base", [&](auto& v, auto& k) { r.ReadString(v, k, &t.base); }},
          {"verify",
           [&](auto& v, auto& k) {
             r.ReadStringList(v, k, &t.verify);
             e.verify_marks = ItemMarks(v);
           }},
          {"depends_on",
           [&](auto& v, auto& k) {
             r.ReadStringList(v, k, &t.depends_on);
             e.depends_marks = ItemMarks(v);
           }},
          {"priority",
           [&](auto& v, auto& k) { r.ReadInt(v, k, &t.priority, INT32_MIN, INT32_MAX); }},
          {"max_attempts",
           [&](auto& v, auto& k) {
             max_attempts_value = 0;
             r.ReadInt(v, k, &max_attempts_value, 1);
             if (max_attempts_value > 0) max_attempts = max_attempts_value;
           }},
          {"needs_approval", [&](auto& v, auto& k) { r.ReadBool(v, k, &t.needs_approval); }},
          {"allow_empty", [&](auto& v, auto& k) { r.ReadBool(v, k, &t.allow_empty); }},
          {"agent", [&](auto& v, auto& k) { r.ReadEnum(v, k, &t.agent, proto::AgentProfiles()); }},
          {"model", [&](auto& v, auto& k) { r.ReadString(v, k, &t.model); }},
          {"env",
           [&](auto& v, auto& k) {
             r.ReadEnvMap(v, k, &t.env);
             if (!v.IsMap()) return;
             for (const auto& kv : v) {
               if (kv.first.IsScalar()) e.env_marks[kv.first.Scalar()] = kv.second.Mark();
             }
           }},
      });
  t.max_attempts = max_attempts;
  return e;
}

bool IsBlank(const std::string& text) {
  return text.find_first_not_of(" \t\n\r\f\v") == std::string::npos;
}

// What the store would refuse (store::CheckBatch), said at its line: a
// brief too long to send, a blank check (`sh -c ''` passes every attempt),
// a base without a repo.
void CheckSendable(YamlReader& r, const std::string& key, const Entry& e) {
  if (auto base = e.present.find("base");
      base != e.present.end() && !e.task.base.empty() && e.task.repo.empty()) {
    r.Problem(base->second, "key '" + key + ".base': needs a repo (key '" + key + ".repo')");
  }
  if (auto brief = e.present.find("brief"); brief != e.present.end()) {
    if (size_t size = store::EncodedBriefSize(e.task.brief); size > store::kMaxBriefBytes) {
      r.Problem(brief->second, "key '" + key + ".brief': " + std::to_string(size) +
                                   " bytes as sent, more than the " +
                                   std::to_string(store::kMaxBriefBytes) + " a brief may be");
    }
  }
  for (size_t i = 0; i < e.task.verify.size() && i < e.verify_marks.size(); ++i) {
    if (IsBlank(e.task.verify[i])) {
      r.Problem(e.verify_marks[i],
                "key '" + key + ".verify[" + std::to_string(i) + "]': a check must not be blank");
    }
  }
}

// Every text the task sends is UTF-8 (common/utf8.h: JSON carries nothing
// else), each checked at its own line.
void CheckUtf8Text(YamlReader& r, const std::string& key, const Entry& e) {
  const proto::SubmitTask& t = e.task;
  auto check = [&](const std::string& text, const std::string& name, const YAML::Mark& at) {
    const size_t bad = FindInvalidUtf8(text);
    if (bad == std::string::npos) return;
    r.Problem(at, "key '" + key + "." + name + "': '" + ShowBytes(text) + "' is not UTF-8 (" +
                      DescribeInvalidUtf8(text, bad) + ")");
  };
  const std::pair<const char*, const std::string*> scalars[] = {
      {"id", &t.id},     {"title", &t.title}, {"brief", &t.brief},
      {"repo", &t.repo}, {"base", &t.base},   {"model", &t.model}};
  for (const auto& [name, text] : scalars) {
    if (auto at = e.present.find(name); at != e.present.end()) check(*text, name, at->second);
  }
  auto list = [&](const std::vector<std::string>& items, const std::vector<YAML::Mark>& marks,
                  const std::string& name) {
    for (size_t i = 0; i < items.size(); ++i) {
      check(items[i], name + "[" + std::to_string(i) + "]", i < marks.size() ? marks[i] : e.at);
    }
  };
  list(t.verify, e.verify_marks, "verify");
  list(t.depends_on, e.depends_marks, "depends_on");
  for (const auto& [name, value] : t.env) {
    auto at = e.env_marks.find(name);
    check(value, "env." + name, at != e.env_marks.end() ? at->second : e.at);
  }
}

// Required keys, brief vs brief_file, and reading the brief file.
void CheckTask(YamlReader& r, const std::string& key, const std::string& plan_dir,
               const std::string& brief_file, Entry& e) {
  for (const char* required : {"id", "title"}) {
    auto it = e.present.find(required);
    const std::string& value = required == std::string("id") ? e.task.id : e.task.title;
    if (it == e.present.end()) {
      r.Problem(e.at, "key '" + key + "." + required + "': required");
    } else if (IsBlank(value)) {
      r.Problem(it->second, "key '" + key + "." + required + "': must not be empty");
    }
  }
  CheckUtf8Text(r, key, e);
  CheckSendable(r, key, e);
  auto file_at = e.present.find("brief_file");
  if (file_at == e.present.end()) {
    // As `submit --title` alone: the title is the brief.
    if (!e.present.count("brief")) e.task.brief = e.task.title;
    return;
  }
  if (e.present.count("brief")) {
    r.Problem(file_at->second, "key '" + key + ".brief_file': give brief or brief_file, not both");
    return;
  }
  if (brief_file.empty()) {
    r.Problem(file_at->second, "key '" + key + ".brief_file': must not be empty");
    return;
  }
  fs::path file = brief_file;
  if (file.is_relative()) file = fs::path(plan_dir) / file;
  const std::string file_path = file.lexically_normal().string();
  Result<std::string> text = ReadInputFile(file_path, kMaxBriefFileBytes);
  if (!text.ok()) {
    r.Problem(file_at->second,
              "key '" + key + ".brief_file': " + file_path + ": " + text.error().message);
    return;
  }
  if (size_t bad = FindInvalidUtf8(*text); bad != std::string::npos) {
    r.Problem(file_at->second, "key '" + key + ".brief_file': " + ShowBytes(file.string()) +
                                   " is not UTF-8 (" + DescribeInvalidUtf8(*text, bad) +
                                   "); save it as UTF-8");
    return;
  }
  // The store refuses a NUL in any of a task's text (store/submit_check.h).
  if (size_t nul = text->find('\0'); nul != std::string::npos) {
    r.Problem(file_at->second, "key '" + key + ".brief_file': " + ShowBytes(file.string()) +
                                   " contains a NUL byte (" + DescribeInvalidUtf8(*text, nul) +
                                   ")");
    return;
  }
  if (size_t size = store::EncodedBriefSize(*text); size > store::kMaxBriefBytes) {
    r.Problem(file_at->second, "key '" + key + ".brief_file': " + file.string() + " is " +
                                   std::to_string(size) + " bytes as sent, more than the " +
                                   std::to_string(store::kMaxBriefBytes) + " a brief may be");
    return;
  }
  e.task.brief = *text;
}

// Every depends_on names a task of the plan or an existing task id; where
// each of the latter is goes to *existing (the store checks it exists).
void CheckDependencies(YamlReader& r, const std::vector<Entry>& entries,
                       const std::map<std::string, size_t>& index,
                       std::vector<PlanDependency>* existing) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::vector<std::string>& deps = entries[i].task.depends_on;
    for (size_t j = 0; j < deps.size(); ++j) {
      if (index.count(deps[j])) continue;
      const YAML::Mark at =
          j < entries[i].depends_marks.size() ? entries[i].depends_marks[j] : entries[i].at;
      if (LooksLikeTaskId(deps[j])) {
        if (existing) existing->push_back({i, j, r.Where(at)});
        continue;
      }
      r.Problem(at, "key 'tasks[" + std::to_string(i) + "].depends_on[" + std::to_string(j) +
                        "]': '" + ShowBytes(deps[j]) +
                        "' is neither a task of this plan nor an existing task id (t<number>)");
    }
  }
}

// Reports each dependency cycle among the plan's own tasks, in the order the
// edges run, starting from the task that comes first in the file.
class CycleFinder {
 public:
  CycleFinder(YamlReader& r, const std::vector<Entry>& entries,
              const std::map<std::string, size_t>& index)
      : r_(r), entries_(entries), index_(index), color_(entries.size(), kWhite) {}

  void Run() {
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (color_[i] == kWhite) Visit(i);
    }
  }

 private:
  enum Color { kWhite, kGrey, kBlack };
  struct Frame {
    size_t task;
    size_t next_dep = 0;
  };

  // Depth-first, with an explicit stack: a plan may chain 100,000 tasks.
  void Visit(size_t root) {
    color_[root] = kGrey;
    stack_.push_back({root});
    while (!stack_.empty()) {
      Frame& top = stack_.back();
      const std::vector<std::string>& deps = entries_[top.task].task.depends_on;
      if (top.next_dep == deps.size()) {
        color_[top.task] = kBlack;
        stack_.pop_back();
        continue;
      }
      auto it = index_.find(deps[top.next_dep++]);
      if (it == index_.end()) continue;
      size_t j = it->second;
      if (color_[j] == kGrey) {
        Report(j);
      } else if (color_[j] == kWhite) {
        color_[j] = kGrey;
        stack_.push_back({j});
      }
    }
  }

  // The cycle is the stack from j's frame to the top, then back to j; a long
  // one is shortened in the middle.
  void Report(size_t j) {
    auto start =
        std::find_if(stack_.begin(), stack_.end(), [j](const Frame& f) { return f.task == j; });
    const size_t length = static_cast<size_t>(stack_.end() - start);
    std::string path;
    for (size_t n = 0; n < length; ++n) {
      if (length > 12 && n == 10) {
        path += "... (" + std::to_string(length - 11) + " more) -> ";
        n = length - 1;
      }
      path += ShowBytes(entries_[start[n].task].task.id) + " -> ";
    }
    path += ShowBytes(entries_[j].task.id);
    r_.Problem(entries_[j].present.count("id") ? entries_[j].present.at("id") : entries_[j].at,
               "dependency cycle: " + path);
  }

  YamlReader& r_;
  const std::vector<Entry>& entries_;
  const std::map<std::string, size_t>& index_;
  std::vector<Color> color_;
  std::vector<Frame> stack_;
};

std::string PlanDir(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  return dir.empty() ? "." : dir.string();
}

void ReadTasks(YamlReader& r, const YAML::Node& list, const std::string& key,
               const std::string& plan_dir, std::vector<Entry>* entries) {
  if (!list.IsSequence()) {
    r.WrongValue(list, key, "a list of tasks");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string task_key = key + "[" + std::to_string(i) + "]";
    std::string brief_file;
    Entry e = ReadTask(r, list[i], task_key, &brief_file);
    if (!list[i].IsMap()) continue;  // reported
    CheckTask(r, task_key, plan_dir, brief_file, e);
    entries->push_back(std::move(e));
  }
}

// id -> entry; a repeated id is reported at both places.
std::map<std::string, size_t> IndexIds(YamlReader& r, const std::vector<Entry>& entries) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& id = entries[i].task.id;
    if (id.empty()) continue;
    auto [it, inserted] = index.emplace(id, i);
    if (!inserted) {
      const YAML::Mark& first = entries[it->second].present.at("id");
      r.Problem(entries[i].present.at("id"),
                "duplicate task id '" + ShowBytes(id) + "' (first at " + r.Where(first) + ")");
    }
  }
  return index;
}

}  // namespace

Result<std::string> ReadInputFile(const std::string& path, size_t max_bytes) {
  // Every error but a missing file is said as the system says it: a
  // directory on the way that may not be entered is not "not found".
  auto cannot_read = [](int err) {
    return MakeError(ErrorCode::kIo, std::string("cannot read: ") + std::strerror(err));
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "not found");
    return cannot_read(errno);
  }
  if (S_ISDIR(st.st_mode)) return MakeError(ErrorCode::kInvalid, "is a directory");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return cannot_read(errno);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      if (text.size() + static_cast<size_t>(n) > max_bytes) {
        return MakeError(ErrorCode::kInvalid,
                         "is more than " + std::to_string(max_bytes) + " bytes; no more is read");
      }
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return text;
    } else if (errno != EINTR) {
      return cannot_read(errno);
    }
  }
}

Result<std::vector<proto::SubmitTask>> ParsePlan(const std::string& text, const std::string& path,
                                                 std::vector<PlanDependency>* existing) {
  if (existing) existing->clear();
  YamlReader r(path);
  std::optional<YAML::Node> doc = r.Parse(text);
  if (!doc) return r.ToError(ErrorCode::kInvalid);

  std::vector<Entry> entries;
  Marks top = r.ReadMap(
      *doc, "",
      {{"tasks", [&](auto& v, auto& k) { ReadTasks(r, v, k, PlanDir(path), &entries); }}});
  if (r.ok() && !top.count("tasks") && (doc->IsNull() || doc->IsMap())) {
    r.Problem(doc->IsNull() ? YAML::Mark::null_mark() : doc->Mark(),
              "key 'tasks': required (the plan is {tasks: [...]})");
  }
  std::map<std::string, size_t> index = IndexIds(r, entries);
  CheckDependencies(r, entries, index, existing);
  CycleFinder(r, entries, index).Run();

  if (!r.ok()) return r.ToError(ErrorCode::kInvalid);
  std::vector<proto::SubmitTask> tasks;
  for (Entry& e : entries) tasks.push_back(std::move(e.task));
  // Whatever else the store refuses is still the plan's fault (exit 2), not
  // the supervisor's refusal: the checks above name the line of each.
  if (Status valid = tasks.empty() ? Status::Ok() : store::CheckBatch(tasks); !valid.ok()) {
    return MakeError(ErrorCode::kInvalid, path + ": " + valid.error().message);
  }
  return tasks;
}

Result<std::vector<proto::SubmitTask>> LoadPlan(const std::string& path,
                                                std::vector<PlanDependency>* existing) {
  Result<std::string> text = ReadInputFile(path, kMaxPlanFileBytes);
  if (!text.ok()) return text.error().Wrap("plan file: " + path);
  return ParsePlan(*text, path, existing);
}

std::vector<std::vector<proto::SubmitTask>> ChunkTasks(std::vector<proto::SubmitTask> tasks,
                                                       size_t max_bytes) {
  // Room for the envelope ({"v":1,"cmd":"submit_chunk","upload":"...","tasks":[]}).
  constexpr size_t kEnvelope = 256;
  std::vector<std::vector<proto::SubmitTask>> out;
  size_t used = 0;
  for (auto& t : tasks) {
    size_t size =
        proto::json(t).dump(-1, ' ', false, proto::json::error_handler_t::replace).size() + 1;
    if (out.empty() || (used + size + kEnvelope > max_bytes && !out.back().empty())) {
      out.emplace_back();
      used = 0;
    }
    out.back().push_back(std::move(t));
    used += size;
  }
  return out;
}

}  // namespace forge::ctl
