// Database-wide metrics (metrics::database_prometheus_text) against known jobs, outbox messages and
// leases on both backends, the text checked line by line by a strict parser; and the logging hook
// (casecore/log.hpp) receiving the events of a forced retry, an unknown commit outcome, a pool
// timeout, a handler failure and a reclaim.
#include "telemetry_support.hpp"
#include "job_test_env.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/lease.hpp>
#include <casecore/log.hpp>
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>
#include <casecore/version.hpp>
#include <casecore/worker.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/steps.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace casecore;
using namespace casecore::jobs;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;
namespace prom = casecore::testing::prom;

namespace {

// A printable operation name with every character the text format must escape, and more.
const std::string hostile_op = "ev\"il\\op{a=\"1\"},le=\"+Inf\" # HELP";

job_spec spec(std::string op, std::string subject, int priority, int max_attempts = 5) {
  job_spec s;
  s.operation = std::move(op);
  s.subject = std::move(subject);
  s.priority = priority;
  s.max_attempts = max_attempts;
  return s;
}

/// Collects the events a test provokes; removes the sink when it goes.
struct captured_log {
  captured_log() {
    set_log_sink([this](const log_event& e) {
      std::lock_guard g(m);
      events.push_back(e);
      cv.notify_all();
    });
  }
  ~captured_log() { set_log_sink(nullptr); }
  std::vector<log_event> named(std::string_view name) {
    std::lock_guard g(m);
    std::vector<log_event> out;
    for (const auto& e : events)
      if (e.name == name) out.push_back(e);
    return out;
  }
  bool wait_for(std::string_view name, std::chrono::milliseconds timeout) {
    std::unique_lock g(m);
    return cv.wait_for(g, timeout, [&] {
      return std::any_of(events.begin(), events.end(), [&](const log_event& e) { return e.name == name; });
    });
  }
  std::mutex m;
  std::condition_variable cv;
  std::vector<log_event> events;
};

} // namespace

