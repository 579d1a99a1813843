#include <casecore/lease.hpp>
#include <casecore/migration.hpp>

#include <algorithm>
#include <random>
#include <thread>

namespace casecore {

namespace detail {
std::vector<migration> lease_migrations() {
  return {
      {"casecore.lease", 1, "leases",
       "CREATE TABLE casecore_leases("
       " name TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL,"
       " expires_at BIGINT NOT NULL, acquired_at BIGINT NOT NULL)",
       "", ""},
  };
}
} // namespace detail

namespace lease {

namespace {

constexpr std::size_t max_name = 200;

void check_name(std::string_view name) {
  if (name.empty() || name.size() > max_name) raise(errc::invalid_argument, "lease name must be 1..200 characters");
}
void check_owner(std::string_view owner) {
  if (owner.empty() || owner.size() > max_name) raise(errc::invalid_argument, "lease owner must be 1..200 characters");
}
std::int64_t ttl_us(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) raise(errc::invalid_argument, "lease ttl must be positive");
  if (ttl > std::chrono::hours(24 * 365)) raise(errc::invalid_argument, "lease ttl longer than a year");
  return ttl.count() * 1000;
}

// The whole decision is this one statement: the conflict branch only fires when the row is expired
// or already ours, and the database serialises it on the row, so two callers can never both win.
// The token is bumped on every acquisition (also by the same owner), so an older grant is fenced off.
constexpr std::string_view acquire_sql =
    "INSERT INTO casecore_leases(name, owner, token, expires_at, acquired_at) "
    "VALUES($1, $2, 1, casecore_now_us() + $3, casecore_now_us()) "
    "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, token = casecore_leases.token + 1, "
    "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at "
    "WHERE casecore_leases.expires_at < casecore_now_us() OR casecore_leases.owner = excluded.owner "
    "RETURNING token, expires_at";

info to_info(const row_ref& r, micros now) {
  info i;
  i.name = r.get<std::string>(0);
  i.owner = r.get<std::string>(1);
  i.token = r.get<std::int64_t>(2);
  i.expires_at = r.get<micros>(3);
  i.acquired_at = r.get<micros>(4);
  i.held = i.expires_at >= now;
  return i;
}

} // namespace

std::optional<grant> try_acquire(transaction& tx, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl) {
  check_name(name);
  check_owner(owner);
  const auto us = ttl_us(ttl);
  if (!tx.writable()) raise(errc::invalid_argument, "lease::try_acquire needs a write transaction");
  auto r = tx.exec(acquire_sql, name, owner, us);
  if (r.empty()) return std::nullopt;
  return grant{std::string(name), std::string(owner), r[0].get<std::int64_t>(0), r[0].get<micros>(1)};
}

std::optional<grant> try_acquire(database& db, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl) {
  check_name(name);
  check_owner(owner);
  ttl_us(ttl);
  return db.write([&](transaction& tx) { return try_acquire(tx, name, owner, ttl); });
}

grant acquire(database& db, std::string_view name, std::string_view owner, std::chrono::milliseconds ttl,
              std::chrono::milliseconds timeout) {
  check_name(name);
  check_owner(owner);
  ttl_us(ttl);
  if (timeout.count() < 0) raise(errc::invalid_argument, "lease acquire timeout must not be negative");
  thread_local std::minstd_rand rng{std::random_device{}()};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::microseconds ceiling{1000};
  for (;;) {
    if (auto g = try_acquire(db, name, owner, ttl)) return *g;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) raise(errc::timeout, "lease '" + std::string(name) + "' is held by another owner");
    // Full jitter keeps many waiters from polling in lock step; the cap keeps hand-over latency low.
    std::uniform_int_distribution<std::int64_t> pick(ceiling.count() / 4, ceiling.count());
    auto nap = std::chrono::microseconds(pick(rng));
    nap = std::min<std::chrono::microseconds>(nap, std::chrono::duration_cast<std::chrono::microseconds>(deadline - now));
    std::this_thread::sleep_for(nap);
    ceiling = std::min<std::chrono::microseconds>(ceiling * 2, std::chrono::microseconds(50000));
  }
}

