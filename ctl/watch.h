// forge-ctl watch: a full-screen view refreshed every second, like top:
// supervisor and children, running attempts with their runtime and the last
// line of their log, and the queue. Quits on q (or Ctrl-C); the terminal is
// put in raw mode and restored on every way out.
#pragma once

#include <string>
#include <vector>

#include "ctl/commands.h"

namespace forge::ctl {

struct RunningAttempt {
  proto::TaskInfo task;
  proto::AttemptInfo attempt;  // the open one
  std::string last_line;       // last non-empty line of its log
};

struct WatchData {
  Reach reach = Reach::kOffline;
  proto::StatusReply status;
  std::vector<RunningAttempt> running;
  std::vector<proto::TaskInfo> queued;  // ready, cooldown, pending (in that order)
};

// Gathers one frame's data.
Result<WatchData> CollectWatch(Source& source, const std::string& state_dir);
// The frame: at most height lines (0: no limit), each at most width columns (0: no limit).
std::string RenderWatch(const WatchData& data, int64_t now_ms, int width, int height,
                        const Style& style);
// Last non-empty line of a file (reads only its tail).
std::string LastLine(const std::string& path);

// once: print one frame and return (also what happens when stdout is not a terminal).
int CmdWatch(Env& env, bool once);

}  // namespace forge::ctl
