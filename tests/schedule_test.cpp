// Periodic jobs (casecore/schedule.hpp) on SQLite and PostgreSQL: declaring, listing, removing,
// catch-up policies, DST through the scheduler step, bad input, the tick key, and processes racing
// the step over many ticks (an injected "now", never real minutes of sleep).
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/open.hpp>
#include <casecore/schedule.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/steps.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

constexpr micros minute = 60LL * 1000000;

micros utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  t.tm_sec = s;
  return static_cast<micros>(timegm(&t)) * 1000000;
}

schedules::schedule every_minute(std::string name, schedules::catch_up policy = schedules::catch_up::latest) {
  schedules::schedule s;
  s.name = std::move(name);
  s.every = 60s;
  s.policy = policy;
  s.job.operation = "report";
  s.job.payload = "{}";
  return s;
}

// Ticks (µs) of the jobs enqueued for `name`, read back from the tick table, ascending.
std::vector<micros> tick_times(database& db, const std::string& name) {
  return db.read([&](transaction& tx) {
    std::vector<micros> out;
    const auto rows = tx.exec("SELECT tick_at FROM casecore_schedule_ticks WHERE schedule = $1 ORDER BY tick_at", name);
    for (std::size_t i = 0; i < rows.size(); ++i) out.push_back(rows[i].get<micros>(0));
    return out;
  });
}

// Subjects of the jobs enqueued for subject prefix `prefix`, sorted (ISO times sort chronologically).
std::vector<std::string> job_subjects(database& db, const std::string& prefix) {
  return db.read([&](transaction& tx) {
    std::vector<std::string> out;
    const auto rows = tx.exec("SELECT subject FROM casecore_jobs WHERE subject LIKE $1 ORDER BY subject", prefix + "@%");
    for (std::size_t i = 0; i < rows.size(); ++i) out.push_back(rows[i].get<std::string>(0));
    return out;
  });
}

// The subjects `prefix`'s jobs must have for ticks `ticks`.
std::vector<std::string> subjects_for(const std::string& prefix, const std::vector<micros>& ticks) {
  std::vector<std::string> out;
  for (const auto t : ticks) out.push_back(schedules::tick_subject(prefix, t));
  return out;
}

std::int64_t job_count(database& db, const std::string& subject_prefix) {
  return db.read([&](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE subject LIKE $1", subject_prefix + "@%");
  });
}

std::int64_t schedule_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_schedules"); });
}

} // namespace

TEST_CASE("schedules: upsert by name, list with next and last run, remove") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1, 0, 0, 10);
  auto nightly = every_minute("nightly");
  nightly.every = 0ms;
  nightly.cron = "30 2 * * *";
  nightly.zone = "Europe/Berlin";
  CHECK(schedules::upsert(db, nightly, t0));
  CHECK(schedules::upsert(db, every_minute("minutely"), t0));
  auto all = schedules::list(db);
  REQUIRE(all.size() == 2);
  CHECK(all[0].spec.name == "minutely");
  CHECK(all[0].next_at == utc(2026, 1, 1, 0, 1));
  CHECK(all[0].last_tick_at == 0);
  CHECK(all[0].spec.job.subject == "schedule:minutely");
  CHECK(all[1].spec.name == "nightly");
  CHECK(all[1].spec.cron == "30 2 * * *");
  CHECK(all[1].spec.zone == "Europe/Berlin");
  CHECK(all[1].next_at == utc(2026, 1, 1, 1, 30)); // 02:30 CET

  const auto done = schedules::run_due(db, utc(2026, 1, 1, 0, 1, 2));
  REQUIRE(done.size() == 1);
  CHECK(done[0].schedule == "minutely");
  CHECK(done[0].at == utc(2026, 1, 1, 0, 1));
  const auto m = schedules::get(db, "minutely");
  REQUIRE(m);
  CHECK(m->last_tick_at == utc(2026, 1, 1, 0, 1));
  CHECK(m->last_job_id == done[0].job_id);
  CHECK(m->next_at == utc(2026, 1, 1, 0, 2));
  const auto job = jobs::get(db, done[0].job_id);
  REQUIRE(job);
  CHECK(job->subject == "schedule:minutely@2026-01-01T00:01:00Z");
  CHECK(job->operation == "report");
  CHECK(job->payload == "{}");

  // Upsert of an existing name replaces the spec, keeps cursor and history.
  auto changed = every_minute("minutely");
  changed.every = 300s;
  changed.job.payload = "{\"v\":2}";
  CHECK_FALSE(schedules::upsert(db, changed, utc(2026, 1, 1, 0, 1, 30)));
  const auto m2 = schedules::get(db, "minutely");
  REQUIRE(m2);
  CHECK(m2->spec.every == 300s);
  CHECK(m2->spec.job.payload == "{\"v\":2}");
  CHECK(m2->last_job_id == done[0].job_id);
  CHECK(m2->next_at == utc(2026, 1, 1, 0, 5));
  CHECK(schedules::recent_ticks(db, "minutely").size() == 1);

  CHECK(schedules::remove(db, "minutely"));
  CHECK_FALSE(schedules::remove(db, "minutely"));
  CHECK_FALSE(schedules::get(db, "minutely"));
  CHECK(tick_times(db, "minutely").empty());
  CHECK(schedules::list(db).size() == 1);
}

