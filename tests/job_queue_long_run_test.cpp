// Jobs over long runs (issue 17): heartbeats and reclaims never wait on a row locked by a completing
// transaction; an empty claim does not read jobs due in the future; retention keeps exactly what it
// says and one elected worker prunes; existing databases upgrade to the new schema. Behaviour only:
// the speed claims are measured by `bench_jobs soak` (docs/PERFORMANCE.md).
#include "job_test_env.hpp"

#include <casecore/detail/job_sql.hpp>
#include <casecore/leader.hpp>
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/steps.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <functional>
#include <future>
#include <regex>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::backend_kind;
using casecore::testing::scratch_database;

namespace {

database migrated(const scratch_database& s, std::size_t pool = 0) {
  database_options o;
  if (pool) o.pool.size = pool;
  return s.open_migrated(o);
}

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

jobs::job_spec spec(std::string op, std::string subject) {
  jobs::job_spec j;
  j.operation = std::move(op);
  j.subject = std::move(subject);
  return j;
}

jobs::claim_options claimer(std::string owner, std::size_t batch, std::chrono::milliseconds lease) {
  jobs::claim_options o;
  o.owner = std::move(owner);
  o.batch = batch;
  o.lease = lease;
  return o;
}

micros expiry(database& db, std::int64_t id) {
  return db.read([&](transaction& tx) { return tx.query_one<micros>("SELECT lease_expires_at FROM casecore_jobs WHERE id = $1", id); });
}

// Generous: what is asserted is "did not wait for the lock holder", who waits until released.
constexpr auto not_blocked = 15s;

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

} // namespace

TEST_CASE("a heartbeat never blocks on a row locked by a completing transaction; the other claims are extended") {
  scratch_database s;
  if (s.kind() != backend_kind::postgres) return; // SQLite: one writer, every writer waits for it (documented)
  auto db = migrated(s, 6);
  db.write([](transaction& tx) {
    for (int i = 0; i < 3; ++i) jobs::enqueue(tx, spec("full", "file:" + std::to_string(i)));
  });
  const auto got = jobs::claim(db, claimer("w", 3, 60s));
  REQUIRE(got.size() == 3);
  std::vector<jobs::claim_ref> refs;
  for (const auto& j : got) refs.push_back({j.id, j.lease_epoch});
  const auto before1 = expiry(db, got[1].id), before2 = expiry(db, got[2].id), before0 = expiry(db, got[0].id);

  casecore::testing::step_gate gate;
  gate.pause_at("tx.before_commit");
  std::thread completing([&] {
    db.write([&](transaction& tx) {
      const jobs::stage_done d{refs[0], 0, 0};
      CHECK(jobs::complete_stages(tx, std::span<const jobs::stage_done>(&d, 1))[0].held); // job 0's row is locked now
    });
  });
  REQUIRE(gate.wait_parked("tx.before_commit"));
  std::this_thread::sleep_for(5ms); // the database clock moves on: an extension is visible
  auto beat = std::async(std::launch::async, [&] {
    std::vector<std::int64_t> lost;
    auto alive = jobs::heartbeat(db, refs, 60s, &lost);
    return std::pair{alive, lost};
  });
  const bool finished = beat.wait_for(not_blocked) == std::future_status::ready;
  CHECK(finished);
  gate.release("tx.before_commit");
  completing.join();
  const auto [alive, lost] = beat.get();
  CHECK(lost.empty());                     // the locked claim is busy, not lost
  CHECK(alive.count(got[0].id) == 0);      // ... and was skipped, not waited for
  CHECK(alive.count(got[1].id) == 1);
  CHECK(alive.count(got[2].id) == 1);
  CHECK(expiry(db, got[1].id) > before1);  // committed: the other claims stay extended
  CHECK(expiry(db, got[2].id) > before2);
  CHECK(expiry(db, got[0].id) == 0);       // job 0 was finished by the completing transaction
  (void)before0;
}

