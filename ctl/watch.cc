#include "ctl/watch.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>

#include "common/clock.h"
#include "ctl/terminal.h"

namespace forge::ctl {

std::string LastLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  std::streamoff size = in.tellg();
  std::streamoff start = size > 8192 ? size - 8192 : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  size_t end = tail.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  size_t begin = tail.find_last_of('\n', end);
  return OneLine(tail.substr(begin == std::string::npos ? 0 : begin + 1, end - begin));
}

Result<WatchData> CollectWatch(Source& source, const std::string& state_dir) {
  WatchData data;
  data.reach = source.reach();
  FORGE_ASSIGN_OR_RETURN(data.status, source.Status());
  for (auto state : {proto::TaskState::kRunning, proto::TaskState::kReviewing}) {
    proto::ListRequest request;
    request.state = state;
    FORGE_ASSIGN_OR_RETURN(auto listed, source.List(request));
    for (auto& task : listed.tasks) {
      auto show = source.Show(task.id);
      if (!show.ok()) continue;  // settled between the two queries
      RunningAttempt r;
      r.task = std::move(task);
      for (const auto& a : show->attempts) {
        if (a.ended_at_ms == 0) r.attempt = a;
      }
      std::string log = r.attempt.log_path;
      if (log.empty() && r.attempt.n > 0) log = AttemptLogPath(state_dir, r.task.id, r.attempt.n);
      if (!log.empty()) r.last_line = LastLine(log);
      data.running.push_back(std::move(r));
    }
  }
  for (auto state :
       {proto::TaskState::kReady, proto::TaskState::kCooldown, proto::TaskState::kPending}) {
    proto::ListRequest request;
    request.state = state;
    request.limit = 50;
    FORGE_ASSIGN_OR_RETURN(auto listed, source.List(request));
    for (auto& t : listed.tasks) data.queued.push_back(std::move(t));
  }
  return data;
}

namespace {
// Cuts every line to width visible columns; colour sequences take no room and
// a cut line has its colour reset.
std::string Clip(const std::string& text, int width, int height) {
  std::istringstream in(text);
  std::string line, out;
  int lines = 0;
  while (std::getline(in, line)) {
    if (height > 0 && lines == height) break;
    ++lines;
    if (width <= 0 || DisplayWidth(line) <= static_cast<size_t>(width)) {
      out += line + "\n";
      continue;
    }
    std::string cut;
    int visible = 0;
    for (size_t i = 0; i < line.size();) {
      if (line[i] == '\x1b') {  // copy "ESC [ ... letter" whole
        size_t end = line.find_first_of("ABCDEFGHJKSTfmnsu", i + 1);
        if (end == std::string::npos) break;
        cut += line.substr(i, end - i + 1);
        i = end + 1;
        continue;
      }
      Glyph g = GlyphAt(line, i);
      if (visible + g.columns > width) break;
      visible += g.columns;
      cut.append(line, i, g.bytes);
      i += g.bytes;
    }
    out += cut + (cut.find('\x1b') != std::string::npos ? "\x1b[0m" : "") + "\n";
  }
  return out;
}
}  // namespace

std::string RenderWatch(const WatchData& d, int64_t now_ms, int width, int height,
                        const Style& style) {
  std::ostringstream out;
  const auto& s = d.status;
  out << Paint("forge", Color::kBold, style) << "  " << FormatRfc3339(now_ms) << "  ";
  if (d.reach == Reach::kLive) {
    out << "supervisor pid " << s.pid << ", up " << HumanDuration(s.uptime_ms);
  } else if (d.reach == Reach::kUnanswered) {
    out << Paint("supervisor" + (s.pid != 0 ? " pid " + std::to_string(s.pid) : std::string()) +
                     " not answering",
                 Color::kRed, style);
  } else {
    out << Paint("supervisor not running", Color::kRed, style);
  }
  out << "  cost today " << FormatCost(s.cost_today_usd) << "\n";
  for (const auto& p : s.pause_reasons) {
    out << Paint("PAUSED", Color::kYellow, style) << " " << p.kind;
    if (!p.reason.empty()) out << ": " << p.reason;
    if (p.until_ms) out << " (" << RelativeTime(now_ms, p.until_ms) << ")";
    out << "\n";
  }
  out << "queue:";
  for (auto state : proto::AllStates()) {
    std::string name(proto::StateName(state));
    auto it = s.queue.find(name);
    out << " " << name << " " << (it == s.queue.end() ? 0 : it->second);
  }
  out << "\n\n";
  if (!s.children.empty()) {
    Table t({"ROLE", "PID", "STATE", "TASK", "HEARTBEAT", "RESTARTS"});
    t.AlignRight(1);
    for (const auto& c : s.children) {
      t.AddRow({c.role, std::to_string(c.pid), c.state, c.task_id.empty() ? "-" : c.task_id,
                HumanDuration(c.heartbeat_age_ms) + " ago", std::to_string(c.restarts)},
               {Color::kNone, Color::kNone, c.state == "degraded" ? Color::kYellow : Color::kNone});
    }
    out << t.Render(style) << "\n";
  }
  out << Paint("running", Color::kBold, style) << "\n";
  if (d.running.empty()) out << "  nothing running\n";
  for (const auto& r : d.running) {
    std::string state(proto::StateName(r.task.state));
    int64_t since = r.attempt.started_at_ms;
    out << "  " << r.task.id << "  " << Paint(state, StateColor(state), style) << "  #"
        << r.attempt.n << "  " << (since ? HumanDuration(now_ms - since) : "-") << "  "
        << r.task.title << "\n";
    if (!r.last_line.empty()) out << "    > " << r.last_line << "\n";
  }
  out << "\n" << Paint("queue", Color::kBold, style) << "\n";
  if (d.queued.empty()) out << "  empty\n";
  for (const auto& t : d.queued) {
    std::string state(proto::StateName(t.state));
    out << "  " << t.id << "  " << Paint(state, StateColor(state), style);
    if (t.state == proto::TaskState::kCooldown) out << " " << RelativeTime(now_ms, t.not_before_ms);
    out << "  p" << t.priority << "  " << t.title << "\n";
  }
  // Fitted to a terminal: made safe first, so a sequence in a title or a log
  // line is measured as the U+FFFD and text the operator will see, not
  // skipped as a colour.
  return Clip(width > 0 ? TerminalSafe(out.str()) : out.str(), width, height);
}