TEST_CASE("schedules: one job per tick; a second step at the same time enqueues nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  schedules::upsert(db, every_minute("m", schedules::catch_up::bounded), t0);
  for (int k = 1; k <= 5; ++k) {
    CHECK(schedules::run_due(db, t0 + k * minute).size() == 1);
    CHECK(schedules::run_due(db, t0 + k * minute).empty());
  }
  CHECK(schedules::run_due(db, t0 + 5 * minute - 1).empty()); // a late-comer with an older clock
  CHECK(tick_times(db, "m") == std::vector<micros>{t0 + minute, t0 + 2 * minute, t0 + 3 * minute, t0 + 4 * minute, t0 + 5 * minute});
  CHECK(job_count(db, "schedule:m") == 5);
}

TEST_CASE("schedules: catch-up after downtime — latest, bounded and skip") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  auto bounded = every_minute("bounded", schedules::catch_up::bounded);
  bounded.catch_up_limit = 3;
  auto skip = every_minute("skip", schedules::catch_up::skip);
  skip.grace = 10s;
  auto all = every_minute("all", schedules::catch_up::bounded);
  all.catch_up_limit = 1000;
  schedules::upsert(db, every_minute("latest"), t0);
  schedules::upsert(db, bounded, t0);
  schedules::upsert(db, skip, t0);
  schedules::upsert(db, all, t0);

  // Down for ten minutes; back 5 s after the 10th tick.
  schedules::run_due(db, t0 + 10 * minute + 5000000);
  CHECK(tick_times(db, "latest") == std::vector<micros>{t0 + 10 * minute});
  CHECK(tick_times(db, "bounded") == std::vector<micros>{t0 + 8 * minute, t0 + 9 * minute, t0 + 10 * minute});
  CHECK(tick_times(db, "skip") == std::vector<micros>{t0 + 10 * minute}); // 5 s late <= grace 10 s
  CHECK(tick_times(db, "all").size() == 10);
  CHECK(job_count(db, "schedule:all") == 10);

  // Down again; back 30 s after the 20th tick: skip enqueues nothing (late), then the next tick on time.
  schedules::run_due(db, t0 + 20 * minute + 30000000);
  CHECK(tick_times(db, "skip") == std::vector<micros>{t0 + 10 * minute});
  CHECK(tick_times(db, "latest").back() == t0 + 20 * minute);
  CHECK(tick_times(db, "all").size() == 20);
  schedules::run_due(db, t0 + 21 * minute + 1000000);
  CHECK(tick_times(db, "skip") == std::vector<micros>{t0 + 10 * minute, t0 + 21 * minute});
  CHECK(job_count(db, "schedule:skip") == 2);
  CHECK(job_count(db, "schedule:bounded") == 3 + 3 + 1);
}

