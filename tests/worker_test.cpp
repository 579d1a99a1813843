// The worker runtime: stage handlers over pipelines, retries that resume at the failed stage,
// cancellation, graceful shutdown, fencing of a paused handler, and several worker processes with
// one killed by SIGKILL mid-stage. Invariants are checked from the database. Both backends.
#include "job_test_env.hpp"

#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <csignal>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

const jobs::pipeline casescope{{{"full", {"count", "index", "rules", "iocs"}},
                                {"reindex", {"index"}},
                                {"rules-only", {"rules", "iocs"}},
                                {"ioc-only", {"iocs"}}}};

database migrated(const std::string& url_or_empty, const scratch_database* s = nullptr) {
  auto db = s ? s->open() : casecore::open(url_or_empty);
  migrate(db);
  return db;
}

void make_tables(database& db) {
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx,
                              "CREATE TABLE stage_runs(id {{id}}, job_id BIGINT NOT NULL, stage TEXT NOT NULL, who TEXT NOT NULL);"
                              "CREATE TABLE key_samples(n BIGINT NOT NULL);"
                              "CREATE TABLE victim(id {{id}}, job_id BIGINT NOT NULL)"));
  });
}

// Records the stage execution in the stage's own fenced transaction: exactly once per stage.
void record_stage(jobs::job_context& ctx, const std::string& who) {
  ctx.complete([&](transaction& tx) {
    tx.exec("INSERT INTO stage_runs(job_id, stage, who) VALUES($1, $2, $3)", ctx.current().id, ctx.stage(), who);
    if (!ctx.current().concurrency_key.empty())
      tx.exec("INSERT INTO key_samples(n) SELECT count(*) FROM casecore_jobs WHERE state = 'running' AND concurrency_key = $1",
              ctx.current().concurrency_key);
  });
}

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Batch and lease from the configuration matrix (CASECORE_TEST_JOB_BATCH, CASECORE_TEST_LEASE_MS).
jobs::worker_options matrix_options(std::chrono::milliseconds lease = 30s) {
  jobs::worker_options o;
  o.batch = casecore::testing::job_batch(1);
  o.lease = casecore::testing::job_lease(lease);
  return o;
}

std::int64_t active(database& db) {
  return scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state IN ('queued', 'scheduled', 'running')");
}

} // namespace

TEST_CASE("a worker runs each operation's stages in order through the registered handlers") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  db.write([](transaction& tx) {
    jobs::enqueue(tx, casescope.make("full", "file:1"));
    jobs::enqueue(tx, casescope.make("rules-only", "file:2"));
    jobs::enqueue(tx, casescope.make("ioc-only", "file:3"));
    jobs::enqueue(tx, casescope.make("reindex", "file:4"));
  });
  auto o = matrix_options();
  o.threads = 3;
  o.poll = 20ms;
  jobs::worker w(db, o);
  for (const auto* stage : {"count", "index", "rules", "iocs"}) w.on_stage(stage, [](jobs::job_context& c) { record_stage(c, "w"); });
  w.start();
  CHECK(wait_until([&] { return active(db) == 0; }));
  w.stop();
  CHECK(w.stats().succeeded == 4);
  CHECK(w.stats().stages == 8);
  db.read([](transaction& tx) {
    auto r = tx.exec("SELECT j.subject, s.stage FROM stage_runs s JOIN casecore_jobs j ON j.id = s.job_id ORDER BY s.id");
    std::map<std::string, std::vector<std::string>> seen;
    for (auto row : r) seen[row.get<std::string>(0)].push_back(row.get<std::string>(1));
    CHECK(seen["file:1"] == std::vector<std::string>{"count", "index", "rules", "iocs"});
    CHECK(seen["file:2"] == std::vector<std::string>{"rules", "iocs"});
    CHECK(seen["file:3"] == std::vector<std::string>{"iocs"});
    CHECK(seen["file:4"] == std::vector<std::string>{"index"});
  });
}

