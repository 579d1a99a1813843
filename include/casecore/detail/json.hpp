// casecore/detail/json.hpp — the one JSON string escaper (health reports, the CLI's --json output).
// It lives with the other hostile-text helpers in detail/text.hpp: its output is always valid
// UTF-8 JSON (controls escaped, invalid bytes replaced by U+FFFD).
#pragma once

#include <casecore/detail/text.hpp>
