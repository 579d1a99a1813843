#include <casecore/detail/step.hpp>
#include <casecore/detail/text.hpp>
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

// Issue 16 #5: names and owners reach terminals (CLI text output) and logs: printable UTF-8 only.
void check_text(std::string_view s, std::string_view what, bool allow_empty = false) {
  detail::check_printable(s, "lease " + std::string(what), max_name, allow_empty);
}
void check_name(std::string_view name) { check_text(name, "name"); }
void check_owner(std::string_view owner) { check_text(owner, "owner"); }

std::int64_t ttl_us(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) raise(errc::invalid_argument, "lease ttl must be positive");
  if (ttl > std::chrono::hours(24 * 365)) raise(errc::invalid_argument, "lease ttl longer than a year");
  return ttl.count() * 1000;
}

// Acquisition, in the caller's transaction:
//  1. lock the row only if it is expired (PostgreSQL FOR UPDATE). That lock conflicts with the
//     FOR KEY SHARE that check() holds in a guarded transaction, so a takeover waits until every
//     write checked under the old token has committed or rolled back (bounded by lock_timeout).
//     A live row is not locked, so waiting for a live lease never queues behind its holder.
//  2. take the locked, expired row over (token + 1), or
//  3. insert the first row of a new name; ON CONFLICT DO NOTHING makes a row that exists (live, or
//     expired only since step 1) a plain "not acquired": a takeover never happens without step 1.
// The same owner string gets no special treatment: a live lease is extended with its token (renew),
// never re-acquired, so two instances configured with one owner name still exclude each other.
// The lease's protocol differs per dialect in its row locks (PostgreSQL: FOR UPDATE on takeover,
// FOR KEY SHARE as the fence; SQLite: its single writer is the lock), so its statements stay
// explicit per backend: tests/isolation/specs/lease_acquire_renew_steal.spec runs these literals.
constexpr std::string_view lock_expired_pg =
    "SELECT token FROM casecore_leases WHERE name = $1 AND expires_at < casecore_now_us() FOR UPDATE";
constexpr std::string_view lock_expired_sqlite = // one writer at a time: the write lock is the lock
    "SELECT token FROM casecore_leases WHERE name = $1 AND expires_at < casecore_now_us()";
constexpr std::string_view take_over_sql =
    "UPDATE casecore_leases SET owner = $2, token = token + 1, expires_at = casecore_now_us() + $3,"
    " acquired_at = casecore_now_us() WHERE name = $1 AND expires_at < casecore_now_us() RETURNING token, expires_at";
constexpr std::string_view insert_sql =
    "INSERT INTO casecore_leases(name, owner, token, expires_at, acquired_at) "
    "VALUES($1, $2, 1, casecore_now_us() + $3, casecore_now_us()) ON CONFLICT(name) DO NOTHING RETURNING token, expires_at";

// The fence. FOR KEY SHARE (PostgreSQL) keeps the row from being locked FOR UPDATE, i.e. taken over,
// until the guarded transaction ends, yet lets renew / release / force_release (plain UPDATEs of
// non-key columns) through, so a holder's heartbeat never waits for its own slow write.
constexpr std::string_view check_pg =
    "SELECT 1 FROM casecore_leases WHERE name = $1 AND token = $2 AND expires_at >= casecore_now_us() FOR KEY SHARE";
constexpr std::string_view check_sqlite =
    "SELECT 1 FROM casecore_leases WHERE name = $1 AND token = $2 AND expires_at >= casecore_now_us()";

constexpr std::string_view renew_sql =
    "UPDATE casecore_leases SET expires_at = casecore_now_us() + $1 "
    "WHERE name = $2 AND owner = $3 AND token = $4 AND expires_at >= casecore_now_us() RETURNING expires_at";
constexpr std::string_view release_sql =
    "UPDATE casecore_leases SET expires_at = 0 WHERE name = $1 AND owner = $2 AND token = $3 "
    "AND expires_at >= casecore_now_us()";

// How long try_acquire(db, ...) waits for a row or write lock before answering "not acquired".
constexpr std::chrono::milliseconds try_lock_wait{100};

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

void check_grant(const grant& g) {
  check_name(g.name);
  check_owner(g.owner);
}

using steady = std::chrono::steady_clock;

// One acquisition decision in its own transaction, every wait in it bounded by `deadline`:
// nullopt when the lease is held, or when its row (SQLite: the write lock) stayed locked until the
// deadline (errc::busy = not acquired this round). Other retryable errors are retried until the
// deadline and then rethrown; the rest propagate at once.
std::optional<grant> decide(database& db, std::string_view name, std::string_view owner, std::chrono::milliseconds ttl,
                            steady::time_point deadline) {
  for (int attempt = 1;; ++attempt) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
    write_options o;
    o.lock_timeout = std::max(left, std::chrono::milliseconds(1));
    o.retry = retry_policy::none(); // retried here, against the caller's deadline
    o.reconnect_budget = std::max(left, std::chrono::milliseconds(0));
    try {
      return db.write([&](transaction& tx) { return try_acquire(tx, name, owner, ttl); }, o);
    } catch (const error& e) {
      if (e.code() == errc::busy) return std::nullopt;
      if (!e.retryable() || steady::now() >= deadline) throw;
      std::this_thread::sleep_for(std::min<steady::duration>(backoff_delay(retry_policy{}, attempt + 1), deadline - steady::now()));
    }
  }
}

} // namespace

