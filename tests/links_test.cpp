// Unique links: exact links are idempotent, a taken one-per-side slot is already_exists. Both backends.
#include <casecore/links.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>


using namespace casecore;
using casecore::testing::scratch_database;

namespace {

database migrated(const scratch_database& s) {
  auto db = s.open_migrated();
  return db;
}

} // namespace

TEST_CASE("a bad link kind is a typed error and writes nothing") {
  scratch_database s;
  auto db = migrated(s);
  CHECK_THROWS_AS(db.write([](transaction& tx) { links::link(tx, "", 1, 2); }), invalid_argument);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_links"); }) == 0);
}

TEST_CASE("links are unique rows; a conflicting link is already_exists") {
  scratch_database s;
  auto db = migrated(s);
  db.write([](transaction& tx) {
    CHECK(links::link(tx, "ro_wo", 1, 100, link_cardinality::many_to_one));
    CHECK_FALSE(links::link(tx, "ro_wo", 1, 100, link_cardinality::many_to_one)); // idempotent
    CHECK_THROWS_AS(links::link(tx, "ro_wo", 1, 200, link_cardinality::many_to_one), already_exists);
    CHECK(links::link(tx, "ro_wo", 2, 100, link_cardinality::many_to_one)); // many ROs per WO
    CHECK(links::link(tx, "tag", 1, 5));
    CHECK(links::link(tx, "tag", 1, 6));
    CHECK(links::targets(tx, "tag", 1) == std::vector<std::int64_t>{5, 6});
    CHECK(links::sources(tx, "ro_wo", 100) == std::vector<std::int64_t>{1, 2});
    CHECK(links::unlink(tx, "ro_wo", 1, 100));
    CHECK_FALSE(links::unlink(tx, "ro_wo", 1, 100));
    CHECK(links::link(tx, "ro_wo", 1, 200, link_cardinality::many_to_one));
  });
  // The transaction that hit a conflict is still usable (no poisoning) and commits the rest.
  CHECK(db.read([](transaction& tx) { return links::targets(tx, "ro_wo", 1); }) == std::vector<std::int64_t>{200});
  std::atomic<int> won{0}, lost{0};
  casecore::testing::race(8, [&](std::size_t t) {
    try {
      db.write([&](transaction& tx) { links::link(tx, "one", 7, static_cast<std::int64_t>(1000 + t), link_cardinality::one_to_one); });
      ++won;
    } catch (const already_exists&) {
      ++lost;
    }
  });
  CHECK(won == 1);
  CHECK(lost == 7);
  CHECK(db.read([](transaction& tx) { return links::targets(tx, "one", 7).size(); }) == 1);
}

TEST_CASE("links need a write transaction; a refused link writes nothing") {
  scratch_database s;
  auto db = migrated(s);
  db.read([](transaction& tx) { CHECK_THROWS_AS(links::link(tx, "ro_wo", 1, 100, link_cardinality::many_to_many), invalid_argument); });
  db.read([](transaction& tx) { CHECK(links::targets(tx, "ro_wo", 1).empty()); });
}
