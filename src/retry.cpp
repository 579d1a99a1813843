#include <casecore/retry.hpp>

#include <algorithm>
#include <random>

namespace casecore {

std::chrono::microseconds backoff_delay(const retry_policy& policy, int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  const int shift = std::clamp(attempt - 2, 0, 20);
  const auto ceiling = std::min<std::int64_t>(policy.max_delay.count(), policy.base_delay.count() << shift);
  if (ceiling <= 0) return std::chrono::microseconds{0};
  std::uniform_int_distribution<std::int64_t> pick(ceiling / 4, ceiling); // full jitter, floored to avoid spin
  return std::chrono::microseconds{pick(rng)};
}

} // namespace casecore
