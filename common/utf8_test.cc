// What forge-ctl accepts as UTF-8 is exactly what nlohmann::json can encode:
// a byte the check lets through must never make a request's dump() throw.
#include "common/utf8.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/messages.h"

namespace forge {
namespace {

using ::testing::HasSubstr;

bool JsonEncodes(const std::string& text) {
  try {
    (void)proto::json(text).dump();
    return true;
  } catch (const proto::json::exception&) {
    return false;
  }
}

TEST(Utf8Test, AgreesWithWhatJsonCanEncode) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"", std::string::npos},
      {"plain ascii\n\t\x01", std::string::npos},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf", std::string::npos},
      {"caf\xe9", 3},           // Latin-1
      {"\x93quoted\x94", 0},    // Windows-1252
      {"ok\x80", 2},            // a lone continuation byte
      {"\xc0\xaf", 0},          // overlong '/'
      {"\xe0\x80\xaf", 0},      // overlong, three bytes
      {"\xed\xa0\x80", 0},      // a UTF-16 surrogate
      {"\xf4\x90\x80\x80", 0},  // past U+10FFFF
      {"\xf5\x80\x80\x80", 0},  // no such lead byte
      {"ab\xe2\x82", 2},        // cut mid-character at the end
      {"ab\xe2\x82z", 2},       // cut mid-character inside
      {"\xff", 0},
  };
  for (const auto& [text, at] : cases) {
    EXPECT_EQ(FindInvalidUtf8(text), at) << ShowBytes(text);
    EXPECT_EQ(JsonEncodes(text), at == std::string::npos) << ShowBytes(text);
  }
  // Every two-byte string, for agreement on every lead and second byte.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (const std::string& tail : {std::string(), std::string("\x80\x80", 2)}) {
        std::string text{static_cast<char>(a), static_cast<char>(b)};
        text += tail;
        ASSERT_EQ(FindInvalidUtf8(text) == std::string::npos, JsonEncodes(text)) << ShowBytes(text);
      }
    }
  }
}

TEST(Utf8Test, SaysWhereTheByteIs) {
  EXPECT_EQ(DescribeInvalidUtf8("caf\xe9", 3), "byte 0xe9 at character 4");
  EXPECT_EQ(DescribeInvalidUtf8("\xc3\xa9t\xe9", 3), "byte 0xe9 at character 3");
  EXPECT_EQ(DescribeInvalidUtf8("one\ntwo \x93x\x94\n", 8), "byte 0x93 at line 2, column 5");
}

TEST(Utf8Test, ShowsOtherBytesEscaped) {
  EXPECT_EQ(ShowBytes("caf\xe9 \xc3\xa9\n\x1b[2J"), "caf\\xe9 \xc3\xa9\\n\\x1b[2J");
  EXPECT_EQ(ShowBytes(std::string(100, 'a'), 10), "aaaaaaaaaa...");
  // Cut between characters, never inside one.
  EXPECT_EQ(ShowBytes("a\xe2\x82\xac\xe2\x82\xac", 2), "a\xe2\x82\xac...");
  // C1 controls are UTF-8, and 0x9b is CSI to some terminals; \r as \n.
  EXPECT_EQ(ShowBytes("a\xc2\x9b"
                      "2J\xc2\x85\xc2\xa0\r\x7f"),
            "a\\u009b2J\\u0085\xc2\xa0\\r\\x7f");
  EXPECT_EQ(ShowBytes(std::string(100, 'a'), std::string::npos), std::string(100, 'a'));
}

