// Job queue throughput: enqueue (single, bulk of 100) and claim + complete (1 or 100 per claim) for
// 1/8/32 callers, casecore next to the raw SQL it wraps (baselines/pg/f_queue_*.sql on PostgreSQL,
// the same statements on SQLite without SKIP LOCKED), in the same run, on both backends.
//
// Long runs (issue 17), each on a fresh database (TARGET = a PostgreSQL admin URL, or "sqlite"):
//   bench_jobs soak TARGET [--jobs N] [--future N] [--threads T] [--batch B] [--vacuum-dead-rows N] [--csv FILE] [--label L]
//     drains N no-op jobs (default 10^6) with a worker of T threads (16) and batch B (100), lease
//     10 s, heartbeat 100 ms, poll 50 ms, retention 100,000 finished jobs (pruned by the elected
//     worker every 2 s), with --future N more jobs scheduled an hour ahead; prints jobs/s for every
//     10 % slice, the oldest casecore transaction's age in the slice (pg_stat_activity, sampled every
//     20 ms), dead tuples and table / index sizes, and last slice / first slice.
//   bench_jobs idle TARGET [--future N] [--seconds S] [--threads T] [--poll MS]
//     the idle cost of a worker with the library's defaults (4 threads, poll 500 ms) over a table
//     with N future jobs (default 10^6): CPU seconds of the server processes serving this database
//     (PostgreSQL, from /proc), then the enqueue-to-start latency of jobs enqueued one at a time.
#include "harness.hpp"

#include <casecore/detail/step.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/worker.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#ifdef CASECORE_WITH_POSTGRES
#include <pqxx/pqxx>
#endif

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <memory>
#include <sstream>
#include <unistd.h>

using namespace casecore;

