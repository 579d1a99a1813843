// casecore/backend.hpp — the adapter interface: what a database adapter implements.
//
// Concept: a `backend` is a connection factory for one database; a `connection` runs parameterised
// statements and explicit transactions, and supplies its dialect's SQL fragments. casecore ships
// two adapters (casecore/sqlite/sqlite.hpp, casecore/postgres/postgres.hpp, each with a
// make_backend); a host implements this interface to add one, or wraps an adapter to observe or
// disturb it (the testing kit's fault injection does: casecore/testing/faults.hpp), and hands the
// result to `database(backend, options)`. Feature code never sees it: it talks to
// casecore::transaction. (SOCI's session_backend is the model.)
// Guarantees an adapter must give: a connection is used by one thread at a time (the pool
// guarantees it) while a backend is shared by all threads and must be thread-safe; every driver
// exception is translated to casecore::error (with its native code) before it leaves these calls;
// begin() applies every tx_settings field explicitly (never session state, so nothing depends on
// server defaults or leaks through a pooler); commit() throws outcome_unknown when the connection
// breaks while COMMIT is in flight, and a connection lost before COMMIT is errc::connection_lost.
//
// @code
//   // A backend that counts the connections an adapter opens.
//   class counting_backend final : public casecore::backend {
//   public:
//     explicit counting_backend(std::shared_ptr<casecore::backend> inner) : inner_(std::move(inner)) {}
//     std::unique_ptr<casecore::connection> connect() override { ++opened; return inner_->connect(); }
//     casecore::dialect dialect() const noexcept override { return inner_->dialect(); }
//     std::string describe() const override { return inner_->describe(); }
//     std::atomic<int> opened{0};
//   private:
//     std::shared_ptr<casecore::backend> inner_;
//   };
//   casecore::database_options options;
//   auto inner = casecore::make_backend("sqlite:app.db", options);
//   casecore::database db(std::make_shared<counting_backend>(inner), options);
// @endcode
#pragma once

#include <casecore/value.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// The SQL dialect behind a database.
enum class dialect { sqlite, postgresql };

/// Transaction isolation (PostgreSQL honours all; SQLite is always serializable).
enum class isolation { read_committed, repeatable_read, serializable };

struct pool_options;

/// The few SQL fragments in which the dialects differ, supplied by each adapter (SOCI's
/// session_backend model): feature code composes statements from them instead of branching on the
/// dialect. Algorithms that genuinely differ (the job queue's SKIP LOCKED claim, array vs JSON
/// parameters) stay explicit per-backend code. Every field is a constant of the adapter.
///
/// @code
///   tx.exec(std::string("SELECT state FROM jobs WHERE id = $1") + std::string(tx.sql().for_update), id);
/// @endcode
struct sql_fragments {
  /// Row lock for an UPDATE to follow (" FOR UPDATE"; "" on SQLite, whose write transactions
  /// already exclude every other writer).
  std::string_view for_update;
  /// Row lock that does not block foreign-key / FOR KEY SHARE readers (" FOR NO KEY UPDATE"; "").
  std::string_view for_no_key_update;
  /// Row lock that only keeps the key from changing or the row from being deleted (" FOR KEY SHARE"; "").
  std::string_view for_key_share;
  /// Row lock that skips rows locked by others (" FOR UPDATE SKIP LOCKED"; "").
  std::string_view for_update_skip_locked;
  /// An expression: microseconds since the Unix epoch on the database's clock, usable before any
  /// migration ran (PostgreSQL: clock_timestamp(); SQLite: the adapter's casecore_now_us()).
  std::string_view now_us;
  /// A statement taking a transaction-scoped exclusive lock on the bigint key $1, or "" when the
  /// dialect's write transactions are already exclusive (SQLite).
  std::string_view transaction_lock;
  /// A statement with one bool column: does the table named $1 exist (in the search path)?
  std::string_view table_exists;
  /// A statement listing table names LIKE $1 (escape character '\'), ordered by name.
  std::string_view tables_like;
  /// Column type of a 64-bit auto-assigned primary key (migrations' `{{id}}`).
  std::string_view id_column;
  /// Column type of binary data (migrations' `{{blob}}`).
  std::string_view blob_type;
};

/// Whether a transaction may write.
enum class tx_mode { read, write };

/// What a transaction is opened with. Adapters apply every field explicitly at BEGIN, never by
/// session state, so nothing depends on server defaults or leaks through a pooler.
struct tx_settings {
  tx_mode mode = tx_mode::write;                    ///< read-only or read-write
  isolation level = isolation::read_committed;      ///< PostgreSQL isolation (SQLite: serializable)
  std::chrono::milliseconds lock_timeout{0};        ///< longest wait for a row / table lock (0 = adapter default)
  std::chrono::milliseconds statement_timeout{0};   ///< longest statement (0 = adapter default)
};

/// One physical connection.
class connection {
public:
  virtual ~connection() = default;
  /// Run one parameterised statement; `$1..$n` placeholders, values bound, never spliced.
  virtual result exec(std::string_view sql, std::span<const value> params) = 0;
  /// Run several ';'-separated statements without parameters (DDL in migrations).
  virtual void exec_script(std::string_view sql) = 0;
  /// Open a transaction with exactly these settings.
  virtual void begin(const tx_settings& settings) = 0;
  /// Commit; throws outcome_unknown when the connection breaks while the COMMIT is in flight.
  virtual void commit() = 0;
  /// Roll back, best effort; marks the connection broken if that fails.
  virtual void rollback() noexcept = 0;
  /// A cheap round trip; false when the connection is unusable.
  virtual bool ping() noexcept = 0;
  /// True once the connection is known to be unusable.
  virtual bool broken() const noexcept = 0;
  /// The SQL dialect.
  virtual casecore::dialect dialect() const noexcept = 0;
  /// The dialect's SQL fragments (a constant of the adapter).
  virtual const sql_fragments& sql() const noexcept = 0;
  /// After a COMMIT: a position in the server's history at or after that commit (PostgreSQL: the
  /// WAL LSN), or nullopt when the backend has no replicas to compare it with.
  virtual std::optional<std::uint64_t> commit_position() { return std::nullopt; }
  /// On a replica connection: true once it has replayed history up to `position`.
  virtual bool replayed(std::uint64_t position) { return position == 0; }
};

/// A connection factory for one database.
class backend {
public:
  virtual ~backend() = default;
  /// Open a new connection (throws backend_unavailable when it cannot).
  virtual std::unique_ptr<connection> connect() = 0;
  /// The SQL dialect.
  virtual casecore::dialect dialect() const noexcept = 0;
  /// The URL with any password masked.
  virtual std::string describe() const = 0;
  /// A factory for read-only connections to replicas (standbys), or nullptr when there are none.
  virtual std::shared_ptr<backend> read_replicas() const { return nullptr; }
  /// Give back the dead row versions of `table` (a plain identifier, checked by the caller) when the
  /// server counts at least `min_dead_rows` of them: on a connection of its own, outside any
  /// transaction, throttled like the server's background cleanup. True when it ran. Default:
  /// nothing to do (SQLite frees space as it goes).
  virtual bool vacuum(std::string_view table, std::int64_t min_dead_rows) {
    (void)table;
    (void)min_dead_rows;
    return false;
  }
};

} // namespace casecore

CASECORE_API_END
