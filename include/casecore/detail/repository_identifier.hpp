// casecore/detail/repository_identifier.hpp — validation of SQL identifiers a host declares.
//
// Table and column names are the only text casecore ever puts into SQL; they come from the host's
// descriptors (never from end users) and are checked against [A-Za-z_][A-Za-z0-9_]{0,62} first.
#pragma once

#include <casecore/error.hpp>

#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

/// True for a plain SQL identifier: [A-Za-z_][A-Za-z0-9_]{0,62}.
inline bool is_identifier(std::string_view s) noexcept {
  if (s.empty() || s.size() > 63) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(s[0])) return false;
  for (char c : s)
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  return true;
}

/// Throw invalid_argument unless `s` is a plain identifier; `what` names it in the message.
inline void check_identifier(std::string_view s, std::string_view what) {
  if (!is_identifier(s))
    raise(errc::invalid_argument, std::string(what) + " '" + std::string(s.substr(0, 80)) +
                                      "' is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]{0,62})");
}

} // namespace casecore::detail

CASECORE_API_END
