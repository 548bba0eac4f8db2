// Human rendering for forge-ctl: pure functions of their inputs (the current
// time is a parameter), so tests compare them with golden strings. Colour is
// an explicit Style choice made once by the caller (TTY and NO_COLOR).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proto/control.h"

namespace forge::ctl {

// Where the state a command shows came from, as its header says it.
enum class Reach {
  kLive,        // the supervisor answered
  kUnanswered,  // a supervisor holds the lock but did not answer: the database
  kOffline,     // no supervisor runs: the database
};

struct Style {
  bool color = false;
  bool wide = false;  // never shorten anything (titles, errors) to fit
  int width = 0;      // terminal columns; 0: unknown (nothing is shortened)
  // The start of the forge-ctl commands a hint prints (ctl/state.h CtlCommand).
  std::string ctl = "forge-ctl";
};

// colour when stdout is a terminal and NO_COLOR is unset or empty.
bool WantColor(int fd);
// Columns of the terminal on fd, 0 when not a terminal.
int TerminalWidth(int fd);

enum class Color { kNone, kRed, kGreen, kYellow, kBlue, kCyan, kDim, kBold };
std::string Paint(const std::string& text, Color color, const Style& style);
Color StateColor(std::string_view state);
Color OutcomeColor(std::string_view outcome);

// "now", "12s ago", "3m ago", "2h ago", "5d ago"; future times "in 3m"; "-" for 0.
std::string RelativeTime(int64_t now_ms, int64_t ts_ms);
// "350ms", "12s", "3m05s", "2h05m", "3d04h".
std::string HumanDuration(int64_t ms);
// "$0.00", "$1.23", "$0.0042" (small amounts keep two significant digits).
std::string FormatCost(double usd);
// "950", "12.3k", "4.56M".
std::string FormatTokens(int64_t n);
// One line: newlines and tabs become spaces; cut to max_len with "…" (0: no limit).
std::string OneLine(const std::string& text, size_t max_len = 0);

// An aligned text table: two spaces between columns, no trailing spaces.
// Column width counts UTF-8 code points; colour codes are added after padding.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::string indent = "");
  // Right-aligns a column (numbers).
  void AlignRight(size_t column);
  void AddRow(std::vector<std::string> cells, std::vector<Color> colors = {});
  size_t rows() const { return rows_.size(); }
  std::string Render(const Style& style) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::vector<Color>> colors_;
  std::string indent_;
};
// Columns a terminal gives UTF-8 text: an East Asian wide or fullwidth
// character (CJK, most emoji) takes 2, a combining mark 0, anything else 1
// (glibc's wcwidth in C.UTF-8). A control character, or a byte that is not
// UTF-8, counts 1: the terminal filter shows it as U+FFFD (ctl/terminal.h).
size_t DisplayWidth(std::string_view utf8);
// The character that starts at utf8[i]: its bytes and its columns.
struct Glyph {
  size_t bytes = 1;
  int columns = 1;
};
Glyph GlyphAt(std::string_view utf8, size_t i);

std::string RenderStatus(const proto::StatusReply& status, Reach reach, int64_t now_ms,
                         const Style& style);
std::string RenderTaskList(const std::vector<proto::TaskInfo>& tasks, int64_t now_ms,
                           const Style& style);
// dep_states: the current state of each dependency, when known (shown
// beside its id: why a pending task is still waiting).
std::string RenderShow(const proto::ShowReply& show, int64_t now_ms, const Style& style,
                       const std::map<std::string, std::string>& dep_states = {});
// "   12  2026-11-21T15:04:05.123Z  task.submitted  t-1  #2  key=value ..."
std::string RenderEventLine(const proto::EventInfo& event, const Style& style);
// "key=value key2=value2" of a payload object (strings unquoted when plain).
std::string RenderPayload(const proto::json& payload);
// "t-1: blocked -> ready (retried by operator)"
std::string RenderChange(const proto::ChangeReply& change, const Style& style);

}  // namespace forge::ctl
