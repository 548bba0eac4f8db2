#include "common/lockfile.h"

#include <fcntl.h>
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
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return MakeError(ErrorCode::kIo, "cannot open lock file " + path + ": " + std::strerror(errno));
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
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    return MakeError(ErrorCode::kIo, "cannot write pid to " + path + ": " + std::strerror(errno));
  }
  LockFile lock;
  lock.fd_ = std::move(fd);
  return lock;
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