TEST_CASE("a failing stage is retried from that stage; a handler without complete() is completed for it") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  auto id = jobs::enqueue(db, casescope.make("full", "file:1")).id;
  auto o = matrix_options();
  o.threads = 1;
  o.retry = {1ms, 1ms};
  jobs::worker w(db, o);
  int index_calls = 0;
  w.on_stage("count", [](jobs::job_context& c) { record_stage(c, "w"); });
  w.on_stage("index", [&](jobs::job_context& c) {
    if (++index_calls == 1) throw std::runtime_error("index server down");
    record_stage(c, "w");
  });
  w.on_stage("rules", [](jobs::job_context&) {}); // completed by the worker
  w.on_stage("iocs", [](jobs::job_context& c) { record_stage(c, "w"); });
  CHECK(w.run_once() == 1);
  auto j = jobs::get(db, id);
  CHECK(j->state == jobs::job_state::queued);
  CHECK(j->current_stage == 1);
  CHECK(j->last_error == "index server down");
  std::this_thread::sleep_for(5ms);
  CHECK(w.run_once() == 1);
  CHECK(jobs::get(db, id)->state == jobs::job_state::succeeded);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs WHERE stage = 'count'") == 1);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs WHERE stage = 'index'") == 1);
  auto st = jobs::stages(db, id);
  REQUIRE(st.size() == 4);
  CHECK(st[1].attempts == 2);
  CHECK(st[2].state == "succeeded");
  CHECK(w.stats().failures == 1);
}

TEST_CASE("cancelling a running job stops it at the next stage boundary") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  auto id = jobs::enqueue(db, casescope.make("full", "file:1")).id;
  jobs::worker w(db, matrix_options());
  w.on_stage("count", [&](jobs::job_context& c) {
    jobs::cancel(c.db(), c.current().id); // someone cancels while this stage runs
    record_stage(c, "w");
  });
  for (const auto* stage : {"index", "rules", "iocs"}) w.on_stage(stage, [](jobs::job_context& c) { record_stage(c, "w"); });
  w.run_once();
  CHECK(jobs::get(db, id)->state == jobs::job_state::cancelled);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == 1);
  CHECK(w.stats().cancelled == 1);
}

TEST_CASE("graceful stop finishes the running stage and hands the job back") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  auto id = jobs::enqueue(db, casescope.make("full", "file:1")).id;
  auto o = matrix_options();
  o.threads = 1;
  o.poll = 10ms;
  jobs::worker w(db, o);
  std::atomic<bool> in_stage{false};
  w.on_stage("count", [&](jobs::job_context& c) {
    in_stage = true;
    std::this_thread::sleep_for(50ms);
    record_stage(c, "w");
  });
  w.start();
  REQUIRE(wait_until([&] { return in_stage.load(); }));
  w.stop();
  auto j = jobs::get(db, id);
  CHECK(j->state == jobs::job_state::queued);
  CHECK(j->current_stage == 1);
  CHECK(j->attempts == 0); // the release did not count as an attempt
  CHECK(w.stats().released == 1);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == 1);
}

TEST_CASE("a paused handler whose claim was reclaimed cannot complete its stage") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  auto id = jobs::enqueue(db, casescope.make("reindex", "case:1")).id;
  // run_once runs no heartbeat thread. The lease is long enough that the claim is still held when
  // the handler starts, however slow the machine; the test then expires it on the database (as the
  // clock would while the handler is paused) instead of sleeping past a tiny lease, which on a loaded
  // machine could expire before the handler started (the worker rightly refuses to start it then).
  jobs::worker_options o;
  o.lease = 10s;
  jobs::worker paused(db, o);
  std::atomic<bool> started{false}, resume{false};
  paused.on_stage("index", [&](jobs::job_context& c) {
    started = true;
    while (!resume) std::this_thread::sleep_for(1ms);
    record_stage(c, "paused");
  });
  std::thread t([&] { paused.run_once(); });
  REQUIRE(wait_until([&] { return started.load(); }));
  db.write([&](transaction& tx) { tx.exec("UPDATE casecore_jobs SET lease_expires_at = 1 WHERE id = $1", id); });
  CHECK(jobs::reclaim_expired(db) == 1);
  jobs::claim_options co;
  co.owner = "fresh";
  auto fresh = jobs::claim(db, co).at(0);
  resume = true;
  t.join();
  CHECK(paused.stats().lost == 1);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == 0);
  db.write([&](transaction& tx) { jobs::complete_stage(tx, {fresh.id, fresh.lease_epoch}, 0, 0); });
  CHECK(jobs::get(db, id)->state == jobs::job_state::succeeded);
}

