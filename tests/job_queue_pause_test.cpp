// Durable pauses (issue 13, queue controls): once pause() returned, no claim that starts afterwards
// takes a job the pause covers, on any handle or process; running jobs finish; resume() brings the
// jobs back unless another pause still covers them. Both backends. The claim refuses a covered job
// even when it is 'queued' (a transaction that did not see the pause queued it, or a reclaim put it
// back), not only because pause() moved it to 'paused'.
#include "job_test_env.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/steps.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <functional>
#include <mutex>
#include <set>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

jobs::enqueued put(database& db, const std::string& op, const std::string& subject, const std::string& key = {},
                   std::chrono::milliseconds delay = 0ms) {
  jobs::job_spec spec;
  spec.operation = op;
  spec.subject = subject;
  spec.concurrency_key = key;
  spec.delay = delay;
  return jobs::enqueue(db, spec);
}

std::vector<jobs::job> claim_all(database& db, std::chrono::milliseconds lease = 30s) {
  jobs::claim_options o;
  o.owner = "pause-test";
  o.batch = 100;
  o.lease = lease;
  return jobs::claim(db, o);
}

std::set<std::string> subjects(const std::vector<jobs::job>& js) {
  std::set<std::string> out;
  for (const auto& j : js) out.insert(j.subject);
  return out;
}

jobs::job_state state_of(database& db, std::int64_t id) { return jobs::get(db, id)->state; }

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

} // namespace

// A child process pauses or resumes: argv = {url, "pause"|"resume", operation}.
CASECORE_CHILD(job_pause_child) {
  auto db = open(args.at(0));
  const jobs::pause_target t{args.at(2), ""};
  if (args.at(1) == "pause") return jobs::pause(db, t, "from another process", "child") ? 0 : 3;
  return jobs::resume(db, t) ? 0 : 3;
}

TEST_CASE("pause: claims skip the paused operation, other work goes on, resume brings it back") {
  scratch_database s;
  auto db = s.open_migrated();
  std::vector<std::int64_t> ocr;
  for (int i = 0; i < 3; ++i) ocr.push_back(put(db, "ocr", "file:" + std::to_string(i)).id);
  put(db, "index", "file:a");
  put(db, "index", "file:b");

  CHECK(jobs::pause(db, {"ocr", ""}, "OCR service down", "alice"));
  CHECK_FALSE(jobs::pause(db, {"ocr", ""}, "again", "bob")); // already paused: reason and author kept
  for (auto id : ocr) CHECK(state_of(db, id) == jobs::job_state::paused);
  auto listed = jobs::pauses(db);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].target.operation == "ocr");
  CHECK(listed[0].target.concurrency_key.empty());
  CHECK(listed[0].reason == "OCR service down");
  CHECK(listed[0].paused_by == "alice");
  CHECK(listed[0].paused_jobs == 3);
  CHECK(listed[0].paused_at > 0);

  // New work of the operation is born paused; a job of the same key joins the waiting one.
  const auto late = put(db, "ocr", "file:late");
  CHECK(late.created);
  CHECK(state_of(db, late.id) == jobs::job_state::paused);
  const auto again = put(db, "ocr", "file:0");
  CHECK_FALSE(again.created);
  CHECK(again.id == ocr[0]);
  // A job due later stays scheduled and is paused when it comes due.
  const auto soon = put(db, "ocr", "file:soon", "", 50ms);
  std::this_thread::sleep_for(120ms);

  CHECK(subjects(claim_all(db)) == std::set<std::string>{"file:a", "file:b"});
  CHECK(claim_all(db).empty());
  CHECK(state_of(db, soon.id) == jobs::job_state::paused); // the claim promoted it into the pause
  CHECK(jobs::inspect(db).by_state["paused"] == 5);
  CHECK(jobs::list(db, jobs::job_state::paused, 100).size() == 5);

  CHECK(jobs::resume(db, {"ocr", ""}));
  CHECK_FALSE(jobs::resume(db, {"ocr", ""}));
  CHECK(jobs::pauses(db).empty());
  CHECK(subjects(claim_all(db)) == std::set<std::string>{"file:0", "file:1", "file:2", "file:late", "file:soon"});
}