TEST_CASE("schedules: Europe/Berlin DST through the scheduler step, one job per tick") {
  scratch_database s;
  auto db = s.open_migrated();
  auto nightly = every_minute("nightly", schedules::catch_up::bounded);
  nightly.every = 0ms;
  nightly.cron = "30 2 * * *";
  nightly.zone = "Europe/Berlin";
  auto quarter = nightly;
  quarter.name = "quarter";
  quarter.cron = "*/15 * * * *";

  SUBCASE("spring forward: 02:30 does not exist on 2026-03-29, it fires once at 03:00 CEST") {
    const auto t0 = utc(2026, 3, 28, 12);
    schedules::upsert(db, nightly, t0);
    schedules::upsert(db, quarter, t0);
    for (micros t = t0; t <= utc(2026, 3, 31, 12); t += 5 * minute) schedules::run_due(db, t);
    CHECK(tick_times(db, "nightly") ==
          std::vector<micros>{utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)});
    const auto q = tick_times(db, "quarter"); // the newest 100 tick rows (history)
    CHECK(q.size() == 100);
    for (std::size_t i = 1; i < q.size(); ++i) CHECK(q[i] - q[i - 1] == 15 * minute); // even spacing in UTC
    std::vector<micros> every_quarter;
    for (micros t = t0 + 15 * minute; t <= utc(2026, 3, 31, 12); t += 15 * minute) every_quarter.push_back(t);
    // The skipped local hour's four quarters collapse into 01:00 UTC, which is 03:00 CEST's own tick:
    // in UTC the 72 hours have every quarter, once.
    CHECK(every_quarter.size() == 3 * 24 * 4);
    CHECK(job_subjects(db, "schedule:quarter") == subjects_for("schedule:quarter", every_quarter));
  }
  SUBCASE("fall back: 02:30 happens twice on 2026-10-25, it fires once (CEST)") {
    const auto t0 = utc(2026, 10, 24, 12);
    schedules::upsert(db, nightly, t0);
    schedules::upsert(db, quarter, t0);
    for (micros t = t0; t <= utc(2026, 10, 26, 12); t += 5 * minute) schedules::run_due(db, t);
    CHECK(tick_times(db, "nightly") == std::vector<micros>{utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)});
    std::vector<micros> quarters; // every UTC quarter but those of 01:00-01:59 UTC (02:xx CET, the second pass)
    for (micros t = t0 + 15 * minute; t <= utc(2026, 10, 26, 12); t += 15 * minute)
      if (t < utc(2026, 10, 25, 1) || t >= utc(2026, 10, 25, 2)) quarters.push_back(t);
    CHECK(quarters.size() == 2 * 24 * 4 - 4);
    CHECK(job_subjects(db, "schedule:quarter") == subjects_for("schedule:quarter", quarters));
    CHECK(job_count(db, "schedule:nightly") == 2);
  }
}