namespace {

std::atomic<std::int64_t> next_subject{0};

// The raw side: one connection per caller, the statements of the baseline scripts.
struct raw_session {
  virtual ~raw_session() = default;
  virtual void insert_one() = 0;
  virtual void insert_many(int n) = 0;
  virtual std::uint64_t claim_complete(int n) = 0;
};

struct sqlite_raw final : raw_session {
  SQLite::Database db;
  explicit sqlite_raw(const std::string& path) : db(path, SQLite::OPEN_READWRITE, 5000) {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=NORMAL");
  }
  void insert_one() override {
    db.exec("BEGIN IMMEDIATE");
    SQLite::Statement s(db, "INSERT INTO jobs(payload) VALUES('x')");
    s.exec();
    db.exec("COMMIT");
  }
  void insert_many(int n) override {
    db.exec("BEGIN IMMEDIATE");
    SQLite::Statement s(db, "INSERT INTO jobs(payload) VALUES('x')");
    for (int i = 0; i < n; ++i) {
      s.exec();
      s.reset();
    }
    db.exec("COMMIT");
  }
  std::uint64_t claim_complete(int n) override {
    std::vector<std::int64_t> ids;
    db.exec("BEGIN IMMEDIATE");
    {
      SQLite::Statement s(db, "UPDATE jobs SET state='running', locked_by=1 WHERE id IN (SELECT id FROM jobs WHERE "
                              "state='queued' ORDER BY id LIMIT ?) RETURNING id");
      s.bind(1, n);
      while (s.executeStep()) ids.push_back(s.getColumn(0).getInt64());
    }
    db.exec("COMMIT");
    db.exec("BEGIN IMMEDIATE");
    SQLite::Statement u(db, "UPDATE jobs SET state='done' WHERE id = ?");
    for (auto id : ids) {
      u.bind(1, id);
      u.exec();
      u.reset();
    }
    db.exec("COMMIT");
    return ids.size();
  }
};

#ifdef CASECORE_WITH_POSTGRES
struct pg_raw final : raw_session {
  pqxx::connection c;
  explicit pg_raw(const std::string& url) : c(url) {
    c.prepare("ins", "INSERT INTO jobs(payload) VALUES('x')");
    c.prepare("ins_many", "INSERT INTO jobs(payload) SELECT 'x' FROM generate_series(1, $1)");
    c.prepare("claim", "WITH j AS (SELECT id FROM jobs WHERE state='queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED), "
                       "u AS (UPDATE jobs SET state='running', locked_by=pg_backend_pid(), locked_at=now() FROM j "
                       "WHERE jobs.id=j.id RETURNING jobs.id) SELECT coalesce(array_agg(id), '{}')::text FROM u");
    c.prepare("done", "UPDATE jobs SET state='done' WHERE id = ANY($1::bigint[])");
  }
  void insert_one() override {
    pqxx::work w(c);
    w.exec_prepared("ins");
    w.commit();
  }
  void insert_many(int n) override {
    pqxx::work w(c);
    w.exec_prepared("ins_many", n);
    w.commit();
  }
  std::uint64_t claim_complete(int n) override {
    std::string ids;
    {
      pqxx::work w(c);
      ids = w.exec_prepared1("claim", n)[0].as<std::string>();
      w.commit();
    }
    if (ids == "{}") return 0;
    pqxx::work w(c);
    w.exec_prepared("done", ids);
    w.commit();
    return static_cast<std::uint64_t>(std::count(ids.begin(), ids.end(), ',') + 1);
  }
};
#endif

struct target {
  std::string backend;
  std::string url;        // casecore URL
  std::function<std::unique_ptr<raw_session>()> raw;
};

jobs::job_spec spec_for(std::int64_t n) {
  jobs::job_spec s;
  s.operation = "bench";
  s.subject = "s" + std::to_string(n);
  s.payload = "x";
  return s;
}

void reset_tables(database& db, std::int64_t prefill) {
  db.write([&](transaction& tx) {
    if (tx.dialect() == dialect::postgresql) {
      tx.exec("TRUNCATE casecore_job_stages, casecore_jobs, jobs"); // no dead index entries left in front
    } else {
      tx.exec("DELETE FROM casecore_job_stages");
      tx.exec("DELETE FROM casecore_jobs");
      tx.exec("DELETE FROM jobs");
    }
    if (prefill == 0) return;
    const bool pg = tx.dialect() == dialect::postgresql;
    tx.exec(pg ? "INSERT INTO jobs(payload) SELECT 'x' FROM generate_series(1, $1)"
               : "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1) "
                 "INSERT INTO jobs(payload) SELECT 'x' FROM g",
            prefill);
    tx.exec(pg ? "INSERT INTO casecore_jobs(operation, subject, payload, stages, run_at, max_attempts, created_at) "
                 "SELECT 'bench', 'p' || g, 'x', 'run', 0, 5, 0 FROM generate_series(1, $1) g"
               : "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1) "
                 "INSERT INTO casecore_jobs(operation, subject, payload, stages, run_at, max_attempts, created_at) "
                 "SELECT 'bench', 'p' || n, 'x', 'run', 0, 5, 0 FROM g",
            prefill);
  });
  if (db.dialect() == dialect::postgresql) db.write([](transaction& tx) { tx.exec("ANALYZE casecore_jobs, jobs"); });
}

void run(const target& t) {
  database_options o;
  o.pool.size = 34;
  auto db = casecore::open(t.url, o);
  migrate(db);
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx, "CREATE TABLE IF NOT EXISTS jobs(id {{id}}, state TEXT NOT NULL DEFAULT 'queued', "
                                            "locked_by INTEGER, locked_at TIMESTAMP, payload TEXT);"
                                            "CREATE INDEX IF NOT EXISTS jobs_queued_idx ON jobs(id) WHERE state = 'queued'"));
  });
  const auto ms = bench::duration();
  const double scale = static_cast<double>(ms.count()) / 1000.0;
  for (int callers : {1, 8, 32}) {
    std::vector<std::unique_ptr<raw_session>> raws;
    for (int i = 0; i < callers; ++i) raws.push_back(t.raw());

    reset_tables(db, 0);
    const double lib1 = bench::measure(callers, ms, [&](int) {
      jobs::enqueue(db, spec_for(++next_subject));
      return std::uint64_t{1};
    });
    const double raw1 = bench::measure(callers, ms, [&](int i) {
      raws[static_cast<std::size_t>(i)]->insert_one();
      return std::uint64_t{1};
    });
    bench::row("enqueue, 1 per tx (jobs/s)", t.backend, callers, lib1, raw1);

    reset_tables(db, 0);
    const double libb = bench::measure(callers, ms, [&](int) {
      std::vector<jobs::job_spec> specs;
      for (int k = 0; k < 100; ++k) specs.push_back(spec_for(++next_subject));
      db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); });
      return std::uint64_t{100};
    });
    const double rawb = bench::measure(callers, ms, [&](int i) {
      raws[static_cast<std::size_t>(i)]->insert_many(100);
      return std::uint64_t{100};
    });
    bench::row("enqueue bulk 100 (jobs/s)", t.backend, callers, libb, rawb);

    for (int batch : {1, 100}) {
      reset_tables(db, static_cast<std::int64_t>((batch == 1 ? 20000 : 120000) * scale));
      jobs::claim_options co;
      co.owner = "bench";
      co.batch = static_cast<std::size_t>(batch);
      const double libc = bench::measure(callers, ms, [&](int) {
        auto got = jobs::claim(db, co);
        if (got.empty()) return std::uint64_t{0};
        std::vector<jobs::stage_done> done;
        for (const auto& j : got) done.push_back({{j.id, j.lease_epoch}, 0, j.heartbeat_at});
        db.write([&](transaction& tx) { jobs::complete_stages(tx, done); });
        return static_cast<std::uint64_t>(got.size());
      });
      const double rawc = bench::measure(callers, ms, [&](int i) { return raws[static_cast<std::size_t>(i)]->claim_complete(batch); });
      const auto left = db.read([](transaction& tx) {
        return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE state = 'queued'") +
               tx.query_one<std::int64_t>("SELECT count(*) FROM jobs WHERE state = 'queued'");
      });
      bench::row("claim " + std::to_string(batch) + " + complete (jobs/s)" + (left == 0 ? " [queue ran dry]" : ""), t.backend,
                 callers, libc, rawc);
      if (callers == 1) continue;
      // The worker runtime with a no-op handler, `callers` threads, next to the same raw figure.
      reset_tables(db, static_cast<std::int64_t>((batch == 1 ? 20000 : 120000) * scale));
      jobs::worker_options wo;
      wo.threads = callers;
      wo.batch = static_cast<std::size_t>(batch);
      wo.poll = std::chrono::milliseconds(5);
      jobs::worker w(db, wo);
      w.on_stage("run", [](jobs::job_context&) {});
      const auto t0 = std::chrono::steady_clock::now();
      w.start();
      std::this_thread::sleep_for(ms);
      const auto done = w.stats().succeeded;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      w.stop();
      bench::row("worker, batch " + std::to_string(batch) + ", no-op stage (jobs/s)", t.backend, callers,
                 static_cast<double>(done) / secs, rawc);
    }
  }
}

