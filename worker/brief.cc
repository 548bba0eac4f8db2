#include "worker/brief.h"

#include <sys/stat.h>

#include <kainjow/mustache.hpp>

#include "common/paths.h"

namespace forge::worker {
namespace {

using json = nlohmann::json;
namespace mst = kainjow::mustache;

constexpr size_t kMaxHistory = 5;

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// An empty string is false in a section, as in mustache.js: the templates
// write {{#error}}Error: {{error}}{{/error}} and {{#file}}{{file}}: {{/file}}
// for "when there is one". kainjow counts any string as true, and rendered
// "Error: " for an attempt without an error. (A false value renders as
// nothing, like the empty string.)
mst::data StringData(const std::string& s) {
  return s.empty() ? mst::data{false} : mst::data{s};
}

mst::data ToMustache(const json& j) {
  switch (j.type()) {
    case json::value_t::object: {
      mst::data d{mst::data::type::object};
      for (const auto& [k, v] : j.items()) d.set(k, ToMustache(v));
      return d;
    }
    case json::value_t::array: {
      mst::data d{mst::data::type::list};
      for (const auto& v : j) d.push_back(ToMustache(v));
      return d;
    }
    case json::value_t::boolean:
      return mst::data{j.get<bool>()};
    case json::value_t::string:
      return StringData(j.get_ref<const std::string&>());
    case json::value_t::null:
    case json::value_t::discarded:
      return mst::data{false};
    default:
      return mst::data{j.dump()};
  }
}

// kainjow reports "<problem> at <offset>"; operators need a line number.
std::string WithLine(const std::string& message, const std::string& text) {
  size_t at = message.rfind(" at ");
  if (at == std::string::npos) return message;
  char* end = nullptr;
  unsigned long offset = strtoul(message.c_str() + at + 4, &end, 10);
  if (end == message.c_str() + at + 4 || *end != '\0') return message;
  offset = std::min<unsigned long>(offset, text.size());
  long line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(offset), '\n');
  return "line " + std::to_string(line) + ": " + message.substr(0, at);
}

}  // namespace

std::vector<std::string> TemplateSearchPath(const BriefDirs& dirs) {
  std::vector<std::string> out;
  if (!dirs.state_dir.empty()) out.push_back(dirs.state_dir + "/briefs");
  if (!dirs.briefs_dir.empty()) out.push_back(dirs.briefs_dir);
  if (!dirs.source_dir.empty()) out.push_back(dirs.source_dir + "/briefs");
  return out;
}

Result<std::string> FindTemplate(const BriefDirs& dirs, std::string_view name) {
  const std::vector<std::string> search = TemplateSearchPath(dirs);
  std::string path;
  for (const auto& dir : search) {
    path.assign(dir).append("/").append(name);
    if (IsFile(path)) return path;
  }
  // The list of places searched, built only for the error: a worker looks
  // for its template every dispatch, past the operator's override dir.
  std::string searched;
  for (const auto& dir : search) searched.append(searched.empty() ? "" : ", ").append(dir);
  return MakeError(ErrorCode::kConfig, "brief template '" + std::string(name) +
                                           "' not found (searched: " + searched + ")");
}

