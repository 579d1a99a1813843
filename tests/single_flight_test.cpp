#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/single_flight.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <latch>
#include <set>
#include <stdexcept>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {
// Hold the leader inside compute() until every other caller has had the chance to join it, so the
// test does not depend on timing: followers register before the gate opens.
template <class SF> void wait_for_followers(const SF& sf, std::uint64_t expected_shared) {
  for (int i = 0; i < 20000 && sf.stats().shared < expected_shared; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}
} // namespace

TEST_CASE("single_flight: 64 concurrent callers of one key compute once and all get the value") {
  single_flight<std::string, std::string> sf;
  std::atomic<int> computations{0};
  std::vector<std::string> got(64);
  casecore::testing::race(64, [&](std::size_t i) {
    got[i] = sf.run("report-7", [&] {
      ++computations;
      wait_for_followers(sf, 63);
      return std::string("pdf-bytes");
    });
  });
  CHECK(computations == 1);
  for (const auto& g : got) CHECK(g == "pdf-bytes");
  CHECK(sf.stats().computations == 1);
  CHECK(sf.stats().shared == 63);
  CHECK(sf.in_flight() == 0);
}

TEST_CASE("single_flight: a throwing leader propagates its error to every follower, none hangs") {
  single_flight<int, int> sf;
  std::atomic<int> errors{0}, computations{0};
  casecore::testing::race(64, [&](std::size_t) {
    try {
      sf.run(1, [&]() -> int {
        ++computations;
        wait_for_followers(sf, 63);
        throw std::runtime_error("renderer crashed");
      });
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()) == "renderer crashed") ++errors;
    }
  });
  CHECK(computations == 1);
  CHECK(errors == 64);
  // The failed flight is forgotten: the next call computes again and can succeed.
  CHECK(sf.run(1, [] { return 42; }) == 42);
  CHECK(sf.in_flight() == 0);
}

TEST_CASE("single_flight: different keys do not wait for each other") {
  single_flight<int, int> sf;
  std::atomic<int> computations{0};
  std::latch both_inside(2);
  casecore::testing::race(2, [&](std::size_t i) {
    // If key 0 and key 1 were serialised, the latch would never open and the test would hang.
    CHECK(sf.run(static_cast<int>(i), [&] {
      ++computations;
      both_inside.arrive_and_wait();
      return static_cast<int>(i) * 10;
    }) == static_cast<int>(i) * 10);
  });
  CHECK(computations == 2);
}

TEST_CASE("versioned_cache: a result is recomputed only when its source version changes") {
  versioned_cache<std::string, std::string> cache;
  int computations = 0;
  auto render = [&](std::int64_t v) {
    return cache.get("case-1", v, [&] {
      ++computations;
      return "report v" + std::to_string(v);
    });
  };
  CHECK(render(1) == "report v1");
  CHECK(render(1) == "report v1");
  CHECK(computations == 1);
  CHECK(render(2) == "report v2");
  CHECK(computations == 2);
  CHECK(render(2) == "report v2");
  CHECK(computations == 2);
  CHECK(cache.stats().cache_hits == 2);
  CHECK_THROWS_AS((versioned_cache<int, int>(0)), invalid_argument);
}

TEST_CASE("versioned_cache: 64 concurrent callers of one version compute once") {
  versioned_cache<int, int> cache;
  std::atomic<int> computations{0};
  casecore::testing::race(64, [&](std::size_t) {
    CHECK(cache.get(5, 3, [&] {
      ++computations;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return 99;
    }) == 99);
  });
  // Callers either joined the flight or hit the cache afterwards: never a second computation.
  CHECK(computations == 1);
}

TEST_CASE("versioned_cache: invalidation follows commit, never rollback") {
  scratch_database s;
  auto db = s.open_migrated();
  versioned_cache<std::string, int> cache;
  int computations = 0;
  auto get = [&] { return cache.get("k", 1, [&] { return ++computations; }); };
  CHECK(get() == 1);
  CHECK_THROWS(db.write([&](transaction& tx) {
    cache.invalidate_after_commit(tx, "k");
    throw std::runtime_error("the write fails");
  }));
  CHECK(cache.size() == 1);
  CHECK(get() == 1); // still cached: the failed commit did not clear it
  db.write([&](transaction& tx) { cache.invalidate_after_commit(tx, "k"); });
  CHECK(cache.size() == 0);
  CHECK(get() == 2);
}

