// Versioned ordered lists: append, remove, reorder against the version; concurrent reorders from
// threads and processes leave a permutation. Both backends.
#include <casecore/ordered_list.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <random>
#include <set>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {

database migrated(const scratch_database& s) {
  auto db = s.open_migrated();
  return db;
}

write_options as(std::string actor) {
  write_options o;
  o.actor = std::move(actor);
  o.retry = retry_policy{};
  o.retry->max_attempts = 1000;
  o.retry->budget = std::chrono::seconds(120);
  return o;
}

} // namespace

TEST_CASE("bad list names are a typed error and write nothing") {
  scratch_database s;
  auto db = migrated(s);
  CHECK_THROWS_AS(db.write([](transaction& tx) { ordered_list::append(tx, "", "k", 1); }), invalid_argument);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_lists"); }) == 0);
}

TEST_CASE("ordered lists: append, remove, reorder against the version") {
  scratch_database s;
  auto db = migrated(s);
  db.write([](transaction& tx) {
    for (std::int64_t i = 1; i <= 4; ++i) ordered_list::append(tx, "queue", "station1", i);
    CHECK_THROWS_AS(ordered_list::append(tx, "queue", "station1", 2), already_exists);
    CHECK(ordered_list::remove(tx, "queue", "station1", 2) == 5);
    CHECK_THROWS_AS(ordered_list::remove(tx, "queue", "station1", 2), not_found);
  });
  auto snap = db.read([](transaction& tx) { return ordered_list::read(tx, "queue", "station1"); });
  CHECK(snap.items == std::vector<std::int64_t>{1, 3, 4});
  CHECK(snap.version == 5);
  db.write([&](transaction& tx) { CHECK(ordered_list::reorder(tx, "queue", "station1", 5, {4, 1, 3}) == 6); });
  CHECK_THROWS_AS(db.write([&](transaction& tx) { ordered_list::reorder(tx, "queue", "station1", 5, {1, 3, 4}); }),
                  version_conflict);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { ordered_list::reorder(tx, "queue", "station1", 6, {1, 3}); }),
                  invalid_argument);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { ordered_list::reorder(tx, "queue", "station1", 6, {1, 3, 3}); }),
                  invalid_argument);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { ordered_list::reorder(tx, "queue", "station1", 6, {1, 3, 9}); }),
                  invalid_argument);
  snap = db.read([](transaction& tx) { return ordered_list::read(tx, "queue", "station1"); });
  CHECK(snap.items == std::vector<std::int64_t>{4, 1, 3});
  CHECK(snap.version == 6);
}

namespace {
// Read, shuffle, reorder; on a stale version re-read and try again. Returns the attempts it took.
int shuffle_until_applied(database& db, std::uint32_t seed) {
  std::mt19937 rng(seed);
  for (int attempt = 1;; ++attempt) {
    auto snap = db.read([](transaction& tx) { return ordered_list::read(tx, "queue", "q"); });
    std::shuffle(snap.items.begin(), snap.items.end(), rng);
    try {
      db.write([&](transaction& tx) { ordered_list::reorder(tx, "queue", "q", snap.version, snap.items); }, as("s"));
      return attempt;
    } catch (const version_conflict&) {
    }
  }
}

void check_permutation(database& db, std::int64_t n, std::int64_t version) {
  auto snap = db.read([](transaction& tx) { return ordered_list::read(tx, "queue", "q"); });
  auto sorted = snap.items;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> expect(static_cast<std::size_t>(n));
  std::iota(expect.begin(), expect.end(), 1);
  CHECK(sorted == expect);
  CHECK(snap.version == version);
  db.read([&](transaction& tx) {
    CHECK(tx.query_one<std::int64_t>("SELECT COUNT(DISTINCT pos) FROM casecore_list_items WHERE name = 'queue'") == n);
    CHECK(tx.query_one<std::int64_t>("SELECT MAX(pos) FROM casecore_list_items WHERE name = 'queue'") == n - 1);
  });
}

void fill_queue(database& db, std::int64_t n) {
  db.write([&](transaction& tx) {
    for (std::int64_t i = 1; i <= n; ++i) ordered_list::append(tx, "queue", "q", i);
  });
}
} // namespace

TEST_CASE("threads: concurrent reorders leave a permutation") {
  scratch_database s;
  auto db = migrated(s);
  fill_queue(db, 12);
  constexpr int threads = 6, per = 5;
  std::atomic<int> conflicts{0};
  casecore::testing::race(threads, [&](std::size_t t) {
    for (int i = 0; i < per; ++i) conflicts += shuffle_until_applied(db, static_cast<std::uint32_t>(t * 100 + i)) - 1;
  });
  MESSAGE("reorder conflicts retried: " << conflicts.load());
  check_permutation(db, 12, 12 + threads * per);
}

CASECORE_CHILD(repo_reorder) {
  auto db = casecore::open(args.at(0));
  for (int i = 0; i < std::stoi(args.at(1)); ++i) shuffle_until_applied(db, static_cast<std::uint32_t>(std::stoi(args.at(2)) * 1000 + i));
  return 0;
}

TEST_CASE("processes: concurrent reorders leave a permutation") {
  scratch_database s;
  auto db = migrated(s);
  fill_queue(db, 10);
  const auto results = casecore::testing::run_children("repo_reorder", 3, {s.url(), "6"});
  for (const auto& r : results) CHECK(r.exit_code == 0);
  check_permutation(db, 10, 10 + 3 * 6);
}


TEST_CASE("ordered list writes need a write transaction; a refused write changes nothing") {
  scratch_database s;
  auto db = migrated(s);
  db.write([](transaction& tx) { ordered_list::append(tx, "queue", "case:1", 7); });
  db.read([](transaction& tx) {
    CHECK_THROWS_AS(ordered_list::append(tx, "queue", "case:1", 8), invalid_argument);
    CHECK_THROWS_AS(ordered_list::remove(tx, "queue", "case:1", 7), invalid_argument);
  });
  db.read([](transaction& tx) { CHECK(ordered_list::read(tx, "queue", "case:1").items == std::vector<std::int64_t>{7}); });
}