#ifdef CASECORE_WITH_POSTGRES
// `bench_jobs drain ADMIN_URL JOBS THREADS BATCH`: the peers' scenario (bench/peers, docs/peers.md)
// for casecore — a fresh database on the server of ADMIN_URL, JOBS no-op jobs enqueued in chunks of
// 1000 (one enqueue_bulk transaction per chunk), then a worker with THREADS threads drains them with
// fencing (every completion checks its lease epoch) and heartbeats every 100 ms. Prints one line:
// casecore processed_per_s=… enqueue_per_s=… jobs=… threads=… batch=… complete=true|false
int drain(const std::string& admin, int jobs_n, int threads, int batch) {
  const std::string name = "casecore_drain_" + std::to_string(getpid());
  {
    pqxx::connection c(admin);
    pqxx::nontransaction w(c);
    w.exec("CREATE DATABASE " + name);
  }
  const auto slash = admin.rfind('/');
  const auto query = admin.find('?', slash);
  const auto url = admin.substr(0, slash + 1) + name + (query == std::string::npos ? "" : admin.substr(query));
  double processed = 0, enqueued = 0;
  bool complete = false;
  {
    database_options o;
    o.pool.size = static_cast<std::size_t>(threads) + 2;
    auto db = casecore::open(url, o);
    migrate(db);
    using clk = std::chrono::steady_clock;
    const auto e0 = clk::now();
    for (int done = 0; done < jobs_n; done += 1000) {
      std::vector<jobs::job_spec> specs;
      for (int k = done; k < std::min(jobs_n, done + 1000); ++k) specs.push_back(spec_for(k));
      db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); });
    }
    enqueued = jobs_n / std::chrono::duration<double>(clk::now() - e0).count();
    db.write([](transaction& tx) { tx.exec("ANALYZE casecore_jobs"); });
    jobs::worker_options wo;
    wo.threads = threads;
    wo.batch = static_cast<std::size_t>(batch);
    wo.lease = std::chrono::seconds(10);
    wo.heartbeat = std::chrono::milliseconds(100);
    wo.poll = std::chrono::milliseconds(50);
    jobs::worker w(db, wo);
    w.on_stage("run", [](jobs::job_context&) {});
    const auto t0 = clk::now();
    w.start();
    while (w.stats().succeeded < static_cast<std::uint64_t>(jobs_n) && clk::now() - t0 < std::chrono::minutes(5))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto secs = std::chrono::duration<double>(clk::now() - t0).count();
    const auto ok = w.stats().succeeded;
    w.stop();
    complete = ok >= static_cast<std::uint64_t>(jobs_n);
    processed = static_cast<double>(ok) / secs;
  }
  {
    pqxx::connection c(admin);
    pqxx::nontransaction w(c);
    w.exec("DROP DATABASE " + name + " WITH (FORCE)");
  }
  std::printf("casecore processed_per_s=%.1f enqueue_per_s=%.1f jobs=%d threads=%d batch=%d complete=%s\n", processed,
              enqueued, jobs_n, threads, batch, complete ? "true" : "false");
  return complete ? 0 : 1;
}
#endif


