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

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  const auto password = std::string(password_of(url));
  bool secret = password.size() >= 6;
  if (secret) { // only when the password text is unique in the URL
    const auto first = url.find(password);
    secret = url.find(password, first + 1) == std::string::npos;
  }
  const auto got = run(url);
  if (!secret) return 0;
  if (got.parsed) fuzz::require(got.masked.find(password) == std::string::npos, "password in the masked URL");
  if (got.message.find(password) != std::string::npos) {
    // The password's text may also be words of casecore's own message ("s control" in "contains
    // control characters"): a leak only if the message changes when the password does.
    std::string other = url;
    const char filler = password.find('Q') == std::string::npos ? 'Q' : 'Z';
    other.replace(url.find(password), password.size(), std::string(password.size(), filler));
    fuzz::require(run(other).message.find(password) != std::string::npos, "password in a bad_url message");
  }
  return 0;
}
