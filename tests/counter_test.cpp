// Counters: gapless in-transaction numbers, standalone batched numbers, reserve, seeding, formatting,
// bad input. Threads and processes, on SQLite and PostgreSQL (CASECORE_TEST_BACKEND).
#include <casecore/counter.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {


std::int64_t current(database& db, std::string_view name, std::string_view scope = {}) {
  return db.read([&](transaction& tx) { return counter::current(tx, name, scope); });
}

write_options patient() {
  write_options o;
  o.retry = retry_policy{};
  o.retry->max_attempts = 1000;
  o.retry->budget = std::chrono::seconds(120);
  return o;
}

// Every number handed out by a committed transaction is recorded in `issued` in that transaction.
void make_issued(database& db) {
  db.write([](transaction& tx) { tx.exec_script("CREATE TABLE issued(n BIGINT PRIMARY KEY, who TEXT NOT NULL)"); });
}

// Gapless check from the database: the committed numbers are exactly 1..count.
void check_dense(database& db, std::int64_t count) {
  db.read([&](transaction& tx) {
    CHECK(tx.query_one<std::int64_t>("SELECT COUNT(*) FROM issued") == count);
    CHECK(tx.query_one<std::int64_t>("SELECT COUNT(DISTINCT n) FROM issued") == count);
    CHECK(tx.query_one<std::int64_t>("SELECT COALESCE(MIN(n), 0) FROM issued") == (count ? 1 : 0));
    CHECK(tx.query_one<std::int64_t>("SELECT COALESCE(MAX(n), 0) FROM issued") == count);
  });
}

// One in-transaction allocation; every third one (by the caller's choice) rolls back after allocating.
bool allocate_and_maybe_abort(database& db, const std::string& who, int i) {
  try {
    db.write([&](transaction& tx) {
      const auto n = counter::next(tx, "wo", "2025");
      tx.exec("INSERT INTO issued(n, who) VALUES($1, $2)", n, who);
      if (i % 3 == 2) throw std::runtime_error("abort after allocating");
    }, patient());
    return true;
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "abort after allocating") throw;
    return false;
  }
}

} // namespace

TEST_CASE("counters start at 1, are separate per (name, scope) and survive reopening") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK(current(db, "wo") == 0);
  db.write([](transaction& tx) {
    CHECK(counter::next(tx, "wo") == 1);
    CHECK(counter::next(tx, "wo") == 2);
    CHECK(counter::next(tx, "wo", "2025") == 1);
    CHECK(counter::next(tx, "customer") == 1);
  });
  CHECK(current(db, "wo") == 2);
  CHECK(current(db, "wo", "2025") == 1);
  auto again = s.open();
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "wo"); }) == 3);
}

TEST_CASE("a rolled-back transaction gives its number back") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK_THROWS(db.write([](transaction& tx) {
    CHECK(counter::next(tx, "inv") == 1);
    throw std::runtime_error("rollback");
  }));
  CHECK(current(db, "inv") == 0);
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "inv"); }) == 1);
}

TEST_CASE("reserve hands out a block and current reads the last number") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    CHECK(counter::reserve(tx, "ro", "", 10) == 1);
    CHECK(counter::reserve(tx, "ro", "", 5) == 11);
    CHECK(counter::next(tx, "ro") == 16);
    CHECK(counter::current(tx, "ro") == 16);
  });
}

TEST_CASE("list shows every counter, or every scope of one name, by (name, scope)") {
  scratch_database s;
  auto db = s.open_migrated();
  db.read([](transaction& tx) { CHECK(counter::list(tx).empty()); });
  db.write([](transaction& tx) {
    counter::reserve(tx, "wo", "2025", 7);
    counter::next(tx, "wo", "2024");
    counter::next(tx, "inv");
  });
  db.read([](transaction& tx) {
    const auto all = counter::list(tx);
    REQUIRE(all.size() == 3);
    CHECK((all[0].name == "inv" && all[0].scope.empty() && all[0].value == 1));
    CHECK((all[1].name == "wo" && all[1].scope == "2024" && all[1].value == 1));
    CHECK((all[2].name == "wo" && all[2].scope == "2025" && all[2].value == 7));
    CHECK(counter::list(tx, "wo").size() == 2);
    CHECK(counter::list(tx, "nope").empty());
    CHECK_THROWS_AS(counter::list(tx, std::string(129, 'x')), invalid_argument);
  });
}

