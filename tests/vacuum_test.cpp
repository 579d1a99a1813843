// database::vacuum and the job worker's maintenance vacuum (issue 17: a busy queue's claims walk the
// dead index entries the jobs they claimed left at the head of the ready index, until a vacuum
// removes them; the server's autovacuum visits a database once per autovacuum_naptime, 1 min by
// default). PostgreSQL runs VACUUM; SQLite has nothing to clean up and says so. Both backends.
#include "job_test_env.hpp"

#include <casecore/detail/job_sql.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <regex>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

std::int64_t manual_vacuums(database& db) {
  return scalar(db, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'casecore_jobs'::regclass");
}

void enqueue_many(database& db, int n) {
  std::vector<jobs::job_spec> specs;
  for (int i = 0; i < n; ++i) {
    jobs::job_spec s;
    s.operation = "op";
    s.subject = "s" + std::to_string(i);
    specs.push_back(std::move(s));
  }
  db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); });
}

// Shared buffers a claim of 100 touches (the top line of EXPLAIN (ANALYZE, BUFFERS) of the very
// statement claim() runs, set as claim() sets its transaction, rolled back), and whether its plan
// walked the ready index in order (no sort).
struct claim_plan {
  std::int64_t buffers = -1;
  bool index_walk = false;
};
claim_plan explain_claim(database& db) {
  claim_plan out;
  try {
    db.write([&](transaction& tx) {
      tx.exec("SELECT set_config('enable_sort', 'off', true)");
      const auto plan = tx.exec("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + detail::job_sql::claim(dialect::postgresql, 100),
                                std::string("probe"), std::int64_t{1000000});
      std::string text;
      for (auto r : plan) text += r.get<std::string>(0) + "\n";
      std::smatch m;
      static const std::regex hit("Buffers: shared hit=([0-9]+)(?: read=([0-9]+))?");
      if (std::regex_search(text, m, hit)) out.buffers = std::stoll(m[1]) + (m[2].matched ? std::stoll(m[2]) : 0);
      out.index_walk = text.find("Index Scan using casecore_jobs_ready") != std::string::npos &&
                       text.find("Sort Key") == std::string::npos;
      if (!out.index_walk) MESSAGE(text);
      raise(errc::invalid_argument, "roll back");
    });
  } catch (const error&) {
  }
  return out;
}

} // namespace

TEST_CASE("database::vacuum: identifiers only, a threshold, nothing to do on SQLite") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK_THROWS_AS(db.vacuum("casecore_jobs; DROP TABLE casecore_jobs"), error);
  CHECK_THROWS_AS(db.vacuum(""), error);
  CHECK_THROWS_AS(db.vacuum("casecore_jobs", -1), error);
  if (s.kind() == casecore::testing::backend_kind::sqlite || casecore::testing::behind_test_pooler()) {
    MESSAGE("SQLite frees space as it goes; behind a transaction pooler session settings cannot be used");
    CHECK_FALSE(db.vacuum("casecore_jobs", 0));
    return;
  }
  try {
    db.vacuum("no_such_table");
    FAIL("vacuumed a missing table");
  } catch (const error& e) {
    CHECK(e.code() == errc::not_found);
  }
  const auto before = manual_vacuums(db);
  CHECK_FALSE(db.vacuum("casecore_jobs", std::int64_t{1} << 40));
  CHECK(manual_vacuums(db) == before);
  CHECK(db.vacuum("casecore_jobs", 0));
  CHECK(manual_vacuums(db) == before + 1);
}