// --- long runs ---------------------------------------------------------------------------------

// The longest casecore transaction (BEGIN .. before COMMIT) any thread of this process ran since the
// last read, measured with the unit of work's step hooks: SQLite has no pg_stat_activity.
std::atomic<std::int64_t> longest_tx_us{0};
thread_local std::chrono::steady_clock::time_point tx_began;
void tx_steps(std::string_view name) {
  if (name == "tx.begun") {
    tx_began = std::chrono::steady_clock::now();
  } else if (name == "tx.before_commit") {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - tx_began).count();
    auto cur = longest_tx_us.load();
    while (cur < us && !longest_tx_us.compare_exchange_weak(cur, us)) {
    }
  }
}

// A fresh database for one long run: a new PostgreSQL database on the server of an admin URL, or a
// new SQLite file.
struct fresh_db {
  std::string url;
  bool pg = false;
  std::string admin;
  std::string name;
  std::filesystem::path dir;

  explicit fresh_db(const std::string& target) {
    static int serial = 0;
    if (target == "sqlite") {
      dir = std::filesystem::temp_directory_path() / ("casecore_soak_" + std::to_string(getpid()) + "_" + std::to_string(++serial));
      std::filesystem::create_directories(dir);
      url = "sqlite://" + (dir / "soak.db").string();
      return;
    }
#ifdef CASECORE_WITH_POSTGRES
    pg = true;
    admin = target;
    name = "casecore_soak_" + std::to_string(getpid()) + "_" + std::to_string(++serial);
    {
      pqxx::connection c(admin);
      pqxx::nontransaction w(c);
      w.exec("CREATE DATABASE " + name);
    }
    const auto slash = admin.rfind('/');
    const auto query = admin.find('?', slash);
    url = admin.substr(0, slash + 1) + name + (query == std::string::npos ? "" : admin.substr(query));
#else
    throw std::runtime_error("built without PostgreSQL");
#endif
  }
  ~fresh_db() {
    try {
#ifdef CASECORE_WITH_POSTGRES
      if (pg) {
        pqxx::connection c(admin);
        pqxx::nontransaction w(c);
        w.exec("DROP DATABASE " + name + " WITH (FORCE)");
      }
#endif
      if (!dir.empty()) std::filesystem::remove_all(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cleanup: %s\n", e.what());
    }
  }
};

struct args_t {
  std::map<std::string, std::string> named;
  std::string get(const std::string& k, const std::string& d) const {
    auto it = named.find(k);
    return it == named.end() ? d : it->second;
  }
  long long num(const std::string& k, long long d) const { return std::stoll(get(k, std::to_string(d))); }
};

args_t parse(int argc, char** argv, int from) {
  args_t a;
  for (int i = from; i + 1 < argc; i += 2) a.named[argv[i]] = argv[i + 1];
  return a;
}

void enqueue_many(database& db, std::int64_t first, std::int64_t n, std::chrono::milliseconds delay, const char* prefix) {
  for (std::int64_t done = 0; done < n; done += 1000) {
    std::vector<jobs::job_spec> specs;
    for (std::int64_t k = done; k < std::min(n, done + 1000); ++k) {
      auto s = spec_for(first + k);
      s.subject = prefix + std::to_string(first + k);
      s.delay = delay;
      specs.push_back(std::move(s));
    }
    db.write([&](transaction& tx) { jobs::enqueue_bulk(tx, specs); });
  }
}

// Figures of the database for a slice line.
struct sizes {
  std::int64_t dead = 0, table = 0, index = 0, stages = 0, hot = 0, updates = 0;
};

sizes measure_sizes(database& db, const fresh_db& f) {
  sizes z;
  db.read([&](transaction& tx) {
    if (f.pg) {
      auto r = tx.exec("SELECT coalesce(n_dead_tup, 0), pg_table_size('casecore_jobs'), pg_indexes_size('casecore_jobs'), "
                       "pg_total_relation_size('casecore_job_stages'), coalesce(n_tup_hot_upd, 0), coalesce(n_tup_upd, 0) "
                       "FROM pg_stat_user_tables WHERE relname = 'casecore_jobs'");
      if (!r.empty()) z = {r[0].get<std::int64_t>(0), r[0].get<std::int64_t>(1), r[0].get<std::int64_t>(2),
                           r[0].get<std::int64_t>(3), r[0].get<std::int64_t>(4), r[0].get<std::int64_t>(5)};
    } else {
      // SQLite: free pages stand for dead space; the file holds tables and indexes together.
      const auto page = tx.query_one<std::int64_t>("PRAGMA page_size");
      z.dead = tx.query_one<std::int64_t>("PRAGMA freelist_count") * page;
      z.table = tx.query_one<std::int64_t>("PRAGMA page_count") * page;
    }
  });
  return z;
}

double mb(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

int soak(const std::string& target, const args_t& a) {
  const auto n = a.num("--jobs", 1000000);
  const auto future = a.num("--future", 0);
  const auto threads = static_cast<int>(a.num("--threads", 16));
  const auto batch = a.num("--batch", 100);
  const auto label = a.get("--label", future ? "future" : "empty");
  std::ofstream csv;
  if (a.named.count("--csv")) csv.open(a.get("--csv", ""), std::ios::app);
  fresh_db f(target);
  const std::string backend = f.pg ? "postgres" : "sqlite";
  database_options o;
  o.pool.size = static_cast<std::size_t>(threads) + 4;
  auto db = casecore::open(f.url, o);
  migrate(db);
  using clk = std::chrono::steady_clock;
  auto t0 = clk::now();
  if (future) enqueue_many(db, 0, future, std::chrono::hours(1), "later");
  const double future_s = std::chrono::duration<double>(clk::now() - t0).count();
  t0 = clk::now();
  enqueue_many(db, 0, n, std::chrono::milliseconds(0), "now");
  const double enqueue_s = std::chrono::duration<double>(clk::now() - t0).count();
  if (f.pg) db.write([](transaction& tx) { tx.exec("ANALYZE casecore_jobs"); });
  std::printf("soak %s %s: %lld jobs enqueued in %.1f s (%.0f/s)%s\n", backend.c_str(), label.c_str(), static_cast<long long>(n),
              enqueue_s, static_cast<double>(n) / enqueue_s,
              future ? (", " + std::to_string(future) + " future jobs in " + std::to_string(static_cast<int>(future_s)) + " s").c_str() : "");
  const auto start_sizes = measure_sizes(db, f);
  std::printf("  before: jobs table %.1f MB + indexes %.1f MB, stages %.1f MB\n", mb(start_sizes.table), mb(start_sizes.index),
              mb(start_sizes.stages));

  jobs::worker_options wo;
  wo.threads = threads;
  wo.batch = static_cast<std::size_t>(batch);
  wo.lease = std::chrono::seconds(10);
  wo.heartbeat = std::chrono::milliseconds(100);
  wo.poll = std::chrono::milliseconds(50);
  wo.retain = {std::chrono::milliseconds(0), 100000};
  wo.maintenance = std::chrono::seconds(2);
  wo.vacuum_dead_rows = a.num("--vacuum-dead-rows", wo.vacuum_dead_rows); // 0: leave it to autovacuum
  jobs::worker w(db, wo);
  w.on_stage("run", [](jobs::job_context&) {});

  auto probe = casecore::open(f.url, [] { database_options p; p.pool.size = 2; return p; }());
  struct slice {
    double seconds = 0, rate = 0, oldest_ms = 0, bound_ms = 0;
    sizes z;
  };
  // Issue 17's bound on the oldest casecore transaction: one heartbeat period plus one batch, the
  // time a worker thread takes to work through one claimed batch at this slice's pace.
  int over_bound = 0;
  std::vector<slice> slices;
  if (!f.pg) casecore::detail::set_step_hook(&tx_steps);
  longest_tx_us = 0;
  double max_oldest_ms = 0, slice_oldest_ms = 0;
  const auto step = std::max<std::int64_t>(1, n / 10);
  std::int64_t boundary = step, last_count = 0;
  const auto start = clk::now();
  auto last_t = start;
  w.start();
  while (static_cast<std::int64_t>(w.stats().succeeded) < n && clk::now() - start < std::chrono::minutes(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (f.pg) {
      try {
        // A lazy VACUUM (the maintenance leader's) is left out: the server leaves it out of the
        // cleanup horizon too, so it holds back nothing, and it is bounded by the table's size.
        const auto age = probe.read([](transaction& tx) {
          return tx.query_one<double>(
              "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)) * 1000, 0)::float8 FROM pg_stat_activity "
              "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
              "AND backend_type = 'client backend' AND query NOT ILIKE 'vacuum%'");
        });
        slice_oldest_ms = std::max(slice_oldest_ms, age);
      } catch (const std::exception&) {
      }
    } else {
      slice_oldest_ms = std::max(slice_oldest_ms, static_cast<double>(longest_tx_us.exchange(0)) / 1000.0);
    }
    const auto done = static_cast<std::int64_t>(w.stats().succeeded);
    while (done >= boundary && static_cast<std::int64_t>(slices.size()) < 10) {
      const auto now = clk::now();
      slice s;
      s.seconds = std::chrono::duration<double>(now - last_t).count();
      s.rate = static_cast<double>(done - last_count) / s.seconds;
      s.oldest_ms = slice_oldest_ms;
      s.bound_ms = static_cast<double>(wo.heartbeat.count()) +
                   (s.rate > 0 ? 1000.0 * static_cast<double>(batch) * threads / s.rate : 0.0);
      if (s.oldest_ms > s.bound_ms) ++over_bound;
      s.z = measure_sizes(probe, f);
      max_oldest_ms = std::max(max_oldest_ms, slice_oldest_ms);
      slices.push_back(s);
      if (f.pg)
        std::printf("  slice %2zu: %7.0f jobs/s, oldest tx %6.1f ms (bound %6.1f), dead tuples %8lld, jobs %6.1f MB + indexes %6.1f MB, "
                    "stages %6.1f MB\n",
                    slices.size(), s.rate, s.oldest_ms, s.bound_ms, static_cast<long long>(s.z.dead), mb(s.z.table), mb(s.z.index),
                    mb(s.z.stages));
      else
        std::printf("  slice %2zu: %7.0f jobs/s, longest tx %6.1f ms, free pages %6.1f MB, database file %6.1f MB\n", slices.size(),
                    s.rate, s.oldest_ms, mb(s.z.dead), mb(s.z.table));
      std::fflush(stdout);
      if (csv) csv << backend << ',' << label << ',' << slices.size() << ',' << s.rate << ',' << s.oldest_ms << ',' << s.z.dead << ','
                   << s.z.table << ',' << s.z.index << ',' << s.z.stages << '\n';
      last_t = now;
      last_count = done;
      slice_oldest_ms = 0;
      boundary += step;
    }
  }
  const double secs = std::chrono::duration<double>(clk::now() - start).count();
  const auto processed = w.stats().succeeded;
  w.stop();
  const auto vacuums = w.stats().vacuums;
  casecore::detail::set_step_hook(nullptr);
  // Let the leader finish one more prune round, then measure the steady state.
  jobs::prune(db, wo.retain);
  const auto end = measure_sizes(db, f);
  const bool complete = static_cast<std::int64_t>(processed) >= n;
  const double first = slices.empty() ? 0 : slices.front().rate, last = slices.empty() ? 0 : slices.back().rate;
  std::printf("soak backend=%s label=%s jobs=%lld future=%lld threads=%d batch=%lld seconds=%.1f avg_per_s=%.0f first=%.0f "
              "last=%.0f last_over_first=%.2f max_oldest_tx_ms=%.1f slices_over_bound=%d hot_updates=%.0f%% end_table_mb=%.1f end_index_mb=%.1f "
              "end_stages_mb=%.1f pruned=%llu vacuums=%llu complete=%s\n",
              backend.c_str(), label.c_str(), static_cast<long long>(n), static_cast<long long>(future), threads,
              static_cast<long long>(batch), secs, static_cast<double>(processed) / secs, first, last, first > 0 ? last / first : 0.0,
              max_oldest_ms, over_bound, end.updates > 0 ? 100.0 * static_cast<double>(end.hot) / static_cast<double>(end.updates) : 0.0,
              mb(end.table), mb(end.index), mb(end.stages), static_cast<unsigned long long>(w.stats().pruned),
              static_cast<unsigned long long>(vacuums), complete ? "true" : "false");
  return complete ? 0 : 1;
}

// CPU seconds (user + system) of the server processes serving this database, from /proc.
double server_cpu_seconds(database& probe) {
  const auto pids = probe.read([](transaction& tx) {
    std::vector<std::int64_t> out;
    for (auto r : tx.exec("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))
      out.push_back(r.get<std::int64_t>(0));
    return out;
  });
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (auto pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), {});
    const auto close = all.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (rest >> field) f.push_back(field);
    if (f.size() > 12) total += (std::stod(f[11]) + std::stod(f[12])) / tick; // utime, stime (fields 14, 15)
  }
  return total;
}

int idle(const std::string& target, const args_t& a) {
  const auto future = a.num("--future", 1000000);
  const auto seconds = a.num("--seconds", 30);
  jobs::worker_options wo; // the library's defaults, unless told
  wo.threads = static_cast<int>(a.num("--threads", wo.threads));
  wo.poll = std::chrono::milliseconds(a.num("--poll", wo.poll.count()));
  fresh_db f(target);
  auto db = casecore::open(f.url);
  migrate(db);
  enqueue_many(db, 0, future, std::chrono::hours(1), "later");
  if (f.pg) db.write([](transaction& tx) { tx.exec("ANALYZE casecore_jobs"); });
  jobs::worker w(db, wo);
  w.on_stage("run", [](jobs::job_context&) {});
  w.start();
  std::this_thread::sleep_for(std::chrono::seconds(3)); // connections open, plans cached
  double cpu = -1;
  const auto t0 = std::chrono::steady_clock::now();
  if (f.pg) {
    auto probe = casecore::open(f.url);
    const auto c0 = server_cpu_seconds(probe);
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    cpu = (server_cpu_seconds(probe) - c0) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
  }
  // Latency: one job at a time, at a random phase of the poll, no notify().
  std::mt19937 rng(7);
  const int samples = static_cast<int>(std::min<long long>(40, seconds * 2));
  for (int i = 0; i < samples; ++i) {
    std::uniform_int_distribution<int> nap(50, static_cast<int>(wo.poll.count()) + 150);
    std::this_thread::sleep_for(std::chrono::milliseconds(nap(rng)));
    auto s = spec_for(i);
    s.subject = "lat" + std::to_string(i);
    jobs::enqueue(db, s);
  }
  std::this_thread::sleep_for(wo.poll * 3);
  w.stop();
  std::vector<double> lat = db.read([](transaction& tx) {
    std::vector<double> out;
    for (auto r : tx.exec("SELECT started_at - created_at FROM casecore_jobs WHERE subject LIKE 'lat%' AND started_at > 0"))
      out.push_back(static_cast<double>(r.get<std::int64_t>(0)) / 1000.0);
    return out;
  });
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * static_cast<double>(lat.size())))]; };
  std::printf("idle backend=%s future=%lld threads=%d poll_ms=%lld claims_per_s=%.1f server_cpu=%.2f%% latency_p50_ms=%.1f "
              "latency_p99_ms=%.1f samples=%zu\n",
              f.pg ? "postgres" : "sqlite", static_cast<long long>(future), wo.threads, static_cast<long long>(wo.poll.count()),
              wo.threads * 1000.0 / static_cast<double>(wo.poll.count()), cpu * 100.0, pct(0.5), pct(0.99), lat.size());
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && (std::string(argv[1]) == "soak" || std::string(argv[1]) == "idle")) {
    try {
      const auto a = parse(argc, argv, 3);
      return std::string(argv[1]) == "soak" ? soak(argv[2], a) : idle(argv[2], a);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_jobs %s: %s\n", argv[1], e.what());
      return 2;
    }
  }
