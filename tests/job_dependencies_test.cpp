// Job dependencies (issue 13: fan-out, fan-in): a job waits for other jobs to succeed; a failed or
// cancelled dependency leaves its dependents blocked with the reason; cycles are refused. Both
// backends. The races (a dependency completing while its dependent is enqueued; two dependencies of
// one fan-in job completing at the same moment) are forced with step gates.
#include "job_test_env.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/steps.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

jobs::job_spec spec_of(const std::string& op, const std::string& subject, std::vector<std::int64_t> deps = {}) {
  jobs::job_spec s;
  s.operation = op;
  s.subject = subject;
  s.depends_on = std::move(deps);
  return s;
}

std::int64_t put(database& db, const std::string& op, const std::string& subject, std::vector<std::int64_t> deps = {},
                 int max_attempts = 5) {
  auto s = spec_of(op, subject, std::move(deps));
  s.max_attempts = max_attempts;
  return jobs::enqueue(db, s).id;
}

// Every due job, claimed.
std::map<std::int64_t, jobs::job> claim_all(database& db) {
  jobs::claim_options o;
  o.owner = "deps-test";
  o.batch = 1000;
  std::map<std::int64_t, jobs::job> out;
  for (auto& j : jobs::claim(db, o)) out.emplace(j.id, j);
  return out;
}

void succeed(database& db, const jobs::job& j) {
  db.write([&](transaction& tx) { CHECK(jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0)); });
}

jobs::job_state state_of(database& db, std::int64_t id) { return jobs::get(db, id)->state; }

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

// Claim the due jobs, complete the ones in `ids`, release the rest.
void run_only(database& db, const std::set<std::int64_t>& ids) {
  for (auto& [id, j] : claim_all(db)) {
    if (ids.count(id)) succeed(db, j);
    else CHECK(jobs::release(db, {j.id, j.lease_epoch}));
  }
}

} // namespace

TEST_CASE("deps: a fan-in job waits for every dependency, then becomes due once") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto b = put(db, "build", "b");
  const auto j = put(db, "join", "ab", {a, b, a}); // the duplicate collapses
  CHECK(state_of(db, j) == jobs::job_state::waiting);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_deps WHERE job_id = " + std::to_string(j)) == 2);
  CHECK(jobs::list(db, jobs::job_state::waiting, 10).size() == 1);

  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == 2); // the join is never claimed while it waits
  CHECK(!claimed.count(j));
  succeed(db, claimed.at(a));
  CHECK(state_of(db, j) == jobs::job_state::waiting);
  CHECK(claim_all(db).empty());
  succeed(db, claimed.at(b));
  CHECK(state_of(db, j) == jobs::job_state::queued);
  auto next = claim_all(db);
  REQUIRE(next.size() == 1);
  CHECK(next.begin()->first == j);
  succeed(db, next.begin()->second);
  CHECK(state_of(db, j) == jobs::job_state::succeeded);

  // A dependency that already succeeded counts at once.
  const auto k = put(db, "join", "late", {a});
  CHECK(state_of(db, k) == jobs::job_state::queued);
}

TEST_CASE("deps: bad dependencies are refused with invalid_argument and nothing is written") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto before = scalar(db, "SELECT count(*) FROM casecore_jobs");
  CHECK_THROWS_AS(put(db, "join", "x", {a, a + 1000}), invalid_argument);
  CHECK_THROWS_AS(put(db, "join", "x", {0}), invalid_argument);
  CHECK_THROWS_AS(put(db, "join", "x", {-3}), invalid_argument);
  std::vector<std::int64_t> too_many;
  for (std::int64_t i = 1; i <= 1001; ++i) too_many.push_back(i);
  CHECK_THROWS_AS(put(db, "join", "y", too_many), invalid_argument);
  // In a bulk call: all or nothing.
  std::vector<jobs::job_spec> specs{spec_of("bulk", "1"), spec_of("bulk", "2", {a + 999})};
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); }), invalid_argument);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs") == before);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE operation = 'bulk'") == 0);
}

