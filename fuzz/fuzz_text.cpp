// Fuzz target: text for terminals and JSON (detail/text.hpp).
// Invariants: escape_for_terminal output is valid UTF-8 without any control a terminal acts on
// and is injective (two different inputs never print the same); append_json_string output is one
// strict JSON string of valid UTF-8 whose decoding equals the input wherever the input was valid
// UTF-8 (U+FFFD elsewhere).
#include "fuzz_support.hpp"

#include <casecore/detail/text.hpp>

using namespace casecore;

namespace {

// Decode one strict JSON string literal; false when it is not one.
bool decode_json_string(std::string_view j, std::string& out) {
  if (j.size() < 2 || j.front() != '"' || j.back() != '"') return false;
  for (std::size_t i = 1; i + 1 < j.size(); ++i) {
    const auto c = static_cast<unsigned char>(j[i]);
    if (c < 0x20 || c == '"') return false;
    if (c != '\\') {
      out += static_cast<char>(c);
      continue;
    }
    if (++i + 1 >= j.size()) return false;
    switch (j[i]) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'u': {
        if (i + 4 >= j.size()) return false;
        unsigned cp = 0;
        for (int k = 1; k <= 4; ++k) {
          const char h = j[i + static_cast<std::size_t>(k)];
          cp <<= 4;
          if (h >= '0' && h <= '9') cp |= static_cast<unsigned>(h - '0');
          else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned>(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned>(h - 'A' + 10);
          else return false;
        }
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdfff) return false; // casecore never escapes surrogates
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) out += static_cast<char>(0xc0 | (cp >> 6)), out += static_cast<char>(0x80 | (cp & 0x3f));
        else out += static_cast<char>(0xe0 | (cp >> 12)), out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f)), out += static_cast<char>(0x80 | (cp & 0x3f));
        break;
      }
      default: return false;
    }
  }
  return true;
}

bool terminal_safe(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return detail::is_printable(s);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const auto shown = detail::escape_for_terminal(s);
  fuzz::require(terminal_safe(shown), "terminal output holds a control or invalid UTF-8");
  // Injectivity on a split of the input: equal escapes only for equal halves.
  const auto a = s.substr(0, size / 2), b = s.substr(size / 2);
  if (a != b) fuzz::require(detail::escape_for_terminal(a) != detail::escape_for_terminal(b), "two inputs print the same");

  std::string json;
  detail::append_json_string(json, s);
  fuzz::require(detail::is_valid_utf8(json), "JSON output is not valid UTF-8");
  std::string decoded;
  fuzz::require(decode_json_string(json, decoded), "JSON output is not one strict JSON string");
  if (detail::is_valid_utf8(s)) fuzz::require(decoded == s, "JSON round trip changed valid UTF-8 text");
  return 0;
}