TEST_CASE("schedules: bad input is invalid_argument and writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  auto expect_bad = [&](schedules::schedule sc, const std::string& fragment) {
    try {
      schedules::upsert(db, sc, t0);
      FAIL("accepted: " << fragment);
    } catch (const casecore::invalid_argument& e) {
      CHECK_MESSAGE(std::string(e.what()).find(fragment) != std::string::npos, std::string(e.what()));
    }
  };
  auto c = every_minute("x");
  c.every = 0ms;
  c.cron = "61 * * * *";
  expect_bad(c, "minute value 61");
  c.cron = "0 0 * * *";
  c.zone = "Europe/Atlantis";
  expect_bad(c, "unknown time zone 'Europe/Atlantis'");
  c.zone = "UTC";
  c.every = 60s;
  expect_bad(c, "exactly one of");
  auto i = every_minute("x");
  i.every = 500ms;
  expect_bad(i, "whole seconds");
  i.every = 60s;
  i.offset = 60s;
  expect_bad(i, "offset");
  i = every_minute("");
  expect_bad(i, "schedule name");
  i = every_minute("bad\nname");
  expect_bad(i, "schedule name");
  i = every_minute("x");
  i.every = 1500ms;
  expect_bad(i, "whole seconds");
  i.every = std::chrono::hours(24 * 400);
  expect_bad(i, "whole seconds");
  i.every = 60s;
  i.offset = -1000ms;
  expect_bad(i, "offset");
  i.offset = 500ms;
  expect_bad(i, "offset");
  i = every_minute("x", schedules::catch_up::bounded);
  i.catch_up_limit = 0;
  expect_bad(i, "catch_up_limit");
  i.catch_up_limit = 1001;
  expect_bad(i, "catch_up_limit");
  i = every_minute("x", schedules::catch_up::skip);
  i.grace = -1ms;
  expect_bad(i, "grace");
  i.grace = std::chrono::hours(24 * 400);
  expect_bad(i, "grace");
  i = every_minute("x");
  i.job.operation.clear();
  expect_bad(i, "job operation");
  i = every_minute("x");
  i.job.stages = {"ok", "not ok"};
  expect_bad(i, "stage name");
  i = every_minute("x");
  i.job.subject = std::string(180, 's');
  expect_bad(i, "schedule job subject");
  CHECK(schedule_rows(db) == 0);

  // A bad update leaves the stored schedule as it was.
  schedules::upsert(db, every_minute("x"), t0);
  auto worse = every_minute("x");
  worse.every = 0ms;
  worse.cron = "0 0 30 2 *";
  expect_bad(worse, "never fire");
  const auto kept = schedules::get(db, "x");
  REQUIRE(kept);
  CHECK(kept->spec.every == 60s);
  CHECK(kept->spec.cron.empty());
  CHECK_THROWS_AS(schedules::get(db, "bad\x1b[0m"), casecore::invalid_argument);
}

TEST_CASE("schedules: a stored row the step cannot use is skipped, rechecked hourly, and repaired by upsert") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  auto broken = every_minute("broken");
  broken.every = 0ms;
  broken.cron = "* * * * *";
  schedules::upsert(db, broken, t0);
  schedules::upsert(db, every_minute("fine"), t0);
  // As if the zone had been removed from the OS tzdata since the row was written.
  db.write([](transaction& tx) { tx.exec("UPDATE casecore_schedules SET zone = 'Mars/Olympus_Mons' WHERE name = 'broken'"); });
  const auto done = schedules::run_due(db, t0 + minute);
  REQUIRE(done.size() == 1);
  CHECK(done[0].schedule == "fine");
  const auto b = schedules::get(db, "broken");
  REQUIRE(b);
  CHECK(b->next_at == t0 + minute + 3600LL * 1000000); // not due again on every step
  CHECK(b->cursor_at == t0);                           // its ticks wait
  broken.policy = schedules::catch_up::bounded;
  CHECK_FALSE(schedules::upsert(db, broken, t0 + 3 * minute)); // repaired
  CHECK(schedules::run_due(db, t0 + 3 * minute).size() == 3 + 1); // broken: its 3 waiting ticks; fine (latest): 1
  CHECK(tick_times(db, "broken") == std::vector<micros>{t0 + minute, t0 + 2 * minute, t0 + 3 * minute});
}

TEST_CASE("schedules: the tick key refuses a tick twice even when the cursor is moved back") {
  // The cursor normally keeps old ticks from coming back; the key on (schedule, tick_at), written in
  // the job's transaction, is what makes a duplicate impossible even if the cursor is wrong (a row
  // restored from a backup, an operator's UPDATE).
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  schedules::upsert(db, every_minute("m", schedules::catch_up::bounded), t0);
  REQUIRE(schedules::run_due(db, t0 + 3 * minute).size() == 3);
  db.write([&](transaction& tx) {
    tx.exec("UPDATE casecore_schedules SET cursor_at = $1, next_at = $2 WHERE name = 'm'", t0, t0 + minute);
  });
  CHECK(schedules::run_due(db, t0 + 4 * minute).size() == 1); // only the new tick
  CHECK(job_count(db, "schedule:m") == 4);
  CHECK(tick_times(db, "m").size() == 4);
}

