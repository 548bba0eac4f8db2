// A SQLite VFS that gathers a transaction's writes to the write-ahead log
// into one system call.
//
// SQLite writes a WAL frame as two pwrite calls, its 24-byte header and then
// its page, so the supervisor's four transactions of a task (38 frames,
// bench/lifecycle_bench) made 76 of them: 2 us a frame on tmpfs here, against
// 0.5 us a frame written ten at a time (issue 6). This VFS wraps the default
// one and changes only how the -wal file of a connection is written: bytes
// appended one after the other are held in memory and written together.
//
// Contract: the -wal file holds every byte SQLite asked to write
//   - when the write completing a commit frame returns: that write carries
//     them, so its error (SQLITE_FULL, SQLITE_IOERR_WRITE) is the commit's,
//     exactly as without the buffer;
//   - before SQLite reads, syncs, truncates, sizes or closes the file, and
//     before any write that does not follow the held bytes;
//   - before the connection publishes a wal-index header (xShmBarrier) or
//     releases the WAL write lock.
// Readers (other connections, other processes) see a frame only through a
// published header, so they never see one that is not in the file; a
// process crash loses only what an unbuffered writer would also have lost
// (a transaction is committed once its commit frame is in the file). Other
// files (the database, journals, temporary files) are passed through as is.
#pragma once

#include <cstddef>

namespace forge::store {

// Registers the VFS (once, thread-safe; never the default) over the default
// VFS and returns its name for sqlite3_open_v2; nullptr when registration
// failed (then open with the default VFS: only slower).
const char* WalWriteBufferVfs();

// The most bytes held: a write that would pass it writes the held bytes
// first. The default unix VFS writes at most 128 KiB a call (it reports a
// longer write as short: SQLITE_FULL). 96 KiB hold a commit of up to 46
// frames of the 2 KiB pages the store creates (23 of 4 KiB), and any one
// write SQLite makes (a page: 64 KiB at most).
inline constexpr size_t kWalWriteBufferBytes = 96 * 1024;

}  // namespace forge::store