TEST_CASE("telemetry: database-wide figures of known jobs, outbox and leases, as valid Prometheus text") {
  scratch_database s;
  auto db = s.open_migrated();
  enqueue(db, spec("alpha", "a1", 10, 1)); // claimed, fails for good
  enqueue(db, spec("beta", "b1", 5));      // claimed with a lease that expires: stuck
  enqueue(db, spec("alpha", "a2", 3));     // claimed, fails once, waits for its retry
  enqueue(db, spec("alpha", "a3", 0));
  enqueue(db, spec(hostile_op, "h1", 0));
  auto later = spec("alpha", "a4", 0);
  later.delay = 1h;
  enqueue(db, later);

  auto one = [&](std::chrono::milliseconds lease) {
    auto got = claim(db, {.owner = "w1", .batch = 1, .lease = lease});
    REQUIRE(got.size() == 1);
    return got.front();
  };
  const auto a1 = one(60s);
  REQUIRE(a1.subject == "a1");
  CHECK(fail(db, {a1.id, a1.lease_epoch}, 0, "boom") == job_state::failed);
  const auto b1 = one(1ms);
  REQUIRE(b1.subject == "b1");
  const auto a2 = one(60s);
  REQUIRE(a2.subject == "a2");
  CHECK(fail(db, {a2.id, a2.lease_epoch}, 0, "flaky", backoff{0ms, 0ms}) == job_state::queued);
  db.write([](transaction& tx) {
    outbox::publish(tx, "mail", "m1");
    outbox::publish(tx, "mail", "m2");
  });
  REQUIRE(lease::try_acquire(db, "nightly", "host-a", 60s));
  std::this_thread::sleep_for(20ms); // b1's 1 ms claim is over

  const auto text = metrics::database_prometheus_text(db);
  INFO(text);
  const auto p = prom::parse(text);
  const std::string backend = s.kind() == casecore::testing::backend_kind::postgres ? "postgresql" : "sqlite";
  CHECK(p.value("casecore_build_info", {{"version", CASECORE_VERSION}, {"backend", backend}}) == 1);
  CHECK(p.value("casecore_schema_version", {{"component", "casecore.telemetry"}}) == 1);
  CHECK(p.value("casecore_jobs", {{"operation", "alpha"}, {"state", "queued"}}) == 2);
  CHECK(p.value("casecore_jobs", {{"operation", "alpha"}, {"state", "scheduled"}}) == 1);
  CHECK(p.value("casecore_jobs", {{"operation", "beta"}, {"state", "running"}}) == 1);
  CHECK(p.value("casecore_jobs", {{"operation", hostile_op}, {"state", "queued"}}) == 1);
  CHECK_FALSE(p.value("casecore_jobs", {{"operation", "alpha"}, {"state", "running"}}));
  CHECK(p.value("casecore_jobs_stuck", {{"operation", "beta"}}) == 1);
  CHECK(p.value("casecore_jobs_retry_waiting", {{"operation", "alpha"}}) == 1);
  const auto age = p.value("casecore_jobs_oldest_ready_age_seconds", {{"operation", "alpha"}});
  REQUIRE(age);
  CHECK(*age >= 0);
  CHECK(*age < 600);
  CHECK(p.value("casecore_metrics_window_seconds", {}) == 300);
  CHECK(p.value("casecore_jobs_recent_finished", {{"operation", "alpha"}, {"state", "failed"}}) == 1);
  CHECK(p.value("casecore_jobs_recent_attempts", {{"operation", "alpha"}, {"state", "failed"}}) == 1);
  CHECK(p.value("casecore_job_recent_duration_seconds_count", {{"operation", "alpha"}, {"state", "failed"}}) == 1);
  CHECK(p.value("casecore_job_recent_duration_seconds_bucket", {{"operation", "alpha"}, {"state", "failed"}, {"le", "+Inf"}}) == 1);
  CHECK(p.value("casecore_job_recent_duration_seconds_bucket", {{"operation", "alpha"}, {"state", "failed"}, {"le", "3600"}}) == 1);
  // Two failed stage attempts (a1 and a2, stage "run").
  CHECK(p.value("casecore_stage_recent_duration_seconds_count", {{"operation", "alpha"}, {"stage", "run"}, {"state", "failed"}}) == 2);
  CHECK(p.value("casecore_outbox_messages", {{"topic", "mail"}}) == 2);
  CHECK(p.value("casecore_outbox_retrying", {{"topic", "mail"}}) == 0);
  CHECK(p.value("casecore_leases", {{"state", "held"}}) == 1);
  CHECK(p.value("casecore_leases", {{"state", "expired"}}) == 0);
  const auto left = p.value("casecore_lease_expires_in_seconds", {{"lease", "nightly"}, {"owner", "host-a"}});
  REQUIRE(left);
  CHECK(*left > 0);
  CHECK(*left <= 60);
  CHECK(p.types.at("casecore_job_recent_duration_seconds") == "histogram");
  CHECK(p.types.at("casecore_jobs") == "gauge");
  // The CLI's own pool is not in it unless asked for.
  CHECK_FALSE(p.types.count("casecore_pool_in_use"));
  if (s.kind() == casecore::testing::backend_kind::postgres) {
    CHECK(p.types.at("casecore_pg_deadlocks_total") == "counter");
    CHECK(p.value("casecore_pg_connections", {}) >= 1);
    CHECK(p.value("casecore_pg_max_connections", {}) >= 1);
    CHECK(p.value("casecore_table_rows_estimate", {{"table", "casecore_jobs"}}).has_value());
  } else {
    CHECK_FALSE(p.types.count("casecore_pg_deadlocks_total"));
  }

  // The hostile name is one escaped label value, not extra labels or lines.
  CHECK(text.find("casecore_jobs{operation=\"ev\\\"il\\\\op{a=\\\"1\\\"},le=\\\"+Inf\\\" # HELP\",state=\"queued\"} 1\n") != std::string::npos);

  // Process figures on request, in the same text, still valid.
  metrics::exposition_options o;
  o.process_figures = true;
  o.process_label = "app";
  const auto with_process = prom::parse(metrics::database_prometheus_text(db, o));
  CHECK(with_process.value("casecore_pool_capacity", {{"db", "app"}}).has_value());
  CHECK(with_process.value("casecore_tx_retries_total", {{"db", "app"}, {"cause", "deadlock"}}).has_value());
}

