// casecore/detail/json.hpp — the one JSON string escaper (health reports, the CLI's --json output).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace casecore::detail {

/// Append `s` to `out` as a quoted JSON string (quotes, backslashes and control characters escaped).
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

} // namespace casecore::detail
