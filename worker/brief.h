// The worker brief: the prompt an agent gets, rendered with Mustache from
// briefs/worker.mustache. The template is looked up in <state>/briefs/ (the
// operator's override), then the installed briefs directory (--briefs-dir or
// FORGE_BRIEFS_DIR), then the source tree's briefs/ (FORGE_SOURCE_DIR).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "proto/messages.h"

namespace kainjow::mustache {
template <typename StringType>
class basic_data;
}  // namespace kainjow::mustache

namespace forge::worker {

struct BriefDirs {
  std::string state_dir;   // its briefs/ subdirectory is searched first
  std::string briefs_dir;  // installed templates; empty: skipped
  std::string source_dir;  // the source tree; empty: skipped
};

// The directories searched for a template, in order.
std::vector<std::string> TemplateSearchPath(const BriefDirs& dirs);

// The path of template `name` (e.g. "worker.mustache"): the first found in
// the search path. kConfig error listing the places searched when none has it.
Result<std::string> FindTemplate(const BriefDirs& dirs, std::string_view name);

// Renders template text with data. A template error is kConfig naming
// `template_name` and the line ("worker.mustache line 7: Unclosed section ...").
Result<std::string> RenderTemplate(const std::string& template_name, const std::string& text,
                                   const nlohmann::json& data);

// Parsed templates kept for reuse, one per template path, while the file's
// text is unchanged. Parsing is most of what rendering a brief costs (bench
// figure 1); reading the file is cheap, and comparing its text rather than
// its mtime cannot miss an edit made within one clock tick. Not thread-safe:
// one per worker, used from its loop.
class TemplateCache {
 public:
  TemplateCache();
  ~TemplateCache();
  // Renders text with data (already in the template engine's form),
  // reusing the parse of an identical text from the same path; errors as
  // RenderTemplate's.
  Result<std::string> Render(const std::string& template_name, const std::string& text,
                             const kainjow::mustache::basic_data<std::string>& data);
  int64_t parses() const { return parses_; }

 private:
  struct Entry;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
  int64_t parses_ = 0;
};

// The template a task's agent is briefed with: po.mustache for an `expand`
// task (write a spec), worker.mustache otherwise. Both see the same data:
// task (id, title, brief), attempt, workspace, verify[] {command}, has_verify,
// retry, history[] {n, outcome, error, failing_checks[] {name, exit_code,
// signal, timed_out, output_tail}, has_failing_checks, findings[] {severity,
// category, file, line, message}, has_findings} (the last 5 attempts). In
// every template rendered here an empty string is false in a section
// ({{#error}}…{{/error}}), as in mustache.js.
std::string_view BriefTemplateFor(const proto::TaskInfo& task);

// Finds, reads and renders the task's template (BriefTemplateFor) for a
// dispatch; with a cache, an unchanged template is not parsed again.
Result<std::string> RenderWorkerBrief(const BriefDirs& dirs, const proto::Dispatch& dispatch,
                                      TemplateCache* cache = nullptr);

}  // namespace forge::worker
