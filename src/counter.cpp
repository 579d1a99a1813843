#include <casecore/counter.hpp>
#include <casecore/detail/repository_identifier.hpp>
#include <casecore/migration.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace casecore {

namespace detail {
std::vector<migration> counter_migrations() {
  return {
      {"casecore.counters", 1, "counters",
       "CREATE TABLE casecore_counters(name TEXT NOT NULL, scope TEXT NOT NULL DEFAULT '',"
       " value BIGINT NOT NULL, PRIMARY KEY(name, scope))",
       "", ""},
  };
}
} // namespace detail

namespace counter {

namespace {

// One statement serves next() and reserve(): a constant SQL text keeps the prepared statement cached.
// The WHERE guard keeps value + n inside BIGINT in the statement itself: PostgreSQL would raise an
// untyped out-of-range error and SQLite silently turns the sum into a floating-point number. When the
// guard is false the upsert writes nothing and returns no row. It never overflows itself: the
// subtrahend is 1..2^40 (checked before the statement).
constexpr std::string_view add_sql =
    "INSERT INTO casecore_counters(name, scope, value) VALUES($1, $2, $3) "
    "ON CONFLICT(name, scope) DO UPDATE SET value = casecore_counters.value + excluded.value "
    "WHERE casecore_counters.value <= 9223372036854775807 - excluded.value RETURNING value";

constexpr std::int64_t max_reserve = std::int64_t{1} << 40;

void check_text(std::string_view s, std::string_view what, bool allow_empty) {
  if ((!allow_empty && s.empty()) || s.size() > max_key_length)
    raise(errc::invalid_argument, "counter " + std::string(what) + " must be " + (allow_empty ? "0" : "1") + "..128 characters");
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) raise(errc::invalid_argument, "counter " + std::string(what) + " contains a control character");
}

[[noreturn]] void raise_exhausted(std::string_view name, std::string_view scope, std::int64_t n) {
  raise(errc::invalid_argument, "counter '" + std::string(name) + "'" + (scope.empty() ? "" : " scope '" + std::string(scope) + "'") +
                                    " cannot hand out " + std::to_string(n) +
                                    " more number(s) without passing 9223372036854775807; nothing written");
}

// The counter's new value, or nullopt when adding `n` would pass INT64_MAX (nothing written then).
std::optional<std::int64_t> try_add(transaction& tx, std::string_view name, std::string_view scope, std::int64_t n) {
  if (!tx.writable()) raise(errc::invalid_argument, "counters need a write transaction");
  return tx.query_optional<std::int64_t>(add_sql, name, scope, n);
}

std::int64_t add(transaction& tx, std::string_view name, std::string_view scope, std::int64_t n) {
  if (auto v = try_add(tx, name, scope, n)) return *v;
  raise_exhausted(name, scope, n);
}

// MAX(column) of a legacy table as a seed: integers as they are, floating-point and text only when
// they hold an integer in [0, INT64_MAX] (a bare cast of an out-of-range double is undefined behaviour).
std::int64_t legacy_seed(const value& v) {
  if (std::holds_alternative<null_t>(v)) return 0;
  if (auto i = std::get_if<std::int64_t>(&v)) return *i;
  auto from_double = [](double d) -> std::optional<std::int64_t> {
    if (!std::isfinite(d) || d != std::floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return std::nullopt;
    return static_cast<std::int64_t>(d);
  };
  std::optional<std::int64_t> out;
  if (auto d = std::get_if<double>(&v)) out = from_double(*d);
  if (auto s = std::get_if<std::string>(&v)) {
    std::int64_t i = 0;
    if (auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), i); ec == std::errc{} && p == s->data() + s->size()) {
      out = i;
    } else {
      double d = 0;
      if (auto [q, ec2] = std::from_chars(s->data(), s->data() + s->size(), d); ec2 == std::errc{} && q == s->data() + s->size())
        out = from_double(d);
    }
  }
  if (!out) raise(errc::invalid_argument, "counter seed: the legacy maximum is not an integer in 0..9223372036854775807");
  return *out;
}

// --- the standalone combiner -------------------------------------------------------------------
// Callers of one (database, name, scope) share a combiner. Whoever finds the in-memory block empty
// and no leader becomes the leader: it takes every queued request, reserves that many numbers plus
// a prefetch in ONE transaction (one commit, one fsync), hands them out and keeps the rest in memory
// for the next callers, who then need no transaction at all. The prefetch adapts: it doubles while
// refills come back to back (high demand) and halves when they are far apart, so an idle counter
// hoards at most a few numbers. Numbers are unique across threads, processes and hosts; numbers
// still in a block when the process exits are never used (gaps). A failed transaction fails its
// whole batch and leaves the block empty.
struct request {
  std::int64_t number = 0;
  std::exception_ptr failure;
  bool done = false;
};