TEST_CASE("a claim walks the dead entries claimed jobs left in the ready index until a vacuum removes them") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres || casecore::testing::behind_test_pooler()) {
    MESSAGE("PostgreSQL, direct connection only");
    return;
  }
  auto db = s.open_migrated();
  db.write([](transaction& tx) { tx.exec_script("ALTER TABLE casecore_jobs SET (autovacuum_enabled = false)"); });
  enqueue_many(db, 20000);
  REQUIRE(db.vacuum("casecore_jobs", 0)); // a clean start: no insert leftovers
  const auto fresh = explain_claim(db);
  CHECK(fresh.index_walk);
  jobs::claim_options o;
  o.owner = "w";
  o.batch = 1000;
  for (int i = 0; i < 20; ++i) {
    auto got = jobs::claim(db, o);
    REQUIRE(got.size() == 1000);
    db.write([&](transaction& tx) {
      std::vector<jobs::stage_done> done;
      for (const auto& j : got) done.push_back({{j.id, j.lease_epoch}, 0, j.run_at});
      jobs::complete_stages(tx, done);
    });
  }
  const auto dead_zone = explain_claim(db).buffers;
  MESSAGE("claim: " << fresh.buffers << " buffers next to 20,000 waiting jobs, " << dead_zone << " (finding none) after claiming them all");
  CHECK(dead_zone > 50); // one entry per claimed job is left in the index: about 20,000 / 400 leaf pages
  // Other tests' transactions in this database can hold back what a vacuum may remove: try a few times.
  std::int64_t after = dead_zone;
  for (int i = 0; i < 30 && after * 4 > dead_zone; ++i) {
    REQUIRE(db.vacuum("casecore_jobs", 0));
    after = explain_claim(db).buffers;
    if (after * 4 > dead_zone) std::this_thread::sleep_for(1s);
  }
  MESSAGE("after the vacuum: " << after << " buffers");
  CHECK(after * 4 <= dead_zone);
}

TEST_CASE("the maintenance leader vacuums the jobs table once the server counts enough dead rows") {
  scratch_database s;
  auto db = s.open_migrated();
  const bool can = s.kind() == casecore::testing::backend_kind::postgres && !casecore::testing::behind_test_pooler();
  if (can) db.write([](transaction& tx) { tx.exec_script("ALTER TABLE casecore_jobs SET (autovacuum_enabled = false)"); });
  enqueue_many(db, 3000);
  jobs::worker_options o;
  o.threads = 2;
  o.batch = casecore::testing::job_batch(50);
  o.poll = 20ms;
  o.heartbeat = 100ms;
  o.lease = casecore::testing::job_lease(2000ms);
  if (o.heartbeat >= o.lease) o.heartbeat = o.lease / 3;
  o.vacuum_dead_rows = 1000;
  jobs::worker w(db, o);
  w.on_stage("run", [](jobs::job_context&) {});
  w.start();
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline &&
         (scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") < 3000 || (can && w.stats().vacuums == 0)))
    std::this_thread::sleep_for(50ms);
  w.stop();
  CHECK(scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'") == 3000);
  if (!can) {
    MESSAGE("no vacuum on SQLite or behind a transaction pooler");
    CHECK(w.stats().vacuums == 0);
    return;
  }
  CHECK(w.stats().vacuums >= 1);
  CHECK(manual_vacuums(db) >= 1);
}

TEST_CASE("a claim walks the ready index and stops after its batch, whatever the statistics say") {
  // Regression: with no statistics on `state` yet (never analyzed) or statistics taken while the
  // queue was empty, the planner guessed a few waiting jobs and read every one of them, probed each
  // for a running sibling, and sorted them all: a claim of 100 next to 20,000 waiting jobs probed
  // 20,000 times (120,000 buffers). Counted here through the server's own statistics: index scans
  // of casecore_jobs_running_job, one per candidate the claim looked at.
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres || casecore::testing::behind_test_pooler()) {
    MESSAGE("PostgreSQL, direct connection only");
    return;
  }
  database_options one;
  one.pool.size = 1; // every call below runs on the one server session whose statistics it flushes
  auto db = s.open_migrated(one);
  db.write([](transaction& tx) { tx.exec_script("ALTER TABLE casecore_jobs SET (autovacuum_enabled = false)"); });
  enqueue_many(db, 20000);
  REQUIRE(db.vacuum("casecore_jobs", 0)); // page counts, but no column statistics
  const auto probes = [&] {
    db.read([](transaction& tx) { tx.exec("SELECT pg_stat_force_next_flush()"); });
    return scalar(db, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'casecore_jobs_running_job' "
                      "AND schemaname = current_schema()");
  };
  const auto before = probes();
  jobs::claim_options o;
  o.owner = "w";
  o.batch = 100;
  REQUIRE(jobs::claim(db, o).size() == 100);
  const auto looked_at = probes() - before;
  MESSAGE("candidates probed by a claim of 100 next to 20,000 waiting jobs: " << looked_at);
  CHECK(looked_at >= 100);
  CHECK(looked_at < 1000);
}
