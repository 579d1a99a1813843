// casecore/detail/tx_duration.hpp — the unit of work's duration histogram (internal).
//
// database::run_unit records how long every unit of work took, from the call to its return or
// throw (retries and reconnect waits included), per mode (write / read). The figures live in the
// database's shared state, registered as a feature (detail::feature_state) under tx_durations_key so
// that metrics.cpp can read them without a change to database.hpp's public types.
// Rendered as casecore_transaction_duration_seconds{db, mode} (docs/telemetry.md).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace casecore::detail {

/// Upper bounds of the buckets, in microseconds (+Inf is implicit): 1 ms .. 10 s, the same bounds as
/// metrics::default_seconds_buckets().
inline constexpr std::array<std::int64_t, 12> tx_duration_bounds_us{1000,   5000,   10000,   25000,   50000,   100000,
                                                                    250000, 500000, 1000000, 2500000, 5000000, 10000000};

/// Lock-free counts of one database handle (shared by its copies).
struct tx_durations {
  /// One histogram: per-bucket (not cumulative) counts, the last one for +Inf, and the sum.
  struct series {
    std::array<std::atomic<std::uint64_t>, tx_duration_bounds_us.size() + 1> counts{};
    std::atomic<std::uint64_t> sum_us{0};
    /// Record one duration.
    void observe(std::int64_t us) noexcept {
      std::size_t b = 0;
      while (b < tx_duration_bounds_us.size() && us > tx_duration_bounds_us[b]) ++b; // le: value <= bound
      counts[b].fetch_add(1, std::memory_order_relaxed);
      sum_us.fetch_add(static_cast<std::uint64_t>(us < 0 ? 0 : us), std::memory_order_relaxed);
    }
  };
  series write; ///< write units of work
  series read;  ///< read units of work
};

/// The feature key under which the database registers its tx_durations.
inline constexpr char tx_durations_key = 0;

} // namespace casecore::detail