struct combiner {
  std::mutex m;
  std::condition_variable cv;
  std::deque<request*> queue;
  bool leading = false;
  // The in-memory block: `left` numbers starting at `next`. A count, not an end bound, because the
  // last block of a counter ends at INT64_MAX and one past it is not representable.
  std::int64_t next = 0, left = 0;

  std::int64_t take() noexcept {
    const auto n = next;
    if (--left > 0) ++next;
    return n;
  }
  std::int64_t prefetch = 0;       // extra numbers to reserve at the next refill
  std::chrono::steady_clock::time_point last_refill{};
};

constexpr std::size_t max_batch = 1024;
constexpr std::int64_t max_prefetch = 1024;
constexpr auto busy_window = std::chrono::milliseconds(20);

// The combiners of one database live in that database's shared state (detail::feature_state), not in
// a process-wide map keyed by the handle's address: an address is recycled by the next database
// opened after a close, and its callers were then served the old database's prefetched numbers.
struct combiners {
  std::mutex m;
  // Key: name + '\n' + scope (neither may contain a control character), looked up without allocating.
  std::map<std::string, std::shared_ptr<combiner>, std::less<>> by_counter;
};
constexpr char combiners_key = 0; // its address names the slot

std::shared_ptr<combiner> combiner_for(const database& db, std::string_view name, std::string_view scope) {
  auto all = std::static_pointer_cast<combiners>(
      detail::feature_state(db, &combiners_key, [] { return std::static_pointer_cast<void>(std::make_shared<combiners>()); }));
  thread_local std::string key;
  key.assign(name).append(1, '\n').append(scope);
  std::lock_guard g(all->m);
  auto it = all->by_counter.find(std::string_view(key));
  if (it == all->by_counter.end()) it = all->by_counter.emplace(key, std::make_shared<combiner>()).first;
  return it->second;
}

void adapt_prefetch(combiner& c) {
  const auto now = std::chrono::steady_clock::now();
  if (now - c.last_refill < busy_window) c.prefetch = std::min(max_prefetch, std::max<std::int64_t>(1, c.prefetch * 2));
  else c.prefetch /= 2;
  c.last_refill = now;
}

void lead(database& db, combiner& c, std::unique_lock<std::mutex>& lock, std::string_view name, std::string_view scope) {
  std::vector<request*> batch;
  while (!c.queue.empty() && batch.size() < max_batch) {
    batch.push_back(c.queue.front());
    c.queue.pop_front();
  }
  adapt_prefetch(c);
  auto want = static_cast<std::int64_t>(batch.size()) + c.prefetch;
  c.leading = true;
  lock.unlock();
  std::int64_t first = 0;
  std::exception_ptr failure;
  try {
    auto top = db.write([&](transaction& tx) { return try_add(tx, name, scope, want); });
    if (!top && want > static_cast<std::int64_t>(batch.size())) {
      // Near INT64_MAX the prefetch may not fit where the batch still does: hand out the last numbers.
      want = static_cast<std::int64_t>(batch.size());
      top = db.write([&](transaction& tx) { return try_add(tx, name, scope, want); });
    }
    if (!top) raise_exhausted(name, scope, want);
    first = *top - want + 1;
  } catch (...) {
    failure = std::current_exception();
  }
  lock.lock();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    batch[i]->number = first + static_cast<std::int64_t>(i);
    batch[i]->failure = failure;
    batch[i]->done = true;
  }
  if (!failure) {
    c.left = want - static_cast<std::int64_t>(batch.size());
    if (c.left > 0) c.next = first + static_cast<std::int64_t>(batch.size());
    // Serve whoever queued while the transaction ran straight from the new block.
    while (!c.queue.empty() && c.left > 0) {
      c.queue.front()->number = c.take();
      c.queue.front()->done = true;
      c.queue.pop_front();
    }
  }
  c.leading = false;
  c.cv.notify_all();
}

} // namespace

void check_name(std::string_view name) { check_text(name, "name", false); }
void check_scope(std::string_view scope) { check_text(scope, "scope", true); }

std::int64_t next(transaction& tx, std::string_view name, std::string_view scope) {
  check_name(name);
  check_scope(scope);
  return add(tx, name, scope, 1);
}

