#include "ctl/terminal.h"

#include <gtest/gtest.h>

#include <sstream>

#include "ctl/render.h"

namespace forge::ctl {
namespace {

const std::string kR = "\xEF\xBF\xBD";  // U+FFFD

TEST(TerminalSafe, KeepsTextNewlinesTabsAndUtf8) {
  EXPECT_EQ(TerminalSafe("t1  Fix the parser\n\tdone\n"), "t1  Fix the parser\n\tdone\n");
  EXPECT_EQ(TerminalSafe("naïve 修正 ✓ \xC2\xA0nbsp"), "naïve 修正 ✓ \xC2\xA0nbsp");
}

TEST(TerminalSafe, KeepsTheColoursForgeWrites) {
  Style color{.color = true};
  std::string painted =
      Paint("blocked", Color::kRed, color) + " " + Paint("x", Color::kBold, color);
  EXPECT_EQ(TerminalSafe(painted), painted);
  EXPECT_EQ(TerminalSafe("\x1b[m\x1b[1mbold\x1b[0m\n"), "\x1b[m\x1b[1mbold\x1b[0m\n");
}

// What a text could do with colour alone: hide what follows (conceal,
// black on black) or colour the rest of the output. Neither gets through,
// and a colour it opens ends with its line.
TEST(TerminalSafe, AColourFromTheTextHidesNothingAndEndsWithItsLine) {
  EXPECT_EQ(TerminalSafe("a\x1b[8mhidden"), "a" + kR + "[8mhidden");
  EXPECT_EQ(TerminalSafe("a\x1b[30;40mhidden"), "a" + kR + "[30;40mhidden");
  EXPECT_EQ(TerminalSafe("t1 \x1b[31mred title\nt2 plain\n"),
            "t1 \x1b[31mred title\x1b[0m\nt2 plain\n");
  EXPECT_EQ(TerminalSafe("\x1b[33mno newline"), "\x1b[33mno newline\x1b[0m");
}

TEST(TerminalSafe, ReplacesEveryOtherControl) {
  // Clear screen and home, a window title (OSC), cursor up, a bell, a
  // carriage return that would overwrite the line, backspace, DEL.
  EXPECT_EQ(TerminalSafe("a\x1b[2J\x1b[Hb"), "a" + kR + "[2J" + kR + "[Hb");
  EXPECT_EQ(TerminalSafe("\x1b]0;pwned\x07title"), kR + "]0;pwned" + kR + "title");
  EXPECT_EQ(TerminalSafe("x\x1b[3Ay"), "x" + kR + "[3Ay");
  EXPECT_EQ(TerminalSafe("ok\rFAILED\b\x7f"), "ok" + kR + "FAILED" + kR + kR);
  // C1 controls (CSI as one code point, U+009B) are replaced too.
  EXPECT_EQ(TerminalSafe("a\xC2\x9B"
                         "2Jb"),
            "a" + kR + "2Jb");
  // A colour that never ends is not one; nor is one past its length bound.
  EXPECT_EQ(TerminalSafe("\x1b[31"), kR + "[31");
  EXPECT_EQ(TerminalSafe("\x1b[" + std::string(40, '1') + "m"),
            kR + "[" + std::string(40, '1') + "m");
  EXPECT_EQ(TerminalSafe("\x1b"), kR);
}

// A right-to-left override in a title drew the rest of its line (the
// task's state and all) reversed; an isolate or a mark likewise. Other
// characters starting with the same bytes (U+2014, U+2026, U+2069's and
// U+200E's neighbours, Arabic letters) stay.
TEST(TerminalSafe, ReplacesBidirectionalControls) {
  for (const char* bidi : {"\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067",
                           "\u2068", "\u2069", "\u200E", "\u200F", "\u061C"}) {
    EXPECT_EQ(TerminalSafe(std::string("t1 ") + bidi + "done"), "t1 " + kR + "done") << bidi;
  }
  EXPECT_EQ(TerminalSafe("a\u2014b\u2026c\u2027d\u206Ae\u20ACf\u2010h\u061B\u061D\u0627"),
            "a\u2014b\u2026c\u2027d\u206Ae\u20ACf\u2010h\u061B\u061D\u0627");
  TerminalFilter f;  // cut between writes, and at the end
  std::string out = f.Feed("x\xE2");
  out += f.Feed("\x80");
  out += f.Feed("\xAEy\xD8");
  out += f.Feed("\x9Cz\xD8\x9Bw\xE2\x80");
  out += f.Finish();
  EXPECT_EQ(out, "x" + kR + "y" + kR + "z\xD8\x9Bw\xE2\x80");
  TerminalFilter g;  // a lead byte and no more: invalid UTF-8, not a control
  out = g.Feed("a\xD8");
  out += g.Finish();
  EXPECT_EQ(out, "a\xD8");
}

// A line separator made what followed it a line of its own to a viewer (a
// forged one), a zero-width character hid in an id ("t1" that is not t1).
// Characters beside them, with the same lead bytes, stay.
TEST(TerminalSafe, ReplacesHiddenCharacters) {
  for (const char* hidden :
       {"\u2028", "\u2029", "\u200B", "\u200C", "\u200D", "\u2060", "\uFEFF"}) {
    EXPECT_EQ(TerminalSafe(std::string("t1 ") + hidden + "done"), "t1 " + kR + "done") << hidden;
    EXPECT_EQ(TerminalSafe(std::string(hidden) + "t1"), kR + "t1") << hidden;
  }
  EXPECT_EQ(TerminalSafe("a\u200Ab\u2027c\u2061d\uFEFEe\uFF01f\uFFFDg\uEFBBh"),
            "a\u200Ab\u2027c\u2061d\uFEFEe\uFF01f\uFFFDg\uEFBBh");
  TerminalFilter f;  // cut between writes
  std::string out = f.Feed("a\xEF");
  out += f.Feed("\xBB");
  out += f.Feed(
      "\xBF"
      "b\xE2\x80");
  out += f.Feed(
      "\xA8"
      "c");
  out += f.Finish();
  EXPECT_EQ(out, "a" + kR + "b" + kR + "c");
}

// The joiners after a character that is not ASCII join an emoji sequence
// or shape a script's letters: kept, or a family would show as three
// people with U+FFFD between. After ASCII they only hide: replaced. The
// other hidden characters are replaced after anything.
TEST(TerminalSafe, KeepsAJoinerAfterACharacterThatIsNotAscii) {
  for (const std::string text : {"\U0001F468\u200D\U0001F469\u200D\U0001F467",  // a family
                                 "\U0001F3F3\uFE0F\u200D\U0001F308",            // a rainbow flag
                                 "\U0001F9D1\U0001F3FD\u200D\u2695\uFE0F",      // a health worker
                                 "\u0915\u094D\u200D\u0937",                    // Devanagari
                                 "\u0645\u06CC\u200C\u062E"}) {                 // Persian
    EXPECT_EQ(TerminalSafe("ok " + text + " ok"), "ok " + text + " ok") << text;
  }
  EXPECT_EQ(TerminalSafe("t\u200D1 \u200C"), "t" + kR + "1 " + kR);
  EXPECT_EQ(TerminalSafe("\u00E9\n\u200Dx"), "\u00E9\n" + kR + "x") << "a line's start";
  EXPECT_EQ(TerminalSafe("\U0001F600\u200B\u00E9\u2028x"), "\U0001F600" + kR + "\u00E9" + kR + "x");
  EXPECT_EQ(TerminalSafe("\U0001F600\x01\u200D"), "\U0001F600" + kR + kR)
      << "after a replaced character";
}

TEST(TerminalSafe, ASequenceCutBetweenWritesIsStillJudgedWhole) {
  TerminalFilter f;
  std::string out = f.Feed("a\x1b");
  out += f.Feed("[31mred\x1b[");
  out += f.Feed("2Jx\xC2");
  out += f.Feed("\x9B");
  out += f.Finish();
  EXPECT_EQ(out, "a\x1b[31mred" + kR + "[2Jx" + kR + "\x1b[0m");
}

TEST(TerminalSafeBuf, FiltersAStreamWrittenPieceByPiece) {
  std::ostringstream sink;
  {
    TerminalSafeBuf buf(sink.rdbuf());
    std::ostream out(&buf);
    out << "title: "
        << "evil\x1b"
        << "]0;x\x07" << '\n'
        << 42 << std::flush;
    out << "\x1b";  // held back, then made safe when the buffer goes
  }
  EXPECT_EQ(sink.str(), "title: evil" + kR + "]0;x" + kR + "\n42" + kR);
}

}  // namespace
}  // namespace forge::ctl
