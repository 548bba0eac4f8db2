// Plan files for `forge-ctl submit --plan FILE` (contract): YAML of the form
//   tasks:
//     - {id, title, brief | brief_file, repo, base, verify: [], depends_on: [],
//        priority, max_attempts, needs_approval, allow_empty, agent, model, env: {}}
// Ids are local to the file. A plan is submitted all or nothing, so the whole
// file is validated first and every problem is reported, one per line, each
// naming FILE:LINE:COLUMN.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/result.h"
#include "proto/control.h"
#include "supervisor/store/submit_check.h"

namespace forge::ctl {

// A dependency on an existing task (t<digits>, no task of the plan): the
// plan cannot tell whether that task exists, the supervisor's store does,
// and a submit it refuses for it is named by this line.
struct PlanDependency {
  size_t task = 0;    // index in the plan
  size_t item = 0;    // index in that task's depends_on
  std::string where;  // "FILE:LINE:COLUMN"
};

// Reads and validates a plan file; the tasks come back in file order, with
// each brief_file (relative to the plan's directory) read into `brief`.
// kNotFound when the file is missing; kInvalid listing every problem:
// unknown keys, wrong types, missing id/title, duplicate ids, brief and
// brief_file together, unreadable brief files, depends_on naming neither a
// task of the plan nor an existing task id (t<digits>, checked by the store),
// dependency cycles ("dependency cycle: a -> b -> a"), and text that is not
// UTF-8 (a value, or a brief_file's contents), which no request can carry.
// *existing (when given) gets where each dependency on an existing task is.
Result<std::vector<proto::SubmitTask>> LoadPlan(const std::string& path,
                                                std::vector<PlanDependency>* existing = nullptr);

// The same from text; `path` names the file in messages and locates brief files.
Result<std::vector<proto::SubmitTask>> ParsePlan(const std::string& text, const std::string& path,
                                                 std::vector<PlanDependency>* existing = nullptr);

// The contents of a file forge-ctl reads itself (a plan, a brief file).
// Errors say why, without the path: kNotFound "not found", kInvalid "is a
// directory", kIo "cannot read: " and the system's reason (permission
// denied on it or on a directory on the way, a symbolic link loop, ...);
// kInvalid "is more than N bytes" past max_bytes, read no further (a
// device such as /dev/zero never ends).
Result<std::string> ReadInputFile(const std::string& path, size_t max_bytes);

// The largest plan file forge-ctl reads: a million tasks of a line or two
// each fit several times over.
inline constexpr size_t kMaxPlanFileBytes = 256u << 20;
// What forge-ctl reads of a brief file: past the brief limit, so that a
// file a little over it is refused with its size as sent.
inline constexpr size_t kMaxBriefFileBytes = 4 * store::kMaxBriefBytes;

// Splits tasks (in order) into batches whose `submit_chunk` requests stay
// under max_bytes each, estimated from each task's JSON; a single task larger
// than that gets a batch of its own (and the supervisor refuses it by size).
std::vector<std::vector<proto::SubmitTask>> ChunkTasks(std::vector<proto::SubmitTask> tasks,
                                                       size_t max_bytes);

}  // namespace forge::ctl