grant renew(database& db, const grant& held, std::chrono::milliseconds ttl) {
  check_name(held.name);
  const auto us = ttl_us(ttl);
  // The loss is raised inside the unit of work, which counts it as a conflict (the one place).
  const auto expires = db.write([&](transaction& tx) {
    auto r = tx.query_optional<micros>(
        "UPDATE casecore_leases SET expires_at = casecore_now_us() + $1 "
        "WHERE name = $2 AND owner = $3 AND token = $4 AND expires_at >= casecore_now_us() RETURNING expires_at",
        us, held.name, held.owner, held.token);
    if (!r) throw lease_lost("lease '" + held.name + "' token " + std::to_string(held.token) + " is no longer held");
    return *r;
  });
  grant g = held;
  g.expires_at = expires;
  return g;
}

bool release(database& db, const grant& held) {
  check_name(held.name);
  // The row stays (expired) so the token keeps counting up for the next holder.
  const auto r = db.write([&](transaction& tx) {
    return tx.exec("UPDATE casecore_leases SET expires_at = 0 WHERE name = $1 AND owner = $2 AND token = $3 "
                   "AND expires_at >= casecore_now_us()",
                   held.name, held.owner, held.token);
  });
  return r.affected() > 0;
}

info force_release(database& db, std::string_view name) {
  check_name(name);
  return db.write([&](transaction& tx) {
    // Lock the row first so the reported holder is the one whose lease this call ended.
    auto r = tx.exec(tx.dialect() == dialect::postgresql
                         ? "SELECT name, owner, token, expires_at, acquired_at, casecore_now_us() FROM casecore_leases "
                           "WHERE name = $1 FOR UPDATE"
                         : "SELECT name, owner, token, expires_at, acquired_at, casecore_now_us() FROM casecore_leases "
                           "WHERE name = $1",
                     name);
    if (r.empty()) throw not_found("lease '" + std::string(name) + "' was never acquired");
    auto before = to_info(r[0], r[0].get<micros>(5));
    tx.exec("UPDATE casecore_leases SET expires_at = 0 WHERE name = $1", name);
    return before;
  });
}

void check(transaction& tx, std::string_view name, std::int64_t token) {
  check_name(name);
  // On PostgreSQL FOR SHARE keeps a concurrent takeover (an UPDATE of the row) waiting until the
  // guarded transaction ends, so the check stays true until commit; SQLite's single writer does that.
  const bool pg = tx.dialect() == dialect::postgresql;
  const auto ok = tx.query_optional<std::int64_t>(
      pg ? "SELECT 1 FROM casecore_leases WHERE name = $1 AND token = $2 AND expires_at >= casecore_now_us() FOR SHARE"
         : "SELECT 1 FROM casecore_leases WHERE name = $1 AND token = $2 AND expires_at >= casecore_now_us()",
      name, token);
  if (!ok) {
    throw lease_lost("lease '" + std::string(name) + "' token " + std::to_string(token) + " is stale or expired");
  }
}

std::optional<info> inspect(database& db, std::string_view name) {
  check_name(name);
  return db.read([&](transaction& tx) -> std::optional<info> {
    auto r = tx.exec("SELECT name, owner, token, expires_at, acquired_at, casecore_now_us() FROM casecore_leases "
                     "WHERE name = $1",
                     name);
    if (r.empty()) return std::nullopt;
    return to_info(r[0], r[0].get<micros>(5));
  });
}

std::vector<info> list(database& db, std::string_view prefix) {
  if (prefix.size() > max_name) raise(errc::invalid_argument, "lease prefix longer than 200 characters");
  return db.read([&](transaction& tx) {
    std::vector<info> out;
    auto r = tx.exec("SELECT name, owner, token, expires_at, acquired_at, casecore_now_us() FROM casecore_leases "
                     "WHERE substr(name, 1, length($1)) = $1 ORDER BY name",
                     prefix);
    for (auto row : r) out.push_back(to_info(row, row.get<micros>(5)));
    return out;
  });
}

} // namespace lease
} // namespace casecore
