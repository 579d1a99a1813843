// casecore behind PgBouncer 1.18: transaction and session pooling with fewer server connections than
// client threads. Needs CASECORE_TEST_PGBOUNCER_URL (transaction mode) and
// CASECORE_TEST_PGBOUNCER_SESSION_URL (session mode), which scripts/test.sh provides.
#include <casecore/counter.hpp>
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/postgres/postgres.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <pqxx/pqxx>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

using namespace casecore;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A fresh database of its own (reached directly for setup and checks, and through the pooler), so
// the test needs no search_path and runs the same way on any casecore version.
struct pooled_database {
  std::string name;
  std::string direct, pooled;
  pooled_database(const std::string& pooler_url, std::string suffix) {
    const auto admin = env("CASECORE_TEST_PG_URL");
    REQUIRE_MESSAGE(!admin.empty(), "CASECORE_TEST_PG_URL is not set");
    name = "pool_" + std::to_string(::getpid()) + "_" + suffix;
    pqxx::connection c(admin.substr(0, admin.rfind('/')) + "/postgres");
    pqxx::nontransaction w(c);
    w.exec("DROP DATABASE IF EXISTS " + name);
    w.exec("CREATE DATABASE " + name);
    direct = admin.substr(0, admin.rfind('/')) + "/" + name;
    pooled = pooler_url.substr(0, pooler_url.rfind('/')) + "/" + name;
  }
  ~pooled_database() {
    try {
      const auto admin = env("CASECORE_TEST_PG_URL");
      pqxx::connection c(admin.substr(0, admin.rfind('/')) + "/postgres");
      pqxx::nontransaction w(c);
      w.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    } catch (...) {
    }
  }
};

// The shape of the seeds' traffic: a gapless number, an application row that records it, a bounded
// stock decrement and a lease, each unit in one transaction, from many threads at once.
struct workload {
  std::mutex m;
  std::vector<std::int64_t> acknowledged;      // numbers whose unit committed
  std::map<std::string, int> errors;            // error code → count
  std::atomic<int> wrong_results{0};            // a statement answered something impossible
};

void setup_schema(database& db) {
  migrate(db);
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE orders(id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, note TEXT NOT NULL);"
                   "CREATE TABLE stock(sku TEXT PRIMARY KEY, qty BIGINT NOT NULL CHECK (qty >= 0));"
                   "INSERT INTO stock VALUES('bolt', 1000000)");
  });
}

void run_workload(database& db, workload& w, int threads, int per_thread) {
  testing::race(static_cast<std::size_t>(threads), [&](std::size_t t) {
    for (int i = 0; i < per_thread; ++i) {
      try {
        const auto n = db.write([&](transaction& tx) {
          const auto qty = tx.query_one<std::int64_t>("UPDATE stock SET qty = qty - 1 WHERE sku = $1 RETURNING qty", "bolt");
          if (qty < 0 || qty >= 1000000) ++w.wrong_results;
          lease::try_acquire(tx, "pool-lease-" + std::to_string(t), "owner-" + std::to_string(t), std::chrono::seconds(30));
          const auto number = counter::next(tx, "wo");
          tx.exec("INSERT INTO orders(n, note) VALUES($1, $2)", number, "thread " + std::to_string(t));
          return number;
        });
        std::lock_guard g(w.m);
        w.acknowledged.push_back(n);
      } catch (const error& e) {
        std::lock_guard g(w.m);
        ++w.errors[std::string(to_string(e.code()))];
      }
    }
  });
}