#ifdef CASECORE_WITH_POSTGRES
  if (argc >= 2 && std::string(argv[1]) == "drain") {
    if (argc != 6) {
      std::fprintf(stderr, "usage: bench_jobs drain ADMIN_URL JOBS THREADS BATCH\n");
      return 2;
    }
    return drain(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  }
#endif
  (void)argc;
  (void)argv;
  bench::header();
  {
    const auto dir = std::filesystem::temp_directory_path() / ("casecore_bench_jobs_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const auto path = (dir / "bench.db").string();
    { casecore::open("sqlite://" + path); }
    target t{"sqlite", "sqlite://" + path, [path] { return std::unique_ptr<raw_session>(new sqlite_raw(path)); }};
    try {
      run(t);
    } catch (const std::exception& e) {
      std::printf("sqlite failed: %s\n", e.what());
    }
    std::filesystem::remove_all(dir);
  }
#ifdef CASECORE_WITH_POSTGRES
  const auto admin = bench::pg_url();
  if (admin.empty()) return 0;
  const std::string schema = "bench_jobs_" + std::to_string(getpid());
  {
    pqxx::connection c(admin);
    pqxx::work w(c);
    w.exec("CREATE SCHEMA " + schema);
    w.commit();
  }
  const auto url = admin + (admin.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
  target t{"postgres", url, [url] { return std::unique_ptr<raw_session>(new pg_raw(url)); }};
  try {
    run(t);
  } catch (const std::exception& e) {
    std::printf("postgres failed: %s\n", e.what());
  }
  pqxx::connection c(admin);
  pqxx::work w(c);
  w.exec("DROP SCHEMA " + schema + " CASCADE");
  w.commit();
#endif
  return 0;
}