namespace {

// The brief's data (brief.h lists the keys), built straight as the template
// engine's data: as JSON then ToMustache it copied every value twice and cost
// a third of a worker's instructions for a no-op task (issue 6).

// An object or list member is put in place with operator[] and moved:
// set() copies its argument, and the copy of an object or list copies
// everything under it (the task, the verify list, the history). A leaf
// keeps set(): operator[] first makes an empty object there to overwrite.
void Put(mst::data& object, const std::string& key, mst::data&& value) {
  object[key] = std::move(value);
}

mst::data CheckMustache(const proto::CheckResult& c) {
  mst::data d{mst::data::type::object};
  d.set("name", StringData(c.name));
  d.set("exit_code", StringData(std::to_string(c.exit_code)));
  d.set("signal", StringData(c.signal != 0 ? std::to_string(c.signal) : ""));
  d.set("timed_out", mst::data{c.timed_out});
  d.set("output_tail", StringData(c.output_tail));
  return d;
}

mst::data FindingMustache(const proto::Finding& f) {
  mst::data d{mst::data::type::object};
  d.set("severity", StringData(f.severity));
  d.set("category", StringData(f.category));
  d.set("file", StringData(f.file));
  d.set("line", StringData(f.line > 0 ? std::to_string(f.line) : ""));
  d.set("message", StringData(f.message));
  return d;
}

mst::data WorkerBriefData(const proto::Dispatch& d) {
  mst::data verify{mst::data::type::list};
  for (const auto& v : d.task.verify) {
    mst::data command{mst::data::type::object};
    command.set("command", StringData(v));
    verify.push_back(command);
  }
  mst::data history{mst::data::type::list};
  size_t first = d.history.size() > kMaxHistory ? d.history.size() - kMaxHistory : 0;
  for (size_t i = first; i < d.history.size(); ++i) {
    const auto& h = d.history[i];
    mst::data checks{mst::data::type::list};
    for (const auto& c : h.failing_checks) checks.push_back(CheckMustache(c));
    mst::data findings{mst::data::type::list};
    for (const auto& f : h.findings) findings.push_back(FindingMustache(f));
    mst::data entry{mst::data::type::object};
    entry.set("n", StringData(std::to_string(h.n)));
    entry.set("outcome", StringData(h.outcome));
    entry.set("error", StringData(h.error));
    Put(entry, "failing_checks", std::move(checks));
    entry.set("has_failing_checks", mst::data{!h.failing_checks.empty()});
    Put(entry, "findings", std::move(findings));
    entry.set("has_findings", mst::data{!h.findings.empty()});
    history.push_back(entry);
  }
  mst::data task{mst::data::type::object};
  task.set("id", StringData(d.task.id));
  task.set("title", StringData(d.task.title));
  task.set("brief", StringData(d.brief.empty() ? d.task.brief : d.brief));
  mst::data out{mst::data::type::object};
  Put(out, "task", std::move(task));
  out.set("attempt", StringData(std::to_string(d.n)));
  out.set("workspace", StringData(d.workspace));
  Put(out, "verify", std::move(verify));
  out.set("has_verify", mst::data{!d.task.verify.empty()});
  out.set("retry", mst::data{first < d.history.size()});
  Put(out, "history", std::move(history));
  return out;
}

Error TemplateError(const std::string& template_name, const mst::mustache& tmpl,
                    const std::string& text) {
  return MakeError(ErrorCode::kConfig, "brief template '" + template_name + "' " +
                                           WithLine(tmpl.error_message(), text));
}

// A parsed template ready to render: no HTML escaping (briefs are plain text
// for an agent, not HTML).
std::unique_ptr<mst::mustache> Parse(const std::string& text) {
  auto tmpl = std::make_unique<mst::mustache>(text);
  tmpl->set_custom_escape([](const std::string& s) { return s; });
  return tmpl;
}

// The names a render looks up: kainjow's own context (mustache.hpp,
// class context), but for how a dotted name ({{task.id}}) is split. Its
// split builds a std::stringstream for every dotted tag rendered, a seventh
// of a brief's instructions (bench/README.md, session 34). The lookup is
// the same: the innermost section's data first; a dotted name resolves
// whole in one data, else in the next one out.
class Context : public mst::basic_context<std::string> {
 public:
  explicit Context(const mst::data* root) { items_.push_back(root); }
  void push(const mst::data* data) override { items_.push_back(data); }
  void pop() override { items_.pop_back(); }

  const mst::data* get(const std::string& name) const override {
    if (name.size() == 1 && name[0] == '.') return items_.back();
    if (name.find('.') == std::string::npos) return get_partial(name);
    const std::vector<std::string> names = SplitName(name);
    for (auto item = items_.rbegin(); item != items_.rend(); ++item) {
      const mst::data* var = *item;
      for (const auto& n : names) {
        var = var->get(n);
        if (var == nullptr) break;
      }
      if (var != nullptr) return var;
    }
    return nullptr;
  }

