// Drain-then-stop (deploys): a draining worker claims nothing new, hands its claimed-but-unstarted
// jobs back at once (another worker runs them while the slow handler goes on), lets running
// handlers finish, and at its deadline hands back what it still holds and tells the handler. Both
// backends. Timings only bound waits for events; the assertions are on the database's rows.
#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <boost/thread/thread.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

jobs::job_spec spec(std::string subject, std::vector<std::string> stages = {"work"}, int priority = 0) {
  jobs::job_spec s;
  s.operation = "deploy-test";
  s.subject = std::move(subject);
  s.stages = std::move(stages);
  s.priority = priority;
  s.max_attempts = 3;
  return s;
}

jobs::worker_options options(std::string owner, std::size_t batch = 1) {
  jobs::worker_options o;
  o.owner = std::move(owner);
  o.threads = 1;
  o.batch = batch;
  o.lease = 30s;
  o.poll = 50ms;
  o.maintenance = 0ms;
  return o;
}

jobs::job get(database& db, std::int64_t id) {
  const auto j = jobs::get(db, id);
  REQUIRE(j);
  return *j;
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// A one-shot latch the test opens; a waiter gives up after `limit` (so a broken drain fails the
/// test's assertions instead of hanging it).
struct gate {
  std::mutex m;
  std::condition_variable cv;
  bool open_ = false;
  void open() {
    std::lock_guard g(m);
    open_ = true;
    cv.notify_all();
  }
  bool wait(std::chrono::seconds limit = 60s) {
    std::unique_lock g(m);
    return cv.wait_for(g, limit, [&] { return open_; });
  }
  bool is_open() {
    std::lock_guard g(m);
    return open_;
  }
};

/// Runs per job id.
struct run_log {
  std::mutex m;
  std::map<std::int64_t, int> runs;
  void add(std::int64_t id) {
    std::lock_guard g(m);
    ++runs[id];
  }
  int of(std::int64_t id) {
    std::lock_guard g(m);
    return runs.count(id) ? runs[id] : 0;
  }
};

} // namespace

TEST_CASE("drain: the running handler finishes, unstarted jobs go back at once, nothing new is claimed") {
  scratch_database s;
  auto db = s.open_migrated();
  // One thread claiming three at once: the first (highest priority) runs, two wait behind it.
  const auto slow = jobs::enqueue(db, spec("slow", {"work"}, 10)).id;
  const auto b = jobs::enqueue(db, spec("b", {"work"}, 5)).id;
  const auto c = jobs::enqueue(db, spec("c", {"work"}, 1)).id;

  run_log log;
  gate started, finish;
  std::atomic<bool> others_done_while_slow_ran{false};
  jobs::worker w1(db, options("w1", 3));
  w1.on_stage("work", [&](jobs::job_context& ctx) {
    log.add(ctx.current().id);
    if (ctx.current().id != slow) return;
    started.open();
    finish.wait();
  });
  w1.start();
  REQUIRE(started.wait());
  CHECK(w1.stats().claimed == 3);
  CHECK(get(db, b).state == jobs::job_state::running);

  auto drained = std::async(std::launch::async, [&] { return w1.drain(60s); });

  // b and c are handed back at once, while the slow handler still runs ...
  CHECK(wait_until([&] { return get(db, b).state == jobs::job_state::queued && get(db, c).state == jobs::job_state::queued; }));
  CHECK(get(db, b).attempts == 0); // the attempt is not counted
  // ... and another worker claims and runs them before it ends.
  jobs::worker w2(db, options("w2", 2));
  run_log by_w2;
  w2.on_stage("work", [&](jobs::job_context& ctx) {
    log.add(ctx.current().id);
    by_w2.add(ctx.current().id);
  });
  CHECK(w2.run_once() == 2);
  CHECK(get(db, b).state == jobs::job_state::succeeded);
  CHECK(get(db, c).state == jobs::job_state::succeeded);
  CHECK(by_w2.of(b) == 1);
  CHECK(by_w2.of(c) == 1);
  CHECK(get(db, slow).state == jobs::job_state::running);
  others_done_while_slow_ran = !finish.is_open();
  CHECK(others_done_while_slow_ran);

  // Enqueued while the drain waits: the draining worker must not claim it.
  const auto late = jobs::enqueue(db, spec("late")).id;
  w1.notify();
  std::this_thread::sleep_for(200ms); // four poll periods in which a non-draining thread would claim
  finish.open();
  REQUIRE(drained.wait_for(60s) == std::future_status::ready);
  const auto r = drained.get();
  CHECK(r.stopped);
  CHECK(r.finished == 1);
  CHECK(r.succeeded == 1);
  CHECK(r.handed_back == 2);
  CHECK(r.interrupted == 0);
  CHECK(r.failed == 0);

  const auto done = get(db, slow);
  CHECK(done.state == jobs::job_state::succeeded);
  CHECK(done.attempts == 1);
  CHECK(log.of(slow) == 1); // exactly one run
  CHECK(log.of(b) == 1);
  CHECK(log.of(c) == 1);
  const auto waiting = get(db, late);
  CHECK(waiting.state == jobs::job_state::queued);
  CHECK(waiting.lease_epoch == 0); // never claimed
  CHECK(waiting.attempts == 0);
  CHECK(log.of(late) == 0);
  CHECK(w1.stats().claimed == 3);
  w1.stop(); // already stopped: a no-op
}

