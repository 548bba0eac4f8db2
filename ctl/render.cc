#include "ctl/render.h"

#include <locale.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/clock.h"

namespace forge::ctl {

bool WantColor(int fd) {
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color && *no_color) return false;
  return ::isatty(fd) == 1;
}

int TerminalWidth(int fd) {
  if (::isatty(fd) != 1) return 0;
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0) return 0;
  return ws.ws_col;
}

std::string Paint(const std::string& text, Color color, const Style& style) {
  if (!style.color || color == Color::kNone || text.empty()) return text;
  const char* code = "";
  switch (color) {
    case Color::kRed:
      code = "31";
      break;
    case Color::kGreen:
      code = "32";
      break;
    case Color::kYellow:
      code = "33";
      break;
    case Color::kBlue:
      code = "34";
      break;
    case Color::kCyan:
      code = "36";
      break;
    case Color::kDim:
      code = "2";
      break;
    case Color::kBold:
      code = "1";
      break;
    case Color::kNone:
      break;
  }
  return std::string("\x1b[") + code + "m" + text + "\x1b[0m";
}

Color StateColor(std::string_view state) {
  if (state == "done") return Color::kGreen;
  if (state == "blocked") return Color::kRed;
  if (state == "running" || state == "reviewing") return Color::kCyan;
  if (state == "cooldown") return Color::kYellow;
  if (state == "cancelled") return Color::kDim;
  return Color::kNone;
}

Color OutcomeColor(std::string_view outcome) {
  if (outcome == "passed") return Color::kGreen;
  if (outcome.empty()) return Color::kCyan;
  if (outcome == "lost" || outcome == "crashed" || outcome == "recovered" || outcome == "cancelled")
    return Color::kYellow;
  return Color::kRed;
}

namespace {
std::string Compact(int64_t ms) {
  const int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}
}  // namespace

std::string RelativeTime(int64_t now_ms, int64_t ts_ms) {
  if (ts_ms == 0) return "-";
  int64_t diff = now_ms - ts_ms;
  if (diff > -1000 && diff < 1000) return "now";
  if (diff < 0) return "in " + Compact(-diff);
  return Compact(diff) + " ago";
}

std::string HumanDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  char buf[32];
  if (ms < 1000) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string FormatCost(double usd) {
  char buf[32];
  if (usd != 0 && std::fabs(usd) < 0.01) {
    std::snprintf(buf, sizeof buf, "$%.2g", usd);
  } else {
    std::snprintf(buf, sizeof buf, "$%.2f", usd);
  }
  return buf;
}

std::string FormatTokens(int64_t n) {
  char buf[32];
  if (n < 1000) return std::to_string(n);
  if (n < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1fk", static_cast<double>(n) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fM", static_cast<double>(n) / 1e6);
  }
  return buf;
}

namespace {
// wcwidth reads LC_CTYPE, which forge-ctl leaves "C" (ASCII only); C.UTF-8
// is built into glibc since 2.35. Without it every character counts 1.
int CodePointColumns(char32_t cp) {
  static const locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
  if (cp < 0x7F) return 1;  // ASCII (a control shows as one U+FFFD)
  if (utf8 == locale_t{}) return 1;
  locale_t previous = uselocale(utf8);
  int w = ::wcwidth(static_cast<wchar_t>(cp));
  uselocale(previous);
  return w < 0 ? 1 : w;
}
}  // namespace

