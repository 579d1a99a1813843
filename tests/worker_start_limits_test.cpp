// Worker start limits: at most N job starts of an operation (or of one concurrency key) per period P,
// across every worker thread and process, on the database clock; a job without a token is snoozed
// until one frees, its attempt unspent. Both backends.
#include "job_test_env.hpp"

#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

constexpr std::int64_t starts_per_period = 2;
constexpr auto period = 300ms;

jobs::worker_options limited(int threads) {
  jobs::worker_options o;
  o.threads = threads;
  o.poll = 25ms;
  o.batch = casecore::testing::job_batch(1);
  o.lease = casecore::testing::job_lease(30s);
  o.start_limits = {{"call-api", {starts_per_period, period}, false}};
  return o;
}

void make_tables(database& db) {
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx, "CREATE TABLE starts(id {{id}}, job_id BIGINT NOT NULL, stage TEXT NOT NULL, "
                                  "started_at BIGINT NOT NULL, seen BIGINT NOT NULL, who TEXT NOT NULL)"));
  });
}

// Records the stage's start (the start token's time for a first stage) and the database clock
// inside the handler, in the stage's completing transaction (exactly once per stage).
void on_stages(jobs::worker& w, const std::string& who) {
  for (const char* stage : {"call", "save"}) {
    w.on_stage(stage, [who](jobs::job_context& ctx) {
      ctx.complete([&](transaction& tx) {
        tx.exec("INSERT INTO starts(job_id, stage, started_at, seen, who) VALUES($1, $2, $3, casecore_now_us(), $4)",
                ctx.current().id, ctx.stage(), ctx.started_at(), who);
      });
    });
  }
}

void enqueue_calls(database& db, int n, const std::string& operation = "call-api") {
  db.write([&](transaction& tx) {
    for (int i = 0; i < n; ++i) {
      jobs::job_spec sp;
      sp.operation = operation;
      sp.subject = "request:" + std::to_string(i);
      sp.stages = {"call", "save"};
      sp.max_attempts = 1; // a throttled start that spent the attempt would fail the job
      jobs::enqueue(tx, sp);
    }
  });
}

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 120s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(25ms);
  }
  return true;
}

// The job starts (first stages) as recorded, sorted.
std::vector<micros> job_starts(database& db) {
  return db.read([](transaction& tx) {
    std::vector<micros> t;
    for (auto r : tx.exec("SELECT started_at FROM starts WHERE stage = 'call' ORDER BY started_at")) t.push_back(r.get<micros>(0));
    return t;
  });
}

micros tightest_span(const std::vector<micros>& t, std::int64_t n) {
  micros tightest = std::numeric_limits<micros>::max();
  for (std::size_t i = 0; i + static_cast<std::size_t>(n) < t.size(); ++i)
    tightest = std::min(tightest, t[i + static_cast<std::size_t>(n)] - t[i]);
  return tightest;
}

void check_outcome(database& db, int jobs_total) {
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == jobs_total);
  CHECK(scalar(db, "SELECT max(attempts) FROM casecore_jobs") == 1); // throttling spent no attempt
  CHECK(scalar(db, "SELECT count(*) FROM starts WHERE stage = 'call'") == jobs_total);
  // The start token's time is the database clock, taken before the handler ran.
  CHECK(scalar(db, "SELECT count(*) FROM starts WHERE seen < started_at") == 0);
  const auto t = job_starts(db);
  const auto span = tightest_span(t, starts_per_period);
  MESSAGE(t.size() << " starts, tightest span of N+1 starts = " << span << " us (P = 300000 us)");
  CHECK(span >= 300'000);
}

} // namespace

// args: url, who, threads
CASECORE_CHILD(limited_worker) {
  auto db = casecore::open(args.at(0));
  auto o = limited(std::stoi(args.at(2)));
  jobs::worker w(db, o);
  on_stages(w, args.at(1) + "-" + args.back());
  w.start();
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state IN ('queued', 'scheduled', 'running')") > 0) {
    if (std::chrono::steady_clock::now() > deadline) return 2;
    std::this_thread::sleep_for(25ms);
  }
  w.stop();
  std::printf("%llu\n", static_cast<unsigned long long>(w.stats().throttled));
  return 0;
}

