// Leader election on a lease (leader.hpp) and the worker's leader tasks: processes campaigning for
// one name, failover, resign, the fence against a deposed leader, tasks on exactly one worker, the
// ready-made outbox and orphan-sweep tasks. Runs on SQLite and PostgreSQL.
#include <casecore/file_registry.hpp>
#include <casecore/leader.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

void create_log(database& db) {
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx, "CREATE TABLE leader_log(id {{id}}, token BIGINT NOT NULL, who TEXT NOT NULL, at BIGINT NOT NULL)"));
  });
}

// A write only the current leader may commit: the row and the fence in one transaction.
void fenced_write(database& db, const leader_election& e) {
  db.write([&](transaction& tx) {
    const auto t = e.term();
    tx.exec("INSERT INTO leader_log(token, who, at) VALUES($1, $2, casecore_now_us())", t ? t->token : 0, e.owner());
    e.check(tx); // last
  });
}

std::int64_t log_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM leader_log"); });
}

struct term_seen {
  std::int64_t token = 0;
  micros start = 0, end = 0; // database clock: acquisition (lower bound) and the last renewal's expiry
  std::string who;
};

constexpr auto child_ttl = 300ms;

} // namespace

// A candidate process: ticks every 40 ms for 2.5 s; while leading it writes a fenced row per tick,
// and after 4 leading ticks it stalls for 2 × ttl without ticking (a GC pause), so the others take
// over. Prints "term <token> <start_us> <end_us>" per term it held.
CASECORE_CHILD(leader_candidate) {
  auto db = open(args.at(0));
  const std::string me = "candidate-" + args.at(1);
  std::map<std::int64_t, term_seen> terms;
  leader_election e(db, "test.leader", me, {child_ttl, {}, {}});
  int leading = 0;
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    try {
      if (e.tick()) {
        const auto t = e.term();
        if (t) {
          auto& seen = terms[t->token];
          if (seen.token == 0) seen = {t->token, t->expires_at - child_ttl.count() * 1000, t->expires_at, me};
          seen.end = std::max(seen.end, t->expires_at);
          try {
            fenced_write(db, e);
          } catch (const lease_lost&) { // the term ended between the tick and the write: refused, fine
          }
        }
        if (++leading % 4 == 0) std::this_thread::sleep_for(2 * child_ttl);
      }
    } catch (const error& e2) {
      if (!e2.retryable()) throw;
    }
    std::this_thread::sleep_for(40ms);
  }
  // No resign: the end of each term is the expiry of its last renewal.
  for (const auto& [token, t] : terms) std::cout << "term " << token << ' ' << t.start << ' ' << t.end << ' ' << t.who << '\n';
  return 0;
}

TEST_CASE("leader election: candidate processes, at most one leader at a time, tokens strictly increase, fenced writes stay inside their term") {
  scratch_database s;
  auto db = s.open_migrated();
  create_log(db);
  const auto results = casecore::testing::run_children("leader_candidate", 3, {s.url()});
  std::vector<term_seen> terms;
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    std::istringstream in(r.output);
    for (std::string word; in >> word;) {
      REQUIRE(word == "term");
      term_seen t;
      in >> t.token >> t.start >> t.end >> t.who;
      terms.push_back(t);
    }
  }
  std::sort(terms.begin(), terms.end(), [](const auto& a, const auto& b) { return a.token < b.token; });
  REQUIRE(terms.size() >= 3); // every leader stalls after 4 ticks: the lease changed hands
  std::set<std::string> leaders;
  for (std::size_t i = 0; i < terms.size(); ++i) {
    leaders.insert(terms[i].who);
    CHECK(terms[i].start <= terms[i].end);
    if (i == 0) continue;
    CHECK(terms[i].token > terms[i - 1].token); // one term per token, never two candidates
    // No overlap on the database clock: a term starts only after the previous one expired.
    CHECK_MESSAGE(terms[i].start > terms[i - 1].end, "term " << terms[i].token << " started at " << terms[i].start
                                                              << " before term " << terms[i - 1].token << " ended at " << terms[i - 1].end);
  }
  CHECK(leaders.size() >= 2);
  MESSAGE(terms.size() << " terms held by " << leaders.size() << " candidates");
  // Every fenced write committed inside its own term, and in token order on the database clock.
  db.read([&](transaction& tx) {
    const auto rows = tx.exec("SELECT token, at, who FROM leader_log ORDER BY at, id");
    REQUIRE(rows.size() > 0);
    std::int64_t last = 0;
    for (const auto& r : rows) {
      const auto token = r.get<std::int64_t>(0);
      const auto at = r.get<micros>(1);
      CHECK(token >= last);
      last = token;
      const auto it = std::find_if(terms.begin(), terms.end(), [&](const auto& t) { return t.token == token; });
      REQUIRE(it != terms.end());
      CHECK(it->who == r.get<std::string>(2));
      CHECK(at >= it->start);
      CHECK(at <= it->end);
    }
  });
}

