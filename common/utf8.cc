#include "common/utf8.h"

#include <algorithm>

namespace forge {
namespace {

// The length of the well-formed UTF-8 sequence at text[i], 0 when there is none.
size_t SequenceAt(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) -> unsigned {
    return k < text.size() ? static_cast<unsigned char>(text[k]) : 0u;
  };
  const unsigned c = byte(i);
  if (c < 0x80) return 1;
  const auto in = [&](size_t k, unsigned lo, unsigned hi) {
    return k < text.size() && byte(k) >= lo && byte(k) <= hi;
  };
  // RFC 3629, table 3-7 of the Unicode standard: the second byte's range
  // excludes overlong forms (E0, F0), surrogates (ED) and past U+10FFFF (F4).
  if (c >= 0xC2 && c <= 0xDF) return in(i + 1, 0x80, 0xBF) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return in(i + 1, lo, hi) && in(i + 2, 0x80, 0xBF) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return in(i + 1, lo, hi) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// Whether the well-formed sequence of n bytes at text[i] is a character
// ShowBytes writes as \uXXXX, though it is UTF-8: a C1 control, U+0080 to
// U+009F (0xC2 0x80-0x9F; some terminals act on them, 0x9B is CSI, as on
// C0), a bidirectional control (IsBidiControl) or a hidden character
// (IsHiddenCharacter). Decided on the lead byte first: any other character
// costs a comparison or two.
bool EscapedAt(std::string_view text, size_t i, size_t n) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  if (n == 2 && b(0) == 0xC2) return b(1) <= 0x9F;
  if (n == 2) return IsBidiControl(b(0), b(1), 0);
  return n == 3 && (IsBidiControl(b(0), b(1), b(2)) || IsHiddenCharacter(b(0), b(1), b(2)));
}

}  // namespace

bool IsBidiControl(unsigned char lead, unsigned char second, unsigned char third) {
  if (lead == 0xD8) return second == 0x9C;  // U+061C
  if (lead != 0xE2) return false;
  if (second == 0x80) return third == 0x8E || third == 0x8F || (third >= 0xAA && third <= 0xAE);
  return second == 0x81 && third >= 0xA6 && third <= 0xA9;
}

bool IsHiddenCharacter(unsigned char lead, unsigned char second, unsigned char third) {
  if (lead == 0xEF) return second == 0xBB && third == 0xBF;  // U+FEFF
  if (lead != 0xE2) return false;
  if (second == 0x80) return (third >= 0x8B && third <= 0x8D) || third == 0xA8 || third == 0xA9;
  return second == 0x81 && third == 0xA0;  // U+2060
}

namespace {

// The code point of the well-formed two- or three-byte sequence at text[i].
unsigned CodePointAt(std::string_view text, size_t i, size_t n) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]) & 0x3Fu; };
  const unsigned lead = static_cast<unsigned char>(text[i]);
  if (n == 2) return ((lead & 0x1Fu) << 6) | b(1);
  return ((lead & 0x0Fu) << 12) | (b(1) << 6) | b(2);
}

std::string Hex(unsigned char c) {
  static const char kHex[] = "0123456789abcdef";
  return {kHex[c >> 4], kHex[c & 15]};
}

}  // namespace

size_t FindInvalidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = SequenceAt(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string DescribeInvalidUtf8(std::string_view text, size_t at) {
  const bool lines = text.find('\n') != std::string_view::npos;
  size_t line = 1, column = 1;
  for (size_t i = 0; i < at && i < text.size();) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
      ++i;
      continue;
    }
    const size_t n = SequenceAt(text, i);
    i += n == 0 ? 1 : n;
    ++column;
  }
  const std::string byte =
      "byte 0x" + (at < text.size() ? Hex(static_cast<unsigned char>(text[at])) : "??");
  if (lines)
    return byte + " at line " + std::to_string(line) + ", column " + std::to_string(column);
  return byte + " at character " + std::to_string(column);
}

std::string ShowBytes(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max) + 8);
  for (size_t i = 0; i < text.size();) {
    if (i >= max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t n = SequenceAt(text, i);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (n == 0 || c < 0x20 || c == 0x7f) {
      out += "\\x" + Hex(c);
    } else if (EscapedAt(text, i, n)) {
      const unsigned cp = CodePointAt(text, i, n);
      out += "\\u" + Hex(static_cast<unsigned char>(cp >> 8)) +
             Hex(static_cast<unsigned char>(cp & 0xFF));
    } else {
      out.append(text.substr(i, n));
    }
    i += n == 0 ? 1 : n;
  }
  return out;
}

size_t FindUnprintable(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {  // printable ASCII, nearly every byte of a log line
      ++i;
      continue;
    }
    if (c < 0x80) return i;  // C0 or DEL
    const size_t n = SequenceAt(text, i);
    if (n == 0 || EscapedAt(text, i, n)) return i;
    i += n;
  }
  return std::string_view::npos;
}

Status CheckUtf8(std::string_view text, const std::string& what) {
  const size_t at = FindInvalidUtf8(text);
  if (at == std::string_view::npos) return Status::Ok();
  return MakeError(ErrorCode::kInvalid, what + " '" + ShowBytes(text) + "': not UTF-8 (" +
                                            DescribeInvalidUtf8(text, at) + ")");
}

}  // namespace forge
