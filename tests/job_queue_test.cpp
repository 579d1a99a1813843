// The job queue: dedup (single, bulk, threads, processes), claims, fencing by epoch, stages,
// retries, cancellation, priorities, run-at, limits, reclaim, prune, inspection. Both backends.
#include "job_test_env.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

database migrated(const scratch_database& s, int pool = 0) {
  database_options o;
  if (pool) o.pool.size = static_cast<std::size_t>(pool);
  return s.open_migrated(o);
}

jobs::job_spec spec(std::string op, std::string subject, std::vector<std::string> stages = {}) {
  jobs::job_spec j;
  j.operation = std::move(op);
  j.subject = std::move(subject);
  j.stages = std::move(stages);
  return j;
}

jobs::claim_options claimer(std::string owner, std::size_t batch = 1) {
  jobs::claim_options o;
  o.owner = std::move(owner);
  o.batch = batch;
  return o;
}

std::int64_t count(database& db, const std::string& where) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE " + where); });
}

void complete_all(database& db, const jobs::job& j) {
  for (int i = j.current_stage; i < static_cast<int>(j.stages.size()); ++i)
    db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, i, 0); });
}

} // namespace

TEST_CASE("enqueueing a waiting (operation, subject) again returns the waiting job") {
  scratch_database s;
  auto db = migrated(s);
  auto a = jobs::enqueue(db, spec("full", "file:1", {"count", "index", "rules", "iocs"}));
  CHECK(a.created);
  auto b = jobs::enqueue(db, spec("full", "file:1"));
  CHECK_FALSE(b.created);
  CHECK(b.id == a.id);
  CHECK(jobs::get(db, a.id)->stages.size() == 4); // the waiting job keeps its stages
  CHECK(jobs::enqueue(db, spec("reindex", "file:1")).created); // another operation is another job
  // Once it runs, a new request waits next to it; once it finished, a new one is created again.
  auto claimed = jobs::claim(db, claimer("w", 10));
  REQUIRE(claimed.size() == 2);
  const auto next = jobs::enqueue(db, spec("full", "file:1"));
  CHECK(next.created);
  CHECK(next.id != a.id);
  for (const auto& j : claimed) complete_all(db, j);
  CHECK(jobs::enqueue(db, spec("full", "file:1")).id == next.id); // still waiting
  CHECK(jobs::get(db, a.id)->state == jobs::job_state::succeeded);
  const auto again = jobs::claim(db, claimer("w", 10));
  REQUIRE(again.size() == 1);
  complete_all(db, again[0]);
  auto c = jobs::enqueue(db, spec("full", "file:1"));
  CHECK(c.created);
  CHECK(c.id != next.id);
}

TEST_CASE("re-enqueueing while a job runs queues one job next to it; the newest payload runs after the current run") {
  // Issue 10, defect 7: dedup covered queued *and running* jobs, so a request made while the job ran
  // returned created=false and its newer payload never ran (a lost update).
  scratch_database s;
  auto db = migrated(s);
  auto first = spec("full", "file:1", {"count", "index"});
  first.payload = "v1";
  const auto a = jobs::enqueue(db, first);
  CHECK(a.created);
  const auto running = jobs::claim(db, claimer("w", 10)).at(0);
  CHECK(running.payload == "v1");
  auto second = first;
  second.payload = "v2";
  const auto b = jobs::enqueue(db, second);
  CHECK(b.created);
  CHECK(b.id != a.id);
  auto third = first;
  third.payload = "v3";
  const auto c = jobs::enqueue(db, third); // one job waits per (operation, subject): it takes the newest payload
  CHECK_FALSE(c.created);
  CHECK(c.id == b.id);
  CHECK(jobs::get(db, b.id)->payload == "v3");
  CHECK(jobs::get(db, b.id)->state == jobs::job_state::queued);
  CHECK(jobs::claim(db, claimer("w2", 10)).empty()); // never two runs of one (operation, subject) at once
  complete_all(db, running);
  const auto next = jobs::claim(db, claimer("w2", 10));
  REQUIRE(next.size() == 1);
  CHECK(next[0].id == b.id);
  CHECK(next[0].payload == "v3");
  CHECK(next[0].current_stage == 0);
}