TEST_CASE("versioned_cache: bounded, oldest entry evicted") {
  versioned_cache<int, int> cache(2);
  for (int k = 0; k < 3; ++k) cache.get(k, 1, [&] { return k; });
  CHECK(cache.size() == 2);
  int recomputed = 0;
  cache.get(0, 1, [&] { return ++recomputed; });
  CHECK(recomputed == 1);
}

namespace {
// The "report store" both processes share: the winner writes the report row, losers read it.
void make_reports(database& db) {
  migrate(db);
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE IF NOT EXISTS sf_reports(report_key TEXT PRIMARY KEY, body TEXT NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS sf_renders(id INTEGER NOT NULL)");
  });
}

std::optional<std::string> find_report(database& db, const std::string& key) {
  return db.read([&](transaction& tx) { return tx.query_optional<std::string>("SELECT body FROM sf_reports WHERE report_key = $1", key); });
}

// The store: last writer wins, as a report cache usually does — so only the claim can stop a stale one.
void store_report(transaction& tx, const std::string& key, const std::string& body) {
  tx.exec("INSERT INTO sf_reports(report_key, body) VALUES($1, $2) ON CONFLICT(report_key) DO UPDATE SET body = excluded.body",
          key, body);
}

std::string render_once(database& db, db_single_flight<std::string>& flight, const std::string& key) {
  return flight.run(
      key, [&] { return find_report(db, key); },
      [&] {
        // The slow computation: long enough that other processes arrive while it runs.
        db.write([](transaction& tx) { tx.exec("INSERT INTO sf_renders(id) VALUES(1)"); });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        return "rendered " + key;
      },
      [&](transaction& tx, const std::string& body) { store_report(tx, key, body); });
}
} // namespace

CASECORE_CHILD(sf_render) {
  auto db = casecore::open(args.at(0));
  db_single_flight<std::string> flight(db);
  std::cout << render_once(db, flight, args.at(1)) << "\n";
  return 0;
}

TEST_CASE("db_single_flight: several processes and threads render one key once") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  db_single_flight<std::string> flight(db);
  std::vector<std::string> got(8);
  std::thread local([&] {
    casecore::testing::race(8, [&](std::size_t i) { got[i] = render_once(db, flight, "case-42"); });
  });
  const auto results = casecore::testing::run_children("sf_render", 6, {s.url(), "case-42"});
  local.join();
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    CHECK(r.output == "rendered case-42\n");
  }
  for (const auto& g : got) CHECK(g == "rendered case-42");
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM sf_renders"); }) == 1);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_flights"); }) == 0);
}

TEST_CASE("db_single_flight: a failed winner releases its claim; the next caller computes") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  db_single_flight<int> flight(db);
  auto none = []() -> std::optional<int> { return std::nullopt; };
  auto no_store = [](transaction&, const int&) {};
  CHECK_THROWS_AS(flight.run("k", none, []() -> int { throw std::runtime_error("boom"); }, no_store), std::runtime_error);
  CHECK(flight.run("k", none, [] { return 7; }, no_store) == 7);
}

TEST_CASE("db_single_flight: an expired claim of a crashed process is taken over") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  // A claim left by a process that died: already expired.
  db.write([](transaction& tx) {
    tx.exec("INSERT INTO casecore_flights(flight_key, owner, expires_at, generation) VALUES('k', 'dead', casecore_now_us() - 1, 1)");
  });
  db_single_flight<int> flight(db);
  CHECK(flight.run("k", []() -> std::optional<int> { return std::nullopt; }, [] { return 5; }, [](transaction&, const int&) {}) == 5);
}

