// casecore/testing/race.hpp — race N threads against a function.
//
// race(n, f) starts n threads, lines them up on a barrier so they really start together, runs
// f(index) in each, joins them all and rethrows the first exception any thread threw.
#pragma once

#include <barrier>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

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

} // namespace casecore::testing
