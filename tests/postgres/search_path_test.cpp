// Every transaction pins its search_path, so a schema added later to the front of a role's path —
// the "$user" schema anyone with CREATE on the database can make — or a temporary table cannot
// shadow casecore's tables (security review, finding 12).
#include <casecore/counter.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <pqxx/pqxx>

#include <cstdlib>
#include <unistd.h>

using namespace casecore;

TEST_CASE("a later \"$user\" schema with look-alike tables does not capture casecore's statements") {
  if (testing::behind_test_pooler()) {
    MESSAGE("skipped behind a pooler: the test creates a database of its own, directly");
    return;
  }
  const char* admin_env = std::getenv("CASECORE_TEST_PG_URL");
  REQUIRE(admin_env);
  const std::string admin = admin_env;
  const std::string name = "sp_" + std::to_string(::getpid());
  {
    pqxx::connection c(admin);
    pqxx::nontransaction w(c);
    w.exec("DROP DATABASE IF EXISTS " + name);
    w.exec("CREATE DATABASE " + name);
  }
  const auto url = admin.substr(0, admin.rfind('/')) + "/" + name;
  {
    auto db = casecore::open(url); // no ?schema=: the server's path ("$user", public)
    migrate(db);
    CHECK(db.write([](transaction& tx) { return counter::next(tx, "wo"); }) == 1);
  }
  {
    // Someone creates the "$user" schema (the role is postgres) with a look-alike counter table.
    pqxx::connection c(url);
    pqxx::nontransaction w(c);
    w.exec("CREATE SCHEMA postgres");
    w.exec("CREATE TABLE postgres.casecore_counters(name TEXT NOT NULL, scope TEXT NOT NULL DEFAULT '', "
           "value BIGINT NOT NULL, PRIMARY KEY(name, scope))");
    w.exec("INSERT INTO postgres.casecore_counters VALUES('wo', '', 1000)");
  }
  auto db = casecore::open(url);
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "wo"); }) == 2); // public's counter, not 1001
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::string>("SHOW search_path"); }) == "public, pg_temp");
  pqxx::connection c(url);
  pqxx::nontransaction w(c);
  CHECK(w.exec("SELECT value FROM public.casecore_counters WHERE name = 'wo'")[0][0].as<std::int64_t>() == 2);
  CHECK(w.exec("SELECT value FROM postgres.casecore_counters WHERE name = 'wo'")[0][0].as<std::int64_t>() == 1000);
  pqxx::connection a(admin);
  pqxx::nontransaction aw(a);
  c.disconnect();
  aw.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
}

TEST_CASE("the pinned search_path keeps configured schemas in order and quoted names whole, never \"$user\" or pg_temp") {
  if (testing::behind_test_pooler()) {
    MESSAGE("skipped behind a pooler: the test creates a database of its own, directly");
    return;
  }
  const std::string admin = std::getenv("CASECORE_TEST_PG_URL");
  const std::string name = "sp2_" + std::to_string(::getpid());
  {
    pqxx::connection c(admin);
    pqxx::nontransaction w(c);
    w.exec("DROP DATABASE IF EXISTS " + name);
    w.exec("CREATE DATABASE " + name);
  }
  const auto url = admin.substr(0, admin.rfind('/')) + "/" + name;
  {
    pqxx::connection c(url);
    pqxx::nontransaction w(c);
    w.exec("CREATE SCHEMA app");
    w.exec("CREATE SCHEMA \"Weird,Name\"");
    w.exec("ALTER DATABASE " + name + " SET search_path = \"$user\", app, pg_temp, \"Weird,Name\", public");
  }
  auto show = [](database& db) { return db.read([](transaction& tx) { return tx.query_one<std::string>("SHOW search_path"); }); };
  {
    auto db = casecore::open(url);
    CHECK(show(db) == "app, \"Weird,Name\", public, pg_temp");
  }
  {
    pqxx::connection c(url);
    pqxx::nontransaction w(c);
    w.exec("ALTER DATABASE " + name + " SET search_path = \"$user\", pg_temp");
  }
  {
    auto db = casecore::open(url); // nothing left but what must not come first: only the catalog
    CHECK(show(db) == "pg_catalog, pg_temp");
  }
  pqxx::connection a(admin);
  pqxx::nontransaction aw(a);
  aw.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
}
