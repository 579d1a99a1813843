// Cross-process single-flight claims and the kit's schema (flight claims, shared trigger nonces).
#include <casecore/detail/token.hpp>
#include <casecore/migration.hpp>
#include <casecore/single_flight.hpp>

#include <condition_variable>

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
      // A component of its own so that the kit's numbering stays free for the trigger nonces.
      {"casecore.flights", 1, "claim generations and failures",
       "ALTER TABLE casecore_flights ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;"
       "ALTER TABLE casecore_flights ADD COLUMN failed_generation BIGINT NOT NULL DEFAULT 0;"
       "ALTER TABLE casecore_flights ADD COLUMN failure TEXT;",
       "", ""},
  };
}

namespace {
constexpr std::size_t max_failure = 1000;

// The failure text travels to other processes in an exception message: printable ASCII only (a
// PostgreSQL TEXT column refuses invalid UTF-8, a terminal must not get control characters), capped.
std::string failure_text(std::string_view message) {
  std::string out;
  for (char c : message.substr(0, max_failure)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}
} // namespace

void check_flight(std::string_view key, const db_flight_options& options) {
  if (key.empty() || key.size() > 500) raise(errc::invalid_argument, "single-flight key must be 1..500 characters");
  if (options.claim_ttl.count() <= 0) raise(errc::invalid_argument, "single-flight claim_ttl must be positive");
  if (options.claim_ttl > std::chrono::hours(24)) raise(errc::invalid_argument, "single-flight claim_ttl longer than a day");
  if (options.max_wait.count() < 0) raise(errc::invalid_argument, "single-flight max_wait must not be negative");
  if (options.poll_min.count() <= 0 || options.poll_max < options.poll_min)
    raise(errc::invalid_argument, "single-flight poll_min must be positive and not above poll_max");
}

std::optional<flight_claim> flight_try_claim(database& db, std::string_view key, std::string_view owner,
                                             std::chrono::milliseconds ttl) {
  const std::int64_t ttl_us = ttl.count() * 1000;
  // Insert a claim, or take over one that expired (its holder crashed, stopped, or ended it); a live
  // claim makes the WHERE false, so nothing is returned. The generation counts the claims of the row.
  auto generation = db.write([&](transaction& tx) {
    return tx.query_optional<std::int64_t>(
        "INSERT INTO casecore_flights(flight_key, owner, expires_at, generation) VALUES($1, $2, casecore_now_us() + $3, 1) "
        "ON CONFLICT(flight_key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
        "generation = casecore_flights.generation + 1 WHERE casecore_flights.expires_at < casecore_now_us() "
        "RETURNING generation",
        key, owner, ttl_us);
  });
  if (!generation) return std::nullopt;
  return flight_claim{std::string(key), std::string(owner), *generation};
}

flight_state flight_read(database& db, std::string_view key) {
  return db.read([&](transaction& tx) {
    flight_state st;
    auto r = tx.exec("SELECT owner, generation, failed_generation, failure, expires_at >= casecore_now_us() "
                     "FROM casecore_flights WHERE flight_key = $1",
                     key);
    if (r.empty()) return st;
    st.exists = true;
    st.owner = r[0].get<std::string>(0);
    st.generation = r[0].get<std::int64_t>(1);
    st.failed_generation = r[0].get<std::int64_t>(2);
    st.failure = r[0].get<std::optional<std::string>>(3).value_or("");
    st.live = r[0].get<bool>(4);
    return st;
  });
}

void flight_finish(transaction& tx, const flight_claim& claim) {
  // Deleting the row takes its lock (PostgreSQL) or runs under the write lock (SQLite): from here to
  // the commit nobody can take the claim over, and the result commits together with the claim's end.
  const bool held = !tx.exec("DELETE FROM casecore_flights WHERE flight_key = $1 AND owner = $2 AND generation = $3 "
                             "AND expires_at >= casecore_now_us() RETURNING generation",
                             claim.key, claim.owner, claim.generation)
                         .empty();
  if (!held)
    throw lease_lost("single-flight '" + claim.key + "': the claim (generation " + std::to_string(claim.generation) +
                     ") was lost before the result was stored; it was not stored");
}

void flight_fail(database& db, const flight_claim& claim, std::string_view message) noexcept {
  try {
    db.write([&](transaction& tx) {
      tx.exec("UPDATE casecore_flights SET expires_at = 0, failed_generation = generation, failure = $4 "
              "WHERE flight_key = $1 AND owner = $2 AND generation = $3",
              claim.key, claim.owner, claim.generation, failure_text(message));
    });
  } catch (...) {
    // The claim then expires on its own; waiting processes take over instead of getting the failure.
  }
}

void flight_release(database& db, const flight_claim& claim) noexcept {
  try {
    db.write([&](transaction& tx) {
      tx.exec("UPDATE casecore_flights SET expires_at = 0 WHERE flight_key = $1 AND owner = $2 AND generation = $3",
              claim.key, claim.owner, claim.generation);
    });
  } catch (...) {
    // The claim expires on its own; waiting processes then proceed.
  }
}

std::string flight_owner() { return random_token(); }

struct flight_renewer::state {
  state(database d, flight_claim c, std::chrono::milliseconds t) : db(std::move(d)), claim(std::move(c)), ttl(t) {}
  database db;
  flight_claim claim;
  std::chrono::milliseconds ttl;
  std::mutex m;
  std::condition_variable cv;
  bool stopping = false;
  std::thread thread;

  void run() {
    const auto every = std::max(std::chrono::milliseconds(1), ttl / 3);
    std::unique_lock lock(m);
    while (!cv.wait_for(lock, every, [&] { return stopping; })) {
      lock.unlock();
      bool held = false;
      try {
        held = db.write([&](transaction& tx) {
          return tx.exec("UPDATE casecore_flights SET expires_at = casecore_now_us() + $4 WHERE flight_key = $1 "
                         "AND owner = $2 AND generation = $3 AND expires_at >= casecore_now_us()",
                         claim.key, claim.owner, claim.generation, ttl.count() * 1000)
                     .affected() > 0;
        });
      } catch (...) {
        held = true; // a failed renewal is tried again at the next tick; the claim may still be live
      }
      lock.lock();
      if (!held) return; // lost (expired or taken over): the store will be refused, stop renewing
    }
  }
};

flight_renewer::flight_renewer(database db, flight_claim claim, std::chrono::milliseconds ttl)
    : state_(std::make_unique<state>(std::move(db), std::move(claim), ttl)) {
  state_->thread = std::thread([s = state_.get()] { s->run(); });
}

flight_renewer::~flight_renewer() {
  {
    std::lock_guard g(state_->m);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

} // namespace detail
} // namespace casecore