TEST_CASE("seeding from a legacy maximum never goes backwards") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE legacy_orders(id INTEGER PRIMARY KEY, number BIGINT)");
    for (int n : {5, 41, 17}) tx.exec("INSERT INTO legacy_orders(id, number) VALUES($1, $2)", n, n);
  });
  db.write([](transaction& tx) {
    CHECK(counter::seed_from_table(tx, "legacy", "", "legacy_orders", "number") == 41);
    CHECK(counter::next(tx, "legacy") == 42);
    CHECK(counter::seed_from_max(tx, "legacy", "", 10) == 42); // lower: ignored
    CHECK(counter::seed_from_max(tx, "legacy", "", 100) == 100);
    CHECK(counter::next(tx, "legacy") == 101);
    CHECK(counter::seed_from_table(tx, "empty_seed", "", "legacy_orders", "id") == 41);
  });
  db.write([](transaction& tx) { tx.exec_script("CREATE TABLE legacy_empty(x BIGINT)"); });
  db.write([](transaction& tx) { CHECK(counter::seed_from_table(tx, "fresh", "", "legacy_empty", "x") == 0); });
  CHECK(current(db, "legacy") == 101);
}

TEST_CASE("format_number renders business numbers and rejects unknown placeholders") {
  CHECK(counter::format_number("WO-{scope}-{n:06}", "2025", 123) == "WO-2025-000123");
  CHECK(counter::format_number("{name}/{n}", "", 7, "inv") == "inv/7");
  CHECK(counter::format_number("{{n}}={n:03}", "", 1234) == "{n}=1234");
  CHECK(counter::format_number("plain", "x", 1) == "plain");
  CHECK_THROWS_AS(counter::format_number("WO-{year}-{n}", "2025", 1), invalid_argument);
  CHECK_THROWS_AS(counter::format_number("{n:6}", "", 1), invalid_argument);
  CHECK_THROWS_AS(counter::format_number("{n:0x}", "", 1), invalid_argument);
  CHECK_THROWS_AS(counter::format_number("{n:00}", "", 1), invalid_argument);
  CHECK_THROWS_AS(counter::format_number("{n", "", 1), invalid_argument);
  CHECK_THROWS_AS(counter::format_number("n}", "", 1), invalid_argument);
}

TEST_CASE("bad input is a typed error and writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  const std::string long_name(129, 'x');
  db.write([&](transaction& tx) {
    CHECK_THROWS_AS(counter::next(tx, ""), invalid_argument);
    CHECK_THROWS_AS(counter::next(tx, long_name), invalid_argument);
    CHECK_THROWS_AS(counter::next(tx, "ok", long_name), invalid_argument);
    CHECK_THROWS_AS(counter::next(tx, std::string("bad\nname")), invalid_argument);
    CHECK_THROWS_AS(counter::reserve(tx, "ok", "", 0), invalid_argument);
    CHECK_THROWS_AS(counter::reserve(tx, "ok", "", -3), invalid_argument);
    CHECK_THROWS_AS(counter::seed_from_max(tx, "ok", "", -1), invalid_argument);
    CHECK_THROWS_AS(counter::seed_from_table(tx, "ok", "", "orders; DROP TABLE x", "id"), invalid_argument);
    CHECK_THROWS_AS(counter::seed_from_table(tx, "ok", "", "orders", "1id"), invalid_argument);
    CHECK(counter::next(tx, std::string(128, 'y')) == 1); // the limit itself is fine
  });
  CHECK_THROWS_AS(counter::next(db, ""), invalid_argument);
  CHECK_THROWS_AS(db.read([](transaction& tx) { return counter::next(tx, "ro_tx"); }), invalid_argument);
  db.read([](transaction& tx) { CHECK(tx.query_one<std::int64_t>("SELECT COUNT(*) FROM casecore_counters") == 1); });
}

