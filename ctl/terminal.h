// What forge-ctl writes to a terminal. Titles, briefs, errors and check
// output come from plans, agents and the commands they ran: a control
// sequence in one could move the cursor, rewrite what the operator reads,
// set the window title or answer back into the shell. On a terminal every
// byte goes through TerminalFilter, which keeps text, newlines, tabs and the
// colours Paint writes (ESC [ n m for reset, bold, dim and five colours; a
// forged one can only colour, and no further than the end of its line) and
// replaces every other control character (C0, DEL, C1), escape sequence and
// bidirectional control (the overrides, embeddings and isolates U+202A..E,
// U+2066..9, the marks U+200E, U+200F, U+061C) and hidden character
// (common/utf8.h IsHiddenCharacter: the line and paragraph separators and
// the zero-width characters; a joiner after a character that is not ASCII
// is kept, see Replaces) with U+FFFD.
#pragma once

#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>

namespace forge::ctl {

class TerminalFilter {
 public:
  // What can be written of the text fed so far. A sequence cut between two
  // calls (an ESC at the end of one) is held back until the next.
  std::string Feed(std::string_view text);
  // What is held back, made safe.
  std::string Finish();

 private:
  // Whether pending_ (a lead 0xE2 or 0xEF and one more byte) and `third`
  // make a character to replace.
  bool Replaces(unsigned char third) const;

  std::string pending_;  // ESC, ESC [ digits..., a lead 0xC2 or 0xD8, or 0xE2 / 0xEF and one more
  bool open_colour_ = false;      // a colour passed and no reset since
  bool after_non_ascii_ = false;  // the last character written is not ASCII
};

// TerminalFilter over one whole text.
std::string TerminalSafe(std::string_view text);

// A stream buffer that writes through a TerminalFilter to `sink`.
class TerminalSafeBuf final : public std::streambuf {
 public:
  explicit TerminalSafeBuf(std::streambuf* sink) : sink_(sink) {}
  ~TerminalSafeBuf() override;

 protected:
  int_type overflow(int_type c) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  std::streambuf* sink_;
  TerminalFilter filter_;
};

}  // namespace forge::ctl