std::int64_t reserve(transaction& tx, std::string_view name, std::string_view scope, std::int64_t n) {
  check_name(name);
  check_scope(scope);
  if (n <= 0 || n > max_reserve) raise(errc::invalid_argument, "counter reserve needs 1 <= n <= 2^40");
  return add(tx, name, scope, n) - n + 1;
}

std::int64_t current(transaction& tx, std::string_view name, std::string_view scope) {
  check_name(name);
  check_scope(scope);
  return tx.query_optional<std::int64_t>("SELECT value FROM casecore_counters WHERE name = $1 AND scope = $2", name, scope)
      .value_or(0);
}

std::vector<entry> list(transaction& tx, std::string_view name) {
  if (!name.empty()) check_name(name);
  std::vector<entry> out;
  for (auto r : tx.exec("SELECT name, scope, value FROM casecore_counters WHERE $1 = '' OR name = $1 ORDER BY name, scope",
                        name))
    out.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<std::int64_t>(2)});
  return out;
}

std::int64_t seed_from_max(transaction& tx, std::string_view name, std::string_view scope, std::int64_t value) {
  check_name(name);
  check_scope(scope);
  if (value < 0) raise(errc::invalid_argument, "counter seed must be >= 0");
  if (!tx.writable()) raise(errc::invalid_argument, "counters need a write transaction");
  return tx.query_one<std::int64_t>(
      "INSERT INTO casecore_counters(name, scope, value) VALUES($1, $2, $3) ON CONFLICT(name, scope) DO UPDATE SET "
      "value = CASE WHEN excluded.value > casecore_counters.value THEN excluded.value ELSE casecore_counters.value END "
      "RETURNING value",
      name, scope, value);
}

std::int64_t seed_from_table(transaction& tx, std::string_view name, std::string_view scope, std::string_view table,
                             std::string_view column) {
  check_name(name);
  check_scope(scope);
  detail::check_identifier(table, "legacy table");
  detail::check_identifier(column, "legacy column");
  const auto top = tx.query_one<value>("SELECT MAX(" + std::string(column) + ") FROM " + std::string(table));
  return seed_from_max(tx, name, scope, legacy_seed(top));
}

std::int64_t next(database& db, std::string_view name, std::string_view scope) {
  check_name(name);
  check_scope(scope);
  auto c = combiner_for(db, name, scope);
  std::unique_lock lock(c->m);
  if (c->left > 0) return c->take(); // served from the block: no transaction
  request mine;
  c->queue.push_back(&mine);
  while (!mine.done) {
    if (!c->leading) {
      lead(db, *c, lock, name, scope);
      continue;
    }
    c->cv.wait(lock, [&] { return mine.done || !c->leading; });
  }
  if (mine.failure) std::rethrow_exception(mine.failure);
  return mine.number;
}

std::string format_number(std::string_view pattern, std::string_view scope, std::int64_t n, std::string_view name) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '}') {
      if (i + 1 < pattern.size() && pattern[i + 1] == '}') { out += '}'; ++i; continue; }
      raise(errc::invalid_argument, "format_number: unmatched '}' in pattern");
    }
    if (c != '{') { out += c; continue; }
    if (i + 1 < pattern.size() && pattern[i + 1] == '{') { out += '{'; ++i; continue; }
    const auto close = pattern.find('}', i);
    if (close == std::string_view::npos) raise(errc::invalid_argument, "format_number: unterminated placeholder");
    const auto ph = pattern.substr(i + 1, close - i - 1);
    i = close;
    if (ph == "scope") { out += scope; continue; }
    if (ph == "name") { out += name; continue; }
    if (ph == "n") { out += std::to_string(n); continue; }
    if (ph.size() >= 4 && ph.substr(0, 3) == "n:0" && ph.size() <= 5) {
      int width = 0;
      for (char d : ph.substr(3)) {
        if (d < '0' || d > '9') raise(errc::invalid_argument, "format_number: bad width in {" + std::string(ph) + "}");
        width = width * 10 + (d - '0');
      }
      if (width < 1 || width > 20) raise(errc::invalid_argument, "format_number: width must be 1..20");
      // The magnitude in unsigned arithmetic: -n overflows for the smallest int64.
      std::string digits = std::to_string(n < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(n) : static_cast<std::uint64_t>(n));
      if (digits.size() < static_cast<std::size_t>(width)) digits.insert(0, static_cast<std::size_t>(width) - digits.size(), '0');
      if (n < 0) out += '-';
      out += digits;
      continue;
    }
    raise(errc::invalid_argument, "format_number: unknown placeholder {" + std::string(ph.substr(0, 40)) + "}");
  }
  return out;
}

} // namespace counter
} // namespace casecore
