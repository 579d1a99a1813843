// Job queue throughput: enqueue (single, bulk of 100) and claim + complete (1 or 100 per claim) for
// 1/8/32 callers, casecore next to the raw SQL it wraps (baselines/pg/f_queue_*.sql on PostgreSQL,
// the same statements on SQLite without SKIP LOCKED), in the same run, on both backends.
#include "harness.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/worker.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#ifdef CASECORE_WITH_POSTGRES
#include <pqxx/pqxx>
#endif

#include <filesystem>
#include <memory>
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
    tx.exec_script(render_sql(tx.dialect(), "CREATE TABLE IF NOT EXISTS jobs(id {{id}}, state TEXT NOT NULL DEFAULT 'queued', "
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

} // namespace

int main(int argc, char** argv) {
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
