// Leases with fencing tokens: acquisition, takeover, renewal, release, the fence in guarded writes,
// threads and processes contending for one lease. Runs on SQLite and PostgreSQL.
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <casecore/testing/steps.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

database open_migrated(const scratch_database& s) {
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx, "CREATE TABLE guarded(id {{id}}, token BIGINT NOT NULL, "
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

  // A live lease is not re-acquired, not even by its owner: it is extended with its token.
  CHECK_FALSE(lease::try_acquire(db, "case:42:bulk-reindex", "alice", 10s));
  auto a2 = lease::renew(db, *a, 10s);
  CHECK(a2.token == 1);
  guarded_write(db, *a, "ok");
  CHECK(lease::release(db, *a));
  auto a3 = lease::try_acquire(db, "case:42:bulk-reindex", "alice", 10s); // free again: a new token
  REQUIRE(a3);
  CHECK(a3->token == 2);
  CHECK_THROWS_AS(guarded_write(db, *a, "stale"), lease_lost); // the older grant is fenced off

  auto r = lease::renew(db, *a3, 20s);
  CHECK(r.expires_at >= a3->expires_at);
  CHECK(lease::release(db, *a3));
  CHECK_FALSE(lease::release(db, *a3));
  CHECK_THROWS_AS(lease::renew(db, *a3, 1s), lease_lost);
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

// Issue 10 defect 10: two acquires with one owner string both succeeded (tokens 1 and 2), so two
// processes configured with the same owner name lost mutual exclusion.
TEST_CASE("one owner name on two handles does not break mutual exclusion") {
  scratch_database s;
  auto db = open_migrated(s);
  auto other = s.open(); // a second process would look like this: its own pool, the same owner name
  auto first = lease::try_acquire(db, "case:9:export", "exporter", 10s);
  REQUIRE(first);
  CHECK_FALSE(lease::try_acquire(other, "case:9:export", "exporter", 10s));
  CHECK_FALSE(lease::try_acquire(db, "case:9:export", "exporter", 10s)); // not even from the holder's handle
  try {
    lease::acquire(other, "case:9:export", "exporter", 10s, 50ms);
    FAIL("a second instance with the holder's owner name took a live lease");
  } catch (const error& e) {
    CHECK(e.code() == errc::timeout);
  }
  guarded_write(db, *first, "still mine"); // the holder was not fenced off by the attempts
  CHECK(lease::inspect(db, "case:9:export")->token == first->token);
  // Extending a live lease needs its token: that is renew().
  auto longer = lease::renew(db, *first, 20s);
  CHECK(longer.token == first->token);
  CHECK(guarded_rows(db) == 1);
}

CASECORE_CHILD(lease_same_owner) {
  auto db = casecore::open(args.at(0));
  int lost = 0;
  for (int i = 0; i < 6; ++i) {
    auto g = lease::acquire(db, "case:42:bulk-reindex", "reindexer", 10s, 60s); // every process: one name
    try {
      guarded_write(db, g, "start");
      std::this_thread::sleep_for(3ms);
      guarded_write(db, g, "end");
    } catch (const lease_lost&) {
      ++lost;
    }
    lease::release(db, g);
  }
  std::printf("%d\n", lost);
  return 0;
}

TEST_CASE("processes sharing one owner name never overlap and are never fenced off by each other") {
  scratch_database s;
  auto db = open_migrated(s);
  const auto results = casecore::testing::run_children("lease_same_owner", 3, {s.url()});
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    CHECK(r.output == "0\n"); // no holder lost its lease to a namesake
  }
  db.read([&](transaction& tx) {
    auto rows = tx.exec("SELECT token, event FROM guarded ORDER BY id");
    REQUIRE(rows.size() == 3 * 6 * 2);
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

// Issue 10 defect 9: a guarded transaction of the holder kept the lease row locked (FOR SHARE) and a
// 200 ms acquire waited for it far past its timeout (seconds; hours for a partitioned holder).
TEST_CASE("acquire returns within its timeout while an expired holder's guarded transaction is open") {
  scratch_database s;
  auto db = open_migrated(s);
  auto held = lease::try_acquire(db, "case:3:merge", "holder", 100ms);
  REQUIRE(held);
  casecore::testing::step_gate gate;
  gate.pause_at("tx.before_commit", 1);
  std::jthread holder([&] { guarded_write(db, *held, "in flight"); });
  REQUIRE(gate.wait_parked("tx.before_commit"));
  std::this_thread::sleep_for(200ms); // the lease expires (database clock) while the write is open
  // Without a bound the acquire would wait for the holder; the watchdog ends that wait after 6 s so
  // the test reports the defect instead of hanging.
  std::atomic<bool> done{false};
  std::jthread watchdog([&] {
    for (int i = 0; i < 600 && !done; ++i) std::this_thread::sleep_for(10ms);
    gate.release_all();
  });
  const auto t0 = std::chrono::steady_clock::now();
  try {
    lease::acquire(db, "case:3:merge", "successor", 10s, 200ms);
    FAIL("took over a lease while its holder's checked write was still open");
  } catch (const error& e) {
    CHECK(e.code() == errc::timeout);
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited < 3s); // 200 ms asked; generous margin for a loaded machine
  CHECK_FALSE(lease::try_acquire(db, "case:3:merge", "successor", 10s)); // a try does not wait either
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  done = true;
  gate.release_all();
  holder.join();
  watchdog.join();
  // The open write was checked under a live token and commits before any successor; after it the
  // lease is free and the successor gets a newer token.
  CHECK(guarded_rows(db) == 1);
  auto next = lease::acquire(db, "case:3:merge", "successor", 10s, 5s);
  CHECK(next.token == held->token + 1);
  CHECK_THROWS_AS(guarded_write(db, *held, "late"), lease_lost);
}

// Issue 16 finding 5: lease names and owners end up in the CLI's text output and in logs.
TEST_CASE("lease names and owners with control characters or invalid UTF-8 are refused, nothing written") {
  scratch_database s;
  auto db = open_migrated(s);
  const std::vector<std::string> hostile{
      "\x1b[2Jfake",   "a\rb",          "tab\there",     std::string("nul\0x", 5), "del\x7f",
      "nel\xc2\x85",   "csi\xc2\x9b" "1m", "bad\xff",     "lone\x80",               "overlong\xc0\xaf",
      "surrogate\xed\xa0\x80", "cut\xe2\x82", "above\xf4\x90\x80\x80", "\n"};
  for (const auto& bad : hostile) {
    CAPTURE(bad);
    CHECK_THROWS_AS(lease::try_acquire(db, bad, "owner", 1s), invalid_argument);
    CHECK_THROWS_AS(lease::try_acquire(db, "name", bad, 1s), invalid_argument);
    CHECK_THROWS_AS(lease::acquire(db, bad, "owner", 1s, 1s), invalid_argument);
    CHECK_THROWS_AS(lease::inspect(db, bad), invalid_argument);
    CHECK_THROWS_AS(lease::force_release(db, bad), invalid_argument);
    CHECK_THROWS_AS(lease::list(db, bad), invalid_argument);
    CHECK_THROWS_AS(lease::renew(db, lease::grant{"name", bad, 1, 0}, 1s), invalid_argument);
    CHECK_THROWS_AS(lease::release(db, lease::grant{bad, "owner", 1, 0}), invalid_argument);
    CHECK_THROWS_AS(db.write([&](transaction& tx) { lease::check(tx, bad, 1); }), invalid_argument);
  }
  CHECK(lease::list(db).empty());
  // Printable UTF-8 is fine.
  auto g = lease::try_acquire(db, "dossier:Zoë/🙂", "équipe-nuit", 1s);
  REQUIRE(g);
  CHECK(lease::inspect(db, "dossier:Zoë/🙂")->owner == "équipe-nuit");
}

TEST_CASE("an acquirer that locked an expired lease: the old holder's check waits, then is refused") {
  scratch_database s;
  auto db = open_migrated(s);
  auto old = lease::try_acquire(db, "case:5:pack", "old", 50ms);
  REQUIRE(old);
  std::this_thread::sleep_for(120ms); // expired, not yet taken over
  casecore::testing::step_gate gate;
  gate.pause_at("lease.acquire.locked", 1);
  std::optional<lease::grant> taken;
  std::jthread acquirer([&] { taken = lease::acquire(db, "case:5:pack", "new", 10s, 10s); });
  REQUIRE(gate.wait_parked("lease.acquire.locked"));
  // A second acquirer meanwhile is bounded by its own timeout and does not win.
  CHECK_FALSE(lease::try_acquire(db, "case:5:pack", "third", 10s));
  // The old holder's guarded write waits for the takeover (PostgreSQL: the row lock; SQLite: the
  // write lock) and is then refused: it can never land after the new token was issued.
  std::jthread old_writer([&] { CHECK_THROWS_AS(guarded_write(db, *old, "late"), lease_lost); });
  std::this_thread::sleep_for(100ms);
  gate.release("lease.acquire.locked");
  acquirer.join();
  old_writer.join();
  REQUIRE(taken);
  CHECK(taken->token == old->token + 1);
  CHECK(guarded_rows(db) == 0);
}

TEST_CASE("PostgreSQL: a holder renews and releases while its own checked write is still open") {
  scratch_database s;
  auto db = open_migrated(s);
  if (db.dialect() != dialect::postgresql) {
    // SQLite has one writer: a renew waits for the holder's open write like any other write.
    MESSAGE("SQLite: one writer at a time, nothing to show here");
    return;
  }
  auto g = lease::try_acquire(db, "case:8:ocr", "holder", 300ms);
  REQUIRE(g);
  casecore::testing::step_gate gate;
  gate.pause_at("tx.before_commit", 1);
  std::jthread writer([&] { guarded_write(db, *g, "slow"); });
  REQUIRE(gate.wait_parked("tx.before_commit"));
  // The open write holds FOR KEY SHARE on the lease row; a heartbeat must not queue behind it.
  write_options quick;
  quick.lock_timeout = 1s;
  const auto renewed = db.write([&](transaction& tx) { return lease::renew(tx, *g, 10s); }, quick);
  CHECK(renewed.expires_at > g->expires_at);
  CHECK(db.write([&](transaction& tx) { return lease::release(tx, renewed); }, quick));
  const auto before = lease::force_release(db, "case:8:ocr"); // the operator override does not wait either
  CHECK_FALSE(before.held);
  gate.release("tx.before_commit");
  writer.join();
  CHECK(guarded_rows(db) == 1);
}

TEST_CASE("lease writes inside a read transaction are refused and change nothing") {
  scratch_database s;
  auto db = open_migrated(s);
  const auto g = lease::try_acquire(db, "case:1:export", "alice", 10s);
  REQUIRE(g);
  db.read([&](transaction& tx) {
    CHECK_THROWS_AS(lease::try_acquire(tx, "case:2:export", "bob", 10s), invalid_argument);
    CHECK_THROWS_AS(lease::renew(tx, *g, 20s), invalid_argument);
    CHECK_THROWS_AS(lease::release(tx, *g), invalid_argument);
  });
  db.write([&](transaction& tx) { CHECK_NOTHROW(lease::check(tx, g->name, g->token)); }); // still held
  CHECK(lease::try_acquire(db, "case:1:export", "bob", 10s) == std::nullopt);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_leases WHERE name = 'case:2:export'"); }) == 0);
}

TEST_CASE("lease::check in a read transaction is the caller's mistake (invalid_argument), not a lost connection") {
  // Regression: on PostgreSQL the FOR KEY SHARE of a fence in a read-only transaction failed with
  // 25006, reported as connection_lost (retryable; the connection was dropped); on SQLite it passed.
  scratch_database s;
  auto db = open_migrated(s);
  const auto g = lease::try_acquire(db, "case:3:export", "alice", 10s);
  REQUIRE(g);
  CHECK_THROWS_AS(db.read([&](transaction& tx) { lease::check(tx, g->name, g->token); }), invalid_argument);
  CHECK(db.pool_stats().reconnects == 0);
  db.write([&](transaction& tx) { CHECK_NOTHROW(lease::check(tx, g->name, g->token)); });
}