TEST_CASE("bulk enqueue collapses duplicates within the batch and against existing jobs, in the caller's transaction") {
  scratch_database s;
  auto db = migrated(s);
  auto existing = jobs::enqueue(db, spec("full", "file:5"));
  std::vector<jobs::job_spec> batch;
  for (int i = 0; i < 120; ++i) batch.push_back(spec("full", "file:" + std::to_string(i % 60)));
  auto out = db.write([&](transaction& tx) { return jobs::enqueue_bulk(tx, batch); });
  REQUIRE(out.size() == batch.size());
  CHECK(count(db, "1=1") == 60);
  int created = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    created += out[i].created;
    CHECK(out[i].id == out[i % 60].id);
  }
  CHECK(created == 59);
  CHECK(out[5].id == existing.id);
  CHECK_FALSE(out[5].created);
  // A rolled-back business transaction leaves no job behind.
  CHECK_THROWS(db.write([&](transaction& tx) {
    jobs::enqueue_bulk(tx, std::vector<jobs::job_spec>{spec("x", "a"), spec("x", "b")});
    throw std::runtime_error("business write failed");
  }));
  CHECK(count(db, "operation = 'x'") == 0);
}

TEST_CASE("threads enqueueing the same jobs concurrently create each job once") {
  scratch_database s;
  auto db = migrated(s, 8);
  std::atomic<int> created{0};
  casecore::testing::race(8, [&](std::size_t t) {
    for (int i = 0; i < 20; ++i) {
      if (jobs::enqueue(db, spec("full", "file:" + std::to_string(i))).created) ++created;
      std::vector<jobs::job_spec> bulk;
      for (int k = 0; k < 10; ++k) bulk.push_back(spec("bulk", "file:" + std::to_string((k * 7 + static_cast<int>(t)) % 30)));
      for (auto e : db.write([&](transaction& tx) { return jobs::enqueue_bulk(tx, bulk); })) created += e.created;
    }
  });
  CHECK(count(db, "operation = 'full'") == 20);
  CHECK(count(db, "operation = 'bulk'") == 30);
  CHECK(created == 50);
}

CASECORE_CHILD(jobs_enqueue_dups) {
  auto db = casecore::open(args.at(0));
  int created = 0;
  for (int i = 0; i < 40; ++i) created += jobs::enqueue(db, spec("full", "file:" + std::to_string(i))).created;
  std::printf("%d\n", created);
  return 0;
}

TEST_CASE("processes enqueueing the same jobs concurrently create each job once") {
  scratch_database s;
  auto db = migrated(s);
  int created = 0;
  for (const auto& r : casecore::testing::run_children("jobs_enqueue_dups", 4, {s.url()})) {
    CHECK(r.exit_code == 0);
    created += std::atoi(r.output.c_str());
  }
  CHECK(created == 40);
  CHECK(count(db, "1=1") == 40);
}

TEST_CASE("claims follow priority, then run-at, and skip jobs not yet due") {
  scratch_database s;
  auto db = migrated(s);
  auto low = jobs::enqueue(db, spec("op", "low"));
  auto later = spec("op", "later");
  later.delay = 1h;
  jobs::enqueue(db, later);
  auto high_spec = spec("op", "high");
  high_spec.priority = 10;
  auto high = jobs::enqueue(db, high_spec);
  auto got = jobs::claim(db, claimer("w", 10));
  REQUIRE(got.size() == 2);
  CHECK(got[0].id == high.id);
  CHECK(got[1].id == low.id);
  CHECK(got[0].state == jobs::job_state::running);
  CHECK(got[0].attempts == 1);
  CHECK(got[0].lease_owner == "w");
  CHECK(jobs::claim(db, claimer("w", 10)).empty());
  auto st = jobs::inspect(db);
  CHECK(st.by_state["running"] == 2);
  CHECK(st.by_state["queued"] == 1);
  CHECK(st.ready == 0);
  CHECK(st.active_by_stage["run"] == 3);
}