TEST_CASE("wake-up hooks are used and notify() wakes the worker") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  std::atomic<int> waits{0}, notifies{0};
  auto o = matrix_options();
  o.threads = 1;
  o.poll = 5ms;
  o.wait_for_work = [&](std::chrono::milliseconds t) {
    ++waits;
    std::this_thread::sleep_for(t);
  };
  o.notify = [&] { ++notifies; };
  jobs::worker w(db, o);
  w.on_stage("iocs", [](jobs::job_context& c) { record_stage(c, "w"); });
  w.start();
  REQUIRE(wait_until([&] { return waits.load() > 0; }));
  jobs::enqueue(db, casescope.make("ioc-only", "file:1"));
  w.notify();
  CHECK(wait_until([&] { return active(db) == 0; }));
  w.stop();
  CHECK(notifies >= 1);
  CHECK_THROWS_AS(jobs::worker(db, [] { jobs::worker_options b; b.threads = 0; return b; }()), invalid_argument);
}

namespace {
// The in-process transport, counting notifies.
class counting_transport final : public task_transport {
public:
  std::atomic<int> notifies{0};

protected:
  void do_notify(const std::string& topic) override {
    ++notifies;
    inner_->notify(topic);
  }
  std::unique_ptr<task_subscription> do_subscribe(const std::string& topic) override { return inner_->subscribe(topic); }

private:
  std::unique_ptr<task_transport> inner_ = make_inprocess_task_transport();
};
} // namespace

TEST_CASE("a worker on the task_transport port is woken by a committed enqueue, not by a rolled-back one") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  auto transport = std::make_shared<counting_transport>();
  auto o = matrix_options();
  o.threads = 2;
  o.poll = std::chrono::hours(1); // only a wake-up through the port can start the job in time
  o.transport = transport;
  jobs::worker w(db, o);
  w.on_stage("iocs", [](jobs::job_context& c) { record_stage(c, "w"); });
  w.start();
  std::this_thread::sleep_for(50ms); // let the threads find the queue empty and sleep
  CHECK_THROWS(db.write([&](transaction& tx) {
    jobs::enqueue(tx, casescope.make("ioc-only", "file:rolled-back"));
    jobs::notify_after_commit(tx, transport);
    throw std::runtime_error("abort");
  }));
  CHECK(transport->notifies == 0);
  db.write([&](transaction& tx) {
    jobs::enqueue(tx, casescope.make("ioc-only", "file:2"));
    jobs::notify_after_commit(tx, transport);
  });
  CHECK(transport->notifies == 1);
  CHECK(wait_until([&] { return active(db) == 0; }));
  w.stop();
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == 1);
  CHECK_THROWS_AS(db.write([](transaction& tx) { jobs::notify_after_commit(tx, nullptr); }), invalid_argument);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::notify_after_commit(tx, transport, "bad topic\n"); }), invalid_argument);
}

CASECORE_CHILD(worker_process) {
  auto db = casecore::open(args.at(0));
  const bool victim = args.at(1) == "victim";
  const std::string me = "p" + args.back() + (victim ? "-victim" : "");
  auto o = matrix_options(600ms);
  o.owner = me;
  o.threads = 2;
  o.poll = 20ms;
  o.max_per_key = 1;
  jobs::worker w(db, o);
  auto handler = [&](jobs::job_context& c) {
    if (victim) {
      db.write([&](transaction& tx) { tx.exec("INSERT INTO victim(job_id) VALUES($1)", c.current().id); });
      for (;;) std::this_thread::sleep_for(1s); // SIGKILL arrives mid-stage
    }
    std::this_thread::sleep_for(2ms);
    record_stage(c, me);
  };
  for (const auto* stage : {"count", "index", "rules", "iocs"}) w.on_stage(stage, handler);
  w.start();
  const bool ok = wait_until([&] { return active(db) == 0; }, 120s);
  w.stop();
  return ok ? 0 : 1;
}