TEST_CASE("heartbeats are HOT updates: they change no indexed column and the pages have room") {
  scratch_database s;
  if (s.kind() != backend_kind::postgres) return;
  auto db = migrated(s, 1); // one connection: its statistics are flushed when we ask
  // The structure that makes a heartbeat HOT-eligible, checked from the catalog: no index (key,
  // INCLUDE, expression or partial predicate) mentions a column the heartbeat sets, and the table
  // leaves room on its pages (fillfactor below 100).
  const auto indexed = db.read([](transaction& tx) {
    return tx.query_one<std::string>(
        "SELECT coalesce(string_agg(pg_get_indexdef(indexrelid), ' | '), '') FROM pg_index "
        "WHERE indrelid = 'casecore_jobs'::regclass");
  });
  REQUIRE_FALSE(indexed.empty());
  CHECK(indexed.find("lease_expires_at") == std::string::npos);
  CHECK(indexed.find("heartbeat_at") == std::string::npos);
  CHECK(detail::job_sql::heartbeat(dialect::postgresql).find("SET lease_expires_at = casecore_now_us() + $1, heartbeat_at = "
                                                             "casecore_now_us() FROM") != std::string::npos);
  CHECK(db.read([](transaction& tx) {
    return tx.query_one<std::string>("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'casecore_jobs'::regclass");
  }).find("fillfactor=70") != std::string::npos);

  // And the server agrees: heartbeats count as HOT updates. How many depends on whether other
  // sessions hold back page pruning (concurrent tests do), so this asks for some, not most.
  // The counters are a server connection's own until it flushes them: behind a transaction pooler
  // the statements run on several server connections, so this part needs a direct session.
  if (casecore::testing::behind_test_pooler()) {
    MESSAGE("skipped the statistics half: it reads one server connection's flushed counters, which a pooler spreads over several");
    return;
  }
  db.write([](transaction& tx) {
    for (int i = 0; i < 50; ++i) jobs::enqueue(tx, spec("full", "file:" + std::to_string(i)));
  });
  const auto got = jobs::claim(db, claimer("w", 50, 60s));
  REQUIRE(got.size() == 50);
  std::vector<jobs::claim_ref> refs;
  for (const auto& j : got) refs.push_back({j.id, j.lease_epoch});
  auto counters = [&] {
    db.read([](transaction& tx) { tx.exec("SELECT pg_stat_force_next_flush()"); });
    db.read([](transaction& tx) { tx.exec("SELECT 1"); }); // its end flushes
    return db.read([](transaction& tx) {
      auto r = tx.exec("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'casecore_jobs'::regclass");
      return std::pair{r[0].get<std::int64_t>(0), r[0].get<std::int64_t>(1)};
    });
  };
  const auto before = counters();
  constexpr int beats = 10;
  for (int beat = 0; beat < beats; ++beat) {
    CHECK(jobs::heartbeat(db, refs, 60s).size() == refs.size());
    std::this_thread::sleep_for(10ms);
  }
  const auto after = counters();
  const auto updated = after.first - before.first, hot = after.second - before.second;
  CHECK(updated == beats * 50);
  CHECK(hot >= 50); // at least the first beat of every row fits on its page
  MESSAGE("heartbeats: " << hot << " of " << updated << " updates were HOT");
}

TEST_CASE("reclaim skips an expired row locked by a transaction instead of waiting for it") {
  scratch_database s;
  if (s.kind() != backend_kind::postgres) return;
  auto db = migrated(s, 6);
  db.write([](transaction& tx) {
    for (int i = 0; i < 2; ++i) jobs::enqueue(tx, spec("full", "file:" + std::to_string(i)));
  });
  const auto got = jobs::claim(db, claimer("w", 2, 30ms));
  REQUIRE(got.size() == 2);
  std::this_thread::sleep_for(80ms); // both expired
  casecore::testing::step_gate gate;
  gate.pause_at("tx.before_commit");
  std::thread holder([&] {
    db.write([&](transaction& tx) { tx.exec("SELECT id FROM casecore_jobs WHERE id = $1 FOR UPDATE", got[0].id); });
  });
  REQUIRE(gate.wait_parked("tx.before_commit"));
  auto reclaim = std::async(std::launch::async, [&] { return jobs::reclaim_expired(db); });
  const bool finished = reclaim.wait_for(not_blocked) == std::future_status::ready;
  CHECK(finished);
  gate.release("tx.before_commit");
  holder.join();
  CHECK(reclaim.get() == 1);
  CHECK(jobs::get(db, got[0].id)->state == jobs::job_state::running); // skipped while locked
  CHECK(jobs::get(db, got[1].id)->state == jobs::job_state::queued);
  CHECK(jobs::reclaim_expired(db) == 1);
}

