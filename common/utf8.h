// UTF-8 checks for text from people. Text forge-ctl sends to the
// supervisor must be UTF-8: the control protocol is JSON, which carries
// nothing else, and encoding other bytes throws (nlohmann type_error 316).
// Titles, briefs (and brief files), ids and reasons are checked before a
// request is built, so that a Latin-1 or Windows-1252 file is refused
// naming the flag, the plan line or the argument (exit 2) rather than
// failing in the middle of a request. The supervisor's config file is
// checked as a whole, before yaml-cpp would replace such bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace forge {

// The offset of the first byte that is not part of a well-formed UTF-8
// sequence (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF, as nlohmann::json accepts), or npos when text is UTF-8.
size_t FindInvalidUtf8(std::string_view text);

// Where that byte is: "byte 0x93 at line 2, column 7" for text of several
// lines, "byte 0xe9 at character 4" for one line (columns and characters
// count from 1).
std::string DescribeInvalidUtf8(std::string_view text, size_t at);

// The text for a message or a log line, always one line of UTF-8: UTF-8 as
// it is, other bytes as \xNN (as bash's $'...' writes them) and control
// characters escaped (\n, \r, \t, C0 and DEL as \xNN, C1 as \u0080 to
// \u009f), and so are the bidirectional controls, which would draw the text
// around them reversed (\u202a to \u202e, \u2066 to \u2069, \u200e,
// \u200f, \u061c), and so are the invisible characters that can hide or
// fake text (IsHiddenCharacter: \u2028, \u2029, \u200b to \u200d,
// \u2060, \ufeff); cut after max bytes (npos: never).
std::string ShowBytes(std::string_view text, size_t max = 80);

// Whether the UTF-8 sequence lead, second, third (0 for a two-byte one) is
// a bidirectional control: an embedding, override or isolate (U+202A to
// U+202E, U+2066 to U+2069) or a mark (U+200E, U+200F, U+061C). Raw, an
// agent's last line or error holding U+202E draws the rest of the line
// around it right to left: text that reads as something else ("Trojan
// Source", CVE-2021-42574). The one list ShowBytes and forge-ctl's terminal
// filter (which sees the bytes one at a time) both use.
bool IsBidiControl(unsigned char lead, unsigned char second, unsigned char third);

// Whether the UTF-8 sequence lead, second, third is a character that shows
// as nothing though it is there, or as a line break to some viewers only:
// the line and paragraph separators (U+2028, U+2029: a log viewer or an
// editor breaks the line there, a terminal does not, so text after one
// reads as a line of its own, a forged one) and the zero-width characters
// (U+200B space, U+200C non-joiner, U+200D joiner, U+2060 word joiner,
// U+FEFF byte-order mark: an id, a path or a command holding one looks
// like one without it). Shared as IsBidiControl is; the terminal filter
// keeps the joiners in one place (ctl/terminal.cc).
bool IsHiddenCharacter(unsigned char lead, unsigned char second, unsigned char third);

// The offset of the first byte ShowBytes would change (a control character,
// a bidirectional control, a hidden character, a byte outside well-formed
// UTF-8), or npos: a
// fast scan, so that text that needs nothing (almost every log line) is not
// copied.
size_t FindUnprintable(std::string_view text);

// kInvalid "WHAT 'VALUE': not UTF-8 (byte 0xe9 at character 4)" when text is
// not UTF-8 (what: "--title", "task id", ...); Ok otherwise.
Status CheckUtf8(std::string_view text, const std::string& what);

}  // namespace forge