TEST_CASE("deps: 1001 names of the same job are refused before collapsing (the bound is on the list given)") {
  // The bound is on what the caller passes, so a list cannot grow the statement without limit.
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  std::vector<std::int64_t> many(1001, a);
  CHECK_THROWS_AS(put(db, "join", "dup", many), invalid_argument);
  std::vector<std::int64_t> ok(1000, a);
  CHECK(state_of(db, put(db, "join", "dup", ok)) == jobs::job_state::waiting);
}

TEST_CASE("deps: cycles cannot be built: self-reference through the job key, and an older job naming a newer one") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto x = put(db, "build", "x");
  const auto w = put(db, "join", "k", {x}); // waits, holds key (join, k)
  // Enqueueing key (join, k) again returns w: naming w itself would make w depend on itself.
  CHECK_THROWS_AS(put(db, "join", "k", {w}), invalid_argument);
  // y depends on w; naming y from key (join, k) would add w -> y next to y -> w: a cycle.
  const auto y = put(db, "after", "y", {w});
  CHECK_THROWS_AS(put(db, "join", "k", {y}), invalid_argument);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_deps WHERE job_id = " + std::to_string(w)) == 1);
  // The database refuses such an edge whatever the caller does.
  CHECK_THROWS(db.write([&](transaction& tx) {
    tx.exec("INSERT INTO casecore_job_deps(job_id, depends_on) VALUES($1, $2)", w, y);
  }));
  // A key's waiting job joined by a request naming an OLDER job waits for the union.
  const auto z = put(db, "build", "z");
  CHECK_THROWS_AS(put(db, "join", "k", {z}), invalid_argument); // z is newer than w
  const auto v = put(db, "build", "v");
  const auto again = jobs::enqueue(db, spec_of("join", "k2", {x}));
  CHECK(again.created);
  CHECK(v < again.id);
  const auto joined = jobs::enqueue(db, spec_of("join", "k2", {v}));
  CHECK(!joined.created);
  CHECK(joined.id == again.id);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_deps WHERE job_id = " + std::to_string(again.id)) == 2);
}

TEST_CASE("deps: a job of the key that is queued and joined by a request with pending dependencies waits") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto q = put(db, "report", "r"); // queued, no dependencies
  (void)a;
  // The newest request of (report, r) must not run before a: the queued job now waits for a... but
  // a is older than q, so the union is allowed.
  const auto joined = jobs::enqueue(db, spec_of("report", "r", {a}));
  CHECK(joined.id == q);
  CHECK(state_of(db, q) == jobs::job_state::waiting);
  run_only(db, {a});
  CHECK(state_of(db, q) == jobs::job_state::queued);
}

TEST_CASE("deps: a failed dependency blocks its dependents transitively with the reason; retry un-blocks them") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a", {}, 1);
  const auto b = put(db, "mid", "b", {a});
  const auto c = put(db, "leaf", "c", {b});
  const auto other = put(db, "build", "o");
  const auto d = put(db, "leaf", "d", {b, other});

  auto claimed = claim_all(db);
  REQUIRE(claimed.count(a));
  CHECK(jobs::fail(db, {a, claimed.at(a).lease_epoch}, 0, "boom") == jobs::job_state::failed);
  for (auto id : {b, c, d}) {
    const auto j = *jobs::get(db, id);
    CHECK(j.state == jobs::job_state::blocked);
    CHECK(j.last_error == "blocked: dependency job " + std::to_string(a) + " is failed");
  }
  CHECK(jobs::list(db, jobs::job_state::blocked, 10).size() == 3);
  // A new dependent of a blocked job is born blocked.
  const auto e = put(db, "leaf", "e", {c});
  CHECK(state_of(db, e) == jobs::job_state::blocked);
  CHECK(jobs::get(db, e)->last_error == "blocked: dependency job " + std::to_string(c) + " is blocked");
  CHECK(claim_all(db).empty()); // blocked jobs are never claimed (`other` is still running)

  // The operator retries a: everything waits again.
  CHECK(jobs::retry(db, a).state == jobs::job_state::queued);
  for (auto id : {b, c, d, e}) {
    CHECK(state_of(db, id) == jobs::job_state::waiting);
    CHECK(jobs::get(db, id)->last_error.empty());
  }
  run_only(db, {a});
  CHECK(state_of(db, b) == jobs::job_state::queued);
  CHECK(state_of(db, c) == jobs::job_state::waiting);
}