TEST_CASE("an enqueue that found a waiting job keeps it from starting until the enqueueing transaction commits") {
  scratch_database s;
  if (s.kind() != backend_kind::postgres) return; // SQLite: the claim waits for the writer anyway
  auto db = migrated(s, 6);
  auto first = spec("full", "file:1");
  first.payload = "v1";
  const auto id = jobs::enqueue(db, first).id;
  casecore::testing::step_gate gate;
  gate.pause_at("tx.before_commit");
  std::thread business([&] {
    db.write([&](transaction& tx) {
      auto again = first;
      again.payload = "v2";
      CHECK(jobs::enqueue(tx, again).id == id);
    });
  });
  REQUIRE(gate.wait_parked("tx.before_commit"));
  auto early = std::async(std::launch::async, [&] { return jobs::claim(db, claimer("w", 10, 60s)); });
  const bool finished = early.wait_for(not_blocked) == std::future_status::ready;
  CHECK(finished);
  gate.release("tx.before_commit");
  business.join();
  CHECK(early.get().empty()); // skipped: the business transaction had not committed yet
  const auto later = jobs::claim(db, claimer("w", 10, 60s));
  REQUIRE(later.size() == 1);
  CHECK(later[0].payload == "v2");
}

namespace {

// Total shared buffers (hit + read) of the top plan node of an EXPLAIN (ANALYZE, BUFFERS, FORMAT
// JSON) output: node figures include their children's.
std::int64_t top_buffers(const std::string& json) {
  std::int64_t hit = 0, read = 0;
  const std::regex h("\"Shared Hit Blocks\": ([0-9]+)"), r("\"Shared Read Blocks\": ([0-9]+)");
  std::smatch m;
  if (std::regex_search(json, m, h)) hit = std::stoll(m[1]);
  if (std::regex_search(json, m, r)) read = std::stoll(m[1]);
  return hit + read;
}

struct rollback_on_purpose {};

// EXPLAIN ANALYZE runs the statement: do it in a transaction that never commits.
std::string explain(database& db, const std::string& prepare, const std::string& execute, bool generic) {
  std::string out;
  try {
    db.write([&](transaction& tx) {
      if (generic) tx.exec("SET LOCAL plan_cache_mode = force_generic_plan");
      tx.exec(prepare);
      for (auto r : tx.exec("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + execute)) out += r.get<std::string>(0);
      const auto name = execute.substr(8, execute.find('(') == std::string::npos ? std::string::npos : execute.find('(') - 8);
      tx.exec("DEALLOCATE " + name); // never casecore's own cached statements
      throw rollback_on_purpose{};
    });
  } catch (const rollback_on_purpose&) {
  }
  return out;
}

} // namespace

TEST_CASE("an empty claim with many future jobs reads none of them") {
  scratch_database s;
  auto db = migrated(s);
  constexpr std::int64_t future = 100000;
  db.write([&](transaction& tx) {
    const bool pg = tx.dialect() == dialect::postgresql;
    tx.exec(pg ? "INSERT INTO casecore_jobs(operation, subject, stages, run_at, max_attempts, created_at, state) "
                 "SELECT 'later', 'f' || g, 'run', casecore_now_us() + 3600000000, 5, casecore_now_us(), 'scheduled' "
                 "FROM generate_series(1, $1) g"
               : "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1) "
                 "INSERT INTO casecore_jobs(operation, subject, stages, run_at, max_attempts, created_at, state) "
                 "SELECT 'later', 'f' || n, 'run', casecore_now_us() + 3600000000, 5, casecore_now_us(), 'scheduled' FROM g",
            future);
  });
  if (db.dialect() == dialect::postgresql) db.write([](transaction& tx) { tx.exec("ANALYZE casecore_jobs"); });
  CHECK(jobs::claim(db, claimer("w", 100, 60s)).empty());
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled'") == future); // none promoted
  CHECK(jobs::inspect(db).scheduled == future);

  if (db.dialect() == dialect::postgresql) {
    namespace q = casecore::detail::job_sql;
    for (const bool generic : {false, true}) {
      CAPTURE(generic);
      const auto promote = explain(db, "PREPARE casecore_test_promote AS " + q::promote(dialect::postgresql, 100),
                                   "EXECUTE casecore_test_promote", generic);
      const auto claim = explain(db, "PREPARE casecore_test_claim(text, bigint) AS " + q::claim(dialect::postgresql, 100),
                                 "EXECUTE casecore_test_claim('w', 60000000)", generic);
      CAPTURE(promote);
      CAPTURE(claim);
      // A scan of the future jobs would read thousands of pages (100,000 rows); an index probe a few.
      CHECK(top_buffers(promote) < 30);
      CHECK(top_buffers(claim) < 30);
      const std::regex removed("\"Rows Removed by (Join )?Filter\": [1-9]");
      CHECK_FALSE(std::regex_search(promote, removed));
      CHECK_FALSE(std::regex_search(claim, removed));
    }
  } else {
    // SQLite: both statements must search an index (a range of casecore_jobs_scheduled, the head of
    // casecore_jobs_ready), never scan the table.
    namespace q = casecore::detail::job_sql;
    for (const auto& text : {q::promote(dialect::sqlite, 100), q::claim_candidates_sqlite(100)}) {
      std::string plan;
      db.read([&](transaction& tx) {
        for (auto r : tx.exec("EXPLAIN QUERY PLAN " + text)) plan += r.get<std::string>(3) + "\n";
      });
      CAPTURE(plan);
      CHECK((plan.find("casecore_jobs_scheduled (run_at<?)") != std::string::npos ||
             plan.find("USING INDEX casecore_jobs_ready") != std::string::npos));
      CHECK(plan.find("SCAN casecore_jobs\n") == std::string::npos);
      CHECK(plan.find("SCAN q\n") == std::string::npos);
    }
  }
}

TEST_CASE("a job due later is claimed once due, and a retry backoff waits in the scheduled set") {
  scratch_database s;
  auto db = migrated(s);
  // Time passes by moving run_at back on the database clock (no sleeping against a busy machine).
  auto now_due = [&](std::int64_t id) {
    db.write([&](transaction& tx) { tx.exec("UPDATE casecore_jobs SET run_at = casecore_now_us() - 1000 WHERE id = $1", id); });
  };
  auto later = spec("op", "later");
  later.delay = 1h;
  const auto id = jobs::enqueue(db, later).id;
  CHECK(jobs::get(db, id)->state == jobs::job_state::queued); // scheduled in the database, queued to the API
  CHECK(jobs::list(db, jobs::job_state::queued).size() == 1);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled'") == 1);
  CHECK(jobs::claim(db, claimer("w", 10, 60s)).empty());
  now_due(id);
  auto got = jobs::claim(db, claimer("w", 10, 60s));
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == id);
  CHECK(jobs::fail(db, {got[0].id, got[0].lease_epoch}, 0, "later again", jobs::backoff{1h, 1h}) == jobs::job_state::queued);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled'") == 1);
  CHECK(jobs::claim(db, claimer("w", 10, 60s)).empty());
  now_due(id);
  CHECK(jobs::claim(db, claimer("w", 10, 60s)).size() == 1);
}

TEST_CASE("a running job that must go back to waiting is superseded by a newer job of its key") {
  scratch_database s;
  auto db = migrated(s);
  for (const auto* how : {"fail", "release", "reclaim"}) {
    CAPTURE(how);
    const std::string subject = std::string("file:") + how;
    const auto x = jobs::enqueue(db, spec("full", subject)).id;
    auto co = claimer("w", 10, std::string(how) == "reclaim" ? 30ms : 60s);
    const auto running = jobs::claim(db, co);
    REQUIRE(running.size() == 1);
    auto newer = spec("full", subject);
    newer.payload = "newest";
    const auto y = jobs::enqueue(db, newer);
    CHECK(y.created);
    const jobs::claim_ref ref{running[0].id, running[0].lease_epoch};
    if (std::string(how) == "fail") CHECK(jobs::fail(db, ref, 0, "boom") == jobs::job_state::cancelled);
    if (std::string(how) == "release") CHECK(jobs::release(db, ref));
    if (std::string(how) == "reclaim") {
      std::this_thread::sleep_for(80ms);
      CHECK(jobs::reclaim_expired(db) == 1);
    }
    const auto old = jobs::get(db, x);
    CHECK(old->state == jobs::job_state::cancelled);
    CHECK(old->last_error.find("superseded by job " + std::to_string(y.id)) != std::string::npos);
    const auto next = jobs::claim(db, claimer("w", 10, 60s));
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == y.id);
    CHECK(next[0].payload == "newest");
    db.write([&](transaction& tx) { jobs::complete_stage(tx, {next[0].id, next[0].lease_epoch}, 0, 0); });
  }
}

