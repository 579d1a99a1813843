// Leases with fencing tokens: acquisition, takeover, renewal, release, the fence in guarded writes,
// threads and processes contending for one lease. Runs on SQLite and PostgreSQL.
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

database open_migrated(const scratch_database& s) {
  auto db = s.open();
  migrate(db);
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx.dialect(), "CREATE TABLE guarded(id {{id}}, token BIGINT NOT NULL, "
                                            "event TEXT NOT NULL, who TEXT NOT NULL)"));
  });
  return db;
}

// A write guarded by the lease: refused (and rolled back) for a stale holder.
void guarded_write(database& db, const lease::grant& g, std::string_view event) {
  db.write([&](transaction& tx) {
    tx.exec("INSERT INTO guarded(token, event, who) VALUES($1, $2, $3)", g.token, event, g.owner);
    lease::check(tx, g.name, g.token);
  });
}

std::int64_t guarded_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM guarded"); });
}

} // namespace

TEST_CASE("a lease is exclusive, its token increases on every acquisition and survives release") {
  scratch_database s;
  auto db = open_migrated(s);
  auto a = lease::try_acquire(db, "case:42:bulk-reindex", "alice", 10s);
  REQUIRE(a);
  CHECK(a->token == 1);
  CHECK_FALSE(lease::try_acquire(db, "case:42:bulk-reindex", "bob", 10s));
  auto i = lease::inspect(db, "case:42:bulk-reindex");
  REQUIRE(i);
  CHECK(i->owner == "alice");
  CHECK(i->held);
  CHECK(i->token == 1);

  // Re-acquiring as the same owner is allowed but fences off the older grant.
  auto a2 = lease::try_acquire(db, "case:42:bulk-reindex", "alice", 10s);
  REQUIRE(a2);
  CHECK(a2->token == 2);
  CHECK_THROWS_AS(guarded_write(db, *a, "stale"), lease_lost);
  guarded_write(db, *a2, "ok");

  auto r = lease::renew(db, *a2, 20s);
  CHECK(r.expires_at >= a2->expires_at);
  CHECK(lease::release(db, *a2));
  CHECK_FALSE(lease::release(db, *a2));
  CHECK_THROWS_AS(lease::renew(db, *a2, 1s), lease_lost);
  CHECK_FALSE(lease::inspect(db, "case:42:bulk-reindex")->held);

  auto b = lease::try_acquire(db, "case:42:bulk-reindex", "bob", 10s);
  REQUIRE(b);
  CHECK(b->token == 3); // never reset by release
  CHECK(lease::list(db, "case:42:").size() == 1);
  CHECK(lease::list(db, "case:43:").empty());
  CHECK(lease::list(db).size() == 1);
  CHECK_FALSE(lease::inspect(db, "nope"));
  CHECK(guarded_rows(db) == 1);
}

TEST_CASE("an expired lease is taken over and the paused holder can do no damage") {
  scratch_database s;
  auto db = open_migrated(s);
  auto paused = lease::try_acquire(db, "case:7:bulk", "paused-worker", 30ms);
  REQUIRE(paused);
  std::this_thread::sleep_for(80ms); // the holder "pauses" past its TTL
  // Even before anyone takes over, the expired token is refused by the fence.
  CHECK_THROWS_AS(guarded_write(db, *paused, "late"), lease_lost);
  auto next = lease::acquire(db, "case:7:bulk", "new-worker", 10s, 2s);
  CHECK(next.token > paused->token);
  CHECK_THROWS_AS(guarded_write(db, *paused, "late"), lease_lost);
  CHECK_THROWS_AS(lease::renew(db, *paused, 10s), lease_lost);
  CHECK_FALSE(lease::release(db, *paused));
  guarded_write(db, next, "fresh");
  CHECK(guarded_rows(db) == 1);
  CHECK(lease::inspect(db, "case:7:bulk")->owner == "new-worker");
}

TEST_CASE("force_release frees a held lease, reports its holder and fences the old token") {
  scratch_database s;
  auto db = open_migrated(s);
  CHECK_THROWS_AS(lease::force_release(db, "case:1"), not_found);
  CHECK_THROWS_AS(lease::force_release(db, ""), invalid_argument);
  auto a = lease::try_acquire(db, "case:1", "alice", 60s);
  REQUIRE(a);
  const auto before = lease::force_release(db, "case:1");
  CHECK(before.owner == "alice");
  CHECK(before.token == a->token);
  CHECK(before.held);
  CHECK_FALSE(lease::inspect(db, "case:1")->held);
  CHECK_THROWS_AS(guarded_write(db, *a, "after force"), lease_lost); // the old holder is fenced
  CHECK_FALSE(lease::release(db, *a));
  auto b = lease::try_acquire(db, "case:1", "bob", 60s);
  REQUIRE(b);
  CHECK(b->token == a->token + 1);
  CHECK_FALSE(lease::force_release(db, "case:1").owner.empty());
  CHECK_FALSE(lease::force_release(db, "case:1").held); // already free: reported as not held
  CHECK(guarded_rows(db) == 0);
}