// The bidirectional controls are UTF-8, but an agent's last line or error
// holding one would draw the log line around it reversed ("Trojan Source",
// CVE-2021-42574): each is escaped as its code point, as C1 is. Characters
// next to them, with the same lead bytes, stay as they are.
TEST(Utf8Test, EscapesEachBidirectionalControl) {
  const std::pair<std::string, std::string> bidi[] = {
      {"\u202A", "\\u202a"}, {"\u202B", "\\u202b"}, {"\u202C", "\\u202c"}, {"\u202D", "\\u202d"},
      {"\u202E", "\\u202e"}, {"\u2066", "\\u2066"}, {"\u2067", "\\u2067"}, {"\u2068", "\\u2068"},
      {"\u2069", "\\u2069"}, {"\u200E", "\\u200e"}, {"\u200F", "\\u200f"}, {"\u061C", "\\u061c"},
  };
  for (const auto& [raw, shown] : bidi) {
    const std::string text = "t1 " + raw + "enod";
    EXPECT_EQ(ShowBytes(text), "t1 " + shown + "enod") << shown;
    EXPECT_EQ(FindUnprintable(text), 3u) << shown;
  }
  // Before and after each range, around U+061C, letters and emoji.
  for (const std::string text :
       {"\u200A\u2010\u2027\u202F\u2065\u206A\u2070", "\u061B\u061D\u0627\u0628",
        "caf\u00E9 na\u00EFve \u00C5ngstr\u00F6m", "\U0001F600 \U0001F468 \U0001F469",
        "\u2014\u2026\u20AC"}) {
    EXPECT_EQ(FindUnprintable(text), std::string::npos) << text;
    EXPECT_EQ(ShowBytes(text, std::string::npos), text);
  }
}

// The characters that show as nothing, or as a line break to some viewers
// only, are UTF-8 too, but would hide text in a message or a log line (an id
// "t1" holding U+200B) or fake a line (after U+2028): each is escaped as its
// code point. In a log line a joiner is too, even inside an emoji sequence:
// a log says what is there. Characters beside them stay.
TEST(Utf8Test, EscapesEachHiddenCharacter) {
  const std::pair<std::string, std::string> hidden[] = {
      {"\u2028", "\\u2028"}, {"\u2029", "\\u2029"}, {"\u200B", "\\u200b"}, {"\u200C", "\\u200c"},
      {"\u200D", "\\u200d"}, {"\u2060", "\\u2060"}, {"\uFEFF", "\\ufeff"},
  };
  for (const auto& [raw, shown] : hidden) {
    const std::string text = "t1 " + raw + "done";
    EXPECT_EQ(ShowBytes(text), "t1 " + shown + "done") << shown;
    EXPECT_EQ(FindUnprintable(text), 3u) << shown;
  }
  EXPECT_EQ(ShowBytes("\U0001F468\u200D\U0001F469"), "\U0001F468\\u200d\U0001F469");
  for (const std::string text :
       {"\u200A\u2027\u202F\u205F\u2061", "\uFEFE\uFF01\uFFFD\uEFBB\uFBBF", "\u00A0\u3000"}) {
    EXPECT_EQ(FindUnprintable(text), std::string::npos) << text;
    EXPECT_EQ(ShowBytes(text, std::string::npos), text);
  }
}

// What ShowBytes changes starts where FindUnprintable says, and nothing
// before: the log copies only from there.
TEST(Utf8Test, FindsTheFirstByteToEscape) {
  const std::pair<std::string, size_t> cases[] = {
      {"plain text, with {} and 'quotes'", std::string::npos},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0", std::string::npos},
      {"a\nb", 1},
      {"ab\t", 2},
      {"\x1b[31m", 0},
      {"x\x7f", 1},
      {"\xc3\xa9\xff", 2},
      {"\xc3\xa9\xc2\x9b", 2},
      {"\xc3\xa9 \xe2\x80\xae", 3},  // U+202E
      {"\xd8\x9c", 0},               // U+061C
      {"cut \xe2\x82", 4},
      {std::string("a\0b", 3), 1},
  };
  for (const auto& [text, at] : cases) {
    EXPECT_EQ(FindUnprintable(text), at) << ShowBytes(text);
    EXPECT_EQ(ShowBytes(text, std::string::npos) == text, at == std::string::npos)
        << ShowBytes(text);
    if (at != std::string::npos) {
      EXPECT_EQ(ShowBytes(text, std::string::npos).substr(0, at), text.substr(0, at));
    }
  }
}

TEST(Utf8Test, CheckNamesTheArgument) {
  EXPECT_TRUE(CheckUtf8("t12", "task id").ok());
  Status bad = CheckUtf8("t1\xff", "task id");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(bad.error().message, "task id 't1\\xff': not UTF-8 (byte 0xff at character 3)");
}

}  // namespace
}  // namespace forge