TEST_CASE("deps: cancelling a dependency or a waiting job blocks what waits for it; a cancelled dependent retried waits again") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto b = put(db, "mid", "b", {a});
  const auto c = put(db, "leaf", "c", {b});
  CHECK(jobs::cancel(db, b)); // a waiting job can be cancelled
  CHECK(state_of(db, b) == jobs::job_state::cancelled);
  CHECK(jobs::get(db, c)->state == jobs::job_state::blocked);
  CHECK(jobs::get(db, c)->last_error == "blocked: dependency job " + std::to_string(b) + " is cancelled");
  CHECK(state_of(db, a) == jobs::job_state::queued); // a dependency is not affected by its dependents
  // Retrying b: it waits for a again (it must not run early), and c waits for b.
  CHECK(jobs::retry(db, b).state == jobs::job_state::waiting);
  CHECK(state_of(db, c) == jobs::job_state::waiting);
  // A blocked job can be cancelled too.
  CHECK(jobs::cancel(db, a));
  CHECK(state_of(db, b) == jobs::job_state::blocked);
  CHECK(jobs::cancel(db, c));
  CHECK(state_of(db, c) == jobs::job_state::cancelled);
}

TEST_CASE("deps: a dependency running out of attempts through a reclaim blocks its dependents") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a", {}, 1);
  const auto b = put(db, "mid", "b", {a});
  jobs::claim_options o;
  o.owner = "deps-test";
  o.lease = 50ms;
  REQUIRE(jobs::claim(db, o).size() == 1);
  std::this_thread::sleep_for(150ms);
  CHECK(jobs::reclaim_expired(db) == 1);
  CHECK(state_of(db, a) == jobs::job_state::failed);
  CHECK(state_of(db, b) == jobs::job_state::blocked);
}

TEST_CASE("deps: a blocked job un-blocked while a newer job of its key waits is superseded by it") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a", {}, 1);
  const auto b = put(db, "report", "r", {a});
  auto claimed = claim_all(db);
  jobs::fail(db, {a, claimed.at(a).lease_epoch}, 0, "boom");
  CHECK(state_of(db, b) == jobs::job_state::blocked);
  const auto fresh = jobs::enqueue(db, spec_of("report", "r")); // blocked does not hold the key
  CHECK(fresh.created);
  jobs::retry(db, a);
  CHECK(state_of(db, b) == jobs::job_state::cancelled);
  CHECK(jobs::get(db, b)->last_error == "superseded by job " + std::to_string(fresh.id));
}

TEST_CASE("deps: a dependency completing while its dependent is enqueued (enqueue first) is never missed") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == 1);
  casecore::testing::step_gate gate;
  gate.pause_at("jobs.deps.locked"); // the enqueue has read a's state (running) and holds it
  std::atomic<std::int64_t> dependent{0};
  std::thread enq([&] { dependent = put(db, "join", "j", {a}); });
  REQUIRE(gate.wait_parked("jobs.deps.locked"));
  // a completes now. PostgreSQL: its row lock waits for the enqueue's share lock; SQLite: for the writer.
  std::thread done([&] { succeed(db, claimed.at(a)); });
  std::this_thread::sleep_for(300ms); // let the completion reach its wait
  gate.release("jobs.deps.locked");
  enq.join();
  done.join();
  CHECK(state_of(db, a) == jobs::job_state::succeeded);
  CHECK(state_of(db, dependent) == jobs::job_state::queued); // never left waiting forever
}