TEST_CASE("start limits: two workers' threads start at most N jobs of the operation in any window of P") {
  scratch_database s;
  auto db = s.open_migrated();
  make_tables(db);
  constexpr int n = 10;
  enqueue_calls(db, n);
  enqueue_calls(db, 4, "unlimited"); // other operations are not throttled
  auto db2 = s.open();
  jobs::worker a(db, limited(3)), b(db2, limited(3));
  on_stages(a, "a");
  on_stages(b, "b");
  a.start();
  b.start();
  REQUIRE(wait_until([&] { return scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == n + 4; }));
  a.stop();
  b.stop();
  db.write([](transaction& tx) { tx.exec("DELETE FROM starts WHERE job_id IN (SELECT id FROM casecore_jobs WHERE operation = 'unlimited')"); });
  db.write([](transaction& tx) { tx.exec("DELETE FROM casecore_jobs WHERE operation = 'unlimited'"); });
  check_outcome(db, n);
  CHECK(a.stats().throttled + b.stats().throttled > 0); // six threads wanted more than the limit allowed
  // The limiter's key holds the last N start times.
  const auto key = rate_limiter::inspect(db, "casecore.jobs.start:8:call-api");
  REQUIRE(key);
  CHECK(key->count == starts_per_period);
  CHECK(key->log.size() == static_cast<std::size_t>(starts_per_period));
}

TEST_CASE("start limits: worker processes racing start at most N jobs in any window of P") {
  scratch_database s;
  auto db = s.open_migrated();
  make_tables(db);
  constexpr int n = 9;
  enqueue_calls(db, n);
  const auto results = casecore::testing::run_children("limited_worker", 3, {s.url(), "process", "2"});
  for (const auto& r : results) CHECK(r.exit_code == 0);
  check_outcome(db, n);
}

TEST_CASE("start limits per concurrency key: one key's budget does not hold up another's") {
  scratch_database s;
  auto db = s.open_migrated();
  make_tables(db);
  db.write([&](transaction& tx) {
    for (const auto& [subject, key] : std::vector<std::pair<std::string, std::string>>{
             {"r1", "tenant:a"}, {"r2", "tenant:a"}, {"r3", "tenant:b"}}) {
      jobs::job_spec sp;
      sp.operation = "call-api";
      sp.subject = subject;
      sp.stages = {"call", "save"};
      sp.max_attempts = 1;
      sp.concurrency_key = key;
      jobs::enqueue(tx, sp);
    }
  });
  auto o = limited(2);
  o.start_limits = {{"call-api", {1, 1h}, true}}; // one start per tenant per hour
  jobs::worker w(db, o);
  on_stages(w, "w");
  w.start();
  REQUIRE(wait_until([&] {
    return scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == 2 &&
           scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled'") == 1;
  }));
  w.stop();
  // One job of each tenant ran; tenant a's second waits for its token, about an hour away, unspent.
  CHECK(scalar(db, "SELECT count(DISTINCT concurrency_key) FROM casecore_jobs WHERE state = 'succeeded'") == 2);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled' AND concurrency_key = 'tenant:a' "
                   "AND attempts = 0 AND run_at > casecore_now_us() + 3000000000") == 1);
  CHECK(w.stats().throttled >= 1);
}

TEST_CASE("start limit options out of range are refused") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto refused = [&](std::vector<jobs::start_limit> limits) {
    jobs::worker_options o;
    o.start_limits = std::move(limits);
    CHECK_THROWS_AS(jobs::worker(db, o), invalid_argument);
  };
  refused({{"", {1, 1s}, false}});
  refused({{"op\n", {1, 1s}, false}});
  refused({{std::string(101, 'o'), {1, 1s}, false}});
  refused({{"op", {0, 1s}, false}});
  refused({{"op", {100001, 1s}, false}});
  refused({{"op", {1, 0ms}, false}});
  refused({{"op", {1, std::chrono::hours(24 * 367)}, false}});
  refused({{"op", {1, 1s}, false}, {"op", {5, 1min}, false}});
  jobs::worker_options o;
  o.start_limits = {{"op", {1, 1s}, false}, {"op", {5, 1min}, true}}; // one per operation, one per key: fine
  CHECK_NOTHROW(jobs::worker(db, o));
}
