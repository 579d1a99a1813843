// casecore/retry.hpp — the retry contract for units of work.
//
// A write unit of work that fails with a retryable error (busy, serialization failure, deadlock,
// connection lost before commit, pool timeout) is rolled back and run again after an exponential
// backoff with full jitter, until the attempt or time budget is spent. The callable must therefore
// have no side effects outside the transaction (use after_commit hooks or the outbox for those).
// A COMMIT whose outcome is unknown is never retried.
#pragma once

#include <chrono>
#include <cstdint>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Attempt and time budget of a unit of work.
struct retry_policy {
  int max_attempts = 12;                               ///< total attempts, the first included
  std::chrono::milliseconds budget{30000};             ///< stop retrying after this much time
  std::chrono::microseconds base_delay{500};           ///< first backoff ceiling
  std::chrono::microseconds max_delay{100000};         ///< backoff ceiling cap

  /// A policy that never retries.
  static retry_policy none() { retry_policy p; p.max_attempts = 1; return p; }
};

/// The jittered delay before attempt `attempt` (2 = first retry): uniform in [0, min(cap, base*2^(attempt-2))].
std::chrono::microseconds backoff_delay(const retry_policy& policy, int attempt);

} // namespace casecore

CASECORE_API_END
