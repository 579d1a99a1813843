// casecore/error.hpp — the one exception root and its few subclasses.
//
// Every failure casecore reports is a casecore::error. Callers branch on three questions:
//   retryable() — running the same unit of work again may succeed (busy, serialization, deadlock,
//                 dropped connection before commit, pool timeout);
//   conflict()  — the caller's view is stale: re-read, re-apply, then retry (version conflict,
//                 stale fencing token, illegal transition from a state that has since changed);
//   code()      — the precise cause, for logging and metrics.
// Driver exceptions (SQLite::Exception, pqxx::failure) never escape: each adapter translates them
// through one mapping table (see the adapters' *_errors.cpp and their tests).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Every cause casecore distinguishes.
enum class errc {
  invalid_argument,     ///< caller passed something malformed; nothing was written
  bad_url,              ///< a database URL that cannot be parsed or names an unknown scheme
  not_found,            ///< the row / lease / job does not exist
  already_exists,       ///< a unique key is taken
  constraint_violation, ///< a foreign key, check or not-null constraint refused the write
  version_conflict,     ///< optimistic version is stale
  invalid_transition,   ///< a state machine refused the transition
  lease_lost,           ///< fencing token is stale or the lease expired / changed hands
  busy,                 ///< SQLITE_BUSY / LOCKED, PostgreSQL lock_not_available
  serialization_failure,///< SQLSTATE 40001
  deadlock,             ///< SQLSTATE 40P01
  connection_lost,      ///< the connection broke before the outcome was decided
  outcome_unknown,      ///< the connection broke during COMMIT: the write may or may not be durable
  pool_timeout,         ///< no connection became free within the acquire timeout
  backend_unavailable,  ///< cannot open / reach the database (retried within the reconnect budget)
  configuration,        ///< the server refused the configuration: unknown database or role, bad password,
                        ///< bad parameter, a transaction pooler that was not declared; never retried
  timeout,              ///< a statement or wait exceeded its deadline
  unsupported,          ///< the backend or build does not support the request
  flight_failed,        ///< another process's single-flight computation of the key failed (its message is carried)
  backend_error,        ///< any other database error (bad SQL, disk full, corruption)
  internal,             ///< a broken casecore invariant; please report
};

/// Human-readable name of a code ("version_conflict").
std::string_view to_string(errc code) noexcept;

/// True for causes where re-running the whole unit of work may succeed.
bool is_retryable(errc code) noexcept;

/// Throw the subclass that matches `code`, carrying the database's native code
/// (error::native_code()); adapters use it, casecore's own checks use raise(code, message) below.
[[noreturn]] void raise(errc code, std::string message, std::string native_code);

/// Root of every exception casecore throws.
class error : public std::runtime_error {
public:
  /// An error of cause `code` with a human-readable `message`.
  error(errc code, std::string message);
  /// The precise cause.
  errc code() const noexcept { return code_; }
  /// Re-running the same unit of work may succeed.
  bool retryable() const noexcept { return is_retryable(code_); }
  /// The caller's view is stale: re-read and re-apply before retrying.
  bool conflict() const noexcept;
  /// The database's own code when the error came from the database: PostgreSQL's SQLSTATE
  /// ("40001"), or SQLite's extended result code in decimal ("517" is SQLITE_BUSY_SNAPSHOT); empty
  /// for errors casecore raised itself. For logs and for the rare caller that must tell two causes
  /// of one errc apart; branch on code() first.
  const std::string& native_code() const noexcept { return native_; }

private:
  friend void raise(errc code, std::string message, std::string native_code);
  errc code_;
  std::string native_;
};

/// Caller input was rejected before anything was written.
class invalid_argument : public error {
public:
  /// An invalid_argument error with `message`.
  explicit invalid_argument(std::string message) : error(errc::invalid_argument, std::move(message)) {}
};

/// A database URL could not be parsed or names an unknown scheme.
class bad_url : public error {
public:
  /// A bad_url error with `message`.
  explicit bad_url(std::string message) : error(errc::bad_url, std::move(message)) {}
};

/// The addressed row or object does not exist.
class not_found : public error {
public:
  /// A not_found error with `message`.
  explicit not_found(std::string message) : error(errc::not_found, std::move(message)) {}
};

/// A unique key is already taken.
class already_exists : public error {
public:
  /// An already_exists error with `message`.
  explicit already_exists(std::string message) : error(errc::already_exists, std::move(message)) {}
};

/// Optimistic concurrency failure; carries who changed the row last and when.
class version_conflict : public error {
public:
  /// A conflict: the caller held `expected`, the row is at `current`, written by `updated_by` at `updated_at_us`.
  version_conflict(std::string message, std::int64_t expected, std::int64_t current,
                   std::string updated_by, std::int64_t updated_at_us);
  /// The version the caller held.
  std::int64_t expected_version() const noexcept { return expected_; }
  /// The version in the database now (0 when the row was removed).
  std::int64_t current_version() const noexcept { return current_; }
  /// Who wrote the current version.
  const std::string& updated_by() const noexcept { return updated_by_; }
  /// When the current version was written (microseconds since the Unix epoch).
  std::int64_t updated_at_us() const noexcept { return updated_at_us_; }

private:
  std::int64_t expected_;
  std::int64_t current_;
  std::string updated_by_;
  std::int64_t updated_at_us_;
};

/// A state machine refused a transition (illegal edge, or the state changed meanwhile).
class invalid_transition : public error {
public:
  /// An invalid_transition error with `message`.
  explicit invalid_transition(std::string message) : error(errc::invalid_transition, std::move(message)) {}
};

/// A fencing token is stale or a lease is no longer held.
class lease_lost : public error {
public:
  /// A lease_lost error with `message`.
  explicit lease_lost(std::string message) : error(errc::lease_lost, std::move(message)) {}
};

/// The database cannot be opened or reached.
class backend_unavailable : public error {
public:
  /// A backend_unavailable error with `message`.
  explicit backend_unavailable(std::string message) : error(errc::backend_unavailable, std::move(message)) {}
};

/// COMMIT was sent but its result is unknown. Never retried automatically.
class outcome_unknown : public error {
public:
  /// An outcome_unknown error with `message`.
  explicit outcome_unknown(std::string message) : error(errc::outcome_unknown, std::move(message)) {}
};

/// Throw the subclass that matches `code` (the single throw point of casecore's errors).
[[noreturn]] void raise(errc code, std::string message);

} // namespace casecore

CASECORE_API_END