TEST_CASE("leader election: failover after the leader stops renewing, with callbacks") {
  scratch_database s;
  auto db = s.open_migrated();
  auto other = s.open(); // another process's handle
  std::vector<std::string> events;
  leader_options o{200ms, [&](const fence& f) { events.push_back("a elected " + std::to_string(f.token)); },
                   [&](const fence& f) { events.push_back("a deposed " + std::to_string(f.token)); }};
  leader_election a(db, "test.failover", "a", o);
  leader_election b(other, "test.failover", "b", {200ms, {}, {}});
  REQUIRE(a.tick());
  CHECK(a.is_leader());
  const auto first = *a.fence();
  CHECK(first.scope == "test.failover");
  CHECK_FALSE(b.tick());
  CHECK_FALSE(b.fence());
  CHECK(a.tick()); // renewed
  CHECK(a.fence()->token == first.token);
  std::this_thread::sleep_for(300ms); // a stops renewing (paused, crashed)
  CHECK_FALSE(a.is_leader());         // its own clock already says the term is over
  REQUIRE(b.tick());
  CHECK(b.fence()->token > first.token);
  CHECK_FALSE(a.tick()); // campaigns, loses: b holds the lease
  REQUIRE(events.size() == 2);
  CHECK(events[0] == "a elected " + std::to_string(first.token));
  CHECK(events[1] == "a deposed " + std::to_string(first.token));
}

TEST_CASE("leader election: resign hands over at once; a candidate may campaign again") {
  scratch_database s;
  auto db = s.open_migrated();
  int elected = 0, deposed = 0;
  leader_election a(db, "test.resign", "a", {30s, [&](const fence&) { ++elected; }, [&](const fence&) { ++deposed; }});
  leader_election b(s.open(), "test.resign", "b", {30s, {}, {}});
  REQUIRE(a.tick());
  CHECK_FALSE(b.tick());
  a.resign();
  CHECK_FALSE(a.is_leader());
  CHECK(deposed == 1);
  REQUIRE(b.tick()); // at once, not after the 30 s term
  CHECK_FALSE(a.tick());
  b.resign();
  CHECK(a.tick());
  CHECK(elected == 2);
  a.resign();
  a.resign(); // no effect when not leading
  CHECK(deposed == 2);
}

TEST_CASE("leader election: a leader whose lease was taken over cannot commit a fenced write") {
  scratch_database s;
  auto db = s.open_migrated();
  create_log(db);
  leader_election a(db, "test.fence", "a", {30s, {}, {}});
  leader_election b(s.open(), "test.fence", "b", {30s, {}, {}});
  REQUIRE(a.tick());
  fenced_write(db, a);
  CHECK(log_rows(db) == 1);
  // An operator expires the lease (or a's pause outlasted it); b takes over while a still believes it leads.
  lease::force_release(db, "test.fence");
  REQUIRE(b.tick());
  CHECK(a.is_leader()); // a's local view: its 30 s have not passed
  CHECK(a.fence()->token < b.fence()->token);
  CHECK_THROWS_AS(fenced_write(db, a), lease_lost);
  CHECK(log_rows(db) == 1); // a's row rolled back
  fenced_write(db, b);
  CHECK(log_rows(db) == 2);
  CHECK_FALSE(a.tick()); // the renewal is refused: a learns it was deposed
  CHECK_FALSE(a.is_leader());
  CHECK_THROWS_AS(fenced_write(db, a), lease_lost);
}

TEST_CASE("leader election: bad settings are refused") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK_THROWS_AS(leader_election(db, "", "a"), invalid_argument);
  CHECK_THROWS_AS(leader_election(db, "x", std::string("a\x01", 2)), invalid_argument);
  CHECK_THROWS_AS(leader_election(db, "x", "a", {0ms, {}, {}}), invalid_argument);
  CHECK_THROWS_AS(leader_election(db, std::string(201, 'x'), "a"), invalid_argument);
  jobs::worker_options o;
  o.leader_tasks.push_back({"t", 0ms, [](database&, const fence&) {}});
  CHECK_THROWS_AS(jobs::worker(db, o), invalid_argument);
  o.leader_tasks = {{"t", 1s, {}}};
  CHECK_THROWS_AS(jobs::worker(db, o), invalid_argument);
  o.leader_tasks = {{"", 1s, [](database&, const fence&) {}}};
  CHECK_THROWS_AS(jobs::worker(db, o), invalid_argument);
  CHECK_THROWS_AS(outbox_delivery_task("t", {}, 1s), invalid_argument);
  CHECK(lease::list(db, "").empty()); // nothing written
}

