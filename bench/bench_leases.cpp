// bench_leases: leases and the outbox next to the raw SQL they wrap, in the same run.
//   lease cycle  = try_acquire + release (two write transactions), one lease name per caller,
//                  vs the same raw statements (lock-if-expired, take over or insert; release UPDATE),
//                  each in its own transaction;
//   outbox publish = one message per write transaction vs a raw INSERT in a transaction.
// 1, 8 and 32 callers on SQLite (file, WAL) and PostgreSQL (BENCH_PG_URL / CASECORE_TEST_PG_URL).
#include "harness.hpp"

#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <pqxx/pqxx>

#include <filesystem>
#include <memory>

using namespace casecore;
using namespace std::chrono_literals;

namespace {

// The acquisition protocol of lease.cpp: lock the row only when expired, then take it over, or
// insert a new name (ON CONFLICT DO NOTHING).
constexpr const char* lock_expired_pg =
    "SELECT token FROM casecore_leases WHERE name = $1 AND expires_at < casecore_now_us() FOR UPDATE";
constexpr const char* take_over_pg =
    "UPDATE casecore_leases SET owner = $2, token = token + 1, expires_at = casecore_now_us() + $3, "
    "acquired_at = casecore_now_us() WHERE name = $1 AND expires_at < casecore_now_us() RETURNING token, expires_at";
constexpr const char* insert_pg =
    "INSERT INTO casecore_leases(name, owner, token, expires_at, acquired_at) VALUES($1, $2, 1, casecore_now_us() + $3, "
    "casecore_now_us()) ON CONFLICT(name) DO NOTHING RETURNING token, expires_at";
constexpr const char* release_pg =
    "UPDATE casecore_leases SET expires_at = 0 WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at >= casecore_now_us()";
constexpr const char* publish_pg =
    "INSERT INTO casecore_outbox(topic, msg_key, payload, created_at, available_at) VALUES($1, $2, $3, casecore_now_us(), "
    "casecore_now_us()) RETURNING id";

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double lib_lease(database& db, int callers) {
  return bench::measure(callers, bench::duration(), [&](int t) {
    const auto g = lease::try_acquire(db, "bench:" + std::to_string(t), "owner" + std::to_string(t), 30s);
    if (g) lease::release(db, *g);
    return 1;
  });
}

double lib_publish(database& db, int callers) {
  return bench::measure(callers, bench::duration(), [&](int) {
    db.write([](transaction& tx) { outbox::publish(tx, "bench", "payload", "key"); });
    return 1;
  });
}

void sqlite_rows(const std::string& path) {
  database_options o;
  o.pool.size = 33;
  // The same durability as the raw baseline below (synchronous=NORMAL): the figures compare the
  // library's overhead, not two fsync policies. casecore's own default is FULL.
  auto db = open("sqlite://" + path + "?synchronous=normal", o);
  migrate(db);
  for (int callers : {1, 8, 32}) {
    const double lib_l = lib_lease(db, callers), lib_p = lib_publish(db, callers);
    // Raw: one SQLiteCpp connection per caller, statements prepared once; the clock is bound by the client.
    struct raw {
      std::unique_ptr<SQLite::Database> db;
      std::unique_ptr<SQLite::Statement> begin, commit, lock_expired, take_over, insert, release, publish;
    };
    std::vector<raw> conns(static_cast<std::size_t>(callers));
    for (auto& c : conns) {
      c.db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE, 5000);
      c.db->exec("PRAGMA synchronous=NORMAL");
      c.begin = std::make_unique<SQLite::Statement>(*c.db, "BEGIN IMMEDIATE");
      c.commit = std::make_unique<SQLite::Statement>(*c.db, "COMMIT");
      c.lock_expired = std::make_unique<SQLite::Statement>(*c.db,
          "SELECT token FROM casecore_leases WHERE name = ?1 AND expires_at < ?2");
      c.take_over = std::make_unique<SQLite::Statement>(*c.db,
          "UPDATE casecore_leases SET owner = ?2, token = token + 1, expires_at = ?3 + ?4, acquired_at = ?3 "
          "WHERE name = ?1 AND expires_at < ?3 RETURNING token, expires_at");
      c.insert = std::make_unique<SQLite::Statement>(*c.db,
          "INSERT INTO casecore_leases(name, owner, token, expires_at, acquired_at) VALUES(?1, ?2, 1, ?3 + ?4, ?3) "
          "ON CONFLICT(name) DO NOTHING RETURNING token, expires_at");
      c.release = std::make_unique<SQLite::Statement>(*c.db,
          "UPDATE casecore_leases SET expires_at = 0 WHERE name = ?1 AND owner = ?2 AND token = ?3 AND expires_at >= ?4");
      c.publish = std::make_unique<SQLite::Statement>(*c.db,
          "INSERT INTO casecore_outbox(topic, msg_key, payload, created_at, available_at) VALUES(?1, ?2, ?3, ?4, ?4) RETURNING id");
    }
    auto step = [](SQLite::Statement& s) {
      s.exec();
      s.reset();
    };
    const double raw_l = bench::measure(callers, bench::duration(), [&](int t) {
      auto& c = conns[static_cast<std::size_t>(t)];
      const std::string name = "raw:" + std::to_string(t), owner = "owner" + std::to_string(t);
      step(*c.begin);
      const auto now = static_cast<int64_t>(now_us());
      c.lock_expired->bind(1, name);
      c.lock_expired->bind(2, now);
      const bool expired = c.lock_expired->executeStep();
      c.lock_expired->reset();
      auto& take = expired ? *c.take_over : *c.insert;
      take.bind(1, name);
      take.bind(2, owner);
      take.bind(3, now);
      take.bind(4, static_cast<int64_t>(30000000));
      std::int64_t token = 0;
      if (take.executeStep()) token = take.getColumn(0).getInt64();
      take.reset();
      step(*c.commit);
      step(*c.begin);
      c.release->bind(1, name);
      c.release->bind(2, owner);
      c.release->bind(3, static_cast<int64_t>(token));
      c.release->bind(4, static_cast<int64_t>(now_us()));
      step(*c.release);
      step(*c.commit);
      return 1;
    });
    const double raw_p = bench::measure(callers, bench::duration(), [&](int t) {
      auto& c = conns[static_cast<std::size_t>(t)];
      step(*c.begin);
      c.publish->bind(1, "bench");
      c.publish->bind(2, "key");
      c.publish->bind(3, "payload");
      c.publish->bind(4, static_cast<int64_t>(now_us()));
      c.publish->executeStep();
      c.publish->reset();
      step(*c.commit);
      return 1;
    });
    bench::row("lease acquire+release", "sqlite", callers, lib_l, raw_l);
    bench::row("outbox publish", "sqlite", callers, lib_p, raw_p);
  }
}