TEST_CASE("threads: in-transaction next is unique and gapless even with rollbacks") {
  scratch_database s;
  auto db = s.open_migrated();
  make_issued(db);
  constexpr int threads = 8, per = 30;
  std::atomic<int> committed{0};
  casecore::testing::race(threads, [&](std::size_t t) {
    for (int i = 0; i < per; ++i)
      if (allocate_and_maybe_abort(db, "t" + std::to_string(t), i)) ++committed;
  });
  CHECK(committed == threads * (per - per / 3));
  check_dense(db, committed);
  CHECK(current(db, "wo", "2025") == committed);
}

CASECORE_CHILD(counter_in_tx) {
  auto db = casecore::open(args.at(0));
  const int per = std::stoi(args.at(1));
  int ok = 0;
  for (int i = 0; i < per; ++i) ok += allocate_and_maybe_abort(db, "p" + args.at(2), i) ? 1 : 0;
  std::printf("%d\n", ok);
  return 0;
}

TEST_CASE("processes: in-transaction next is unique and gapless even with rollbacks") {
  scratch_database s;
  auto db = s.open_migrated();
  make_issued(db);
  const auto results = casecore::testing::run_children("counter_in_tx", 4, {s.url(), "30"});
  std::int64_t committed = 0;
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    committed += std::atoll(r.output.c_str());
  }
  CHECK(committed == 4 * 20);
  check_dense(db, committed);
}

TEST_CASE("threads: standalone next gives N x M distinct numbers in fewer transactions") {
  scratch_database s;
  auto db = s.open_migrated();
  constexpr int threads = 16, per = 40;
  std::mutex m;
  std::set<std::int64_t> seen;
  const auto commits_before = db.tx_stats().commits;
  casecore::testing::race(threads, [&](std::size_t) {
    std::vector<std::int64_t> mine;
    for (int i = 0; i < per; ++i) mine.push_back(counter::next(db, "ticket", "q"));
    CHECK(std::is_sorted(mine.begin(), mine.end()));
    std::lock_guard g(m);
    seen.insert(mine.begin(), mine.end());
  });
  CHECK(seen.size() == threads * per);
  // Every number was reserved in the database; the prefetched tail of the last block is a gap.
  CHECK(*seen.begin() >= 1);
  CHECK(*seen.rbegin() <= current(db, "ticket", "q"));
  const auto commits = db.tx_stats().commits - commits_before;
  MESSAGE("standalone next: " << threads * per << " numbers in " << commits << " transactions");
  CHECK(commits < static_cast<std::uint64_t>(threads * per)); // combined: fewer transactions than numbers
}

TEST_CASE("standalone next shares its counter with in-transaction next") {
  scratch_database s;
  auto db = s.open_migrated();
  // Standalone numbers come from blocks reserved on the same row, so the two kinds never collide.
  std::set<std::int64_t> seen;
  auto other = s.open(); // a second handle has its own combiner but the same row
  for (int i = 0; i < 20; ++i) {
    CHECK(seen.insert(counter::next(db, "mixed")).second);
    CHECK(seen.insert(db.write([](transaction& tx) { return counter::next(tx, "mixed"); })).second);
    CHECK(seen.insert(counter::next(other, "mixed")).second);
  }
}

CASECORE_CHILD(counter_standalone) {
  auto db = casecore::open(args.at(0));
  const int per = std::stoi(args.at(1));
  std::mutex m;
  std::ostringstream out;
  casecore::testing::race(4, [&](std::size_t) {
    for (int i = 0; i < per; ++i) {
      const auto n = counter::next(db, "ticket");
      std::lock_guard g(m);
      out << n << '\n';
    }
  });
  std::fputs(out.str().c_str(), stdout);
  return 0;
}

TEST_CASE("processes x threads: standalone next never hands out a number twice") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto results = casecore::testing::run_children("counter_standalone", 3, {s.url(), "25"});
  std::multiset<std::int64_t> all;
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    std::istringstream in(r.output);
    for (std::int64_t n; in >> n;) all.insert(n);
  }
  CHECK(all.size() == 3 * 4 * 25);
  CHECK(std::set<std::int64_t>(all.begin(), all.end()).size() == all.size());
  CHECK(*all.rbegin() <= current(db, "ticket")); // every number handed out was reserved in the database
}

