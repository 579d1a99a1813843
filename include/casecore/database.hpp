// casecore/database.hpp — a database handle: a pool, a backend and the unit-of-work runner.
//
// `database` is a cheap, copyable handle; copies share one pool. All members are thread-safe.
// write(f) runs f in a write transaction (SQLite: BEGIN IMMEDIATE) and commits, or rolls back on any
// exception; retryable failures are retried under the retry_policy (see retry.hpp). read(f) runs f
// in a read-only transaction. Failure modes: every error is a casecore::error; a COMMIT whose outcome
// is unknown throws outcome_unknown and is never retried.
#pragma once

#include <casecore/detail/function_ref.hpp>
#include <casecore/pool.hpp>
#include <casecore/retry.hpp>
#include <casecore/transaction.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace casecore {

/// Counters of the unit-of-work runner.
struct tx_metrics {
  std::uint64_t commits = 0;                 ///< committed write transactions
  std::uint64_t reads = 0;                   ///< completed read transactions
  std::uint64_t rollbacks = 0;               ///< attempts rolled back (any cause)
  std::uint64_t retries_busy = 0;            ///< retries after busy / locked
  std::uint64_t retries_serialization = 0;   ///< retries after SQLSTATE 40001
  std::uint64_t retries_deadlock = 0;        ///< retries after SQLSTATE 40P01
  std::uint64_t retries_connection = 0;      ///< retries after a dropped connection
  std::uint64_t retries_pool_timeout = 0;    ///< retries after a pool timeout
  std::uint64_t outcome_unknown = 0;         ///< commits whose result is unknown
  std::uint64_t conflicts = 0;               ///< version / state / fencing conflicts reported
  std::uint64_t hook_failures = 0;           ///< hooks that threw
};

/// Settings of a database handle.
struct database_options {
  pool_options pool;                       ///< pool sizing (URL parameters override)
  retry_policy retry;                      ///< default retry budget of write()
  /// Receives exceptions thrown by after-commit / after-rollback hooks (default: ignored, counted).
  std::function<void(std::exception_ptr)> on_hook_error;
};

/// Per-call settings of write().
struct write_options {
  isolation level = isolation::read_committed; ///< PostgreSQL isolation level
  std::optional<retry_policy> retry;           ///< overrides database_options::retry
  std::string actor;                           ///< recorded as updated_by by versioned writes
};

namespace detail { struct database_state; }

/// A handle to one database.
class database {
public:
  /// Wrap a backend (adapters and casecore::open call this).
  database(std::shared_ptr<detail::backend> backend, database_options options);

  /// Run `f(transaction&)` in a write transaction with retries; returns what f returns.
  template <class F> auto write(F&& f, const write_options& opts = {}) {
    return run<F>(std::forward<F>(f), detail::tx_mode::write, opts);
  }
  /// Run `f(transaction&)` in a read-only transaction; returns what f returns.
  template <class F> auto read(F&& f) {
    static const write_options defaults;
    return run<F>(std::forward<F>(f), detail::tx_mode::read, defaults);
  }

  /// The SQL dialect.
  casecore::dialect dialect() const noexcept;
  /// The URL with its password masked.
  std::string describe() const;
  /// Pool figures now.
  pool_metrics pool_stats() const;
  /// Transaction figures now.
  tx_metrics tx_stats() const;
  /// Count a conflict reported by a feature (repositories, leases, jobs).
  void count_conflict() const noexcept;
  /// The options in force.
  const database_options& options() const noexcept;
  /// Identity of the shared state (two handles to one pool compare equal).
  const void* identity() const noexcept { return state_.get(); }

private:
  template <class F> auto run(F&& f, detail::tx_mode mode, const write_options& opts) {
    using R = std::invoke_result_t<F, transaction&>;
    if constexpr (std::is_void_v<R>) {
      run_unit(mode, opts, [&](transaction& tx) { f(tx); });
    } else {
      std::optional<R> out;
      run_unit(mode, opts, [&](transaction& tx) { out.emplace(f(tx)); });
      return std::move(*out);
    }
  }
  void run_unit(detail::tx_mode mode, const write_options& opts, detail::function_ref<void(transaction&)> body);

  friend class transaction;
  void run_hooks(std::vector<std::function<void()>>& hooks) const noexcept;

  std::shared_ptr<detail::database_state> state_;
};

} // namespace casecore