void postgres_rows(const std::string& url) {
  database_options o;
  o.pool.size = 33;
  auto db = open(url, o);
  migrate(db);
  for (int callers : {1, 8, 32}) {
    const double lib_l = lib_lease(db, callers), lib_p = lib_publish(db, callers);
    std::vector<std::unique_ptr<pqxx::connection>> conns;
    for (int i = 0; i < callers; ++i) {
      conns.push_back(std::make_unique<pqxx::connection>(url));
      conns.back()->prepare("lock_expired", lock_expired_pg);
      conns.back()->prepare("take_over", take_over_pg);
      conns.back()->prepare("insert", insert_pg);
      conns.back()->prepare("release", release_pg);
      conns.back()->prepare("publish", publish_pg);
    }
    const double raw_l = bench::measure(callers, bench::duration(), [&](int t) {
      auto& c = *conns[static_cast<std::size_t>(t)];
      const std::string name = "raw:" + std::to_string(t), owner = "owner" + std::to_string(t);
      std::int64_t token = 0;
      {
        pqxx::work w(c);
        const bool expired = !w.exec_prepared("lock_expired", name).empty();
        auto r = w.exec_prepared(expired ? "take_over" : "insert", name, owner, 30000000);
        if (!r.empty()) token = r[0][0].as<std::int64_t>();
        w.commit();
      }
      pqxx::work w(c);
      w.exec_prepared("release", name, owner, token);
      w.commit();
      return 1;
    });
    const double raw_p = bench::measure(callers, bench::duration(), [&](int t) {
      pqxx::work w(*conns[static_cast<std::size_t>(t)]);
      w.exec_prepared("publish", "bench", "key", "payload");
      w.commit();
      return 1;
    });
    bench::row("lease acquire+release", "postgres", callers, lib_l, raw_l);
    bench::row("outbox publish", "postgres", callers, lib_p, raw_p);
  }
}

} // namespace

int main() {
  bench::header();
  const auto file = std::filesystem::temp_directory_path() / "casecore-bench-leases.db";
  for (const auto& f : {file.string(), file.string() + "-wal", file.string() + "-shm"}) std::filesystem::remove(f);
  sqlite_rows(file.string());
  for (const auto& f : {file.string(), file.string() + "-wal", file.string() + "-shm"}) std::filesystem::remove(f);
  if (const auto url = bench::pg_url(); !url.empty()) postgres_rows(url);
  else std::printf("(no BENCH_PG_URL / CASECORE_TEST_PG_URL: PostgreSQL rows skipped)\n");
}
