// The database schema as numbered migrations. meta(schema_version) says how
// many have been applied; each runs in its own transaction, so a crash
// mid-migration leaves the database at the previous version.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "supervisor/store/sqlite_util.h"

namespace forge::store {

// Migration i (0-based) takes the schema from version i to i+1.
const std::vector<std::string>& Migrations();

// 0 for a database without a meta table (new or pre-versioning).
Result<int64_t> ReadSchemaVersion(Conn& conn);

// Applies the missing migrations up to `target`. A database newer than
// `target` is refused with a kConflict error naming both versions.
Status Migrate(Conn& conn, int64_t target);

// The oldest version a read-only open reads as it is: the migrations after
// it only add what no reader uses (6: submit_keys, read by submits only) or
// what such an open reads as not there (7: tasks.base_commit, read as NULL:
// kTaskColumnsBeforeV7), so a forge-ctl newer than its running supervisor
// still reads offline.
inline constexpr int64_t kOldestReadOnlySchema = 5;

// kConflict error if `version` is newer than `supported` (or, for a read-only
// open that cannot migrate, older than kOldestReadOnlySchema).
Status CheckVersion(int64_t version, int64_t supported, bool read_only);

}  // namespace forge::store