TEST_CASE("a stale worker's heartbeat, stage update and completion are refused") {
  scratch_database s;
  auto db = migrated(s);
  auto e = jobs::enqueue(db, spec("full", "file:1", {"count", "index"}));
  auto o = claimer("slow");
  o.lease = 30ms;
  auto first = jobs::claim(db, o).at(0);
  std::this_thread::sleep_for(80ms);
  CHECK(jobs::inspect(db).stuck == std::vector<std::int64_t>{e.id});
  CHECK(jobs::reclaim_expired(db) == 1);
  auto second = jobs::claim(db, claimer("fast")).at(0);
  CHECK(second.id == first.id);
  CHECK(second.lease_epoch > first.lease_epoch);
  CHECK(second.attempts == 2);
  const jobs::claim_ref stale{first.id, first.lease_epoch};
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::complete_stage(tx, stale, 0, 0); }), lease_lost);
  CHECK_THROWS_AS(jobs::fail(db, stale, 0, "x"), lease_lost);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::check(tx, stale); }), lease_lost);
  std::vector<std::int64_t> lost;
  CHECK(jobs::heartbeat(db, std::vector<jobs::claim_ref>{stale}, 1s, &lost).empty());
  CHECK(lost == std::vector<std::int64_t>{first.id});
  CHECK_FALSE(jobs::release(db, stale));
  complete_all(db, second);
  auto done = jobs::get(db, e.id);
  CHECK(done->state == jobs::job_state::succeeded);
  CHECK(done->current_stage == 2);
  auto st = jobs::stages(db, e.id);
  REQUIRE(st.size() == 2);
  CHECK(st[0].stage == "count");
  CHECK(st[1].state == "succeeded");
}

TEST_CASE("a failed stage is retried with backoff from that stage, then failed with its error kept") {
  scratch_database s;
  auto db = migrated(s);
  auto sp = spec("full", "file:9", {"count", "index", "rules"});
  sp.max_attempts = 2;
  auto e = jobs::enqueue(db, sp);
  auto j = jobs::claim(db, claimer("w")).at(0);
  db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0); });
  jobs::backoff quick{1ms, 1ms};
  CHECK(jobs::fail(db, {j.id, j.lease_epoch}, 1, "index broke", quick) == jobs::job_state::queued);
  auto q = jobs::get(db, e.id);
  CHECK(q->state == jobs::job_state::queued);
  CHECK(q->current_stage == 1); // resumes at the stage that failed
  CHECK(q->last_error == "index broke");
  std::this_thread::sleep_for(5ms);
  auto again = jobs::claim(db, claimer("w")).at(0);
  CHECK(again.current_stage == 1);
  CHECK(jobs::fail(db, {again.id, again.lease_epoch}, 1, "index broke again", quick) == jobs::job_state::failed);
  auto f = jobs::get(db, e.id);
  CHECK(f->state == jobs::job_state::failed);
  CHECK(f->last_error == "index broke again");
  CHECK(f->finished_at > 0);
  auto st = jobs::stages(db, e.id);
  REQUIRE(st.size() == 2);
  CHECK(st[1].state == "failed");
  CHECK(st[1].attempts == 2);
  CHECK(st[1].error == "index broke again");
  // Backoff really delays: a long one keeps the job out of claims.
  auto sp2 = spec("full", "file:10");
  auto e2 = jobs::enqueue(db, sp2);
  auto j2 = jobs::claim(db, claimer("w")).at(0);
  CHECK(jobs::fail(db, {j2.id, j2.lease_epoch}, 0, "later", jobs::backoff{1h, 2h}) == jobs::job_state::queued);
  CHECK(jobs::claim(db, claimer("w")).empty());
  CHECK(jobs::get(db, e2.id)->run_at > jobs::get(db, e2.id)->created_at + 1800LL * 1000000);
}

TEST_CASE("cancellation ends a queued job at once and asks a running one to stop") {
  scratch_database s;
  auto db = migrated(s);
  auto queued = jobs::enqueue(db, spec("op", "a"));
  CHECK(jobs::cancel(db, queued.id));
  CHECK(jobs::get(db, queued.id)->state == jobs::job_state::cancelled);
  CHECK_FALSE(jobs::cancel(db, queued.id));
  auto running = jobs::enqueue(db, spec("op", "b", {"s1", "s2"}));
  auto j = jobs::claim(db, claimer("w")).at(0);
  CHECK(jobs::cancel(db, running.id));
  auto beat = jobs::heartbeat(db, std::vector<jobs::claim_ref>{{j.id, j.lease_epoch}}, 10s);
  CHECK(beat.at(j.id));
  CHECK(jobs::acknowledge_cancel(db, {j.id, j.lease_epoch}));
  CHECK(jobs::get(db, running.id)->state == jobs::job_state::cancelled);
  CHECK(jobs::enqueue(db, spec("op", "b")).created); // no longer active
}