TEST_CASE("pause: a key pause covers every operation, a combined one only its operation; overlapping pauses") {
  scratch_database s;
  auto db = s.open_migrated();
  put(db, "ocr", "f1", "case:1");
  put(db, "index", "f1", "case:1");
  put(db, "ocr", "f2", "case:2");
  put(db, "index", "f2", "case:2");

  REQUIRE(jobs::pause(db, {"", "case:1"}));
  REQUIRE(jobs::pause(db, {"ocr", "case:2"}));
  auto got = claim_all(db);
  REQUIRE(got.size() == 1);
  CHECK(got[0].operation == "index");
  CHECK(got[0].subject == "f2");

  // Lifting the key pause leaves case:1's ocr job covered by nothing and case:2's by the combined one.
  REQUIRE(jobs::pause(db, {"ocr", ""}));
  REQUIRE(jobs::resume(db, {"", "case:1"}));
  got = claim_all(db);
  REQUIRE(got.size() == 1);
  CHECK(got[0].operation == "index");
  CHECK(got[0].subject == "f1");
  // ocr/f1 was held by {"ocr", ""} alone; ocr/f2 is still under {"ocr", "case:2"}.
  REQUIRE(jobs::resume(db, {"ocr", ""}));
  got = claim_all(db);
  REQUIRE(got.size() == 1);
  CHECK(got[0].operation == "ocr");
  CHECK(got[0].subject == "f1");
  const auto still = jobs::list(db, jobs::job_state::paused, 10);
  REQUIRE(still.size() == 1);
  CHECK(still[0].subject == "f2");
  REQUIRE(jobs::resume(db, {"ocr", "case:2"}));
  got = claim_all(db);
  REQUIRE(got.size() == 1);
  CHECK(got[0].subject == "f2");
}

TEST_CASE("pause: running jobs finish, a paused job can be cancelled, a retried one waits in the pause") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto running_id = put(db, "ocr", "running").id;
  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == 1);
  const auto waiting_id = put(db, "ocr", "waiting").id;
  REQUIRE(jobs::pause(db, {"ocr", ""}));
  CHECK(state_of(db, running_id) == jobs::job_state::running);
  const jobs::claim_ref ref{claimed[0].id, claimed[0].lease_epoch};
  CHECK(db.write([&](transaction& tx) { return jobs::complete_stage(tx, ref, 0, claimed[0].run_at); }));
  CHECK(state_of(db, running_id) == jobs::job_state::succeeded);

  CHECK(jobs::cancel(db, waiting_id));
  CHECK(state_of(db, waiting_id) == jobs::job_state::cancelled);
  CHECK(jobs::retry(db, waiting_id).state == jobs::job_state::paused);
  CHECK(claim_all(db).empty());
  REQUIRE(jobs::resume(db, {"ocr", ""}));
  CHECK(claim_all(db).size() == 1);
}

TEST_CASE("pause: the claim refuses a covered job that is queued, not only the ones pause() moved") {
  // A reclaim puts an expired claim back as 'queued' whatever pauses exist: the claim must still
  // refuse it while the pause holds (the state move alone would not).
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = put(db, "ocr", "reclaimed").id;
  REQUIRE(claim_all(db, 100ms).size() == 1);
  REQUIRE(jobs::pause(db, {"ocr", ""}));
  std::this_thread::sleep_for(250ms);
  REQUIRE(jobs::reclaim_expired(db) == 1);
  REQUIRE(state_of(db, id) == jobs::job_state::queued);
  CHECK(claim_all(db).empty());
  jobs::claim_options limited;
  limited.owner = "limited";
  limited.batch = 10;
  limited.max_running = 5; // the limited claim path picks its candidates with its own statement
  CHECK(jobs::claim(db, limited).empty());
  REQUIRE(jobs::resume(db, {"ocr", ""}));
  CHECK(claim_all(db).size() == 1);
}