namespace {
volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) {
  g_signal = sig;
}

// Raw terminal mode and the alternate screen for as long as it lives.
class Screen {
 public:
  Screen() {
    if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      have_termios_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) ::sigaction(sig, &sa, &old_[sig]);
    Write("\x1b[?1049h\x1b[?25l");
  }
  ~Screen() {
    Write("\x1b[?25h\x1b[?1049l");
    if (have_termios_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) ::sigaction(sig, &old_[sig], nullptr);
  }
  static void Write(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

 private:
  termios saved_{};
  bool have_termios_ = false;
  struct sigaction old_[NSIG] {};
};

int TerminalHeight() {
  winsize ws{};
  return ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_row : 0;
}

// Waits up to ms for a key; true when it was q/Q.
bool QuitKeyWithin(int ms) {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char c = 0;
  return ::read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q');
}
}  // namespace

int CmdWatch(Env& env, bool once) {
  // A view for people: --json printed it as text, exit 0, and a script got
  // no JSON (as `logs --follow --json` was).
  if (env.json) {
    return Usage(env,
                 "--json does not go with watch (a view for people); for JSON use: status "
                 "--json, ls --json or events --follow --json");
  }
  auto source = OpenReadSource(env);
  if (!source.ok()) return Fail(env, source.error());
  bool tty = ::isatty(STDOUT_FILENO) == 1 && ::isatty(STDIN_FILENO) == 1;
  if (once || !tty) {
    auto data = CollectWatch(**source, env.state_dir);
    if (!data.ok()) return Fail(env, data.error());
    *env.out << RenderWatch(*data, env.clock->WallMs(), env.style.wide ? 0 : env.style.width, 0,
                            env.style);
    return kExitOk;
  }
  g_signal = 0;
  Screen screen;
  while (true) {
    // The supervisor may come or go while we watch.
    // (A supervisor that does not answer is read around, not asked again
    // each frame: that would wait out a request timeout every time.)
    if (SupervisorPid(env.state_dir).has_value() != ((*source)->reach() != Reach::kOffline)) {
      std::ostringstream quiet;
      Env probe = env;
      probe.err = &quiet;
      auto fresh = OpenReadSource(probe);
      if (fresh.ok()) source = std::move(fresh);
    }
    std::string frame;
    auto data = CollectWatch(**source, env.state_dir);
    int width = TerminalWidth(STDOUT_FILENO);
    int height = TerminalHeight();
    if (data.ok()) {
      frame =
          RenderWatch(*data, env.clock->WallMs(), width, height > 1 ? height - 1 : 0, env.style);
    } else {
      frame = "forge-ctl watch: " + data.error().message + "\n";
    }
    std::string screen_text = "\x1b[H";
    std::istringstream lines(TerminalSafe(frame));  // titles, log lines: ctl/terminal.h
    std::string line;
    while (std::getline(lines, line)) screen_text += line + "\x1b[K\r\n";
    screen_text += "\x1b[J" + Paint("q to quit", Color::kDim, env.style);
    Screen::Write(screen_text);
    if (QuitKeyWithin(1000)) break;
    if (g_signal == SIGINT || g_signal == SIGTERM || g_signal == SIGHUP) break;
    if (g_signal == SIGWINCH) g_signal = 0;
    if (env.stop && env.stop()) break;
  }
  return kExitOk;
}

}  // namespace forge::ctl
