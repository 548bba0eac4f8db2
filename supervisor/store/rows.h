// Mapping between table rows and the proto records. Each SELECT that feeds a
// reader names the columns with the matching k*Columns string, in order.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "proto/types.h"
#include "supervisor/store/sqlite_util.h"

namespace forge::store {

using json = nlohmann::json;

// A task row with the bookkeeping the proto record does not carry.
struct TaskRow {
  proto::TaskInfo info;
  int64_t seq = 0;
  int64_t version = 0;  // state transitions so far
};

struct AttemptRow {
  proto::AttemptInfo info;
  bool reported = false;  // RecordAgentResult done
  bool ended = false;
};

extern const char* const kTaskColumns;
// kTaskColumns for a database before schema 7, which a read-only open reads
// as it is: NULL in place of tasks.base_commit (read as "", not recorded).
extern const char* const kTaskColumnsBeforeV7;
extern const char* const kAttemptColumns;
// The ready selection (after "SELECT <kTaskColumns> FROM tasks "; binds the
// LIMIT): it must be answered from the tasks_ready index alone (tested with
// EXPLAIN QUERY PLAN).
extern const char* const kNextReadyWhere;

// kDb error naming the row and column when a JSON column does not parse.
Result<TaskRow> ReadTaskRow(const Stmt& stmt);
Result<AttemptRow> ReadAttemptRow(const Stmt& stmt);

// JSON text for a column; never throws (invalid UTF-8 is replaced).
std::string JsonText(const json& j);

// JsonText of a container column's value; an empty one is "{}" or "[]"
// without building the JSON (most tasks' env, verify and depends_on).
template <typename Container>
std::string JsonColumnText(const Container& v) {
  if (v.empty()) {
    if constexpr (requires { typename Container::mapped_type; }) return "{}";
    return "[]";
  }
  return JsonText(json(v));
}

}  // namespace forge::store
