// repository<T>::modify vs the raw optimistic update it wraps, 1/8/32 callers, SQLite and PostgreSQL.
//   casecore: db.write(modify(id, qty += 1))  (SELECT row; UPDATE ... WHERE id = ? AND version = ?)
//   raw     : BEGIN; SELECT version, qty; UPDATE ... WHERE id = ? AND version = ?; COMMIT
// 1000 rows, each caller picks a random row per operation (the pgbench e_optimistic shape).
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/repository.hpp>

#include "harness.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <pqxx/pqxx>

#include <filesystem>
#include <memory>
#include <random>
#include <unistd.h>

namespace {

struct item {
  std::string name;
  std::int64_t qty = 0;
};

const casecore::repository<item>& items() {
  static const casecore::repository<item> r({"items", "id", {casecore::column("name", &item::name), casecore::column("qty", &item::qty)}});
  return r;
}

constexpr int rows = 1000;
const int callers[] = {1, 8, 32};

// Warm up (pool connections, prepared statements) for a fifth of the period, then measure.
double timed(int n, const std::function<std::uint64_t(int)>& body) {
  bench::measure(n, std::chrono::milliseconds(bench::duration().count() / 5 + 1), body);
  return bench::measure(n, bench::duration(), body);
}

casecore::database open_db(const std::string& url) {
  casecore::database_options o;
  o.pool.size = 32;
  o.retry.max_attempts = 1000;
  o.retry.budget = std::chrono::seconds(60);
  return casecore::open(url, o);
}

void setup(casecore::database& db) {
  const std::vector<casecore::migration> m{items().create_table_migration("bench", 1)};
  casecore::migrate(db, m);
  db.write([](casecore::transaction& tx) {
    for (int i = 0; i < rows; ++i) items().insert(tx, {"i", 0});
  });
}

std::int64_t pick(int t) {
  thread_local std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
  return std::uniform_int_distribution<std::int64_t>(1, rows)(rng);
}

double lib_modify(casecore::database& db, int n) {
  return timed(n, [&](int t) {
    items().modify(db, pick(t), [](item& i) { i.qty += 1; });
    return 1;
  });
}

void sqlite_bench() {
  const auto path = (std::filesystem::temp_directory_path() / ("bench_repo_" + std::to_string(getpid()) + ".db")).string();
  auto db = open_db("sqlite:///" + path);
  setup(db);
  for (int n : callers) {
    struct raw_conn {
      std::unique_ptr<SQLite::Database> c;
      std::unique_ptr<SQLite::Statement> read, write;
    };
    std::vector<raw_conn> conns;
    for (int i = 0; i < n; ++i) {
      raw_conn r;
      r.c = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE);
      r.c->exec("PRAGMA synchronous=NORMAL");
      r.c->setBusyTimeout(10000);
      r.read = std::make_unique<SQLite::Statement>(*r.c, "SELECT version, qty FROM items WHERE id = ?1");
      r.write = std::make_unique<SQLite::Statement>(*r.c, "UPDATE items SET qty = ?1, version = version + 1 WHERE id = ?2 AND version = ?3");
      conns.push_back(std::move(r));
    }
    const double lib = lib_modify(db, n);
    const double raw = timed(n, [&](int t) {
      auto& r = conns[static_cast<std::size_t>(t)];
      const auto id = pick(t);
      for (;;) {
        try {
          r.c->exec("BEGIN IMMEDIATE");
          r.read->bind(1, id);
          r.read->executeStep();
          const auto version = r.read->getColumn(0).getInt64();
          const auto qty = r.read->getColumn(1).getInt64();
          r.read->reset();
          r.write->bind(1, qty + 1);
          r.write->bind(2, id);
          r.write->bind(3, version);
          r.write->exec();
          r.write->reset();
          r.c->exec("COMMIT");
          return 1;
        } catch (const SQLite::Exception&) {
          r.read->reset();
          r.write->reset();
          try { r.c->exec("ROLLBACK"); } catch (...) {}
        }
      }
    });
    bench::row("modify vs raw UPDATE WHERE version", "sqlite", n, lib, raw);
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
}

void pg_bench(const std::string& base) {
  const std::string schema = "bench_repo_" + std::to_string(getpid());
  casecore::open(base).write([&](casecore::transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema); });
  const std::string url = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
  {
    auto db = open_db(url);
    setup(db);
    for (int n : callers) {
      std::vector<std::unique_ptr<pqxx::connection>> conns;
      for (int i = 0; i < n; ++i) {
        conns.push_back(std::make_unique<pqxx::connection>(url));
        conns.back()->prepare("read", "SELECT version, qty FROM items WHERE id = $1");
        conns.back()->prepare("write", "UPDATE items SET qty = $1, version = version + 1 WHERE id = $2 AND version = $3");
      }
      const double lib = lib_modify(db, n);
      const double raw = timed(n, [&](int t) {
        const auto id = pick(t);
        for (;;) { // re-read on a lost race, like modify
          pqxx::work w(*conns[static_cast<std::size_t>(t)]);
          auto r = w.exec_prepared1("read", id);
          const auto version = r[0].as<std::int64_t>();
          const auto qty = r[1].as<std::int64_t>();
          if (w.exec_prepared("write", qty + 1, id, version).affected_rows() == 1) {
            w.commit();
            return 1;
          }
        }
      });
      bench::row("modify vs raw UPDATE WHERE version", "postgres", n, lib, raw);
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
