#include <casecore/detail/token.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <unistd.h>

namespace casecore::detail {

std::string random_token() {
  // Per-thread generator seeded from the OS entropy source, mixed with pid and a process counter so
  // two forks of one process never repeat a token.
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(::getpid()),
                      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())};
    return std::mt19937_64(seq);
  }()};
  static std::atomic<std::uint64_t> counter{0};
  const std::uint64_t a = rng() ^ (static_cast<std::uint64_t>(::getpid()) << 32);
  const std::uint64_t b = rng() ^ counter.fetch_add(1, std::memory_order_relaxed);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[static_cast<std::size_t>(i)] = hex[(a >> (60 - 4 * i)) & 15];
    out[static_cast<std::size_t>(16 + i)] = hex[(b >> (60 - 4 * i)) & 15];
  }
  return out;
}

} // namespace casecore::detail
