// Cross-process single-flight claims and the kit's schema (flight claims, shared trigger nonces).
#include <casecore/detail/token.hpp>
#include <casecore/migration.hpp>
#include <casecore/single_flight.hpp>

namespace casecore {

namespace detail {

std::vector<migration> kit_migrations() {
  return {
      {"casecore.kit", 1, "single-flight claims",
       "CREATE TABLE casecore_flights(flight_key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL)", "", ""},
      {"casecore.kit", 2, "trigger nonces",
       "CREATE TABLE casecore_trigger_nonces(nonce TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);"
       "CREATE INDEX casecore_trigger_nonces_expiry ON casecore_trigger_nonces(expires_at);",
       "", ""},
  };
}

void check_flight(std::string_view key, const db_flight_options& options) {
  if (key.empty() || key.size() > 500) raise(errc::invalid_argument, "single-flight key must be 1..500 characters");
  if (options.claim_ttl.count() <= 0) raise(errc::invalid_argument, "single-flight claim_ttl must be positive");
  if (options.max_wait.count() < 0) raise(errc::invalid_argument, "single-flight max_wait must not be negative");
  if (options.poll_min.count() <= 0 || options.poll_max < options.poll_min)
    raise(errc::invalid_argument, "single-flight poll_min must be positive and not above poll_max");
}

bool flight_try_claim(database& db, std::string_view key, std::string_view owner, std::chrono::milliseconds ttl) {
  const std::int64_t ttl_us = ttl.count() * 1000;
  // Insert a claim, or take over one that expired (its holder crashed or overran); a live claim of
  // another owner makes the WHERE false, so nothing is returned.
  return db.write([&](transaction& tx) {
    return !tx.exec("INSERT INTO casecore_flights(flight_key, owner, expires_at) VALUES($1, $2, casecore_now_us() + $3) "
                    "ON CONFLICT(flight_key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
                    "WHERE casecore_flights.expires_at < casecore_now_us() RETURNING owner",
                    key, owner, ttl_us)
                .empty();
  });
}

void flight_release(database& db, std::string_view key, std::string_view owner) noexcept {
  try {
    db.write([&](transaction& tx) { tx.exec("DELETE FROM casecore_flights WHERE flight_key = $1 AND owner = $2", key, owner); });
  } catch (...) {
    // The claim expires on its own; waiting processes then proceed.
  }
}

bool flight_claimed(database& db, std::string_view key) {
  return db.read([&](transaction& tx) {
    return tx.query_one<std::int64_t>(
               "SELECT count(*) FROM casecore_flights WHERE flight_key = $1 AND expires_at >= casecore_now_us()", key) > 0;
  });
}

std::string flight_owner() { return random_token(); }

} // namespace detail
} // namespace casecore
