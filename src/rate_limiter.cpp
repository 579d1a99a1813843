#include <casecore/detail/text.hpp>
#include <casecore/migration.hpp>
#include <casecore/rate_limiter.hpp>

#include <algorithm>
#include <random>
#include <thread>

namespace casecore {

namespace detail {
std::vector<migration> rate_migrations() {
  return {
      {"casecore.rate", 1, "rate limits (sliding-window logs)",
       // One row per key (its lock serialises acquisitions of the key) and up to N slot rows, the
       // ring of the last N acquisition times; slots are written lazily (a missing slot is free).
       "CREATE TABLE casecore_rate_limits("
       " rate_key TEXT PRIMARY KEY, slots BIGINT NOT NULL, next_slot BIGINT NOT NULL,"
       " last_at BIGINT NOT NULL, period_us BIGINT NOT NULL);"
       "CREATE TABLE casecore_rate_slots("
       " rate_key TEXT NOT NULL, slot BIGINT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY(rate_key, slot))",
       "", ""},
  };
}
} // namespace detail

namespace rate_limiter {

namespace {

constexpr std::size_t max_key = 500;
constexpr std::int64_t max_count = 100000;

void check_key(std::string_view key) { detail::check_printable(key, "rate limit key", max_key); }

std::int64_t period_us(const limit& l) {
  if (l.count < 1 || l.count > max_count)
    raise(errc::invalid_argument, "rate limit count must be 1.." + std::to_string(max_count));
  if (l.period.count() <= 0) raise(errc::invalid_argument, "rate limit period must be positive");
  if (l.period > std::chrono::hours(24 * 366)) raise(errc::invalid_argument, "rate limit period longer than 366 days");
  return l.period.count() * 1000;
}

struct header {
  std::int64_t slots = 0;
  std::int64_t next = 0;
  micros last_at = 0;
};

// The key's row, locked until the transaction ends (PostgreSQL FOR UPDATE; SQLite's single writer).
// Under REPEATABLE READ / SERIALIZABLE the lock raises a serialization failure when another
// acquisition updated the row after this transaction's snapshot: the unit of work retries, so no
// decision is made from a stale log.
std::optional<header> lock_key(transaction& tx, std::string_view key) {
  const auto r = tx.exec("SELECT slots, next_slot, last_at FROM casecore_rate_limits WHERE rate_key = $1" +
                             std::string(tx.sql().for_update),
                         key);
  if (r.empty()) return std::nullopt;
  return header{r[0].get<std::int64_t>(0), r[0].get<std::int64_t>(1), r[0].get<micros>(2)};
}

header lock_or_create(transaction& tx, std::string_view key, std::int64_t n, std::int64_t p) {
  for (int round = 0;; ++round) {
    if (auto h = lock_key(tx, key)) return *h;
    // A concurrent first acquisition may insert it first: DO NOTHING, then lock the row it made.
    tx.exec("INSERT INTO casecore_rate_limits(rate_key, slots, next_slot, last_at, period_us) VALUES($1, $2, 0, 0, $3) "
            "ON CONFLICT(rate_key) DO NOTHING",
            key, n, p);
    if (round >= 2) raise(errc::busy, "rate limit key '" + std::string(key) + "' keeps vanishing (forget() racing)");
  }
}

// A call with another N: keep the newest min(old, new) times, renumbered oldest first from slot 0,
// so the ring continues as if it had always had the new size. Rare (a deployment changing the
// limit), linear in the old N.
void relay(transaction& tx, std::string_view key, header& h, std::int64_t n) {
  std::vector<micros> times;
  for (auto row : tx.exec("SELECT at FROM casecore_rate_slots WHERE rate_key = $1 ORDER BY at, slot", key))
    times.push_back(row.get<micros>(0));
  if (static_cast<std::int64_t>(times.size()) > n) times.erase(times.begin(), times.end() - n);
  tx.exec("DELETE FROM casecore_rate_slots WHERE rate_key = $1", key);
  constexpr std::size_t chunk = 200;
  std::vector<value> params;
  for (std::size_t start = 0; start < times.size(); start += chunk) {
    const auto m = std::min(chunk, times.size() - start);
    std::string sql = "INSERT INTO casecore_rate_slots(rate_key, slot, at) VALUES";
    params.assign(1, value(std::string(key)));
    for (std::size_t k = 0; k < m; ++k) {
      sql += (k ? ", ($1, $" : " ($1, $") + std::to_string(2 + 2 * k) + ", $" + std::to_string(3 + 2 * k) + ")";
      params.emplace_back(static_cast<std::int64_t>(start + k));
      params.emplace_back(times[start + k]);
    }
    tx.exec_values(sql, params);
  }
  h.slots = n;
  h.next = static_cast<std::int64_t>(times.size()) % n;
  tx.exec("UPDATE casecore_rate_limits SET slots = $2, next_slot = $3 WHERE rate_key = $1", key, n, h.next);
}

using steady = std::chrono::steady_clock;

} // namespace

acquisition try_acquire(transaction& tx, std::string_view key, const limit& l) {
  check_key(key);
  const auto p = period_us(l);
  if (!tx.writable()) raise(errc::invalid_argument, "rate_limiter::try_acquire needs a write transaction");
  auto h = lock_or_create(tx, key, l.count, p);
  if (h.slots != l.count) relay(tx, key, h, l.count);
  // Read after the lock: every earlier acquisition of the key committed before this read. Never
  // before the previous acquisition, so the log stays ordered even if the clock steps back.
  const micros now = std::max(tx.now_us(), h.last_at);
  const auto oldest =
      tx.query_optional<micros>("SELECT at FROM casecore_rate_slots WHERE rate_key = $1 AND slot = $2", key, h.next);
  acquisition a;
  a.at = now;
  if (oldest && *oldest > now - p) {
    a.retry_after = std::chrono::microseconds(std::max<micros>(*oldest + p - now, 1));
    return a;
  }
  tx.exec("INSERT INTO casecore_rate_slots(rate_key, slot, at) VALUES($1, $2, $3) "
          "ON CONFLICT(rate_key, slot) DO UPDATE SET at = excluded.at",
          key, h.next, now);
  tx.exec("UPDATE casecore_rate_limits SET next_slot = $2, last_at = $3, period_us = $4 WHERE rate_key = $1", key,
          (h.next + 1) % h.slots, now, p);
  a.acquired = true;
  return a;
}

acquisition try_acquire(database& db, std::string_view key, const limit& l) {
  check_key(key);
  period_us(l);
  return db.write([&](transaction& tx) { return try_acquire(tx, key, l); });
}

acquisition acquire(database& db, std::string_view key, const limit& l, std::chrono::milliseconds timeout) {
  check_key(key);
  period_us(l);
  if (timeout.count() < 0) raise(errc::invalid_argument, "rate limit acquire timeout must not be negative");
  thread_local std::minstd_rand rng{std::random_device{}()};
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const auto a = try_acquire(db, key, l);
    if (a.acquired) return a;
    const auto left = deadline - steady::now();
    if (a.retry_after > left)
      raise(errc::timeout, "rate limit '" + std::string(key) + "': no token free before the deadline");
    // Waiters of one key all learn the same free time: a little jitter keeps them from arriving at once.
    std::uniform_int_distribution<std::int64_t> pick(0, std::min<std::int64_t>(a.retry_after.count() / 8, 5000));
    const auto nap = a.retry_after + std::chrono::microseconds(pick(rng));
    std::this_thread::sleep_for(std::min<steady::duration>(nap, deadline - steady::now()));
  }
}

std::optional<info> inspect(database& db, std::string_view key) {
  check_key(key);
  return db.read([&](transaction& tx) -> std::optional<info> {
    const auto r = tx.exec("SELECT slots, period_us, casecore_now_us() FROM casecore_rate_limits WHERE rate_key = $1", key);
    if (r.empty()) return std::nullopt;
    info i;
    i.key = std::string(key);
    i.count = r[0].get<std::int64_t>(0);
    i.period_us = r[0].get<micros>(1);
    i.now = r[0].get<micros>(2);
    for (auto row : tx.exec("SELECT at FROM casecore_rate_slots WHERE rate_key = $1 ORDER BY at, slot", key))
      i.log.push_back(row.get<micros>(0));
    return i;
  });
}

bool forget(database& db, std::string_view key) {
  check_key(key);
  return db.write([&](transaction& tx) {
    if (!lock_key(tx, key)) return false;
    tx.exec("DELETE FROM casecore_rate_slots WHERE rate_key = $1", key);
    tx.exec("DELETE FROM casecore_rate_limits WHERE rate_key = $1", key);
    return true;
  });
}

} // namespace rate_limiter
} // namespace casecore