Glyph GlyphAt(std::string_view utf8, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(utf8[k]); };
  unsigned char lead = byte(i);
  size_t n = lead < 0x80           ? 1
             : (lead >> 5) == 0x6  ? 2
             : (lead >> 4) == 0xE  ? 3
             : (lead >> 3) == 0x1E ? 4
                                   : 0;
  if (n == 0 || i + n > utf8.size()) return Glyph{};  // not UTF-8: one byte, one column
  char32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return Glyph{};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // An overlong form, a surrogate or past U+10FFFF is not UTF-8 either: a
  // terminal shows each of its bytes as U+FFFD.
  static constexpr char32_t kLeast[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kLeast[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return Glyph{};
  return Glyph{n, CodePointColumns(cp)};
}

size_t DisplayWidth(std::string_view utf8) {
  size_t columns = 0;
  for (size_t i = 0; i < utf8.size();) {
    Glyph g = GlyphAt(utf8, i);
    columns += static_cast<size_t>(g.columns);
    i += g.bytes;
  }
  return columns;
}

std::string OneLine(const std::string& text, size_t max_len) {
  std::string out;
  out.reserve(text.size());
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (c == ' ' && space) continue;
    space = c == ' ';
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  size_t start = out.find_first_not_of(' ');
  out = start == std::string::npos ? "" : out.substr(start);
  if (max_len == 0 || DisplayWidth(out) <= max_len) return out;
  // Cut between characters, leaving a column for the ellipsis.
  std::string cut;
  size_t width = 0;
  for (size_t i = 0; i < out.size();) {
    Glyph g = GlyphAt(out, i);
    if (width + static_cast<size_t>(g.columns) + 1 > max_len) break;
    width += static_cast<size_t>(g.columns);
    cut.append(out, i, g.bytes);
    i += g.bytes;
  }
  return cut + "…";
}

Table::Table(std::vector<std::string> headers, std::string indent)
    : headers_(std::move(headers)), right_(headers_.size(), false), indent_(std::move(indent)) {}

void Table::AlignRight(size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void Table::AddRow(std::vector<std::string> cells, std::vector<Color> colors) {
  cells.resize(headers_.size());
  colors.resize(headers_.size(), Color::kNone);
  rows_.push_back(std::move(cells));
  colors_.push_back(std::move(colors));
}

std::string Table::Render(const Style& style) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) widths[c] = DisplayWidth(headers_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells, const std::vector<Color>* colors,
                  bool header) {
    std::string out = indent_;
    for (size_t c = 0; c < cells.size(); ++c) {
      bool last = c + 1 == cells.size();
      size_t pad = widths[c] - DisplayWidth(cells[c]);
      std::string text =
          header ? Paint(cells[c], Color::kBold, style) : Paint(cells[c], (*colors)[c], style);
      if (right_[c]) {
        out += std::string(pad, ' ') + text;
      } else {
        out += text;
        if (!last) out += std::string(pad, ' ');
      }
      if (!last) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_, nullptr, true);
  for (size_t r = 0; r < rows_.size(); ++r) out += line(rows_[r], &colors_[r], false);
  return out;
}

// ---------------------------------------------------------------- status

namespace {
std::string Label(const std::string& label) {
  std::string out = label;
  if (out.size() < 13) out.resize(13, ' ');
  return out;
}

std::string PauseLine(const proto::PauseReason& p, int64_t now_ms) {
  std::string out = p.kind;
  // "operator: paused by operator" says it twice. A reason is one line of
  // the layout, whatever an operator or an error put in it.
  if (!p.reason.empty() && p.reason != "paused by " + p.kind) out += ": " + OneLine(p.reason);
  if (p.until_ms > 0) {
    out += " (until " + FormatRfc3339(p.until_ms) + ", " + RelativeTime(now_ms, p.until_ms) + ")";
  } else if (p.kind == "shutdown") {
    out += " (until it exits)";  // `resume` does not lift it
  } else {
    out += " (until resumed)";
  }
  return out;
}

// "running for 12s", or "last 4m ago: 3 removed, 12 logs deleted; next in 6m",
// with the first error when there was one.
std::string MaintenanceLine(const proto::MaintenanceStatus& m, int64_t now_ms, const Style& style) {
  std::string out;
  if (m.running_since_ms > 0) {
    out = Paint("running", Color::kCyan, style) + " for " +
          HumanDuration(now_ms - m.running_since_ms);
  } else if (m.last_job_id == 0) {
    out = "no pass since the supervisor started";
  }
  if (m.last_job_id > 0) {
    if (!out.empty()) out += "; ";
    out += "last " + RelativeTime(now_ms, m.last_at_ms);
    if (m.last_outcome == "failed") {
      out += " " + Paint("failed", Color::kRed, style);
    } else {
      out += ": " + std::to_string(m.removed) + " removed, " + std::to_string(m.logs_deleted) +
             " logs deleted";
      if (!m.errors.empty()) {
        out += ", " +
               Paint(std::to_string(m.errors.size()) + " error" + (m.errors.size() == 1 ? "" : "s"),
                     Color::kYellow, style);
      }
    }
    if (!m.errors.empty()) out += ": " + OneLine(m.errors.front(), style.wide ? 0 : 160);
  }
  if (m.next_at_ms > 0) {
    // Due and not started: every worker is busy (a pass waits for an idle one).
    out += m.next_at_ms - now_ms < 1000 ? "; next due now"
                                        : "; next " + RelativeTime(now_ms, m.next_at_ms);
  }
  if (m.running_since_ms == 0 && m.next_at_ms == 0) out += " (disabled)";
  return out;
}

}  // namespace

std::string RenderStatus(const proto::StatusReply& s, Reach reach, int64_t now_ms,
                         const Style& style) {
  std::ostringstream out;
  const bool live = reach == Reach::kLive;
  if (live) {
    out << Label("supervisor") << Paint("running", Color::kGreen, style) << "  pid " << s.pid
        << "  up " << HumanDuration(s.uptime_ms) << "  version " << s.version;
    if (s.degraded) out << "  " << Paint("degraded", Color::kYellow, style);
    out << "\n";
  } else if (reach == Reach::kUnanswered) {
    out << Label("supervisor") << Paint("not answering", Color::kRed, style);
    if (s.pid != 0) out << "  pid " << s.pid << " holds the lock";
    out << " (showing the database)\n";
  } else {
    out << Label("supervisor") << Paint("not running", Color::kRed, style)
        << " (showing the database)\n";
  }
  if (!s.state_dir.empty()) out << Label("state dir") << s.state_dir << "\n";
  // Offline: only the operator's pause is known, which the next start keeps.
  if (live || !s.pause_reasons.empty()) {
    if (s.pause_reasons.empty()) {
      out << Label("dispatch") << (s.paused ? Paint("paused", Color::kYellow, style) : "active")
          << "\n";
    } else {
      bool first = true;
      for (const auto& p : s.pause_reasons) {
        out << Label(first ? "dispatch" : "") << Paint("paused", Color::kYellow, style) << " by "
            << PauseLine(p, now_ms) << "\n";
        first = false;
      }
    }
  }
  if (!s.children.empty()) {
    out << "children\n";
    Table t({"ROLE", "PID", "STATE", "TASK", "ATTEMPT", "HEARTBEAT", "RUNTIME", "RESTARTS"}, "  ");
    t.AlignRight(1);
    t.AlignRight(4);
    t.AlignRight(7);
    for (const auto& c : s.children) {
      // stopping and exited: on their way out (exited: its last messages
      // are being read, see docs/architecture.md).
      Color color = c.state == "degraded"                          ? Color::kYellow
                    : c.state == "busy"                            ? Color::kCyan
                    : c.state == "stopping" || c.state == "exited" ? Color::kDim
                                                                   : Color::kNone;
      t.AddRow({c.role, std::to_string(c.pid), c.state, c.task_id.empty() ? "-" : c.task_id,
                c.attempt_n > 0 ? std::to_string(c.attempt_n) : "-",
                HumanDuration(c.heartbeat_age_ms) + " ago",
                c.busy_since_ms > 0 ? HumanDuration(now_ms - c.busy_since_ms) : "-",
                std::to_string(c.restarts)},
               {Color::kNone, Color::kNone, color});
    }
    out << t.Render(style);
  }
  out << Label("queue");
  bool first = true;
  for (auto state : proto::AllStates()) {
    std::string name(proto::StateName(state));
    auto it = s.queue.find(name);
    int64_t n = it == s.queue.end() ? 0 : it->second;
    if (!first) out << "  ";
    first = false;
    std::string cell = name + " " + std::to_string(n);
    out << (n > 0 ? Paint(cell, StateColor(name), style) : cell);
  }
  out << "\n";
  out << Label("cost today") << FormatCost(s.cost_today_usd) << "\n";
  if (s.maintenance) {
    out << Label("maintenance") << MaintenanceLine(*s.maintenance, now_ms, style) << "\n";
  }
  if (s.last_failure) {
    const auto& f = *s.last_failure;
    out << Label("last failure") << f.task_id << " #" << f.n << " "
        << Paint(f.outcome, OutcomeColor(f.outcome), style) << " " << RelativeTime(now_ms, f.at_ms);
    if (!f.error.empty()) out << ": " << OneLine(f.error, style.wide ? 0 : 200);
    out << "\n";
  }
  return out.str();
}

// ---------------------------------------------------------------- ls

std::string RenderTaskList(const std::vector<proto::TaskInfo>& tasks, int64_t now_ms,
                           const Style& style) {
  if (tasks.empty()) return "no tasks\n";
  Table t({"ID", "STATE", "ATTEMPTS", "PRI", "UPDATED", "COST", "TITLE"});
  t.AlignRight(2);
  t.AlignRight(3);
  t.AlignRight(5);
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> widths = {2, 5, 8, 3, 7, 4};  // the headers before TITLE
  for (const auto& task : tasks) {
    std::vector<std::string> row = {
        task.id,
        std::string(proto::StateName(task.state)),
        std::to_string(task.attempts) + "/" + std::to_string(task.max_attempts),
        std::to_string(task.priority),
        RelativeTime(now_ms, task.updated_at_ms),
        FormatCost(task.cost_usd),
        task.title};
    for (size_t c = 0; c < widths.size(); ++c)
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    rows.push_back(std::move(row));
  }
  size_t fixed = 0;
  for (size_t w : widths) fixed += w + 2;
  // Only the title gives way to the terminal width (ids and states never do).
  size_t title_max = 0;
  if (!style.wide && style.width > 0) {
    title_max = style.width > static_cast<int>(fixed) + 10 ? style.width - fixed : 10;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i][6] = OneLine(rows[i][6], title_max);
    std::string state = rows[i][1];
    t.AddRow(std::move(rows[i]), {Color::kNone, StateColor(state)});
  }
  return t.Render(style);
}

