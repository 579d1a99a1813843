// casecore/counter.hpp — named, scoped business counters (work-order numbers, invoice numbers).
//
// Concept: a counter is one row of casecore_counters keyed by (name, scope), created on first use.
// Scope is optional ("" by default), e.g. name "work_order", scope "2025". Numbers run 1..INT64_MAX.
//
// Concurrency guarantee:
//   * next(tx, ...) / reserve(tx, ...) run ONE upsert statement in the caller's transaction. The row
//     stays locked until that transaction ends, so numbers are unique AND gapless per (name, scope)
//     across threads, processes and hosts, at any isolation level: a rolled-back transaction gives
//     its number back. Because the row lock is held to the end of the transaction, allocate the
//     number LAST in the unit of work (after the slow parts) to keep the lock short. Durability of a
//     handed-out number is the backend's: SQLite's default synchronous=FULL keeps it across power
//     loss; with the NORMAL opt-in the last commits (and their numbers) can be lost and reissued.
//   * next(db, ...) is standalone and only promises uniqueness. Concurrent callers of one process on
//     the same (database handle, name, scope) are combined: one caller runs a single short
//     transaction that reserves numbers for every waiting caller plus an adaptive prefetch (up to
//     1024 while demand is high, shrinking to 0 when idle) kept in memory for the next callers. The
//     block lives in the handle's shared state (all copies of one handle share it) and dies with it:
//     a database opened later, even at a recycled address, never sees it. Numbers still in memory
//     when the handle closes or the process exits, a crash between commit and hand-out, or a failed
//     batch leave gaps. Each thread sees increasing numbers; across handles and processes numbers
//     are unique but not ordered in time.
//   * seed_from_max(...) never moves a counter backwards.
//   * No overflow: value + n is bounded in the statement itself on both backends; a request that
//     would pass INT64_MAX writes nothing and raises invalid_argument (the counter is exhausted).
// Failure modes: invalid_argument for bad names/scopes/n/patterns, a legacy maximum that is not an
// integer in 0..INT64_MAX, or an exhausted counter (nothing written); the usual retryable errors of
// the unit of work (next(db, ...) runs under database::write's retry policy).
//
// Example:
//   db.write([&](transaction& tx) {
//     insert_work_order(tx, ...);                                  // the slow part first
//     const auto n = counter::next(tx, "work_order", "2025");      // allocate last
//     tx.exec("UPDATE work_orders SET number = $1 WHERE id = $2",
//             counter::format_number("WO-{scope}-{n:06}", "2025", n), id);
//   });
#pragma once

/// @file
/// Named, scoped counters (guarantee and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db, std::int64_t id) -->
/// @code
/// db.write([&](casecore::transaction& tx) {
///   // ... insert the work order first (the slow part) ...
///   const auto n = casecore::counter::next(tx, "work_order", "2025");   // allocate LAST
///   tx.exec("UPDATE work_orders SET number = $1 WHERE id = $2",
///           casecore::counter::format_number("WO-{scope}-{n:06}", "2025", n), id);
/// });
/// @endcode

#include <casecore/database.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::counter {

/// Longest name or scope accepted.
inline constexpr std::size_t max_key_length = 128;

/// The next number of (name, scope) inside `tx` (1 for a new counter); gapless if `tx` commits.
std::int64_t next(transaction& tx, std::string_view name, std::string_view scope = {});

/// Reserve `n` consecutive numbers inside `tx`; returns the first (the last is first + n - 1).
std::int64_t reserve(transaction& tx, std::string_view name, std::string_view scope, std::int64_t n);

/// The last number handed out (0 for a counter never used).
std::int64_t current(transaction& tx, std::string_view name, std::string_view scope = {});

/// One stored counter.
struct entry {
  std::string name;       ///< counter name
  std::string scope;      ///< scope ("" when unscoped)
  std::int64_t value = 0; ///< the last number handed out
};

/// Stored counters by (name, scope): all of them, or every scope of `name` when given.
std::vector<entry> list(transaction& tx, std::string_view name = {});

/// Raise the counter to at least `value` (never lowers it); returns the counter's value afterwards.
std::int64_t seed_from_max(transaction& tx, std::string_view name, std::string_view scope, std::int64_t value);

/// Seed from a legacy table: raise the counter to MAX(column) of `table` (identifiers validated).
std::int64_t seed_from_table(transaction& tx, std::string_view name, std::string_view scope,
                             std::string_view table, std::string_view column);

/// Standalone next: unique (not gapless); concurrent callers in this process share one transaction.
std::int64_t next(database& db, std::string_view name, std::string_view scope = {});

/// Format a business number: "{n}", "{n:06}" (zero-padded width 1..20), "{scope}", "{name}", "{{", "}}".
std::string format_number(std::string_view pattern, std::string_view scope, std::int64_t n,
                          std::string_view name = {});

/// Throw invalid_argument unless `name` is 1..128 characters without control characters.
void check_name(std::string_view name);

/// Throw invalid_argument unless `scope` is 0..128 characters without control characters.
void check_scope(std::string_view scope);

} // namespace casecore::counter

CASECORE_API_END