TEST_CASE("db_single_flight: a loser gives up with a timeout while a live claim blocks it") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  db.write([](transaction& tx) {
    tx.exec("INSERT INTO casecore_flights(flight_key, owner, expires_at, generation) VALUES('k', 'other', casecore_now_us() + 60000000, 1)");
  });
  db_flight_options o;
  o.max_wait = std::chrono::milliseconds(50);
  db_single_flight<int> flight(db, o);
  bool computed = false;
  try {
    flight.run("k", []() -> std::optional<int> { return std::nullopt; }, [&] { computed = true; return 1; },
               [](transaction&, const int&) {});
    FAIL("expected a timeout");
  } catch (const error& e) {
    CHECK(e.code() == errc::timeout);
  }
  CHECK_FALSE(computed);
}

TEST_CASE("db_single_flight: bad input is a typed error before anything is written") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  db_single_flight<int> flight(db);
  auto none = []() -> std::optional<int> { return std::nullopt; };
  auto no_store = [](transaction&, const int&) {};
  CHECK_THROWS_AS(flight.run("", none, [] { return 1; }, no_store), invalid_argument);
  CHECK_THROWS_AS(flight.run(std::string(501, 'k'), none, [] { return 1; }, no_store), invalid_argument);
  db_flight_options o;
  o.claim_ttl = std::chrono::milliseconds(0);
  CHECK_THROWS_AS(db_single_flight<int>(db, o), invalid_argument);
  o = {};
  o.poll_min = std::chrono::milliseconds(10);
  o.poll_max = std::chrono::milliseconds(1);
  CHECK_THROWS_AS(db_single_flight<int>(db, o), invalid_argument);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_flights"); }) == 0);
}

// --- issue 10 defect 8: renewal, fenced store, failures across processes -------------------------

namespace {

void make_events(database& db) {
  make_reports(db);
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE IF NOT EXISTS sf_events(who TEXT NOT NULL, event TEXT NOT NULL, at_us BIGINT NOT NULL)");
  });
}

void record(database& db, const std::string& who, const std::string& event) {
  db.write([&](transaction& tx) { tx.exec("INSERT INTO sf_events(who, event, at_us) VALUES($1, $2, casecore_now_us())", who, event); });
}

std::int64_t events(database& db, const std::string& who, const std::string& event) {
  return db.read([&](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(*) FROM sf_events WHERE who = $1 AND event = $2", who, event);
  });
}