namespace {

// 30 finished jobs, job i finished i hours ago (jobs 10 and 11 at the same instant), plus active ones.
std::vector<std::int64_t> finished_history(database& db) {
  std::vector<std::int64_t> ids;
  db.write([&](transaction& tx) {
    for (int i = 0; i < 30; ++i) {
      auto sp = spec("op", "done:" + std::to_string(i));
      sp.stages = {"a", "b"};
      ids.push_back(jobs::enqueue(tx, sp).id);
    }
    jobs::enqueue(tx, spec("op", "waiting"));
  });
  auto got = jobs::claim(db, claimer("w", 31, 60s));
  REQUIRE(got.size() == 31);
  for (const auto& j : got) {
    if (j.subject == "waiting") continue;
    db.write([&](transaction& tx) {
      jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0);
      jobs::complete_stage(tx, {j.id, j.lease_epoch}, 1, 0);
    });
  }
  jobs::enqueue(db, spec("op", "queued"));
  db.write([&](transaction& tx) {
    for (int i = 0; i < 30; ++i) {
      const auto hours = i == 11 ? 10 : i;
      tx.exec("UPDATE casecore_jobs SET finished_at = casecore_now_us() - $1 WHERE id = $2",
              std::int64_t{hours} * 3600 * 1000000 + 1000, ids[static_cast<std::size_t>(i)]);
    }
  });
  return ids;
}