TEST_CASE("deps: a dependency completing while its dependent is enqueued (completion first) is never missed") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == 1);
  casecore::testing::step_gate gate;
  std::atomic<bool> go{false};
  std::thread done([&] {
    while (!go) std::this_thread::yield();
    succeed(db, claimed.at(a));
  });
  gate.pause_at("tx.before_commit", 1, done.get_id()); // a's completion is written, not committed
  go = true;
  REQUIRE(gate.wait_parked("tx.before_commit"));
  std::atomic<std::int64_t> dependent{0};
  std::thread enq([&] { dependent = put(db, "join", "j", {a}); });
  std::this_thread::sleep_for(300ms); // let the enqueue reach its wait (a's row / the writer)
  gate.release("tx.before_commit");
  done.join();
  enq.join();
  CHECK(state_of(db, dependent) == jobs::job_state::queued);
}

TEST_CASE("deps: two dependencies of one fan-in job completing at the same moment release it exactly once") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto b = put(db, "build", "b");
  const auto j = put(db, "join", "ab", {a, b});
  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == 2);
  casecore::testing::step_gate gate;
  std::atomic<bool> go{false};
  std::thread first([&] {
    while (!go) std::this_thread::yield();
    succeed(db, claimed.at(a));
  });
  // The first completion holds the join's row and is about to ask "anything left?"; the second
  // completes b meanwhile and must wait for it, then see a's edge.
  gate.pause_at("jobs.deps.dependents_locked", 1, first.get_id());
  go = true;
  REQUIRE(gate.wait_parked("jobs.deps.dependents_locked"));
  std::thread second([&] { succeed(db, claimed.at(b)); });
  std::this_thread::sleep_for(300ms);
  gate.release("jobs.deps.dependents_locked");
  first.join();
  second.join();
  CHECK(state_of(db, j) == jobs::job_state::queued);
  auto next = claim_all(db);
  CHECK(next.size() == 1);
  CHECK(next.count(j) == 1);
}

TEST_CASE("deps: the second completion of a fan-in job runs while the first has asked but not committed (write skew)") {
  // The first completion has marked its edge, asked "anything left?" (yes: b) and is held before
  // its commit. Without the lock on the join's row the second would ask now, see a's edge still
  // unsatisfied (not committed) and leave the join waiting forever. With it, the second waits for
  // the first's commit and then sees a's edge.
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  const auto b = put(db, "build", "b");
  const auto j = put(db, "join", "ab", {a, b});
  auto claimed = claim_all(db);
  casecore::testing::step_gate gate;
  std::atomic<int> go{0};
  std::thread first([&] {
    while (go < 1) std::this_thread::yield();
    succeed(db, claimed.at(a));
  });
  gate.pause_at("tx.before_commit", 1, first.get_id());
  go = 1;
  REQUIRE(gate.wait_parked("tx.before_commit"));
  CHECK(gate.reached("jobs.deps.dependents_locked") == 1); // the first has asked
  std::thread second([&] { succeed(db, claimed.at(b)); });
  std::this_thread::sleep_for(300ms);
  gate.release("tx.before_commit");
  first.join();
  second.join();
  CHECK(state_of(db, j) == jobs::job_state::queued);
}

