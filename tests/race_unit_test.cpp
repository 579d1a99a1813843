// The testing kit's race helpers: race_check runs the check after every thread, the require_*
// helpers catch duplicates, gaps and mismatches.
#include <casecore/testing/race.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>

using namespace casecore::testing;

TEST_CASE("race_check runs the check once every thread finished") {
  std::atomic<int> done{0};
  int checked_at = -1;
  race_check(8, [&](std::size_t) { ++done; }, [&] { checked_at = done.load(); });
  CHECK(checked_at == 8);
}

TEST_CASE("race_check reports a broken invariant of a racy counter") {
  // Read-then-write without a lock loses updates sooner or later; the check must be able to say so.
  std::mutex m;
  std::vector<std::int64_t> seen;
  std::int64_t next = 0;
  race_check(8, [&](std::size_t) {
    for (int i = 0; i < 1000; ++i) {
      std::lock_guard g(m);
      seen.push_back(++next);
    }
  }, [&] { require_gapless(seen, 1, "numbers"); });
  CHECK(seen.size() == 8000);
}

TEST_CASE("require helpers name the first offending value") {
  CHECK_NOTHROW(require_unique({3, 1, 2}));
  CHECK_THROWS_AS(require_unique({1, 2, 2}), invariant_failure);
  CHECK_NOTHROW(require_gapless({2, 1, 3}));
  CHECK_THROWS_WITH_AS(require_gapless({1, 3}, 1, "n"), "n: expected 2, found 3 (gap)", invariant_failure);
  CHECK_THROWS_WITH_AS(require_gapless({1, 1, 2}, 1, "n"), "n: expected 2, found 1 (duplicate)", invariant_failure);
  CHECK_THROWS_AS(require_equal(4, 5), invariant_failure);
  CHECK_THROWS_AS(require(false, "x"), invariant_failure);
  CHECK_THROWS_AS(race_check(4, [](std::size_t) {}, [] { require(false, "broken"); }), invariant_failure);
}
