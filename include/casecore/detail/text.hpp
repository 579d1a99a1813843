// casecore/detail/text.hpp — hostile text: validating names at the API, escaping text for a
// terminal and for JSON.
//
// Concept: strings that reach casecore from users (lease names and owners, queue names, job subjects,
// file names) end up in operators' terminals (`casecore lease list`) and in JSON read by scripts.
// A string holding ESC sequences, CR, TAB or bidirectional overrides can clear a screen, move the
// cursor or forge table rows; invalid UTF-8 breaks strict JSON readers. casecore refuses such text
// where it enters (check_printable) and, for text already stored, escapes it where it leaves
// (escape_for_terminal, append_json_string).
//
// Guarantees: check_printable accepts exactly the valid UTF-8 strings without C0 controls
// (U+0000–U+001F), DEL (U+007F), C1 controls (U+0080–U+009F), bidirectional embedding / override /
// isolate controls (U+202A–U+202E, U+2066–U+2069) and line / paragraph separators (U+2028, U+2029).
// escape_for_terminal output contains none of those and no invalid UTF-8; it is injective (a
// backslash is escaped too), so two different inputs never print the same. append_json_string
// output is always a valid JSON string of valid UTF-8 (invalid bytes become U+FFFD, controls are
// \u-escaped). All functions are pure and thread-safe; check_printable throws invalid_argument.
//
// Example:
//   detail::check_printable(owner, "lease owner", 200);           // at the API edge
//   std::cout << detail::escape_for_terminal(row.owner) << "\n"; // in the CLI
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

/// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// True when `s` is valid UTF-8 free of the controls listed in this header (empty counts as printable).
bool is_printable(std::string_view s) noexcept;

/// Throw invalid_argument ("<what> ...") unless `text` is 1..max_bytes bytes (0.. when
/// `allow_empty`) of printable UTF-8 (see is_printable). The message never echoes the text.
void check_printable(std::string_view text, std::string_view what, std::size_t max_bytes, bool allow_empty = false);

/// `s` made safe for a terminal: controls as \t \n \r \e \xNN or \u{XXXX}, invalid bytes as \xNN,
/// and a backslash as \\. Printable UTF-8 (accents, CJK, emoji) passes through unchanged.
std::string escape_for_terminal(std::string_view s);

/// Append `s` to `out` as a quoted JSON string: quotes, backslashes and every control escaped,
/// invalid UTF-8 replaced by U+FFFD, so the output is valid JSON and valid UTF-8.
void append_json_string(std::string& out, std::string_view s);

} // namespace casecore::detail

CASECORE_API_END
