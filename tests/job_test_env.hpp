// Settings the jobs and worker tests choose, overridable from the environment so the same suite
// runs again under a configuration matrix (issue 10): CASECORE_TEST_JOB_BATCH (jobs per claim, e.g.
// 1 or 100) and CASECORE_TEST_LEASE_MS (claim lease, e.g. 300 for tiny leases). A test uses these
// only where it picks a value freely; a test whose point is a specific shape (a lease that expires,
// a stage longer than the lease) derives the rest of its timings from the lease it got.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <string>

namespace casecore::testing {

/// CASECORE_TEST_JOB_BATCH, or `fallback`.
inline std::size_t job_batch(std::size_t fallback) {
  const char* v = std::getenv("CASECORE_TEST_JOB_BATCH");
  if (!v || !*v) return fallback;
  const auto n = std::stoul(v);
  return n == 0 ? fallback : n;
}

/// CASECORE_TEST_LEASE_MS, or `fallback`.
inline std::chrono::milliseconds job_lease(std::chrono::milliseconds fallback) {
  const char* v = std::getenv("CASECORE_TEST_LEASE_MS");
  if (!v || !*v) return fallback;
  const auto n = std::stol(v);
  return n <= 0 ? fallback : std::chrono::milliseconds(n);
}

} // namespace casecore::testing