namespace {
jobs::worker_options leader_worker(std::string owner, std::function<void(database&, const fence&)> task) {
  jobs::worker_options o;
  o.owner = std::move(owner);
  o.threads = 1;
  o.poll = 50ms;
  o.leader_ttl = 5s; // renewed every ~1.7 s: no term change while both run, even on a loaded machine
  o.leader_tasks.push_back({"test.task", 30ms, std::move(task)});
  return o;
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 30s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}
} // namespace

TEST_CASE("worker leader tasks: run on exactly one worker of two, fenced; the other takes over when it stops") {
  scratch_database s;
  auto db = s.open_migrated();
  create_log(db);
  auto task = [](database& d, const fence& f) {
    d.write([&](transaction& tx) {
      tx.exec("INSERT INTO leader_log(token, who, at) VALUES($1, (SELECT owner FROM casecore_leases WHERE name = $2), casecore_now_us())",
              f.token, f.scope);
      lease::check(tx, f.scope, f.token);
    });
  };
  auto w1 = std::make_unique<jobs::worker>(s.open(), leader_worker("w1", task));
  auto w2 = std::make_unique<jobs::worker>(s.open(), leader_worker("w2", task));
  w1->start();
  w2->start();
  REQUIRE(wait_until([&] { return log_rows(db) >= 10; }));
  const auto who = db.read([](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(DISTINCT who) FROM leader_log");
  });
  CHECK(who == 1); // the term never changed hands while both ran
  const auto leader = db.read([](transaction& tx) { return tx.query_one<std::string>("SELECT who FROM leader_log ORDER BY id LIMIT 1"); });
  const auto rows_before = log_rows(db);
  auto& first = leader == "w1" ? w1 : w2;
  const std::string follower = leader == "w1" ? "w2" : "w1";
  first->stop(); // resigns
  first.reset();
  REQUIRE(wait_until([&] {
    return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM leader_log WHERE who = $1", follower); }) >= 3;
  }));
  w1.reset();
  w2.reset();
  CHECK(log_rows(db) > rows_before);
  // Terms in order: the follower's rows carry a higher token than every row of the first leader.
  db.read([&](transaction& tx) {
    const auto max_first = tx.query_one<std::int64_t>("SELECT max(token) FROM leader_log WHERE who = $1", leader);
    const auto min_next = tx.query_one<std::int64_t>("SELECT min(token) FROM leader_log WHERE who = $1", follower);
    CHECK(min_next > max_first);
  });
}

TEST_CASE("worker leader tasks: the ready-made outbox delivery task drains the outbox on the leader") {
  scratch_database s;
  auto db = s.open_migrated();
  for (int i = 0; i < 5; ++i) db.write([&](transaction& tx) { outbox::publish(tx, "mail", "m" + std::to_string(i)); });
  std::mutex m;
  std::multiset<std::string> delivered;
  outbox::drain_options d;
  d.batch = 2; // several batches in one run
  auto o = leader_worker("w", [](database&, const fence&) {});
  o.leader_tasks = {outbox_delivery_task("mail", [&](const outbox::message& msg) {
    std::lock_guard g(m);
    delivered.insert(msg.payload);
  }, 30ms, d)};
  jobs::worker w(s.open(), o);
  w.start();
  REQUIRE(wait_until([&] { return outbox::pending(db, "mail") == 0; }));
  w.stop();
  std::lock_guard g(m);
  CHECK(delivered == std::multiset<std::string>{"m0", "m1", "m2", "m3", "m4"});
}

TEST_CASE("worker leader tasks: the ready-made orphan sweep removes unreferenced blobs on the leader") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  std::istringstream orphan_bytes("an orphan: staged, never registered");
  const auto orphan = reg.stage(orphan_bytes);
  std::istringstream kept_bytes("kept");
  const auto kept = reg.register_stream("c", kept_bytes, "kept.txt", "alice");
  REQUIRE(store->exists(orphan.sha256()));
  auto o = leader_worker("w", [](database&, const fence&) {});
  o.leader_tasks = {sweep_orphans_task(reg, 30ms, 0ms)};
  jobs::worker w(s.open(), o);
  w.start();
  REQUIRE(wait_until([&] { return !store->exists(orphan.sha256()); }));
  w.stop();
  CHECK(store->exists(kept.sha256));
  CHECK(reg.read(kept.id) == "kept");
}