  const mst::data* get_partial(const std::string& name) const override {
    for (auto item = items_.rbegin(); item != items_.rend(); ++item) {
      if (const mst::data* var = (*item)->get(name)) return var;
    }
    return nullptr;
  }

  // As kainjow's split (std::getline on '.'): "a..b" is a, "", b; a
  // trailing '.' adds no empty part ("a." is a).
  static std::vector<std::string> SplitName(const std::string& name) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      out.emplace_back(name, start, dot - start);
      start = dot + 1;
    }
    return out;
  }

 private:
  std::vector<const mst::data*> items_;  // the innermost last
};

// kainjow's render(context, stream) takes any type with <<; this appends.
struct Appender {
  std::string& out;
  Appender& operator<<(const std::string& piece) {
    out += piece;
    return *this;
  }
};

// Renders a valid parse (kainjow's render with a context of ours does not
// check). A render error (e.g. an unclosed section found late) leaves
// `tmpl` invalid; callers must not reuse it then.
Result<std::string> RenderParsed(mst::mustache& tmpl, const std::string& template_name,
                                 const std::string& text, const mst::data& data) {
  // Appended to a string, not kainjow's default std::ostringstream: the
  // stream's construction and a << for every piece of text (a template's
  // lines are pieces) were about a sixth of a render (issue 6).
  std::string out;
  out.reserve(text.size());
  Context context(&data);
  Appender appender{out};
  tmpl.render(context, appender);
  if (!tmpl.is_valid()) return TemplateError(template_name, tmpl, text);
  return out;
}

}  // namespace

Result<std::string> RenderTemplate(const std::string& template_name, const std::string& text,
                                   const json& data) {
  auto tmpl = Parse(text);
  if (!tmpl->is_valid()) return TemplateError(template_name, *tmpl, text);
  return RenderParsed(*tmpl, template_name, text, ToMustache(data));
}

struct TemplateCache::Entry {
  std::string text;
  std::unique_ptr<mst::mustache> parsed;  // valid
};

TemplateCache::TemplateCache() = default;
TemplateCache::~TemplateCache() = default;

Result<std::string> TemplateCache::Render(const std::string& template_name, const std::string& text,
                                          const mst::data& data) {
  std::unique_ptr<Entry>& entry = entries_[template_name];
  if (!entry || entry->text != text) {
    entry.reset();
    ++parses_;
    auto tmpl = Parse(text);
    if (!tmpl->is_valid()) return TemplateError(template_name, *tmpl, text);
    entry = std::make_unique<Entry>(Entry{text, std::move(tmpl)});
  }
  auto out = RenderParsed(*entry->parsed, template_name, text, data);
  if (!out.ok()) entry.reset();
  return out;
}

std::string_view BriefTemplateFor(const proto::TaskInfo& task) {
  return task.kind == "expand" ? "po.mustache" : "worker.mustache";
}

Result<std::string> RenderWorkerBrief(const BriefDirs& dirs, const proto::Dispatch& dispatch,
                                      TemplateCache* cache) {
  FORGE_ASSIGN_OR_RETURN(std::string path, FindTemplate(dirs, BriefTemplateFor(dispatch.task)));
  auto text = ReadFile(path);
  // Not a regular file (a FIFO, whose read would stall the worker): the
  // operator's to fix, as a template that does not parse.
  if (!text.ok() && text.error().code == ErrorCode::kInvalid) {
    return MakeError(ErrorCode::kConfig, "brief template " + text.error().message);
  }
  if (!text.ok()) return text.error();
  TemplateCache once;
  return (cache != nullptr ? *cache : once).Render(path, *text, WorkerBriefData(dispatch));
}

}  // namespace forge::worker