TEST_CASE("pause: a job queued by a transaction that did not see the pause is not claimed (PostgreSQL)") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres) {
    MESSAGE("SQLite has one writer: an enqueue and a pause cannot interleave");
    return;
  }
  auto db = s.open_migrated();
  std::int64_t id = 0;
  {
    casecore::testing::step_gate gate;
    std::thread producer([&] {
      db.write([&](transaction& tx) {
        jobs::job_spec spec;
        spec.operation = "ocr";
        spec.subject = "racing";
        id = jobs::enqueue(tx, spec).id;
      });
    });
    gate.pause_at("tx.before_commit", 1, producer.get_id());
    REQUIRE(gate.wait_parked("tx.before_commit"));
    REQUIRE(jobs::pause(db, {"ocr", ""})); // commits while the enqueue's row is still invisible
    gate.release("tx.before_commit");
    producer.join();
  }
  REQUIRE(state_of(db, id) == jobs::job_state::queued); // born before the pause was visible
  CHECK(claim_all(db).empty());
  REQUIRE(jobs::resume(db, {"ocr", ""}));
  CHECK(claim_all(db).size() == 1);
}

TEST_CASE("pause: another process pauses and resumes a running worker's operation") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::worker_options o;
  o.threads = 2;
  o.batch = casecore::testing::job_batch(4);
  o.poll = 20ms;
  jobs::worker w(s.open(), o);
  std::mutex m;
  std::set<std::string> ran;
  const auto has_run = [&](const std::string& subject) {
    std::lock_guard g(m);
    return ran.count(subject) == 1;
  };
  const auto wait_for = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 3000 && !done(); ++i) std::this_thread::sleep_for(10ms);
    return done();
  };
  w.on_stage("run", [&](jobs::job_context& c) {
    std::lock_guard g(m);
    ran.insert(c.current().subject);
  });
  w.start();
  put(db, "ocr", "before");
  REQUIRE(wait_for([&] { return has_run("before"); }));

  casecore::testing::child_process pauser("job_pause_child", {s.url(), "pause", "ocr"});
  REQUIRE(pauser.wait().exit_code == 0);
  std::vector<std::int64_t> held;
  for (int i = 0; i < 5; ++i) held.push_back(put(db, "ocr", "held-" + std::to_string(i)).id);
  put(db, "index", "free");
  w.notify();
  REQUIRE(wait_for([&] { return has_run("free"); }));
  std::this_thread::sleep_for(200ms); // ten more polls: nothing of ocr may start
  for (int i = 0; i < 5; ++i) CHECK_FALSE(has_run("held-" + std::to_string(i)));
  for (auto id : held) CHECK(state_of(db, id) == jobs::job_state::paused);

  casecore::testing::child_process resumer("job_pause_child", {s.url(), "resume", "ocr"});
  REQUIRE(resumer.wait().exit_code == 0);
  w.notify();
  CHECK(wait_for([&] { return scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == 7; }));
  w.stop();
  for (int i = 0; i < 5; ++i) CHECK(has_run("held-" + std::to_string(i)));
}

TEST_CASE("pause: bad targets are refused with invalid_argument and nothing is written") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = put(db, "ocr", "x").id;
  const std::vector<std::pair<jobs::pause_target, std::string>> bad{
      {{"", ""}, "empty target"},
      {{"ocr\x1b[2J", ""}, "control character in operation"},
      {{"", "case\n1"}, "newline in key"},
      {{std::string(101, 'o'), ""}, "operation too long"},
      {{"", std::string(201, 'k')}, "key too long"},
      {{std::string("oc\xff", 3), ""}, "invalid UTF-8"},
  };
  for (const auto& [target, label] : bad) {
    CAPTURE(label);
    try {
      jobs::pause(db, target);
      FAIL("accepted");
    } catch (const error& e) {
      CHECK(e.code() == errc::invalid_argument);
    }
    try {
      jobs::resume(db, target);
      FAIL("accepted");
    } catch (const error& e) {
      CHECK(e.code() == errc::invalid_argument);
    }
  }
  CHECK_THROWS_AS(jobs::pause(db, {"ocr", ""}, std::string(501, 'r')), error);
  CHECK_THROWS_AS(jobs::pause(db, {"ocr", ""}, "why", "who\x07"), error);
  CHECK(jobs::pauses(db).empty());
  CHECK(state_of(db, id) == jobs::job_state::queued);
}
