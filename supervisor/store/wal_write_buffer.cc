#include "supervisor/store/wal_write_buffer.h"

#include <sqlite3.h>

#include <cstdint>
#include <mutex>
#include <string>

namespace forge::store {
namespace {

constexpr char kVfsName[] = "forge-wal-buffer";
// The WAL file format (sqlite.org/fileformat.html#the_write_ahead_log): a
// 32-byte header, then frames of a 24-byte header and a page; bytes 4-7 of a
// frame header (big-endian) are the database size after a commit, 0 in
// every frame but a transaction's last.
constexpr sqlite3_int64 kWalHeaderBytes = 32;
constexpr int kFrameHeaderBytes = 24;
// The wal-index lock slot of the writer (WAL_WRITE_LOCK in wal.c).
constexpr int kWalWriteLock = 0;

sqlite3_vfs* g_base = nullptr;  // the default VFS, which does the I/O
sqlite3_vfs g_vfs;

// What SQLite allocates for each open file (szOsFile): this, then the base
// VFS's own file object.
struct File {
  sqlite3_file base;   // pMethods: kMethods
  sqlite3_file* real;  // the base VFS's file, in the same allocation
  // A -wal file: the bytes held, from held_offset on; nullptr otherwise.
  std::string* held;
  sqlite3_int64 held_offset;
  bool commit_page_next;  // the last write was a commit frame's header
  File* db;               // a -wal file's database file (nullptr: unknown)
  File* wal;              // a database file's open -wal file (nullptr: none)
};

constexpr size_t kFileBytes = (sizeof(File) + 7) & ~size_t{7};

File* Of(sqlite3_file* f) {
  return reinterpret_cast<File*>(f);
}
sqlite3_file* Real(sqlite3_file* f) {
  return Of(f)->real;
}
const sqlite3_io_methods* RealMethods(sqlite3_file* f) {
  return Real(f)->pMethods;
}

uint32_t BigEndian32(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

// Writes the held bytes (one pwrite) and forgets them, written or not: after
// an error SQLite rolls back and writes those frames again.
int Flush(File* f) {
  if (f == nullptr || f->held == nullptr || f->held->empty()) return SQLITE_OK;
  int rc = f->real->pMethods->xWrite(f->real, f->held->data(), static_cast<int>(f->held->size()),
                                     f->held_offset);
  f->held->clear();
  f->commit_page_next = false;
  return rc;
}

// ------------------------------------------------------------ io methods --

int Close(sqlite3_file* file) {
  File* f = Of(file);
  int rc = Flush(f);
  if (f->db != nullptr) f->db->wal = nullptr;
  if (f->wal != nullptr) f->wal->db = nullptr;
  if (f->real->pMethods != nullptr) {
    int closed = f->real->pMethods->xClose(f->real);
    if (rc == SQLITE_OK) rc = closed;
  }
  delete f->held;
  f->held = nullptr;
  return rc;
}

int Read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  if (int rc = Flush(Of(file)); rc != SQLITE_OK) return rc;
  return RealMethods(file)->xRead(Real(file), out, amount, offset);
}

int Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = Of(file);
  if (f->held == nullptr) return RealMethods(file)->xWrite(Real(file), data, amount, offset);
  std::string& held = *f->held;
  if (!held.empty() && (offset != f->held_offset + static_cast<sqlite3_int64>(held.size()) ||
                        held.size() + static_cast<size_t>(amount) > kWalWriteBufferBytes)) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  if (static_cast<size_t>(amount) > kWalWriteBufferBytes) {
    return RealMethods(file)->xWrite(Real(file), data, amount, offset);
  }
  if (held.empty()) f->held_offset = offset;
  held.append(static_cast<const char*>(data), static_cast<size_t>(amount));
  bool completes_commit = f->commit_page_next;
  f->commit_page_next = amount == kFrameHeaderBytes && offset >= kWalHeaderBytes &&
                        BigEndian32(static_cast<const char*>(data) + 4) != 0;
  if (completes_commit) return Flush(f);
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  if (int rc = Flush(Of(file)); rc != SQLITE_OK) return rc;
  return RealMethods(file)->xTruncate(Real(file), size);
}

int Sync(sqlite3_file* file, int flags) {
  if (int rc = Flush(Of(file)); rc != SQLITE_OK) return rc;
  return RealMethods(file)->xSync(Real(file), flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  if (int rc = Flush(Of(file)); rc != SQLITE_OK) return rc;
  return RealMethods(file)->xFileSize(Real(file), size);
}

int Lock(sqlite3_file* file, int level) {
  return RealMethods(file)->xLock(Real(file), level);
}
int Unlock(sqlite3_file* file, int level) {
  return RealMethods(file)->xUnlock(Real(file), level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return RealMethods(file)->xCheckReservedLock(Real(file), out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  return RealMethods(file)->xFileControl(Real(file), op, arg);
}
int SectorSize(sqlite3_file* file) {
  return RealMethods(file)->xSectorSize(Real(file));
}
int DeviceCharacteristics(sqlite3_file* file) {
  return RealMethods(file)->xDeviceCharacteristics(Real(file));
}

// The wal-index (shared memory) methods are called on the database file.
int ShmMap(sqlite3_file* file, int page, int page_size, int extend, void volatile** out) {
  if (RealMethods(file)->iVersion < 2) return SQLITE_IOERR;
  return RealMethods(file)->xShmMap(Real(file), page, page_size, extend, out);
}

int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  if (RealMethods(file)->iVersion < 2) return SQLITE_IOERR;
  // Before the writer lets go of the write lock: uncommitted frames (a
  // transaction that spilled pages, then rolled back) are written as
  // SQLite wrote them, not after another writer took the lock.
  if ((flags & SQLITE_SHM_UNLOCK) && offset <= kWalWriteLock && kWalWriteLock < offset + n) {
    (void)Flush(Of(file)->wal);  // not committed: an error changes nothing
  }
  return RealMethods(file)->xShmLock(Real(file), offset, n, flags);
}

void ShmBarrier(sqlite3_file* file) {
  // Nothing is held here when a commit publishes its header (the commit
  // frame's write flushed): this only keeps the contract if SQLite ever
  // publishes after a write this file did not recognise as a commit's.
  (void)Flush(Of(file)->wal);
  if (RealMethods(file)->iVersion >= 2) RealMethods(file)->xShmBarrier(Real(file));
}

int ShmUnmap(sqlite3_file* file, int delete_flag) {
  if (RealMethods(file)->iVersion < 2) return SQLITE_OK;
  return RealMethods(file)->xShmUnmap(Real(file), delete_flag);
}

int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  if (RealMethods(file)->iVersion < 3) {
    *out = nullptr;
    return SQLITE_OK;
  }
  return RealMethods(file)->xFetch(Real(file), offset, amount, out);
}

int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  if (RealMethods(file)->iVersion < 3) return SQLITE_OK;
  return RealMethods(file)->xUnfetch(Real(file), offset, page);
}

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

// ----------------------------------------------------------- vfs methods --

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = Of(file);
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kFileBytes);
  f->real->pMethods = nullptr;
  f->held = nullptr;
  f->held_offset = 0;
  f->commit_page_next = false;
  f->db = nullptr;
  f->wal = nullptr;
  int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  // As the base VFS left its file: with methods, SQLite calls xClose even
  // after a failed open.
  f->base.pMethods = f->real->pMethods != nullptr ? &kMethods : nullptr;
  if (rc != SQLITE_OK || (flags & SQLITE_OPEN_WAL) == 0) return rc;
  f->held = new std::string();
  // The database file was opened through this VFS too (one pager, one VFS).
  f->db = Of(sqlite3_database_file_object(name));
  if (f->db != nullptr) f->db->wal = f;
  return rc;
}