// Issue 10 defect 4: the standalone combiner was keyed by the database object's address. Close a
// handle, open another database whose state lands at the recycled address, and its next() handed
// out the first database's prefetched numbers (duplicates with its own in-transaction numbers).
TEST_CASE("standalone next never hands one database's numbers to another after close and reopen") {
  constexpr int databases = 4, cycles = 30;
  std::vector<std::unique_ptr<scratch_database>> fixtures;
  for (int i = 0; i < databases; ++i) {
    fixtures.push_back(std::make_unique<scratch_database>());
    auto db = fixtures.back()->open();
    migrate(db);
  }
  std::vector<std::set<std::int64_t>> seen(databases);
  int duplicates = 0, foreign = 0;
  for (int c = 0; c < cycles; ++c) {
    for (int i = 0; i < databases; ++i) {
      auto db = fixtures[static_cast<std::size_t>(i)]->open(); // closed again at the end of this iteration
      std::vector<std::int64_t> got;
      // Back-to-back calls make the combiner prefetch, so a block is left in memory at close.
      for (int k = 0; k < 6; ++k) got.push_back(counter::next(db, "ticket"));
      got.push_back(db.write([](transaction& tx) { return counter::next(tx, "ticket"); }));
      const auto top = current(db, "ticket");
      for (auto n : got) {
        if (!seen[static_cast<std::size_t>(i)].insert(n).second) ++duplicates;
        if (n > top) ++foreign; // never reserved in this database
      }
    }
  }
  CHECK(duplicates == 0);
  CHECK(foreign == 0);
}

namespace {
constexpr auto int64_max = std::numeric_limits<std::int64_t>::max();

// The stored value of a counter, read raw: it must stay an integer (SQLite turned an overflowing
// sum into a floating-point number).
void check_stored_exactly(database& db, std::string_view name, std::int64_t expected) {
  db.read([&](transaction& tx) {
    const auto v = tx.query_one<value>("SELECT value FROM casecore_counters WHERE name = $1 AND scope = ''", name);
    REQUIRE(std::holds_alternative<std::int64_t>(v));
    CHECK(std::get<std::int64_t>(v) == expected);
  });
}

template <class F> void check_overflow_refused(database& db, F&& f) {
  try {
    db.write([&](transaction& tx) { f(tx); });
    FAIL("an overflowing counter call succeeded");
  } catch (const error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("9223372036854775807") != std::string::npos);
  }
}
} // namespace

// Issue 16 finding 10: near INT64_MAX the upsert overflowed (SQLite: a REAL value converted back out
// of range, then INT64_MIN again and again; PostgreSQL: an untyped out-of-range error).
TEST_CASE("a counter at INT64_MAX refuses to overflow with a typed error and writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK(db.write([](transaction& tx) { return counter::seed_from_max(tx, "big", "", int64_max - 2); }) == int64_max - 2);
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "big"); }) == int64_max - 1);
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "big"); }) == int64_max);
  check_overflow_refused(db, [](transaction& tx) { counter::next(tx, "big"); });
  check_overflow_refused(db, [](transaction& tx) { counter::reserve(tx, "big", "", 1); });
  check_overflow_refused(db, [](transaction& tx) { counter::reserve(tx, "big", "", std::int64_t{1} << 40); });
  CHECK_THROWS_AS(counter::next(db, "big"), invalid_argument); // standalone: the same refusal
  check_stored_exactly(db, "big", int64_max);

  // reserve: exactly up to the limit is fine, one more is refused and leaves the counter alone.
  db.write([](transaction& tx) { counter::seed_from_max(tx, "blk", "", int64_max - 10); });
  check_overflow_refused(db, [](transaction& tx) { counter::reserve(tx, "blk", "", 11); });
  check_stored_exactly(db, "blk", int64_max - 10);
  CHECK(db.write([](transaction& tx) { return counter::reserve(tx, "blk", "", 10); }) == int64_max - 9);
  check_stored_exactly(db, "blk", int64_max);

  // seed_from_max: the limit itself is a valid seed (the counter is then exhausted, not corrupted).
  CHECK(db.write([](transaction& tx) { return counter::seed_from_max(tx, "seeded", "", int64_max); }) == int64_max);
  check_overflow_refused(db, [](transaction& tx) { counter::next(tx, "seeded"); });
  CHECK(db.write([](transaction& tx) { return counter::seed_from_max(tx, "seeded", "", 5); }) == int64_max);
  check_stored_exactly(db, "seeded", int64_max);

  // Standalone next with a prefetch near the limit still hands out the last numbers, then refuses.
  db.write([](transaction& tx) { counter::seed_from_max(tx, "tail", "", int64_max - 3); });
  std::set<std::int64_t> tail;
  for (int i = 0; i < 3; ++i) CHECK(tail.insert(counter::next(db, "tail")).second);
  CHECK(*tail.rbegin() == int64_max);
  CHECK_THROWS_AS(counter::next(db, "tail"), invalid_argument);
  check_stored_exactly(db, "tail", int64_max);
}

