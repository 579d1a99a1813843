#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <map>
#include <mutex>

using namespace casecore;
using casecore::testing::scratch_database;

TEST_CASE("an outbox message exists if and only if its transaction committed") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) { outbox::publish(tx, "upload", "payload-1", "obj-1"); });
  CHECK_THROWS(db.write([](transaction& tx) {
    outbox::publish(tx, "upload", "payload-2");
    throw std::runtime_error("commit fails");
  }));
  CHECK(outbox::pending(db, "upload") == 1);
  std::vector<outbox::message> seen;
  CHECK(outbox::drain(db, "upload", [&](const outbox::message& m) { seen.push_back(m); }) == 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].payload == "payload-1");
  CHECK(seen[0].key == "obj-1");
  CHECK(seen[0].attempts == 1);
  CHECK(outbox::pending(db, "upload") == 0);
  CHECK(outbox::drain(db, "upload", [&](const outbox::message&) { FAIL("delivered twice"); }) == 0);
}

TEST_CASE("a failed delivery is retried later, with attempts counted") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) { outbox::publish(tx, "mail", "hello"); });
  outbox::drain_options o;
  o.retry_delay = std::chrono::milliseconds(1);
  CHECK(outbox::drain(db, "mail", [](const outbox::message&) { throw std::runtime_error("smtp down"); }, o) == 0);
  CHECK(outbox::pending(db, "mail") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int attempts = 0;
  CHECK(outbox::drain(db, "mail", [&](const outbox::message& m) { attempts = m.attempts; }, o) == 1);
  CHECK(attempts == 2);
}

TEST_CASE("bad outbox input is a typed error") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK_THROWS_AS(db.write([](transaction& tx) { outbox::publish(tx, "", "x"); }), invalid_argument);
  outbox::drain_options o;
  o.batch = 0;
  CHECK_THROWS_AS(outbox::drain(db, "t", [](const outbox::message&) {}, o), invalid_argument);
  o.batch = 1;
  o.claim_ttl = std::chrono::milliseconds(-5);
  CHECK_THROWS_AS(outbox::drain(db, "t", [](const outbox::message&) {}, o), invalid_argument);
  o = {};
  o.batch = 10001;
  db.write([](transaction& tx) { outbox::publish(tx, "t", "x"); });
  int handled = 0;
  CHECK_THROWS_AS(outbox::drain(db, "t", [&](const outbox::message&) { ++handled; }, o), invalid_argument);
  CHECK_THROWS_AS(outbox::drain(db, std::string(201, 't'), [&](const outbox::message&) { ++handled; }), invalid_argument);
  CHECK(handled == 0);
  o.batch = 10000;
  CHECK(outbox::drain(db, "t", [&](const outbox::message&) { ++handled; }, o) == 1); // the bound itself; nothing was claimed before
  CHECK(handled == 1);
}

TEST_CASE("concurrent drainers deliver every message, none twice") {
  scratch_database s;
  auto db = s.open_migrated();
  constexpr int messages = 300;
  db.write([](transaction& tx) {
    for (int i = 0; i < messages; ++i) outbox::publish(tx, "t", std::to_string(i));
  });
  std::mutex m;
  std::map<std::string, int> delivered;
  casecore::testing::race(6, [&](std::size_t) {
    outbox::drain_options o;
    o.batch = 7;
    while (outbox::drain(db, "t", [&](const outbox::message& msg) {
             std::lock_guard g(m);
             ++delivered[msg.payload];
           }, o) > 0) {
    }
  });
  CHECK(delivered.size() == messages);
  for (const auto& [k, n] : delivered) CHECK(n == 1);
  CHECK(outbox::pending(db, "t") == 0);
}

TEST_CASE("publishing needs a write transaction and a payload of at most 16 MiB; a refused publish writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  db.read([](transaction& tx) { CHECK_THROWS_AS(outbox::publish(tx, "case.closed", "{}"), invalid_argument); });
  db.write([](transaction& tx) { CHECK_THROWS_AS(outbox::publish(tx, "case.closed", std::string(16 * 1024 * 1024 + 1, 'x')), invalid_argument); });
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_outbox"); }) == 0);
  db.write([](transaction& tx) { CHECK(outbox::publish(tx, "case.closed", std::string(16 * 1024 * 1024, 'x')) > 0); }); // the bound itself
}