TEST_CASE("telemetry: the window bounds the recent figures; bad options are refused") {
  scratch_database s;
  auto db = s.open_migrated();
  enqueue(db, spec("alpha", "a1", 0, 1));
  const auto j = claim(db, {.owner = "w1", .batch = 1, .lease = 60s});
  REQUIRE(j.size() == 1);
  fail(db, {j[0].id, j[0].lease_epoch}, 0, "boom");
  // Move the finish two hours back: outside a one-hour window, inside a three-hour one.
  db.write([&](transaction& tx) {
    tx.exec("UPDATE casecore_jobs SET finished_at = finished_at - 7200000000, started_at = started_at - 7200000000 WHERE id = $1", j[0].id);
    tx.exec("UPDATE casecore_job_stages SET finished_at = finished_at - 7200000000, started_at = started_at - 7200000000 WHERE job_id = $1", j[0].id);
  });
  metrics::exposition_options o;
  o.wide.window = 1h;
  auto p = prom::parse(metrics::database_prometheus_text(db, o));
  CHECK_FALSE(p.value("casecore_jobs_recent_finished", {{"operation", "alpha"}, {"state", "failed"}}));
  CHECK_FALSE(p.types.count("casecore_stage_recent_duration_seconds"));
  o.wide.window = 3h;
  p = prom::parse(metrics::database_prometheus_text(db, o));
  CHECK(p.value("casecore_jobs_recent_finished", {{"operation", "alpha"}, {"state", "failed"}}) == 1);
  CHECK(p.value("casecore_metrics_window_seconds", {}) == 3 * 3600);

  o.wide.window = 0s;
  CHECK_THROWS_AS(metrics::database_prometheus_text(db, o), error);
  o.wide.window = 1h;
  o.wide.duration_buckets = {1, 0.5};
  CHECK_THROWS_AS(metrics::database_prometheus_text(db, o), error);
}

TEST_CASE("telemetry: an unmigrated database renders build info only") {
  scratch_database s;
  auto db = s.open();
  const auto p = prom::parse(metrics::database_prometheus_text(db));
  CHECK(p.types.count("casecore_build_info"));
  CHECK_FALSE(p.types.count("casecore_jobs"));
}

TEST_CASE("log hook: a forced retry, an unknown outcome and a pool timeout reach the sink") {
  scratch_database s;
  auto db = s.open_migrated();
  captured_log seen;
  {
    casecore::testing::step_gate gate;
    gate.fail_at("tx.begun", errc::serialization_failure);
    db.write([](transaction& tx) { tx.exec("SELECT 1"); });
  }
  auto retries = seen.named("tx.retry");
  REQUIRE(retries.size() == 1);
  CHECK(retries[0].level == log_level::warn);
  CHECK(retries[0].field("cause") == "serialization_failure");
  CHECK(retries[0].field("attempt") == "1");
  CHECK(retries[0].field("db") == db.describe());

  {
    casecore::testing::step_gate gate;
    gate.fail_at("tx.before_commit", errc::outcome_unknown);
    CHECK_THROWS_AS(db.write([](transaction& tx) { tx.exec("SELECT 1"); }), error);
  }
  const auto unknown = seen.named("tx.outcome_unknown");
  REQUIRE(unknown.size() == 1);
  CHECK(unknown[0].level == log_level::error);

  database_options small;
  small.pool.size = 1;
  small.pool.overflow = 0;
  small.pool.acquire_timeout = 50ms;
  auto tiny = s.open(small);
  write_options once;
  once.retry = retry_policy{.max_attempts = 1};
  tiny.write([&](transaction&) {
    // The only connection is ours: another thread's unit of work times out waiting for it.
    std::thread other([&] { CHECK_THROWS_AS(tiny.write([](transaction&) {}, once), error); });
    other.join();
  });
  const auto timeouts = seen.named("pool.timeout");
  REQUIRE(timeouts.size() >= 1);
  CHECK(timeouts[0].field("capacity") == "1");
  CHECK(timeouts[0].field("timeout_ms") == "50");
}