TEST_CASE("seed_from_table refuses a legacy maximum that is not a 64-bit integer") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE legacy_big(x DOUBLE PRECISION); CREATE TABLE legacy_max(x BIGINT)");
    tx.exec("INSERT INTO legacy_big(x) VALUES($1)", 1e19); // beyond INT64_MAX
    tx.exec("INSERT INTO legacy_max(x) VALUES($1)", int64_max);
  });
  CHECK_THROWS_AS(db.write([](transaction& tx) { counter::seed_from_table(tx, "l", "", "legacy_big", "x"); }), invalid_argument);
  db.read([](transaction& tx) { CHECK(counter::list(tx).empty()); });
  CHECK(db.write([](transaction& tx) { return counter::seed_from_table(tx, "l", "", "legacy_max", "x"); }) == int64_max);
  check_overflow_refused(db, [](transaction& tx) { counter::next(tx, "l"); });
}

TEST_CASE("seeding a counter needs a write transaction and a non-negative value; a refused seed writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  db.read([](transaction& tx) { CHECK_THROWS_AS(counter::seed_from_max(tx, "invoice", "", 10), invalid_argument); });
  db.write([](transaction& tx) { CHECK_THROWS_AS(counter::seed_from_max(tx, "invoice", "", -1), invalid_argument); });
  db.read([](transaction& tx) { CHECK(counter::list(tx, "invoice").empty()); });
  db.write([](transaction& tx) {
    CHECK(counter::seed_from_max(tx, "invoice", "", 10) == 10);
    CHECK(counter::seed_from_max(tx, "invoice", "", 3) == 10); // never lowers
  });
}

TEST_CASE("seed_from_table takes an integral maximum stored as floating point or text, and refuses fractions and words") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE lg_real(x DOUBLE PRECISION); CREATE TABLE lg_frac(x DOUBLE PRECISION); "
                   "CREATE TABLE lg_text(x TEXT); CREATE TABLE lg_text_real(x TEXT); CREATE TABLE lg_word(x TEXT)");
    tx.exec("INSERT INTO lg_real(x) VALUES($1)", 41.0);
    tx.exec("INSERT INTO lg_frac(x) VALUES($1)", 41.5);
    tx.exec("INSERT INTO lg_text(x) VALUES($1)", std::string("77"));
    tx.exec("INSERT INTO lg_text_real(x) VALUES($1)", std::string("12.0"));
    tx.exec("INSERT INTO lg_word(x) VALUES($1)", std::string("INV-12"));
  });
  CHECK(db.write([](transaction& tx) { return counter::seed_from_table(tx, "a", "", "lg_real", "x"); }) == 41);
  CHECK(db.write([](transaction& tx) { return counter::seed_from_table(tx, "b", "", "lg_text", "x"); }) == 77);
  CHECK(db.write([](transaction& tx) { return counter::seed_from_table(tx, "c", "", "lg_text_real", "x"); }) == 12);
  CHECK_THROWS_AS(db.write([](transaction& tx) { counter::seed_from_table(tx, "d", "", "lg_frac", "x"); }), invalid_argument);
  CHECK_THROWS_AS(db.write([](transaction& tx) { counter::seed_from_table(tx, "e", "", "lg_word", "x"); }), invalid_argument);
  db.read([](transaction& tx) {
    const auto all = counter::list(tx);
    REQUIRE(all.size() == 3); // the refused seeds wrote nothing
    CHECK(counter::current(tx, "a") == 41);
    CHECK(counter::current(tx, "c") == 12);
  });
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "b"); }) == 78);
}
