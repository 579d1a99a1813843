// casecore/transaction.hpp — the unit of work handed to database::write / database::read.
//
// A transaction is used by the one thread that runs the callable; it is never shared. Statements
// use `$1..$n` placeholders on both backends and values are always bound, never spliced.
// Hooks: after_commit hooks run once the COMMIT succeeded, after_rollback hooks once the attempt
// certainly rolled back (including attempts that are retried). When the outcome of the COMMIT is
// unknown (outcome_unknown: the connection broke while the COMMIT was in flight) NEITHER runs: the
// transaction may have committed, so a rollback hook that deletes a staged upload would leave a
// committed row dangling, and a commit hook could announce a write that never happened. The caller
// gets the outcome_unknown error and reconciles (re-read, then decide). A hook that throws does not
// skip the others; its exception goes to database_options::on_hook_error and is counted.
// Layering: a transaction knows its connection and its dialect, nothing above it; retries, hooks
// and statistics belong to the unit of work (database::write / read).
#pragma once

#include <casecore/backend.hpp>
#include <casecore/value.hpp>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

namespace detail {
/// Runs hooks for the unit of work (a savepoint rolled back hands its after_rollback hooks here).
class hook_runner {
public:
  virtual ~hook_runner() = default;
  /// Run and clear `hooks`; a throwing hook does not stop the others.
  virtual void run(std::vector<std::function<void()>>& hooks) const noexcept = 0;
};
} // namespace detail

/// A database transaction in progress.
class transaction {
public:
  /// Built by the unit of work around a connection on which BEGIN was sent.
  transaction(casecore::connection& conn, casecore::tx_mode mode, int attempt, std::string actor,
              const detail::hook_runner& hooks);
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  /// Run one statement with bound parameters.
  template <class... A> result exec(std::string_view sql, const A&... args) {
    std::array<value, sizeof...(A)> params{to_value(args)...};
    return exec_values(sql, params);
  }
  /// Run one statement with an already-built parameter list.
  result exec_values(std::string_view sql, std::span<const value> params);
  /// The first column of the first row, or nullopt when there is no row.
  template <class T, class... A> std::optional<T> query_optional(std::string_view sql, const A&... args) {
    auto r = exec(sql, args...);
    if (r.empty()) return std::nullopt;
    return r[0].template get<T>(0);
  }
  /// The first column of the first row; errc::not_found when there is no row.
  template <class T, class... A> T query_one(std::string_view sql, const A&... args) {
    auto r = exec(sql, args...);
    if (r.empty()) raise(errc::not_found, "query returned no row");
    return r[0].template get<T>(0);
  }
  /// Run a parameterless multi-statement script (DDL).
  void exec_script(std::string_view sql);

  /// Run `f` inside a savepoint: its writes are undone if it throws, and the exception propagates.
  template <class F> decltype(auto) savepoint(F&& f) {
    const auto mark = open_savepoint();
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<F, transaction&>>) {
        f(*this);
        release_savepoint(mark);
      } else {
        decltype(auto) r = f(*this);
        release_savepoint(mark);
        return r;
      }
    } catch (...) {
      rollback_savepoint(mark);
      throw;
    }
  }

  /// Run `hook` after this transaction commits (never if it rolls back).
  void after_commit(std::function<void()> hook);
  /// Run `hook` after this attempt rolls back (never if it commits).
  void after_rollback(std::function<void()> hook);

  /// The SQL dialect of the database.
  casecore::dialect dialect() const noexcept;
  /// The dialect's SQL fragments (row-lock clauses, the database clock, ...; detail/backend.hpp),
  /// for statements that must read the same on both backends.
  const sql_fragments& sql() const noexcept;
  /// True for write transactions.
  bool writable() const noexcept { return mode_ == casecore::tx_mode::write; }
  /// 1 on the first attempt, 2 on the first retry, ...
  int attempt() const noexcept { return attempt_; }
  /// Who performs this unit of work (write_options::actor), recorded by versioned writes.
  const std::string& actor() const noexcept { return actor_; }
  /// The database's clock, microseconds since the Unix epoch.
  micros now_us();

  // Used by database's run loop.
  /// True when a statement failed outside a savepoint that undid it: the transaction cannot commit
  /// (PostgreSQL aborts it; casecore makes SQLite behave the same way).
  bool poisoned() const noexcept { return poisoned_; }
  /// Hooks registered so far (moved out by the run loop).
  std::vector<std::function<void()>>& commit_hooks() noexcept { return commit_hooks_; }
  /// Rollback hooks registered so far (moved out by the run loop).
  std::vector<std::function<void()>>& rollback_hooks() noexcept { return rollback_hooks_; }

private:
  struct savepoint_mark {
    int depth;
    bool poisoned;
    std::size_t commit_hooks;
    std::size_t rollback_hooks;
  };
  savepoint_mark open_savepoint();
  void release_savepoint(const savepoint_mark& m);
  void rollback_savepoint(const savepoint_mark& m) noexcept;

  casecore::connection& conn_;
  const detail::hook_runner& hooks_;
  casecore::tx_mode mode_;
  int attempt_;
  int depth_ = 0;
  bool poisoned_ = false;
  std::string actor_;
  std::vector<std::function<void()>> commit_hooks_;
  std::vector<std::function<void()>> rollback_hooks_;
};

} // namespace casecore

CASECORE_API_END
