#include "common/paths.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>

namespace forge {
namespace {

Error IoError(const std::string& what, const std::string& path, int err) {
  return MakeError(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                   what + " '" + path + "': " + strerror(err));
}

Status MakeOneDir(const std::string& path, unsigned mode) {
  if (mkdir(path.c_str(), mode) == 0) return Status::Ok();
  int err = errno;
  struct stat st {};
  if (err == EEXIST && stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return MakeError(ErrorCode::kInvalid,
                     "cannot create directory '" + path + "': a file is there, not a directory");
  }
  const int stat_err = errno;
  struct stat link {};
  if (err == EEXIST && lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    // There, but it cannot be followed: "File exists" would say nothing.
    return MakeError(ErrorCode::kInvalid, "cannot create directory '" + path +
                                              "': a symlink is there whose target cannot be "
                                              "used (" +
                                              strerror(stat_err) + ")");
  }
  // The path is wrong rather than the system (kInvalid): the caller's input
  // names a file where a directory must be, as a parent (ENOTDIR) or itself.
  if (err == ENOTDIR) {
    return MakeError(ErrorCode::kInvalid, "cannot create directory '" + path +
                                              "': part of the path is a file, not a directory");
  }
  return IoError("cannot create directory", path, err);
}

}  // namespace

Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return MakeError(ErrorCode::kInvalid, "cannot create directory: empty path");
  // The leaf first: a worker makes two directories per attempt under parents
  // that exist, one mkdir each instead of a mkdir and a stat per component.
  Status leaf = MakeOneDir(path, mode);
  if (leaf.ok() || leaf.error().code != ErrorCode::kNotFound) return leaf;
  size_t end = path.find_last_not_of('/');
  size_t slash = end == std::string::npos ? std::string::npos : path.rfind('/', end);
  if (slash == std::string::npos || slash == 0) return leaf;  // no parent left to make
  FORGE_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash), mode));
  return MakeOneDir(path, mode);
}

namespace {

// An entry of `dir` that makes it not ours by `own`, or "" when it is ours.
std::string ForeignEntry(const std::string& dir, const OwnDirNames& own) {
  std::error_code ec;
  std::string foreign;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    auto in = [&](const std::vector<std::string>& names) {
      return std::find(names.begin(), names.end(), name) != names.end();
    };
    if (in(own.markers)) return "";  // a symlink counts, resolvable or not
    if (foreign.empty() && !in(own.layout)) foreign = name;
  }
  return ec ? "" : foreign;  // unreadable: the checks after it will say
}

}  // namespace

Status MakePrivateDir(const std::string& path, const OwnDirNames& own) {
  struct stat before {};
  const bool existed = ::stat(path.c_str(), &before) == 0 && S_ISDIR(before.st_mode);
  FORGE_RETURN_IF_ERROR(MakeDirs(path, 0700));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return IoError("cannot stat", path, errno);
  // A directory other users write to (/tmp, given by mistake) or own is not
  // this Forge's to take over: forcing 0700 on it would break it for them.
  if (st.st_uid != ::geteuid() || (st.st_mode & (S_ISVTX | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return MakeError(ErrorCode::kInvalid, "'" + path + "' is shared (mode " + mode +
                                              ", owner uid " + std::to_string(st.st_uid) +
                                              "): give a directory of this user's own");
  }
  if (existed && !own.markers.empty()) {
    if (std::string foreign = ForeignEntry(path, own); !foreign.empty()) {
      return MakeError(ErrorCode::kInvalid,
                       "'" + path + "' already holds '" + foreign + "' and no " + own.markers[0] +
                           ": give a new or empty directory, or an existing state directory "
                           "(it is left as it was)");
    }
  }
  // An existing directory of ours keeps its mode through mkdir: tighten it.
  if (chmod(path.c_str(), 0700) != 0) return IoError("cannot chmod 0700", path, errno);
  return Status::Ok();
}

std::string StartedConfigFile(const std::string& state_dir) {
  return JoinPath(state_dir, "supervisor.config");
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: a FIFO's open would wait for a writer. The type is checked
  // on the opened file, so a file swapped in after a caller's stat cannot
  // hang the read either.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return IoError("cannot read", path, errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return IoError("cannot read", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return MakeError(ErrorCode::kInvalid,
                     "'" + path + "' is not a regular file (a directory, a FIFO or a device)");
  }
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      if (out.size() + static_cast<size_t>(n) > max_bytes) {
        close(fd);
        return MakeError(
            ErrorCode::kInvalid,
            "'" + path + "' is more than " + std::to_string(max_bytes) + " bytes; no more is read");
      }
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      int err = errno;
      close(fd);
      return IoError("cannot read", path, err);
    }
  }
  close(fd);
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view content, unsigned mode) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(++counter);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return IoError("cannot write", tmp, errno);
  size_t done = 0;
  int err = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(tmp.c_str());
    return IoError("cannot write", path, err);
  }
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return Status::Ok();
}

std::string SelfExeDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<size_t>(n));
  size_t slash = exe.rfind('/');
  return slash == 0 ? "/" : exe.substr(0, slash);
}

std::string ParentPath(const std::string& path) {
  // One slash before a non-empty last name, not at the start: the parent
  // is everything before it. Anything else (a root, "//", a trailing
  // slash, no slash) is the library's to answer.
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0 && slash + 1 < path.size() &&
      path[slash - 1] != '/') {
    return path.substr(0, slash);
  }
  return std::filesystem::path(path).parent_path().string();
}

bool IsExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string ExecPath(const char* value) {
  return value ? std::string(value) : std::string(kDefaultPath);
}

std::string ExecPath(const std::vector<std::string>& env) {
  for (const auto& e : env) {
    if (e.starts_with("PATH=")) return e.substr(5);
  }
  return std::string(kDefaultPath);
}

std::string FindInPath(const std::string& name, const std::string& path_value,
                       const std::string& relative_to) {
  const std::string_view all = path_value;
  size_t start = 0;
  while (true) {
    const size_t end = all.find(':', start);
    std::string_view entry =
        all.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (entry.empty()) entry = ".";
    if (entry[0] == '/' || !relative_to.empty()) {
      std::string candidate =
          JoinPath(entry[0] == '/' ? std::string(entry) : JoinPath(relative_to, entry), name);
      if (IsExecutableFile(candidate)) return candidate;
    }
    if (end == std::string_view::npos) return "";
    start = end + 1;
  }
}

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty() || (!b.empty() && b.front() == '/')) return std::string(b);
  if (b.empty()) return std::string(a);
  std::string out(a);
  if (out.back() != '/') out += '/';
  out += b;
  return out;
}

std::string AbsolutePath(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.is_absolute()) {
    std::error_code ec;
    auto cwd = std::filesystem::current_path(ec);
    p = (ec ? std::filesystem::path("/") : cwd) / p;
  }
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace forge