TEST_CASE("retry requeues a failed or cancelled job at the stage where it stopped, once") {
  scratch_database s;
  auto db = migrated(s);
  auto sp = spec("full", "file:1", {"count", "index", "rules"});
  sp.max_attempts = 1;
  auto e = jobs::enqueue(db, sp);
  auto j = jobs::claim(db, claimer("w")).at(0);
  db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0); });
  CHECK(jobs::fail(db, {j.id, j.lease_epoch}, 1, "index broke") == jobs::job_state::failed);

  auto r = jobs::retry(db, e.id);
  CHECK(r.state == jobs::job_state::queued);
  CHECK(r.current_stage == 1);
  CHECK(r.attempts == 0);
  CHECK(r.finished_at == 0);
  CHECK(r.last_error == "index broke");
  CHECK_THROWS_AS(jobs::retry(db, e.id), invalid_transition); // queued now
  CHECK_THROWS_AS(jobs::retry(db, 999999), not_found);
  auto again = jobs::claim(db, claimer("w")).at(0);
  CHECK(again.id == e.id);
  CHECK(again.current_stage == 1);
  CHECK_THROWS_AS(jobs::retry(db, e.id), invalid_transition); // running
  complete_all(db, again);
  CHECK_THROWS_AS(jobs::retry(db, e.id), invalid_transition); // succeeded

  // A cancelled job comes back, unless another job for its subject became active meanwhile.
  auto c = jobs::enqueue(db, spec("op", "a"));
  CHECK(jobs::cancel(db, c.id));
  auto other = jobs::enqueue(db, spec("op", "a"));
  CHECK_THROWS_AS(jobs::retry(db, c.id), already_exists);
  CHECK(jobs::cancel(db, other.id));
  CHECK(jobs::retry(db, c.id).state == jobs::job_state::queued);
  CHECK(count(db, "operation = 'op' AND state = 'queued'") == 1);
}

TEST_CASE("threads retrying one failed job at once requeue it exactly once") {
  scratch_database s;
  auto db = migrated(s, 8);
  auto sp = spec("op", "x");
  sp.max_attempts = 1;
  auto e = jobs::enqueue(db, sp);
  auto j = jobs::claim(db, claimer("w")).at(0);
  CHECK(jobs::fail(db, {j.id, j.lease_epoch}, 0, "boom") == jobs::job_state::failed);
  std::atomic<int> won{0}, refused{0};
  casecore::testing::race(8, [&](std::size_t) {
    try {
      jobs::retry(db, e.id);
      ++won;
    } catch (const invalid_transition&) {
      ++refused;
    }
  });
  CHECK(won == 1);
  CHECK(refused == 7);
  CHECK(count(db, "state = 'queued'") == 1);
}

TEST_CASE("list shows jobs newest first, filtered by state, up to a limit") {
  scratch_database s;
  auto db = migrated(s);
  for (int i = 0; i < 5; ++i) jobs::enqueue(db, spec("op", "s" + std::to_string(i)));
  CHECK(jobs::cancel(db, jobs::list(db).back().id)); // the oldest
  auto all = jobs::list(db);
  REQUIRE(all.size() == 5);
  CHECK(all.front().id > all.back().id);
  CHECK(jobs::list(db, jobs::job_state::queued).size() == 4);
  auto cancelled = jobs::list(db, jobs::job_state::cancelled);
  REQUIRE(cancelled.size() == 1);
  CHECK(cancelled[0].subject == "s0");
  CHECK(jobs::list(db, std::nullopt, 2).size() == 2);
  CHECK(jobs::list(db, jobs::job_state::failed).empty());
  CHECK_THROWS_AS(jobs::list(db, std::nullopt, 0), invalid_argument);
  CHECK(jobs::state_from_string("failed") == jobs::job_state::failed);
  CHECK_FALSE(jobs::state_from_string("done"));
}

TEST_CASE("release hands a job back without counting the attempt") {
  scratch_database s;
  auto db = migrated(s);
  jobs::enqueue(db, spec("op", "a"));
  auto j = jobs::claim(db, claimer("w")).at(0);
  CHECK(jobs::release(db, {j.id, j.lease_epoch}));
  auto again = jobs::claim(db, claimer("w2")).at(0);
  CHECK(again.attempts == 1);
  CHECK(again.lease_epoch == j.lease_epoch + 1);
}

