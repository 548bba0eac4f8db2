#include "proto/endpoints.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/paths.h"

namespace forge::proto {
namespace {

constexpr size_t kMaxSocketPath = 107;  // sizeof(sun_path) - 1
constexpr const char* kSocketsPathFile = "sockets.path";

Endpoints In(const std::string& dir) {
  return Endpoints{"ipc://" + dir + "/children.sock", "ipc://" + dir + "/control.sock", dir};
}

bool Fits(const std::string& dir) {
  return (dir + "/children.sock").size() <= kMaxSocketPath &&
         (dir + "/control.sock").size() <= kMaxSocketPath;
}

// FNV-1a: stable across runs and builds (std::hash is not guaranteed to be).
std::string Hash16(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Creates dir 0700, or checks that an existing one is ours and private:
// another user must not be able to plant or read our sockets.
Status EnsurePrivateDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kIo,
                     "cannot create socket directory '" + dir + "': " + strerror(errno));
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    return MakeError(ErrorCode::kIo,
                     "cannot stat socket directory '" + dir + "': " + strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kIo, "socket directory '" + dir + "' is not a directory");
  }
  if (st.st_uid != geteuid()) {
    return MakeError(ErrorCode::kIo, "socket directory '" + dir + "' is owned by uid " +
                                         std::to_string(st.st_uid) + ", not by us (uid " +
                                         std::to_string(geteuid()) + ")");
  }
  if ((st.st_mode & 07777) != 0700) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return MakeError(ErrorCode::kIo,
                     "socket directory '" + dir + "' has mode " + mode + ", expected 0700");
  }
  return Status::Ok();
}

// The short directory for a state directory whose own path is too long.
std::string ShortDir(const std::string& state_dir) {
  std::string hash = Hash16(state_dir);
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') {
    std::string dir = std::string(xdg) + "/forge-" + hash;
    if (Fits(dir)) return dir;
  }
  return "/tmp/forge-" + std::to_string(geteuid()) + "-" + hash;
}

}  // namespace

Result<Endpoints> PrepareEndpoints(const std::string& state_dir) {
  std::string abs = AbsolutePath(state_dir);
  std::string record = JoinPath(abs, kSocketsPathFile);
  if (Fits(abs)) {
    // A stale record from a longer path would send forge-ctl elsewhere.
    if (unlink(record.c_str()) != 0 && errno != ENOENT) {
      return MakeError(ErrorCode::kIo, "cannot remove '" + record + "': " + strerror(errno));
    }
    return In(abs);
  }
  std::string dir = ShortDir(abs);
  FORGE_RETURN_IF_ERROR(EnsurePrivateDir(dir));
  FORGE_RETURN_IF_ERROR(WriteFileAtomic(record, dir + "\n", 0600));
  return In(dir);
}

Endpoints ResolveEndpoints(const std::string& state_dir) {
  std::string abs = AbsolutePath(state_dir);
  auto recorded = ReadFile(JoinPath(abs, kSocketsPathFile));
  if (recorded.ok()) {
    std::string dir = *recorded;
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == '\r' || dir.back() == ' ')) {
      dir.pop_back();
    }
    if (!dir.empty() && dir.front() == '/') return In(dir);
  }
  return In(abs);
}

}  // namespace forge::proto