// Every acknowledged number is stored once, gapless, and the other tables hold only what they should.
void check_invariants(const std::string& direct_url, workload& w) {
  auto db = casecore::open(direct_url);
  const auto ns = db.read([](transaction& tx) {
    std::vector<std::int64_t> out;
    for (auto r : tx.exec("SELECT n FROM orders ORDER BY n")) out.push_back(r.get<std::int64_t>(0));
    return out;
  });
  std::sort(w.acknowledged.begin(), w.acknowledged.end());
  CHECK(ns == w.acknowledged);                                                   // exactly what was acknowledged
  CHECK(std::adjacent_find(ns.begin(), ns.end()) == ns.end());                  // no duplicate numbers
  for (std::size_t i = 0; i < ns.size(); ++i) CHECK(ns[i] == static_cast<std::int64_t>(i + 1)); // no gap
  db.read([&](transaction& tx) {
    CHECK(tx.query_one<std::int64_t>("SELECT coalesce(max(value), 0) FROM casecore_counters") == static_cast<std::int64_t>(ns.size()));
    CHECK(tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_counters") <= 1);
    CHECK(tx.query_one<std::int64_t>("SELECT 1000000 - qty FROM stock") == static_cast<std::int64_t>(ns.size()));
    CHECK(tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_leases WHERE name NOT LIKE 'pool-lease-%'") == 0);
    CHECK(tx.query_one<std::int64_t>("SELECT count(*) FROM orders WHERE note NOT LIKE 'thread %'") == 0);
  });
  CHECK(w.wrong_results == 0);
}

} // namespace

TEST_CASE("PgBouncer transaction mode: eight threads on four server connections lose and mix up nothing") {
  // Regression (many-hosts issue): named statements cc0, cc1, ... per client collided on shared
  // server connections; statements ran as other statements and were acknowledged.
  const auto bouncer = env("CASECORE_TEST_PGBOUNCER_URL");
  REQUIRE_MESSAGE(!bouncer.empty(), "CASECORE_TEST_PGBOUNCER_URL is not set: run through scripts/test.sh");
  pooled_database pdb(bouncer, "tx");
  {
    auto direct = casecore::open(pdb.direct);
    setup_schema(direct);
  }
  database_options o;
  o.pool.size = 8;
  auto db = casecore::open(pdb.pooled, o); // no ?pooler=: detected
  CHECK(postgres::behind_pooler(db));
  CHECK(postgres::uses_unnamed_statements(db));
  workload w;
  run_workload(db, w, 8, 150);
  for (const auto& [code, n] : w.errors) MESSAGE("error " << code << " x" << n);
  CHECK(w.errors.empty());
  CHECK(w.acknowledged.size() == 8u * 150u);
  check_invariants(pdb.direct, w);
}

TEST_CASE("PgBouncer transaction mode with named statements forced: typed errors, never a wrong statement") {
  // Declaring pooler=none behind a transaction pooler is a misconfiguration. Statement names are
  // hashes of their text, so a shared server connection can only ever run the right text; the
  // duplicate/missing statement errors (42P05 / 26000) surface as errc::configuration — never
  // retried silently, never mapped to a lost connection — and casecore then switches to unnamed
  // statements by itself.
  const auto bouncer = env("CASECORE_TEST_PGBOUNCER_URL");
  REQUIRE_MESSAGE(!bouncer.empty(), "CASECORE_TEST_PGBOUNCER_URL is not set: run through scripts/test.sh");
  pooled_database pdb(bouncer, "named");
  {
    auto direct = casecore::open(pdb.direct);
    setup_schema(direct);
  }
  database_options o;
  o.pool.size = 8;
  auto db = casecore::open(pdb.pooled + "?pooler=none", o);
  CHECK_FALSE(postgres::uses_unnamed_statements(db));
  workload w;
  run_workload(db, w, 8, 100);
  for (const auto& [code, n] : w.errors) {
    MESSAGE("error " << code << " x" << n);
    CHECK(code == "configuration");
  }
  CHECK(postgres::uses_unnamed_statements(db) == !w.errors.empty());
  check_invariants(pdb.direct, w);
}

TEST_CASE("PgBouncer: casecore's per-transaction settings never reach another client's session") {
  // Regression (many-hosts issue): ?statement_timeout_ms= ran a session SET that leaked to others.
  for (const char* var : {"CASECORE_TEST_PGBOUNCER_URL", "CASECORE_TEST_PGBOUNCER_SESSION_URL"}) {
    const auto bouncer = env(var);
    const std::string variable = var; // doctest prints a const char* as a pointer
    REQUIRE_MESSAGE(!bouncer.empty(), variable << " is not set: run through scripts/test.sh");
    CAPTURE(variable);
    pooled_database pdb(bouncer, std::string("leak") + (var[27] == 'S' ? "s" : "t"));
    {
      database_options o;
      o.pool.size = 3; // session mode: each client connection holds a server connection (4 exist)
      o.pool.overflow = 0;
      auto db = casecore::open(pdb.pooled + "?statement_timeout_ms=4321&lock_timeout_ms=1234&schema=public", o);
      testing::race(6, [&](std::size_t) {
        for (int i = 0; i < 40; ++i)
          db.write([](transaction& tx) {
            CHECK(tx.query_one<std::string>("SHOW statement_timeout") == "4321ms");
            CHECK(tx.query_one<std::string>("SHOW lock_timeout") == "1234ms");
            CHECK(tx.query_one<std::string>("SHOW transaction_isolation") == "read committed");
          });
      });
    } // casecore's connections close: a session pooler hands their server connections on
    // A plain client through the same pooler, many times (it lands on every server connection).
    for (int i = 0; i < 20; ++i) {
      pqxx::connection plain(pdb.pooled);
      pqxx::nontransaction w(plain);
      CHECK(w.exec("SHOW statement_timeout")[0][0].as<std::string>() == "0");
      CHECK(w.exec("SHOW lock_timeout")[0][0].as<std::string>() == "0");
      CHECK(w.exec("SHOW search_path")[0][0].as<std::string>() == "\"$user\", public");
    }
  }
}

TEST_CASE("PgBouncer session mode: the same workload, named statements, nothing lost") {
  const auto bouncer = env("CASECORE_TEST_PGBOUNCER_SESSION_URL");
  REQUIRE_MESSAGE(!bouncer.empty(), "CASECORE_TEST_PGBOUNCER_SESSION_URL is not set: run through scripts/test.sh");
  pooled_database pdb(bouncer, "session");
  {
    auto direct = casecore::open(pdb.direct);
    setup_schema(direct);
  }
  database_options o;
  o.pool.size = 4; // session mode: one server connection per client connection (4 exist)
  o.pool.overflow = 0;
  auto db = casecore::open(pdb.pooled + "?pooler=session", o);
  CHECK(postgres::behind_pooler(db));
  CHECK_FALSE(postgres::uses_unnamed_statements(db));
  workload w;
  run_workload(db, w, 4, 150);
  CHECK(w.errors.empty());
  check_invariants(pdb.direct, w);
}
