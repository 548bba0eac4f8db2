// Validation of a submitted batch that needs no database: titles, kinds,
// agent profiles, env names, NUL bytes, attempt limits, duplicate local ids
// and dependency cycles inside the batch. It is the supervisor's, for every
// client; forge-ctl runs it too, to refuse before sending.
// (Dependencies on existing tasks are checked by the store, in the
// transaction.)
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "proto/control.h"

namespace forge::store {

// The largest brief a task may have. It crosses the children's socket in
// a dispatch (and to a critic agent in a review), whose messages are
// refused past 4 MiB (kMaxMessageBytes) with the attempt's other fields
// and history beside it; an agent's prompt is far smaller than this.
inline constexpr size_t kMaxBriefBytes = 2u << 20;

// What a brief measures against kMaxBriefBytes: its size as sent, where
// JSON writes a quote or a backslash in two bytes and another control
// character in up to six.
size_t EncodedBriefSize(std::string_view brief);

// The most a task's text besides its brief may be as sent (title, checks,
// env, dependencies, ids, names): with the brief and the attempt's history
// it must fit one dispatch (kMaxMessageBytes, 4 MiB); a submit of one task
// past it could not even be sent.
inline constexpr size_t kMaxTaskTextBytes = 1u << 20;

// What a task measures against kMaxTaskTextBytes: each of those strings as
// EncodedBriefSize measures it.
size_t EncodedTaskTextSize(const proto::SubmitTask& task);

// "task 'a'" for a task with a local id, "task #3" (1-based) otherwise.
std::string TaskLabel(const std::vector<proto::SubmitTask>& tasks, size_t index);

// kInvalid naming the task for the first problem found:
//   "task #2: title is empty", "duplicate task id 'a' (tasks #1 and #3)",
//   "task #1: brief is 5000000 bytes, more than the 2097152 a brief may be",
//   "task 'a': verify[0] contains a NUL byte", "dependency cycle: a -> b -> a".
Status CheckBatch(const std::vector<proto::SubmitTask>& tasks);

// The most bytes an idempotency key may have (Store::SubmitOnce).
inline constexpr size_t kMaxIdempotencyKeyBytes = 200;

// kInvalid unless key is 1 to kMaxIdempotencyKeyBytes bytes without control
// characters, its message led by `what`: "idempotency key is empty",
// "--idempotency-key is 201 bytes; at most 200", "... has a control
// character (byte 0x0a at 5)".
Status CheckIdempotencyKey(const std::string& key, const std::string& what = "idempotency key");

}  // namespace forge::store