TEST_CASE("acquire waits for the holder and times out with a typed error") {
  scratch_database s;
  auto db = open_migrated(s);
  auto held = lease::try_acquire(db, "l", "a", 10s);
  REQUIRE(held);
  try {
    lease::acquire(db, "l", "b", 10s, 30ms);
    FAIL("acquired a held lease");
  } catch (const error& e) {
    CHECK(e.code() == errc::timeout);
  }
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    lease::release(db, *held);
  });
  auto got = lease::acquire(db, "l", "b", 10s, 10s);
  releaser.join();
  CHECK(got.owner == "b");
  CHECK(got.token == 2);
}

TEST_CASE("bad lease input is rejected before anything is written") {
  scratch_database s;
  auto db = open_migrated(s);
  CHECK_THROWS_AS(lease::try_acquire(db, "", "a", 1s), invalid_argument);
  CHECK_THROWS_AS(lease::try_acquire(db, std::string(201, 'x'), "a", 1s), invalid_argument);
  CHECK_THROWS_AS(lease::try_acquire(db, "n", "", 1s), invalid_argument);
  CHECK_THROWS_AS(lease::try_acquire(db, "n", "a", 0ms), invalid_argument);
  CHECK_THROWS_AS(lease::try_acquire(db, "n", "a", -5ms), invalid_argument);
  CHECK_THROWS_AS(lease::acquire(db, "n", "a", 1s, -1ms), invalid_argument);
  CHECK_THROWS_AS(db.write([](transaction& tx) { lease::check(tx, "", 1); }), invalid_argument);
  CHECK(lease::list(db).empty());
}

TEST_CASE("many threads contending: one holder at a time, tokens strictly increase in write order") {
  scratch_database s;
  auto db = open_migrated(s);
  constexpr int threads = 12, rounds = 8;
  casecore::testing::race(threads, [&](std::size_t t) {
    const std::string me = "t" + std::to_string(t);
    for (int i = 0; i < rounds; ++i) {
      auto g = lease::acquire(db, "hot", me, 10s, 60s);
      guarded_write(db, g, "start");
      guarded_write(db, g, "end");
      CHECK(lease::release(db, g));
    }
  });
  // From the database: events alternate start/end of the same token, and tokens strictly increase.
  db.read([&](transaction& tx) {
    auto rows = tx.exec("SELECT token, event FROM guarded ORDER BY id");
    REQUIRE(rows.size() == threads * rounds * 2);
    std::int64_t last = 0;
    for (std::size_t i = 0; i < rows.size(); i += 2) {
      CHECK(rows[i].get<std::string>(1) == "start");
      CHECK(rows[i + 1].get<std::string>(1) == "end");
      CHECK(rows[i].get<std::int64_t>(0) == rows[i + 1].get<std::int64_t>(0));
      CHECK(rows[i].get<std::int64_t>(0) > last);
      last = rows[i].get<std::int64_t>(0);
    }
  });
}

CASECORE_CHILD(lease_bulk_reindex) {
  auto db = casecore::open(args.at(0));
  const std::string me = "proc" + args.back();
  for (int i = 0; i < 6; ++i) {
    auto g = lease::acquire(db, "case:42:bulk-reindex", me, 10s, 60s);
    guarded_write(db, g, "start");
    std::this_thread::sleep_for(2ms); // "clear the indices"
    guarded_write(db, g, "end");
    lease::release(db, g);
  }
  return 0;
}

TEST_CASE("two concurrent bulk operations on one case never overlap across processes") {
  scratch_database s;
  auto db = open_migrated(s);
  const auto results = casecore::testing::run_children("lease_bulk_reindex", 4, {s.url()});
  for (const auto& r : results) CHECK(r.exit_code == 0);
  db.read([&](transaction& tx) {
    auto rows = tx.exec("SELECT token, event, who FROM guarded ORDER BY id");
    REQUIRE(rows.size() == 4 * 6 * 2);
    std::int64_t last = 0;
    for (std::size_t i = 0; i < rows.size(); i += 2) {
      CHECK(rows[i].get<std::string>(1) == "start");
      CHECK(rows[i + 1].get<std::string>(1) == "end");
      CHECK(rows[i].get<std::string>(2) == rows[i + 1].get<std::string>(2));
      CHECK(rows[i].get<std::int64_t>(0) > last);
      last = rows[i].get<std::int64_t>(0);
    }
  });
}