TEST_CASE("schedules: the tick row and its job commit together or not at all") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 1, 1);
  schedules::upsert(db, every_minute("m"), t0);
  casecore::testing::step_gate gate;
  SUBCASE("a failure after the tick was claimed leaves neither tick nor job, and the cursor where it was") {
    gate.fail_at("schedules.tick_claimed", errc::backend_error);
    CHECK_THROWS_AS(schedules::run_due(db, t0 + minute), casecore::error);
    CHECK(tick_times(db, "m").empty());
    CHECK(job_count(db, "schedule:m") == 0);
    CHECK(schedules::get(db, "m")->cursor_at == t0);
    CHECK(schedules::run_due(db, t0 + minute).size() == 1); // the next step enqueues it, once
  }
  SUBCASE("a serialization failure there is retried as a whole: the tick is enqueued once") {
    gate.fail_at("schedules.tick_claimed", errc::serialization_failure);
    CHECK(schedules::run_due(db, t0 + minute).size() == 1);
    CHECK(gate.reached("schedules.tick_claimed") == 2);
  }
  CHECK(tick_times(db, "m") == std::vector<micros>{t0 + minute});
  CHECK(job_count(db, "schedule:m") == 1);
}

TEST_CASE("schedules: A claims a tick, B steps meanwhile, A commits: B enqueues nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  auto other = s.open();
  const auto t0 = utc(2026, 1, 1);
  schedules::upsert(db, every_minute("m", schedules::catch_up::bounded), t0);
  casecore::testing::step_gate gate;
  gate.pause_at("schedules.tick_claimed");
  std::vector<schedules::tick> a_ticks;
  std::thread a([&] { a_ticks = schedules::run_due(db, t0 + minute); });
  REQUIRE(gate.wait_parked("schedules.tick_claimed"));
  // B skips A's locked row (PostgreSQL) or waits for the write lock and then finds the cursor moved
  // (SQLite). Either way the tick is A's alone.
  std::vector<schedules::tick> b_ticks;
  std::thread b([&] { b_ticks = schedules::run_due(other, t0 + minute + 1); });
  std::this_thread::sleep_for(300ms); // let B reach its wait (an ordering aid, not an assertion)
  gate.release("schedules.tick_claimed");
  a.join();
  b.join();
  CHECK(a_ticks.size() == 1);
  CHECK(b_ticks.empty());
  CHECK(job_count(db, "schedule:m") == 1);
}

CASECORE_CHILD(schedule_racer) {
  // args: url, base (µs), steps, index. Each process steps through the same minutes, starting at a
  // different one, so the processes overlap on every tick.
  auto db = casecore::open(args.at(0));
  const micros base = std::stoll(args.at(1));
  const int steps = std::stoi(args.at(2));
  const int me = std::stoi(args.back());
  std::size_t mine = 0;
  for (int i = 0; i < steps; ++i) {
    const int k = 1 + (i + me * 7) % steps;
    mine += schedules::run_due(db, base + k * minute + 1000000).size();
  }
  for (int k = 1; k <= steps; ++k) mine += schedules::run_due(db, base + k * minute + 1000000).size();
  std::printf("%zu\n", mine);
  return 0;
}