// ---------------------------------------------------------------- show

namespace {
std::string TimeCell(int64_t now_ms, int64_t ts_ms) {
  if (ts_ms == 0) return "-";
  return FormatRfc3339(ts_ms) + " (" + RelativeTime(now_ms, ts_ms) + ")";
}

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

void Indented(std::ostringstream& out, const std::string& text, const std::string& indent) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out << indent << line << "\n";
}
}  // namespace

std::string RenderShow(const proto::ShowReply& show, int64_t now_ms, const Style& style,
                       const std::map<std::string, std::string>& dep_states) {
  const auto& t = show.task;
  std::ostringstream out;
  std::string state(proto::StateName(t.state));
  out << Label("task") << Paint(t.id, Color::kBold, style) << "  " << t.title << "\n";
  out << Label("state") << Paint(state, StateColor(state), style) << "  (attempts " << t.attempts
      << "/" << t.max_attempts;
  if (t.infra_retries > 0) out << ", infra retries " << t.infra_retries;
  out << ")";
  if (t.state == proto::TaskState::kCooldown && t.not_before_ms > 0) {
    out << "  next attempt " << RelativeTime(now_ms, t.not_before_ms);
  }
  out << "\n";
  // Why it is blocked (or cancelled): the last error alone is the agent's,
  // not what stopped the retries (the task's budget, the same failure twice).
  if (!show.state_reason.empty()) out << Label("reason") << OneLine(show.state_reason) << "\n";
  out << Label("kind") << t.kind << "  priority " << t.priority << "\n";
  if (t.needs_approval) {
    out << Label("approval") << (t.approved ? "approved" : Paint("waiting", Color::kYellow, style))
        << "\n";
  }
  if (!t.parent.empty()) out << Label("parent") << t.parent << "\n";
  if (!t.depends_on.empty()) {
    std::vector<std::string> deps;
    for (const auto& d : t.depends_on) {
      auto state = dep_states.find(d);
      deps.push_back(state == dep_states.end()
                         ? d
                         : d + " (" + Paint(state->second, StateColor(state->second), style) + ")");
    }
    out << Label("depends on") << Join(deps, ", ") << "\n";
  }
  if (!t.repo.empty()) {
    out << Label("repo") << t.repo;
    if (!t.base.empty()) out << " @ " << t.base;
    out << "\n";
  }
  // What every attempt starts from, kept since the first (schema v7).
  if (!t.base_commit.empty()) out << Label("base commit") << t.base_commit << "\n";
  if (!t.branch.empty()) out << Label("branch") << t.branch << "\n";
  if (!t.commit.empty()) out << Label("commit") << t.commit << "\n";
  if (!t.agent.empty() || !t.model.empty()) {
    out << Label("agent") << (t.agent.empty() ? "(config)" : t.agent);
    if (!t.model.empty()) out << "  model " << t.model;
    out << "\n";
  }
  if (!t.env.empty()) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : t.env) keys.push_back(k + "=" + v);
    out << Label("env") << Join(keys, " ") << "\n";
  }
  for (const auto& v : t.verify) out << Label("verify") << v << "\n";
  if (t.allow_empty) out << Label("allow empty") << "yes\n";
  out << Label("created") << TimeCell(now_ms, t.created_at_ms) << "\n";
  out << Label("updated") << TimeCell(now_ms, t.updated_at_ms) << "\n";
  if (t.finished_at_ms) out << Label("finished") << TimeCell(now_ms, t.finished_at_ms) << "\n";
  out << Label("cost") << FormatCost(t.cost_usd) << "  tokens " << FormatTokens(t.tokens_in)
      << " in / " << FormatTokens(t.tokens_out) << " out\n";
  // A done task's last error is an earlier attempt's, which the attempts
  // below show: in red beside `done` it read as a problem with the result.
  if (!t.last_error.empty() && t.state != proto::TaskState::kDone) {
    out << Label("last error") << Paint(OneLine(t.last_error), Color::kRed, style) << "\n";
  }
  if (!t.brief.empty()) {
    out << "\nbrief\n";
    Indented(out, t.brief, "  ");
  }

  out << "\nattempts\n";
  if (show.attempts.empty()) {
    out << "  none yet\n";
  } else {
    Table a(
        {"#", "OUTCOME", "STARTED", "DURATION", "COST", "TOKENS IN/OUT", "TURNS", "EXIT", "ERROR"},
        "  ");
    a.AlignRight(0);
    a.AlignRight(3);
    a.AlignRight(4);
    a.AlignRight(6);
    for (const auto& at : show.attempts) {
      std::string outcome = at.outcome.empty() ? "open" : at.outcome;
      if (!at.counted) outcome += "*";
      int64_t duration = at.duration_ms;
      if (duration == 0 && at.started_at_ms > 0) {
        duration = (at.ended_at_ms ? at.ended_at_ms : now_ms) - at.started_at_ms;
      }
      std::string exit = at.signal           ? "sig " + std::to_string(at.signal)
                         : at.exit_code >= 0 ? std::to_string(at.exit_code)
                                             : "-";
      a.AddRow({std::to_string(at.n), outcome, RelativeTime(now_ms, at.started_at_ms),
                HumanDuration(duration), FormatCost(at.cost_usd),
                FormatTokens(at.tokens_in) + "/" + FormatTokens(at.tokens_out),
                std::to_string(at.num_turns), exit, OneLine(at.error)},
               {Color::kNone, OutcomeColor(at.outcome)});
    }
    out << a.Render(style);
    bool infra = false;
    for (const auto& at : show.attempts) infra |= !at.counted;
    if (infra) out << "  * not counted toward max attempts (infrastructure failure)\n";
    for (const auto& at : show.attempts) {
      if (!at.session_id.empty() || !at.log_path.empty() || !at.model.empty()) {
        out << "  #" << at.n << ":";
        if (!at.model.empty()) out << " model " << at.model;
        if (!at.session_id.empty()) out << " session " << at.session_id;
        if (!at.log_path.empty()) out << " log " << at.log_path;
        if (!at.commit.empty()) out << " commit " << at.commit;
        out << "\n";
      }
    }
    for (const auto& at : show.attempts) {
      if (at.checks.empty() && at.findings.empty()) continue;
      out << "\nreview of attempt " << at.n;
      if (!at.verdict.empty()) out << ": " << at.verdict;
      out << "\n";
      for (const auto& c : at.checks) {
        std::string mark = c.passed ? Paint("PASS", Color::kGreen, style)
                                    : Paint(c.timed_out ? "TIME" : "FAIL", Color::kRed, style);
        out << "  " << mark << "  " << c.name << "  (" << HumanDuration(c.duration_ms);
        if (!c.passed) {
          out << (c.signal ? ", signal " + std::to_string(c.signal)
                           : ", exit " + std::to_string(c.exit_code));
        }
        out << ")\n";
        if (!c.passed && !c.output_tail.empty()) Indented(out, c.output_tail, "        ");
      }
      // A tail is the last 4 KiB; the review log has all of it.
      if (std::any_of(at.checks.begin(), at.checks.end(),
                      [](const proto::CheckResult& c) { return !c.passed; })) {
        out << "  whole output: " << style.ctl << " logs " << t.id << " --review --attempt " << at.n
            << "\n";
      }
      for (const auto& f : at.findings) {
        Color color = f.severity == "sev1"   ? Color::kRed
                      : f.severity == "sev2" ? Color::kYellow
                                             : Color::kNone;
        out << "  " << Paint(f.severity, color, style) << "  " << f.category;
        if (!f.file.empty()) {
          out << "  " << f.file;
          if (f.line > 0) out << ":" << f.line;
        }
        out << "  " << OneLine(f.message) << "\n";
      }
    }
  }

  out << "\ntimeline\n";
  if (show.timeline.empty()) out << "  no events\n";
  if (show.timeline_omitted > 0) {
    out << "  "
        << Paint("(" + std::to_string(show.timeline_omitted) +
                     " earlier events left out; all of them: " + style.ctl + " events --task " +
                     t.id + ")",
                 Color::kDim, style)
        << "\n";
  }
  for (const auto& e : show.timeline) out << "  " << RenderEventLine(e, style) << "\n";
  return out.str();
}