TEST_CASE("several worker processes, one SIGKILLed mid-stage: every stage of every job runs exactly once") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  constexpr int files = 24;
  std::int64_t expected_stages = 0;
  db.write([&](transaction& tx) {
    std::vector<jobs::job_spec> specs;
    for (int i = 0; i < files; ++i) {
      auto sp = casescope.make(i % 3 == 0 ? "rules-only" : "full", "file:" + std::to_string(i));
      sp.concurrency_key = "case:" + std::to_string(i % 4);
      expected_stages += static_cast<std::int64_t>(sp.stages.size());
      specs.push_back(sp);
    }
    jobs::enqueue_bulk(tx, specs);
  });
  casecore::testing::child_process victim("worker_process", {s.url(), "victim", "9"});
  REQUIRE(wait_until([&] { return scalar(db, "SELECT count(*) FROM victim") > 0; }));
  victim.kill(SIGKILL);
  CHECK(victim.wait().exit_code != 0);
  std::vector<casecore::testing::child_process> workers;
  for (int i = 0; i < 3; ++i) workers.emplace_back("worker_process", std::vector<std::string>{s.url(), "normal", std::to_string(i)});
  for (auto& w : workers) CHECK(w.wait().exit_code == 0);

  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == files);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == expected_stages);
  CHECK(scalar(db, "SELECT count(*) FROM (SELECT job_id, stage FROM stage_runs GROUP BY job_id, stage HAVING count(*) > 1) d") == 0);
  // The victim's stage was never recorded; its job was reclaimed and finished by another process.
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs WHERE who LIKE '%victim'") == 0);
  CHECK(scalar(db, "SELECT max(attempts) FROM casecore_jobs") >= 2);
  // At most one running job per case, sampled inside every stage transaction.
  CHECK(scalar(db, "SELECT count(*) FROM key_samples") == expected_stages);
  CHECK(scalar(db, "SELECT max(n) FROM key_samples") == 1);
}

TEST_CASE("worker options out of range and bad handler registrations are refused before anything runs") {
  scratch_database s;
  auto db = migrated("", &s);
  const auto id = db.write([](transaction& tx) { return jobs::enqueue(tx, casescope.make("reindex", "file:1")).id; });
  using mutate = std::function<void(jobs::worker_options&)>;
  const std::vector<std::pair<const char*, mutate>> bad = {
      {"owner over 200 characters", [](auto& o) { o.owner = std::string(201, 'w'); }},
      {"no threads", [](auto& o) { o.threads = 0; }},
      {"too many threads", [](auto& o) { o.threads = 257; }},
      {"batch 0", [](auto& o) { o.batch = 0; }},
      {"batch over 1000", [](auto& o) { o.batch = 1001; }},
      {"lease 0", [](auto& o) { o.lease = 0ms; }},
      {"negative heartbeat", [](auto& o) { o.heartbeat = -1ms; }},
      {"heartbeat not below the lease", [](auto& o) { o.heartbeat = o.lease; }},
      {"poll 0", [](auto& o) { o.poll = 0ms; }},
      {"negative max_running", [](auto& o) { o.max_running = -1; }},
      {"negative max_per_key", [](auto& o) { o.max_per_key = -1; }},
      {"negative maintenance period", [](auto& o) { o.maintenance = -1ms; }},
      {"negative retention age", [](auto& o) { o.retain.max_age = -1ms; }},
      {"negative retention count", [](auto& o) { o.retain.max_finished = -1; }},
  };
  for (const auto& [what, change] : bad) {
    CAPTURE(what);
    jobs::worker_options o;
    change(o);
    CHECK_THROWS_AS([&] { jobs::worker w(db, o); }(), invalid_argument);
  }
  jobs::worker_options edge; // the bounds themselves are accepted
  edge.owner = std::string(200, 'w');
  edge.threads = 256;
  edge.batch = 1000;
  edge.heartbeat = edge.lease - 1ms;
  CHECK_NOTHROW([&] { jobs::worker w(db, edge); }());

  jobs::worker w(db, matrix_options());
  CHECK_THROWS_AS(w.on_stage("index", jobs::stage_handler{}), invalid_argument);
  CHECK_THROWS_AS(w.on_stage("", [](jobs::job_context&) {}), invalid_argument);
  w.on_stage("index", [](jobs::job_context&) {});
  w.start();
  w.start(); // a second start() is a no-op, not a second set of threads
  CHECK_THROWS_AS(w.on_stage("rules", [](jobs::job_context&) {}), invalid_argument);
  CHECK(wait_until([&] { return jobs::get(db, id)->state != jobs::job_state::queued && jobs::get(db, id)->state != jobs::job_state::running; }));
  w.stop();
  CHECK(jobs::get(db, id)->state == jobs::job_state::succeeded); // the one valid worker ran the job
}