TEST_CASE("deps: many concurrent completions of fan-in parents: every join released once, no deadlock") {
  scratch_database s;
  auto db = s.open_migrated();
  constexpr int joins = 12, parents = 6, threads = 6;
  std::vector<std::int64_t> join_ids;
  std::vector<std::int64_t> all_parents;
  // Parents shared between joins too (each join waits for its own parents and one shared one).
  const auto shared = put(db, "build", "shared");
  all_parents.push_back(shared);
  for (int k = 0; k < joins; ++k) {
    std::vector<std::int64_t> mine{shared};
    for (int p = 0; p < parents; ++p) {
      mine.push_back(put(db, "build", "p" + std::to_string(k) + "." + std::to_string(p)));
      all_parents.push_back(mine.back());
    }
    join_ids.push_back(put(db, "join", "j" + std::to_string(k), mine));
  }
  auto claimed = claim_all(db);
  REQUIRE(claimed.size() == all_parents.size());
  std::vector<jobs::job> work;
  for (auto& [id, j] : claimed) work.push_back(j);
  std::shuffle(work.begin(), work.end(), std::mt19937{42});
  const auto before = db.tx_stats();
  std::atomic<std::size_t> next{0};
  std::atomic<int> errors{0};
  std::atomic<std::uint64_t> deadlocks{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      auto mine = s.open(); // its own handle and connections
      for (std::size_t i; (i = next++) < work.size();) {
                try {
          mine.write([&](transaction& tx) {
            const jobs::stage_done d{{work[i].id, work[i].lease_epoch}, 0, 0};
            CHECK(jobs::complete_stages(tx, std::span<const jobs::stage_done>(&d, 1))[0].held);
          });
        } catch (const std::exception&) {
          ++errors;
        }
      }
      deadlocks += mine.tx_stats().retries_deadlock;
    });
  for (auto& t : pool) t.join();
  CHECK(errors == 0);
  for (auto id : join_ids) CHECK(state_of(db, id) == jobs::job_state::queued);
  auto next_round = claim_all(db);
  CHECK(next_round.size() == join_ids.size());
  // Completions lock their own rows, then the dependents, each set in id order: never a deadlock.
  // (Counted on this handle only: the threads' own handles retry on theirs, so read those too.)
  MESSAGE("deadlock retries on the main handle: " << db.tx_stats().retries_deadlock - before.retries_deadlock);
  CHECK(deadlocks == 0);
}

TEST_CASE("deps: a worker runs 1 root -> N children -> 1 join; the join runs once, after every child") {
  scratch_database s;
  auto db = s.open_migrated();
  constexpr int children = 12;
  const auto root = put(db, "root", "r");
  std::vector<std::int64_t> kids;
  for (int i = 0; i < children; ++i) kids.push_back(put(db, "child", "c" + std::to_string(i), {root}));
  const auto join = put(db, "join", "all", kids);

  std::mutex m;
  std::vector<std::string> order;
  std::atomic<int> join_runs{0};
  jobs::worker_options o;
  o.threads = 4;
  o.poll = 20ms;
  o.lease = casecore::testing::job_lease(30s);
  jobs::worker w(s.open(), o);
  w.on_stage("run", [&](jobs::job_context& c) {
    std::lock_guard lock(m);
    order.push_back(c.current().operation);
    if (c.current().operation == "join") ++join_runs;
  });
  w.start();
  for (int i = 0; i < 600 && state_of(db, join) != jobs::job_state::succeeded; ++i) std::this_thread::sleep_for(50ms);
  w.stop();
  REQUIRE(state_of(db, join) == jobs::job_state::succeeded);
  CHECK(join_runs == 1);
  REQUIRE(order.size() == children + 2);
  CHECK(order.front() == "root");
  CHECK(order.back() == "join");
}

TEST_CASE("deps: enqueue_bulk: a spec with dependencies waits, the others are queued, duplicates collapse") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  std::vector<jobs::job_spec> specs{spec_of("bulk", "p"), spec_of("bulk", "q", {a}), spec_of("bulk", "q", {a})};
  const auto out = db.write([&](transaction& tx) { return jobs::enqueue_bulk(tx, specs); });
  REQUIRE(out.size() == 3);
  CHECK(state_of(db, out[0].id) == jobs::job_state::queued);
  CHECK(state_of(db, out[2].id) == jobs::job_state::waiting);
  CHECK(out[1].id == out[2].id);
  run_only(db, {a});
  CHECK(state_of(db, out[2].id) == jobs::job_state::queued);
}

TEST_CASE("deps: on PostgreSQL an enqueue with dependencies in a REPEATABLE READ transaction is refused") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a");
  if (casecore::testing::selected_backend() != casecore::testing::backend_kind::postgres) {
    MESSAGE("SQLite has one writer and no isolation levels to refuse");
    return;
  }
  write_options rr;
  rr.level = isolation::repeatable_read;
  // A new snapshot per statement is what makes the completion see a concurrent enqueue's edge.
  CHECK_THROWS_AS(db.write([&](transaction& tx) { jobs::enqueue(tx, spec_of("join", "rr", {a})); }, rr), invalid_argument);
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE operation = 'join'") == 0);
  CHECK_NOTHROW(db.write([&](transaction& tx) { jobs::enqueue(tx, spec_of("plain", "rr")); }, rr)); // no dependencies: fine
}

