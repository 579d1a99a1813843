// bench/harness.hpp — the one small harness every casecore benchmark uses.
//
// measure(threads, duration, body) runs body(thread_index) in a loop on `threads` threads released
// together, for `duration`, and returns operations per second (body returns how many operations it
// completed). Each benchmark measures casecore and the raw SQL it wraps with the same harness in the
// same run, and prints a row with the ratio. Benchmarks are programs, never tests.
#pragma once

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace bench {

/// Operations per second of `body` on `threads` threads for `duration`.
inline double measure(int threads, std::chrono::milliseconds duration, const std::function<std::uint64_t(int)>& body) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> total{0};
  std::barrier start(threads + 1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      std::uint64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) mine += body(t);
      total += mine;
    });
  }
  start.arrive_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(duration);
  stop = true;
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(total.load()) / secs;
}

/// Print the table header once.
inline void header() {
  std::printf("| benchmark | backend | callers | casecore ops/s | raw ops/s | ratio |\n|---|---|---:|---:|---:|---:|\n");
}

/// Print one row: casecore next to the raw SQL it wraps.
inline void row(const std::string& name, const std::string& backend, int callers, double lib, double raw) {
  std::printf("| %s | %s | %d | %.0f | %.0f | %.2f |\n", name.c_str(), backend.c_str(), callers, lib, raw, raw > 0 ? lib / raw : 0.0);
  std::fflush(stdout);
}

/// Measurement length: BENCH_MS (default 2000 ms per figure).
inline std::chrono::milliseconds duration() {
  const char* v = std::getenv("BENCH_MS");
  return std::chrono::milliseconds(v ? std::atoi(v) : 2000);
}

/// The PostgreSQL URL to benchmark on (BENCH_PG_URL, else CASECORE_TEST_PG_URL), empty when none.
inline std::string pg_url() {
  for (const char* k : {"BENCH_PG_URL", "CASECORE_TEST_PG_URL"})
    if (const char* v = std::getenv(k); v && *v) return v;
  return {};
}

} // namespace bench
