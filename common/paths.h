// Filesystem helpers.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace forge {

// mkdir -p with the given mode for directories it creates.
Status MakeDirs(const std::string& path, unsigned mode = 0700);
// The names that make an existing directory ours (MakePrivateDir): any of
// `markers` (files only we make), else nothing but `layout` names (what an
// operator may put there before the first start: briefs, a symlinked logs).
struct OwnDirNames {
  std::vector<std::string> markers;
  std::vector<std::string> layout;
};

// Creates dir (and parents) and forces its mode to 0700. kInvalid, naming
// mode and owner, for an existing directory another user owns or that is
// world-writable or sticky (/tmp): it is not ours to tighten. With `own`
// markers, kInvalid too for an existing directory that is not ours by them,
// naming a file that is not: `--state-dir /`, $HOME or a project would be
// made 0700 and filled with our files.
Status MakePrivateDir(const std::string& path, const OwnDirNames& own = {});

// <state_dir>/supervisor.config: the absolute path of the config file the
// supervisor of state_dir last started with (empty: it ran on defaults), so
// that forge-ctl's "start it with" and doctor name the same file.
std::string StartedConfigFile(const std::string& state_dir);
// The whole regular file. kInvalid past max_bytes, read no further, and
// for anything but a regular file (a FIFO's open or read would wait for a
// writer, /dev/zero never ends); the type is checked on the opened file.
Result<std::string> ReadFile(const std::string& path,
                             size_t max_bytes = std::numeric_limits<size_t>::max());
// Writes via a temp file + rename, so readers never see a partial file.
Status WriteFileAtomic(const std::string& path, std::string_view content, unsigned mode = 0600);
// Directory of the running executable (/proc/self/exe), for finding sibling binaries.
std::string SelfExeDir();
std::string JoinPath(std::string_view a, std::string_view b);
// std::filesystem::path(path).parent_path().string(), without building a
// path (its parse into components was a worker's two or three thousand
// instructions a dispatch) when path is plainly "<dir>/<name>".
std::string ParentPath(const std::string& path);
std::string AbsolutePath(const std::string& path);

// The PATH exec searches (common/process.h) when the environment has none.
// Every check of where a command would be found uses it too, so that a
// check and the exec it predicts never disagree.
inline constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";
// The PATH exec searches for an environment whose PATH is `value`, nullptr
// when it has none: kDefaultPath then. A PATH set but empty is not unset:
// it is one empty entry, the current directory.
std::string ExecPath(const char* value);
// The same for an environment of NAME=VALUE entries (its first PATH, as
// getenv reads it).
std::string ExecPath(const std::vector<std::string>& env);

// An executable regular file (as exec needs it).
bool IsExecutableFile(const std::string& path);
// Where exec would find the command `name` (no '/' in it) through
// `path_value`, a PATH: the first of its directories holding an executable
// regular file of that name; "" when none does. An empty entry is ".", and
// a relative entry is taken from `relative_to` (the directory the command
// would run in), or skipped when relative_to is "" (not known yet).
std::string FindInPath(const std::string& name, const std::string& path_value,
                       const std::string& relative_to);

}  // namespace forge
