// bench_core: the unit of work next to the raw driver calls it wraps, in the same run.
//   * SQLite :memory: and file: write transaction with one UPDATE vs raw SQLiteCpp
//     (BEGIN IMMEDIATE; cached statement; COMMIT); read transaction with one SELECT vs raw.
//   * PostgreSQL: write transaction with one UPDATE vs a raw libpqxx pqxx::work + exec_prepared;
//     the same with unnamed statements (?pooler=transaction) vs raw exec_params; and through
//     PgBouncer in transaction mode (BENCH_PGBOUNCER_URL).
//   * Pool: acquire + release of an idle connection, uncontended and with 8 / 32 threads.
#include "harness.hpp"

#include <casecore/open.hpp>
#include <casecore/detail/pool.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <pqxx/pqxx>

#include <cstdlib>
#include <filesystem>
#include <memory>

using namespace casecore;

namespace {

struct idle_connection final : detail::connection {
  result exec(std::string_view, std::span<const value>) override { return {}; }
  void exec_script(std::string_view) override {}
  void begin(const detail::tx_settings&) override {}
  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  const sql_fragments& sql() const noexcept override {
    static const sql_fragments none{}; // runs no SQL
    return none;
  }
  void commit() override {}
  void rollback() noexcept override {}
  bool ping() noexcept override { return true; }
  bool broken() const noexcept override { return false; }
};
struct idle_backend final : detail::backend {
  std::unique_ptr<detail::connection> connect() override { return std::make_unique<idle_connection>(); }
  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  std::string describe() const override { return "idle"; }
};

// Both sides run with the same synchronous level: FULL (casecore's default) or NORMAL (its opt-in).
void bench_sqlite(const std::string& label, const std::string& path, const char* sync) {
  const auto d = bench::duration();
  auto db = open((path == ":memory:" ? "sqlite::memory:" : "sqlite://" + path) + "?synchronous=" + sync);
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, n BIGINT NOT NULL)");
    tx.exec("INSERT INTO t VALUES(1, 0) ON CONFLICT(id) DO NOTHING");
  });
  const double lib_w = bench::measure(1, d, [&](int) {
    db.write([](transaction& tx) { tx.exec("UPDATE t SET n = n + 1 WHERE id = $1", 1); });
    return 1;
  });
  const double lib_r = bench::measure(1, d, [&](int) {
    db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT n FROM t WHERE id = $1", 1); });
    return 1;
  });
  // Raw: for :memory: the casecore handle owns the only copy of the database, so the raw side gets its own.
  SQLite::Database raw(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 5000);
  raw.exec(std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") + sync + "; PRAGMA foreign_keys=ON");
  raw.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO t VALUES(1, 0) ON CONFLICT(id) DO NOTHING");
  SQLite::Statement upd(raw, "UPDATE t SET n = n + 1 WHERE id = ?");
  SQLite::Statement sel(raw, "SELECT n FROM t WHERE id = ?");
  // The best raw code: transaction control statements prepared once too.
  SQLite::Statement begin_w(raw, "BEGIN IMMEDIATE"), begin_r(raw, "BEGIN"), commit(raw, "COMMIT");
  auto run = [](SQLite::Statement& st) {
    st.exec();
    st.reset();
  };
  const double raw_w = bench::measure(1, d, [&](int) {
    run(begin_w);
    upd.bind(1, 1);
    upd.exec();
    upd.reset();
    run(commit);
    return 1;
  });
  const double raw_r = bench::measure(1, d, [&](int) {
    run(begin_r);
    sel.bind(1, 1);
    sel.executeStep();
    volatile auto n = sel.getColumn(0).getInt64();
    (void)n;
    sel.reset();
    run(commit);
    return 1;
  });
  bench::row("write tx, 1 UPDATE", label, 1, lib_w, raw_w);
  bench::row("read tx, 1 SELECT", label, 1, lib_r, raw_r);
  std::printf("  overhead per write: %.2f us, per read: %.2f us\n", 1e6 / lib_w - 1e6 / raw_w, 1e6 / lib_r - 1e6 / raw_r);
}