TEST_CASE("schedules: processes racing the scheduler step enqueue every tick exactly once") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto t0 = utc(2026, 3, 28, 23); // the racing minutes cross Berlin's spring-forward hour
  constexpr int steps = 60 * 4;         // four hours of minutes
  auto interval = every_minute("interval", schedules::catch_up::bounded);
  interval.catch_up_limit = 1000;
  auto berlin = interval;
  berlin.name = "berlin";
  berlin.every = 0ms;
  berlin.cron = "* * * * *";
  berlin.zone = "Europe/Berlin";
  schedules::upsert(db, interval, t0);
  schedules::upsert(db, berlin, t0);
  constexpr int processes = 4;
  const auto results = casecore::testing::run_children("schedule_racer", processes, {s.url(), std::to_string(t0), std::to_string(steps)});
  std::size_t reported = 0;
  for (const auto& r : results) {
    REQUIRE(r.exit_code == 0);
    reported += std::stoul(r.output);
  }
  std::vector<micros> expected;
  for (int k = 1; k <= steps; ++k) expected.push_back(t0 + k * minute);
  CHECK(job_subjects(db, "schedule:interval") == subjects_for("schedule:interval", expected));
  // Berlin's local minutes 02:00..02:59 on 2026-03-29 do not exist and collapse into 01:00 UTC, which
  // is itself a tick (03:00 CEST): the instants in UTC are still every minute, once.
  CHECK(job_subjects(db, "schedule:berlin") == subjects_for("schedule:berlin", expected));
  CHECK(job_count(db, "schedule:interval") == steps); // no duplicate subject either
  CHECK(job_count(db, "schedule:berlin") == steps);
  // The tick history keeps the newest 100 ticks.
  CHECK(tick_times(db, "interval") == std::vector<micros>(expected.end() - 100, expected.end()));
  CHECK(reported == 2 * static_cast<std::size_t>(steps)); // every tick reported by exactly one process
  const auto distinct = db.read([](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(DISTINCT subject) FROM casecore_jobs WHERE subject LIKE 'schedule:%'");
  });
  CHECK(distinct == 2 * steps);
}

CASECORE_CHILD(schedule_clock_racer) {
  // args: url, milliseconds to run, index. Steps on the database clock, as production does.
  auto db = casecore::open(args.at(0));
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoll(args.at(1)));
  std::size_t mine = 0;
  while (std::chrono::steady_clock::now() < until) {
    mine += schedules::run_due(db).size();
    std::this_thread::sleep_for(20ms);
  }
  std::printf("%zu\n", mine);
  return 0;
}

TEST_CASE("schedules: processes stepping on the database clock enqueue consecutive ticks, each once") {
  scratch_database s;
  auto db = s.open_migrated();
  schedules::schedule sc;
  sc.name = "second";
  sc.every = 1s;
  sc.policy = schedules::catch_up::bounded;
  sc.job.operation = "tick";
  schedules::upsert(db, sc); // cursor: the database clock now
  const auto results = casecore::testing::run_children("schedule_clock_racer", 3, {s.url(), "3500"});
  std::size_t reported = 0;
  for (const auto& r : results) {
    REQUIRE(r.exit_code == 0);
    reported += std::stoul(r.output);
  }
  const auto ticks = tick_times(db, "second");
  REQUIRE(ticks.size() >= 2); // whole seconds passed while they ran (no assertion on how many)
  for (std::size_t i = 1; i < ticks.size(); ++i) CHECK(ticks[i] - ticks[i - 1] == 1000000); // none missing
  CHECK(reported == ticks.size());                                                            // none twice
  CHECK(job_count(db, "schedule:second") == static_cast<std::int64_t>(ticks.size()));
}

TEST_CASE("schedules: a worker runs due schedules on the database clock") {
  scratch_database s;
  auto db = s.open_migrated();
  schedules::schedule sc;
  sc.name = "heartbeat";
  sc.every = 1s;
  sc.policy = schedules::catch_up::bounded;
  sc.job.operation = "beat";
  schedules::upsert(db, sc);
  jobs::worker_options bad;
  bad.schedules = -1ms;
  CHECK_THROWS_AS(jobs::worker(db, bad), casecore::invalid_argument);
  jobs::worker_options o;
  o.threads = 1;
  o.poll = 50ms;
  o.lease = 3s;
  o.schedules = 100ms;
  jobs::worker w(db, o);
  std::atomic<int> ran{0};
  w.on_stage("beat", "run", [&](jobs::job_context&) { ++ran; });
  w.start();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (ran < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  w.stop();
  CHECK(ran >= 3);
  // Ticks are whole seconds, one job each, consecutive (bounded catch-up: none skipped).
  const auto ticks = tick_times(db, "heartbeat");
  REQUIRE(ticks.size() >= 3);
  for (std::size_t i = 1; i < ticks.size(); ++i) CHECK(ticks[i] - ticks[i - 1] == 1000000);
  CHECK(job_count(db, "schedule:heartbeat") == static_cast<std::int64_t>(ticks.size()));
}
