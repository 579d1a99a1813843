// Fuzz target: database URL parsing (parse_url, url_param, apply_pool_params).
// Invariants: a result or bad_url, nothing else; a parsed URL has a known scheme, a non-empty
// target and a masked form; no password (userinfo after ':') appears in the masked form or in any
// error message (issue 16 findings 1 and 2) — checked when the password text occurs nowhere else
// in the URL (a password equal to the user or host name would be a false alarm).
#include "fuzz_support.hpp"

#include <casecore/error.hpp>
#include <casecore/pool.hpp>
#include <casecore/url.hpp>

using namespace casecore;

namespace {
// The password as a user would think of it: between "://user:" and the last '@' before the host.
std::string_view password_of(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  const auto auth = url.substr(scheme + 3, url.find_first_of("/?", scheme + 3) - (scheme + 3));
  const auto at = auth.rfind('@');
  if (at == std::string_view::npos) return {};
  const auto colon = auth.find(':');
  if (colon == std::string_view::npos || colon > at) return {};
  return auth.substr(colon + 1, at - colon - 1);
}
} // namespace

// The first bad_url message of the calls below for `url` ("" when none), and the parsed URL's
// masked form (when it parsed). Any other exception escapes and fails the run.
struct outcome {
  std::string message;
  std::string masked;
  bool parsed = false;
};
outcome run(const std::string& url) {
  outcome o;
  try {
    const auto parsed = parse_url(url);
    o.parsed = true;
    fuzz::require(parsed.scheme == "sqlite" || parsed.scheme == "postgresql", "unknown scheme accepted");
    fuzz::require(!parsed.target.empty(), "empty target accepted");
    fuzz::require(!parsed.masked.empty(), "empty masked form");
    o.masked = parsed.masked;
    pool_options pool;
    apply_pool_params(parsed, pool);
    url_param(parsed, "busy_timeout_ms", 5);
    url_param(parsed, "statement_timeout_ms", 5);
  } catch (const bad_url& e) {
    o.message = e.what();
  }
  return o;
}

namespace {
// The same text with every letter and digit of `s` changed to another of its class (digits among
// digits, a-f among a-f, A-F among A-F, other letters among other letters), everything else kept:
// a percent escape stays an escape, a separator stays a separator, so the URL takes the same path.
std::string rotate(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= '0' && c <= '9') c = c == '9' ? '0' : static_cast<char>(c + 1);
    else if (c >= 'a' && c <= 'f') c = c == 'f' ? 'a' : static_cast<char>(c + 1);
    else if (c >= 'A' && c <= 'F') c = c == 'F' ? 'A' : static_cast<char>(c + 1);
    else if (c >= 'g' && c <= 'z') c = c == 'z' ? 'g' : static_cast<char>(c + 1);
    else if (c >= 'G' && c <= 'Z') c = c == 'Z' ? 'G' : static_cast<char>(c + 1);
  }
  return out;
}

bool unique_in(const std::string& text, const std::string& part) {
  const auto first = text.find(part);
  return first != std::string::npos && text.find(part, first + 1) == std::string::npos;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  const auto password = std::string(password_of(url));
  const auto got = run(url);
  // Checked only when the password text is unique in the URL (a password equal to the user or host
  // name would be a false alarm) and has a letter or digit to change (see below).
  if (password.size() < 6 || !unique_in(url, password)) return 0;
  const auto rotated_password = rotate(password);
  if (rotated_password == password) return 0;
  std::string other = url;
  other.replace(url.find(password), password.size(), rotated_password);
  if (!unique_in(other, rotated_password)) return 0;
  // A leak copies the password: the output holds the password, and the output for the same URL
  // with a changed password holds the changed one. Output that holds the password's text
  // whatever the password is (it is made of the URL's other text, casecore's own words and "***":
  // a password "x:***" next to a user "x") is not a leak; the fuzzer found such inputs.
  const auto changed = run(other);
  if (got.parsed && got.masked.find(password) != std::string::npos)
    fuzz::require(changed.masked.find(rotated_password) == std::string::npos, "password in the masked URL");
  if (got.message.find(password) != std::string::npos)
    fuzz::require(changed.message.find(rotated_password) == std::string::npos, "password in a bad_url message");
  return 0;
}
