#include "ctl/terminal.h"

#include "common/utf8.h"

namespace forge::ctl {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr size_t kMaxSgr = 32;                             // longer than any colour Forge writes

bool IsControl(unsigned char c) {
  return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F;
}

// The SGR parameters Paint writes (ctl/render.cc): reset, bold, dim and five
// colours. Any other (conceal, black on black, blink) is not let through.
bool IsForgeColour(std::string_view params) {
  for (std::string_view ok : {"", "0", "1", "2", "31", "32", "33", "34", "36"}) {
    if (params == ok) return true;
  }
  return false;
}

}  // namespace

// A bidirectional control (a title with U+202E drew the rest of its `ls`
// line, state and all, right to left) or a hidden character (a forged line
// after U+2028; "t1" with U+200B in it, which looks like t1 and is not).
// The joiners U+200C and U+200D are the exception, after a character that
// is not ASCII: there they join an emoji sequence (a family, a flag, a
// profession, which an agent may well print: replaced, each would show as
// its parts with U+FFFD between) or shape Indic or Persian letters, and
// hide nothing an operator types or reads as an id, a path or a command,
// which are ASCII. After ASCII, or at a line's start, they are replaced.
bool TerminalFilter::Replaces(unsigned char third) const {
  const auto lead = static_cast<unsigned char>(pending_[0]);
  const auto second = static_cast<unsigned char>(pending_[1]);
  if (IsBidiControl(lead, second, third)) return true;
  if (!IsHiddenCharacter(lead, second, third)) return false;
  const bool joiner = lead == 0xE2 && second == 0x80 && (third == 0x8C || third == 0x8D);
  return !(joiner && after_non_ascii_);
}

std::string TerminalFilter::Feed(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (!pending_.empty()) {
      if (pending_ == "\x1b") {
        if (c == '[') {
          pending_ += ch;
          continue;
        }
        out += kReplacement;  // a lone ESC; c is read below
      } else if (pending_[0] == '\x1b') {
        if (c == 'm' && IsForgeColour(std::string_view(pending_).substr(2))) {
          out += pending_ + 'm';
          open_colour_ = pending_.size() > 2 && pending_ != "\x1b[0";
          pending_.clear();
          continue;
        }
        if (((c >= '0' && c <= '9') || c == ';') && pending_.size() < kMaxSgr) {
          pending_ += ch;
          continue;
        }
        // Not a colour: the ESC goes, what followed it is plain text.
        out += kReplacement;
        out += pending_.substr(1);
      } else if (pending_[0] == '\xE2' || pending_[0] == '\xEF') {
        if (pending_.size() == 1 && c >= 0x80 && c <= 0xBF) {
          pending_ += ch;
          continue;
        }
        if (pending_.size() == 2 && Replaces(c)) {
          out += kReplacement;
          pending_.clear();
          after_non_ascii_ = false;
          continue;
        }
        out += pending_;  // another character: c is read below
      } else if (pending_[0] == '\xD8') {
        if (IsBidiControl(0xD8, c, 0)) {  // U+061C, the Arabic letter mark
          out += kReplacement;
          pending_.clear();
          after_non_ascii_ = false;
          continue;
        }
        out += pending_;
      } else if (c >= 0x80 && c <= 0x9F) {  // 0xC2 then a C1 control
        out += kReplacement;
        pending_.clear();
        after_non_ascii_ = false;
        continue;
      } else {
        out += pending_;
      }
      pending_.clear();
    }
    if (c == 0x1B || c == 0xC2 || c == 0xD8 || c == 0xE2 || c == 0xEF) {
      pending_ = ch;
      continue;
    }
    if (c == '\n' && open_colour_) {
      out += "\x1b[0m\n";  // a colour a text opened ends with its line
      open_colour_ = false;
    } else if (IsControl(c)) {
      out += kReplacement;
    } else {
      out += ch;
    }
    after_non_ascii_ = c >= 0x80;
  }
  return out;
}

std::string TerminalFilter::Finish() {
  std::string out;
  if (!pending_.empty() && pending_[0] == '\x1b') {
    out = std::string(kReplacement) + pending_.substr(1);
  } else {
    out = pending_;  // a sequence cut at the very end: invalid UTF-8, not a control
  }
  pending_.clear();
  if (open_colour_) out += "\x1b[0m";
  open_colour_ = false;
  return out;
}

std::string TerminalSafe(std::string_view text) {
  TerminalFilter filter;
  std::string out = filter.Feed(text);
  return out + filter.Finish();
}

TerminalSafeBuf::~TerminalSafeBuf() {
  std::string rest = filter_.Finish();
  sink_->sputn(rest.data(), static_cast<std::streamsize>(rest.size()));
  sink_->pubsync();
}

TerminalSafeBuf::int_type TerminalSafeBuf::overflow(int_type c) {
  if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
  char ch = traits_type::to_char_type(c);
  return xsputn(&ch, 1) == 1 ? c : traits_type::eof();
}

std::streamsize TerminalSafeBuf::xsputn(const char* s, std::streamsize n) {
  std::string safe = filter_.Feed(std::string_view(s, static_cast<size_t>(n)));
  auto written = sink_->sputn(safe.data(), static_cast<std::streamsize>(safe.size()));
  return written == static_cast<std::streamsize>(safe.size()) ? n : 0;
}

int TerminalSafeBuf::sync() {
  return sink_->pubsync();
}

}  // namespace forge::ctl