std::optional<grant> try_acquire(transaction& tx, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl) {
  check_name(name);
  check_owner(owner);
  const auto us = ttl_us(ttl);
  if (!tx.writable()) raise(errc::invalid_argument, "lease::try_acquire needs a write transaction");
  const bool pg = tx.dialect() == dialect::postgresql;
  if (!tx.exec(pg ? lock_expired_pg : lock_expired_sqlite, name).empty()) {
    detail::step("lease.acquire.locked"); // an expired row is ours to take over; nothing else can
    auto r = tx.exec(take_over_sql, name, owner, us);
    if (r.empty()) return std::nullopt;
    return grant{std::string(name), std::string(owner), r[0].get<std::int64_t>(0), r[0].get<micros>(1)};
  }
  auto r = tx.exec(insert_sql, name, owner, us);
  if (r.empty()) return std::nullopt;
  return grant{std::string(name), std::string(owner), r[0].get<std::int64_t>(0), r[0].get<micros>(1)};
}

std::optional<grant> try_acquire(database& db, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl) {
  check_name(name);
  check_owner(owner);
  ttl_us(ttl);
  return decide(db, name, owner, ttl, steady::now() + try_lock_wait);
}

grant acquire(database& db, std::string_view name, std::string_view owner, std::chrono::milliseconds ttl,
              std::chrono::milliseconds timeout) {
  check_name(name);
  check_owner(owner);
  ttl_us(ttl);
  if (timeout.count() < 0) raise(errc::invalid_argument, "lease acquire timeout must not be negative");
  thread_local std::minstd_rand rng{std::random_device{}()};
  const auto deadline = steady::now() + timeout;
  std::chrono::microseconds ceiling{1000};
  for (;;) {
    if (auto g = decide(db, name, owner, ttl, deadline)) return *g;
    const auto now = steady::now();
    if (now >= deadline) raise(errc::timeout, "lease '" + std::string(name) + "' is held by another owner");
    // Full jitter keeps many waiters from polling in lock step; the cap keeps hand-over latency low.
    std::uniform_int_distribution<std::int64_t> pick(ceiling.count() / 4, ceiling.count());
    auto nap = std::chrono::microseconds(pick(rng));
    nap = std::min<std::chrono::microseconds>(nap, std::chrono::duration_cast<std::chrono::microseconds>(deadline - now));
    std::this_thread::sleep_for(nap);
    ceiling = std::min<std::chrono::microseconds>(ceiling * 2, std::chrono::microseconds(50000));
  }
}

grant renew(transaction& tx, const grant& held, std::chrono::milliseconds ttl) {
  check_grant(held);
  const auto us = ttl_us(ttl);
  if (!tx.writable()) raise(errc::invalid_argument, "lease::renew needs a write transaction");
  auto r = tx.query_optional<micros>(renew_sql, us, held.name, held.owner, held.token);
  // Raised inside the unit of work, which counts it as a conflict (the one place).
  if (!r) throw lease_lost("lease '" + held.name + "' token " + std::to_string(held.token) + " is no longer held");
  grant g = held;
  g.expires_at = *r;
  return g;
}

grant renew(database& db, const grant& held, std::chrono::milliseconds ttl) {
  check_grant(held);
  ttl_us(ttl);
  return db.write([&](transaction& tx) { return renew(tx, held, ttl); });
}

bool release(transaction& tx, const grant& held) {
  check_grant(held);
  if (!tx.writable()) raise(errc::invalid_argument, "lease::release needs a write transaction");
  // The row stays (expired) so the token keeps counting up for the next holder.
  return tx.exec(release_sql, held.name, held.owner, held.token).affected() > 0;
}

bool release(database& db, const grant& held) {
  check_grant(held);
  return db.write([&](transaction& tx) { return release(tx, held); });
}

info force_release(database& db, std::string_view name) {
  check_name(name);
  return db.write([&](transaction& tx) {
    // Lock the row first so the reported holder is the one whose lease this call ended. FOR NO KEY
    // UPDATE, not FOR UPDATE: it must not wait for the holder's open guarded transactions (those keep
    // FOR KEY SHARE); the next takeover still waits for them, so the fence holds.
    auto r = tx.exec(tx.dialect() == dialect::postgresql
                         ? "SELECT name, owner, token, expires_at, acquired_at, casecore_now_us() FROM casecore_leases "
                           "WHERE name = $1 FOR NO KEY UPDATE"
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
  // A fence guards a write; in a read transaction PostgreSQL refuses FOR KEY SHARE with 25006, which
  // reads as a standby (connection_lost, the connection dropped) instead of the caller's mistake.
  if (!tx.writable()) raise(errc::invalid_argument, "lease::check needs a write transaction (it fences a write)");
  const auto ok = tx.query_optional<std::int64_t>(tx.dialect() == dialect::postgresql ? check_pg : check_sqlite, name, token);
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
  check_text(prefix, "prefix", true);
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