int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_base->xDelete(g_base, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_base->xAccess(g_base, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int size, char* out) {
  return g_base->xFullPathname(g_base, name, size, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) {
  return g_base->xDlOpen(g_base, name);
}
void DlError(sqlite3_vfs*, int size, char* out) {
  g_base->xDlError(g_base, size, out);
}
void (*DlSym(sqlite3_vfs*, void* lib, const char* symbol))(void) {
  return g_base->xDlSym(g_base, lib, symbol);
}
void DlClose(sqlite3_vfs*, void* lib) {
  g_base->xDlClose(g_base, lib);
}
int Randomness(sqlite3_vfs*, int size, char* out) {
  return g_base->xRandomness(g_base, size, out);
}
int Sleep(sqlite3_vfs*, int micros) {
  return g_base->xSleep(g_base, micros);
}
int CurrentTime(sqlite3_vfs*, double* out) {
  return g_base->xCurrentTime(g_base, out);
}
int GetLastError(sqlite3_vfs*, int size, char* out) {
  return g_base->xGetLastError(g_base, size, out);
}
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_base->xCurrentTimeInt64(g_base, out);
}

}  // namespace

const char* WalWriteBufferVfs() {
  static std::once_flag once;
  static const char* name = nullptr;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    // Version 2 for xCurrentTimeInt64; the system-call hooks are not offered.
    if (g_base == nullptr || g_base->iVersion < 2) return;
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(kFileBytes) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kVfsName;
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    if (sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK) name = kVfsName;
  });
  return name;
}

}  // namespace forge::store
