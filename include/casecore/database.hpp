// casecore/database.hpp — a database handle: a pool, a backend and the unit-of-work runner.
//
// `database` is a cheap, copyable handle; copies share one pool. All members are thread-safe.
// write(f) runs f in a write transaction (SQLite: BEGIN IMMEDIATE) and commits, or rolls back on any
// exception; retryable failures are retried under the retry_policy (see retry.hpp). read(f) runs f
// in a read-only transaction. Every transaction is opened with its isolation level, timeouts and
// (PostgreSQL) search_path stated explicitly, so behaviour never depends on server defaults.
// Reconnects: while the server cannot be reached (a restart, a failover), a unit of work waits and
// retries for up to database_options::reconnect_budget instead of failing at once.
// Failure modes: every error is a casecore::error; a COMMIT whose outcome is unknown throws
// outcome_unknown, is never retried, and runs neither after_commit nor after_rollback hooks.
// The unit of work is the one place that counts commits, retries and conflicts (tx_stats()).
#pragma once

/// @file
/// A database handle and the unit of work (guarantee and failure modes: the comment above).
/// <!-- snippet: body() -->
/// @code
/// auto db = casecore::open("sqlite:app.db");      // or postgresql://user@host:5432/app
/// casecore::migrate(db);
/// const auto total = db.write([](casecore::transaction& tx) {   // retried on busy / 40001 / 40P01
///   tx.exec("INSERT INTO casecore_counters(name, scope, value) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
///           "demo", "");
///   tx.after_commit([] { /* notify others: runs only after COMMIT succeeded */ });
///   return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_counters");
/// });
/// const auto seen = db.read([](casecore::transaction& tx) {      // read-only transaction
///   return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_counters");
/// });
/// @endcode

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

#include <casecore/export.hpp>

CASECORE_API_BEGIN

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
  std::uint64_t conflicts = 0;               ///< units of work ended by a version / state / fencing conflict
  std::uint64_t retries_reconnect = 0;       ///< retries after the server could not be reached
  std::uint64_t replica_reads = 0;           ///< read-only units of work served by a replica
  std::uint64_t replica_fallbacks = 0;       ///< replica reads sent to the primary (lagging or unreachable replica)
  std::uint64_t hook_failures = 0;           ///< hooks that threw
};

/// Settings of a database handle.
struct database_options {
  pool_options pool;                       ///< pool sizing (URL parameters override)
  retry_policy retry;                      ///< default retry budget of write()
  /// How long a unit of work keeps waiting for an unreachable server (restart, failover) before it
  /// fails with backend_unavailable; 0 fails at once. Counted from the first failed connect.
  std::chrono::milliseconds reconnect_budget{15000};
  /// Longest wait for a replica to replay this handle's last commit before a read-your-writes read
  /// goes to the primary instead (URL: replica_wait_ms).
  std::chrono::milliseconds replica_wait{500};
  /// Receives exceptions thrown by after-commit / after-rollback hooks (default: ignored, counted).
  std::function<void(std::exception_ptr)> on_hook_error;
};

/// Per-call settings of write().
struct write_options {
  isolation level = isolation::read_committed; ///< PostgreSQL isolation level
  std::optional<retry_policy> retry;           ///< overrides database_options::retry
  std::string actor;                           ///< recorded as updated_by by versioned writes
  /// Longest wait for a row or table lock in this transaction (PostgreSQL lock_timeout, SQLite busy
  /// timeout of BEGIN); 0 = the backend default. Running out raises errc::busy.
  std::chrono::milliseconds lock_timeout{0};
  /// Longest single statement (PostgreSQL statement_timeout); 0 = the URL's or none. Raises errc::timeout.
  std::chrono::milliseconds statement_timeout{0};
  /// Overrides database_options::reconnect_budget for this call.
  std::optional<std::chrono::milliseconds> reconnect_budget;
  /// read() only: run on a replica named in the URL (`replicas=`), when there is one. Writes,
  /// row locks and every casecore primitive always run on the primary.
  bool on_replica = false;
  /// With on_replica: only use a replica that has replayed this handle's last commit (waiting up to
  /// database_options::replica_wait); otherwise the read runs on the primary.
  bool read_your_writes = true;
};

class database;

namespace detail {
struct database_state;
/// Internal: the object a feature keeps per database under `key` (made by `make` on first use). It
/// lives in the handle's shared state, so it dies with the last copy of the handle and can never be
/// found again through a recycled address (the standalone counter keeps its number blocks here).
std::shared_ptr<void> feature_state(const database& db, const void* key, function_ref<std::shared_ptr<void>()> make);
} // namespace detail

/// A handle to one database.
class database {
public:
  /// Wrap a backend (adapters and casecore::open call this).
  database(std::shared_ptr<casecore::backend> backend, database_options options);

  /// Run `f(transaction&)` in a write transaction with retries; returns what f returns.
  template <class F> auto write(F&& f, const write_options& opts = {}) {
    return run<F>(std::forward<F>(f), casecore::tx_mode::write, opts);
  }
  /// Run `f(transaction&)` in a read-only transaction; returns what f returns.
  template <class F> auto read(F&& f, const write_options& opts = {}) {
    return run<F>(std::forward<F>(f), casecore::tx_mode::read, opts);
  }

  /// The SQL dialect.
  casecore::dialect dialect() const noexcept;
  /// The URL with its password masked.
  std::string describe() const;
  /// Clean up dead row versions of `table` now if the server counts at least `min_dead_rows` of them
  /// (PostgreSQL: VACUUM throttled like autovacuum, on a connection of its own; skipped behind a
  /// transaction pooler, where session settings cannot be used). False when nothing ran (always on
  /// SQLite). invalid_argument unless `table` is a plain identifier. The job worker's maintenance
  /// leader calls it for casecore_jobs (worker_options::vacuum_dead_rows).
  bool vacuum(std::string_view table, std::int64_t min_dead_rows = 0);
  /// Pool figures now.
  pool_metrics pool_stats() const;
  /// Transaction figures now.
  tx_metrics tx_stats() const;
  /// The options in force.
  const database_options& options() const noexcept;
  /// Identity of the shared state (two handles to one pool compare equal).
  const void* identity() const noexcept { return state_.get(); }
  /// The connection factory (adapters and the testing kit inspect it).
  const std::shared_ptr<casecore::backend>& backend() const noexcept;

private:
  template <class F> auto run(F&& f, casecore::tx_mode mode, const write_options& opts) {
    using R = std::invoke_result_t<F, transaction&>;
    if constexpr (std::is_void_v<R>) {
      run_unit(mode, opts, [&](transaction& tx) { f(tx); });
    } else {
      std::optional<R> out;
      run_unit(mode, opts, [&](transaction& tx) { out.emplace(f(tx)); });
      return std::move(*out);
    }
  }
  void run_unit(casecore::tx_mode mode, const write_options& opts, detail::function_ref<void(transaction&)> body);
  friend std::shared_ptr<void> detail::feature_state(const database&, const void*,
                                                      detail::function_ref<std::shared_ptr<void>()>);

  std::shared_ptr<detail::database_state> state_;
};

} // namespace casecore

CASECORE_API_END
