#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {
std::vector<migration> app_migrations() {
  return {
      {"app", 1, "widgets", "CREATE TABLE widgets(id {{id}}, name TEXT NOT NULL, data {{blob}})", "", ""},
      {"app", 2, "widget index", "CREATE UNIQUE INDEX widgets_name ON widgets(name)", "", ""},
  };
}
} // namespace

TEST_CASE("migrations apply in order, once, and are recorded") {
  scratch_database s;
  auto db = s.open();
  CHECK(schema_version(db, "app") == 0);
  const auto apps = app_migrations();
  const auto first = migrate(db, apps);
  CHECK(first.applied.size() == casecore_migrations().size() + 2);
  CHECK(schema_version(db, "app") == 2);
  CHECK(schema_version(db, "casecore") >= 2);
  CHECK(migrate(db, apps).applied.empty());
  db.write([](transaction& tx) { tx.exec("INSERT INTO widgets(name) VALUES($1)", "a"); });
  CHECK_THROWS_AS(db.write([](transaction& tx) { tx.exec("INSERT INTO widgets(name) VALUES($1)", "a"); }), already_exists);
}

TEST_CASE("a changed or duplicate migration is refused") {
  scratch_database s;
  auto db = s.open();
  auto apps = app_migrations();
  migrate(db, apps);
  apps[1].sql = "CREATE INDEX widgets_name ON widgets(name)";
  CHECK_THROWS_AS(migrate(db, apps), invalid_argument);
  auto dup = app_migrations();
  dup.push_back(dup[0]);
  CHECK_THROWS_AS(migrate(db, dup), invalid_argument);
  dup = {{"app", 0, "zero", "SELECT 1", "", ""}};
  CHECK_THROWS_AS(migrate(db, dup), invalid_argument);
  dup = {{"", 1, "no component", "CREATE TABLE never1(x INTEGER)", "", ""}};
  CHECK_THROWS_AS(migrate(db, dup), invalid_argument);
  dup = {{std::string(65, 'c'), 1, "long component", "CREATE TABLE never2(x INTEGER)", "", ""}};
  CHECK_THROWS_AS(migrate(db, dup), invalid_argument);
  CHECK(schema_version(db, "") == 0);
  CHECK(schema_version(db, std::string(65, 'c')) == 0);
}

TEST_CASE("a failing migration leaves nothing behind") {
  scratch_database s;
  auto db = s.open();
  std::vector<migration> bad{{"app", 1, "ok", "CREATE TABLE ok1(x INTEGER)", "", ""},
                             {"app", 2, "broken", "CREATE TABLE broken(", "", ""}};
  CHECK_THROWS_AS(migrate(db, bad), error);
  CHECK(schema_version(db, "app") == 0);
  CHECK(schema_version(db, "casecore") == 0);
}

TEST_CASE("threads migrating at once apply each step once") {
  scratch_database s;
  const auto apps = app_migrations();
  std::atomic<std::size_t> applied{0};
  casecore::testing::race(6, [&](std::size_t) {
    auto db = s.open();
    applied += migrate(db, apps).applied.size();
  });
  CHECK(applied == casecore_migrations().size() + 2);
}

CASECORE_CHILD(migrate_child) {
  auto db = casecore::open(args.at(0));
  const auto apps = app_migrations();
  std::printf("%zu\n", migrate(db, apps).applied.size());
  return 0;
}

TEST_CASE("processes migrating at once apply each step once") {
  scratch_database s;
  std::size_t applied = 0;
  for (const auto& r : casecore::testing::run_children("migrate_child", 4, {s.url()})) {
    CHECK(r.exit_code == 0);
    applied += std::stoul(r.output);
  }
  CHECK(applied == casecore_migrations().size() + 2);
  auto db = s.open();
  CHECK(schema_version(db, "app") == 2);
}