// `label` names the row; `named` says whether the raw side prepares a named statement once per
// connection (what casecore does on a direct connection) or sends it unnamed each time with
// PQexecParams (what casecore does behind a transaction pooler, where named statements are unsafe).
void bench_postgres(const std::string& label, const std::string& url, const std::string& raw_url, bool named) {
  const auto d = bench::duration();
  database_options o;
  o.pool.size = 32;
  auto db = open(url, o);
  db.write([](transaction& tx) {
    tx.exec_script("DROP TABLE IF EXISTS bench_core_t; CREATE TABLE bench_core_t(id INTEGER PRIMARY KEY, n BIGINT NOT NULL);"
                   "INSERT INTO bench_core_t SELECT g, 0 FROM generate_series(1, 1000) g");
  });
  for (int callers : {1, 8, 32}) {
    const double lib = bench::measure(callers, d, [&](int t) {
      db.write([&](transaction& tx) { tx.exec("UPDATE bench_core_t SET n = n + 1 WHERE id = $1", t + 1); });
      return 1;
    });
    std::vector<std::unique_ptr<pqxx::connection>> conns;
    for (int i = 0; i < callers; ++i) {
      conns.push_back(std::make_unique<pqxx::connection>(raw_url));
      if (named) conns.back()->prepare("upd", "UPDATE bench_core_t SET n = n + 1 WHERE id = $1");
    }
    const double raw = bench::measure(callers, d, [&](int t) {
      pqxx::work w(*conns[static_cast<std::size_t>(t)]);
      if (named) w.exec_prepared("upd", t + 1);
      else w.exec_params("UPDATE bench_core_t SET n = n + 1 WHERE id = $1", t + 1);
      w.commit();
      return 1;
    });
    bench::row("write tx, 1 UPDATE", label, callers, lib, raw);
  }
}

std::string with_param(const std::string& url, const std::string& kv) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + kv;
}

void bench_pool() {
  const auto d = bench::duration();
  pool_options o;
  o.size = 32;
  detail::pool p(std::make_shared<idle_backend>(), o);
  for (int callers : {1, 8, 32}) {
    const double rate = bench::measure(callers, d, [&](int) {
      auto lease = p.acquire();
      return 1;
    });
    std::printf("| pool acquire+release | - | %d | %.0f | - | %.3f us/op |\n", callers, rate, 1e6 / rate * callers);
  }
}

} // namespace

int main() {
  bench::header();
  bench_pool();
  bench_sqlite("sqlite :memory:", ":memory:", "full");
  const auto file = std::filesystem::temp_directory_path() / "casecore-bench-core.db";
  for (const char* sync : {"full", "normal"}) {
    std::filesystem::remove(file);
    bench_sqlite(std::string("sqlite file (WAL, ") + sync + ")", file.string(), sync);
    std::filesystem::remove(file);
    std::filesystem::remove(file.string() + "-wal");
    std::filesystem::remove(file.string() + "-shm");
  }
  if (const auto url = bench::pg_url(); !url.empty()) {
    // Direct connection: named statements (casecore's default there) vs raw named statements; the
    // same connection with ?pooler=transaction (unnamed statements) vs raw PQexecParams, so the cost
    // of pooler safety on a direct connection shows in the same run.
    bench_postgres("postgres", with_param(url, "pooler=none"), url, true);
    bench_postgres("postgres, unnamed", with_param(url, "pooler=transaction"), url, false);
    // Through PgBouncer in transaction mode (BENCH_PGBOUNCER_URL, e.g. scripts/pgbouncer.sh's URL):
    // casecore detects the pooler and sends unnamed statements; raw uses PQexecParams too.
    if (const char* b = std::getenv("BENCH_PGBOUNCER_URL"); b && *b) bench_postgres("pgbouncer tx", b, b, false);
  } else std::printf("(no BENCH_PG_URL / CASECORE_TEST_PG_URL: PostgreSQL rows skipped)\n");
}