TEST_CASE("a stage without handler, or whose handler throws a non-standard exception, fails the attempt with a reason") {
  scratch_database s;
  auto db = migrated("", &s);
  const auto no_handler = db.write([](transaction& tx) { return jobs::enqueue(tx, casescope.make("rules-only", "file:1")).id; });
  auto o = matrix_options();
  o.batch = 1;
  o.retry = {1h, 1h}; // the failed job stays out of reach of the second worker below
  jobs::worker w(db, o);
  w.on_stage("rules", [](jobs::job_context& c) { record_stage(c, "w"); }); // no "iocs" handler
  make_tables(db);
  CHECK(w.run_once() == 1);
  auto j = jobs::get(db, no_handler);
  CHECK(j->state == jobs::job_state::queued); // retried later from the failed stage
  CHECK(j->current_stage == 1);
  CHECK(j->last_error.find("no handler for stage 'iocs' of 'rules-only'") != std::string::npos);
  CHECK(w.stats().failures == 1);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs") == 1);

  const auto odd = db.write([](transaction& tx) { return jobs::enqueue(tx, casescope.make("reindex", "file:2")).id; });
  jobs::worker w2(db, o);
  w2.on_stage("index", [](jobs::job_context&) { throw 42; });
  CHECK(w2.run_once() == 1);
  j = jobs::get(db, odd);
  CHECK(j->state == jobs::job_state::queued);
  CHECK(j->last_error == "unknown exception");
  CHECK(w2.stats().failures == 1);
  CHECK(w2.stats().succeeded == 0);
}

TEST_CASE("an operation's own handler takes precedence over the generic one; a stage completes only once") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  db.write([](transaction& tx) {
    jobs::enqueue(tx, casescope.make("reindex", "file:1"));
    jobs::enqueue(tx, casescope.make("full", "file:2"));
  });
  auto o = matrix_options();
  o.threads = 1;
  jobs::worker w(db, o);
  std::atomic<int> twice_refused{0};
  w.on_stage("reindex", "index", [&](jobs::job_context& c) {
    record_stage(c, "reindex-handler");
    try {
      c.complete([](transaction& tx) { tx.exec("INSERT INTO victim(job_id) VALUES(-1)"); });
    } catch (const invalid_argument&) {
      ++twice_refused;
    }
  });
  for (const auto* stage : {"count", "index", "rules", "iocs"}) w.on_stage(stage, [](jobs::job_context& c) { record_stage(c, "generic"); });
  while (w.run_once() > 0) {
  }
  CHECK(twice_refused == 1);
  CHECK(scalar(db, "SELECT count(*) FROM victim") == 0); // the refused second completion wrote nothing
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs s JOIN casecore_jobs j ON j.id = s.job_id WHERE j.subject = 'file:1' AND s.who = 'reindex-handler'") == 1);
  CHECK(scalar(db, "SELECT count(*) FROM stage_runs s JOIN casecore_jobs j ON j.id = s.job_id WHERE j.subject = 'file:2' AND s.who = 'generic'") == 4);
  CHECK(active(db) == 0);
}

TEST_CASE("a handler sees cancel_requested() once its stage commit reports a cancel; writes through the context are fenced") {
  scratch_database s;
  auto db = migrated("", &s);
  make_tables(db);
  const auto id = db.write([](transaction& tx) { return jobs::enqueue(tx, casescope.make("full", "file:1")).id; });
  auto o = matrix_options();
  o.batch = 1;
  jobs::worker w(db, o);
  std::vector<std::string> ran;
  bool before = true, after = false, stop_requested = true;
  w.on_stage("count", [&](jobs::job_context& c) {
    ran.push_back(c.stage());
    c.write([&](transaction& tx) { tx.exec("INSERT INTO victim(job_id) VALUES($1)", c.current().id); });
    before = c.cancel_requested();
    stop_requested = c.stop_token().stop_requested();
    CHECK(jobs::cancel(db, c.current().id)); // an operator cancels the running job
    c.complete([](transaction&) {});
    after = c.cancel_requested();
  });
  for (const auto* stage : {"index", "rules", "iocs"}) w.on_stage(stage, [&](jobs::job_context& c) { ran.push_back(c.stage()); });
  CHECK(w.run_once() == 1);
  CHECK_FALSE(before);
  CHECK_FALSE(stop_requested);
  CHECK(after);
  CHECK(ran == std::vector<std::string>{"count"}); // stopped at the next stage boundary
  CHECK(jobs::get(db, id)->state == jobs::job_state::cancelled);
  CHECK(scalar(db, "SELECT count(*) FROM victim") == 1);
  CHECK(w.stats().cancelled == 1);
}