// ---------------------------------------------------------------- events

namespace {
bool EmptyValue(const proto::json& v) {
  return v.is_null() || (v.is_string() && v.get<std::string>().empty()) ||
         (v.is_array() && v.empty()) || (v.is_object() && v.empty());
}

// task.submitted carries the whole task; a line shows what identifies it.
proto::json SubmittedSummary(const proto::json& payload) {
  proto::json out = proto::json::object();
  for (const char* key : {"title", "kind", "priority", "depends_on", "repo", "base",
                          "needs_approval", "max_attempts", "parent"}) {
    auto it = payload.find(key);
    if (it == payload.end() || EmptyValue(*it)) continue;
    if ((it->is_boolean() && !it->get<bool>()) ||
        (std::string_view(key) == "priority" && *it == 0) ||
        (std::string_view(key) == "kind" && *it == "work")) {
      continue;
    }
    out[key] = *it;
  }
  return out;
}
}  // namespace

std::string RenderPayload(const proto::json& payload) {
  if (!payload.is_object()) return payload.is_null() ? "" : payload.dump();
  std::string out;
  for (auto it = payload.begin(); it != payload.end(); ++it) {
    const auto& v = it.value();
    if (EmptyValue(v)) continue;  // an empty value says nothing
    if (!out.empty()) out += " ";
    out += it.key() + "=";
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      bool plain = s.find_first_of(" \t\n\"=") == std::string::npos;
      out += plain ? s : proto::json(OneLine(s)).dump();
    } else {
      out += v.dump(-1, ' ', false, proto::json::error_handler_t::replace);
    }
  }
  return out;
}

std::string RenderEventLine(const proto::EventInfo& e, const Style& style) {
  char seq[32];
  std::snprintf(seq, sizeof seq, "%6lld", static_cast<long long>(e.seq));
  std::string out =
      std::string(seq) + "  " + FormatRfc3339(e.ts_ms) + "  " + Paint(e.kind, Color::kBold, style);
  if (!e.task_id.empty()) out += "  " + e.task_id;
  if (e.attempt > 0) out += "  #" + std::to_string(e.attempt);
  std::string payload =
      RenderPayload(e.kind == "task.submitted" ? SubmittedSummary(e.payload) : e.payload);
  if (!payload.empty()) out += "  " + payload;
  return out;
}

std::string RenderChange(const proto::ChangeReply& c, const Style& style) {
  std::string out = c.id + ": ";
  if (!c.previous_state.empty() && c.previous_state != c.state) {
    out += c.previous_state + " -> " + Paint(c.state, StateColor(c.state), style);
  } else {
    out += Paint(c.state, StateColor(c.state), style) + ", unchanged";
  }
  if (!c.message.empty()) out += " (" + c.message + ")";
  return out;
}

}  // namespace forge::ctl
