// Counter throughput: casecore next vs the raw upsert it wraps, 1/8/32 callers, SQLite and PostgreSQL.
//   in-tx   : db.write(counter::next)      vs raw BEGIN; upsert RETURNING; COMMIT (one connection per caller)
//   standalone: counter::next(db) (batched) vs raw autocommit upsert per call
// All callers hit ONE counter row (the hot-row case the audits hit).
#include <casecore/counter.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>

#include "harness.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <pqxx/pqxx>

#include <filesystem>
#include <memory>
#include <unistd.h>

namespace {

constexpr const char* upsert =
    "INSERT INTO casecore_counters(name, scope, value) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(name, scope) DO UPDATE SET value = casecore_counters.value + excluded.value RETURNING value";
constexpr const char* pg_upsert =
    "INSERT INTO casecore_counters(name, scope, value) VALUES($1, $2, $3) "
    "ON CONFLICT(name, scope) DO UPDATE SET value = casecore_counters.value + excluded.value RETURNING value";
const int callers[] = {1, 8, 32};

// Warm up (pool connections, prepared statements) for a fifth of the period, then measure.
double timed(int n, const std::function<std::uint64_t(int)>& body) {
  bench::measure(n, std::chrono::milliseconds(bench::duration().count() / 5 + 1), body);
  return bench::measure(n, bench::duration(), body);
}

casecore::database open_db(const std::string& url) {
  casecore::database_options o;
  o.pool.size = 32; // as many connections as the raw side gets
  o.retry.max_attempts = 1000;
  o.retry.budget = std::chrono::seconds(60);
  return casecore::open(url, o);
}

std::unique_ptr<SQLite::Database> raw_sqlite(const std::string& path) {
  auto c = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE);
  c->exec("PRAGMA journal_mode=WAL");
  c->exec("PRAGMA synchronous=NORMAL");
  c->setBusyTimeout(10000);
  return c;
}

void sqlite_bench() {
  const auto path = (std::filesystem::temp_directory_path() / ("bench_counter_" + std::to_string(getpid()) + ".db")).string();
  // The same durability as the raw baseline below (synchronous=NORMAL): the figures compare the
  // library's overhead, not two fsync policies. casecore's own default is FULL.
  auto db = open_db("sqlite:///" + path + "?synchronous=normal");
  casecore::migrate(db);
  for (int n : callers) {
    std::vector<std::unique_ptr<SQLite::Database>> conns;
    std::vector<std::unique_ptr<SQLite::Statement>> stmts;
    for (int i = 0; i < n; ++i) {
      conns.push_back(raw_sqlite(path));
      stmts.push_back(std::make_unique<SQLite::Statement>(*conns.back(), upsert));
    }
    auto raw_one = [&](int t) {
      auto& s = *stmts[static_cast<std::size_t>(t)];
      s.bind(1, "raw");
      s.bind(2, "");
      s.bind(3, 1);
      s.executeStep();
      s.reset();
    };
    const double lib = timed(n, [&](int) {
      db.write([](casecore::transaction& tx) { casecore::counter::next(tx, "lib"); });
      return 1;
    });
    const double raw = timed(n, [&](int t) {
      for (;;) {
        try {
          conns[static_cast<std::size_t>(t)]->exec("BEGIN IMMEDIATE");
          raw_one(t);
          conns[static_cast<std::size_t>(t)]->exec("COMMIT");
          return 1;
        } catch (const SQLite::Exception&) {
          stmts[static_cast<std::size_t>(t)]->reset();
          try { conns[static_cast<std::size_t>(t)]->exec("ROLLBACK"); } catch (...) {}
        }
      }
    });
    bench::row("counter next in caller's tx", "sqlite", n, lib, raw);
    const double lib_sa = timed(n, [&](int) {
      casecore::counter::next(db, "lib_standalone");
      return 1;
    });
    const double raw_sa = timed(n, [&](int t) {
      for (;;) {
        try {
          raw_one(t);
          return 1;
        } catch (const SQLite::Exception&) {
          stmts[static_cast<std::size_t>(t)]->reset();
        }
      }
    });
    bench::row("standalone next vs autocommit upsert", "sqlite", n, lib_sa, raw_sa);
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
}

void pg_bench(const std::string& base) {
  const std::string schema = "bench_counter_" + std::to_string(getpid());
  casecore::open(base).write([&](casecore::transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema); });
  const std::string url = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
  {
    auto db = open_db(url);
    casecore::migrate(db);
    for (int n : callers) {
      std::vector<std::unique_ptr<pqxx::connection>> conns;
      for (int i = 0; i < n; ++i) {
        conns.push_back(std::make_unique<pqxx::connection>(url));
        conns.back()->prepare("up", pg_upsert);
      }
      const double lib = timed(n, [&](int) {
        db.write([](casecore::transaction& tx) { casecore::counter::next(tx, "lib"); });
        return 1;
      });
      const double raw = timed(n, [&](int t) {
        pqxx::work w(*conns[static_cast<std::size_t>(t)]);
        w.exec_prepared("up", "raw", "", 1);
        w.commit();
        return 1;
      });
      bench::row("counter next in caller's tx", "postgres", n, lib, raw);
      const double lib_sa = timed(n, [&](int) {
        casecore::counter::next(db, "lib_standalone");
        return 1;
      });
      const double raw_sa = timed(n, [&](int t) {
        pqxx::nontransaction w(*conns[static_cast<std::size_t>(t)]);
        w.exec_prepared("up", "raw_sa", "", 1);
        return 1;
      });
      bench::row("standalone next vs autocommit upsert", "postgres", n, lib_sa, raw_sa);
    }
  }
  casecore::open(base).write([&](casecore::transaction& tx) { tx.exec_script("DROP SCHEMA " + schema + " CASCADE"); });
}

} // namespace

int main() {
  bench::header();
  sqlite_bench();
  if (const auto pg = bench::pg_url(); !pg.empty()) pg_bench(pg);
  return 0;
}