std::vector<std::int64_t> finished_ids(database& db) {
  return db.read([](transaction& tx) {
    std::vector<std::int64_t> out;
    for (auto r : tx.exec("SELECT id FROM casecore_jobs WHERE state = 'succeeded' ORDER BY id")) out.push_back(r.get<std::int64_t>(0));
    return out;
  });
}

} // namespace

TEST_CASE("prune with a retention keeps exactly what the setting says, in small batches") {
  scratch_database s;
  auto db = migrated(s);
  const auto ids = finished_history(db);
  const auto active_before = scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state IN ('queued', 'scheduled', 'running')");
  CHECK(active_before == 2);
  // By age: jobs that finished more than 10.5 hours ago go (i = 11 finished 10 hours ago: stays).
  jobs::retention by_age;
  by_age.max_age = std::chrono::minutes(630);
  CHECK(jobs::prune(db, by_age, 4) == 18);
  std::vector<std::int64_t> expect(ids.begin(), ids.begin() + 12);
  CHECK(finished_ids(db) == expect);
  // By count: the newest 5 stay (finished 0..4 hours ago); ties are broken by id.
  jobs::retention by_count;
  by_count.max_finished = 5;
  CHECK(jobs::prune(db, by_count, 3, 4) == 4 + 2); // max_rows stops after whole batches...
  CHECK(jobs::prune(db, by_count, 3) == 1);        // ... and the next call goes on
  expect.assign(ids.begin(), ids.begin() + 5);
  CHECK(finished_ids(db) == expect);
  CHECK(jobs::prune(db, by_count) == 0);
  // Stage rows went with their jobs; active jobs are never pruned.
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_stages") == 10);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state IN ('queued', 'scheduled', 'running')") == active_before);
  jobs::retention none;
  CHECK(jobs::prune(db, none) == 0);
  CHECK_THROWS_AS(jobs::prune(db, jobs::retention{-1ms, 0}), invalid_argument);
  CHECK_THROWS_AS(jobs::prune(db, jobs::retention{0ms, -1}), invalid_argument);
  CHECK_THROWS_AS(jobs::prune(db, by_count, 0), invalid_argument);
}

