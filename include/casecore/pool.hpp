// casecore/pool.hpp — a bounded connection pool per database.
//
// Concurrency: thread-safe. A connection is handed to exactly one caller at a time. At most
// `size + overflow` connections exist. Connections beyond `size` are handed to waiting callers when
// returned and closed only when nobody waits and they have been idle for `overflow_idle` (checked
// whenever a connection is returned), so a burst of callers does not open and close connections
// per operation. A caller that
// finds none free waits up to `acquire_timeout`, then gets errc::pool_timeout (retryable).
// Connections idle longer than `pre_ping_after` are pinged before use and replaced when broken;
// connections older than `recycle_age` are closed when returned.
// This header holds the options and figures hosts see; the pool itself is internal
// (casecore/detail/pool.hpp) and used through casecore::database.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Pool sizing and health settings.
struct pool_options {
  std::size_t size = 8;                                        ///< connections kept open
  std::size_t overflow = 4;                                    ///< extra connections under load
  std::chrono::milliseconds acquire_timeout{10000};            ///< wait for a free connection
  bool pre_ping = true;                                        ///< ping idle connections before use
  std::chrono::milliseconds pre_ping_after{1000};              ///< idle time that triggers a ping
  std::chrono::seconds recycle_age{1800};                      ///< close connections older than this
  std::chrono::milliseconds overflow_idle{1000};               ///< close surplus connections idle this long (no waiters)
};

/// Upper bounds (microseconds) of the acquire-wait histogram buckets; the last bucket is +Inf.
inline constexpr std::array<std::int64_t, 7> acquire_wait_buckets_us{10, 100, 1000, 10000, 100000, 1000000, 10000000};

/// A point-in-time copy of the pool's figures.
struct pool_metrics {
  std::size_t capacity = 0;                 ///< size + overflow
  std::size_t in_use = 0;                   ///< connections handed out now
  std::size_t idle = 0;                     ///< open connections waiting in the pool
  std::size_t waiting = 0;                  ///< callers waiting for a connection now
  std::uint64_t acquired = 0;               ///< successful acquisitions
  std::uint64_t timeouts = 0;               ///< acquisitions that gave up
  std::uint64_t opened = 0;                 ///< connections opened
  std::uint64_t reconnects = 0;             ///< broken connections replaced
  std::uint64_t recycled = 0;               ///< connections closed for age or overflow
  std::array<std::uint64_t, acquire_wait_buckets_us.size() + 1> acquire_wait{}; ///< histogram counts
  std::uint64_t acquire_wait_sum_us = 0;    ///< total time spent waiting
};

} // namespace casecore

CASECORE_API_END