TEST_CASE("concurrency limits hold under many concurrent claimers (checked from the database)") {
  scratch_database s;
  auto db = migrated(s, 10);
  db.write([](transaction& tx) { tx.exec_script("CREATE TABLE samples(total BIGINT NOT NULL, per_key BIGINT NOT NULL)"); });
  std::vector<jobs::job_spec> specs;
  for (int i = 0; i < 90; ++i) {
    auto sp = spec("full", "file:" + std::to_string(i));
    sp.concurrency_key = "case:" + std::to_string(i % 5);
    specs.push_back(sp);
  }
  db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); });
  std::atomic<int> done{0};
  casecore::testing::race(8, [&](std::size_t t) {
    auto o = claimer("w" + std::to_string(t), casecore::testing::job_batch(3));
    o.max_running = 4;
    o.max_per_key = 1;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (done < 90 && std::chrono::steady_clock::now() < deadline) {
      auto got = jobs::claim(db, o);
      if (got.empty()) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      // Sample the running set from the database while we hold claims.
      db.write([](transaction& tx) {
        tx.exec("INSERT INTO samples(total, per_key) SELECT (SELECT count(*) FROM casecore_jobs WHERE state = 'running'), "
                "(SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM casecore_jobs WHERE state = 'running' "
                "GROUP BY concurrency_key) k)");
      });
      for (const auto& j : got) {
        complete_all(db, j);
        ++done;
      }
    }
  });
  CHECK(done == 90);
  CHECK(count(db, "state = 'succeeded'") == 90);
  db.read([](transaction& tx) {
    CHECK(tx.query_one<std::int64_t>("SELECT count(*) FROM samples") > 0);
    CHECK(tx.query_one<std::int64_t>("SELECT max(total) FROM samples") <= 4);
    CHECK(tx.query_one<std::int64_t>("SELECT max(per_key) FROM samples") == 1);
  });
}

TEST_CASE("prune removes old finished jobs and their stages, never active ones") {
  scratch_database s;
  auto db = migrated(s);
  for (int i = 0; i < 30; ++i) jobs::enqueue(db, spec("op", std::to_string(i), {"a", "b"}));
  for (const auto& j : jobs::claim(db, claimer("w", 20))) complete_all(db, j);
  CHECK(jobs::prune(db, 1h) == 0);
  std::this_thread::sleep_for(5ms);
  CHECK(jobs::prune(db, 1ms) == 20);
  CHECK(count(db, "1=1") == 10);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_job_stages"); }) == 0);
  CHECK(jobs::claim(db, claimer("w", 20)).size() == 10);
}

TEST_CASE("pipelines name stage subsets") {
  jobs::pipeline p{{{"full", {"count", "index", "rules", "iocs"}}, {"rules-only", {"rules", "iocs"}}, {"ioc-only", {"iocs"}}}};
  CHECK(p.make("rules-only", "file:1").stages == std::vector<std::string>{"rules", "iocs"});
  CHECK_THROWS_AS(p.make("nope", "file:1"), invalid_argument);
}

TEST_CASE("bad job input is rejected before anything is written") {
  scratch_database s;
  auto db = migrated(s);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("", "s")), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "")), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", std::string(201, 's'))), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "s", {"a", "a"})), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "s", {"bad,name"})), invalid_argument);
  auto neg = spec("op", "s");
  neg.delay = -1ms;
  CHECK_THROWS_AS(jobs::enqueue(db, neg), invalid_argument);
  neg = spec("op", "s");
  neg.max_attempts = 0;
  CHECK_THROWS_AS(jobs::enqueue(db, neg), invalid_argument);
  // One bad spec in a bulk call rejects the whole call.
  CHECK_THROWS_AS(db.write([](transaction& tx) { jobs::enqueue_bulk(tx, std::vector<jobs::job_spec>{spec("op", "ok"), spec("", "x")}); }),
                  invalid_argument);
  CHECK(count(db, "1=1") == 0);
  CHECK_THROWS_AS(jobs::claim(db, claimer("")), invalid_argument);
  CHECK_THROWS_AS(jobs::claim(db, claimer("w", 0)), invalid_argument);
  auto o = claimer("w");
  o.lease = 0ms;
  CHECK_THROWS_AS(jobs::claim(db, o), invalid_argument);
  CHECK_THROWS_AS(jobs::prune(db, -1ms), invalid_argument);
}

