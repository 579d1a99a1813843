// tools/cli/html.hpp — escaping for the `casecore serve` pages (tools/cli/dashboard.cpp).
//
// Every value that came from the database or the request goes through html() before it reaches a
// page, in element text and in double-quoted attribute values alike: & < > " ' are replaced by
// character references, so a job name holding "<script>" or a quote that would end an attribute is
// shown as text. Control characters other than TAB / LF / CR, and invalid UTF-8, are replaced by
// U+FFFD, so a page is always valid UTF-8 and a NUL cannot cut it short. url_component() encodes a
// value for a query string (everything but unreserved characters is %XX), and its result is then
// still passed through html() when written into an attribute. Header-only (pure functions), so the
// unit test links it without the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace casecore::cli {

/// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when it is invalid there.
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n;
  std::uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and code points above U+10FFFF are not UTF-8.
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/// `s` as HTML text or attribute value: & < > " ' escaped; controls (but TAB, LF, CR) and invalid
/// UTF-8 replaced by U+FFFD.
inline std::string html(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    switch (c) {
      case '&': out += "&amp;"; ++i; continue;
      case '<': out += "&lt;"; ++i; continue;
      case '>': out += "&gt;"; ++i; continue;
      case '"': out += "&quot;"; ++i; continue;
      case '\'': out += "&#39;"; ++i; continue;
      default: break;
    }
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7F) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const auto n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    // C1 controls (U+0080..U+009F) are invisible and meaningless in a page: replaced too.
    if (n == 2 && u == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) out += "\xEF\xBF\xBD";
    else out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

/// `s` for a URL query string: unreserved characters (A-Z a-z 0-9 - . _ ~) kept, every other byte %XX.
inline std::string url_component(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

} // namespace casecore::cli