#ifdef CASECORE_CLI_PATH
TEST_CASE("deps: the command line shows a blocked job's state and reason, and lists waiting and blocked jobs") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto a = put(db, "build", "a", {}, 1);
  const auto b = put(db, "mid", "b", {a});
  const auto c = put(db, "leaf", "c", {b});
  auto claimed = claim_all(db);
  jobs::fail(db, {a, claimed.at(a).lease_epoch}, 0, "boom");
  const auto d = put(db, "other", "d", {put(db, "build", "z")});
  auto run = [&](const std::string& args) {
    const std::string cmd = std::string("'") + CASECORE_CLI_PATH + "' --db '" + s.url() + "' " + args + " 2>&1";
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
      ::pclose(f);
    }
    return out;
  };
  const auto shown = run("job show " + std::to_string(c));
  CHECK(shown.find("state     blocked") != std::string::npos);
  CHECK(shown.find("blocked: dependency job " + std::to_string(a) + " is failed") != std::string::npos);
  const auto blocked = run("job list --state blocked --json");
  CHECK(blocked.find("\"id\":" + std::to_string(b)) != std::string::npos);
  CHECK(blocked.find("\"id\":" + std::to_string(c)) != std::string::npos);
  CHECK(run("job list --state waiting").find("waiting") != std::string::npos);
  CHECK(run("job list --state waiting").find(std::to_string(d)) != std::string::npos);
}
#endif

TEST_CASE("deps: a dependent enqueued while its dependency is being blocked ends blocked, in either order") {
  scratch_database s;
  auto db = s.open_migrated();
  SUBCASE("the enqueue holds the waiting job first; the blocking waits for it and then blocks the newcomer too") {
    const auto a = put(db, "build", "a", {}, 1);
    const auto j = put(db, "mid", "j", {a});
    auto claimed = claim_all(db);
    casecore::testing::step_gate gate;
    gate.pause_at("jobs.deps.locked"); // the enqueue read j (waiting) and holds it
    std::atomic<std::int64_t> y{0};
    std::thread enq([&] { y = put(db, "leaf", "y", {j}); });
    REQUIRE(gate.wait_parked("jobs.deps.locked"));
    std::thread failing([&] { jobs::fail(db, {a, claimed.at(a).lease_epoch}, 0, "boom"); });
    std::this_thread::sleep_for(300ms);
    gate.release("jobs.deps.locked");
    enq.join();
    failing.join();
    CHECK(state_of(db, j) == jobs::job_state::blocked);
    CHECK(state_of(db, y) == jobs::job_state::blocked); // never left waiting behind a blocked job
  }
  SUBCASE("the blocking holds the waiting job first; the enqueue waits and sees it blocked") {
    const auto a = put(db, "build", "a", {}, 1);
    const auto j = put(db, "mid", "j", {a});
    auto claimed = claim_all(db);
    casecore::testing::step_gate gate;
    std::atomic<bool> go{false};
    std::thread failing([&] {
      while (!go) std::this_thread::yield();
      jobs::fail(db, {a, claimed.at(a).lease_epoch}, 0, "boom");
    });
    gate.pause_at("tx.before_commit", 1, failing.get_id());
    go = true;
    REQUIRE(gate.wait_parked("tx.before_commit"));
    std::atomic<std::int64_t> y{0};
    std::thread enq([&] { y = put(db, "leaf", "y", {j}); });
    std::this_thread::sleep_for(300ms);
    gate.release("tx.before_commit");
    failing.join();
    enq.join();
    CHECK(state_of(db, y) == jobs::job_state::blocked);
    CHECK(jobs::get(db, y)->last_error == "blocked: dependency job " + std::to_string(j) + " is blocked");
  }
}
