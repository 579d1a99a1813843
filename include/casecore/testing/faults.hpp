// casecore/testing/faults.hpp — inject transient database failures into a real backend.
//
// A fault_injector wraps a real connection factory (SQLite or PostgreSQL) and, at the configured
// rates, makes a statement or a BEGIN fail with exactly the errors the real drivers produce after
// translation: busy (SQLITE_BUSY / lock timeout), serialization_failure (40001) or connection_lost
// (the connection is then marked broken, so the pool discards and replaces it). Faults strike before
// COMMIT only, so every acknowledged write is real; a unit of work that hits one is retried by the
// normal retry contract. Thread-safe; counts what it injected.
#pragma once

#include <casecore/database.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// Fault rates (probabilities per statement, 0..1).
struct fault_options {
  double busy_rate = 0;           ///< errc::busy
  double serialization_rate = 0;  ///< errc::serialization_failure
  double disconnect_rate = 0;     ///< errc::connection_lost, connection discarded
  std::uint64_t seed = 0;         ///< 0: random
};

/// What was injected so far.
struct fault_counts {
  std::uint64_t busy = 0;           ///< busy faults
  std::uint64_t serialization = 0;  ///< serialization faults
  std::uint64_t disconnect = 0;     ///< dropped connections
};

/// Wraps backends; share one injector between the handles whose faults you want to count together.
class fault_injector : public std::enable_shared_from_this<fault_injector> {
public:
  /// Validate the rates (invalid_argument when outside 0..1).
  explicit fault_injector(fault_options options);
  /// A backend that injects faults into `inner`'s connections.
  std::shared_ptr<casecore::backend> wrap(std::shared_ptr<casecore::backend> inner);
  /// Pause or resume injection (e.g. off while checking invariants).
  void enable(bool on) noexcept { enabled_ = on; }
  /// Faults injected so far.
  fault_counts counts() const noexcept;
  /// Roll the dice for one statement; throws the chosen fault (used by the wrapper).
  void maybe_fail(bool& broken);

private:
  fault_options options_;
  std::atomic<bool> enabled_{true};
  std::atomic<std::uint64_t> busy_{0}, serialization_{0}, disconnect_{0};
};

/// Open `url` with faults injected by `injector` (what casecore::open does, plus the wrapper).
database open_with_faults(std::string_view url, const std::shared_ptr<fault_injector>& injector, database_options options = {});

} // namespace casecore::testing

CASECORE_API_END