TEST_CASE("log hook: handler failures and reclaims reach the sink; a throwing sink never reaches casecore") {
  scratch_database s;
  auto db = s.open_migrated();
  {
    captured_log seen;
    enqueue(db, spec(hostile_op, "x", 0));
    worker_options o;
    o.owner = "w-fail";
    o.threads = 1;
    worker w(db, o);
    w.on_stage("run", [](job_context&) { throw std::runtime_error("kaput"); });
    CHECK(w.run_once() == 1);
    const auto failed = seen.named("job.handler_failed");
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].message == "kaput");
    CHECK(failed[0].field("operation") == hostile_op);
    CHECK(failed[0].field("stage") == "run");
    CHECK(failed[0].field("attempt") == "1");
  }
  {
    captured_log seen;
    enqueue(db, spec("beta", "y", 100));
    const auto held = claim(db, {.owner = "gone", .batch = 1, .lease = 1ms});
    REQUIRE(held.size() == 1);
    REQUIRE(held[0].subject == "y");
    worker_options o;
    o.owner = "w-maint";
    o.threads = 1;
    o.lease = 300ms;
    o.poll = 50ms;
    worker w(db, o);
    w.on_stage("run", [](job_context&) {});
    w.start();
    CHECK(seen.wait_for("job.reclaim", 20s));
    w.stop();
    const auto reclaims = seen.named("job.reclaim");
    REQUIRE_FALSE(reclaims.empty());
    CHECK(reclaims[0].field("owner") == "w-maint");
    CHECK(reclaims[0].field("jobs") == "1");
  }
  // A sink that throws: the unit of work goes on, the event is counted as dropped.
  set_log_sink([](const log_event&) { throw std::runtime_error("sink broke"); });
  const auto before = dropped_log_events();
  {
    casecore::testing::step_gate gate;
    gate.fail_at("tx.begun", errc::deadlock);
    CHECK(db.write([](transaction& tx) { return tx.query_one<int>("SELECT 7"); }) == 7);
  }
  set_log_sink(nullptr);
  CHECK(dropped_log_events() == before + 1);
}

TEST_CASE("log hook: a running job whose claim is taken away reports job.lease_lost") {
  scratch_database s;
  auto db = s.open_migrated();
  captured_log seen;
  const auto id = enqueue(db, spec("gamma", "z", 0)).id;
  std::atomic<int> runs{0};
  std::atomic<bool> running{false};
  worker_options o;
  o.owner = "w-lost";
  o.threads = 1;
  o.lease = casecore::testing::job_lease(600ms);
  o.poll = 50ms;
  worker w(db, o);
  w.on_stage("run", [&](job_context& ctx) {
    if (runs++ > 0) return; // the requeued run after the loss just succeeds
    running = true;
    for (int i = 0; i < 3000 && !ctx.lost(); ++i) std::this_thread::sleep_for(5ms);
    ctx.write([](transaction&) {}); // throws lease_lost once the claim is gone
  });
  w.start();
  for (int i = 0; i < 2000 && !running; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(running);
  // Another host decides the worker is dead: its claim expires and is requeued.
  db.write([&](transaction& tx) { tx.exec("UPDATE casecore_jobs SET lease_expires_at = 0 WHERE id = $1", id); });
  CHECK(seen.wait_for("job.lease_lost", 20s));
  w.stop();
  const auto lost = seen.named("job.lease_lost");
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].field("job") == std::to_string(id));
  CHECK(lost[0].field("operation") == "gamma");
  CHECK(lost[0].level == log_level::warn);
}