TEST_CASE("one elected worker prunes finished jobs, not every worker") {
  scratch_database s;
  auto db = migrated(s, 8);
  db.write([](transaction& tx) {
    for (int i = 0; i < 20; ++i) jobs::enqueue(tx, spec("op", "s" + std::to_string(i)));
  });
  auto got = jobs::claim(db, claimer("setup", 20, 60s));
  for (const auto& j : got) db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0); });
  jobs::worker_options o;
  o.threads = 1;
  o.lease = casecore::testing::job_lease(300ms);
  o.maintenance = 50ms;
  o.retain = {0ms, 3};
  o.poll = 20ms;
  auto oa = o, ob = o;
  oa.owner = "worker-a";
  ob.owner = "worker-b";
  jobs::worker a(db, oa), b(db, ob);
  a.start();
  b.start();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") > 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(200ms); // a few more maintenance rounds
  const auto leader = lease::inspect(db, "casecore.jobs.maintenance");
  const auto pa = a.stats().pruned, pb = b.stats().pruned;
  a.stop();
  b.stop();
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == 3);
  CHECK(pa + pb == 17);
  CHECK(((pa == 17 && pb == 0) || (pa == 0 && pb == 17)));
  REQUIRE(leader);
  CHECK(leader->owner == (pa > 0 ? "worker-a" : "worker-b"));
}

