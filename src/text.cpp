#include <casecore/detail/text.hpp>
#include <casecore/error.hpp>

#include <cstdint>
#include <cstdio>

namespace casecore::detail {

namespace {

// One decoded UTF-8 sequence: its code point and length, or length 0 for an invalid byte.
struct decoded {
  char32_t cp = 0;
  std::size_t len = 0;
};

// Strict decoding (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
decoded decode(std::string_view s, std::size_t i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  std::size_t len = 0;
  char32_t cp = 0, min = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) len = 2, cp = b0 & 0x1f, min = 0x80;
  else if (b0 >= 0xe0 && b0 <= 0xef) len = 3, cp = b0 & 0x0f, min = 0x800;
  else if (b0 >= 0xf0 && b0 <= 0xf4) len = 4, cp = b0 & 0x07, min = 0x10000;
  else return {};
  if (i + len > s.size()) return {};
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {};
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {};
  return {cp, len};
}

// Code points a terminal interprets rather than prints, or that reorder / break lines.
bool is_control(char32_t cp) noexcept {
  return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

void append_hex(std::string& out, const char* format, unsigned value) {
  char buf[16];
  std::snprintf(buf, sizeof buf, format, value);
  out += buf;
}

} // namespace

bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.len == 0) return false;
    i += d.len;
  }
  return true;
}

bool is_printable(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.len == 0 || is_control(d.cp)) return false;
    i += d.len;
  }
  return true;
}

void check_printable(std::string_view text, std::string_view what, std::size_t max_bytes, bool allow_empty) {
  // The text is never echoed: it may be exactly the escape sequence the check is there to stop.
  if (text.empty() && !allow_empty) raise(errc::invalid_argument, std::string(what) + " is empty");
  if (text.size() > max_bytes)
    raise(errc::invalid_argument, std::string(what) + " is longer than " + std::to_string(max_bytes) + " bytes");
  if (!is_valid_utf8(text)) raise(errc::invalid_argument, std::string(what) + " is not valid UTF-8");
  if (!is_printable(text))
    raise(errc::invalid_argument, std::string(what) + " contains a control character (C0, DEL, C1, bidi or line separator)");
}

std::string escape_for_terminal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.len == 0) { // an invalid byte: shown, never passed through
      append_hex(out, "\\x%02x", static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    switch (d.cp) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case 0x1b: out += "\\e"; break;
      default:
        if (d.cp < 0x80 && is_control(d.cp)) append_hex(out, "\\x%02x", static_cast<unsigned>(d.cp));
        else if (is_control(d.cp)) append_hex(out, "\\u{%04x}", static_cast<unsigned>(d.cp));
        else out.append(s.substr(i, d.len));
    }
    i += d.len;
  }
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.len == 0) { // not UTF-8: JSON cannot carry the byte, so it becomes U+FFFD
      out += "\xef\xbf\xbd";
      ++i;
      continue;
    }
    switch (d.cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        // Controls are legal raw in JSON above U+001F, but a reader may print them to a terminal.
        if (is_control(d.cp)) append_hex(out, "\\u%04x", static_cast<unsigned>(d.cp));
        else out.append(s.substr(i, d.len));
    }
    i += d.len;
  }
  out += '"';
}

} // namespace casecore::detail
