#include "common/lockfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace forge {
namespace {
struct flock WholeFile(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  return fl;
}
}  // namespace

Result<LockFile> LockFile::Acquire(const std::string& path, const std::string& held) {
  // A lock file can be unlinked while held (maintenance removes a
  // workspace's with it): a lock taken on a file no longer at `path` would
  // let a later opener lock a new file there too. So the lock counts only
  // when the path still names the file that was locked; else try again.
  for (int tries = 0;; ++tries) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      return MakeError(ErrorCode::kIo,
                       "cannot open lock file " + path + ": " + std::strerror(errno));
    }
    struct flock fl = WholeFile(F_WRLCK);
    if (::fcntl(fd.get(), F_SETLK, &fl) != 0) {
      int err = errno;
      if (err == EACCES || err == EAGAIN) {
        auto holder = Holder(path);
        std::string who = holder ? "pid " + std::to_string(*holder) : "another process";
        return MakeError(ErrorCode::kConflict, held + " (" + who + ", lock " + path + ")");
      }
      return MakeError(ErrorCode::kIo, "cannot lock " + path + ": " + std::strerror(err));
    }
    struct stat locked {};
    struct stat named {};
    bool same = ::fstat(fd.get(), &locked) == 0 && ::stat(path.c_str(), &named) == 0 &&
                locked.st_dev == named.st_dev && locked.st_ino == named.st_ino;
    if (!same) {
      if (tries < 100) continue;
      return MakeError(ErrorCode::kIo, "lock file " + path + " keeps being replaced");
    }
    // The pid is for a human reading the file (Holder asks the kernel): a
    // full disk that refuses it must not refuse the lock. The file is cut
    // only when the pid would not cover what is there: it is new (empty) or
    // another process's pid of as many digits, most times.
    std::string pid = std::to_string(::getpid()) + "\n";
    if (locked.st_size <= static_cast<off_t>(pid.size()) || ::ftruncate(fd.get(), 0) == 0) {
      ssize_t written = ::pwrite(fd.get(), pid.data(), pid.size(), 0);
      (void)written;
    }
    LockFile lock;
    lock.fd_ = std::move(fd);
    return lock;
  }
}

std::optional<pid_t> LockFile::Holder(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  // F_GETLK needs a lock type compatible with the open mode; asking about a
  // read lock reports any write lock held by another process.
  struct flock fl = WholeFile(F_RDLCK);
  if (::fcntl(fd.get(), F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) return std::nullopt;
  return fl.l_pid;
}

}  // namespace forge
