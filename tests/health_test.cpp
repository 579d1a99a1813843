// health::monitor on both backends: pool use, queue lengths and deadlocks become findings.
#include <casecore/health.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <barrier>
#include <chrono>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace casecore;
using casecore::testing::scratch_database;

TEST_CASE("health: pool use above 80 % warns, a long queue is critical, deadlocks count per hour") {
  if (casecore::testing::behind_test_pooler()) {
    MESSAGE("skipped behind a pooler: it holds 5 transactions open at once, more than the test pooler's server connections");
    return;
  }
  scratch_database s;
  database_options o;
  o.pool.size = 4;
  o.pool.overflow = 1;
  auto db = s.open(o);
  migrate(db);
  double queue = 3;
  health::monitor m;
  m.add_database(db, "main");
  m.add_queue("jobs", [&] { return queue; }, 10, 100);
  auto r = m.check();
  CHECK(r.overall == health::status::ok);
  CHECK(r.findings.empty());

  // Hold 5 of 5 connections: 100 % use is critical.
  std::latch inside(5), release(1);
  std::vector<std::thread> holders;
  for (int i = 0; i < 5; ++i)
    holders.emplace_back([&] {
      db.read([&](transaction&) {
        inside.count_down();
        release.wait();
      });
    });
  inside.wait();
  queue = 50;
  r = m.check();
  release.count_down();
  for (auto& t : holders) t.join();
  CHECK(r.overall == health::status::critical);
  bool pool_finding = false, queue_finding = false;
  for (const auto& f : r.findings) {
    if (f.check == "main.pool_use") pool_finding = f.level == health::status::critical && f.value == doctest::Approx(1.0);
    if (f.check == "jobs.queue_length") queue_finding = f.level == health::status::warn && f.value == 50;
  }
  CHECK(pool_finding);
  CHECK(queue_finding);
  CHECK(r.to_json().find("\"status\":\"critical\"") != std::string::npos);

  queue = 1;
  CHECK(m.check().overall == health::status::ok);
  CHECK_THROWS_AS(health::monitor(health::thresholds{.pool_use_warn = 0.9, .pool_use_critical = 0.5}), invalid_argument);
  CHECK_THROWS_AS(m.add_queue("", [] { return 0.0; }, 1, 2), invalid_argument);
}

TEST_CASE("health: PostgreSQL deadlocks show up as deadlocks in the last hour") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres) return;
  auto db = s.open();
  db.write([](transaction& tx) { tx.exec_script("CREATE TABLE dl(id INT PRIMARY KEY, v INT); INSERT INTO dl VALUES (1,0),(2,0)"); });
  health::monitor m;
  m.add_database(db, "main");
  // Two transactions lock rows in opposite orders until PostgreSQL picks a victim (retried by write()).
  std::barrier both(2);
  casecore::testing::race(2, [&](std::size_t i) {
    bool first_attempt = true;
    db.write([&](transaction& tx) {
      const int a = i == 0 ? 1 : 2, b = i == 0 ? 2 : 1;
      tx.exec("UPDATE dl SET v = v + 1 WHERE id = $1", a);
      if (first_attempt) {
        first_attempt = false;
        both.arrive_and_wait();
      }
      tx.exec("UPDATE dl SET v = v + 1 WHERE id = $1", b);
    });
  });
  CHECK(db.tx_stats().retries_deadlock >= 1);
  const auto r = m.check();
  bool found = false;
  for (const auto& f : r.findings)
    if (f.check == "main.deadlocks_per_hour") found = f.value >= 1;
  CHECK(found);
  // An hour later the window has moved past the deadlock.
  const auto later = m.check(std::chrono::steady_clock::now() + std::chrono::minutes(61));
  for (const auto& f : later.findings) CHECK(f.check != "main.deadlocks_per_hour");
}

TEST_CASE("health: a database needs a name to be watched; a refused one adds no finding") {
  scratch_database s;
  health::monitor m;
  CHECK_THROWS_AS(m.add_database(s.open(), ""), invalid_argument);
  const auto r = m.check();
  CHECK(r.overall == health::status::ok);
  CHECK(r.findings.empty());
}

TEST_CASE("health: a queue whose length cannot be read is a critical finding that names the queue and the cause") {
  health::monitor m;
  m.add_queue("imports", [] { return 3.0; }, 10, 20);
  m.add_queue("jobs", []() -> double { throw std::runtime_error("database unreachable"); }, 10, 20);
  const auto r = m.check();
  CHECK(r.overall == health::status::critical);
  REQUIRE(r.findings.size() == 1);
  CHECK(r.findings[0].level == health::status::critical);
  CHECK(r.findings[0].check == "jobs.queue_length");
  CHECK(r.findings[0].reason.find("database unreachable") != std::string::npos);
}
