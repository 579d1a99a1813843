// casecore/url.hpp — database URL parsing, and keeping secrets out of every message.
//
// Accepted: sqlite:relative.db, sqlite:///abs/path.db, sqlite::memory:, and
// postgresql://user:password@host:port[,host2:port2...]/db?options (also postgres://).
// Query parameters casecore understands are taken out (`casecore`); for PostgreSQL the rest must be
// libpq connection keywords and are kept, percent-decoded, in `driver`. The PostgreSQL adapter hands
// libpq explicit keyword/value parameters built from these fields — never the URL text — so libpq
// can never split user, password and host differently than casecore did.
//
// casecore's parameters: pool_size, pool_overflow, acquire_timeout_ms, reconnect_budget_ms (both);
// busy_timeout_ms, synchronous, mode (SQLite); statement_timeout_ms, lock_timeout_ms, pooler
// (auto | none | session | transaction), schema (pins search_path in every transaction), replicas
// (host:port,... of standbys for read-only units of work), replica_wait_ms (PostgreSQL).
//
// Secrets: the password (userinfo or `password=` / `sslpassword=` parameters) never appears in
// `masked`, in an exception message or in anything casecore prints, also for a URL that fails to
// parse. A literal '@' in the userinfo must be percent-encoded (%40): casecore refuses a URL whose
// user/password/host split would be ambiguous rather than guess.
// Failure modes: bad_url for anything malformed, with the password masked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// One host of a PostgreSQL URL.
struct url_host {
  std::string host; ///< name, IPv4, [IPv6] without brackets, or empty (libpq default)
  std::string port; ///< decimal port, or empty (libpq default)
};

/// A parsed database URL.
struct database_url {
  std::string scheme;                          ///< "sqlite" or "postgresql"
  std::string target;                          ///< SQLite: file path or ":memory:"; PostgreSQL: the masked URL
  std::map<std::string, std::string> casecore; ///< parameters casecore consumes
  std::string masked;                          ///< printable form, secrets replaced by ***
  // PostgreSQL only, percent-decoded:
  std::string user;                            ///< role (empty: libpq default)
  std::string password;                        ///< password (empty: none / from passfile)
  std::string dbname;                          ///< database (empty: libpq default)
  std::vector<url_host> hosts;                 ///< one or more hosts, in the URL's order
  std::map<std::string, std::string> driver;   ///< libpq keyword parameters from the query
};

/// Parse and validate a URL (throws bad_url, whose message never contains a secret).
database_url parse_url(std::string_view url);

/// `text` with every password-like part of a database URL replaced by *** (conservative: it masks
/// more than needed on malformed input, never less). Use it on anything that may contain a URL.
std::string mask_secrets(std::string_view text);

/// A non-negative integer parameter, or `fallback` when absent (bad_url when malformed).
std::int64_t url_param(const database_url& url, const std::string& key, std::int64_t fallback);

struct pool_options;
/// Apply pool_size, pool_overflow and acquire_timeout_ms from the URL.
void apply_pool_params(const database_url& url, pool_options& pool);

} // namespace casecore

CASECORE_API_END
