// casecore/testing/race.hpp — race N threads against a function and check an invariant.
//
// race(n, f) starts n threads, lines them up on a barrier so they really start together, runs
// f(index) in each, joins them all and rethrows the first exception any thread threw.
// race_check(n, f, check) does the same, then runs check() (read the database, compare) once every
// thread is done. The require_* helpers state the usual invariants and throw invariant_failure
// naming the first offending value, so they work from any test framework or a plain main().
#pragma once

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// Run f(i) for i in [0, n) on n threads released together; rethrow the first failure.
template <class F> void race(std::size_t n, F&& f) {
  std::barrier start(static_cast<std::ptrdiff_t>(n));
  std::exception_ptr first;
  std::mutex m;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        f(i);
      } catch (...) {
        std::lock_guard g(m);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

/// Race f(i) on n threads, then run check() (it throws, or returns normally when the invariant holds).
template <class F, class Check> void race_check(std::size_t n, F&& f, Check&& check) {
  race(n, std::forward<F>(f));
  check();
}

/// An invariant of a race did not hold; what() names it and the first offending value.
class invariant_failure : public std::runtime_error {
public:
  /// A violated invariant described by `what`.
  explicit invariant_failure(const std::string& what) : std::runtime_error(what) {}
};

/// Throw invariant_failure unless `ok`.
inline void require(bool ok, std::string_view what) {
  if (!ok) throw invariant_failure(std::string(what));
}

/// Throw invariant_failure when a value occurs twice ("no duplicate").
inline void require_unique(std::vector<std::int64_t> values, std::string_view what = "values") {
  std::sort(values.begin(), values.end());
  const auto dup = std::adjacent_find(values.begin(), values.end());
  if (dup != values.end()) throw invariant_failure(std::string(what) + ": " + std::to_string(*dup) + " occurs twice");
}

/// Throw invariant_failure unless the values are exactly first, first+1, ... (no duplicate, no gap).
inline void require_gapless(std::vector<std::int64_t> values, std::int64_t first = 1, std::string_view what = "values") {
  std::sort(values.begin(), values.end());
  std::int64_t expect = first;
  for (const auto v : values) {
    if (v != expect)
      throw invariant_failure(std::string(what) + ": expected " + std::to_string(expect) + ", found " + std::to_string(v) +
                              (v < expect ? " (duplicate)" : " (gap)"));
    ++expect;
  }
}

/// Throw invariant_failure unless `actual` == `expected` (e.g. a counter against acknowledged increments).
inline void require_equal(std::int64_t actual, std::int64_t expected, std::string_view what = "value") {
  if (actual != expected)
    throw invariant_failure(std::string(what) + ": expected " + std::to_string(expected) + ", found " + std::to_string(actual));
}

} // namespace casecore::testing

CASECORE_API_END
