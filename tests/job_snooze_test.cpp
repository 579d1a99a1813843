// Snooze: a claimed job goes back to waiting until now + delay without spending an attempt, from the
// stage it is at; only the current, unexpired claim can snooze it; a handler snoozes through its
// job_context. Both backends.
#include "job_test_env.hpp"

#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

jobs::job_spec spec(std::string subject, int max_attempts = 1) {
  jobs::job_spec s;
  s.operation = "poll-upstream";
  s.subject = std::move(subject);
  s.stages = {"fetch", "store"};
  s.max_attempts = max_attempts;
  return s;
}

jobs::job claim_one(database& db, std::chrono::milliseconds lease = 30s) {
  auto got = jobs::claim(db, {.owner = "w1", .batch = 1, .lease = lease});
  REQUIRE(got.size() == 1);
  return got[0];
}

micros db_now(database& db) {
  return db.read([](transaction& tx) { return tx.now_us(); });
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

} // namespace

TEST_CASE("snooze: the claim ends, run_at moves, the attempt is given back, completed stages stay done") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("feed:1")).id;
  auto j = claim_one(db);
  CHECK(j.attempts == 1);
  db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0); });

  const auto before = db_now(db);
  CHECK(jobs::snooze(db, {j.id, j.lease_epoch}, 1h) == jobs::job_state::queued);
  auto g = jobs::get(db, id);
  REQUIRE(g);
  CHECK(g->state == jobs::job_state::queued);
  CHECK(g->attempts == 0);
  CHECK(g->current_stage == 1);
  CHECK(g->lease_owner.empty());
  CHECK(g->run_at >= before + 3'600'000'000LL);
  CHECK(jobs::claim(db, {.owner = "w2"}).empty()); // not due for an hour
  CHECK(jobs::inspect(db).scheduled == 1);

  // Snoozing over and over never spends the single attempt.
  for (int round = 0; round < 5; ++round) {
    db.write([&](transaction& tx) { tx.exec("UPDATE casecore_jobs SET run_at = 0 WHERE id = $1", id); });
    j = claim_one(db);
    CHECK(j.attempts == 1);
    CHECK(j.current_stage == 1);
    CHECK(jobs::snooze(db, {j.id, j.lease_epoch}, 0ms) == jobs::job_state::queued);
  }
  j = claim_one(db); // a zero delay is due at once
  db.write([&](transaction& tx) { CHECK(jobs::complete_stage(tx, {j.id, j.lease_epoch}, 1, 0)); });
  g = jobs::get(db, id);
  CHECK(g->state == jobs::job_state::succeeded);
  CHECK(g->attempts == 1);
}

TEST_CASE("snooze is fenced: a stale, expired or already snoozed claim cannot snooze") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("feed:2", 5)).id;
  const auto first = claim_one(db, 50ms);
  std::this_thread::sleep_for(120ms); // the claim expires on the database clock
  CHECK_THROWS_AS(jobs::snooze(db, {first.id, first.lease_epoch}, 1s), lease_lost);
  CHECK(jobs::get(db, id)->state == jobs::job_state::running); // unchanged: nobody reclaimed it yet
  REQUIRE(jobs::reclaim_expired(db) == 1);
  const auto second = claim_one(db);
  CHECK(second.lease_epoch > first.lease_epoch);
  // The old holder wakes up and tries to snooze the job the new holder runs.
  CHECK_THROWS_AS(jobs::snooze(db, {first.id, first.lease_epoch}, 1s), lease_lost);
  auto g = jobs::get(db, id);
  CHECK(g->state == jobs::job_state::running);
  CHECK(g->lease_epoch == second.lease_epoch);
  CHECK(jobs::snooze(db, {second.id, second.lease_epoch}, 0ms) == jobs::job_state::queued);
  CHECK_THROWS_AS(jobs::snooze(db, {second.id, second.lease_epoch}, 0ms), lease_lost); // the claim ended
  // Bad delays change nothing.
  const auto third = claim_one(db);
  CHECK_THROWS_AS(jobs::snooze(db, {third.id, third.lease_epoch}, -1ms), invalid_argument);
  CHECK_THROWS_AS(jobs::snooze(db, {third.id, third.lease_epoch}, std::chrono::hours(24 * 366 * 101)), invalid_argument);
  g = jobs::get(db, id);
  CHECK(g->state == jobs::job_state::running);
  CHECK(g->lease_epoch == third.lease_epoch);
}

TEST_CASE("snooze while a newer job of the key waits: the snoozed run is superseded") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("feed:3")).id;
  const auto j = claim_one(db);
  const auto newer = jobs::enqueue(db, spec("feed:3"));
  REQUIRE(newer.created);
  CHECK(jobs::snooze(db, {j.id, j.lease_epoch}, 1s) == jobs::job_state::cancelled);
  const auto g = jobs::get(db, id);
  CHECK(g->state == jobs::job_state::cancelled);
  CHECK(g->last_error == "snoozed; superseded by job " + std::to_string(newer.id));
}

TEST_CASE("a handler snoozes through its context: it runs again later, its one attempt unspent") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("feed:4")).id; // max_attempts = 1: a spent attempt would fail it
  std::atomic<int> fetches{0};
  std::atomic<int> second_snooze_refused{0};
  auto o = jobs::worker_options{};
  o.threads = 1;
  o.poll = 20ms;
  o.lease = casecore::testing::job_lease(30s);
  jobs::worker w(db, o);
  w.on_stage("fetch", [&](jobs::job_context& ctx) {
    if (fetches++ < 2) {
      ctx.snooze(150ms); // upstream not ready yet
      try {
        ctx.snooze(1s);
      } catch (const invalid_argument&) {
        ++second_snooze_refused;
      }
      CHECK_THROWS_AS(ctx.complete([](transaction&) {}), invalid_argument); // the claim ended
      CHECK_THROWS_AS(ctx.write([](transaction&) {}), invalid_argument);
      return;
    }
    ctx.complete([](transaction&) {});
  });
  w.on_stage("store", [&](jobs::job_context& ctx) {
    ctx.complete([](transaction&) {});
    CHECK_THROWS_AS(ctx.snooze(1s), invalid_argument); // the last stage is done: nothing to snooze
  });
  w.start();
  REQUIRE(wait_until([&] { return jobs::get(db, id)->state == jobs::job_state::succeeded; }));
  w.stop();
  const auto g = jobs::get(db, id);
  CHECK(g->attempts == 1);
  CHECK(fetches == 3);
  CHECK(second_snooze_refused == 2);
  CHECK(w.stats().snoozed == 2);
  CHECK(w.stats().failures == 0);
  // The two snoozes really waited: the stage's recorded start is after two delays.
  const auto st = jobs::stages(db, id);
  REQUIRE(st.size() == 2);
  CHECK(st[0].started_at - g->created_at >= 300'000);
}

TEST_CASE("snooze under a pause: due at once, the job waits paused; resume lets it run, its attempt unspent") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("feed:5")).id;
  const auto j = claim_one(db);
  jobs::pause(db, {.operation = "poll-upstream", .concurrency_key = ""}, "upstream maintenance", "ops");
  CHECK(jobs::snooze(db, {j.id, j.lease_epoch}, 0ms) == jobs::job_state::queued);
  auto g = jobs::get(db, id);
  CHECK(g->state == jobs::job_state::paused);
  CHECK(g->attempts == 0);
  CHECK(jobs::claim(db, {.owner = "w2"}).empty());
  jobs::resume(db, {.operation = "poll-upstream", .concurrency_key = ""});
  const auto again = claim_one(db);
  CHECK(again.id == id);
  CHECK(again.attempts == 1);
}
