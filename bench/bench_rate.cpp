// bench_rate: rate_limiter::try_acquire (the exact sliding-window log: lock the key's row, read the
// oldest slot, overwrite it, advance the cursor) next to the simplest inexact limiter, a fixed-window
// counter (one upsert per acquisition, which lets 2N through across a window boundary), both through
// casecore's unit of work in their own write transaction, so the ratio is the price of exactness.
//   hot key  = every caller on one key (acquisitions of a key are serial by design);
//   own keys = one key per caller.
// N is large enough that every attempt acquires. 1, 8 and 32 callers on SQLite (file, WAL,
// synchronous=normal) and PostgreSQL (BENCH_PG_URL / CASECORE_TEST_PG_URL).
#include "harness.hpp"

#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/rate_limiter.hpp>

#include <filesystem>

#include <unistd.h>

using namespace casecore;
using namespace std::chrono_literals;

namespace {

const rate_limiter::limit roomy{100000, 1ms}; // never denies: the cost of a granted token

std::string key_of(bool hot, int t) { return hot ? std::string("bench:hot") : "bench:" + std::to_string(t); }

double lib(database& db, int callers, bool hot) {
  return bench::measure(callers, bench::duration(), [&](int t) {
    return rate_limiter::try_acquire(db, key_of(hot, t), roomy).acquired ? 1 : 0;
  });
}

// A fixed window of 1 s: count acquisitions of (key, window) in one statement.
double fixed_window(database& db, int callers, bool hot) {
  return bench::measure(callers, bench::duration(), [&](int t) {
    db.write([&](transaction& tx) {
      tx.exec("INSERT INTO bench_fixed(rate_key, window_start, n) VALUES($1, casecore_now_us() / 1000000, 1) "
              "ON CONFLICT(rate_key, window_start) DO UPDATE SET n = bench_fixed.n + 1",
              key_of(hot, t));
    });
    return 1;
  });
}

void run(const std::string& backend, database db) {
  migrate(db);
  db.write([](transaction& tx) {
    tx.exec("CREATE TABLE IF NOT EXISTS bench_fixed(rate_key TEXT NOT NULL, window_start BIGINT NOT NULL, "
            "n BIGINT NOT NULL, PRIMARY KEY(rate_key, window_start))");
  });
  for (bool hot : {true, false})
    for (int callers : {1, 8, 32})
      bench::row(std::string("rate try_acquire vs fixed window, ") + (hot ? "hot key" : "own keys"), backend, callers,
                 lib(db, callers, hot), fixed_window(db, callers, hot));
}

} // namespace

int main() {
  bench::header();
  database_options o;
  o.pool.size = 33;
  const auto dir = std::filesystem::temp_directory_path() / ("casecore-bench-rate-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  run("sqlite", open("sqlite://" + (dir / "rate.db").string() + "?synchronous=normal", o));
  if (const auto url = bench::pg_url(); !url.empty()) {
    auto db = open(url, o);
    migrate(db);
    db.write([](transaction& tx) {
      tx.exec("DROP TABLE IF EXISTS bench_fixed");
      tx.exec("DELETE FROM casecore_rate_slots WHERE rate_key LIKE 'bench:%'");
      tx.exec("DELETE FROM casecore_rate_limits WHERE rate_key LIKE 'bench:%'");
    });
    run("postgres", db);
  } else {
    std::printf("(PostgreSQL skipped: set BENCH_PG_URL or CASECORE_TEST_PG_URL)\n");
  }
  std::filesystem::remove_all(dir);
}