bool wait_for_event(database& db, const std::string& who, const std::string& event) {
  for (int i = 0; i < 4000; ++i) {
    if (events(db, who, event) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// One caller of the flight: computes for `compute_ms` (recording start and end), then returns
// "by <who>" or throws. Prints result=... or error=<code>:<message>.
std::string flight_call(database& db, const std::string& who, const std::string& key, int ttl_ms, int compute_ms, bool fail) {
  db_flight_options o;
  o.claim_ttl = std::chrono::milliseconds(ttl_ms);
  db_single_flight<std::string> flight(db, o);
  try {
    const auto v = flight.run(
        key, [&] { return find_report(db, key); },
        [&]() -> std::string {
          record(db, who, "start");
          std::this_thread::sleep_for(std::chrono::milliseconds(compute_ms));
          record(db, who, "end");
          if (fail) throw std::runtime_error("renderer crashed: font missing");
          return "by " + who;
        },
        [&](transaction& tx, const std::string& body) { store_report(tx, key, body); });
    return "result=" + v;
  } catch (const error& e) {
    return "error=" + std::string(to_string(e.code())) + ":" + e.what();
  } catch (const std::exception& e) {
    return "error=std:" + std::string(e.what());
  }
}

} // namespace

// args: url who key ttl_ms compute_ms ok|fail wait_for_who(-: none)
CASECORE_CHILD(sf_worker) {
  auto db = casecore::open(args.at(0));
  const std::string who = args.at(1), key = args.at(2), wait_for = args.at(6);
  // Start only once the other process is computing, so this one certainly arrives while it runs
  // (process start-up time, slow under sanitizers, does not matter).
  if (wait_for != "-" && !wait_for_event(db, wait_for, "start")) return 5;
  std::cout << flight_call(db, who, key, std::stoi(args.at(3)), std::stoi(args.at(4)), args.at(5) == "fail") << "\n";
  return 0;
}

TEST_CASE("db_single_flight: a computation longer than claim_ttl runs once; the leader renews its claim") {
  scratch_database s;
  auto db = s.open();
  make_events(db);
  // TTL 200 ms, computation 600 ms: without renewal the claim expires twice over while A computes.
  casecore::testing::child_process a("sf_worker", {s.url(), "A", "report:1", "200", "600", "ok", "-"});
  casecore::testing::child_process b("sf_worker", {s.url(), "B", "report:1", "200", "600", "ok", "A"});
  const auto ra = a.wait(), rb = b.wait();
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  CHECK(ra.output == "result=by A\n");
  CHECK(rb.output == "result=by A\n");
  CHECK(events(db, "A", "start") == 1);
  CHECK(events(db, "B", "start") == 0); // B never computed: no two computations of one key at once
  CHECK(find_report(db, "report:1") == std::optional<std::string>("by A"));
}

TEST_CASE("db_single_flight: a leader paused past its claim does not store its stale result") {
  scratch_database s;
  auto db = s.open();
  make_events(db);
  casecore::testing::child_process a("sf_worker", {s.url(), "A", "report:2", "200", "600", "ok", "-"});
  REQUIRE(wait_for_event(db, "A", "start"));
  a.kill(SIGSTOP); // A (and its renewal thread) freeze mid-computation
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // A's claim expired on the database clock: this process takes over, computes and stores.
  CHECK(flight_call(db, "P", "report:2", 200, 50, false) == "result=by P");
  a.kill(SIGCONT);
  const auto ra = a.wait();
  CHECK(ra.exit_code == 0);
  CHECK(ra.output.rfind("error=lease_lost:", 0) == 0); // A learns its result was not stored
  CHECK(events(db, "A", "end") == 1);                  // ... although it finished computing
  CHECK(find_report(db, "report:2") == std::optional<std::string>("by P")); // the stale result never landed
}

TEST_CASE("db_single_flight: a failing leader's error reaches the followers in other processes") {
  scratch_database s;
  auto db = s.open();
  make_events(db);
  casecore::testing::child_process a("sf_worker", {s.url(), "A", "report:3", "200", "800", "fail", "-"});
  casecore::testing::child_process b("sf_worker", {s.url(), "B", "report:3", "200", "100", "ok", "A"});
  REQUIRE(wait_for_event(db, "A", "start"));
  const auto mine = flight_call(db, "P", "report:3", 200, 100, false); // a follower in this process too
  const auto ra = a.wait(), rb = b.wait();
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  CHECK(ra.output == "error=std:renderer crashed: font missing\n"); // the leader: its own exception
  CHECK(rb.output.rfind("error=flight_failed:", 0) == 0);
  CHECK(rb.output.find("renderer crashed: font missing") != std::string::npos);
  CHECK(mine.rfind("error=flight_failed:", 0) == 0);
  CHECK(mine.find("renderer crashed: font missing") != std::string::npos);
  CHECK(events(db, "B", "start") == 0); // the followers did not compute it again themselves
  CHECK(events(db, "P", "start") == 0);
  CHECK_FALSE(find_report(db, "report:3"));
  // A failure is not cached: the next caller computes afresh.
  CHECK(flight_call(db, "Q", "report:3", 200, 10, false) == "result=by Q");
}

TEST_CASE("db_single_flight: claim_ttl over a day, a negative max_wait, a zero poll_min are refused; the bounds are accepted") {
  scratch_database s;
  auto db = s.open();
  make_reports(db);
  db_flight_options o;
  o.claim_ttl = std::chrono::hours(24) + std::chrono::milliseconds(1);
  CHECK_THROWS_AS(db_single_flight<int>(db, o), invalid_argument);
  o = {};
  o.max_wait = std::chrono::milliseconds(-1);
  CHECK_THROWS_AS(db_single_flight<int>(db, o), invalid_argument);
  o = {};
  o.poll_min = std::chrono::milliseconds(0);
  CHECK_THROWS_AS(db_single_flight<int>(db, o), invalid_argument);
  o = {};
  o.claim_ttl = std::chrono::hours(24);
  o.max_wait = std::chrono::milliseconds(0);
  o.poll_min = o.poll_max;
  db_single_flight<int> flight(db, o);
  auto none = []() -> std::optional<int> { return std::nullopt; };
  CHECK(flight.run(std::string(500, 'k'), none, [] { return 7; }, [](transaction&, const int&) {}) == 7);
}
