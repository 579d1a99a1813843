// casecore/url.hpp — database URL parsing.
//
// Accepted: sqlite:relative.db, sqlite:///abs/path.db, sqlite::memory:, and
// postgresql://user:pass@host:port/db?options (also postgres://). Query parameters that casecore
// understands (pool_size, pool_overflow, acquire_timeout_ms, busy_timeout_ms, synchronous) are
// taken out; the rest are handed to the driver. Malformed input throws casecore::bad_url.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace casecore {

/// A parsed database URL.
struct database_url {
  std::string scheme;                          ///< "sqlite" or "postgresql"
  std::string target;                          ///< SQLite: file path or ":memory:"; PostgreSQL: URL without casecore parameters
  std::map<std::string, std::string> casecore; ///< parameters casecore consumes
  std::string masked;                          ///< printable form, password replaced by ***
};

/// Parse and validate a URL (throws bad_url).
database_url parse_url(std::string_view url);

/// A non-negative integer parameter, or `fallback` when absent (bad_url when malformed).
std::int64_t url_param(const database_url& url, const std::string& key, std::int64_t fallback);

struct pool_options;
/// Apply pool_size, pool_overflow and acquire_timeout_ms from the URL.
void apply_pool_params(const database_url& url, pool_options& pool);

} // namespace casecore