TEST_CASE("reclaim runs on the maintenance leader; the others only as a backstop one lease later") {
  scratch_database s;
  auto db = migrated(s, 8);
  // Claims of a dead worker, expiring now. Written as running in the enqueue's own transaction, so
  // the workers under test (which claim whatever is queued) never see them queued; out of attempts,
  // so a reclaim ends them `failed` and no worker claims them afterwards.
  auto dead_claims = [&](const std::string& prefix, int n) {
    db.write([&](transaction& tx) {
      for (int i = 0; i < n; ++i) {
        auto j = spec("op", prefix + std::to_string(i));
        j.max_attempts = 1;
        jobs::enqueue(tx, j);
      }
      tx.exec("UPDATE casecore_jobs SET state = 'running', attempts = 1, lease_owner = 'dead', lease_epoch = 1, "
              "lease_expires_at = casecore_now_us() WHERE subject LIKE $1",
              prefix + "%");
    });
  };
  auto running = [&] { return scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'running'"); };
  jobs::worker_options o;
  o.threads = 1;
  o.lease = 3s; // the backstop delay of a worker that is not the leader
  o.heartbeat = 50ms;
  o.maintenance = 50ms; // leader_ttl 3 s: the election is ticked every second
  o.poll = 20ms;
  o.retain = {0ms, 0};

  SUBCASE("reclaim_expired refuses a negative delay and requeues only claims expired at least that long") {
    CHECK_THROWS_AS(jobs::reclaim_expired(db, -1ms), invalid_argument);
    dead_claims("d-", 3);
    CHECK(jobs::reclaim_expired(db, std::chrono::hours(1)) == 0); // expired just now, not an hour ago
    CHECK(running() == 3);
    CHECK(jobs::reclaim_expired(db) == 3);
    CHECK(running() == 0);
  }

  SUBCASE("a live leader requeues every expired claim; the other worker requeues none") {
    auto oa = o, ob = o;
    oa.owner = "worker-a";
    ob.owner = "worker-b";
    jobs::worker a(db, oa);
    a.start();
    REQUIRE(wait_until([&] {
      const auto l = lease::inspect(db, "casecore.jobs.maintenance");
      return l && l->owner == "worker-a";
    }));
    jobs::worker b(db, ob);
    b.start();
    for (int round = 0; round < 3; ++round) {
      dead_claims("r" + std::to_string(round) + "-", 5);
      REQUIRE(wait_until([&] { return running() == 0; }));
    }
    const auto ra = a.stats().reclaimed, rb = b.stats().reclaimed;
    a.stop();
    b.stop();
    CHECK(ra == 15);
    CHECK(rb == 0);
  }

  SUBCASE("with the leader stalled (its lease held, nothing requeued), another worker requeues them one lease after expiry") {
    // A stalled leader: it won the election and then stopped doing anything.
    leader_election stalled(db, "casecore.jobs.maintenance", "stalled", leader_options{60s, {}, {}});
    REQUIRE(stalled.tick());
    auto ob = o;
    ob.owner = "worker-b";
    ob.lease = 4s;
    jobs::worker b(db, ob);
    b.start();
    dead_claims("s-", 4);
    const auto expired_at = std::chrono::steady_clock::now();
    // Well inside the backstop delay (4 s): nothing is requeued yet, the claims are only expired.
    std::this_thread::sleep_for(1s);
    const auto early = running();
    const bool checked_in_time = std::chrono::steady_clock::now() - expired_at < 3500ms;
    REQUIRE(wait_until([&] { return running() == 0; }));
    const auto rb = b.stats().reclaimed;
    b.stop();
    if (checked_in_time) CHECK(early == 4); // otherwise the machine stalled past the delay: no verdict
    else MESSAGE("the early check came after the backstop delay; not judged");
    CHECK(rb == 4);
    CHECK(lease::inspect(db, "casecore.jobs.maintenance")->owner == "stalled");
  }
}

TEST_CASE("a database created by casecore.jobs version 1 upgrades with its jobs") {
  scratch_database s;
  auto db = migrated(s);
  // Back to the version 1 schema (what an existing database has), with jobs in it.
  db.write([](transaction& tx) {
    const bool pg = tx.dialect() == dialect::postgresql;
    tx.exec_script(std::string("DROP TABLE casecore_job_pauses; DROP INDEX casecore_jobs_paused; "
                               "DROP INDEX casecore_jobs_waiting; DROP INDEX casecore_jobs_running_job; DROP INDEX casecore_jobs_scheduled;") +
                   (pg ? "DROP SEQUENCE casecore_job_fence;" : "DROP TABLE casecore_job_fence;") +
                   "CREATE UNIQUE INDEX casecore_jobs_active ON casecore_jobs(operation, subject) WHERE state IN ('queued', 'running');"
                   "CREATE INDEX casecore_jobs_running ON casecore_jobs(lease_expires_at) WHERE state = 'running';"
                   "DROP INDEX casecore_jobs_running_key;"
                   "CREATE INDEX casecore_jobs_running_key ON casecore_jobs(concurrency_key) WHERE state = 'running'");
    tx.exec("DELETE FROM casecore_migrations WHERE component = 'casecore.jobs' AND version >= 2");
    const std::string insert = "INSERT INTO casecore_jobs(operation, subject, stages, run_at, max_attempts, created_at, state, "
                               "lease_epoch, lease_owner, lease_expires_at) VALUES ";
    tx.exec(insert + "('op', 'future', 'run', casecore_now_us() + 3600000000, 5, casecore_now_us(), 'queued', 0, '', 0), "
                     "('op', 'due', 'run', casecore_now_us(), 5, casecore_now_us(), 'queued', 3, '', 0), "
                     "('op', 'held', 'run', casecore_now_us(), 5, casecore_now_us(), 'running', 50, 'old', casecore_now_us() + 3600000000)");
  });
  CHECK(schema_version(db, "casecore.jobs") == 1);
  const auto report = migrate(db);
  CHECK(schema_version(db, "casecore.jobs") >= 2);
  CHECK(std::find_if(report.applied.begin(), report.applied.end(), [](const std::string& a) { return a.starts_with("casecore.jobs:2"); }) !=
        report.applied.end());
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE subject = 'future' AND state = 'scheduled'") == 1);
  const auto got = jobs::claim(db, claimer("w", 10, 60s));
  REQUIRE(got.size() == 1);
  CHECK(got[0].subject == "due");
  CHECK(got[0].lease_epoch > 50); // tokens continue above every epoch handed out before the upgrade
  auto dup = spec("op", "held");
  CHECK(jobs::enqueue(db, dup).created); // the job keys apply: one waiting next to the running one
}
