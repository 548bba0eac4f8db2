// Validation of a submitted batch that needs no database: titles, kinds,
// attempt limits, duplicate local ids and dependency cycles inside the batch.
// (Dependencies on existing tasks are checked by the store, in the
// transaction.)
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "proto/control.h"

namespace forge::store {

// "task 'a'" for a task with a local id, "task #3" (1-based) otherwise.
std::string TaskLabel(const std::vector<proto::SubmitTask>& tasks, size_t index);

// kInvalid naming the task for the first problem found:
//   "task #2: title is empty", "duplicate task id 'a' (tasks #1 and #3)",
//   "dependency cycle: a -> b -> a".
Status CheckBatch(const std::vector<proto::SubmitTask>& tasks);

}  // namespace forge::store