TEST_CASE("job limits: stages, payload, attempts, claim batch and limits, prune batch; read transactions; nothing written") {
  scratch_database s;
  auto db = migrated(s);
  std::vector<std::string> many;
  for (int i = 0; i < 65; ++i) many.push_back("s" + std::to_string(i));
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "a", many)), invalid_argument);
  auto big = spec("op", "b");
  big.payload.assign(1024 * 1024 + 1, 'p');
  CHECK_THROWS_AS(jobs::enqueue(db, big), invalid_argument);
  auto attempts = spec("op", "c");
  attempts.max_attempts = 1001;
  CHECK_THROWS_AS(jobs::enqueue(db, attempts), invalid_argument);
  db.read([](transaction& tx) {
    CHECK_THROWS_AS(jobs::enqueue(tx, spec("op", "d")), invalid_argument);
    CHECK_THROWS_AS(jobs::enqueue_bulk(tx, std::vector<jobs::job_spec>{spec("op", "e")}), invalid_argument);
  });
  CHECK_THROWS_AS(jobs::enqueue(db, spec(std::string(101, 'o'), "f")), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "g", {std::string(65, 's')})), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "h", {"two words"})), invalid_argument);
  CHECK_THROWS_AS(jobs::enqueue(db, spec("op", "i", {"a/b"})), invalid_argument);
  CHECK(count(db, "1=1") == 0);
  CHECK(jobs::enqueue(db, spec(std::string(100, 'o'), "j", {"Scan.v2:pre-check_1", std::string(64, 's')})).created); // '.', ':', '-', '_' are name characters
  CHECK(jobs::heartbeat(db, std::span<const jobs::claim_ref>(), std::chrono::seconds(30)).empty()); // nothing to extend
  CHECK(count(db, "1=1") == 1);
  db.write([](transaction& tx) { tx.exec("DELETE FROM casecore_jobs"); });
  // The bounds themselves are accepted.
  many.pop_back();
  big.payload.pop_back();
  attempts.max_attempts = 1000;
  CHECK(jobs::enqueue(db, spec("op", "a", many)).created);
  CHECK(jobs::enqueue(db, big).created);
  CHECK(jobs::enqueue(db, attempts).created);

  CHECK_THROWS_AS(jobs::claim(db, claimer("w", 1001)), invalid_argument);
  auto limits = claimer("w");
  limits.max_running = -1;
  CHECK_THROWS_AS(jobs::claim(db, limits), invalid_argument);
  limits = claimer("w");
  limits.max_per_key = -1;
  CHECK_THROWS_AS(jobs::claim(db, limits), invalid_argument);
  CHECK(count(db, "state = 'running'") == 0); // no refused claim took a job
  CHECK_THROWS_AS(jobs::prune(db, jobs::retention{1h, 0}, 0), invalid_argument);
  CHECK_THROWS_AS(jobs::prune(db, jobs::retention{1h, 0}, 10001), invalid_argument);
  CHECK(count(db, "1=1") == 3);
}

TEST_CASE("completing a stage other than the current one, or one job twice in a batch, is refused and completes nothing") {
  scratch_database s;
  auto db = migrated(s);
  jobs::enqueue(db, spec("op", "file:1", {"a", "b"}));
  auto got = jobs::claim(db, claimer("w"));
  REQUIRE(got.size() == 1);
  const jobs::claim_ref ref{got[0].id, got[0].lease_epoch};
  try {
    db.write([&](transaction& tx) { jobs::complete_stage(tx, ref, 1, 0); });
    FAIL("completing stage 1 while the job is at stage 0 was accepted");
  } catch (const invalid_argument& e) {
    CHECK(std::string(e.what()).find("is at stage 0, not 1") != std::string::npos);
  }
  const jobs::stage_done twice[] = {{ref, 0, 0}, {ref, 0, 0}};
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::complete_stages(tx, twice); }), invalid_argument);
  db.write([&](transaction& tx) { CHECK(jobs::complete_stages(tx, std::span<const jobs::stage_done>()).empty()); });
  CHECK(jobs::get(db, ref.id)->current_stage == 0);
  CHECK(jobs::stages(db, ref.id).empty());
  // A failure reported for a stage the job does not declare keeps the error but records no stage row.
  CHECK(jobs::fail(db, ref, 7, "boom", {1h, 1h}) != jobs::job_state::failed);
  CHECK(jobs::get(db, ref.id)->last_error == "boom");
  CHECK(jobs::stages(db, ref.id).empty());
}