TEST_CASE("drain: a running multi-stage job finishes its stage; its next stage is handed back") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("two", {"first", "second"})).id;
  gate started, finish;
  std::atomic<int> second_runs{0};
  jobs::worker w1(db, options("w1"));
  w1.on_stage("first", [&](jobs::job_context& ctx) {
    ctx.set_output("first done");
    started.open();
    finish.wait();
  });
  w1.on_stage("second", [&](jobs::job_context&) { ++second_runs; });
  w1.start();
  REQUIRE(started.wait());
  auto drained = std::async(std::launch::async, [&] { return w1.drain(60s); });
  std::this_thread::sleep_for(50ms);
  finish.open();
  const auto r = drained.get();
  CHECK(r.stopped);
  CHECK(r.finished == 1);
  CHECK(r.succeeded == 0);
  CHECK(r.handed_back == 1);
  CHECK(second_runs == 0);
  const auto j = get(db, id);
  CHECK(j.state == jobs::job_state::queued);
  CHECK(j.current_stage == 1);
  CHECK(j.attempts == 0);
  const auto out = jobs::output(db, id, "first");
  REQUIRE(out);
  CHECK(out->data == "first done");

  jobs::worker w2(db, options("w2"));
  w2.on_stage("first", [](jobs::job_context&) { FAIL("the first stage ran again"); });
  w2.on_stage("second", [&](jobs::job_context&) { ++second_runs; });
  CHECK(w2.run_once() == 1);
  CHECK(second_runs == 1);
  CHECK(get(db, id).state == jobs::job_state::succeeded);
}

TEST_CASE("drain: at the deadline a still-running job is handed back and its handler told to stop") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("long")).id;
  gate started;
  std::atomic<bool> saw_stop{false}, saw_lost{false}, refused{false};
  std::atomic<int> runs{0};
  jobs::worker w1(db, options("w1"));

  SUBCASE("a handler that watches its stop token returns early; its completion is refused") {
    w1.on_stage("work", [&](jobs::job_context& ctx) {
      ++runs;
      started.open();
      const auto token = ctx.stop_token();
      for (int i = 0; i < 6000 && !token.stop_requested(); ++i) std::this_thread::sleep_for(10ms);
      saw_stop = token.stop_requested();
      saw_lost = ctx.lost();
      try {
        ctx.complete([](transaction&) {});
      } catch (const lease_lost&) {
        refused = true;
      }
    });
    w1.start();
    REQUIRE(started.wait());
    const auto r = w1.drain(200ms);
    CHECK_FALSE(r.stopped); // the handler was still running at the deadline
    CHECK(r.interrupted == 1);
    CHECK(r.handed_back == 1);
    CHECK(r.finished == 0);
    const auto j = get(db, id);
    CHECK(j.state == jobs::job_state::queued);
    CHECK(j.attempts == 0); // handed back: the attempt is not counted
    w1.stop(); // waits for the handler, which saw the stop
    CHECK(saw_stop);
    CHECK(saw_lost);
    CHECK(refused);
  }

  SUBCASE("a handler interrupted at a Boost interruption point") {
    w1.on_stage("work", [&](jobs::job_context&) {
      ++runs;
      started.open();
      try {
        for (int i = 0; i < 6000; ++i) { // up to 60 s, at an interruption point every 10 ms
          boost::this_thread::interruption_point();
          std::this_thread::sleep_for(10ms);
        }
      } catch (const boost::thread_interrupted&) {
        saw_stop = true;
        throw;
      }
    });
    w1.start();
    REQUIRE(started.wait());
    const auto r = w1.drain(200ms);
    CHECK(r.interrupted == 1);
    CHECK(r.handed_back == 1);
    w1.stop();
    CHECK(saw_stop);
    CHECK(get(db, id).state == jobs::job_state::queued);
  }

  SUBCASE("a handler that ignores the signal: the job runs elsewhere meanwhile; its late completion is refused") {
    gate finish;
    std::optional<jobs::claim_ref> old_claim;
    w1.on_stage("work", [&](jobs::job_context& ctx) {
      ++runs;
      old_claim = ctx.ref();
      started.open();
      finish.wait(); // deaf to the stop token and to interruption
      try {
        // Straight to the database's fence (ctx.complete would refuse locally: lost() is set).
        db.write([&](transaction& tx) { jobs::complete_stage(tx, ctx.ref(), 0, tx.now_us()); });
      } catch (const lease_lost&) {
        refused = true;
      }
    });
    w1.start();
    REQUIRE(started.wait());
    const auto r = w1.drain(200ms);
    CHECK_FALSE(r.stopped);
    CHECK(r.interrupted == 1);
    CHECK(get(db, id).state == jobs::job_state::queued);

    jobs::worker w2(db, options("w2"));
    std::atomic<int> w2_runs{0};
    w2.on_stage("work", [&](jobs::job_context&) { ++w2_runs; });
    CHECK(w2.run_once() == 1);
    CHECK(w2_runs == 1);
    const auto j = get(db, id);
    CHECK(j.state == jobs::job_state::succeeded);
    REQUIRE(old_claim);
    CHECK(j.lease_epoch > old_claim->epoch); // a new claim, a newer fencing token

    finish.open();
    w1.stop(); // waits for the deaf handler
    CHECK(refused);
    CHECK(get(db, id).state == jobs::job_state::succeeded);
  }
  CHECK(runs == 1);
}

TEST_CASE("drain: a worker that was not started, and a negative timeout") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::worker w(db, options("w"));
  CHECK_THROWS_AS(w.drain(-1ms), invalid_argument);
  const auto r = w.drain(0ms);
  CHECK(r.stopped);
  CHECK(r.handed_back == 0);
  // Drained twice, and stopped after: all no-ops.
  w.on_stage("work", [](jobs::job_context&) {});
  w.start();
  CHECK(w.drain(1s).stopped);
  CHECK(w.drain(1s).stopped);
  w.stop();
}
